"""LogitLens: what every residual state would predict, as a heatmap with the top token as text."""

from __future__ import annotations

import numpy as np
import traitlets as t

from ._base import LENS_COLOR
from .lens_switch import LensSwitch
from .payload import display_token


class LensState(t.HasTraits):
    """The trait of the logit lens (LogitLens, Dashboard)."""

    lens_color = t.Enum(LENS_COLOR, default_value="top").tag(sync=True)


class LogitLens(LensSwitch, LensState):
    """Rows = states, columns = positions; colour = probability of the top token (``lens_color="top"``),
    of ``target`` (``"target"``) or of the actual next token (``"next"``); hover shows the top-k.

    ``rw.LogitLens(dec, tuned_lens=tl)`` adds the tuned lens (see :mod:`.lens_switch`):
    ``lens = "tuned" | "logit"`` (or the toggle in the view) switches between the two.
    """

    _rw_view = t.Unicode("logit-lens").tag(sync=True)
    short_name = "lens"  # the CLI's --view

    def top_tokens(self) -> list[list[str]]:
        ids = self._lens_array("lens_ids")[:, :, 0]
        return [[self._vocab.get(str(int(i)), f"#{int(i)}") for i in row] for row in ids]

    def values(self, color: str | None = None) -> np.ndarray:
        color = color or self.lens_color
        if color == "top":
            return self._lens_array("lens_probs")[:, :, 0]
        if color == "next":
            return self._lens_array("next_prob")
        return np.exp(self._lens_logp(self._target_entry()))

    def figure(self):
        """plotly heat map as the view draws it: cividis on 0..1, the top token printed in the cells
        only where they are large enough to read it (font sized to the cells), always in the hover."""
        import plotly.graph_objects as go

        from .figures import (
            MARGIN, PLOT_WIDTH, TEXT_MIN_W, cell_text_size, colorscale, frame, heatmap_height, position_labels,
        )

        z = self.values()
        C, T = z.shape
        top = [[display_token(x) for x in row] for row in self.top_tokens()]
        cell_w = PLOT_WIDTH / max(1, T)
        row_px = 14 if cell_w >= TEXT_MIN_W else 10
        font = cell_text_size(cell_w, row_px)
        shown = None
        if font:
            fits = max(2, int(cell_w / (0.62 * font)))
            shown = [[tok if len(tok) <= fits else tok[: fits - 1] + "…" for tok in row] for row in top]
        x = position_labels(self._meta["tokens"])
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=x,
                y=self._meta["labels"],
                customdata=top,
                text=shown,
                texttemplate="%{text}" if shown else None,
                textfont={"size": font} if font else None,
                colorscale=colorscale("cividis"),
                zmin=0,
                zmax=1,
                colorbar={"title": "p"},
                hovertemplate="%{y} @ %{x}: top %{customdata} (p of colour=%{z:.3f})<extra></extra>",
            )
        )
        label = {"top": "top token", "next": "actual next token", "target": display_token(self.target)}[self.lens_color]
        name = "Tuned lens" if self.lens == "tuned" else "Logit lens"
        s, p = self.selected
        frame(fig, s, p)
        fig.update_layout(title=f"{name} — colour: p({label})", yaxis={"autorange": "reversed"}, xaxis={"tickangle": -45},
                          margin=MARGIN, width=PLOT_WIDTH + MARGIN["l"] + MARGIN["r"] + 80,
                          height=heatmap_height(C, row_px))
        return fig
