"""Shared pieces of the analyses: result tables, re-runs with hooks, attention capture.

Every re-run here leaves the model exactly as found: hooks are removed, train/eval flags and
``requires_grad`` are restored (the engine's :func:`model_left_as_found`), and the attention
implementation is put back after an eager run.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..adapters.base import Adapter, adapter_for, require_module
from ..engine import model_left_as_found
from ..errors import ResidWidgetsError
from ..weights import module_device


class AnalysisError(ResidWidgetsError, RuntimeError):
    """An analysis cannot be computed for this model or input (the message says why)."""


# --------------------------------------------------------------------------------------------
# Result tables
# --------------------------------------------------------------------------------------------
class Table:
    """A result with ``rows`` (list of dicts); ``to_pandas()`` when pandas is installed."""

    rows: list[dict[str, Any]]

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - pandas is optional
            raise ImportError("to_pandas() needs pandas: pip install pandas (or use .rows)") from e
        return pd.DataFrame(self.rows, columns=self.columns or None)

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_rows(self, n: int = 8) -> str:
        lines = []
        for row in self.rows[:n]:
            lines.append("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()
                                          if not isinstance(v, (list, tuple))))
        if len(self.rows) > n:
            lines.append(f"  ... ({len(self.rows)} rows)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.rows)} rows)\n{self._repr_rows()}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:+.4g}"
    return repr(v) if isinstance(v, str) else str(v)


def plotly():
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as e:  # pragma: no cover
        raise ImportError("figure() needs plotly: pip install plotly") from e
    return go, make_subplots


def tok_list(pairs, n: int = 5) -> str:
    """[(text, value)] -> "' Paris' +3.2, ' France' +2.9" for hover texts."""
    return ", ".join(f"{t!r} {v:+.2f}" for t, v in list(pairs)[:n])


# --------------------------------------------------------------------------------------------
# Model access
# --------------------------------------------------------------------------------------------
def require_model(dec) -> torch.nn.Module:
    model = getattr(dec, "model", None)
    adapter = getattr(dec, "adapter", None)
    if model is None or adapter is None:
        raise AnalysisError("This analysis re-runs the model, but the Decomposition holds no Hugging Face "
                            "model and adapter (TransformerLens models are not supported here): "
                            "decompose a transformers causal LM.")
    return model


def model_parts(model: torch.nn.Module, adapter: Adapter | None = None):
    """(adapter, decoder layers ModuleList) of a supported Hugging Face model."""
    adapter = adapter or adapter_for(model)
    layers = require_module(model, adapter.layers, "decoder layers", adapter)
    return adapter, layers


def input_device(model: torch.nn.Module) -> torch.device:
    return module_device(model.get_input_embeddings())


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _replace_first(out, new):
    if isinstance(out, tuple):
        return (new,) + tuple(out[1:])
    if isinstance(out, list):
        return [new] + list(out[1:])
    return new


def _hidden_arg(args, kwargs):
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


@contextmanager
def hooks():
    """Collects hook handles; removes every one on exit, also on errors."""
    handles: list = []
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


def identity_block_hook(rows: torch.Tensor | None = None):
    """A forward hook (with_kwargs) that makes a decoder block the identity, for the batch rows
    ``rows`` (a bool mask [B]) or for every row when None."""

    def hook(module, args, kwargs, out):
        x = _hidden_arg(args, kwargs)
        y = _first(out)
        if rows is None:
            new = x.to(y.dtype).clone()
        else:
            new = y.clone()
            new[rows.to(y.device)] = x[rows.to(x.device)].to(y.dtype)
        return _replace_first(out, new)

    return hook


def zero_rows_hook(rows: torch.Tensor):
    """A forward hook that zeroes the output (first element) for the batch rows ``rows``."""

    def hook(module, args, out):
        y = _first(out).clone()
        y[rows.to(y.device)] = 0
        return _replace_first(out, y)

    return hook


def capture_input_hook(store: list):
    def hook(module, args, kwargs):
        store.append(_hidden_arg(args, kwargs).detach())
    return hook


# --------------------------------------------------------------------------------------------
# Attention probabilities and values (one eager forward pass)
# --------------------------------------------------------------------------------------------
@dataclass
class AttentionCapture:
    """What every attention layer computed in one batched forward pass.

    probs: per layer [B, H, T, T] fp32 CPU, softmax attention weights (eager attention: causal
        mask, sliding windows, soft-caps and q/k norms as the model applies them).
    values: per layer [B, KV, T, d_head] fp32 CPU, the value vectors (bias included) the weights
        multiply; query head h reads value head ``h // (H // KV)`` (grouped-query attention).
    z: per layer [B, T, H*d_head] the input of the output projection (= Σ_j α v_j per head),
        captured from the same pass; ``max_error`` is the relative error of Σ_j α v_j against it.
    final: [B, T, d_model] the stream entering the final norm, from the same pass.
    """

    probs: list[torch.Tensor]
    values: list[torch.Tensor]
    z: list[torch.Tensor]
    max_error: float
    final: torch.Tensor | None = None  # [B, T, d] the input of the final norm (the last stream)

    @property
    def n_heads(self) -> int:
        return self.probs[0].shape[1]

    @property
    def n_kv_heads(self) -> int:
        return self.values[0].shape[1]

    def head_values(self, layer: int) -> torch.Tensor:
        """[B, H, T, d_head] the value vectors each query head reads (GQA heads repeated)."""
        v = self.values[layer]
        return v.repeat_interleave(self.n_heads // v.shape[1], dim=1)


def _all_configs(model: torch.nn.Module) -> list:
    seen, out = set(), []
    for cfg in [getattr(model, "config", None)] + [getattr(m, "config", None) for m in model.modules()]:
        if cfg is not None and id(cfg) not in seen and hasattr(cfg, "_attn_implementation_internal"):
            seen.add(id(cfg))
            out.append(cfg)
    return out


@contextmanager
def eager_attention(model: torch.nn.Module):
    """Within the block the model computes attention eagerly (explicit softmax weights);
    afterwards every config's attention implementation is exactly what it was."""
    configs = _all_configs(model)
    saved = [(cfg, cfg._attn_implementation_internal) for cfg in configs]
    try:
        for cfg in configs:
            cfg._attn_implementation_internal = "eager"
        yield
    finally:
        for cfg, impl in saved:
            cfg._attn_implementation_internal = impl


def capture_attention(model: torch.nn.Module, input_ids: torch.Tensor, adapter: Adapter | None = None,
                      check: float | None = None) -> AttentionCapture:
    """Run ``input_ids`` [B, T] once with eager attention and record every layer's attention
    probabilities and value vectors.

    The values are read where the model's own eager attention function receives them (after any
    RoPE/q-k norms; values are not rotated), by wrapping that function of the model's module for
    the duration of the call. The result is checked: Σ_j α[h,t,j] v_j must reproduce the input of
    the output projection to ``check`` (relative; default 1e-3 for fp32 models, 3e-2 for half
    precision, whose attention output is rounded), otherwise an :class:`AnalysisError` is raised.
    """
    adapter, layers = model_parts(model, adapter)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    attn_mods = [require_module(layer, adapter.attn, "attention", adapter) for layer in layers]
    index = {id(m): i for i, m in enumerate(attn_mods)}
    L = len(layers)
    probs: list = [None] * L
    values: list = [None] * L
    zs: list[list] = [[] for _ in range(L)]
    # the globals the attention forward looks its eager function up in (the class's own module,
    # or a parent's when the forward is inherited)
    namespaces: list[dict] = []
    for m in attn_mods:
        ns = getattr(type(m).forward, "__globals__", None)
        if ns is not None and "eager_attention_forward" in ns and all(ns is not n for n in namespaces):
            namespaces.append(ns)
    if not namespaces:
        raise AnalysisError(f"{type(attn_mods[0]).__name__} has no eager attention function to read "
                            "attention weights from (transformers' functional attention interface).")

    def wrap(original):
        def eager_attention_forward(module, query, key, value, *args, **kwargs):
            out, weights = original(module, query, key, value, *args, **kwargs)
            i = index.get(id(module))
            if i is not None and weights is not None:
                probs[i] = weights.detach()
                values[i] = value.detach()
            return out, weights
        return eager_attention_forward

    originals = [(ns, ns["eager_attention_forward"]) for ns in namespaces]
    with hooks() as handles:
        try:
            for ns, orig in originals:
                ns["eager_attention_forward"] = wrap(orig)
            for i, layer in enumerate(layers):
                proj = require_module(layer, adapter.attn_out_proj, "attention output projection", adapter)
                handles.append(proj.register_forward_pre_hook(capture_input_hook(zs[i]), with_kwargs=True))
            finals: list = []
            final_norm = require_module(model, adapter.final_norm, "final norm", adapter)
            handles.append(final_norm.register_forward_pre_hook(capture_input_hook(finals), with_kwargs=True))
            with model_left_as_found(model), eager_attention(model):
                model(input_ids=input_ids.to(input_device(model)), use_cache=False)
        finally:
            for ns, orig in originals:
                ns["eager_attention_forward"] = orig
    missing = [i for i in range(L) if probs[i] is None]
    if missing:
        raise AnalysisError(f"No attention weights were seen for layers {missing}: this model's attention "
                            "does not go through its eager attention function (e.g. GPT-2 with "
                            "reorder_and_upcast_attn).")
    probs = [p.float().cpu() for p in probs]
    values = [v.float().cpu() for v in values]
    z = [zz[0].float().cpu() for zz in zs]
    cap = AttentionCapture(probs, values, z, 0.0, finals[0].float().cpu() if finals else None)
    err = 0.0
    for l in range(L):
        B, H, T, _ = probs[l].shape
        rec = torch.einsum("bhts,bhsd->bthd", probs[l], cap.head_values(l)).reshape(B, T, -1)
        err = max(err, float((rec - z[l]).norm() / z[l].norm().clamp_min(1e-12)))
    cap.max_error = err
    if check is None:
        check = 1e-3 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 3e-2
    if err > check:
        raise AnalysisError(f"Attention weights times values do not reproduce the attention output "
                            f"(relative error {err:.1e}): the captured values are not the ones mixed.")
    return cap


_ATTN_CACHE: "dict[int, tuple[Any, AttentionCapture]]" = {}


def attention_of(dec) -> AttentionCapture:
    """The attention capture of a Decomposition's prompt (one eager pass, cached per decomposition)."""
    import weakref

    key = id(dec)
    hit = _ATTN_CACHE.get(key)
    if hit is not None and hit[0]() is dec:
        return hit[1]
    model = require_model(dec)
    cap = capture_attention(model, dec.token_ids, dec.adapter)
    _ATTN_CACHE[key] = (weakref.ref(dec, lambda _: _ATTN_CACHE.pop(key, None)), cap)
    return cap


def check_index(value: int, size: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -size <= value < size:
        raise IndexError(f"{what} {value!r} out of range (0..{size - 1})")
    return value % size


def post_gain(dec, kind: str, layer: int) -> torch.Tensor | None:
    """The gain of a sub-layer's post-norm (Gemma 2/3), or None."""
    if not getattr(dec.adapter, f"{kind}_post_norm", None):
        return None
    post = dec._weights.norm(layer, f"{kind}_post")
    return None if post is None else post.gain
