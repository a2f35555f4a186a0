"""Attention patterns and head scores of a Decomposition's prompt, from one capture (docs/METHODS.md,
"Attention patterns and composition").

α[l, h, t, s] is the weight destination t gives source s (rows sum to 1 over the allowed sources
s ≤ t, within the sliding window where a layer has one). On one eager pass of the prompt:

- previous-token score = mean over t ≥ 1 of α[t, t − 1];
- sink score = mean over t ≥ 1 of α[t, 0] (the first token);
- self score = mean over t ≥ 1 of α[t, t] (t = 0 is left out of all three: its only source is
  itself);
- induction score, on any prompt: destination t is *eligible* when its token occurred before at
  some s' < t − 1; its induction sources are the tokens after those earlier copies, s' + 1; the
  score is the mean over eligible destinations of the attention to their induction sources
  (summed where the token occurred several times). On BOS + r + r with r free of repeats this is
  exactly the score of :func:`~resid_widgets.analysis.induction_scores`. Where no token repeats,
  no destination is eligible: the score is NaN and ``n_induction_positions`` is 0.

Patterns are kept bounded: float16, the causal lower triangle only, and for prompts longer than
``dense_limit`` the ``top_k`` largest weights of each row (a :class:`LayerPattern` says when it
is sparsified and how much of each row it kept).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from ._common import AnalysisError, Table, attention_pass, check_index, plotly, require_model

#: The head scores, in the order tables and views list them.
SCORE_KINDS = ("induction", "previous_token", "sink", "self")
SCORE_TITLES = {"induction": "induction", "previous_token": "previous token", "sink": "sink (first token)",
                "self": "self (diagonal)"}


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
def induction_sources(token_ids: torch.Tensor) -> torch.Tensor:
    """[B, T, T] (or [T, T] for ids [T]) float mask: 1 at (t, s) when s − 1 is an earlier
    occurrence of the token at t with s − 1 < t − 1, i.e. s is the token after an earlier copy
    of t's token (and not t itself).

    Args:
        token_ids: [B, T] or [T].
    """
    ids = token_ids if token_ids.dim() == 2 else token_ids[None]
    same = (ids[:, :, None] == ids[:, None, :]).tril(diagonal=-2)  # [B, t, s'] with s' < t - 1
    mask = torch.zeros(same.shape, dtype=torch.float32)
    mask[:, :, 1:] = same[:, :, :-1].float()
    return mask if token_ids.dim() == 2 else mask[0]


def score_heads(probs: torch.Tensor, sources: torch.Tensor) -> dict[str, torch.Tensor]:
    """Head scores of one layer.

    Args:
        probs: [B, H, T, T] attention weights (any float dtype, any device).
        sources: [B, T, T] the mask of :func:`induction_sources`.

    Returns:
        {kind: [H] float32 CPU} for every kind in :data:`SCORE_KINDS` (mean over the batch as
        well); NaN where no position qualifies (T = 1, or no repeated token for "induction").
    """
    p = probs.float()
    B, H, T, _ = p.shape
    out: dict[str, torch.Tensor] = {}
    if T > 1:
        t = torch.arange(1, T, device=p.device)
        out["previous_token"] = p[:, :, t, t - 1].mean((0, 2))
        out["sink"] = p[:, :, 1:, 0].mean((0, 2))
        out["self"] = p[:, :, t, t].mean((0, 2))
    else:
        out.update({k: torch.full((H,), math.nan) for k in ("previous_token", "sink", "self")})
    src = sources.to(p.device)
    eligible = src.sum(-1) > 0  # [B, T]
    if bool(eligible.any()):
        on_sources = torch.einsum("bhts,bts->bht", p, src)  # [B, H, T]
        out["induction"] = on_sources.transpose(0, 1)[:, eligible].mean(-1)
    else:
        out["induction"] = torch.full((H,), math.nan)
    return {k: out[k].float().cpu() for k in SCORE_KINDS}


# --------------------------------------------------------------------------------------------
# Bounded patterns
# --------------------------------------------------------------------------------------------
@dataclass
class LayerPattern:
    """One layer's attention weights α[h, t, s], kept bounded (float16).

    Attributes:
        layer: the layer; n_tokens: T.
        format: "dense" or "topk".
        values: "dense": float16 [H, T(T+1)/2], the causal lower triangle row by row (row t holds
            sources 0..t and starts at t(t+1)/2). "topk": float16 [H, T, k], the k largest weights
            of each row, descending.
        index: "topk" only: [H, T, k] int16 (int32 past 32,767 tokens) source of each kept weight,
            −1 where a row has fewer than k nonzero weights (short rows, sliding windows).
    """

    layer: int
    n_tokens: int
    format: str
    values: torch.Tensor
    index: torch.Tensor | None = None

    @classmethod
    def from_probs(cls, layer: int, probs: torch.Tensor, top_k: int | None) -> "LayerPattern":
        """From weights [H, T, T] (any float dtype): dense when ``top_k`` is None, else top-k rows."""
        H, T, _ = probs.shape
        if top_k is None:
            rows, cols = torch.tril_indices(T, T, device=probs.device)
            return cls(layer, T, "dense", probs[:, rows, cols].half().cpu())
        values, index = probs.float().topk(min(int(top_k), T), dim=-1)
        values = values.half()
        index = index.to(torch.int16 if T <= torch.iinfo(torch.int16).max else torch.int32)
        index[values == 0] = -1
        return cls(layer, T, "topk", values.cpu(), index.cpu())

    @property
    def n_heads(self) -> int:
        return self.values.shape[0]

    @property
    def k(self) -> int:
        """Weights kept per row (T for a dense pattern)."""
        return self.n_tokens if self.format == "dense" else self.values.shape[-1]

    @property
    def sparsified(self) -> bool:
        """True when rows may have lost weights (top-k with k < T)."""
        return self.format == "topk" and self.k < self.n_tokens

    def dense(self) -> torch.Tensor:
        """[H, T, T] float32; weights that were not kept are 0."""
        H, T = self.n_heads, self.n_tokens
        out = torch.zeros(H, T, T)
        if self.format == "dense":
            rows, cols = torch.tril_indices(T, T)
            out[:, rows, cols] = self.values.float()
        else:
            keep = self.index >= 0
            h, t, _ = keep.nonzero(as_tuple=True)
            out[h, t, self.index[keep].long()] = self.values[keep].float()
        return out

    def kept_mass(self) -> torch.Tensor:
        """[H, T] the sum of each row's kept weights (1 up to float16 rounding when nothing was
        left out; less with attention sinks, whose extra logit takes mass)."""
        if self.format == "dense":
            return self.dense().sum(-1)
        return self.values.float().sum(-1)

    def row(self, head: int, destination: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sources [n] long, weights [n] float32) kept for one destination, by source.

        Args:
            head: the head.
            destination: the destination position.
        """
        head = check_index(head, self.n_heads, "head")
        t = check_index(destination, self.n_tokens, "destination")
        if self.format == "dense":
            start = t * (t + 1) // 2
            return torch.arange(t + 1), self.values[head, start:start + t + 1].float()
        keep = self.index[head, t] >= 0
        src = self.index[head, t][keep].long()
        order = src.argsort()
        return src[order], self.values[head, t][keep].float()[order]

    def nbytes(self) -> int:
        """Bytes of the weights (and source indices) held."""
        return self.values.numel() * self.values.element_size() + (
            0 if self.index is None else self.index.numel() * self.index.element_size())

    def payload(self, k: int | None = None, mass: float = 1.0) -> dict:
        """What the view draws: the dense triangle as it is, or (when ``k`` is given, or the
        pattern is top-k) a sparse payload of at most ``k`` weights per row, cut earlier once the
        kept weights hold ``mass`` of what the row keeps. Arrays as in ``views.payload``.

        Args:
            k: the most weights per row, or None (dense patterns stay dense).
            mass: the share of a row's kept weight after which it is cut.
        """
        from ..views.payload import array_payload

        if self.format == "dense" and k is None:
            return {"format": "dense", "layer": self.layer, "T": self.n_tokens,
                    "values": array_payload(self.values.float(), "float16")}
        values, index = self._sorted_rows()
        counts = rows_needed(values, mass)
        if k is not None:
            counts = counts.clamp(max=int(k))
        keep = torch.arange(values.shape[-1])[None, None] < counts[..., None]
        cap = int(counts.max()) if counts.numel() else 0
        return {"format": "sparse", "layer": self.layer, "T": self.n_tokens,
                "k": min(cap if k is None else int(k), self.n_tokens),
                "sparsified": bool(self.sparsified or (k is not None and bool((counts < self._nonzero()).any()))),
                "counts": array_payload(counts, "uint8"),
                "index": array_payload(index[keep], "uint16" if self.n_tokens <= 65535 else "int32"),
                "values": array_payload(values[keep], "float16")}

    def _sorted_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [H, T, K] float32 descending, index [H, T, K] long), K = min(T, 255)."""
        if self.format == "topk":
            return self.values.float(), self.index.long()
        K = min(self.n_tokens, 255)
        return self.dense().topk(K, dim=-1)

    def _nonzero(self) -> torch.Tensor:
        """[H, T] nonzero weights per row."""
        if self.format == "topk":
            return (self.index >= 0).sum(-1)
        return (self.dense() > 0).sum(-1)

    def entries_at(self, caps: list[int], mass: float = 0.99) -> list[int]:
        """Sparse payload entries for each cap in ``caps`` (to fit a size budget).

        Args:
            caps: the most weights per row, one budget each.
            mass: the share of a row's kept weight after which it is cut.
        """
        counts = rows_needed(self._sorted_rows()[0], mass)
        return [int(counts.clamp(max=c).sum()) for c in caps]


def rows_needed(values: torch.Tensor, mass: float) -> torch.Tensor:
    """[...] the number of leading weights of each descending row of ``values`` [..., K] that
    reach ``mass`` of the row's total (at least 1 where the row has a nonzero weight, at most its
    nonzero count, at most 255).

    Args:
        values: [..., K] each row's weights, descending.
        mass: the share of the row's total to reach.
    """
    total = values.sum(-1, keepdim=True)
    before = values.cumsum(-1) - values  # mass of the weights ahead of each one
    needed = ((before < mass * total) & (values > 0)).sum(-1)
    return needed.clamp(max=255).to(torch.int32)


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------
@dataclass(repr=False, eq=False)
class HeadScores(Table):
    """Result of :func:`head_scores`.

    Attributes:
        scores: {kind: [L, H] float32} for kind in :data:`SCORE_KINDS`.
        patterns: [L] each layer's bounded attention weights (see :meth:`pattern`).
        tokens: the prompt's token texts (T); token_ids: [T].
        n_induction_positions: destinations whose token occurred before (0: no repeats, so the
            induction score is NaN).
        dense_limit, top_k: how patterns are kept (dense up to ``dense_limit`` tokens, else the
            ``top_k`` largest weights per row).
        capture_error: relative error of Σ_j α v_j against the attention output (worst layer).
        rows: one dict per head, (layer, head) order: layer, head, label and one column per kind.
    """

    scores: dict[str, torch.Tensor]
    patterns: list[LayerPattern] = field(repr=False)
    tokens: list[str]
    token_ids: torch.Tensor
    n_induction_positions: int
    dense_limit: int
    top_k: int
    capture_error: float
    rows: list[dict] = field(init=False)

    def __post_init__(self):
        L, H = self.scores["sink"].shape
        self.rows = [dict(layer=l, head=h, label=f"L{l}H{h}",
                          **{k: _finite(self.scores[k][l, h]) for k in SCORE_KINDS})
                     for l in range(L) for h in range(H)]

    @property
    def n_layers(self) -> int:
        return self.scores["sink"].shape[0]

    @property
    def n_heads(self) -> int:
        return self.scores["sink"].shape[1]

    @property
    def sparsified(self) -> bool:
        """True when patterns keep only the top-k weights of each row (long prompts)."""
        return any(p.sparsified for p in self.patterns)

    def pattern(self, layer: int) -> LayerPattern:
        """The bounded attention weights of one layer (see :class:`LayerPattern`).

        Args:
            layer: the layer.
        """
        return self.patterns[check_index(layer, self.n_layers, "layer")]

    def top(self, kind: str = "induction", n: int = 5) -> list[tuple[int, int, float]]:
        """[(layer, head, score)] of the ``n`` highest-scoring heads (NaN scores last).

        Args:
            kind: the score (one of SCORE_KINDS).
            n: how many heads.
        """
        _check_kind(kind)
        ranked = sorted(self.rows, key=lambda r: -math.inf if r[kind] is None else r[kind], reverse=True)
        return [(r["layer"], r["head"], r[kind]) for r in ranked[:n]]

    def figure(self, kind: str = "induction"):
        """plotly heatmap [layers x heads] of one score; a menu switches the score and sorts each
        layer's heads by it (hover names the head).

        Args:
            kind: the score shown first (one of SCORE_KINDS).
        """
        _check_kind(kind)
        go, _ = plotly()
        L, H = self.n_layers, self.n_heads
        fig = go.Figure()
        buttons = []
        n = 2 * len(SCORE_KINDS)
        for i, k in enumerate(SCORE_KINDS):
            z = self.scores[k]
            for sort in (False, True):
                order = (torch.nan_to_num(z, nan=-1.0).argsort(dim=1, descending=True, stable=True) if sort
                         else torch.arange(H).expand(L, H))
                shown = torch.gather(z, 1, order)
                heads = [[f"L{l}H{int(order[l, j])}" for j in range(H)] for l in range(L)]
                fig.add_heatmap(z=[[_finite(v) for v in row] for row in shown.tolist()],
                                x=[f"#{j + 1}" if sort else f"H{j}" for j in range(H)], y=[f"L{l}" for l in range(L)],
                                zmin=0, zmax=1, colorscale="Viridis", customdata=heads,
                                hovertemplate="%{customdata}: %{z:.3f}<extra>" + SCORE_TITLES[k] + "</extra>",
                                visible=(k == kind and not sort))
                visible = [False] * n
                visible[2 * i + int(sort)] = True
                buttons.append(dict(label=SCORE_TITLES[k] + (", heads sorted" if sort else ""), method="update",
                                    args=[{"visible": visible}, {"title": self._title(k, sort)}]))
        fig.update_layout(updatemenus=[dict(buttons=buttons, active=2 * SCORE_KINDS.index(kind), x=0, y=1.12,
                                            xanchor="left")],
                          title=self._title(kind, False), height=max(400, 18 * L + 180))
        fig.update_yaxes(autorange="reversed")
        return fig

    def _title(self, kind: str, sort: bool) -> str:
        extra = ""
        if kind == "induction":
            extra = (f" ({self.n_induction_positions} positions with an earlier copy of their token)"
                     if self.n_induction_positions else " (undefined: no token of the prompt repeats)")
        return f"{SCORE_TITLES[kind]} score per head{extra}" + (", heads sorted within each layer" if sort else "")

    def __repr__(self) -> str:
        parts = [f"{k}: " + ", ".join(f"L{l}H{h} {s:.2f}" for l, h, s in self.top(k, 3) if s is not None)
                 for k in SCORE_KINDS]
        kept = (f"top {self.top_k} weights per row" if self.sparsified else "dense lower triangles") + ", float16"
        return (f"HeadScores({self.n_layers} layers x {self.n_heads} heads, {len(self.tokens)} tokens; patterns: "
                f"{kept})\n  " + "\n  ".join(parts))


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _check_kind(kind: str) -> None:
    if kind not in SCORE_KINDS:
        raise ValueError(f"kind must be one of {SCORE_KINDS}, not {kind!r}")


_SCORES_CACHE: "dict[tuple, tuple[Any, HeadScores]]" = {}


def head_scores(dec, *, top_k: int = 32, dense_limit: int = 256) -> HeadScores:
    """Previous-token, sink, self and induction scores of every head on ``dec``'s prompt, and every
    layer's attention pattern, from one eager pass (cached per decomposition and options).

    Args:
        dec: a :class:`~resid_widgets.Decomposition` of a Hugging Face model.
        top_k: for prompts longer than ``dense_limit``, the weights kept per row (the largest).
        dense_limit: prompts up to this many tokens keep the whole lower triangle (float16).

    Memory: each layer's [H, T, T] weights are reduced as the layer runs; what stays is
    L·H·T(T+1)/2 float16 values (dense) or L·H·T·top_k values and indices (long prompts).
    """
    if top_k < 1 or top_k > 255:
        raise ValueError(f"top_k must be between 1 and 255, not {top_k}")
    key = (id(dec), int(top_k), int(dense_limit))
    hit = _SCORES_CACHE.get(key)
    if hit is not None and hit[0]() is dec:
        return hit[1]
    model = require_model(dec)
    ids = dec.token_ids.reshape(1, -1)
    T = ids.shape[1]
    sources = induction_sources(ids)
    keep_k = None if T <= dense_limit else int(top_k)
    L = dec.n_layers
    per_layer: list[dict | None] = [None] * L
    patterns: list[LayerPattern | None] = [None] * L

    def reduce(layer: int, probs: torch.Tensor, values: torch.Tensor) -> None:
        per_layer[layer] = score_heads(probs, sources)
        patterns[layer] = LayerPattern.from_probs(layer, probs[0], keep_k)

    run = attention_pass(model, ids, reduce, dec.adapter, reference=dec.states[-1], keep_z=False)
    if any(p is None for p in patterns):
        raise AnalysisError("an attention layer ran without handing its weights to the capture")
    scores = {k: torch.stack([s[k] for s in per_layer]) for k in SCORE_KINDS}
    result = HeadScores(scores=scores, patterns=patterns, tokens=list(dec.tokens), token_ids=dec.token_ids,
                        n_induction_positions=int((sources.sum(-1) > 0).sum()), dense_limit=int(dense_limit),
                        top_k=int(top_k), capture_error=run.max_error)
    _SCORES_CACHE[key] = (weakref.ref(dec, lambda _: _SCORES_CACHE.pop(key, None)), result)
    return result
