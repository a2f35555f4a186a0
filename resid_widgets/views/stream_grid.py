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
            # with a lens switch (a Dashboard with a tuned lens): the lens it shows
            lens_logp = getattr(self, "_lens_logp", None)
            return np.exp(lens_logp(tp) if lens_logp is not None else decode_payload(tp["logp"]))
        if metric == "dla":
            return decode_payload(tp["dla"]).cumsum(0)
        raise ValueError(f"unknown metric {metric!r}")

    def figure(self):
        import plotly.graph_objects as go

        z = self.values()
        tokens = [display_token(x) for x in self._meta["tokens"]]
        x = [f"{i}:{tok}" for i, tok in enumerate(tokens)]
        title = {
            "norm": "‖stream‖",
            "delta": "‖delta‖ (what each block wrote)",
            "prob": f"lens p({display_token(self.target)})",
            "dla": f"cumulative DLA to {display_token(self.target)}",
        }[self.metric]
        signed = self.metric == "dla"
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=x,
                y=self._meta["labels"],
                colorscale="RdBu_r" if signed else "Viridis",
                zmid=0 if signed else None,
                colorbar={"title": title},
            )
        )
        s, p = self.selected
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=s - 0.5, y1=s + 0.5, line={"color": "black", "width": 2})
        fig.update_layout(title=f"Stream grid — {title}", yaxis={"autorange": "reversed"}, xaxis={"tickangle": -45})
        return fig
