"""Block budget and the bigram floor (the lesson "The residual stream as the object"), and "drop one block".

Block budget k: blocks 0..k-1 run, blocks k..L-1 are replaced by the identity, and the output is
W_U · norm_f(h) (final norm recomputed, then any final soft-cap). In a causal pre-norm model the
blocks after k do not change what blocks 0..k-1 compute, so this equals the logit lens of the
state after block k-1 — computed here from the decomposition, no re-run (the tests check it
against a real run with identity blocks). k = 0 is the direct path W_U · norm_f(e); with tied
embeddings it mostly predicts the input token itself (see ``repeats_input``): it is measured,
not assumed to be a bigram table.

Drop one: each block (or sub-layer) alone replaced by the identity (its delta zeroed), the rest
running normally — real re-runs, batched: one copy of the prompt per dropped unit.
"""
from __future__ import annotations
from dataclasses import dataclass

import torch

from ._common import Table, model_parts, plotly, require_model
from ..adapters.base import require_module
from ..runner import Capture, Edit, run_batches


@dataclass(repr=False, eq=False)
class BlockBudgetResult(Table):
    """Result of :func:`block_budget` (the view is :class:`resid_widgets.BlockBudget`).

    Attributes:
        position: the position read (non-negative).
        target_id: the target's id, or None when none was given; target: its text, or None.
        top_ids: [L+1, k] the next-token distribution's top token ids per budget (k = 0..L).
        top_probs: [L+1, k] their probabilities.
        top_texts: [L+1][k] their texts.
        target_logprob: [L+1] log p(target) per budget, or None without a target.
        entropy: [L+1] entropy of the distribution per budget, in nats.
        repeats_input: whether budget 0's top token is the input token itself.
        rows: one dict per budget (k, top, top_prob, entropy, target_prob, target_rank, tops).
    """

    position: int
    target_id: int | None
    target: str | None
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    top_texts: list[list[str]]
    target_logprob: torch.Tensor | None
    entropy: torch.Tensor
    repeats_input: bool
    rows: list[dict]

    def figure(self):
        """A plotly figure: the top next tokens per block budget, and p(target) / entropy per budget."""
        go, make_subplots = plotly()
        K = self.top_ids.shape[0]
        fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.12,
                            subplot_titles=(f"top next tokens at position {self.position} per block budget k",
                                            "p(target) / entropy per k"))
        texts = [[self.top_texts[k][i] for i in range(self.top_ids.shape[1])] for k in range(K)]
        fig.add_heatmap(z=self.top_probs.tolist(), text=[[repr(t) for t in row] for row in texts],
                        texttemplate="%{text}", x=[f"#{i + 1}" for i in range(self.top_ids.shape[1])],
                        y=[f"k={k}" for k in range(K)], colorscale="Blues", zmin=0, zmax=1, showscale=False,
                        hovertemplate="k=%{y} %{text}: p=%{z:.3f}<extra></extra>", row=1, col=1)
        if self.target_logprob is not None:
            fig.add_scatter(x=list(range(K)), y=self.target_logprob.exp().tolist(), mode="lines+markers",
                            name=f"p({self.target!r})", row=1, col=2)
        fig.add_scatter(x=list(range(K)), y=self.entropy.tolist(), mode="lines+markers", name="entropy (nats)",
                        row=1, col=2)
        fig.update_xaxes(title_text="block budget k", row=1, col=2)
        fig.update_layout(title="block budget: blocks 0..k-1 active, the rest identity (k=0: direct path)",
                          height=max(420, 24 * K + 160))
        return fig


def budget_state_indices(dec) -> list[int]:
    """Component indices of the states h_k, k = 0..L (the stream after block k-1).

    Args:
        dec: a Decomposition.
    """
    return [dec.n_embed - 1] + [dec.mlp_index(l) for l in range(dec.n_layers)]


def block_budget(dec, position: int = -1, k: int = 10, target=None) -> BlockBudgetResult:
    """Next-token distribution at ``position`` with only blocks 0..b-1 active, b = 0..L.

    Args:
        dec: a :class:`~resid_widgets.Decomposition`.
        position: the position whose prediction is read (negative counts from the end).
        k: how many top tokens to keep per prefix of blocks.
        target: a token (text or id) whose log-prob and rank are followed, or None.

    Returns:
        :class:`BlockBudgetResult` with one row per b = 0..L.

    Raises:
        ValueError: ``k`` is not between 1 and the vocabulary size.
    """
    pos = dec.position_index(position)
    if not 1 <= k <= dec.vocab_size:
        raise ValueError(f"k={k} must be between 1 and the vocabulary size {dec.vocab_size}")
    tid = None if target is None else dec.target_id(target)
    h = dec.states[budget_state_indices(dec), pos]  # [L+1, d]
    z = dec.readout.logits(h).cpu()
    lse = torch.logsumexp(z, -1)
    logp = z - lse[:, None]
    top_lp, top_ids = logp.topk(k, -1)
    p = logp.exp()
    entropy = -(p * logp).nan_to_num(0.0).sum(-1)
    target_lp = None if tid is None else logp[:, tid]
    top_texts = [[dec.token_text(i) for i in row] for row in top_ids.tolist()]
    rows = []
    for b in range(len(h)):
        row = dict(k=b, top=top_texts[b][0], top_prob=float(top_lp[b, 0].exp()), entropy=float(entropy[b]))
        if tid is not None:
            row["target_prob"] = float(target_lp[b].exp())
            row["target_rank"] = int((z[b] > z[b, tid]).sum())
        row["tops"] = list(zip(top_texts[b], top_lp[b].exp().tolist()))
        rows.append(row)
    return BlockBudgetResult(position=pos, target_id=tid, target=None if tid is None else dec.token_text(tid),
                       top_ids=top_ids, top_probs=top_lp.exp(), top_texts=top_texts, target_logprob=target_lp,
                       entropy=entropy, repeats_input=bool(top_ids[0, 0] == dec.token_ids[pos]), rows=rows)


@dataclass(repr=False, eq=False)
class DropOne(Table):
    """Result of :func:`drop_one`.

    Attributes:
        unit: "block", "attn" or "mlp".
        position: the position read (non-negative).
        target_id: the target's id; target: its text.
        full_logprob: log p(target) of the intact model (from the same batched run).
        logprob: [L] log p(target) with unit l replaced by the identity.
        effect: [L] logprob − full_logprob.
        top_ids: [L] the top next token with unit l dropped; top_texts: [L] their texts.
        rows: one dict per unit (unit, logprob, effect, top).
    """

    unit: str
    position: int
    target_id: int
    target: str
    full_logprob: float
    logprob: torch.Tensor
    effect: torch.Tensor
    top_ids: torch.Tensor
    top_texts: list[str]
    rows: list[dict]

    def figure(self):
        """A plotly bar chart of the change in log p(target) when each unit is dropped."""
        go, _ = plotly()
        names = [f"{self.unit} {l}" for l in range(len(self.effect))]
        fig = go.Figure(go.Bar(x=names, y=self.effect.tolist(),
                               hovertext=[f"drop {n}: log p={float(v):.3f}, top {t!r}"
                                          for n, v, t in zip(names, self.logprob, self.top_texts)],
                               hoverinfo="text+y"))
        fig.update_layout(title=f"drop one {self.unit}: change in log p({self.target!r}) at position {self.position} "
                                f"(intact: {self.full_logprob:.3f})", yaxis_title="Δ log p", height=420)
        return fig


def drop_one(dec, target=None, position: int = -1, unit: str = "block", batch_size: int = 8,
             after_batch=None) -> DropOne:
    """Log p(target) at ``position`` with each block (``unit="block"``) or each attention / FFN
    sub-layer (``"attn"`` / ``"mlp"``, its delta zeroed) alone removed: L real forward passes,
    run as batches of copies of the prompt (truncated after ``position``: later tokens cannot
    matter in a causal model).

    Args:
        dec: a :class:`~resid_widgets.Decomposition` of a Hugging Face model.
        target: a token (text or id); default the model's top prediction at ``position``.
        position: the position read (negative counts from the end).
        unit: "block", "attn" or "mlp": what one run removes.
        batch_size: copies of the prompt per forward pass.
        after_batch: called with the rows each batch ran (L + 1 rows in all; a progress bar).

    Returns:
        :class:`DropOne` with the log-prob change of each of the L removals.
    """
    if unit not in ("block", "attn", "mlp"):
        raise ValueError(f"unit must be 'block', 'attn' or 'mlp', not {unit!r}")
    model = require_model(dec)
    adapter, layers = model_parts(model, dec.adapter)
    pos = dec.position_index(position)
    tid = dec.top_prediction(pos) if target is None else dec.target_id(target)
    L = len(layers)
    final_norm = require_module(model, adapter.final_norm, "final norm", adapter)
    if unit == "block":
        dropped = list(layers)
    else:
        dropped = [require_module(layer, adapter.delta_path(unit), unit, adapter) for layer in layers]
    edit = Edit.identity if unit == "block" else Edit.zero

    def edits_for(rows: range) -> list[Edit]:  # row l < L drops unit l; row L is the intact model
        return [edit(dropped[l], rows=[row == l for row in rows]) for l in range(L) if l in rows]

    run = run_batches(model, dec.token_ids[: pos + 1], L + 1, edits_for,
                      {"final": Capture(final_norm, on="input")}, batch_size=batch_size, position=pos,
                      after_batch=after_batch)
    h = run.captured["final"].float().to(dec.readout.device)
    z = dec.readout.logits(h).cpu()
    logp = z[:, tid] - torch.logsumexp(z, -1)
    top_ids = z.argmax(-1)
    full = float(logp[L])
    return DropOne(unit=unit, position=pos, target_id=tid, target=dec.token_text(tid), full_logprob=full,
                   logprob=logp[:L], effect=logp[:L] - full, top_ids=top_ids[:L],
                   top_texts=[dec.token_text(i) for i in top_ids[:L].tolist()],
                   rows=[dict(unit=f"{unit}.{l}", logprob=float(logp[l]), effect=float(logp[l] - full),
                              top=dec.token_text(int(top_ids[l]))) for l in range(L)])
