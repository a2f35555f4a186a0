"""Induction heads (Olsson et al. 2022; the TransformerLens demo).

Prompt: BOS + r + r, r = ``n_tokens`` random ids (``batch`` rows). At position i of the second copy
the current token first occurred at i − n; an induction head attends to the token after it,
i − (n − 1). score[l, h] = mean over the second copy and the batch of α^{l,h}[i, i − (n − 1)].
``dla[l, h]``: the head's direct logit attribution to the copied token (the true next token, the
one at i − (n − 1)), final norm frozen at each position's final stream, mean over the second copy
positions that have a next token and over the batch.
"""
from __future__ import annotations

import torch

from ._common import Table, capture_attention, model_parts, plotly


class InductionScores(Table):
    """Result of :func:`induction_scores`: ``scores`` [L, H], ``dla`` [L, H], the prompt
    ``token_ids`` [batch, T], ``rows`` = heads sorted by score."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __array__(self, dtype=None):  # np.asarray(result) -> the scores
        a = self.scores.numpy()
        return a if dtype is None else a.astype(dtype)

    @property
    def shape(self):
        return tuple(self.scores.shape)

    def top(self, n: int = 5) -> list[tuple[int, int, float]]:
        return [(r["layer"], r["head"], r["score"]) for r in self.rows[:n]]

    def figure(self):
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
                     exclude=()) -> torch.Tensor:
    """[batch, (1) + 2 n_tokens] BOS + r + r with r uniform over the vocabulary minus ``exclude``."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    ex = [i for i in exclude if i is not None and 0 <= i < vocab_size]
    if ex:
        allowed[torch.tensor(ex)] = False
    pool = allowed.nonzero()[:, 0]
    r = pool[torch.randint(len(pool), (batch, n_tokens), generator=g)]
    ids = torch.cat([r, r], 1)
    if bos is not None:
        ids = torch.cat([torch.full((batch, 1), bos, dtype=torch.long), ids], 1)
    return ids


def induction_scores(model, n_tokens: int = 50, batch: int = 4, seed: int = 0, tokenizer=None,
                     dla: bool = True) -> InductionScores:
    """Induction score of every head [L, H] (and the heads' DLA of the copied token) on
    BOS + r + r. BOS: the tokenizer's, else the config's, else none. Special tokens are not drawn.
    One eager batched pass for the attention; ``dla=True`` adds one decomposition per row."""
    from ..engine import decompose

    if n_tokens < 2 or batch < 1:
        raise ValueError(f"need n_tokens >= 2 and batch >= 1 (got {n_tokens}, {batch})")
    adapter, layers = model_parts(model)
    vocab = model.config.vocab_size
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    if bos is None:
        bos = getattr(model.config, "bos_token_id", None)
    if not isinstance(bos, int) or not 0 <= bos < vocab:
        bos = None
    specials = list(getattr(tokenizer, "all_special_ids", []) or []) if tokenizer is not None else []
    specials += [getattr(model.config, a, None) for a in ("bos_token_id", "eos_token_id", "pad_token_id")
                 if isinstance(getattr(model.config, a, None), int)]
    ids = induction_prompt(vocab, n_tokens, batch, seed, bos, specials)
    off = 0 if bos is None else 1
    second = torch.arange(off + n_tokens, off + 2 * n_tokens)  # positions of the second copy
    cap = capture_attention(model, ids, adapter)
    L, H = len(layers), cap.n_heads
    scores = torch.stack([cap.probs[l][:, :, second, second - (n_tokens - 1)].mean(dim=(0, 2)) for l in range(L)])
    dla_lh = torch.zeros(L, H)
    if dla:
        pos = second[:-1]
        for b in range(batch):
            dec = decompose(model, ids[b], tokenizer=tokenizer, adapter=adapter)
            targets = ids[b, pos + 1]
            ref = dec.states[-1, pos]  # [P, d]
            U = dec.readout.unembed[targets.to(dec.readout.device)].cpu()
            r = dec.readout.norm.to("cpu").frozen_readout(U, ref)  # [P, d]
            for l in range(L):
                hd = dec.head_deltas(l)[:H, pos]  # [H, P, d]
                dla_lh[l] += torch.einsum("hpd,pd->h", hd, r) / len(pos)
        dla_lh /= batch
    rows = sorted((dict(layer=l, head=h, label=f"L{l}H{h}", score=float(scores[l, h]), dla=float(dla_lh[l, h]))
                   for l in range(L) for h in range(H)), key=lambda d: -d["score"])
    return InductionScores(scores=scores, dla=dla_lh, token_ids=ids, n_tokens=n_tokens, batch=batch, seed=seed,
                           bos=bos, rows=rows)
