"""Attention subvalues (Yu & Ananiadou): each (head, source token) term of an attention output.

A_l at position t = Σ_h Σ_j α^{l,h}[t, j] · (x̂_j W_V^h + b_V^h) W_O^h + b_O
(Gemma 2/3: times the attention post-norm frozen at its real input). With grouped-query attention
the value head ``h // (H / KV)`` is shared by several query heads.

The attention probabilities α and the values come from one extra eager forward pass of the
prompt (see :func:`~resid_widgets.analysis._common.capture_attention`; checked to reproduce the
attention output), so they are the model's own: causal mask, sliding windows, RoPE, q/k norms
and attention soft-caps included.

- ``dla[l, h, j]``: DLA of the term (h, j) to the target; Σ_h Σ_j dla[l] + ``bias_dla[l]`` ==
  the attention layer's DLA (exact up to float rounding between the two passes).
- ``logprob[l, h, j]``: log p(target | h_{l-1} + term) − log p(target | h_{l-1}), p the logit lens,
  for the layers asked for; NOT additive over heads or sources.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ._common import Table, attention_of, plotly


@dataclass(repr=False, eq=False)
class AttentionSubvalues(Table):
    """Result of :func:`attention_subvalues`.

    Attributes:
        target_id: the attributed token id; target: its text.
        position: the destination position (non-negative).
        tokens: the prompt's token texts (T).
        alpha: [L, H, T] attention of each head from ``position`` to each source token.
        dla: [L, H, T] DLA of each (head, source) term (zero for sources after ``position``).
        bias_dla: [L] DLA of the output bias b_O.
        layer_dla: [L] the attention layer's DLA.
        logprob: [L, H, T] log-prob increase (NaN where not computed; not additive).
        rows: the top ``n`` (layer, head, source) terms by ``order`` of DLA.
        capture_error: relative error of Σ_j α v_j against the attention output (worst layer).
        norm: "recomputed" or "frozen": how the log-prob increases read the final norm.
    """

    target_id: int
    target: str
    position: int
    tokens: list[str]
    alpha: torch.Tensor
    dla: torch.Tensor
    bias_dla: torch.Tensor
    layer_dla: torch.Tensor
    logprob: torch.Tensor
    rows: list[dict]
    capture_error: float
    norm: str

    @property
    def head_dla(self) -> torch.Tensor:
        return self.dla.sum(-1)

    def figure(self, layer: int | None = None):
        """Heatmap head × source token of DLA (hover: α, log-prob increase), one layer at a time
        (a menu switches layers; default: the layer whose attention matters most).

        Args:
            layer: the layer shown first (default: the one whose attention matters most).
        """
        go, make_subplots = plotly()
        L, H, T = self.dla.shape
        show = int(self.layer_dla.abs().argmax()) if layer is None else layer % L
        src = list(range(self.position + 1))
        x = [f"{j}:{self.tokens[j]!r}" for j in src]
        fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3], horizontal_spacing=0.1,
                            subplot_titles=("DLA per head × source token", "attention DLA per layer"))
        zmax = float(self.dla[:, :, src].abs().max()) or 1.0
        for l in range(L):
            hover = [[f"L{l}H{h} ← {x[j]}<br>α={float(self.alpha[l, h, j]):.3f}<br>DLA={float(self.dla[l, h, j]):+.3f}"
                      + ("" if math.isnan(float(self.logprob[l, h, j])) else
                         f"<br>Δlog p={float(self.logprob[l, h, j]):+.3f}") for j in src] for h in range(H)]
            fig.add_heatmap(z=self.dla[l][:, src].tolist(), x=x, y=[f"H{h}" for h in range(H)],
                            zmin=-zmax, zmax=zmax, colorscale="RdBu", reversescale=True,
                            hovertext=hover, hoverinfo="text", visible=(l == show), row=1, col=1)
        fig.add_bar(y=[f"attn.{l}" for l in range(L)], x=self.layer_dla.tolist(), orientation="h",
                    name="attention DLA", row=1, col=2)
        buttons = [dict(label=f"layer {l}", method="update",
                        args=[{"visible": [i == l for i in range(L)] + [True]},
                              {"title": f"attention subvalues, layer {l}, target {self.target!r} at {self.position}"}])
                   for l in range(L)]
        fig.update_layout(updatemenus=[dict(buttons=buttons, active=show, x=0, y=1.15, xanchor="left")],
                          title=f"attention subvalues, layer {show}, target {self.target!r} at {self.position}",
                          height=max(380, 30 * H + 200), showlegend=False)
        return fig

    def __repr__(self) -> str:
        return (f"AttentionSubvalues(target={self.target!r}, position={self.position}, "
                f"layers={self.dla.shape[0]}, heads={self.dla.shape[1]})\n{self._repr_rows()}")


def attention_subvalues(dec, target, position: int = -1, logprob_layers: int | Sequence[int] | str | None = None,
                        n: int = 20, order: str = "top", norm: str = "recomputed") -> AttentionSubvalues:
    """Contribution of each (layer, head, source token) to ``target`` at ``position``.

    Args:
        dec: a :class:`~resid_widgets.Decomposition` of a Hugging Face model (one extra forward
            pass of its prompt with eager attention, cached per decomposition).
        logprob_layers: layers to compute log-prob increases for (an int, a list, "all"), or None.
            Each layer costs H·(position+1) vocabulary softmaxes.
        n: rows to list; order: "top" (most promoting), "bottom" or "abs".
        norm: "recomputed" (logit lens) or "frozen" (final norm at the final stream's scale, as in
            the authors' notebooks) for the log-prob increases.
    """
    if norm not in ("recomputed", "frozen"):
        raise ValueError(f"norm must be 'recomputed' or 'frozen', not {norm!r}")
    if order not in ("top", "bottom", "abs"):
        raise ValueError(f"order must be 'top', 'bottom' or 'abs', not {order!r}")
    tid = dec.target_id(target)
    pos = dec.position_index(position)
    if logprob_layers is None:
        lp_layers: list[int] = []
    elif logprob_layers == "all":
        lp_layers = list(range(dec.n_layers))
    elif isinstance(logprob_layers, int):
        lp_layers = [dec.layer_index(logprob_layers)]
    else:
        lp_layers = [dec.layer_index(l) for l in logprob_layers]
    cap = attention_of(dec)
    L, H, T = dec.n_layers, cap.n_heads, dec.n_tokens
    r = dec.readout_direction(tid, pos)
    alpha = torch.stack([cap.probs[l][0, :, pos, :] for l in range(L)])  # [L, H, T]
    dla = torch.zeros(L, H, T)
    bias_dla = torch.zeros(L)
    lp = torch.full((L, H, T), math.nan)
    for l in range(L):
        W, b = dec.weights.attn_out(l)  # [d, H*dh]
        W = W.cpu()
        mult = dec.post_norm_multiplier("attn", l)
        m = None if mult is None else mult[pos]
        rl = r if m is None else r * m
        u = (rl @ W).view(H, -1)  # [H, dh]
        V = cap.head_values(l)[0]  # [H, T, dh]
        dla[l] = alpha[l] * torch.einsum("htd,hd->ht", V, u)
        if b is not None:
            bias_dla[l] = float(b.cpu() @ rl)
        if l in lp_layers:
            src = pos + 1
            Wh = W.view(W.shape[0], H, -1)  # [d, H, dh]
            vecs = torch.einsum("hj,hjk,dhk->hjd", alpha[l, :, :src], V[:, :src], Wh)  # [H, src, d]
            if m is not None:
                vecs = vecs * m
            base = dec.state_before(dec.attn_index(l), pos)
            out = dec.lens_logprob(torch.cat([base[None], base[None] + vecs.reshape(-1, vecs.shape[-1])]), tid, pos, norm)
            lp[l, :, :src] = (out[1:] - out[0]).view(H, src)
    layer_dla = dec.contributions(tid, pos, "dla")[[dec.attn_index(l) for l in range(L)]]
    key = {"top": dla, "bottom": -dla, "abs": dla.abs()}[order][:, :, : pos + 1].reshape(-1)
    rows = []
    n_kv = cap.n_kv_heads
    for j in key.topk(min(n, key.numel())).indices.tolist():
        l, rest = divmod(j, H * (pos + 1))
        h, s = divmod(rest, pos + 1)
        val = float(lp[l, h, s])
        rows.append(dict(layer=l, head=h, kv_head=h // (H // n_kv), source=s, source_token=dec.tokens[s],
                         label=f"L{l}H{h}←{s}", alpha=float(alpha[l, h, s]), dla=float(dla[l, h, s]),
                         logprob_increase=None if math.isnan(val) else val))
    return AttentionSubvalues(target_id=tid, target=dec.token_text(tid), position=pos, tokens=dec.tokens,
                              alpha=alpha, dla=dla, bias_dla=bias_dla, layer_dla=layer_dla, logprob=lp,
                              rows=rows, capture_error=cap.max_error, norm=norm)
