"""Activation patching between a clean and a corrupted prompt (``rw.patching``).

Denoising (docs/METHODS.md, "Activation patching"): run the corrupted prompt with one component's
output (at one position, or at every position) replaced by its value in the clean run, and read
a metric on the final logits of the last position.

``method="exact"`` really runs every patch, fast:

- one capture pass per prompt records each decoder layer's call (its inputs), the stream entering
  it, what its attention and MLP wrote, and the heads' outputs (the output projection's input);
- a patch of layer l starts at layer l from the corrupted run's stored stream
  (:func:`resid_widgets.runner.run_layers`, the patch an :class:`~resid_widgets.runner.Edit`):
  layers before l are not run again (they are unchanged), and only the last position is read out;
- patches of one layer run side by side as batch rows (``batch_size`` rows per forward).

An unpatched replay from layer 0 must reproduce the corrupted run's logits (checked), and the
numbers equal TransformerLens's ``patching.get_act_patch_*`` on the same weights (tested).

``method="attribution"`` is attribution patching (Nanda 2023; Syed et al. 2023): one forward and
one backward pass on the corrupted prompt give ∂M/∂a for every activation a at once, and
raw ≈ M(corrupt) + (a_clean − a_corrupt) · ∂M/∂a.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .adapters.base import require_module
from .errors import ResidWidgetsError, TargetError, UnsupportedModelError
from .runner import Capture, Edit, run_forward, run_layers

COMPONENTS = ("attn", "mlp", "all", "heads", "resid")
POSITIONS = ("each", "all")
METHODS = ("exact", "attribution")


class PatchingError(ResidWidgetsError, ValueError):
    """Patching cannot run on these inputs (the message says why and what to change)."""


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogitDiff:
    """Metric: logit(a) − logit(b) at the last position (``rw.logit_diff(" Mary", " John")``).

    Called on logits [V] (or [E, V]) it needs ids; ``rw.patching`` resolves strings with the
    Decompositions' tokenizer.

    Attributes:
        a, b: single-token strings or token ids.
    """

    a: Any
    b: Any

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        for t in (self.a, self.b):
            if isinstance(t, str):
                raise TargetError(f"logit_diff({self.a!r}, {self.b!r}) holds text: give token ids to call it on "
                                  "logits directly, or pass it to rw.patching, which resolves the text")
        return logits[..., int(self.a)] - logits[..., int(self.b)]

    @property
    def name(self) -> str:
        return f"logit({self.a!r}) − logit({self.b!r})"


def logit_diff(a, b) -> LogitDiff:
    """The logit difference metric z[a] − z[b] on the final logits of the last position.

    Args:
        a, b: single-token strings (" Mary", leading spaces matter) or token ids.
    """
    return LogitDiff(a, b)


def _metric(metric, dec) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """(function logits [E, V] fp32 -> [E], name) for a LogitDiff, a target token (its log-prob)
    or a callable on logits [V]."""
    if isinstance(metric, LogitDiff):
        a, b = dec.target_id(metric.a), dec.target_id(metric.b)
        return (lambda z: z[:, a] - z[:, b]), metric.name
    if isinstance(metric, (str, int)) or (isinstance(metric, torch.Tensor) and metric.numel() == 1):
        tid = dec.target_id(metric)
        return (lambda z: z[:, tid] - torch.logsumexp(z, -1)), f"log p({dec.token_text(tid)!r})"
    if callable(metric):
        def rows(z: torch.Tensor) -> torch.Tensor:
            out = [metric(row) for row in z]
            for value in out:
                if isinstance(value, torch.Tensor) and value.numel() != 1:
                    raise PatchingError(f"the metric must return one number per logits row [V], got shape "
                                        f"{tuple(value.shape)}")
            return torch.stack([value.reshape(()).float() if isinstance(value, torch.Tensor)
                                else torch.tensor(float(value)) for value in out])
        return rows, getattr(metric, "__name__", type(metric).__name__)
    raise PatchingError(f"metric must be rw.logit_diff(a, b), a target token (text or id) or a callable on the "
                        f"final logits [V], not {type(metric).__name__}")


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------
@dataclass
class PatchingResult:
    """What :func:`patching` returns.

    Attributes:
        raw: [rows, columns] the metric of each patched run (the clean component patched into the
            corrupted run). Columns are positions (``positions="each"``, T of them) or one column
            "all"; for ``components="heads", positions="all"`` rows are layers and columns heads
            ([L, H]).
        values: [rows, columns] (raw − corrupt_value) / (clean_value − corrupt_value): 0 = the
            corrupted metric, 1 = the clean one (NaN when the two are equal).
        clean_value, corrupt_value: the metric on the unpatched clean and corrupted runs.
        labels: [rows] row names ("attn.3", "mlp.3", "resid_pre.3", "L3H5").
        columns: [columns] column names (the corrupted prompt's tokens, "all", or "H0".."H{H-1}").
        targets: [rows] (component label, head or None) what each row patches (for heads with
            positions="all": one per cell of the [L, H] grid, row-major).
        tokens: the corrupted prompt's tokens [T].
        components, positions, method, metric: the arguments, the metric by name.
    """

    raw: torch.Tensor
    values: torch.Tensor
    clean_value: float
    corrupt_value: float
    labels: list[str]
    columns: list[str]
    targets: list[tuple[str, int | None]]
    tokens: list[str]
    components: str
    positions: str
    method: str
    metric: str
    extra: dict = field(default_factory=dict, repr=False)

    def figure(self):
        """A plotly heatmap of ``values`` (rows = components, columns = tokens), diverging
        around 0 with its colour bar, hover with the raw and normalised values."""
        import numpy as np

        from .analysis._common import plotly

        go, _ = plotly()
        vals = self.values.numpy()
        finite = vals[np.isfinite(vals)]
        span = float(abs(finite).max()) if finite.size else 1.0
        x = [f"{i}: {c}" for i, c in enumerate(self.columns)] if self.positions == "each" else list(self.columns)
        custom = self.raw.numpy()
        fig = go.Figure(go.Heatmap(
            z=vals, x=x, y=self.labels, customdata=custom, colorscale="RdBu", zmid=0, zmin=-span, zmax=span,
            colorbar={"title": "normalised"},
            hovertemplate="%{y} @ %{x}<br>raw %{customdata:.4f}<br>normalised %{z:.3f}<extra></extra>"))
        fig.update_yaxes(autorange="reversed")
        fig.update_layout(
            title=f"{self.method} patching of {self.components} ({self.metric}; clean {self.clean_value:.3f}, "
                  f"corrupt {self.corrupt_value:.3f})",
            height=max(320, 18 * len(self.labels) + 160))
        return fig

    def __repr__(self) -> str:
        return (f"PatchingResult({self.method}, {self.components} x {self.positions}: raw {tuple(self.raw.shape)}, "
                f"clean {self.clean_value:.4g}, corrupt {self.corrupt_value:.4g})")


# --------------------------------------------------------------------------------------------
# Capture: one pass that records what the replays need
# --------------------------------------------------------------------------------------------
@dataclass
class _Capture:
    calls: list  # per layer the ModuleCall of its call (batch of 1)
    block_in: list  # per layer [1, T, d] the stream entering it (model dtype)
    out: dict  # "attn"/"mlp" -> per layer [1, T, d] what the sub-layer added
    z: list  # per layer [1, T, H*dh] the output projection's input
    logits: torch.Tensor  # [V] fp32 the last position's logits (soft-capped)


class _Model:
    """A Hugging Face model's parts (adapter, layers, writers, readout) for patching."""

    def __init__(self, dec):
        self.model, self.adapter = dec.model, dec.adapter
        adapter = self.adapter
        self.layers = require_module(self.model, adapter.layers, "decoder layers", adapter)
        self.final_norm = require_module(self.model, adapter.final_norm, "final norm", adapter)
        self.unembed = require_module(self.model, adapter.unembed, "unembedding", adapter)
        self.writers = {kind: [require_module(layer, adapter.delta_path(kind), f"{kind} output", adapter)
                               for layer in self.layers]
                        for kind in ("attn", "mlp")}
        self.o_proj = [require_module(layer, adapter.attn_out_proj, "attention output projection", adapter)
                       for layer in self.layers]
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)
        self.n_heads = dec.n_heads

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """[E, T, d] -> [E, V] fp32 logits of the last position, as the model computes them."""
        z = self.unembed(self.final_norm(h[:, -1:]))[:, 0].float()
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def capture(self, token_ids: torch.Tensor, grad: bool = False) -> _Capture:
        """One forward pass of ``token_ids`` [T] recording each layer's call, input, outputs and
        heads; with ``grad`` the recorded tensors stay in the autograd graph (from the embedding
        on), for attribution patching."""
        n_layers = len(self.layers)
        capture = {}
        for i, layer in enumerate(self.layers):
            capture[("call", i)] = Capture(layer, on="call")
            capture[("in", i)] = Capture(layer, on="input")
            capture[("z", i)] = Capture(self.o_proj[i], on="input")
            for kind in ("attn", "mlp"):
                capture[(kind, i)] = Capture(self.writers[kind][i], on="output")
        # the stream starts here: gradients flow from the embedding on, whatever the weights' requires_grad
        leaf = [Edit(self.model.get_input_embeddings(), lambda value, inputs: value.detach().requires_grad_(True))]
        run = run_forward(self.model, token_ids, leaf if grad else (), capture, logits=True, grad=grad)
        got = run.captured
        return _Capture(calls=[got[("call", i)] for i in range(n_layers)],
                        block_in=[got[("in", i)] for i in range(n_layers)],
                        out={kind: [got[(kind, i)] for i in range(n_layers)] for kind in ("attn", "mlp")},
                        z=[got[("z", i)] for i in range(n_layers)],
                        logits=run.logits[0, -1].float())

    def replay(self, cap: _Capture, start: int, hidden: torch.Tensor, patches: Sequence[Edit] = ()) -> torch.Tensor:
        """Run layers ``start``.. on ``hidden`` [E, T, d] with each layer's recorded call tiled to
        E rows, and the ``patches`` in place; [E, V] fp32 last-position logits."""
        return run_layers(self.model, self.layers, start, hidden, cap.calls, patches, readout=self.readout).logits


def _set_rows(t: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor | None, src: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` [E, T, ...] whose row e takes ``src`` [T, ...] at position pos[e] (at
    every position when ``pos`` is None)."""
    t = t.clone()
    if pos is None:
        t[rows] = src.to(t.dtype)
    else:
        t[rows, pos] = src[pos].to(t.dtype)
    return t


def _output_patch(module, rows, pos, src) -> Edit:
    """``module``'s output: row e takes ``src`` [T, d] at pos[e] (everywhere when ``pos`` is None)."""
    return Edit(module, lambda value, inputs: _set_rows(value, rows, pos, src))


def _head_patch(o_proj, rows, pos, heads, src, n_heads) -> Edit:
    """The output projection's input: row e's head heads[e] takes the clean z ``src`` [T, H*dh]
    (at pos[e])."""
    def patched(value, inputs):
        z = value.clone()
        zv = z.view(*z.shape[:-1], n_heads, -1)  # [E, T, H, dh]
        sv = src.view(src.shape[0], n_heads, -1)  # [T, H, dh]
        if pos is None:
            zv[rows, :, heads] = sv[:, heads].transpose(0, 1).to(z.dtype)
        else:
            zv[rows, pos, heads] = sv[pos, heads].to(z.dtype)
        return z
    return Edit(o_proj, patched, on="input")


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
def _check_pair(clean, corrupt):
    from .core import Decomposition

    for name, dec in (("clean", clean), ("corrupt", corrupt)):
        if not isinstance(dec, Decomposition):
            raise PatchingError(f"{name} must be a Decomposition (rw.decompose(model, prompt)), not {type(dec).__name__}")
        if dec.model is None:
            raise PatchingError(f"the {name} Decomposition holds no model (freed or loaded): decompose it again")
    if clean.model is not corrupt.model:
        raise PatchingError("clean and corrupt were decomposed with different models: decompose both prompts with "
                            "the same model object")
    if clean.n_tokens != corrupt.n_tokens:
        raise PatchingError(f"the clean prompt has {clean.n_tokens} tokens and the corrupted one {corrupt.n_tokens}: "
                            "patching needs prompts of the same length (rephrase one, e.g. swap names of one token)")
    if corrupt.adapter is None:
        raise UnsupportedModelError(
            "rw.patching runs on Hugging Face models: decompose the two prompts with the transformers model "
            "(for a TransformerLens model, transformer_lens.patching works on it directly)")
    if getattr(corrupt, "edits", ()) or getattr(clean, "edits", ()):
        raise PatchingError("clean and corrupt must be plain decompositions, not edited ones: pass their .baseline")


def _rows(components: str, positions: str, L: int, H: int):
    """[(kind, layer, head or None)] and their labels, in row order."""
    if components == "attn":
        spec = [("attn", l, None) for l in range(L)]
    elif components == "mlp":
        spec = [("mlp", l, None) for l in range(L)]
    elif components == "all":
        spec = [(k, l, None) for l in range(L) for k in ("attn", "mlp")]
    elif components == "resid":
        spec = [("resid", l, None) for l in range(L)]
    else:
        spec = [("head", l, h) for l in range(L) for h in range(H)]
    labels = [f"L{l}H{h}" if k == "head" else f"resid_pre.{l}" if k == "resid" else f"{k}.{l}" for k, l, h in spec]
    targets = [(f"attn.{l}", h) if k == "head" else (f"resid_pre.{l}" if k == "resid" else f"{k}.{l}", None)
               for k, l, h in spec]
    return spec, labels, targets


def patching(clean, corrupt, metric, components: str = "all", positions: str = "each", method: str = "exact",
             batch_size: int = 64, progress: bool = True) -> PatchingResult:
    """Activation patching (denoising): each clean component patched into the corrupted run.

    Args:
        clean, corrupt: Decompositions of two prompts of the same length, same Hugging Face model.
        metric: ``rw.logit_diff(a, b)``, a target token (text or id: its log-prob), or a callable
            on the final logits [V] of the last position returning a number (a tensor for
            ``method="attribution"``).
        components: "attn", "mlp", "all" (every sub-layer: attn.0, mlp.0, ...), "heads" (every
            head, L*H rows), "resid" (the stream entering each block, TransformerLens resid_pre).
        positions: "each" (one column per position) or "all" (patched at every position at once).
        method: "exact" (every patch run; layers before the patch are reused, patches batched) or
            "attribution" (first-order estimate from one forward and one backward pass).
        batch_size: patched runs per forward pass (exact).
        progress: show a tqdm progress bar (exact). Interrupting leaves no hook behind.

    Returns:
        :class:`PatchingResult` with ``raw`` / ``values`` [rows, T] ([rows, 1] for
        positions="all"; [L, H] for heads with positions="all").
    """
    if components not in COMPONENTS:
        raise PatchingError(f"components must be one of {COMPONENTS}, not {components!r}")
    if positions not in POSITIONS:
        raise PatchingError(f"positions must be 'each' or 'all', not {positions!r}")
    if method not in METHODS:
        raise PatchingError(f"method must be 'exact' or 'attribution', not {method!r}")
    _check_pair(clean, corrupt)
    fn, metric_name = _metric(metric, corrupt)
    parts = _Model(corrupt)
    L, H, T = len(parts.layers), corrupt.n_heads, corrupt.n_tokens
    spec, labels, targets = _rows(components, positions, L, H)
    clean_cap = parts.capture(clean.token_ids)
    if method == "exact":
        corrupt_cap = parts.capture(corrupt.token_ids)
        raw = _exact(parts, clean_cap, corrupt_cap, spec, positions, T, fn, batch_size, progress)
        corrupt_value = float(fn(corrupt_cap.logits[None])[0])
    else:
        raw, corrupt_value = _attribution(parts, clean_cap, corrupt.token_ids, spec, positions, fn)
    clean_value = float(fn(clean_cap.logits[None])[0])
    columns = list(corrupt.tokens) if positions == "each" else ["all"]
    if components == "heads" and positions == "all":
        raw = raw.view(L, H)
        labels = [f"attn.{l}" for l in range(L)]
        columns = [f"H{h}" for h in range(H)]
    denom = clean_value - corrupt_value
    if denom == 0 or not math.isfinite(denom):
        warnings.warn("the metric is the same on the clean and the corrupted prompt: normalised values are NaN "
                      "(choose a metric the corruption changes)", stacklevel=2)
        values = torch.full_like(raw, math.nan)
    else:
        values = (raw - corrupt_value) / denom
    return PatchingResult(raw=raw, values=values, clean_value=clean_value, corrupt_value=corrupt_value,
                          labels=labels, columns=columns, targets=targets, tokens=list(corrupt.tokens),
                          components=components, positions=positions, method=method, metric=metric_name)


def _exact(parts: _Model, clean_cap: _Capture, corrupt_cap: _Capture, spec, positions, T, fn, batch_size,
           progress) -> torch.Tensor:
    check = parts.replay(corrupt_cap, 0, corrupt_cap.block_in[0])[0]
    scale = 1.0 + float(corrupt_cap.logits.abs().max())
    err = float((check - corrupt_cap.logits).abs().max()) / scale
    tol = 1e-4 if next(parts.model.parameters()).dtype in (torch.float32, torch.float64) else 5e-2
    if not err <= tol:
        raise PatchingError(f"Replaying the corrupted run from its recorded layer inputs does not reproduce its logits "
                            f"(off by {err:.1e}): this model's layers need inputs the replay does not pass; "
                            "use method='attribution' or TransformerLens's patching for it.")
    # every patched run: (row index, kind, layer, head, position or None)
    runs = [(r, k, l, h, t) for r, (k, l, h) in enumerate(spec)
            for t in (range(T) if positions == "each" else [None])]
    n_cols = T if positions == "each" else 1
    raw = torch.empty(len(spec), n_cols)
    groups: dict = {}
    for run in runs:
        groups.setdefault((run[1], run[2]), []).append(run)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc="patching", disable=not progress or len(runs) <= batch_size, leave=False)
    try:
        for (kind, layer), group in groups.items():
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                E = len(chunk)
                rows = torch.arange(E)
                pos = None if positions == "all" else torch.tensor([c[4] for c in chunk])
                hidden = corrupt_cap.block_in[layer].expand(E, -1, -1).contiguous()
                patches = ()
                if kind == "resid":
                    hidden = _set_rows(hidden, rows, pos, clean_cap.block_in[layer][0])
                elif kind == "head":
                    heads = torch.tensor([c[3] for c in chunk])
                    patches = (_head_patch(parts.o_proj[layer], rows, pos, heads, clean_cap.z[layer][0],
                                           parts.n_heads),)
                else:
                    patches = (_output_patch(parts.writers[kind][layer], rows, pos, clean_cap.out[kind][layer][0]),)
                values = fn(parts.replay(corrupt_cap, layer, hidden, patches))
                for (r, _, _, _, t), v in zip(chunk, values.tolist()):
                    raw[r, 0 if t is None else t] = v
                bar.update(E)
    finally:
        bar.close()
    return raw


def _attribution(parts: _Model, clean_cap: _Capture, token_ids, spec, positions, fn) -> tuple[torch.Tensor, float]:
    acts = parts.capture(token_ids, grad=True)
    value = fn(acts.logits[None])[0]
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        raise PatchingError("method='attribution' needs a metric that returns a differentiable tensor of the "
                            "logits (torch operations only); this one returned a plain number")
    wanted = {("resid", l): acts.block_in[l] for l in range(len(parts.layers))}
    wanted.update({(k, l): acts.out[k][l] for k in ("attn", "mlp") for l in range(len(parts.layers))})
    wanted.update({("head", l): acts.z[l] for l in range(len(parts.layers))})
    needed = sorted({(k, l) for k, l, _ in spec})
    grads = torch.autograd.grad(value, [wanted[key] for key in needed], allow_unused=True)
    grad = dict(zip(needed, grads))
    H = parts.n_heads
    rows = []
    for kind, layer, head in spec:
        a_corrupt = wanted[(kind, layer)].detach()[0].float()
        a_clean = {"resid": clean_cap.block_in, "head": clean_cap.z}.get(kind, clean_cap.out.get(kind))[layer][0].float()
        g = grad[(kind, layer)]
        g = torch.zeros_like(a_corrupt) if g is None else g[0].float()
        effect = (a_clean - a_corrupt) * g  # [T, width]
        if kind == "head":
            effect = effect.view(effect.shape[0], H, -1)[:, head]
        per_pos = effect.sum(-1)  # [T]
        rows.append(per_pos if positions == "each" else per_pos.sum()[None])
    base = float(value.detach())
    return base + torch.stack(rows).cpu(), base
