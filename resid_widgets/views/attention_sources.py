"""AttentionSources: DLA of each attention head × source token to a target, one layer at a time."""

from __future__ import annotations

from typing import Any

import traitlets as t

from ..analysis import attention_subvalues
from ._analysis_base import AnalysisView
from ._base import WholeNumber, checked_layer
from .payload import array_payload, decode_payload, display_token


def attention_sources_payload(dec, target=None, position: int = -1):
    """Every layer's [H, S] DLA (S = position + 1 sources) and attention weights, plus per-layer totals."""
    pos = dec.position_index(position)
    tid = dec.top_prediction(pos) if target is None or target == "" else dec.target_id(target)
    res = attention_subvalues(dec, tid, pos)
    S = pos + 1
    data = {
        "tokens": list(dec.tokens[:S]),
        "prompt_tokens": list(dec.tokens),  # the strip that picks the position
        "position": pos,
        "n_layers": int(res.dla.shape[0]),
        "n_heads": int(res.dla.shape[1]),
        "target": dec.token_text(tid),
        "target_id": int(tid),
        "dla": array_payload(res.dla[:, :, :S], "float32"),
        "alpha": array_payload(res.alpha[:, :, :S], "float16"),
        "layer_dla": [float(x) for x in res.layer_dla.tolist()],
        "bias_dla": [float(x) for x in res.bias_dla.tolist()],
    }
    return data, res


class AttentionSources(AnalysisView):
    """Head × source-token heatmap of attention DLA to ``target`` at ``position`` (default: the
    model's top prediction at the last position), with a layer selector. Every layer's [H, S]
    table is embedded, so the selector also works in an offline snapshot. ``layer`` (synced)
    defaults to the layer whose attention output moves the target's logit most. ``position``
    (synced; or click a token) recomputes at another position."""

    _rw_view = t.Unicode("attention-sources").tag(sync=True)
    short_name = "attention"  # the CLI's --view
    layer = WholeNumber(0, " (a layer index; negative counts from the end)").tag(sync=True)

    def __init__(self, dec, target: Any = None, position: int = -1, layer: int | None = None, **kwargs: Any):
        self._dec = dec
        self._target = target
        self._result = None
        if not self._start(position, **kwargs):
            return
        ld = self._data["layer_dla"]
        self._set_or_close(layer=max(range(len(ld)), key=lambda l: abs(ld[l])) if layer is None else layer)

    def _payload(self, position: int) -> dict:
        data, self._result = attention_sources_payload(self._dec, self._target, position)
        return data

    def _release(self) -> None:
        super()._release()
        self._result = None

    @t.validate("layer")
    def _check_layer(self, proposal):
        return checked_layer(proposal["value"], (self._data or {}).get("n_layers"))

    def table(self, layer: int | None = None):
        """[H, S] DLA of each head × source token in ``layer`` (default: the selected one)."""
        self._check_open()
        return decode_payload(self._data["dla"])[self.layer if layer is None else layer]

    def figure(self):
        """plotly heat map of the selected layer's [heads x sources] DLA, as the view colours it
        (RdBu centred at 0, ± the layer's largest |DLA|); the title names target, position, layer."""
        import plotly.graph_objects as go

        from .figures import MARGIN, colorscale, max_abs, position_labels

        d = self._data
        z = self.table()
        m = max_abs(z)
        alpha = decode_payload(d["alpha"])[self.layer]
        fig = go.Figure(go.Heatmap(
            z=z.tolist(), x=position_labels(d["tokens"]), y=[f"H{h}" for h in range(d["n_heads"])],
            colorscale=colorscale("rdbu"), zmin=-m, zmax=m, customdata=alpha.astype(float).tolist(),
            colorbar={"title": "DLA"}, hovertemplate="%{y} ← %{x}: DLA %{z:+.4f}, α %{customdata:.3f}<extra></extra>"))
        fig.update_layout(
            title=f"Attention sources of {display_token(d['target'])} at position {d['position']} "
                  f"({display_token(d['prompt_tokens'][d['position']])}), layer {self.layer}: DLA per head and source",
            yaxis={"autorange": "reversed"}, xaxis={"tickangle": -45}, margin=MARGIN,
            height=max(320, 26 * d["n_heads"] + MARGIN["t"] + MARGIN["b"]))
        return fig
