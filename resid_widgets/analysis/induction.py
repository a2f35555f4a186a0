"""Induction heads (Olsson et al. 2022; the TransformerLens demo).

Prompt: BOS + r + r, r = ``n_tokens`` random ids (``batch`` rows). At position i of the second copy
the current token first occurred at i − n; an induction head attends to the token after it,
i − (n − 1). score[l, h] = mean over the second copy and the batch of α^{l,h}[i, i − (n − 1)].
``dla[l, h]``: the head's direct logit attribution to the copied token (the true next token, the
one at i − (n − 1)), final norm frozen at each position's final stream, mean over the second copy
positions that have a next token and over the batch.
"""
from __future__ import annotations
from dataclasses import dataclass

import torch

from ..tokens import context_length
from ._common import Table, capture_attention, model_parts, plotly


@dataclass(repr=False, eq=False)
class InductionScores(Table):
    """Result of :func:`induction_scores`.

    Attributes:
        scores: [L, H] each head's induction score.
        dla: [L, H] each head's DLA to the repeated tokens.
        token_ids: [batch, T] the prompts (BOS + r + r).
        n_tokens: T; batch: how many random prompts; seed: their seed; bos: the BOS id used.
        rows: one dict per head, sorted by score.
    """

    scores: torch.Tensor
    dla: torch.Tensor
    token_ids: torch.Tensor
    n_tokens: int
    batch: int
    seed: int | None
    bos: int | None
    rows: list[dict]

    def __array__(self, dtype=None):  # np.asarray(result) -> the scores
        a = self.scores.numpy()
        return a if dtype is None else a.astype(dtype)

    @property
    def shape(self):
        return tuple(self.scores.shape)

    def top(self, n: int = 5) -> list[tuple[int, int, float]]:
        """[(layer, head, score)] of the ``n`` highest-scoring heads.

        Args:
            n: how many heads.
        """
        return [(r["layer"], r["head"], r["score"]) for r in self.rows[:n]]

    def figure(self):
        """A plotly figure: the heads' induction scores and their DLA of the copied token."""
        go, make_subplots = plotly()
        L, H = self.scores.shape
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                            subplot_titles=("induction score (attention to i − (n − 1))",
                                            "DLA of the copied token (mean)"))
        y = [f"L{l}" for l in range(L)]
        x = [f"H{h}" for h in range(H)]
        fig.add_heatmap(z=self.scores.tolist(), x=x, y=y, zmin=0, zmax=1, colorscale="Viridis",
                        colorbar=dict(x=0.44), hovertemplate="%{y}%{x}: %{z:.3f}<extra></extra>", row=1, col=1)
        m = float(self.dla.abs().max()) or 1.0
        fig.add_heatmap(z=self.dla.tolist(), x=x, y=y, zmin=-m, zmax=m, colorscale="RdBu", reversescale=True,
                        hovertemplate="%{y}%{x}: %{z:+.3f}<extra></extra>", row=1, col=2)
        fig.update_layout(title=f"induction heads: BOS + r + r, {self.n_tokens} random tokens × {self.batch}",
                          height=max(400, 18 * L + 160))
        return fig


def induction_prompt(vocab_size: int, n_tokens: int = 50, batch: int = 4, seed: int = 0, bos: int | None = None,
                     exclude=(), distinct: bool = False) -> torch.Tensor:
    """BOS + r + r with r uniform over the vocabulary minus ``exclude``.

    Args:
        vocab_size: ids are drawn from 0..vocab_size-1.
        n_tokens: the length of r.
        batch: how many prompts.
        seed: seeds the draw.
        bos: the id put first, or None for no BOS.
        exclude: ids never drawn (special tokens).
        distinct: no id twice within r, so the only repeats are the second copy's.

    Returns:
        LongTensor [batch, (1) + 2 n_tokens].
    """
    g = torch.Generator().manual_seed(seed)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    ex = [i for i in exclude if isinstance(i, int) and 0 <= i < vocab_size]
    if ex:
        allowed[torch.tensor(ex)] = False
    pool = allowed.nonzero()[:, 0]
    if distinct:
        if len(pool) < n_tokens:
            raise ValueError(f"{n_tokens} distinct tokens asked for, but the vocabulary offers {len(pool)}")
        r = torch.stack([pool[torch.randperm(len(pool), generator=g)[:n_tokens]] for _ in range(batch)])
    else:
        r = pool[torch.randint(len(pool), (batch, n_tokens), generator=g)]
    ids = torch.cat([r, r], 1)
    if bos is not None:
        ids = torch.cat([torch.full((batch, 1), bos, dtype=torch.long), ids], 1)
    return ids


def repeated_random_tokens(model, adapter, tokenizer=None, n_tokens: int = 50, batch: int = 4, seed: int = 0,
                           distinct: bool = False) -> tuple[torch.Tensor, int | None]:
    """(ids [batch, (1) + 2 n_tokens], BOS id or None): the induction prompt for ``model``. BOS:
    the tokenizer's, else the config's, else none. Special tokens are not drawn.

    Args:
        model: a Hugging Face causal LM.
        adapter: its family's adapter.
        tokenizer: its tokenizer (BOS and special tokens), or None.
        n_tokens, batch, seed, distinct: as in :func:`induction_prompt`.
    """
    if n_tokens < 2 or batch < 1:
        raise ValueError(f"need n_tokens >= 2 and batch >= 1 (got {n_tokens}, {batch})")
    vocab = model.config.vocab_size
    limit = context_length(model.config, adapter)
    if limit is not None and 2 * n_tokens + 1 > limit:
        raise ValueError(f"BOS + 2 x {n_tokens} tokens exceed the model's context of {limit}: use n_tokens <= {(limit - 1) // 2}")
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    if bos is None:
        bos = getattr(model.config, "bos_token_id", None)
    if not isinstance(bos, int) or not 0 <= bos < vocab:
        bos = None
    specials = list(getattr(tokenizer, "all_special_ids", []) or []) if tokenizer is not None else []
    specials += [getattr(model.config, a, None) for a in ("bos_token_id", "eos_token_id", "pad_token_id")]
    return induction_prompt(vocab, n_tokens, batch, seed, bos, specials, distinct), bos


def induction_scores(model, n_tokens: int = 50, batch: int = 4, seed: int = 0, tokenizer=None,
                     dla: bool = True) -> InductionScores:
    """Induction score of every head [L, H] (and the heads' DLA of the copied token) on
    BOS + r + r. BOS: the tokenizer's, else the config's, else none. Special tokens are not drawn.
    One eager batched forward pass in all.

    Args:
        model: a Hugging Face causal LM of a supported family.
        n_tokens: the length of r.
        batch: how many random prompts.
        seed: seeds r.
        tokenizer: the model's tokenizer (its BOS and special tokens), if any.
        dla: also compute each head's DLA of the copied token.

    Returns:
        :class:`InductionScores` with ``scores`` [L, H].
    """
    adapter, layers = model_parts(model)
    ids, bos = repeated_random_tokens(model, adapter, tokenizer, n_tokens, batch, seed)
    off = 0 if bos is None else 1
    second = torch.arange(off + n_tokens, off + 2 * n_tokens)  # positions of the second copy
    cap = capture_attention(model, ids, adapter)
    L, H = len(layers), cap.n_heads
    scores = torch.stack([cap.probs[l][:, :, second, second - (n_tokens - 1)].mean(dim=(0, 2)) for l in range(L)])
    dla_lh = _copied_token_dla(model, adapter, layers, cap, ids, second[:-1]) if dla else torch.zeros(L, H)
    rows = sorted((dict(layer=l, head=h, label=f"L{l}H{h}", score=float(scores[l, h]), dla=float(dla_lh[l, h]))
                   for l in range(L) for h in range(H)), key=lambda d: -d["score"])
    return InductionScores(scores=scores, dla=dla_lh, token_ids=ids, n_tokens=n_tokens, batch=batch, seed=seed,
                           bos=bos, rows=rows)


def _copied_token_dla(model, adapter, layers, cap, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """[L, H] mean DLA of each head's output at ``pos`` to the next token, from the capture alone:
    head h writes z_h W_O^h (Gemma 2/3: times the post-norm frozen at its real input); the final
    norm is frozen at each position's final stream (as in Decomposition.head_contributions)."""
    from ..adapters.base import require_module
    from ..weights import LayerWeights
    from ..norms import Norm
    from ..model_state import model_lock
    from ..weights import unembedding_fp32

    with model_lock(model):  # offloaded weights are loaded for the moment they are read
        final_norm = Norm.from_module(require_module(model, adapter.final_norm, "final norm", adapter),
                                      adapter.norm_kind, adapter.norm_offset)
        W_U, _ = unembedding_fp32(require_module(model, adapter.unembed, "unembedding", adapter))
    targets = ids[:, pos + 1]  # [B, P]
    U = W_U[targets.reshape(-1).to(W_U.device)].float().cpu().view(*targets.shape, -1)  # [B, P, d]
    r = final_norm.frozen_readout(U, cap.final[:, pos])  # [B, P, d]
    weights = LayerWeights(layers, adapter, model)
    L, H = len(layers), cap.n_heads
    out = torch.zeros(L, H)
    for l in range(L):
        W, b = weights.attn_out(l)
        W = W.cpu()
        z = cap.z[l][:, pos]  # [B, P, H*dh]
        rl = r
        if adapter.attn_post_norm:
            post = weights.norm(l, "attn_post")
            pre = z @ W.t() + (0 if b is None else b.cpu())
            rl = r * post.gain * post.inv_scale(pre)
        u = (rl @ W).view(*rl.shape[:2], H, -1)  # [B, P, H, dh]
        out[l] = (z.view_as(u) * u).sum(-1).mean(dim=(0, 1))
    return out
