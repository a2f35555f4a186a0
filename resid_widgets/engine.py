"""``decompose``: one forward pass with hooks, collected into a :class:`Decomposition`.

The engine is family-agnostic: an :class:`~resid_widgets.adapters.Adapter` says which modules
write the stream; here we hook them, run once, always remove the hooks and restore the model's
train/eval flags, and check that the deltas add up to the model's own stream.
"""
from __future__ import annotations

import warnings

import torch

from . import buffers
from .adapters.base import Adapter, adapter_for, get_module, require_module
from .backends import nnsight as nnsight_backend
from .core import Decomposition, LayerWeights
from .errors import (AdditivityError, NonFiniteWarning, PromptError, ReadoutError, TokenizerError,
                     UnsupportedModelError)
from .lens import Readout
from .model_state import model_left_as_found
from .models import display_name
from .norms import Norm
from .weights import module_device, unembedding_fp32

# fp32 models must add up to rounding; anything above this means the adapter is wrong.
FP32_ADDITIVITY_LIMIT = 1e-4
# The readout self-check, relative to 1 + the largest |logit| of the checked row: fp32 models
# reproduce their own logits to rounding (SmolLM2: 3e-7); a wrong declaration (norm kind, offset,
# bias, soft-cap) misses by 1e-3 and more. bfloat16 rounds the model's own logits by up to ~1e-2
# (SmolLM2), and so does fp32 with TF32 / reduced-precision matmuls.
FP32_READOUT_LIMIT = 1e-4
HALF_READOUT_LIMIT = 5e-2
# Tokens whose logits the self-check compares: the model's top ones and a spread sample of the
# vocabulary (the whole row would cost one more pass over W_U per run).
READOUT_CHECK_TOP, READOUT_CHECK_SPREAD = 16, 240


def decompose(model, prompt, tokenizer=None, *, adapter: Adapter | None = None) -> Decomposition:
    """Run ``prompt`` through ``model`` once and split its residual stream into components.

    Args:
        model: a Hugging Face causal LM of a supported family (GPT-2, GPT-NeoX/Pythia, Llama,
            Mistral, Qwen2/3, SmolLM, Gemma 1/2/3, Phi-3, OLMo 1/2/3), also dispatched with
            accelerate's ``device_map``; or a TransformerLens ``HookedTransformer`` /
            ``TransformerBridge``; or an ``nnsight.LanguageModel`` of one (for a model on NDIF
            see ``rw.decompose_remote``). Runs of one model from several threads take turns.
        prompt: text (needs ``tokenizer``), or token ids (a list, LongTensor or numpy array of
            shape [T] or [1, T]).
        tokenizer: the model's tokenizer, used to tokenize text and decode token texts; one that
            cannot be the model's (larger vocabulary, other BOS/EOS ids) raises TokenizerError.
        adapter: describe an unsupported family yourself (see :class:`resid_widgets.Adapter`).

    Raises:
        AdditivityError / ReadoutError: (fp32) the deltas miss the model's own stream, or the
            declared final norm + unembedding miss its own logits; warnings in half precision.

    Returns:
        :class:`Decomposition` with ``deltas``/``states`` [C, T, d_model] (float32, CPU) and
        ``logits`` [T, vocab], C = 1 (+1 for learned positions) + 2 * n_layers.
    """
    if nnsight_backend.is_nnsight(model):
        return nnsight_backend.decompose_nnsight(model, prompt, tokenizer, adapter=adapter)
    if not isinstance(model, torch.nn.Module):
        raise UnsupportedModelError(f"model must be a torch.nn.Module (a causal LM), not {type(model).__name__}")
    if _is_transformer_lens(model):
        from .adapters.transformer_lens import decompose_transformer_lens
        return decompose_transformer_lens(model, prompt, tokenizer=tokenizer)
    adapter = adapter or adapter_for(model)
    require_loaded(model)
    check_tokenizer(tokenizer, model.config)
    token_ids = prepare_token_ids(prompt, tokenizer, model.config, adapter)
    return _run(model, adapter, token_ids, tokenizer)


def _is_transformer_lens(model) -> bool:
    return any(cls.__module__.startswith("transformer_lens") for cls in type(model).__mro__)


def require_loaded(model: torch.nn.Module) -> None:
    """UnsupportedModelError when weights sit on the meta device with nothing to load them.
    accelerate's hooks load offloaded weights for each forward: a model it dispatched (with
    ``hf_device_map``, or hooks from cpu_offload / disk_offload) passes."""
    if not any(p.is_meta for p in model.parameters()):
        return
    if getattr(model, "hf_device_map", None) is not None or any(hasattr(m, "_hf_hook") for m in model.modules()):
        return
    raise UnsupportedModelError(
        f"{type(model).__name__}'s weights are on the meta device (shapes only, no values), so it cannot run. "
        "Load the weights: AutoModelForCausalLM.from_pretrained(...) (with device_map=... to offload them), "
        "or model.to_empty(device='cpu') followed by model.load_state_dict(...).")


def _special_ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple, set)) else {int(value)}


def check_tokenizer(tokenizer, config, vocab_size: int | None = None) -> None:
    """TokenizerError when ``tokenizer`` cannot be the model's: it has more tokens than the model's
    vocabulary (``vocab_size``, default ``config.vocab_size``), or its BOS/EOS id is none of the
    model's special ids (``config``'s bos/eos/pad ids). Otherwise the model would run on other
    tokens than the text shown."""
    if tokenizer is None:
        return
    vocab_size = vocab_size if vocab_size is not None else getattr(config, "vocab_size", None)
    try:
        n_tokens = len(tokenizer)
    except TypeError:
        n_tokens = None
    fix = ("Pass the tokenizer saved with this model (AutoTokenizer.from_pretrained of the same folder or "
           "name), or pass token ids and no tokenizer.")
    if vocab_size is not None and n_tokens is not None and n_tokens > vocab_size:
        raise TokenizerError(f"The tokenizer ({type(tokenizer).__name__}, {n_tokens} tokens) is not this model's: "
                             f"the model's vocabulary has {vocab_size} tokens. {fix}")
    model_ids = set().union(*(_special_ids(getattr(config, f"{kind}_token_id", None))
                              for kind in ("bos", "eos", "pad")))
    for kind in ("bos", "eos"):
        theirs = _special_ids(getattr(tokenizer, f"{kind}_token_id", None))
        ours = _special_ids(getattr(config, f"{kind}_token_id", None))
        if theirs and ours and not theirs & model_ids:
            raise TokenizerError(f"The tokenizer's {kind.upper()} token id is {sorted(theirs)[0]}, but the model's "
                                 f"special token ids are {sorted(model_ids)}: it is not this model's tokenizer. {fix}")


def prepare_token_ids(prompt, tokenizer, config, adapter: Adapter | None = None) -> torch.Tensor:
    """Text or ids (a list, tuple, tensor or numpy array of shape [T] or [1, T]) -> LongTensor [T],
    with clear errors for empty / too long / malformed prompts."""
    if isinstance(prompt, str):
        if not prompt:
            raise PromptError("The prompt is empty: pass some text or token ids.")
        if tokenizer is None:
            raise PromptError("The prompt is text but no tokenizer was given: pass tokenizer=..., "
                              "or pass token ids (a LongTensor of shape [T]).")
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    elif isinstance(prompt, (list, tuple, torch.Tensor)) or type(prompt).__name__ == "ndarray":
        try:
            ids = torch.as_tensor(prompt)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PromptError(f"Token ids must be integers in a list, tensor or numpy array of shape [T]: "
                              f"{exc}") from None
        if ids.numel() == 0:  # before the dtype: an empty list becomes a float32 tensor
            raise PromptError("The prompt is empty (it has no tokens).")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise PromptError(f"Token ids must be integers, got {ids.dtype}.")
        if ids.dim() == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.dim() != 1:
            raise PromptError(f"Token ids must have shape [T] or [1, T], got {tuple(ids.shape)}; "
                              "decompose one prompt at a time.")
        ids = ids.long().cpu()
    else:
        raise PromptError(f"prompt must be a string or token ids, not {type(prompt).__name__}")
    if ids.numel() == 0:
        raise PromptError("The prompt is empty (it has no tokens).")
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise PromptError(f"Token ids must lie in 0..{vocab - 1} (the model's vocabulary); got "
                          f"{int(ids.min())}..{int(ids.max())}.")
    limit = context_length(config, adapter)
    if limit is not None and ids.numel() > limit:
        raise PromptError(f"The prompt has {ids.numel()} tokens but the model's context holds {limit}: "
                          "shorten the prompt.")
    return ids


def context_length(config, adapter: Adapter | None = None) -> int | None:
    """The most tokens the model takes, from the first config attribute the adapter names."""
    attrs = adapter.max_positions_attrs if adapter else ("max_position_embeddings", "n_positions", "n_ctx")
    return next((getattr(config, a) for a in attrs if getattr(config, a, None)), None)


def _first(value) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


class _Collector:
    """Hooks that write each capture straight into preallocated buffers.

    Deltas go into ``deltas`` [C, T, d] (one copy each, on the device the embedding computes
    on; fp32 on the CPU, the model's dtype on an accelerator, moved to the host as fp32 only
    when first read: no host round trip inside the run); a running fp32 sum of them is
    compared with the stream the model itself passes into every block and into the final norm
    (additivity). Per-layer captures (the output projections' inputs) go into one
    [n_layers, T, width] buffer per kind in the model's dtype on the CPU, and are kept by
    reference on an accelerator. ``remove()`` takes every hook off again.
    """

    def __init__(self, n_embed: int, n_layers: int, device: torch.device):
        self.n_embed, self.n_layers, self.device = n_embed, n_layers, device
        self.handles = []
        self.deltas: torch.Tensor | None = None
        self._rows: tuple[torch.Tensor, ...] = ()  # deltas[c] views, made once
        self.running: torch.Tensor | None = None
        # "z", "acts", "attn_post_in", "mlp_post_in": a [n_layers, T, width] buffer, or a per-layer list
        self.per_layer: dict[str, torch.Tensor | list] = {}
        self.calls: dict[str, int] = {}
        # per stream the model passes on (block inputs, final norm input) and position:
        # ||running sum - model's stream|| and ||model's stream||, reduced once at the end
        self.stream_norms: torch.Tensor | None = None
        self._scratch: torch.Tensor | None = None
        self._streams_seen = 0

    def delta_dtype(self, model_dtype: torch.dtype) -> torch.dtype:
        """fp32 on the CPU (the Decomposition's own dtype: no copy later). On an accelerator the
        model's dtype: each delta is a model-dtype tensor, so this is exact, halves the memory
        of bf16 deltas and leaves the fp32 CPU copy to the first read (``dec.deltas``)."""
        return torch.float32 if self.device.type == "cpu" else model_dtype

    # -- writing ---------------------------------------------------------------------------
    def _count(self, key):
        self.calls[key] = self.calls.get(key, 0) + 1

    # Hooks run under no_grad (no .detach() needed); at T=64 their Python overhead is a third
    # of what decompose adds to a forward, hence the lean bodies.
    def _write_delta(self, component: int, value: torch.Tensor, key: str):
        self._count(key)
        value = value[0]
        if self.deltas is None:
            # empty, not zeros: every row is written once (the call counts check it), and
            # zero-filling [C, T, d] costs page faults for nothing
            self.deltas = buffers.empty((self.n_embed + 2 * self.n_layers, *value.shape),
                                        self.delta_dtype(value.dtype), self.device)
            self._rows = self.deltas.unbind(0)
            self.running = torch.zeros(value.shape, dtype=torch.float32, device=self.device)
        row = self._rows[component]
        row.copy_(value)
        self.running.add_(row)

    def _write_layer(self, key: str, layer: int, value: torch.Tensor):
        # The Decomposition moves these to the CPU as fp32 only when an analysis first reads
        # them. On an accelerator they are kept by reference (fresh inputs of the output
        # projections, never modified afterwards; its caching allocator recycles memory). On the
        # CPU, references would make the model fault in new memory for every layer: one copy
        # into a recycled buffer (resid_widgets.buffers) is cheaper and lets it reuse its own.
        self._count(key)
        value = value[0]
        kept = self.per_layer.get(key)
        if kept is None:
            kept = (buffers.empty((self.n_layers, *value.shape), value.dtype, value.device)
                    if value.device.type == "cpu" else [None] * self.n_layers)
            self.per_layer[key] = kept
        elif not isinstance(kept, list) and kept.shape[1:] != value.shape:  # widths differ per layer
            kept = self.per_layer[key] = list(kept.unbind(0))
        if isinstance(kept, list):
            kept[layer] = value
        else:
            kept[layer].copy_(value)

    def _check_stream(self, key: str, value: torch.Tensor):
        self._count(key)
        boundary = self._streams_seen
        self._streams_seen += 1
        actual = value[0]
        if actual.dtype != torch.float32 or actual.device != self.device:
            actual = actual.to(self.device, torch.float32)
        if self.stream_norms is None:
            self.stream_norms = torch.empty(self.n_layers + 1, 2, actual.shape[0], device=self.device)
            self._scratch = torch.empty_like(actual)
        if boundary > self.n_layers:
            return  # a forward that runs a block twice; the call counts reject it afterwards
        norms = self.stream_norms[boundary]
        torch.linalg.vector_norm(torch.sub(self.running, actual, out=self._scratch), dim=-1, out=norms[0])
        torch.linalg.vector_norm(actual, dim=-1, out=norms[1])

    def additivity_error(self) -> float:
        """max over streams and positions of ||running sum - stream|| / ||stream||."""
        gaps = self.stream_norms[:, 0] / self.stream_norms[:, 1].clamp_min(1e-12)
        return float(torch.nan_to_num(gaps, nan=0.0, posinf=0.0).max())

    # -- hooks -----------------------------------------------------------------------------
    @staticmethod
    def _input_of(args, kwargs):
        return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))

    def on_output(self, module, fn):
        self.handles.append(module.register_forward_hook(lambda m, a, out: fn(_first(out))))

    def on_input(self, module, fn):
        self.handles.append(module.register_forward_pre_hook(
            lambda m, args, kwargs: fn(self._input_of(args, kwargs)), with_kwargs=True))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _run(model, adapter: Adapter, token_ids: torch.Tensor, tokenizer) -> Decomposition:
    unembed = require_module(model, adapter.unembed, "unembedding", adapter)
    final_norm = require_module(model, adapter.final_norm, "final norm", adapter)
    layers = require_module(model, adapter.layers, "decoder layers", adapter)
    L = len(layers)
    n_embed = max(1, len(adapter.embeddings))
    device = module_device(model.get_input_embeddings())
    col = _Collector(n_embed, L, device)

    def layer_input(i):
        def seen(x):
            if i == 0 and not adapter.embeddings:
                col._write_delta(0, x, "embed")  # the embedding is what enters the first block
            col._check_stream("layer_in", x)
        return seen

    # The model's lock is held from the first hook to the readout: another thread's run of this
    # model waits, instead of firing these hooks in its forward (or loading offloaded weights
    # while this one runs).
    with model_left_as_found(model):
        try:
            for c, (label, path) in enumerate(adapter.embeddings):
                module = require_module(model, path, f"embedding '{label}'", adapter)
                col.on_output(module, lambda x, c=c, label=label: col._write_delta(c, x, label))
            for i, layer in enumerate(layers):
                col.on_input(layer, layer_input(i))
                for offset, kind in ((0, "attn"), (1, "mlp")):
                    post_path = getattr(adapter, f"{kind}_post_norm")
                    writer = require_module(layer, post_path or getattr(adapter, kind), f"{kind} output", adapter)
                    col.on_output(writer, lambda x, c=n_embed + 2 * i + offset, k=kind: col._write_delta(c, x, k))
                    if post_path:
                        col.on_input(writer, lambda x, i=i, k=kind: col._write_layer(f"{k}_post_in", i, x))
                col.on_input(require_module(layer, adapter.attn_out_proj, "attention output projection", adapter),
                             lambda x, i=i: col._write_layer("z", i, x))
                col.on_input(require_module(layer, adapter.mlp_out_proj, "FFN output projection", adapter),
                             lambda x, i=i: col._write_layer("acts", i, x))
            col.on_input(final_norm, lambda x: col._check_stream("final_in", x))
            out = model(input_ids=token_ids[None].to(device), use_cache=False)
        finally:
            col.remove()
        return _assemble(model, adapter, layers, final_norm, unembed, token_ids, tokenizer, col, out.logits[0])


def report_nonfinite(labels, deltas: torch.Tensor, dtype) -> dict[str, int]:
    """{label: count of NaN/inf values} of deltas [C, T, d], warned about when not empty."""
    counts = (~torch.isfinite(deltas)).flatten(1).sum(1).tolist()
    nonfinite = {lab: int(n) for lab, n in zip(labels, counts) if n}
    if nonfinite:
        warnings.warn(NonFiniteWarning(
            f"NaN/inf in the model's activations: {nonfinite} (values per component). They are kept "
            f"as NaN/inf and flagged in dec.nonfinite; the model's dtype {dtype} may overflow on "
            "this prompt."), stacklevel=4)
    return nonfinite


def enforce_additivity(err: float, nonfinite: dict, dtype, source: str, fix: str) -> None:
    """Raise (fp32) or warn (half precision) when the deltas miss the model's own stream."""
    if err <= FP32_ADDITIVITY_LIMIT or nonfinite:
        return
    msg = f"The recorded deltas do not add up to the model's stream (relative error {err:.2e}) for {source}."
    if dtype == torch.float32:
        raise AdditivityError(f"{msg} {fix}")
    warnings.warn(f"{msg} Expected in {dtype}: the model itself adds in {dtype}; deltas were "
                  "accumulated in fp32.", stacklevel=4)


def check_readout(dec: Decomposition, source: str, fix: str) -> None:
    """The readout self-check, at the last position, and the non-finite report of the logits.

    - NaN/inf in the model's own logits (e.g. a NaN final-norm weight) are counted into
      ``dec.nonfinite["logits"]`` and warned about; the check is then skipped.
    - Lens: the last state through the declared final norm + unembedding (+ soft-cap) against the
      model's own logits, on its top tokens and a spread sample of the vocabulary.
    - DLA: the components' DLA to the top token + ``dla_constant`` (soft-capped) against its logit.

    Each error is relative to 1 + max |logit|; past the limit, :class:`ReadoutError` for fp32
    models, a warning in half precision (as for additivity).
    """
    ro = dec.readout
    model_row = dec._logits[-1].float().to(ro.device)  # [V]
    if dec.nonfinite or not bool(torch.isfinite(model_row).all()):
        count = int((~torch.isfinite(dec.logits)).sum())
        if count:
            dec.nonfinite["logits"] = count
            warnings.warn(NonFiniteWarning(
                f"NaN/inf in the model's output logits ({count} values, flagged in dec.nonfinite['logits']): "
                "the final norm or the unembedding holds NaN/inf, or the stream overflowed. Lens values and "
                "attributions are NaN/inf where the logits are."), stacklevel=4)
        return
    last = dec._device_deltas()[:, -1].float().cpu()  # [C, d]: no full copy of the deltas yet
    final = last.sum(0)  # [d] the last state, without the [C, T, d] cumulative sum
    V = ro.vocab_size
    top = model_row.topk(min(READOUT_CHECK_TOP, V)).indices
    spread = torch.linspace(0, V - 1, min(READOUT_CHECK_SPREAD, V), device=top.device).long()
    tokens = torch.cat([top, spread])
    x = ro.norm(final.to(ro.device)[None])[0]
    lens = ro.unembed[tokens] @ x
    if ro.unembed_bias is not None:
        lens = lens + ro.unembed_bias[tokens]
    lens = ro.cap(lens)
    scale = 1.0 + float(model_row.abs().max())
    lens_err = float((lens - model_row[tokens]).abs().max()) / scale
    tid = int(top[0])
    direction = dec._readout_direction(tid, -1, reference=final)
    dla = float((last @ direction).sum()) + dec.dla_constant(tid)
    dla_err = abs(float(ro.cap(torch.tensor(dla))) - float(model_row[tid])) / scale
    err = max(lens_err, dla_err)
    exact = dec.dtype == torch.float32 and _exact_fp32_matmuls(ro.device)
    if err <= (FP32_READOUT_LIMIT if exact else HALF_READOUT_LIMIT):
        return  # (a NaN error goes on: it is no match)
    msg = (f"The final norm + unembedding read from {source} do not reproduce the model's own output at the "
           f"last position (lens logits off by {lens_err:.1e}, DLA sum + constant off the logit by {dla_err:.1e}, "
           "relative to 1 + max |logit|): lens values and attributions would be wrong.")
    if exact or err != err:
        raise ReadoutError(f"{msg} {fix}")
    warnings.warn(f"{msg} In {dec.dtype} (or with reduced-precision fp32 matmuls) part of this is the "
                  "model's own rounding.", stacklevel=4)


def _exact_fp32_matmuls(device: torch.device) -> bool:
    """False where torch may run fp32 matmuls in TF32 / bf16 (torch.set_float32_matmul_precision)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)


def _assemble(model, adapter, layers, final_norm, unembed, token_ids, tokenizer, col: _Collector, logits):
    L = len(layers)
    expected = {"layer_in": L, "attn": L, "mlp": L, "final_in": 1}
    if any(col.calls.get(k, 0) != n for k, n in expected.items()):
        raise UnsupportedModelError(
            f"Expected each of the {L} layers to run once; the hooks saw {col.calls}: the adapter "
            f"'{adapter.name}' does not match this model's forward (a custom forward or generation loop?).")
    labels = [label for label, _ in adapter.embeddings] or ["embed"]
    for i in range(L):
        labels += [f"attn.{i}", f"mlp.{i}"]
    err = col.additivity_error()
    dtype = next(model.parameters()).dtype
    nonfinite = {}
    # The running sum is finite exactly when every delta is (inf/NaN never add back to finite):
    # checking [T, d] instead of [C, T, d] saves a full pass over the deltas.
    if not bool(torch.isfinite(col.running).all()):
        nonfinite = report_nonfinite(labels, col.deltas, dtype)
    enforce_additivity(err, nonfinite, dtype, f"adapter '{adapter.name}'",
                       "The model's forward differs from what the adapter describes: "
                       "pass a corrected rw.Adapter(...) as adapter=.")

    # Readout: final norm + unembedding, on the device the model's head computes on.
    device = module_device(unembed)
    W_U, b_U = unembedding_fp32(unembed)
    norm = Norm.from_module(final_norm, adapter.norm_kind, adapter.norm_offset)
    readout = Readout(norm.to(device), W_U.to(device), None if b_U is None else b_U.to(device),
                      getattr(model.config, "final_logit_softcapping", None))

    config = model.config
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    per_layer = col.per_layer  # moved to the CPU lazily by the Decomposition, when first read
    post_inputs = {kind: per_layer.get(f"{kind}_post_in") for kind in ("attn", "mlp")}
    name = display_name(getattr(config, "name_or_path", "")) or type(model).__name__
    dec = Decomposition(
        tokens=[tokenizer.decode([int(t)]) for t in token_ids] if tokenizer is not None
        else [f"<{int(t)}>" for t in token_ids],
        token_ids=token_ids, labels=labels, deltas=col.deltas, logits=logits.detach(),
        readout=readout, n_heads=n_heads, head_inputs=per_layer["z"], neuron_acts=per_layer["acts"],
        weights=LayerWeights(layers, adapter, model), post_norm_inputs=post_inputs,
        parallel_residual=adapter.is_parallel(config), tokenizer=tokenizer, model=model, adapter=adapter,
        model_name=name, dtype=dtype, additivity_error=err, nonfinite=nonfinite)
    check_readout(dec, f"adapter '{adapter.name}'",
                  "The adapter's final_norm, norm_kind or norm_offset (or the config's final_logit_softcapping) "
                  "does not match how this model computes its logits: pass a corrected rw.Adapter(...) as adapter=.")
    return dec
