"""Shared pieces of the analyses: result tables, re-runs with hooks, attention capture.

Every re-run here holds the model's lock from its first hook to its last (runs of one model from
several threads take turns) and leaves the model exactly as found: hooks are removed, train/eval
flags and ``requires_grad`` are restored (:mod:`resid_widgets.model_state`), and the attention
implementation is put back after an eager run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..adapters.base import Adapter, adapter_for, require_module
from ..model_state import hooks, model_left_as_found
from ..attention_capture import (CaptureError, implementation_switched, recording,
                                 register_capture_implementation)
from ..core import as_index
from ..errors import ResidWidgetsError
from ..runner import Capture, hidden_input, input_device, run_forward


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
    """(plotly.graph_objects, plotly.subplots.make_subplots): plotly is a required dependency."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    return go, make_subplots


def tok_list(pairs, n: int = 5) -> str:
    """[(text, value)] -> "' Paris' +3.2, ' France' +2.9" for hover texts.

    Args:
        pairs: (text, value) pairs.
        n: how many to list.
    """
    return ", ".join(f"{t!r} {v:+.2f}" for t, v in list(pairs)[:n])


# --------------------------------------------------------------------------------------------
# Model access
# --------------------------------------------------------------------------------------------
def require_model(dec) -> torch.nn.Module:
    """The model ``dec`` was made with, for analyses that re-run it.

    Args:
        dec: a :class:`~resid_widgets.Decomposition`.

    Raises:
        AnalysisError: ``dec`` holds no Hugging Face model and adapter (e.g. a TransformerLens one).
    """
    model = getattr(dec, "model", None)
    adapter = getattr(dec, "adapter", None)
    if model is None or adapter is None:
        raise AnalysisError("This analysis re-runs the model, but the Decomposition holds no Hugging Face "
                            "model and adapter (TransformerLens models are not supported here): "
                            "decompose a transformers causal LM.")
    return model


def model_parts(model: torch.nn.Module, adapter: Adapter | None = None):
    """(adapter, decoder layers ModuleList) of a supported Hugging Face model.

    Args:
        model: a Hugging Face causal LM.
        adapter: its family's adapter (default: the registered one).
    """
    adapter = adapter or adapter_for(model)
    layers = require_module(model, adapter.layers, "decoder layers", adapter)
    return adapter, layers


# --------------------------------------------------------------------------------------------
# Attention probabilities and values (one eager forward pass)
# --------------------------------------------------------------------------------------------
@dataclass
class AttentionCapture:
    """What every attention layer computed in one batched forward pass.

    Attributes:
        probs: per layer [B, H, T, T] fp32 CPU, softmax attention weights (causal mask, sliding
            windows, soft-caps and q/k norms as the model applies them).
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
        """[B, H, T, d_head] the value vectors each query head reads (GQA heads repeated).

        Args:
            layer: the layer.
        """
        v = self.values[layer]
        return v.repeat_interleave(self.n_heads // v.shape[1], dim=1)


def capture_attention(model: torch.nn.Module, input_ids: torch.Tensor, adapter: Adapter | None = None,
                      check: float | None = None, reference: torch.Tensor | None = None) -> AttentionCapture:
    """Run ``input_ids`` [B, T] once and record every layer's attention probabilities and values.

    The weights are read through transformers' public ``AttentionInterface``: the model runs one
    pass with resid_widgets' eager capture function (:mod:`resid_widgets.attention_capture`) and
    gets its own attention implementation back afterwards. Values are read where attention
    receives them (after RoPE / q-k norms; values are not rotated). Checked as described in
    :func:`attention_pass`. Keeps [L, B, H, T, T] fp32: for long prompts, reduce each layer as it
    runs with :func:`attention_pass` instead.

    Args:
        model: a Hugging Face causal LM of a supported family.
        input_ids: LongTensor [B, T] (or [T]).
        adapter: the family's :class:`~resid_widgets.Adapter` (default: the registered one).
        check: the relative tolerance of the checks (default 1e-4 for fp32, 3e-2 for half
            precision).
        reference: [B, T, d_model] the stream entering the final norm, when the caller has it
            (saves the plain forward pass of the check).

    Returns:
        :class:`AttentionCapture` with per layer probabilities [B, H, T, T] and values
        [B, KV, T, d_head] (fp32, CPU).

    Raises:
        AnalysisError: a check failed (the capture did not compute attention as the model does).
    """
    n_layers = len(model_parts(model, adapter)[1])
    probs: list = [None] * n_layers
    values: list = [None] * n_layers

    def keep(layer: int, p: torch.Tensor, v: torch.Tensor) -> None:
        probs[layer], values[layer] = p.float().cpu(), v.float().cpu()

    run = attention_pass(model, input_ids, keep, adapter, check=check, reference=reference)
    return AttentionCapture(probs, values, run.z, run.max_error, run.final)


@dataclass
class AttentionPass:
    """What one checked eager pass leaves besides what its ``on_layer`` callback kept.

    Attributes:
        z: per layer [B, T, H*d_head] fp32 CPU, the input of the output projection (empty when the
            pass was asked not to keep it).
        final: [B, T, d_model] fp32 CPU, the stream entering the final norm.
        max_error: the worst layer's relative error of Σ_j α v_j against z.
        stream_error: relative error of ``final`` against the model's own pass.
    """

    z: list[torch.Tensor]
    final: torch.Tensor
    max_error: float
    stream_error: float


def attention_pass(model: torch.nn.Module, input_ids: torch.Tensor,
                   on_layer: Callable[[int, torch.Tensor, torch.Tensor], None], adapter: Adapter | None = None,
                   check: float | None = None, reference: torch.Tensor | None = None,
                   keep_z: bool = True) -> AttentionPass:
    """Run ``input_ids`` [B, T] once with eager attention; ``on_layer(layer, probs, values)`` gets
    each layer's probabilities [B, H, T, S] and values [B, KV, S, d_head] (model dtype and device)
    as it runs, so a caller that reduces them at once holds one layer's [B, H, T, S] at a time.

    Two checks, each raising :class:`AnalysisError` past ``check`` (relative; default 1e-4 for
    fp32 models, 3e-2 for half precision):

    - the capture pass's final stream against the model's own pass (``reference`` [B, T, d] when
      the caller has it, e.g. a Decomposition's last state; otherwise one plain forward pass):
      the capture computed attention the way the model does;
    - Σ_j α[h, t, j] v_j against the input of the output projection, layer by layer as the pass
      goes: the weights and values handed to ``on_layer``, with the grouped-query mapping, are the
      ones mixed.

    ``keep_z=False`` leaves ``z`` empty (the checks still run). Hooks the caller registers around
    the call see the same pass.

    Args:
        model: a Hugging Face causal LM of a supported family.
        input_ids: LongTensor [B, T] (or [T]).
        on_layer: called with (layer, probs, values) as each layer runs.
        adapter: its family's adapter (default: the registered one).
        check: the checks' relative tolerance (default as above).
        reference: [B, T, d_model] the stream entering the final norm, when the caller has it.
        keep_z: keep the output projections' inputs.

    Raises:
        AnalysisError: a check failed.
    """
    adapter, layers = model_parts(model, adapter)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    attn_mods = [require_module(layer, adapter.attn, "attention", adapter) for layer in layers]
    L = len(layers)
    z: list = [None] * L
    mixed: list = [None] * L  # Σ_j α v_j of a layer [B, T, H*dh], until its output projection runs
    errors: list = [None] * L
    finals: list = []
    final_norm = require_module(model, adapter.final_norm, "final norm", adapter)
    ids = input_ids.to(input_device(model))
    if check is None:
        check = 1e-4 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 3e-2
    if reference is None:
        reference = run_forward(model, ids, capture={"final": Capture(final_norm, on="input")}).captured["final"]

    def record(layer: int, probs: torch.Tensor, values: torch.Tensor) -> None:
        heads = probs.shape[1]
        v = values.float()
        v = v.repeat_interleave(heads // v.shape[1], dim=1) if heads != v.shape[1] else v
        B, _, T, _ = probs.shape
        mixed[layer] = torch.matmul(probs.float(), v).transpose(1, 2).reshape(B, T, -1)
        on_layer(layer, probs, values)

    def compare(layer: int):
        def hook(module, args, kwargs):
            seen, rebuilt = hidden_input(args, kwargs).detach().float(), mixed[layer]
            mixed[layer] = None
            if rebuilt is not None:
                errors[layer] = float((rebuilt - seen).norm() / seen.norm().clamp_min(1e-12))
            if keep_z:
                z[layer] = seen.cpu()
        return hook

    name = register_capture_implementation()
    try:
        with hooks(model) as handles, recording(attn_mods, record):
            for i, layer in enumerate(layers):
                proj = require_module(layer, adapter.attn_out_proj, "attention output projection", adapter)
                handles.append(proj.register_forward_pre_hook(compare(i), with_kwargs=True))
            Capture(final_norm, on="input").register(handles, finals.append)
            with model_left_as_found(model), implementation_switched(model, name):
                model(input_ids=ids, use_cache=False)
    except CaptureError as exc:
        raise AnalysisError(str(exc)) from None
    missing = [i for i in range(L) if errors[i] is None]
    if missing:
        raise AnalysisError(f"No attention weights were seen for layers {missing}: this model's attention does not "
                            "go through transformers' AttentionInterface (e.g. GPT-2 with reorder_and_upcast_attn).")
    final = finals[0].float().cpu()
    reference = reference.float().cpu().reshape(final.shape)
    stream_error = float((final - reference).norm() / reference.norm().clamp_min(1e-12))
    if not stream_error <= check:
        raise AnalysisError(
            f"The attention capture pass does not reproduce the model's own output (relative error "
            f"{stream_error:.1e}): this family computes attention differently from the eager maths "
            "resid_widgets reads weights with (scaling, mask, soft-cap, sinks). Please report the model type.")
    err = max(errors)
    if not err <= max(check, 1e-3):
        raise AnalysisError(f"Attention weights times values do not reproduce the attention output "
                            f"(relative error {err:.1e}): the captured values are not the ones mixed.")
    return AttentionPass(z if keep_z else [], final, err, stream_error)


_ATTN_CACHE: "dict[int, tuple[Any, AttentionCapture]]" = {}


def attention_of(dec) -> AttentionCapture:
    """The attention capture of a Decomposition's prompt (one eager pass, cached per decomposition).

    Args:
        dec: a Decomposition of a Hugging Face model.
    """
    import weakref

    key = id(dec)
    hit = _ATTN_CACHE.get(key)
    if hit is not None and hit[0]() is dec:
        return hit[1]
    model = require_model(dec)
    cap = capture_attention(model, dec.token_ids, dec.adapter, reference=dec.states[-1])
    _ATTN_CACHE[key] = (weakref.ref(dec, lambda _: _ATTN_CACHE.pop(key, None)), cap)
    return cap


def check_index(value: int, size: int, what: str) -> int:
    """``value`` (an int or numpy integer; negative counts from the end) in 0..size-1; IndexError
    out of range, TypeError for bools and non-integers.

    Args:
        value: the index.
        size: the number of items.
        what: its name in the error.
    """
    index = as_index(value, what)
    if not -size <= index < size:
        raise IndexError(f"{what} {value!r} out of range (0..{size - 1})")
    return index % size
