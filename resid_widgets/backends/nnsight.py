"""nnsight backend: ``rw.decompose`` on an ``nnsight.LanguageModel`` and :func:`decompose_remote`.

Both run one nnsight trace whose body is :func:`resid_widgets.backends.nnsight_trace.record`,
a torch-only function that reads each component's delta through the envoy tree (nnsight's
public ``.input`` / ``.output`` / ``.save()``), in the order the model runs its modules:

- ``rw.decompose(lm, prompt)`` (a model on this machine): the trace also saves the inputs of the
  output projections and the full logits; the result is a complete :class:`Decomposition`,
  assembled and checked (additivity, readout) by the same code as the plain Hugging Face path,
  from the wrapped model's weights.
- :func:`decompose_remote` (``remote=True``: NDIF): the trace computes the logit lens top-k, the
  target's lens logit and the direct logit attributions on the server and saves only those and
  the deltas: no weight matrix and no [*, vocab] tensor leaves the cluster. ``remote="local"``
  is nnsight's own dry run of that path (the request serialized, deserialized with local
  modules hidden, then run here): the tests run exactly that.

docs/scale.md says what is and is not tested.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from ..adapters.base import Adapter, adapter_for, get_module, require_module
from ..core import TargetResolver
from ..errors import ReadoutError, UnsupportedModelError
from ..model_state import model_left_as_found
from .. import norms
from ..checks import FP32_READOUT_LIMIT, HALF_READOUT_LIMIT, enforce_additivity, report_nonfinite
from ..tokens import check_tokenizer, prepare_token_ids
from .huggingface import DeltaRecorder, assemble_decomposition, require_loaded
from . import nnsight_trace


def is_nnsight(model) -> bool:
    """True for an nnsight model wrapper (``LanguageModel``, ``TransformersModel``, ``NNsight``).

    Args:
        model: any object.
    """
    return any(cls.__module__.split(".")[0] == "nnsight" for cls in type(model).__mro__)


def wrapped_model(lm) -> torch.nn.Module:
    """The torch module an nnsight wrapper runs (weights on the meta device for a remote model).

    Args:
        lm: an nnsight wrapper.
    """
    module = getattr(lm, "_module", None)
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedModelError(
            f"{type(lm).__name__} wraps no torch module that resid_widgets can read (nnsight >= 0.5 keeps it "
            "as ._module): pass an nnsight.LanguageModel of a Hugging Face causal LM.")
    return module


def _resolved(root: torch.nn.Module, path: str | None, what: str, adapter: Adapter) -> str | None:
    """The one alternative of ``path`` ("a|b") that exists under ``root`` (None stays None)."""
    if path is None:
        return None
    require_module(root, path, what, adapter)
    return next(option for option in path.split("|") if get_module(root, option) is not None)


def trace_spec(model: torch.nn.Module, adapter: Adapter, *, k: int = 10, target: int | None = None,
               full: bool = True, lens: bool = False) -> dict:
    """The plain-Python description of ``model`` that :func:`nnsight_trace.record` runs from.

    Args:
        model: the wrapped model.
        adapter: its family's adapter.
        k: top tokens kept: of the model's logits, and per lens cell with ``lens``.
        target: the token id attributed to (with ``lens``; default the top prediction).
        full: also record what a full Decomposition needs (head inputs, neuron activations,
            post-norm inputs, the full logits).
        lens: compute the logit lens and the DLA inside the trace.
    """
    layers_path = _resolved(model, adapter.layers, "decoder layers", adapter)
    layer = get_module(model, layers_path)[0]
    writers = {kind: _resolved(layer, adapter.delta_path(kind), f"{kind} output", adapter) for kind in ("attn", "mlp")}
    final_norm_path = _resolved(model, adapter.final_norm, "final norm", adapter)
    final_norm = get_module(model, final_norm_path)
    eps = getattr(final_norm, "variance_epsilon", None)
    return nnsight_trace.spec(
        embeddings=[_resolved(model, path, f"embedding '{label}'", adapter) for label, path in adapter.embeddings],
        layers=layers_path, n_layers=len(get_module(model, layers_path)),
        attn_writer=writers["attn"], mlp_writer=writers["mlp"],
        attn_post_in=adapter.attn_post_norm is not None, mlp_post_in=adapter.mlp_post_norm is not None,
        attn_out_proj=_resolved(layer, adapter.attn_out_proj, "attention output projection", adapter),
        mlp_out_proj=_resolved(layer, adapter.mlp_out_proj, "FFN output projection", adapter),
        final_norm=final_norm_path, unembed=_resolved(model, adapter.unembed, "unembedding", adapter),
        norm_kind=adapter.norm_kind, norm_offset=adapter.norm_offset,
        norm_eps=getattr(final_norm, "eps", 1e-5) if eps is None else eps,
        softcap=getattr(model.config, "final_logit_softcapping", None), k=k, target=target, full=full, lens=lens)


def _trace(lm, token_ids: torch.Tensor, spec: dict, remote) -> dict:
    """Run :func:`nnsight_trace.record` in one trace (remote: False, True or "local")."""
    import nnsight

    record = nnsight_trace.record
    if remote:  # ship record's source (and Norm's) with the request: the server has no resid_widgets
        nnsight.register(norms)
        nnsight.register(nnsight_trace)
    kwargs = {"remote": remote} if remote else {}
    with lm.trace(token_ids[None], **kwargs):
        saved = nnsight.save(record(lm, spec))
    return dict(saved)


def _prepare(lm, prompt, tokenizer, adapter):
    model = wrapped_model(lm)
    adapter = adapter or adapter_for(model)
    if tokenizer is None:
        tokenizer = getattr(lm, "tokenizer", None)
    check_tokenizer(tokenizer, model.config)
    return model, adapter, tokenizer, prepare_token_ids(prompt, tokenizer, model.config, adapter)


def decompose_nnsight(lm, prompt, tokenizer=None, *, adapter: Adapter | None = None):
    """``rw.decompose`` for an nnsight wrapper of a model on this machine (see ``rw.decompose``).

    ``tokenizer`` defaults to the wrapper's own (``lm.tokenizer``). Returns the same
    :class:`~resid_widgets.Decomposition` as the plain Hugging Face path on the wrapped model.

    Args:
        lm: an nnsight wrapper of a model on this machine.
        prompt: text, or token ids [T].
        tokenizer: default ``lm.tokenizer``.
        adapter: the family's adapter (default: the registered one).
    """
    if getattr(lm, "dispatched", True) is False:
        lm.dispatch()  # loads the weights (LanguageModel("org/name") starts on meta), as a first trace would
    model, adapter, tokenizer, token_ids = _prepare(lm, prompt, tokenizer, adapter)
    require_loaded(model)
    spec = trace_spec(model, adapter, full=True)
    with model_left_as_found(model):
        saved = _trace(lm, token_ids, spec, remote=False)
        layers = require_module(model, adapter.layers, "decoder layers", adapter)
        device = saved["deltas"].device
        col = DeltaRecorder(max(1, len(adapter.embeddings)), len(layers), device)
        col.deltas = saved["deltas"].to(col.delta_dtype(saved["deltas"].dtype))
        col.running = col.deltas.sum(0, dtype=torch.float32)
        col.stream_norms = saved["stream_norms"]
        col.per_layer = {key: saved[key] for key in ("z", "acts", "attn_post_in", "mlp_post_in") if key in saved}
        # record() read each module once, in order (nnsight raises if one does not run)
        col.calls = {"layer_in": len(layers), "attn": len(layers), "mlp": len(layers), "final_in": 1}
        return assemble_decomposition(model, adapter, layers, require_module(model, adapter.final_norm, "final norm", adapter),
                         require_module(model, adapter.unembed, "unembedding", adapter), token_ids, tokenizer,
                         col, saved["logits"])


@dataclass
class RemoteDecomposition:
    """What :func:`decompose_remote` brings back from the cluster (C components, T positions).

    Attributes:
        tokens: list[str] (T) token texts; token_ids: LongTensor [T].
        labels: list[str] (C) "embed", "attn.0", "mlp.0", ... as in a Decomposition.
        deltas: float32 [C, T, d_model] what each component added (exact: model-dtype values).
        logits_top_ids / logits_top: [T, k] the model's own top-k next tokens and their logits.
        logits_logsumexp: [T] log-sum-exp of the model's own logits.
        lens_top_ids / lens_top_probs: [C, T, k] the logit lens of every state x position.
        lens_logsumexp: [C, T]; target: the token id attributed to (default: the model's top
            token at the last position); target_logprob: [C, T] its log-probability under the lens.
        dla: [C, T] direct logit attribution of each component at each position to ``target``
            (final norm frozen at that position's final stream); dla_constant: the part no
            component owns (final-norm bias and unembedding bias).
        additivity_error / readout_error: the two self-checks of ``rw.decompose``.
        payload_bytes: bytes of the tensors that left the trace.
    """

    tokens: list
    token_ids: torch.Tensor
    labels: list
    deltas: torch.Tensor
    logits_top_ids: torch.Tensor
    logits_top: torch.Tensor
    logits_logsumexp: torch.Tensor
    lens_top_ids: torch.Tensor
    lens_top_probs: torch.Tensor
    lens_logsumexp: torch.Tensor
    target: int
    target_logprob: torch.Tensor
    dla: torch.Tensor
    dla_constant: float
    additivity_error: float
    readout_error: float
    payload_bytes: int
    model_name: str = ""
    tokenizer: object = field(default=None, repr=False)

    @property
    def states(self) -> torch.Tensor:
        """[C, T, d_model] the stream after each component."""
        return self.deltas.cumsum(0)

    def contributions(self, position: int = -1) -> torch.Tensor:
        """[C] each component's DLA to ``target`` at ``position``; they sum, plus
        ``dla_constant``, to the target's logit there (before any final soft-cap).

        Args:
            position: the position (negative counts from the end).
        """
        return self.dla[:, position]


def decompose_remote(lm, prompt, tokenizer=None, *, k: int = 10, target=None, remote=True,
                     adapter: Adapter | None = None) -> RemoteDecomposition:
    """Decompose ``prompt`` on a model that runs elsewhere (NDIF), bringing back only small results.

    Args:
        lm: an ``nnsight.LanguageModel`` (its weights may stay on the meta device here).
        prompt: text (needs a tokenizer: ``tokenizer`` or ``lm.tokenizer``) or token ids [T].
        k: top tokens of the lens kept per state x position.
        target: the token to attribute to (a single-token string or an id); default the model's
            top prediction at the last position.
        remote: True runs on NDIF (an API key set with nnsight's CONFIG); "local" runs nnsight's
            dry run of the same request here (serialized, deserialized, run); False runs the
            same trace plainly here.
        adapter: describe an unsupported family (see :class:`resid_widgets.Adapter`).

    Returns:
        :class:`RemoteDecomposition` (deltas, lens top-k, attributions; no weights, no
        [*, vocab] tensors: those never leave the trace).

    Raises:
        AdditivityError / ReadoutError: as ``rw.decompose`` (fp32 models; warnings otherwise).
    """
    model, adapter, tokenizer, token_ids = _prepare(lm, prompt, tokenizer, adapter)
    vocab = getattr(model.config, "vocab_size", None)
    tid = None if target is None else TargetResolver(tokenizer, vocab)(target)
    spec = trace_spec(model, adapter, k=k, target=tid, full=False, lens=True)
    saved = _trace(lm, token_ids, spec, remote=remote)
    payload = sum(v.numel() * v.element_size() for v in saved.values())
    dtype = saved["deltas"].dtype
    deltas = saved["deltas"].float().cpu()
    labels = [label for label, _ in adapter.embeddings] or ["embed"]
    for i in range(spec["n_layers"]):
        labels += [f"attn.{i}", f"mlp.{i}"]
    norms = saved["stream_norms"].float().cpu()
    gaps = norms[:, 0] / norms[:, 1].clamp_min(1e-12)
    err = float(torch.nan_to_num(gaps, nan=0.0, posinf=0.0).max())
    nonfinite = report_nonfinite(labels, deltas, dtype) if not bool(torch.isfinite(deltas).all()) else {}
    source = f"adapter '{adapter.name}' (nnsight trace)"
    enforce_additivity(err, nonfinite, dtype, source, "Pass a corrected rw.Adapter(...) as adapter=.")
    readout_error = float(saved["readout_error"])
    limit = FP32_READOUT_LIMIT if dtype == torch.float32 else HALF_READOUT_LIMIT
    if not nonfinite and not readout_error <= limit:
        msg = (f"The final norm + unembedding read in the trace miss the model's own logits at the last position "
               f"by {readout_error:.1e} (relative to 1 + max |logit|) for {source}.")
        if dtype == torch.float32 or math.isnan(readout_error):
            raise ReadoutError(msg + " Pass a corrected rw.Adapter(...) as adapter= (final_norm, norm_kind, "
                               "norm_offset).")
        warnings.warn(msg + f" In {dtype} part of this is the model's own rounding.", stacklevel=2)
    lens_lse = saved["lens_lse"].cpu()
    top_logits = saved["lens_top_logits"].cpu()
    ids = token_ids.tolist()
    from ..models import display_name

    return RemoteDecomposition(
        tokens=[tokenizer.decode([t]) for t in ids] if tokenizer is not None else [f"<{t}>" for t in ids],
        token_ids=token_ids, labels=labels, deltas=deltas,
        logits_top_ids=saved["logits_top_ids"].long().cpu(), logits_top=saved["logits_top"].cpu(),
        logits_logsumexp=saved["logits_lse"].cpu(),
        lens_top_ids=saved["lens_top_ids"].long().cpu(),
        lens_top_probs=(top_logits - lens_lse[..., None]).exp(), lens_logsumexp=lens_lse,
        target=int(saved["target"]), target_logprob=saved["lens_target_logit"].cpu() - lens_lse,
        dla=saved["dla"].cpu(), dla_constant=float(saved["dla_constant"]), additivity_error=err,
        readout_error=readout_error, payload_bytes=payload,
        model_name=display_name(getattr(model.config, "name_or_path", "")) or type(model).__name__,
        tokenizer=tokenizer)
