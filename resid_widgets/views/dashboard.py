"""Dashboard: StreamGrid, ContributionBars and LogitLens in one widget, linked in the browser."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import traitlets as t

from . import payload as P
from ._base import ResidView  # noqa: F401  (the base of every view, through the mixins below)
from .contribution_bars import BarsState, ContributionBars
from .edit_mode import EditMode
from .lens_switch import LensSwitch
from .logit_lens import LensState, LogitLens
from .sae_panes import SAEPanes
from .stream_grid import GridState, StreamGrid


def top_targets_payload(dec, k: int, lens_positions: tuple[int, int] | None = None) -> dict:
    """Each position's own top prediction and what explains it there (the bars' auto target).

    Args:
        dec: the Decomposition shown.
        k: the top-k of the lens the view already computed (its cached result is reused).
        lens_positions: [start, stop) when the view's lens holds only those positions so far (a long
            prompt's first payload): the lens log-probs elsewhere are NaN until the view's lens is
            completed, when the view computes this payload again.

    Returns:
        ``{ids [T] int, texts [T] str, dla [C,T] f32, logp [C,T] f32, logit [T] f32,
        logprob [T] f32, dla_constant [T] float}``: column t holds, for position t's own top
        token, each component's DLA there, the lens log-prob after each component there, and the
        model's logit / log-prob. 2·C·T floats, so a snapshot carries every position's auto target.
    """
    T, C = len(dec.tokens), len(dec.labels)
    ids = [int(dec.top_prediction(p)) for p in range(T)]
    lens = dec.logit_lens(k=k) if lens_positions is None else P.window_lens(dec, k, lens_positions)
    dla = np.zeros((C, T), np.float32)
    deltas = dec.deltas
    for p, tid in enumerate(ids):  # one [C, d] x [d] product per position
        dla[:, p] = P._np(deltas[:, p, :].float() @ dec.readout_direction(tid, p))
    logp = P.column_logprobs(dec, lens, ids)
    logits = P._np(dec.logits[torch.arange(T), ids]).astype(np.float64)
    logprobs = logits - P.logsumexp_rows(dec.logits)  # as target_payload: no [T, vocab] copy
    constants = {tid: float(dec.dla_constant(tid, -1)) for tid in set(ids)}
    return {
        "ids": ids,
        "texts": [dec.token_text(tid) for tid in ids],
        "dla": P.array_payload(dla, "float32"),
        "logp": P.array_payload(logp, "float32"),
        "logit": P.array_payload(logits, "float32"),
        "logprob": P.array_payload(logprobs, "float32"),
        "dla_constant": [constants[tid] for tid in ids],
    }


class Dashboard(EditMode, LensSwitch, SAEPanes, GridState, BarsState, LensState):
    """All three views in one root. Selection (state, position) and target are shared in JS, so
    linking also works in a static snapshot. The bars follow the selected position: ``position``
    is always ``selected[1]`` (set either one, from Python or by a click, and the other follows).

    ``tuned_lens=tl``: the lens part switches between logit and tuned lens (``lens`` trait);
    ``saes={"mlp.14": sae}``: the grid's vector pane gets a "features" mode (``pane_mode``).

    Edit mode (:class:`~resid_widgets.views.edit_mode.EditMode`): ``edits`` (synced list; set it,
    or zero / project out / patch the selected component in the view) re-runs the prompt with
    them, ``edited`` is that Decomposition; ``source=`` a second prompt's Decomposition to patch from.

    The bars explain the selected position's own top prediction (``target`` follows it) until a
    target is pinned: ``target=`` at creation, ``dash.target = " Paris"``, or a target typed or
    picked in the view sets ``target_pinned``; ``dash.target_pinned = False`` unpins (the target
    goes back to the selected position's top token).
    """

    _rw_view = t.Unicode("dashboard").tag(sync=True)
    short_name = "dashboard"  # the CLI's --view

    target_pinned = t.Bool(False).tag(sync=True)
    # every position's own top token and its contributions there: the auto target, also in snapshots
    _top_targets = t.Dict().tag(sync=True)

    def __init__(self, dec, target: Any = None, *args: Any, **kwargs: Any):
        self._auto_depth = 1  # the target the base sets is not a pin
        try:
            super().__init__(dec, target, *args, **kwargs)
        finally:
            self._auto_depth = 0
        if not self._meta:
            return
        self._set_top_targets()
        pinned = target is not None and not (isinstance(target, str) and target == "")
        self.target_pinned = pinned
        if not pinned:
            self._follow_top()

    def _ensure_target(self, target) -> dict:
        return self._ensure_target_noted(super()._ensure_target, target)

    @contextlib.contextmanager
    def _auto(self):
        """Target changes made here follow the selection: they do not pin."""
        self._auto_depth = getattr(self, "_auto_depth", 0) + 1
        try:
            yield
        finally:
            self._auto_depth -= 1

    def _follow_top(self) -> None:
        """Unpinned: the target becomes the selected position's own top prediction."""
        if self.target_pinned or not self._top_targets:
            return
        text = self._top_targets["texts"][self.selected[1]]
        if text == self.target:
            return
        # a token added only to follow the selection leaves when the selection moves on, so that
        # walking along a long prompt does not grow the synced targets (each [C, T] twice)
        previous = getattr(self, "_auto_entry", None)
        had = self._find_target(text) is not None
        with self._auto():
            self.target = text
        self._auto_entry = None if had else self._find_target(text)["id"]
        if previous is not None and previous != self._auto_entry:
            self._targets = [tp for tp in self._targets if tp["id"] != previous]

    @t.validate("target")
    def _check_target(self, proposal):
        # a validator, not an observer: setting the target it already has pins it too
        value = super()._check_target(proposal)
        if not getattr(self, "_auto_depth", 0) and self._meta and value != "":
            self.target_pinned = True
            self._auto_entry = None  # pinned: the target stays, whoever added it
        return value

    @t.observe("target_pinned")
    def _unpinned(self, change):
        if not change["new"]:
            self._follow_top()

    @t.observe("_targets")
    def _new_run(self, change):
        # an edit re-ran the prompt (its data is set _meta first, _targets next): its own top tokens
        if getattr(self, "_top_dec", None) is None or self._top_dec is self._dec or not self._meta:
            return
        self._set_top_targets()
        self._follow_top()

    def _release(self) -> None:
        self._top_dec = None  # first: the base's emptied _targets must not recompute anything
        super()._release()
        self._top_targets = {}

    def _set_top_targets(self) -> None:
        self._top_dec = self._dec
        self._top_targets = top_targets_payload(self._dec, self._meta["k"], self._meta.get("lens_positions"))

    def _snapshot_fit(self, whole_bytes: int) -> None:
        """The grid and lens data and the auto targets (2·C·T values) share the view's part of the
        budget: the auto targets go to float16 when the data needs trimming, and are left out (the
        bars then explain the shown target) when the data is still over without them."""
        self._complete_lens()  # first: it completes the auto targets' lens log-probs too
        top = self._top_targets
        self.__dict__["_rw_top_fit"] = None
        if not top:
            return super()._snapshot_fit(whole_bytes)
        super()._snapshot_fit(whole_bytes - P.value_bytes(top))
        if not self.__dict__.get("_rw_fit", {}).get("notes"):
            return
        half = dict(top, **{name: P.array_payload(P.decode_payload(top[name]), "float16") for name in ("dla", "logp")})
        super()._snapshot_fit(whole_bytes - P.value_bytes(half))
        if any(P.STILL_OVER in note for note in self.__dict__.get("_rw_fit", {}).get("notes", [])):
            super()._snapshot_fit(whole_bytes)
            self.__dict__["_rw_top_fit"] = ({}, "the bars' auto targets (each position's own top token) left out to "
                                                "fit the budget: the bars explain the shown target at every position")
        else:
            self.__dict__["_rw_top_fit"] = (half, "the bars' auto targets (each position's own top token) embedded in "
                                                  "float16")

    def _snapshot_state(self, budget_bytes: int = 8_000_000, progress=None) -> dict:
        top_fit = self.__dict__.pop("_rw_top_fit", None)
        extra = super()._snapshot_state(budget_bytes, progress=progress)
        if top_fit is not None:
            extra["_top_targets"], note = top_fit
            extra["__notes__"] = list(extra.get("__notes__", [])) + [note]
        return extra

    def _complete_lens(self) -> None:
        partial = bool(self._meta.get("lens_positions"))
        super()._complete_lens()
        if partial and self._meta:  # the auto targets' lens log-probs of every position, now known
            self._set_top_targets()

    @t.observe("selected")
    def _position_follows_selection(self, change):
        # the bars explain the selected column: `position` says which (both ways, see below)
        if self._meta and self.position != change["new"][1]:
            self.position = change["new"][1]
        if self._meta:
            self._follow_top()

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
