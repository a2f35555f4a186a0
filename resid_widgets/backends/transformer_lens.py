"""The TransformerLens backend: ``rw.decompose`` on a TransformerLens model.

Works with TransformerLens 4.x ``TransformerBridge`` (also after ``enable_compatibility_mode()``)
and, through the same hook names and weight attributes, with 3.x ``HookedTransformer`` (which
4.0 removed). One ``run_with_hooks`` pass records only what the decomposition needs:

- ``hook_embed`` (+ ``hook_pos_embed``), ``blocks.l.hook_attn_out``, ``blocks.l.hook_mlp_out``:
  the components, the same tensors ``cache.decompose_resid()`` stacks;
- ``blocks.l.attn.hook_z`` and ``blocks.l.mlp.hook_post``: head and neuron splits;
- ``blocks.l.hook_resid_pre`` and the last ``hook_resid_post``: the additivity check;
- the input of a sub-layer's post-norm where there is one (Gemma 2/3 ``ln{1,2}_post``; for a
  HookedTransformer OLMo 2/3 ``ln1``/``ln2``): ``hook_in`` on a bridge, ``hook_normalized *
  hook_scale`` on a HookedTransformer (its norms have no input hook).

A shortformer HookedTransformer's ``hook_pos_embed`` feeds only queries and keys, not the
stream, so it is no component there.

Weights come from TL's own views (``W_O`` [H, d_head, d], ``W_out`` [d_ff, d], ``W_U`` [d, V]),
so folded / centred weights of compatibility mode are read as the model uses them.
"""
from __future__ import annotations

import types

import torch

from ..checks import check_readout, enforce_additivity, report_nonfinite
from ..core import Decomposition
from ..errors import UnsupportedModelError
from ..lens import Readout
from ..model_state import model_left_as_found
from ..models import display_name
from ..norms import Norm
from ..tokens import check_tokenizer, prepare_token_ids

_NORM_NAMES = {"attn": "ln1", "mlp": "ln2", "attn_post": "ln1_post", "mlp_post": "ln2_post"}
# HookedTransformer OLMo 2/3 apply ln1 / ln2 to the sub-layer's output, before the residual add.
_POST_NORM_ARCHITECTURES = {"Olmo2ForCausalLM", "Olmo3ForCausalLM"}


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().float().cpu().clone()


def _attr(obj, name):
    """getattr that treats a raising property (bias-free projections) as absent."""
    try:
        return getattr(obj, name, None)
    except (AttributeError, RuntimeError):
        return None


def tl_norm(ln: torch.nn.Module | None, cfg) -> Norm | None:
    """A TL normalisation module (bridge or HookedTransformer) as a :class:`Norm`.

    Args:
        ln: the normalisation module, or None (no norm).
        cfg: the model's TransformerLens config.
    """
    if ln is None:
        return None
    name = type(ln).__name__
    rms = getattr(ln, "uses_rms_norm", None)
    kind = "rms" if (("RMS" in name) if rms is None else rms) else "layer"
    cfg_eps = float(getattr(cfg, "eps", 1e-5))
    d = int(cfg.d_model)
    if "Pre" in name:  # LayerNormPre / RMSNormPre: no weights
        return Norm(kind, torch.ones(d), None, cfg_eps)
    orig = getattr(ln, "original_component", None)
    if orig is not None:  # TransformerBridge: the wrapped HF norm holds the weights
        uses_offset = getattr(ln, "uses_weight_offset", None)
        if uses_offset is None:  # TL 3.x bridges have no such property, only the config flag
            uses_offset = kind == "rms" and bool(getattr(cfg, "rmsnorm_uses_offset", False))
        offset = 1.0 if uses_offset else 0.0
        norm = Norm.from_module(orig, kind, offset)
        native = getattr(ln, "use_native_layernorm_autograd", False) or getattr(cfg, "layer_norm_folding", False)
        if not native:  # the bridge's own python forward uses cfg.eps
            norm.eps = cfg_eps
        if kind == "rms":
            norm.bias = None
        return norm
    w, b = _attr(ln, "w"), _attr(ln, "b")  # HookedTransformer LayerNorm / RMSNorm
    return Norm(kind, torch.ones(d) if w is None else _f32(w), _f32(b) if kind == "layer" else None, cfg_eps)


class TLWeights:
    """:class:`~resid_widgets.weights.WeightsReader` over TL's weight views (fp32 CPU copies).

    Args:
        model: a HookedTransformer or a TransformerBridge.
        norm_names: per sub-layer ("attn", "mlp", "attn_post", "mlp_post"), the attribute of a
            block that holds that norm.
    """

    def __init__(self, model, norm_names: dict[str, str] = _NORM_NAMES):
        self._blocks = model.blocks
        self._cfg = model.cfg
        self._norm_names = norm_names
        self._norms: dict[tuple[int, str], Norm | None] = {}

    def attn_out(self, layer: int):
        attn = self._blocks[layer].attn
        W_O = attn.W_O  # [H, d_head, d] (or [H*d_head, d])
        W = W_O.reshape(-1, W_O.shape[-1]).t()
        return _f32(W), _f32(_attr(attn, "b_O"))

    def mlp_out(self, layer: int):
        mlp = self._blocks[layer].mlp
        return _f32(mlp.W_out.t()), _f32(_attr(mlp, "b_out"))

    def mlp_key(self, layer: int):
        mlp = self._blocks[layer].mlp
        gate = _attr(mlp, "W_gate")
        if gate is not None:
            return _f32(gate.t()), None
        return _f32(mlp.W_in.t()), _f32(_attr(mlp, "b_in"))

    def norm(self, layer: int, which: str) -> Norm | None:
        key = (layer, which)
        if key not in self._norms:
            self._norms[key] = tl_norm(getattr(self._blocks[layer], self._norm_names[which], None), self._cfg)
        return self._norms[key]


def _is_hooked_transformer(model) -> bool:
    return any(cls.__name__ == "HookedTransformer" for cls in type(model).__mro__)


def _norm_names(model) -> dict[str, str]:
    """Block attribute of each norm; OLMo 2/3 HookedTransformers use ln1/ln2 as post-norms."""
    arch = getattr(model.cfg, "original_architecture", None)
    if _is_hooked_transformer(model) and arch in _POST_NORM_ARCHITECTURES:
        # no pre-norms there: "" names no block attribute, so norm(l, "attn") is None
        return {"attn": "", "mlp": "", "attn_post": "ln1", "mlp_post": "ln2"}
    return _NORM_NAMES


def _hf_config(model):
    """The config (bos/eos/pad ids) of the HF model a TransformerBridge wraps; None otherwise."""
    return getattr(getattr(model, "original_model", None), "config", None)


def _token_ids(model, prompt, tokenizer) -> torch.Tensor:
    cfg = model.cfg
    limits = types.SimpleNamespace(vocab_size=cfg.d_vocab, n_ctx=cfg.n_ctx)
    if isinstance(prompt, str) and prompt and getattr(model, "tokenizer", None) is not None:
        # TL's own convention (BOS prepended per cfg.default_prepend_bos), as in model(prompt).
        prompt = model.to_tokens(prompt)[0].cpu()
    return prepare_token_ids(prompt, tokenizer, limits, None)


def decompose_transformer_lens(model, prompt, tokenizer=None, extra_hooks=()) -> Decomposition:
    """:func:`resid_widgets.decompose` for a TransformerLens model (see the module docstring).

    ``extra_hooks``: (hook name, fn) pairs run before the recording hooks at the same hook point
    (the edits of ``dec.edit``), so the recorded run is the edited one.

    Args:
        model: a HookedTransformer or a TransformerBridge.
        prompt: text (needs a tokenizer: ``tokenizer`` or the model's) or token ids [T].
        tokenizer: default the model's own.
        extra_hooks: see above.
    """
    cfg = model.cfg
    if getattr(cfg, "attn_only", False):
        raise UnsupportedModelError("Attention-only TransformerLens models have no MLP components; "
                                    "resid_widgets expects an attention and an MLP per layer.")
    if getattr(model, "ln_final", None) is None:
        raise UnsupportedModelError("This TransformerLens model has no final norm (normalization_type=None); "
                                    "resid_widgets reads logits through a final LayerNorm or RMSNorm.")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    check_tokenizer(tokenizer, _hf_config(model), int(cfg.d_vocab))
    token_ids = _token_ids(model, prompt, tokenizer)
    L = int(cfg.n_layers)
    available = set(model.hook_dict)
    norm_names = _norm_names(model)
    post_norms = {"attn": norm_names["attn_post"], "mlp": norm_names["mlp_post"]}
    final_name = f"blocks.{L - 1}.hook_resid_post"
    wanted = ["hook_embed", final_name]
    if getattr(cfg, "positional_embedding_type", "standard") != "shortformer":
        wanted.append("hook_pos_embed")
    for l in range(L):
        wanted += [f"blocks.{l}.{n}" for n in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out",
                                               "attn.hook_z", "mlp.hook_post")]
        for ln in post_norms.values():
            name = f"blocks.{l}.{ln}"
            wanted += ([f"{name}.hook_in"] if f"{name}.hook_in" in available
                       else [f"{name}.hook_normalized", f"{name}.hook_scale"])
    seen: dict[str, torch.Tensor] = {}

    def keeper(name):  # keyed by the name asked for (bridge hook points may carry another name)
        def keep(tensor, hook):
            seen[name] = tensor.detach()
        return keep

    missing = [name for name, _ in extra_hooks if name not in available]
    if missing:
        raise UnsupportedModelError(f"{type(model).__name__} has no TransformerLens hook {missing[0]!r}, which this edit "
                                    "needs: edit the Hugging Face model instead (rw.decompose(hf_model, ...).edit(...)).")
    fwd_hooks = list(extra_hooks) + [(name, keeper(name)) for name in wanted if name in available]
    device = getattr(cfg, "device", None) or "cpu"
    with model_left_as_found(model):
        logits = model.run_with_hooks(token_ids[None].to(device), fwd_hooks=fwd_hooks, return_type="logits")

    def get(name, required=True):
        if name not in seen:
            if not required:
                return None
            raise UnsupportedModelError(
                f"TransformerLens hook '{name}' did not fire for {type(model).__name__} "
                f"(architecture {getattr(cfg, 'architecture', '?')}): resid_widgets needs the standard "
                "hook_embed / blocks.l.hook_attn_out / hook_mlp_out / attn.hook_z / mlp.hook_post hooks.")
        return seen[name][0].float().cpu()

    labels, deltas = ["embed"], [get("hook_embed")]
    pos = get("hook_pos_embed", required=False)
    if pos is not None:
        labels.append("pos_embed")
        deltas.append(pos.expand_as(deltas[0]))
    n_embed = len(deltas)
    for l in range(L):
        deltas += [get(f"blocks.{l}.hook_attn_out"), get(f"blocks.{l}.hook_mlp_out")]
        labels += [f"attn.{l}", f"mlp.{l}"]
    deltas = torch.stack(deltas)
    T = deltas.shape[1]

    dtype = getattr(cfg, "dtype", None) or torch.float32
    nonfinite = report_nonfinite(labels, deltas, dtype)

    states = deltas.cumsum(0)
    boundaries = [(n_embed - 1 + 2 * l, get(f"blocks.{l}.hook_resid_pre")) for l in range(L)]
    boundaries.append((len(labels) - 1, get(final_name)))
    err = 0.0
    for idx, actual in boundaries:
        rel = (states[idx] - actual).norm(dim=-1) / actual.norm(dim=-1).clamp_min(1e-12)
        rel = rel[torch.isfinite(rel)]
        if rel.numel():
            err = max(err, float(rel.max()))
    enforce_additivity(err, nonfinite, dtype, f"the TransformerLens {type(model).__name__}",
                       "This architecture writes the stream outside hook_attn_out / hook_mlp_out "
                       "(hybrid, MoE or custom block?).")

    W_U = model.W_U  # [d, V]
    unembed_device = W_U.device
    b_U = _attr(model, "b_U")
    softcap = getattr(cfg, "output_logits_soft_cap", None)
    readout = Readout(tl_norm(model.ln_final, cfg).to(unembed_device),
                      W_U.detach().float().t().contiguous(),
                      None if b_U is None else b_U.detach().float(),
                      float(softcap) if softcap and softcap > 0 else None)
    logits = logits[0].float().cpu()

    def post_norm_input(name):
        x = get(f"{name}.hook_in", required=False)
        if x is None:  # HookedTransformer norms: input = normalized * scale (centred for LayerNorm)
            normalized = get(f"{name}.hook_normalized", required=False)
            scale = get(f"{name}.hook_scale", required=False)
            x = None if normalized is None or scale is None else normalized * scale
        return x

    post_inputs = {}
    for kind, ln in post_norms.items():
        ins = [post_norm_input(f"blocks.{l}.{ln}") for l in range(L)]
        post_inputs[kind] = ins if all(i is not None for i in ins) else None
    tokens = ([tokenizer.decode([int(t)]) for t in token_ids] if tokenizer is not None
              else [f"<{int(t)}>" for t in token_ids])
    dec = Decomposition(
        tokens=tokens, token_ids=token_ids, labels=labels, deltas=deltas, logits=logits,
        readout=readout, n_heads=int(cfg.n_heads),
        head_inputs=[get(f"blocks.{l}.attn.hook_z").reshape(T, -1) for l in range(L)],
        neuron_acts=[get(f"blocks.{l}.mlp.hook_post") for l in range(L)],
        weights=TLWeights(model, norm_names), post_norm_inputs=post_inputs,
        parallel_residual=bool(getattr(cfg, "parallel_attn_mlp", False)), tokenizer=tokenizer,
        model=model, adapter=None, model_name=display_name(getattr(cfg, "model_name", "")) or type(model).__name__,
        dtype=dtype, additivity_error=err, nonfinite=nonfinite)
    check_readout(dec, f"the TransformerLens {type(model).__name__}",
                  "Its ln_final, W_U / b_U or cfg.output_logits_soft_cap are not what it computes its logits "
                  "with (a custom unembedding or final norm?).")
    return dec
