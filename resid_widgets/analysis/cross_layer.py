"""Cross-layer contribution: which lower components switch on an upper FFN neuron.

Neuron k of layer l reads r through its pre-norm: pre_k = key_k · norm2(r) + b_k (key_k: the row of
fc1, or of the gate for gated FFNs). r = e + Σ_{i<l}(A_i + F_i) + A_l (parallel residual: h_{l-1})
is a sum of components c. Freezing norm2's scale at r (LayerNorm: centring is linear, so each
component is centred) makes this linear:

    pre_k = Σ_c c · K' + const,   K' = centre(g ⊙ key_k) / scale(r),   const = β · key_k + b_k

and share_c = (c · K') / Σ_{c'} (c' · K'). Shares sum to 1; they are large and of either sign
when the sum is near zero (check ``total``).
"""
from __future__ import annotations
from dataclasses import dataclass

import torch

from ._common import Table, check_index, plotly


@dataclass(repr=False, eq=False)
class NeuronInputShares(Table):
    """Result of :func:`neuron_input_shares`.

    Attributes:
        layer, neuron, position: the neuron and where its input is split (non-negative).
        labels: [C] the components of the neuron's input (heads "attn.i.h{h}" / "attn.i.bias" with
            split_heads=True).
        contributions: [C] c · K' (with frozen scale).
        shares: [C] contributions / total.
        total: Σ contributions.
        constant: β · key + key bias.
        preactivation: total + constant.
        rows: one dict per component (component, contribution, share).
    """

    layer: int
    neuron: int
    position: int
    labels: list[str]
    contributions: torch.Tensor
    shares: torch.Tensor
    total: float
    constant: float
    preactivation: float
    rows: list[dict]

    def figure(self):
        """A plotly bar chart of each component's share of the neuron's pre-activation."""
        go, _ = plotly()
        fig = go.Figure(go.Bar(x=self.labels, y=self.shares.tolist(), name="share",
                               hovertext=[f"{c}: c·K'={v:+.4f}" for c, v in zip(self.labels, self.contributions.tolist())],
                               hoverinfo="text+y"))
        fig.update_layout(title=f"what switches on L{self.layer}N{self.neuron} at position {self.position} "
                                f"(pre-activation {self.preactivation:+.3f} = Σ c·K' {self.total:+.3f} + const "
                                f"{self.constant:+.3f})", yaxis_title="share of Σ c·K'", height=420)
        return fig


def neuron_input_shares(dec, layer: int, neuron: int, position: int = -1,
                        split_heads: bool = False) -> NeuronInputShares:
    """Split FFN neuron ``neuron`` of ``layer``'s pre-activation (gate for gated FFNs) at
    ``position`` over the components of its input stream (see the module docstring).

    Args:
        dec: a :class:`~resid_widgets.Decomposition` of a Hugging Face model.
        layer: the neuron's layer (negative counts from the end).
        neuron: its index in the FFN.
        position: the position read (negative counts from the end).
        split_heads: split each attention layer's share per head.

    Returns:
        :class:`NeuronInputShares` with [C] contributions and shares.
    """
    l = dec.layer_index(layer)
    pos = dec.position_index(position)
    key_w, key_b = dec.weights.mlp_key(l)
    k = check_index(neuron, key_w.shape[0], f"neuron index (layer {l} has {key_w.shape[0]} neurons)")
    stop = dec.attn_index(l) if dec.parallel_residual else dec.mlp_index(l)
    comps = dec.deltas[:stop, pos]  # [C, d]
    labels = list(dec.labels[:stop])
    if split_heads:
        vecs, labs = [], []
        for c, lab in enumerate(labels):
            if lab.startswith("attn."):
                i = int(lab.split(".")[1])
                hd = dec.head_deltas(i, pos)  # [H+1, d]
                vecs.append(hd)
                labs += [f"{lab}.h{h}" for h in range(hd.shape[0] - 1)] + [f"{lab}.bias"]
            else:
                vecs.append(comps[c][None])
                labs.append(lab)
        comps, labels = torch.cat(vecs), labs
    r = dec.state_before(stop, pos)
    norm = dec.weights.norm(l, "mlp")
    key = key_w[k].cpu()
    # c · K == norm*(c) · key; without a pre-FFN norm (OLMo 2) the key reads the stream itself
    K = key if norm is None else norm.frozen_readout(key, r)
    contrib = comps @ K
    const = float(key_b[k]) if key_b is not None else 0.0
    if norm is not None and norm.bias is not None:
        const += float(norm.bias @ key)
    total = float(contrib.sum())
    shares = contrib / total if total != 0 else torch.full_like(contrib, float("nan"))
    rows = [dict(component=lab, contribution=float(v), share=float(s))
            for lab, v, s in zip(labels, contrib.tolist(), shares.tolist())]
    return NeuronInputShares(layer=l, neuron=k, position=pos, labels=labels, contributions=contrib,
                             shares=shares, total=total, constant=const, preactivation=total + const,
                             rows=rows)


@dataclass(repr=False, eq=False)
class CrossLayer(Table):
    """Result of :func:`cross_layer`: importance-weighted shares of the top neurons' inputs.

    Attributes:
        target: the target's text; target_id: its id; position: where (non-negative).
        neurons: [(layer, neuron)] the N top neurons.
        importance: [N] their scores.
        labels: [C] all components.
        shares: [N, C] each neuron's shares (0 for components above it).
        weighted: [C] Σ_n importance_n · shares[n] (the authors' aggregate).
        rows: one dict per component (component, weighted).
        method: how the neurons were ranked.
    """

    target: str
    target_id: int
    position: int
    neurons: list[tuple[int, int]]
    importance: torch.Tensor
    labels: list[str]
    shares: torch.Tensor
    weighted: torch.Tensor
    rows: list[dict]
    method: str

    def figure(self):
        """A plotly figure: the importance-weighted input shares, and each top neuron's shares."""
        go, make_subplots = plotly()
        fig = make_subplots(rows=2, cols=1, row_heights=[0.35, 0.65], vertical_spacing=0.08, shared_xaxes=True,
                            subplot_titles=("importance-weighted input shares",
                                            "each top neuron's input shares"))
        fig.add_bar(x=self.labels, y=self.weighted.tolist(), name="weighted", row=1, col=1)
        names = [f"L{l}N{k}" for l, k in self.neurons]
        z = self.shares.clamp(-3, 3)
        fig.add_heatmap(z=z.tolist(), x=self.labels, y=names, colorscale="RdBu", reversescale=True,
                        zmid=0, colorbar=dict(title="share", len=0.6, y=0.3), hovertext=[[f"{n} ← {c}: share {float(v):+.3f}" for c, v in zip(self.labels, row)]
                                           for n, row in zip(names, self.shares)], hoverinfo="text",
                        row=2, col=1)
        fig.update_layout(title=f"cross-layer contribution to {self.target!r} at position {self.position}",
                          height=420 + 22 * len(names), showlegend=False)
        return fig


def cross_layer(dec, target, position: int = -1, n: int = 10, method: str = "logprob") -> CrossLayer:
    """Which lower components activate the ``n`` FFN neurons most important for ``target``:
    each neuron's input shares weighted by its importance (log-prob increase or DLA), summed.

    Args:
        dec: a :class:`~resid_widgets.Decomposition` of a Hugging Face model.
        target: the token (text or id) the neurons are important for.
        position: the position read (negative counts from the end).
        n: how many neurons (the most important over every layer).
        method: the neurons' importance, "logprob" (exact log-prob increase) or "dla".

    Returns:
        :class:`CrossLayer`: the neurons and, per lower component, its weighted share.
    """
    from .ffn import ffn_subvalues

    if method not in ("dla", "logprob"):
        raise ValueError(f"method must be 'dla' or 'logprob', not {method!r}")
    pos = dec.position_index(position)
    tid = dec.target_id(target)
    top = ffn_subvalues(dec, tid, pos, n=n, rank_by=method, logprob="candidates" if method == "logprob" else "none",
                        bs_k=1)
    labels = list(dec.labels)
    shares = torch.zeros(len(top.rows), len(labels))
    importance = torch.zeros(len(top.rows))
    neurons = []
    for i, row in enumerate(top.rows):
        neuron_shares = neuron_input_shares(dec, row["layer"], row["neuron"], pos).shares
        shares[i, : len(neuron_shares)] = neuron_shares.nan_to_num(0.0)
        importance[i] = row["logprob_increase"] if method == "logprob" else row["dla"]
        neurons.append((row["layer"], row["neuron"]))
    weighted = importance @ shares
    rows = [dict(component=lab, weighted=float(w)) for lab, w in zip(labels, weighted.tolist())]
    return CrossLayer(target=dec.token_text(tid), target_id=tid, position=pos, neurons=neurons,
                      importance=importance, labels=labels, shares=shares, weighted=weighted, rows=rows,
                      method=method)
