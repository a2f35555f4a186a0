"""Paths and bandwidth (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits").

- Direct path: W_U · norm_f(e) (final norm recomputed), the model with every block removed.
- Single-block paths, two readings, both per block l:
  * ``dla_*``: the DLA of block l's actual delta A_l + F_l (final norm frozen at h_L; additive);
  * ``lens``: the logit lens of e + A_l + F_l — the embedding plus what block l really wrote in the
    full model (norm recomputed);
  * ``isolated=True``: W_U · norm_f(e + B_l(e)) from a real run where every other block is the
    identity, i.e. block l applied to the bare embedding (the one-block path through the real
    non-linearities).
- Residual bandwidth: d_model against the dimensions each layer writes with (H·d_head for
  attention, d_ff for the FFN), the numerical rank of those writes, and how much the heads'
  output subspaces overlap: for orthonormal bases Q_i, Q_j of the column spaces of W_O^i, W_O^j,
  overlap = ||Q_iᵀ Q_j||_F² / min(rank_i, rank_j) ∈ [0, 1] (the mean squared cosine of the
  principal angles; 1 = one contains the other, ~d_head/d_model for random subspaces).
"""
from __future__ import annotations
from dataclasses import dataclass

import torch

from ._common import Table, model_parts, plotly, require_model
from ..adapters.base import require_module
from ..core import Decomposition
from ..weights import LayerWeights, WeightsReader
from ..runner import Capture, Edit, run_batches


@dataclass(repr=False, eq=False)
class DirectPath(Table):
    """Result of :func:`direct_path`: per position the top tokens of W_U · norm_f(e).

    Attributes:
        top_ids: [T, k] top next-token ids of the direct path; top_probs: [T, k] their probabilities.
        top_texts: [T][k] their texts; tokens: the prompt's token texts (T).
        input_rank: [T] rank of the input token itself.
        repeats_input: fraction of positions whose top token is the input token.
        rows: one dict per position.
    """

    top_ids: torch.Tensor
    top_probs: torch.Tensor
    top_texts: list[list[str]]
    tokens: list[str]
    input_rank: torch.Tensor
    repeats_input: float
    rows: list[dict]

    def figure(self):
        """A plotly heatmap of the direct path's top tokens at every position."""
        go, _ = plotly()
        T, k = self.top_ids.shape
        text = [[repr(t) for t in row] for row in self.top_texts]
        fig = go.Figure(go.Heatmap(z=self.top_probs.T.tolist(), text=list(map(list, zip(*text))), texttemplate="%{text}",
                                   x=[f"{i}:{t!r}" for i, t in enumerate(self.tokens)], y=[f"#{j + 1}" for j in range(k)],
                                   colorscale="Blues", zmin=0, zmax=1,
                                   hovertemplate="%{x} → %{text}: p=%{z:.3f}<extra></extra>"))
        fig.update_layout(title=f"direct path W_U·norm_f(e): top token = input token at {self.repeats_input:.0%} "
                                "of positions", yaxis_autorange="reversed", height=300 + 20 * k)
        return fig


def direct_path(dec, k: int = 5) -> DirectPath:
    """The direct path (no blocks) at every position: top-``k`` next tokens of W_U · norm_f(e).

    Args:
        dec: a :class:`~resid_widgets.Decomposition`.
        k: how many top tokens per position.

    Returns:
        :class:`DirectPath` with [T, k] token texts and probabilities.
    """
    e = dec.states[dec.n_embed - 1]  # [T, d]
    z = dec.readout.logits(e).cpu()
    logp = z - torch.logsumexp(z, -1, keepdim=True)
    top_lp, top_ids = logp.topk(k, -1)
    ids = dec.token_ids
    input_rank = (z > z.gather(1, ids[:, None])).sum(-1)
    top_texts = [[dec.token_text(i) for i in row] for row in top_ids.tolist()]
    rows = [dict(position=t, token=dec.tokens[t], top=top_texts[t][0], top_prob=float(top_lp[t, 0].exp()),
                 input_rank=int(input_rank[t]), tops=list(zip(top_texts[t], top_lp[t].exp().tolist())))
            for t in range(len(ids))]
    return DirectPath(top_ids=top_ids, top_probs=top_lp.exp(), top_texts=top_texts, tokens=dec.tokens,
                      input_rank=input_rank, repeats_input=float((top_ids[:, 0] == ids).float().mean()), rows=rows)


@dataclass(repr=False, eq=False)
class BlockPaths(Table):
    """Result of :func:`block_paths`, per block l (rows).

    Attributes:
        target_id: the target's id; target: its text; position: where (non-negative).
        dla_attn / dla_mlp / dla_block: [L] DLA of A_l, F_l, A_l + F_l to the target (additive).
        lens_logprob: [L] log p(target | e + A_l + F_l).
        direct_logprob: log p(target | e).
        lens_top: [L][k] (text, prob) top tokens of e + A_l + F_l.
        isolated_logprob: [L] the run with only block l active (None unless isolated=True).
        isolated_top: [L] that run's top token texts (None unless isolated=True).
        rows: one dict per block.
    """

    target_id: int
    target: str
    position: int
    dla_attn: torch.Tensor
    dla_mlp: torch.Tensor
    dla_block: torch.Tensor
    lens_logprob: torch.Tensor
    direct_logprob: float
    lens_top: list[list[tuple[str, float]]]
    isolated_logprob: torch.Tensor | None
    isolated_top: list[str] | None
    rows: list[dict]

    def figure(self):
        """A plotly figure: each block's DLA (attention, MLP) and the log p(target) of e + one block."""
        go, make_subplots = plotly()
        L = len(self.dla_block)
        names = [f"block {l}" for l in range(L)]
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                            subplot_titles=(f"DLA of each block's delta to {self.target!r}",
                                            "log p(target) of e + one block"))
        fig.add_bar(x=names, y=self.dla_attn.tolist(), name="attention", row=1, col=1)
        fig.add_bar(x=names, y=self.dla_mlp.tolist(), name="FFN", row=1, col=1)
        fig.add_scatter(x=names, y=self.lens_logprob.tolist(), mode="lines+markers", name="lens of e + A_l + F_l",
                        hovertext=[f"top {t[0][0]!r}" for t in self.lens_top], row=1, col=2)
        if self.isolated_logprob is not None:
            fig.add_scatter(x=names, y=self.isolated_logprob.tolist(), mode="lines+markers",
                            name="only block l active (re-run)",
                            hovertext=[f"top {t!r}" for t in self.isolated_top], row=1, col=2)
        fig.add_hline(y=self.direct_logprob, line_dash="dot", annotation_text="direct path", row=1, col=2)
        fig.update_layout(barmode="relative", title=f"single-block paths at position {self.position}", height=440)
        return fig


def block_paths(dec, target=None, position: int = -1, k: int = 5, isolated: bool = False) -> BlockPaths:
    """Single-block paths to ``target`` (default: the model's prediction) at ``position``.

    Args:
        dec: a :class:`~resid_widgets.Decomposition`.
        target: a token (text or id); default the model's top prediction at ``position``.
        position: the position read (negative counts from the end).
        k: how many top tokens of each path to keep.
        isolated: also run each block alone on the bare embedding (every other block the
            identity; one batched re-run of the model, see the module docstring).

    Returns:
        :class:`BlockPaths` with one row per block [L].
    """
    pos = dec.position_index(position)
    tid = dec.top_prediction(pos) if target is None else dec.target_id(target)
    L = dec.n_layers
    dla = dec.contributions(tid, pos, "dla")
    dla_attn = dla[[dec.attn_index(l) for l in range(L)]]
    dla_mlp = dla[[dec.mlp_index(l) for l in range(L)]]
    e = dec.states[dec.n_embed - 1, pos]
    block = torch.stack([dec.deltas[dec.attn_index(l), pos] + dec.deltas[dec.mlp_index(l), pos] for l in range(L)])
    z = dec.readout.logits(torch.cat([e[None], e[None] + block])).cpu()
    logp = z - torch.logsumexp(z, -1, keepdim=True)
    top_lp, top_ids = logp[1:].topk(k, -1)
    lens_top = [[(dec.token_text(i), float(p)) for i, p in zip(ids, lp.exp().tolist())]
                for ids, lp in zip(top_ids.tolist(), top_lp)]
    iso_lp = iso_top = None
    if isolated:
        iso = _only_block_logits(dec, pos)
        iso_lp = (iso[:, tid] - torch.logsumexp(iso, -1))[:L]
        iso_top = [dec.token_text(i) for i in iso[:L].argmax(-1).tolist()]
    rows = []
    for l in range(L):
        row = dict(block=l, dla_attn=float(dla_attn[l]), dla_mlp=float(dla_mlp[l]),
                   dla_block=float(dla_attn[l] + dla_mlp[l]), lens_logprob=float(logp[l + 1, tid]),
                   lens_top=lens_top[l][0][0])
        if isolated:
            row.update(isolated_logprob=float(iso_lp[l]), isolated_top=iso_top[l])
        rows.append(row)
    return BlockPaths(target_id=tid, target=dec.token_text(tid), position=pos, dla_attn=dla_attn, dla_mlp=dla_mlp,
                      dla_block=dla_attn + dla_mlp, lens_logprob=logp[1:, tid], direct_logprob=float(logp[0, tid]),
                      lens_top=lens_top, isolated_logprob=iso_lp, isolated_top=iso_top, rows=rows)


def _only_block_logits(dec, pos: int, batch_size: int = 8) -> torch.Tensor:
    """[L+1, V] logits at ``pos`` of runs where only block l is active (row L: none)."""
    model = require_model(dec)
    adapter, layers = model_parts(model, dec.adapter)
    L = len(layers)
    final_norm = require_module(model, adapter.final_norm, "final norm", adapter)

    def edits_for(rows: range) -> list[Edit]:  # every block is the identity except in row l
        return [Edit.identity(layers[l], rows=[row != l for row in rows]) for l in range(L)]

    run = run_batches(model, dec.token_ids[: pos + 1], L + 1, edits_for,
                      {"final": Capture(final_norm, on="input")}, batch_size=batch_size, position=pos)
    return dec.readout.logits(run.captured["final"].float().to(dec.readout.device)).cpu()


@dataclass(repr=False, eq=False)
class Bandwidth(Table):
    """Result of :func:`bandwidth`.

    Attributes:
        d_model, n_heads, d_head: the model's sizes.
        rows: per layer: attn_dims (H·d_head), mlp_dims (d_ff), attn_rank / mlp_rank (numerical
            rank of the write matrices with ranks=True, else min(d_model, dims)), mean / max head overlap.
        head_overlap: [L, H, H] normalised Frobenius overlap of the heads' output subspaces.
        head_ranks: [L, H] each head's numerical output rank.
        mean_overlap: [L] mean off-diagonal overlap.
        random_overlap: the expected overlap of random subspaces of the same size (d_head / d_model).
        rtol: the relative singular-value cut-off; ranks_computed: whether ranks were computed.
        weights: the :class:`~resid_widgets.weights.WeightsReader` the numbers were read from.
    """

    d_model: int
    n_heads: int
    d_head: int
    rows: list[dict]
    head_overlap: torch.Tensor
    head_ranks: torch.Tensor
    mean_overlap: torch.Tensor
    random_overlap: float
    rtol: float
    ranks_computed: bool
    weights: WeightsReader

    def principal_cosines(self, layer: int, i: int, j: int) -> torch.Tensor:
        """Cosines of the principal angles between the output subspaces of heads i and j of
        ``layer`` (descending; their squares average to ``head_overlap[layer, i, j]``).

        Args:
            layer: the layer.
            i, j: the two heads.
        """
        Qi, Qj = (_orthonormal(self._head_write(layer, h), self.rtol) for h in (i, j))
        return torch.linalg.svdvals(Qi.T @ Qj).float()

    def _head_write(self, layer: int, h: int) -> torch.Tensor:
        W_O = self.weights.attn_out(layer)[0].cpu()
        post = self.weights.norm(layer, "attn_post")
        if post is not None:
            W_O = W_O * post.gain[:, None]
        return W_O[:, h * self.d_head:(h + 1) * self.d_head]

    def figure(self, layer: int | None = None):
        """A plotly figure: dimensions written per layer against d_model, the mean head overlap per
        layer, and one layer's [H, H] head overlaps.

        Args:
            layer: the layer whose head overlaps are shown (default: the most overlapping).
        """
        go, make_subplots = plotly()
        L = len(self.rows)
        show = int(self.mean_overlap.argmax()) if layer is None else layer % L
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, column_widths=[0.38, 0.3, 0.32],
                            subplot_titles=("dimensions written per layer vs d_model",
                                            "mean head-subspace overlap per layer",
                                            f"head output-subspace overlap, layer {show}"))
        names = [f"L{l}" for l in range(L)]
        what = "rank" if self.ranks_computed else "≤ min(d_model, dims)"
        fig.add_bar(x=names, y=[row["attn_rank"] for row in self.rows], name=f"attention writes ({what})", row=1, col=1)
        fig.add_bar(x=names, y=[row["mlp_rank"] for row in self.rows], name=f"FFN writes ({what})", row=1, col=1)
        fig.add_scatter(x=names, y=[row["mlp_dims"] for row in self.rows], mode="lines", name="d_ff", row=1, col=1)
        fig.add_scatter(x=names, y=[row["attn_dims"] for row in self.rows], mode="lines", name="H·d_head", row=1, col=1)
        fig.add_hline(y=self.d_model, line_dash="dot", annotation_text=f"d_model={self.d_model}", row=1, col=1)
        fig.add_scatter(x=names, y=self.mean_overlap.tolist(), mode="lines+markers", name="mean overlap",
                        row=1, col=2)
        fig.add_scatter(x=names, y=[row["max_head_overlap"] for row in self.rows], mode="lines", name="max overlap",
                        row=1, col=2)
        fig.add_hline(y=self.random_overlap, line_dash="dot", annotation_text="random subspaces", row=1, col=2)
        H = self.head_overlap.shape[1]
        fig.add_heatmap(z=self.head_overlap[show].tolist(), x=[f"H{h}" for h in range(H)], y=[f"H{h}" for h in range(H)],
                        zmin=0, zmax=1, colorscale="Viridis", row=1, col=3, showscale=False,
                        hovertemplate="%{y}·%{x}: %{z:.3f}<extra></extra>")
        fig.update_layout(title=f"residual bandwidth (d_head / d_model = {self.random_overlap:.3f}: the overlap of "
                                "random subspaces)", height=460, barmode="group",
                          legend=dict(orientation="h", y=-0.2))
        return fig


def _orthonormal(W: torch.Tensor, rtol: float) -> torch.Tensor:
    """Orthonormal basis [d, r] of W's column space (W [d, n], n small), from the Gram matrix."""
    W = W.double()
    lam, V = torch.linalg.eigh(W.T @ W)  # ascending
    keep = (lam > 0) & (lam > (rtol ** 2) * lam.max())
    return (W @ V[:, keep]) / lam[keep].sqrt()


def _head_bases(W_O: torch.Tensor, H: int, rtol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head an orthonormal basis of its output columns, batched: ([H, d, dh] with zero columns
    beyond each head's numerical rank, ranks [H])."""
    d = W_O.shape[0]
    Wh = W_O.double().view(d, H, -1).permute(1, 0, 2)  # [H, d, dh]
    lam, V = torch.linalg.eigh(Wh.transpose(1, 2) @ Wh)  # [H, dh], [H, dh, dh]
    keep = (lam > 0) & (lam > (rtol ** 2) * lam.max(-1, keepdim=True).values)
    scale = torch.where(keep, lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam))
    return (Wh @ V) * scale[:, None, :], keep.sum(-1)


def _rank(W: torch.Tensor, rtol: float) -> int:
    W = W.double()
    G = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
    lam = torch.linalg.eigvalsh(G)
    return int((lam > (rtol ** 2) * lam.max()).sum()) if lam.numel() and lam.max() > 0 else 0


def bandwidth(source, rtol: float = 1e-5, ranks: bool = False) -> Bandwidth:
    """Residual bandwidth of a model (or of a Decomposition's model), from the weights alone.

    A post-norm's gain (Gemma 2/3) is part of what a sub-layer writes, so it is applied to the
    columns. Head subspaces keep the directions whose singular values exceed ``rtol`` × the
    largest. ``ranks=True`` also computes each layer's numerical write rank (an eigen-decomposition
    of a d_model × d_model matrix per sub-layer); otherwise ``attn_rank`` / ``mlp_rank`` are the
    upper bounds min(d_model, dims).

    Args:
        source: a Hugging Face causal LM of a supported family, or a
            :class:`~resid_widgets.Decomposition` of one.
        rtol: relative singular-value threshold of a head's output subspace.
        ranks: also compute each sub-layer's numerical write rank.

    Returns:
        :class:`Bandwidth`: per layer the write dimensions, ranks and the heads' subspace overlaps.
    """
    if isinstance(source, Decomposition):
        weights, L, H, d = source.weights, source.n_layers, source.n_heads, source.d_model
    else:
        adapter, layers = model_parts(source)
        weights, L = LayerWeights(layers, adapter, source), len(layers)
        cfg = source.config
        H = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head")
        d = None
    rows, overlaps, head_ranks = [], [], []
    for l in range(L):
        W_O, _ = weights.attn_out(l)
        W_out, _ = weights.mlp_out(l)
        W_O, W_out = W_O.cpu(), W_out.cpu()
        d = W_O.shape[0]
        for kind in ("attn", "mlp"):
            post = weights.norm(l, f"{kind}_post")  # None where the layer has no post-norm
            if post is not None:
                if kind == "attn":
                    W_O = W_O * post.gain[:, None]
                else:
                    W_out = W_out * post.gain[:, None]
        dh = W_O.shape[1] // H
        Q, head_r = _head_bases(W_O, H, rtol)  # [H, d, dh] (zero columns past each head's rank)
        C = Q.permute(1, 0, 2).reshape(d, -1)  # [d, H*dh]
        frob = (C.T @ C).view(H, dh, H, dh).pow(2).sum((1, 3)).float()  # ||Q_i^T Q_j||_F^2
        m = torch.minimum(head_r[:, None], head_r[None, :]).float()
        ov = torch.where(m > 0, frob / m.clamp_min(1), torch.zeros_like(frob))
        overlaps.append(ov)
        head_ranks.append(head_r.tolist())
        attn_rank = _rank(W_O, rtol) if ranks else min(d, W_O.shape[1])
        mlp_rank = _rank(W_out, rtol) if ranks else min(d, W_out.shape[1])
        off = ov[~torch.eye(H, dtype=torch.bool)]
        rows.append(dict(layer=l, d_model=d, attn_dims=W_O.shape[1], attn_rank=attn_rank, mlp_dims=W_out.shape[1],
                         mlp_rank=mlp_rank, mean_head_overlap=float(off.mean()) if off.numel() else 0.0,
                         max_head_overlap=float(off.max()) if off.numel() else 0.0))
    head_overlap = torch.stack(overlaps)
    return Bandwidth(d_model=d, n_heads=H, d_head=dh, rows=rows, head_overlap=head_overlap,
                     head_ranks=torch.tensor(head_ranks),
                     mean_overlap=torch.tensor([row["mean_head_overlap"] for row in rows]),
                     random_overlap=dh / d, rtol=rtol, ranks_computed=ranks, weights=weights)
