"""``decompose``: one forward pass with hooks, collected into a :class:`Decomposition`.

The engine is family-agnostic: an :class:`~resid_widgets.adapters.Adapter` says which modules
write the stream; here we hook them, run once, always remove the hooks and restore the model's
train/eval flags, and check that the deltas add up to the model's own stream.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from .adapters.base import Adapter, adapter_for, get_module, require_module
from .core import Decomposition, LayerWeights
from .errors import AdditivityError, NonFiniteWarning, PromptError, UnsupportedModelError
from .lens import Readout
from .norms import Norm
from .weights import module_device, unembedding_fp32

# fp32 models must add up to rounding; anything above this means the adapter is wrong.
FP32_ADDITIVITY_LIMIT = 1e-4


def decompose(model, prompt, tokenizer=None, *, adapter: Adapter | None = None) -> Decomposition:
    """Run ``prompt`` through ``model`` once and split its residual stream into components.

    Args:
        model: a Hugging Face causal LM of a supported family (GPT-2, GPT-NeoX/Pythia, Llama,
            Mistral, Qwen2/3, SmolLM, Gemma 1/2/3, Phi-3), also dispatched with accelerate's
            ``device_map``; or a TransformerLens ``HookedTransformer`` / ``TransformerBridge``.
        prompt: text (needs ``tokenizer``), or token ids as a LongTensor/list of shape [T] or [1, T].
        tokenizer: the model's tokenizer; used to tokenize text and decode token texts.
        adapter: describe an unsupported family yourself (see :class:`resid_widgets.Adapter`).

    Returns:
        :class:`Decomposition` with ``deltas``/``states`` [C, T, d_model] (float32, CPU) and
        ``logits`` [T, vocab], C = 1 (+1 for learned positions) + 2 * n_layers.
    """
    if not isinstance(model, torch.nn.Module):
        raise UnsupportedModelError(f"model must be a torch.nn.Module (a causal LM), not {type(model).__name__}")
    if _is_transformer_lens(model):
        from .adapters.transformer_lens import decompose_transformer_lens
        return decompose_transformer_lens(model, prompt, tokenizer=tokenizer)
    adapter = adapter or adapter_for(model)
    token_ids = prepare_token_ids(prompt, tokenizer, model.config, adapter)
    return _run(model, adapter, token_ids, tokenizer)


def _is_transformer_lens(model) -> bool:
    return any(cls.__module__.startswith("transformer_lens") for cls in type(model).__mro__)


def prepare_token_ids(prompt, tokenizer, config, adapter: Adapter | None = None) -> torch.Tensor:
    """Text or ids -> LongTensor [T], with clear errors for empty / too long / malformed prompts."""
    if isinstance(prompt, str):
        if not prompt:
            raise PromptError("The prompt is empty: pass some text or token ids.")
        if tokenizer is None:
            raise PromptError("The prompt is text but no tokenizer was given: pass tokenizer=..., "
                              "or pass token ids (a LongTensor of shape [T]).")
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    elif isinstance(prompt, (list, tuple)) or isinstance(prompt, torch.Tensor):
        ids = torch.as_tensor(prompt)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
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
    attrs = adapter.max_positions_attrs if adapter else ("max_position_embeddings", "n_positions", "n_ctx")
    limit = next((getattr(config, a) for a in attrs if getattr(config, a, None)), None)
    if limit is not None and ids.numel() > limit:
        raise PromptError(f"The prompt has {ids.numel()} tokens but the model's context holds {limit}: "
                          "shorten the prompt.")
    return ids


@contextmanager
def model_left_as_found(model: torch.nn.Module):
    """eval() and no_grad for the run; afterwards every module's train/eval flag and every
    parameter's requires_grad are exactly as before, also when the run raises."""
    flags = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, flag in flags:
            m.training = flag
        for p, flag in grads:
            p.requires_grad_(flag)


class _Recorder:
    """Places forward hooks and keeps what they see; ``remove()`` takes every hook off again."""

    def __init__(self):
        self.handles = []
        self.seen: dict[str, list] = {}

    def _keep(self, key, value):
        if isinstance(value, (tuple, list)):
            value = value[0]
        self.seen.setdefault(key, []).append(value.detach())

    def output(self, module, key):
        self.handles.append(module.register_forward_hook(lambda m, a, out: self._keep(key, out)))

    def input(self, module, key):
        def hook(m, args, kwargs):
            self._keep(key, args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()))))
        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def stacked(self, key) -> torch.Tensor | list[torch.Tensor] | None:
        """Per-call captures as fp32 CPU tensors [calls, T, ...] (batch dim dropped).

        Stacked on the model's device first, so a GPU model pays one transfer per kind of capture,
        not one per layer."""
        if key not in self.seen:
            return None
        values = self.seen[key]
        try:
            return torch.stack([v[0] for v in values]).float().cpu()
        except RuntimeError:  # different devices (device_map) or widths: one at a time
            return [v[0].float().cpu() for v in values]


def _run(model, adapter: Adapter, token_ids: torch.Tensor, tokenizer) -> Decomposition:
    unembed = require_module(model, adapter.unembed, "unembedding", adapter)
    final_norm = require_module(model, adapter.final_norm, "final norm", adapter)
    layers = require_module(model, adapter.layers, "decoder layers", adapter)
    L = len(layers)
    rec = _Recorder()
    try:
        for label, path in adapter.embeddings:
            rec.output(require_module(model, path, f"embedding '{label}'", adapter), label)
        for i, layer in enumerate(layers):
            rec.input(layer, "layer_in")
            rec.output(require_module(layer, adapter.attn, "attention", adapter), "attn")
            rec.output(require_module(layer, adapter.mlp, "FFN", adapter), "mlp")
            rec.input(require_module(layer, adapter.attn_out_proj, "attention output projection", adapter), "z")
            rec.input(require_module(layer, adapter.mlp_out_proj, "FFN output projection", adapter), "acts")
            for kind in ("attn", "mlp"):
                path = getattr(adapter, f"{kind}_post_norm")
                if path:
                    post = require_module(layer, path, f"{kind} post-norm", adapter)
                    rec.input(post, f"{kind}_post_in")
                    rec.output(post, f"{kind}_post_out")
        rec.input(final_norm, "final_in")
        with model_left_as_found(model):
            device = module_device(model.get_input_embeddings())
            out = model(input_ids=token_ids[None].to(device), use_cache=False)
    finally:
        rec.remove()
    return _assemble(model, adapter, layers, final_norm, unembed, token_ids, tokenizer, rec, out.logits[0])


def _assemble(model, adapter, layers, final_norm, unembed, token_ids, tokenizer, rec, logits):
    L = len(layers)
    if len(rec.seen.get("layer_in", [])) != L or len(rec.seen.get("attn", [])) != L:
        raise UnsupportedModelError(
            f"Expected each of the {L} layers to run once, saw {len(rec.seen.get('layer_in', []))} layer "
            f"and {len(rec.seen.get('attn', []))} attention calls: the adapter '{adapter.name}' does not "
            "match this model's forward (gradient checkpointing or a custom forward?).")
    layer_in = rec.stacked("layer_in")
    post = adapter.attn_post_norm is not None, adapter.mlp_post_norm is not None
    attn = rec.stacked("attn_post_out" if post[0] else "attn")
    mlp = rec.stacked("mlp_post_out" if post[1] else "mlp")
    if adapter.embeddings:
        embeds = [rec.stacked(label)[0] for label, _ in adapter.embeddings]
        embeds = [e.expand_as(layer_in[0]) for e in embeds]
        labels = [label for label, _ in adapter.embeddings]
    else:
        embeds, labels = [layer_in[0]], ["embed"]
    deltas = list(embeds)
    for i in range(L):
        deltas += [attn[i], mlp[i]]
        labels += [f"attn.{i}", f"mlp.{i}"]
    deltas = torch.stack(deltas)
    final_in = rec.stacked("final_in")[0]

    nonfinite = {lab: int((~torch.isfinite(d)).sum()) for lab, d in zip(labels, deltas)}
    nonfinite = {k: v for k, v in nonfinite.items() if v}
    if nonfinite:
        warnings.warn(NonFiniteWarning(
            f"NaN/inf in the model's activations: {nonfinite} (values per component). They are kept "
            "as NaN/inf and flagged in dec.nonfinite; the model's dtype "
            f"{next(model.parameters()).dtype} may overflow on this prompt."), stacklevel=3)

    # Additivity: the running sum must equal the stream the model itself passed on.
    states = deltas.cumsum(0)
    n_embed = len(embeds)
    boundaries = [(n_embed - 1 + 2 * i, layer_in[i]) for i in range(L)] + [(len(labels) - 1, final_in)]
    err = 0.0
    for idx, actual in boundaries:
        diff = (states[idx] - actual).norm(dim=-1)
        rel = diff / actual.norm(dim=-1).clamp_min(1e-12)
        rel = rel[torch.isfinite(rel)]
        if rel.numel():
            err = max(err, float(rel.max()))
    dtype = next(model.parameters()).dtype
    if err > FP32_ADDITIVITY_LIMIT and not nonfinite:
        msg = (f"The recorded deltas do not add up to the model's stream (relative error {err:.2e}) "
               f"for adapter '{adapter.name}'.")
        if dtype == torch.float32:
            raise AdditivityError(msg + " The model's forward differs from what the adapter describes: "
                                  "pass a corrected rw.Adapter(...) as adapter=.")
        warnings.warn(msg + f" Expected in {dtype}: the model itself adds in {dtype}; deltas were "
                      "accumulated in fp32.", stacklevel=3)

    # Readout: final norm + unembedding, on the device the model's head computes on.
    device = module_device(unembed)
    W_U, b_U = unembedding_fp32(unembed)
    norm = Norm.from_module(final_norm, adapter.norm_kind, adapter.norm_offset)
    readout = Readout(norm.to(device), W_U.to(device), None if b_U is None else b_U.to(device),
                      getattr(model.config, "final_logit_softcapping", None))

    config = model.config
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    post_inputs = {kind: rec.stacked(f"{kind}_post_in") for kind in ("attn", "mlp")}
    name = getattr(config, "_name_or_path", "") or type(model).__name__
    return Decomposition(
        tokens=[tokenizer.decode([int(t)]) for t in token_ids] if tokenizer is not None
        else [f"<{int(t)}>" for t in token_ids],
        token_ids=token_ids, labels=labels, deltas=deltas, logits=logits.float().cpu(),
        readout=readout, n_heads=n_heads, head_inputs=rec.stacked("z"), neuron_acts=rec.stacked("acts"),
        weights=LayerWeights(layers, adapter), post_norm_inputs=post_inputs,
        parallel_residual=adapter.is_parallel(config), tokenizer=tokenizer, model=model, adapter=adapter,
        model_name=name, dtype=dtype, additivity_error=err, nonfinite=nonfinite)
