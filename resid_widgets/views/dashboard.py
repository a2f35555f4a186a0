"""Dashboard: StreamGrid, ContributionBars and LogitLens in one widget, linked in the browser."""

from __future__ import annotations

import traitlets as t

from ._base import ResidView  # noqa: F401  (the base of every view, through the mixins below)
from .contribution_bars import BarsState, ContributionBars
from .edit_mode import EditMode
from .lens_switch import LensSwitch
from .logit_lens import LensState, LogitLens
from .sae_panes import SAEPanes
from .stream_grid import GridState, StreamGrid


class Dashboard(EditMode, LensSwitch, SAEPanes, GridState, BarsState, LensState):
    """All three views in one root. Selection (state, position) and target are shared in JS, so
    linking also works in a static snapshot. The bars follow the selected position: ``position``
    is always ``selected[1]`` (set either one, from Python or by a click, and the other follows).

    ``tuned_lens=tl``: the lens part switches between logit and tuned lens (``lens`` trait);
    ``saes={"mlp.14": sae}``: the grid's vector pane gets a "features" mode (``pane_mode``).

    Edit mode (:class:`~resid_widgets.views.edit_mode.EditMode`): ``edits`` (synced list; set it,
    or zero / project out / patch the selected component in the view) re-runs the prompt with
    them, ``edited`` is that Decomposition; ``source=`` a second prompt's Decomposition to patch from.
    """

    _rw_view = t.Unicode("dashboard").tag(sync=True)
    short_name = "dashboard"  # the CLI's --view

    @t.observe("selected")
    def _position_follows_selection(self, change):
        # the bars explain the selected column: `position` says which (both ways, see below)
        if self._meta and self.position != change["new"][1]:
            self.position = change["new"][1]

    @t.observe("position")
    def _selection_follows_position(self, change):
        if self._meta and self.selected[1] != change["new"]:
            self.selected = (self.selected[0], change["new"])

    def figure(self):
        """plotly: the grid, the contributions at the selected position and the lens, each coloured
        and titled as its own ``figure()`` (and view) has it, one under the other."""
        from plotly.subplots import make_subplots

        from .figures import MARGIN, frame

        position = self.selected[1]
        parts = [cls.figure(_Proxy(self, cls, position=position)) for cls in (StreamGrid, ContributionBars, LogitLens)]
        # each part keeps its own plot height (the lens its readable rows), the grid at most 420 px
        heights = [min(420, parts[0].layout.height - MARGIN["t"] - MARGIN["b"]), parts[1].layout.height - 180,
                   parts[2].layout.height - MARGIN["t"] - MARGIN["b"]]
        gap = 150  # the rotated token labels of the grid, and a title
        titles = [p.layout.title.text.replace("<br>", " — ").replace("<sup>", "").replace("</sup>", "") for p in parts]
        fig = make_subplots(rows=3, cols=1, subplot_titles=titles, row_heights=heights, vertical_spacing=gap / (sum(heights) + 2 * gap))
        for row, part in enumerate(parts, start=1):
            domain = fig.get_subplot(row, 1).yaxis.domain
            for trace in part.data:
                if trace.type == "heatmap":
                    trace.colorbar.update(y=(domain[0] + domain[1]) / 2, len=domain[1] - domain[0], yanchor="middle")
                fig.add_trace(trace, row=row, col=1)
            fig.update_yaxes(part.layout.yaxis, row=row, col=1)
            fig.update_xaxes(part.layout.xaxis, row=row, col=1)
        frame(fig, *self.selected, row=1, col=1)
        frame(fig, *self.selected, row=3, col=1)
        fig.update_layout(height=int(sum(heights) + gap * 2 + MARGIN["t"] + MARGIN["b"]), width=parts[2].layout.width,
                          title=f"resid_widgets dashboard — {self._meta.get('model_name') or 'model'}",
                          showlegend=False, barmode="relative", margin=MARGIN)
        for annotation in fig.layout.annotations:
            annotation.font.size = 13
        return fig


class _Proxy:
    """Lets the per-view ``figure()`` code run on the dashboard's state."""

    def __init__(self, owner, cls, **overrides):
        self._owner = owner
        self._cls = cls
        self._over = overrides

    def __getattr__(self, name):
        if name in self._over:
            return self._over[name]
        attr = self._cls.__dict__.get(name)
        if callable(attr):
            return attr.__get__(self)
        return getattr(self._owner, name)
