"""AttentionPatterns: every head's attention pattern in a layer, one opened in full, beside the
[layers x heads] head scores (previous-token, sink, self, induction)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import anywidget
import traitlets as t

from ..analysis.patterns import SCORE_KINDS, SCORE_TITLES, HeadScores, head_scores
from ..export import SnapshotMixin
from ._base import ESM, WholeNumber, checked_layer, checked_position
from .lifetime import ClosedDecomposition, ViewLifetime
from .payload import array_payload, display_token

#: Kept per row when a snapshot must sparsify: the largest weights, stopping once they hold this
#: share of the row.
SNAPSHOT_MASS = 0.99


def patterns_data(dec, scores: HeadScores) -> dict:
    """The static part of the view: tokens, sizes, every head score [L, H] (float32)."""
    return {
        "tokens": [str(x) for x in dec.tokens],
        "T": len(dec.tokens),
        "n_layers": scores.n_layers,
        "n_heads": scores.n_heads,
        "model_name": str(getattr(dec, "model_name", "") or ""),
        "kinds": list(SCORE_KINDS),
        "titles": dict(SCORE_TITLES),
        "scores": {k: array_payload(scores.scores[k], "float32") for k in SCORE_KINDS},
        "n_induction_positions": scores.n_induction_positions,
        "storage": {"sparsified": scores.sparsified, "top_k": scores.top_k, "dense_limit": scores.dense_limit},
    }


class AttentionPatterns(ViewLifetime, SnapshotMixin, anywidget.AnyWidget):
    """Attention patterns of ``dec``'s prompt, one layer at a time.

    A grid of small patterns, one per head of ``layer``; ``head`` (click a thumbnail) opens that
    head's destination x source pattern with the tokens on both axes, hover for (destination,
    source, α), and the destination ``position`` highlighted (click a row, or link the view to a
    Dashboard / StreamGrid with ``rw.link``: the selected position is the destination row).
    Beside it, the [layers x heads] heatmap of ``score_kind`` (``sort_heads`` orders each layer's
    heads by it); clicking a cell opens that head.

    The weights come from one eager pass (:func:`rw.analysis.head_scores`), kept bounded: float16
    lower triangles, or for prompts longer than ``dense_limit`` the ``top_k`` largest weights of
    each row (the view says so). A layer's pattern is sent when ``layer`` changes; a snapshot
    embeds every layer that fits its size budget, sparsified as needed, and lists the rest.

    Synced traits: ``layer``, ``head`` (-1: none opened), ``position``, ``score_kind``,
    ``sort_heads``. ``close()`` lets go of the Decomposition and the patterns (see
    :mod:`resid_widgets.views.lifetime`).
    """

    _esm = ESM
    _rw_view = t.Unicode("attention-patterns").tag(sync=True)
    short_name = "patterns"  # the CLI's --view
    _data = t.Dict().tag(sync=True)
    _patterns = t.Dict().tag(sync=True)
    _patterns_note = t.Unicode("").tag(sync=True)
    _rw_static = t.Bool(False).tag(sync=True)
    _error = t.Unicode("").tag(sync=True)
    layer = WholeNumber(0, " (a layer index; negative counts from the end)").tag(sync=True)
    head = WholeNumber(-1, " (a head index; -1: no head opened)").tag(sync=True)
    position = WholeNumber(-1, " (a token position; negative counts from the end)").tag(sync=True)
    score_kind = t.Enum(SCORE_KINDS, default_value="induction").tag(sync=True)
    sort_heads = t.Bool(False).tag(sync=True)

    def __init__(self, dec, layer: int | None = None, head: int | None = None, position: int = -1, *,
                 top_k: int = 32, dense_limit: int = 256, **kwargs: Any):
        self._dec = dec
        try:
            self._scores = head_scores(dec, top_k=top_k, dense_limit=dense_limit)
            data = patterns_data(dec, self._scores)
        except Exception as exc:  # a readable message in the cell, never a blank area
            msg = f"cannot show attention patterns: {type(exc).__name__}: {exc}"
            warnings.warn(f"AttentionPatterns: {msg}", RuntimeWarning, stacklevel=2)
            self._scores = None
            super().__init__(_error=msg, **kwargs)
            self._adopt()
            return
        if "score_kind" not in kwargs and not data["n_induction_positions"]:
            kwargs["score_kind"] = "previous_token"  # induction is undefined without repeated tokens
        super().__init__(_data=data, **kwargs)
        self._adopt()
        chosen = {"position": position, "layer": self._default_layer() if layer is None else layer}
        if head is not None:
            chosen["head"] = head
        self._set_or_close(**chosen)
        self._send_layer(self.layer)

    def _release(self) -> None:
        self._dec = ClosedDecomposition()
        self._scores = None
        self._data, self._patterns = {}, {}

    def _default_layer(self) -> int:
        """The layer of the highest-scoring head of the shown score."""
        rows = [r for r in self._scores.rows if r[self.score_kind] is not None]
        return max(rows, key=lambda r: r[self.score_kind])["layer"] if rows else 0

    # ---------------------------------------------------------------- validation
    @t.validate("layer")
    def _check_layer(self, proposal):
        return checked_layer(proposal["value"], (self._data or {}).get("n_layers"))

    @t.validate("head")
    def _check_head(self, proposal):
        v = int(proposal["value"])
        H = (self._data or {}).get("n_heads")
        if H is not None and not -1 <= v < H:
            raise t.TraitError(f"head {v} is outside 0..{H - 1} (-1: no head opened)")
        return v

    @t.validate("position")
    def _check_position(self, proposal):
        return checked_position(proposal["value"], (self._data or {}).get("T", 0))

    @t.observe("layer")
    def _on_layer(self, change):
        if self._data and not self._rw_static:
            self._send_layer(change["new"])

    def _send_layer(self, layer: int) -> None:
        """Only the shown layer travels to the browser (and into saved widget state)."""
        if str(layer) not in self._patterns:
            self._patterns = {str(layer): self._scores.pattern(layer).payload()}

    # ---------------------------------------------------------------- python side
    @property
    def scores(self) -> HeadScores:
        """The :class:`~resid_widgets.analysis.HeadScores` behind the view."""
        self._check_open()
        return self._scores

    def figure(self):
        """plotly: the opened head's pattern (or, with no head opened, every head of the layer)
        beside the [layers x heads] heatmap of ``score_kind``."""
        from plotly.subplots import make_subplots

        from .figures import SELECTION, STOPS, colorscale

        self._check_open()
        if self._scores is None:
            raise ValueError(self._error)
        layer, head, pos = self.layer, self.head, self.position
        pattern = self._scores.pattern(layer).dense()
        ticks = [f"{i} {display_token(s)}" for i, s in enumerate(self._data["tokens"])]
        H = self._data["n_heads"]
        heads = [head] if head >= 0 else list(range(H))
        cols = 1 if head >= 0 else min(4, H)
        rows = math.ceil(len(heads) / cols)
        specs = [[{} for _ in range(cols + 1)] for _ in range(rows)]
        for r in range(1, rows):
            specs[r][cols] = None
        specs[0][cols] = {"rowspan": rows}
        titles = [f"L{layer}H{h}" for h in heads] + [""] * (rows * cols - len(heads))
        titles.insert(cols, f"{SCORE_TITLES[self.score_kind]} score")
        fig = make_subplots(rows=rows, cols=cols + 1, specs=specs, subplot_titles=titles,
                            column_widths=[0.7 / cols] * cols + [0.3], horizontal_spacing=0.06)
        for i, h in enumerate(heads):
            r, c = divmod(i, cols)
            z = [[float(v) if s <= d else None for s, v in enumerate(row)] for d, row in enumerate(pattern[h].tolist())]
            fig.add_heatmap(z=z, x=ticks, y=ticks, zmin=0, zmax=1, showscale=(i == 0),
                            # the view's ink: the theme's attention blue on white
                            colorscale=[[0, "#ffffff"], [1, STOPS["rdbu"][1]]],
                            colorbar=dict(x=0.66, len=0.5, title="α"),
                            hovertemplate="destination %{y}<br>source %{x}<br>α=%{z:.3f}<extra>" + f"L{layer}H{h}</extra>",
                            row=r + 1, col=c + 1)
            fig.update_yaxes(autorange="reversed", row=r + 1, col=c + 1, showticklabels=head >= 0)
            fig.update_xaxes(showticklabels=head >= 0, row=r + 1, col=c + 1)
            if head >= 0:
                fig.add_shape(type="rect", x0=-0.5, x1=pos + 0.5, y0=pos - 0.5, y1=pos + 0.5, line=dict(color=SELECTION),
                              row=r + 1, col=c + 1)
        z = self._scores.scores[self.score_kind]
        L = z.shape[0]
        fig.add_heatmap(z=[[None if math.isnan(v) else v for v in row] for row in z.tolist()],
                        x=[f"H{j}" for j in range(H)], y=[f"L{l}" for l in range(L)], zmin=0, zmax=1,
                        colorscale=colorscale("viridis"), showscale=False, hovertemplate="%{y}%{x}: %{z:.3f}<extra></extra>",
                        row=1, col=cols + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=cols + 1)
        kept = self._scores.pattern(layer)
        note = f" (top {kept.k} weights per row)" if kept.sparsified else ""
        fig.update_layout(title=f"attention patterns, layer {layer}{note}; destination row {pos} highlighted",
                          height=max(420, 260 * rows, 16 * L + 160), showlegend=False)
        return fig

    # ---------------------------------------------------------------- snapshots
    def _snapshot_state(self, budget_bytes: int = 8_000_000) -> dict:
        """Every layer's pattern, as dense as ``budget_bytes`` allows (sparsified to the largest
        weights per row otherwise); layers that do not fit even then are left out and listed."""
        if self._scores is None:
            return {"_rw_static": True}
        patterns, note = snapshot_patterns(self._scores, int(budget_bytes), first=self.layer)
        return {"_rw_static": True, "_patterns": patterns, "_patterns_note": note,
                "__notes__": [f"attention patterns: {note}"]}


def snapshot_patterns(scores: HeadScores, budget_bytes: int, first: int = 0) -> tuple[dict, str]:
    """({str(layer): payload}, note) of as many layers as fit ``budget_bytes`` of binary data:
    all dense if they fit, else all sparsified with the largest per-row cap that fits (at most
    that many weights per row, fewer where the largest already hold :data:`SNAPSHOT_MASS` of the
    row), else the layers that fit at one weight per row, ``first`` first."""
    L, H = scores.n_layers, scores.n_heads
    T = len(scores.tokens)
    patterns = [scores.pattern(layer) for layer in range(L)]
    if all(p.format == "dense" for p in patterns) and sum(p.nbytes() for p in patterns) <= budget_bytes:
        return ({str(p.layer): p.payload() for p in patterns},
                f"all {L} layers embedded, every weight of the causal triangle (float16)")
    top = min(255, T, max(p.k for p in patterns))
    caps = sorted({c for c in (top, 128, 64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1) if c <= top}, reverse=True)
    entries = [p.entries_at(caps, SNAPSHOT_MASS) for p in patterns]  # [layer][cap]
    index_bytes = 2 if T <= 65535 else 4
    per_row = H * T  # one count byte per row

    def size(layer: int, j: int) -> int:
        return entries[layer][j] * (2 + index_bytes) + per_row

    for j, cap in enumerate(caps):
        if sum(size(layer, j) for layer in range(L)) <= budget_bytes:
            out = {str(p.layer): p.payload(k=cap, mass=SNAPSHOT_MASS) for p in patterns}
            kept = "the largest weight of each row" if cap == 1 else (
                f"at most {cap} weights per row (the largest, fewer where they already hold {SNAPSHOT_MASS:.0%} of the row)")
            return out, f"all {L} layers embedded, sparsified to {kept}; float16"
    order = [first] + [layer for layer in range(L) if layer != first]
    out, used, left = {}, 0, []
    for layer in order:
        if used + size(layer, len(caps) - 1) <= budget_bytes:
            used += size(layer, len(caps) - 1)
            out[str(layer)] = patterns[layer].payload(k=1, mass=SNAPSHOT_MASS)
        else:
            left.append(layer)
    return out, (f"{len(out)} of {L} layers embedded at 1 weight per row (float16); layers "
                 f"{_ranges(sorted(left))} left out by the size budget (they need the kernel)")


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
