"""FFN subvalues (Yu & Ananiadou): every neuron's contribution to a target at one position.

F_l = Σ_k m_k · W_out[:, k] + b_out (Gemma 2/3: times the post-norm frozen at its real input).
For each neuron k of each layer l:

- ``dla[l, k]`` = (W_U · norm*(m_k W_out[:, k]))[target], final norm frozen at the real final
  stream; per layer, Σ_k dla[l, k] + ``bias_dla[l]`` == the FFN's DLA (exact).
- ``logprob[l, k]`` = log p(target | b + m_k W_out[:, k]) − log p(target | b), b = the stream
  before that FFN (attention output of the layer included), p the logit lens (norm recomputed).
  Not additive over neurons. Exact for the neurons it is computed for: all neurons of the chosen
  layers (``logprob="all"``), or the ``candidates`` with the largest |DLA| (default; NaN elsewhere),
  since one exact value needs a full softmax over the vocabulary per neuron.
- the top neurons, each with its before-softmax (BS) top and bottom tokens W_U · norm*(subvalue).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ._common import Table, plotly, tok_list


@dataclass(repr=False, eq=False)
class FFNSubvalues(Table):
    """Result of :func:`ffn_subvalues`.

    Attributes:
        target_id: the attributed token id; target: its text; position: where (non-negative).
        layers: the layer indices covered (rows of the tensors).
        dla: [len(layers), d_ff] every neuron's DLA.
        bias_dla: [len(layers)] DLA of the output bias b_out (0 when none).
        layer_dla: [len(layers)] the FFN's own DLA (== dla.sum(1) + bias_dla).
        logprob: [len(layers), d_ff] log-prob increase, NaN where not computed.
        activations: [len(layers), d_ff] m_k at the position.
        rows: the top ``n`` neurons (dicts: layer, neuron, label, activation, dla, logprob_increase,
            bs_top, bs_bottom), ordered by ``rank_by``.
        rank_by: "dla" or "logprob"; order: "top", "bottom" or "abs"; norm: "recomputed" or "frozen".
        logprob_estimate: [len(layers), d_ff] the log-prob increase's first-order estimate for
            every neuron, m_k W_out[:, k] · ∇_b log p(target | b) (used to pick the candidates;
            None with logprob="none"). An approximation: the exact values are in ``logprob``.
    """

    target_id: int
    target: str
    position: int
    layers: list[int]
    dla: torch.Tensor
    bias_dla: torch.Tensor
    layer_dla: torch.Tensor
    logprob: torch.Tensor
    activations: torch.Tensor
    rows: list[dict]
    rank_by: str
    order: str
    norm: str
    logprob_estimate: torch.Tensor | None

    def figure(self):
        """A plotly figure: the top neurons' DLA (and log-prob increase), and per layer the neurons' DLA."""
        go, make_subplots = plotly()
        fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                            subplot_titles=(f"top neurons for {self.target!r} at position {self.position}",
                                            "per layer: neuron DLA (+ / −) and bias"))
        rows = list(reversed(self.rows))
        labels = [row["label"] for row in rows]
        hover = [f"{row['label']} act={row['activation']:+.3f}<br>DLA={row['dla']:+.3f}"
                 + (f"<br>Δlog p={row['logprob_increase']:+.3f}" if row["logprob_increase"] is not None else "")
                 + f"<br>promotes: {tok_list(row['bs_top'])}<br>suppresses: {tok_list(row['bs_bottom'])}"
                 for row in rows]
        fig.add_bar(y=labels, x=[row["dla"] for row in rows], orientation="h", name="DLA", hovertext=hover,
                    hoverinfo="text", row=1, col=1)
        if any(row["logprob_increase"] is not None for row in rows):
            fig.add_scatter(y=labels, x=[row["logprob_increase"] for row in rows], mode="markers",
                            marker=dict(symbol="diamond", size=9, color="#e76f51"),
                            name="Δ log p (not additive)", hovertext=hover, hoverinfo="text", row=1, col=1)
        pos = self.dla.clamp_min(0).sum(1).tolist()
        neg = self.dla.clamp_max(0).sum(1).tolist()
        names = [f"mlp.{l}" for l in self.layers]
        fig.add_bar(x=names, y=pos, name="neurons +", marker_color="#2a9d8f", row=1, col=2)
        fig.add_bar(x=names, y=neg, name="neurons −", marker_color="#e76f51", row=1, col=2)
        fig.add_bar(x=names, y=self.bias_dla.tolist(), name="bias", marker_color="#888", row=1, col=2)
        fig.add_scatter(x=names, y=self.layer_dla.tolist(), mode="markers+lines", name="FFN DLA",
                        marker_color="black", row=1, col=2)
        fig.update_layout(barmode="relative", height=max(400, 22 * len(rows) + 150),
                          title="FFN subvalues (DLA additive; Δ log p per neuron vs the stream before the FFN)")
        return fig

    def __repr__(self) -> str:
        return (f"FFNSubvalues(target={self.target!r}, position={self.position}, layers={len(self.layers)}, "
                f"d_ff={self.dla.shape[1]})\n{self._repr_rows()}")


def ffn_subvalues(dec, target, position: int = -1, n: int = 20, layer: int | Sequence[int] | None = None,
                  rank_by: str = "dla", order: str = "top", logprob: str = "candidates",
                  candidates: int = 256, bs_k: int = 10, norm: str = "recomputed") -> FFNSubvalues:
    """Every FFN neuron's contribution to ``target`` at ``position``; the top ``n`` in a table.

    Args:
        dec: a :class:`~resid_widgets.Decomposition`.
        target: single-token string or token id.
        layer: one layer, a list of layers, or None for all.
        rank_by: "dla" or "logprob" (log-prob increase, among the neurons it was computed for).
        order: "top" (most promoting), "bottom" (most suppressing) or "abs" (largest magnitude).
        logprob: "candidates" (exact log-prob increase for ``candidates`` neurons: half with the
            largest |DLA|, half with the largest first-order estimate |m_k W_out[:, k] · ∇ log p|,
            plus the rows shown), "all" (every neuron of the covered
            layers; one vocabulary softmax per neuron: slow for many layers) or "none".
        bs_k: how many BS top / bottom tokens per listed neuron.
        norm: "recomputed" (the logit lens, docs/METHODS.md) or "frozen" (the final norm at the real
            final stream's scale, as in the authors' notebooks) for the log-prob increases.
    """
    if rank_by not in ("dla", "logprob"):
        raise ValueError(f"rank_by must be 'dla' or 'logprob', not {rank_by!r}")
    if order not in ("top", "bottom", "abs"):
        raise ValueError(f"order must be 'top', 'bottom' or 'abs', not {order!r}")
    if logprob not in ("candidates", "all", "none"):
        raise ValueError(f"logprob must be 'candidates', 'all' or 'none', not {logprob!r}")
    if rank_by == "logprob" and logprob == "none":
        raise ValueError("rank_by='logprob' needs logprob='candidates' or 'all'")
    if norm not in ("recomputed", "frozen"):
        raise ValueError(f"norm must be 'recomputed' or 'frozen', not {norm!r}")
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    tid = dec.target_id(target)
    pos = dec.position_index(position)
    if layer is None:
        layers = list(range(dec.n_layers))
    elif isinstance(layer, int):
        layers = [dec.layer_index(layer)]
    else:
        layers = [dec.layer_index(l) for l in layer]
    r = dec.readout_direction(tid, pos)
    dla_rows, bias, acts = [], [], []
    for l in layers:
        dla_rows.append(dec.neuron_dla(tid, pos, l))
        _, b = dec.weights.mlp_out(l)
        mult = dec.post_norm_multiplier("mlp", l)
        rl = r if mult is None else r * mult[pos]
        bias.append(0.0 if b is None else float(b.cpu() @ rl))
        acts.append(dec.neuron_activations(l)[pos])
    dla = torch.stack(dla_rows)
    bias_dla = torch.tensor(bias)
    layer_dla = dec.contributions(tid, pos, "dla")[[dec.mlp_index(l) for l in layers]]
    d_ff = dla.shape[1]

    def key_of(values: torch.Tensor) -> torch.Tensor:
        return {"top": values, "bottom": -values, "abs": values.abs()}[order]

    lp = torch.full_like(dla, math.nan)
    want: dict[int, set[int]] = {i: set() for i in range(len(layers))}
    if logprob == "all":
        for i in range(len(layers)):
            want[i] = set(range(d_ff))
    estimate = bases = None
    if logprob != "none":
        bases = torch.stack([dec.state_before(dec.mlp_index(l), pos) for l in layers])  # before each FFN
        estimate = _first_order_logprob(dec, layers, acts, bases, pos, tid, norm)
    if logprob == "candidates":
        # half by |DLA|, half by |first-order log-prob estimate|, plus the top n of each by ``order``
        flat, est = dla.flatten(), estimate.flatten()
        n_c = min(flat.numel(), max(candidates, n))
        picks = (flat.abs().topk(n_c // 2).indices.tolist() + est.abs().topk(n_c - n_c // 2).indices.tolist()
                 + key_of(flat).topk(min(n, flat.numel())).indices.tolist()
                 + key_of(est).topk(min(n, est.numel())).indices.tolist())
        for j in picks:
            want[j // d_ff].add(j % d_ff)
    jobs = [(i, sorted(want[i])) for i in range(len(layers)) if want[i]]
    if jobs:
        # one batched pass: every layer's baseline, then its neurons' baseline + subvalue
        job_bases = bases[[i for i, _ in jobs]]
        lp0 = dec.lens_logprob(job_bases, tid, pos, norm)
        for (i, ks), b, l0 in zip(jobs, job_bases, lp0):
            lp[i, ks] = _neuron_logprobs(dec, layers[i], ks, pos, tid, norm=norm, base=b, lp0=float(l0))

    score = dla if rank_by == "dla" else lp
    keyed = key_of(score).flatten().nan_to_num(nan=-math.inf)
    picks = keyed.topk(min(n, int(torch.isfinite(keyed).sum()))).indices.tolist()
    rows = []
    for j in picks:
        i, k = divmod(j, d_ff)
        l = layers[i]
        vec = dec.neuron_vectors(l, [k], pos)
        top, bottom = dec.bs_tokens(vec, pos, bs_k)
        val = float(lp[i, k])
        rows.append(dict(layer=l, neuron=k, label=f"L{l}N{k}", activation=float(acts[i][k]),
                         dla=float(dla[i, k]), logprob_increase=None if math.isnan(val) else val,
                         bs_top=top[0], bs_bottom=bottom[0]))
    return FFNSubvalues(target_id=tid, target=dec.token_text(tid), position=pos, layers=layers, dla=dla,
                        bias_dla=bias_dla, layer_dla=layer_dla, logprob=lp, activations=torch.stack(acts),
                        rows=rows, rank_by=rank_by, order=order, norm=norm, logprob_estimate=estimate)


def _first_order_logprob(dec, layers, acts, bases, pos: int, tid: int, norm: str) -> torch.Tensor:
    """[len(layers), d_ff] m_k (W_out[:, k] ⊙ post) · ∇_b log p(tid | b), b = bases[i] the stream
    before each FFN."""
    ro = dec.readout
    with torch.enable_grad():
        h = bases.detach().to(ro.device).clone().requires_grad_(True)
        final_norm = ro.norm.to(ro.device)
        if norm == "frozen":
            x = final_norm.frozen(h, dec.states[-1, pos].to(ro.device))
            x = x if final_norm.bias is None else x + final_norm.bias
        else:
            x = final_norm(h)
        z = torch.nn.functional.linear(x, ro.unembed, ro.unembed_bias)
        if ro.softcap:  # out of place (Readout.cap works in place, which autograd cannot)
            z = ro.softcap * torch.tanh(z / ro.softcap)
        (z[:, tid] - torch.logsumexp(z, -1)).sum().backward()
    grads = h.grad.float().cpu()
    rows = []
    for i, l in enumerate(layers):
        W, _ = dec.weights.mlp_out(l)
        g = grads[i]
        mult = dec.post_norm_multiplier("mlp", l)
        if mult is not None:
            g = g * mult[pos]
        rows.append(acts[i] * (g.to(W.device) @ W).cpu())
    return torch.stack(rows)


def _neuron_logprobs(dec, layer: int, ks: list[int], pos: int, tid: int, chunk: int = 1024,
                     norm: str = "recomputed", base=None, lp0=None) -> torch.Tensor:
    """[len(ks)] log p(tid | b + m_k W_out[:, k]) - log p(tid | b), b = stream before the FFN."""
    if base is None:
        base = dec.state_before(dec.mlp_index(layer), pos)
    if lp0 is None:
        lp0 = float(dec.lens_logprob(base[None], tid, pos, norm)[0])
    out = []
    for s in range(0, len(ks), chunk):
        vecs = dec.neuron_vectors(layer, ks[s:s + chunk], pos)
        out.append(dec.lens_logprob(base[None] + vecs, tid, pos, norm) - lp0)
    return torch.cat(out)


def neuron_subvalue(dec, layer: int, neuron: int, target=None, position: int = -1, bs_k: int = 10,
                    norm: str = "recomputed") -> dict:
    """One FFN neuron at ``position``: its activation, subvalue vector, BS top / bottom tokens and,
    with a ``target``, its DLA and exact log-prob increase (baseline: the stream before the FFN).

    Args:
        dec: a :class:`~resid_widgets.Decomposition` of a Hugging Face model.
        layer: the neuron's layer.
        neuron: its index in the FFN.
        target: a token (text or id), or None for no DLA / log-prob increase.
        position: the position read (negative counts from the end).
        bs_k: how many top / bottom tokens of the subvalue (W_U · subvalue).
        norm: "recomputed" (the logit lens) or "frozen" (the final norm at the real stream).

    Returns:
        dict with the activation, the subvalue [d_model], the BS tokens and, with a target,
        its DLA and log-prob increase.

    Raises:
        IndexError: the layer or neuron index is out of range.
    """
    l = dec.layer_index(layer)
    pos = dec.position_index(position)
    d_ff = dec.neuron_activations(l).shape[1]
    if isinstance(neuron, bool) or not isinstance(neuron, int) or not -d_ff <= neuron < d_ff:
        raise IndexError(f"neuron index {neuron!r} out of range: layer {l} has {d_ff} neurons (0..{d_ff - 1})")
    k = neuron % d_ff
    vec = dec.neuron_vectors(l, [k], pos)
    top, bottom = dec.bs_tokens(vec, pos, bs_k)
    out = dict(layer=l, neuron=k, label=f"L{l}N{k}", position=pos,
               activation=float(dec.neuron_activations(l)[pos, k]), vector=vec[0], bs_top=top[0],
               bs_bottom=bottom[0])
    if target is not None:
        tid = dec.target_id(target)
        out.update(target=dec.token_text(tid), dla=float(dec.neuron_dla(tid, pos, l)[k]),
                   logprob_increase=float(_neuron_logprobs(dec, l, [k], pos, tid, norm=norm)[0]))
    return out
