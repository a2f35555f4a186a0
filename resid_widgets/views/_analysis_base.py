"""Lean base of the analysis views (BlockBudget, AttentionSources): one ``_data`` dict trait that
holds everything the view shows, precomputed, so a static snapshot works without the kernel."""

from __future__ import annotations

import warnings
from typing import Any

import anywidget
import traitlets as t

from ..export import SnapshotMixin
from ._base import ESM, WholeNumber, checked_position
from .lifetime import ClosedDecomposition, ViewLifetime


class AnalysisView(ViewLifetime, SnapshotMixin, anywidget.AnyWidget):
    """Base of the analysis views (not used directly).

    ``position`` (synced) is the token position shown: set it, or click a token of the view's
    prompt strip, and the view recomputes (with the kernel; a snapshot holds its one position).
    Subclasses set ``self._dec`` and implement ``_payload(position) -> dict``. ``close()`` lets go
    of the Decomposition and the data (see :mod:`resid_widgets.views.lifetime`).
    """

    _esm = ESM
    _rw_view = t.Unicode("").tag(sync=True)
    _data = t.Dict().tag(sync=True)
    _rw_static = t.Bool(False).tag(sync=True)
    _error = t.Unicode("").tag(sync=True)
    position = WholeNumber(-1, " (a token position; negative counts from the end)").tag(sync=True)

    def _payload(self, position: int) -> dict:
        raise NotImplementedError

    def _start(self, position: int, **kwargs: Any) -> bool:
        """``super().__init__`` with the payload at ``position``; on failure a readable message in the cell."""
        try:
            data = self._payload(position)
        except Exception as exc:
            msg = f"cannot show this analysis: {type(exc).__name__}: {exc}"
            warnings.warn(f"{type(self).__name__}: {msg}", RuntimeWarning, stacklevel=3)
            super().__init__(_error=msg, **kwargs)
            self._adopt()
            return False
        super().__init__(_data=data, position=data["position"], **kwargs)
        self._adopt()
        return True

    def _release(self) -> None:
        self._dec = ClosedDecomposition()
        self._data = {}

    @t.validate("position")
    def _check_position(self, proposal):
        dec = getattr(self, "_dec", None)
        return checked_position(proposal["value"], len(dec.tokens) if dec is not None and self._data else 0)

    @t.observe("position")
    def _recompute(self, change):
        if not self._data or change["new"] == self._data.get("position"):
            return
        try:
            data = self._payload(change["new"])
        except Exception as exc:  # keep the view as it was, and say why
            warnings.warn(f"{type(self).__name__}: cannot show position {change['new']}: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            self.position = change["old"]
            return
        self._data = data

    @property
    def target(self) -> str:
        """The target token's text."""
        self._check_open()
        return self._data["target"]

    def _snapshot_state(self, budget_bytes: int = 8_000_000) -> dict:
        # everything the view shows is in _data already
        return {"_rw_static": True}
