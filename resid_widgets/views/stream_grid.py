"""StreamGrid: rows = residual states, columns = tokens, colour = a scalar per cell."""

from __future__ import annotations

import numpy as np
import traitlets as t

from ._base import METRICS, NORMALIZE
from .payload import display_token
from .sae_panes import PANE_MODES, SAEPanes


class GridState(t.HasTraits):
    """The traits of the grid and its vector pane (StreamGrid, Dashboard)."""

    metric = t.Enum(METRICS, default_value="norm").tag(sync=True)
    normalize = t.Enum(NORMALIZE, default_value="quantile").tag(sync=True)
    exclude_first = t.Bool(False).tag(sync=True)
    pane_mode = t.Enum(PANE_MODES, default_value="decompose").tag(sync=True)  # "features" needs saes=
    # vector panes: {positions, [C, P, d] float16}; the selected cell's from the start (no round
    # trip under Run All), more in snapshots (within their budget), the others from the kernel
    _panes = t.Dict().tag(sync=True)
    _panes_note = t.Unicode("").tag(sync=True)


class StreamGrid(SAEPanes, GridState):
    """Residual stream as a grid of states x positions.

    Colour (``metric``): ``"norm"`` of the stream, ``"delta"`` norm of what the block wrote,
    ``"prob"`` logit-lens probability of ``target``, ``"dla"`` direct logit attribution of the
    block to ``target``. Click (or arrow keys) selects a cell; ``selected = (state, position)``.
    The vector pane below shows the selected stream raw, decomposed by source, or projected onto
    the target's unembedding direction; with ``saes={"mlp.14": sae}`` also split into sparse-autoencoder
    features (``pane_mode="features"``, see :mod:`.sae_panes`).
    """

    _rw_view = t.Unicode("stream-grid").tag(sync=True)
    short_name = "grid"  # the CLI's --view

    def values(self, metric: str | None = None) -> np.ndarray:
        """The [C, T] matrix the grid colours by (``metric`` defaults to the current one)."""
        metric = metric or self.metric
        if metric == "norm":
            return self._array("state_norm")
        if metric == "delta":
            return self._array("delta_norm")
        tp = self._target_entry()
        if tp is None:
            raise ValueError("no target")
        from .payload import decode_payload

        if metric == "prob":
            return np.exp(self._lens_logp(tp))  # the lens shown (a Dashboard may show a tuned lens)
        if metric == "dla":
            return decode_payload(tp["dla"]).cumsum(0)
        raise ValueError(f"unknown metric {metric!r}")

    def figure(self):
        """plotly heat map coloured as the view colours it: the same colour map and range
        (``normalize``, ``exclude_first``; see :mod:`.figures`), the selected cell framed."""
        import plotly.graph_objects as go

        from .figures import MARGIN, frame, heatmap_colors, heatmap_height, position_labels

        spec = self._color_spec()
        z = self.values()
        C, T = z.shape
        colors = heatmap_colors(z, spec["cmap"], mode=self.normalize, signed=spec["signed"],
                                skip_first=self.exclude_first, fixed=spec.get("fixed"))
        value = "%{customdata:.4g}" if "customdata" in colors else "%{z:.4g}"
        fig = go.Figure(go.Heatmap(
            x=position_labels(self._meta["tokens"]), y=self._meta["labels"], **colors,
            colorbar={"title": spec["label"] if self.normalize != "row" else f"{spec['label']}<br>(per row)"},
            hovertemplate=f"%{{y}} @ %{{x}}: {value}<extra></extra>"))
        s, p = self.selected
        frame(fig, s, p)
        fig.update_layout(title=f"Stream grid — {spec['title']} ({spec['scale']})", yaxis={"autorange": "reversed"},
                          xaxis={"tickangle": -45}, margin=MARGIN, height=min(900, heatmap_height(C, 12)))
        return fig

    def _color_spec(self) -> dict:
        """The colour map, sign and range of the current metric, as js/views/stream_grid.js has them."""
        target = display_token(self.target)
        spec = {
            "norm": {"cmap": "viridis", "signed": False, "label": "‖stream‖", "title": "‖stream‖"},
            "delta": {"cmap": "viridis", "signed": False, "label": "‖delta‖",
                      "title": "‖delta‖ (what each block wrote)"},
            "prob": {"cmap": "cividis", "signed": False, "label": "p", "title": f"lens p({target})", "fixed": (0, 1)},
            "dla": {"cmap": "rdbu", "signed": True, "label": "DLA", "title": f"cumulative DLA to {target}"},
        }[self.metric]
        scales = {"quantile": "2–98% quantiles", "global": "min–max", "row": "each row its own range"}
        spec["scale"] = "fixed 0–1" if "fixed" in spec else scales[self.normalize]
        if self.exclude_first and "fixed" not in spec:
            spec["scale"] += ", position 0 left out"
        return spec
