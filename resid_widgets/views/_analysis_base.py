"""Lean base of the analysis views (BlockBudget, AttentionSources): one ``_data`` dict trait that
holds everything the view shows, precomputed, so a static snapshot works without the kernel."""

from __future__ import annotations

import warnings
from typing import Any

import anywidget
import traitlets as t

from ..export import SnapshotMixin
from ._base import _esm_source


class AnalysisView(SnapshotMixin, anywidget.AnyWidget):
    """Base of the analysis views (not used directly)."""

    _esm = _esm_source()
    _rw_view = t.Unicode("").tag(sync=True)
    _data = t.Dict().tag(sync=True)
    _rw_static = t.Bool(False).tag(sync=True)
    _error = t.Unicode("").tag(sync=True)

    def _init_data(self, build, **kwargs: Any) -> bool:
        """``super().__init__`` with ``_data=build()``; on failure a readable message in the cell."""
        try:
            data = build()
        except Exception as exc:
            msg = f"cannot show this analysis: {type(exc).__name__}: {exc}"
            warnings.warn(f"{type(self).__name__}: {msg}", RuntimeWarning, stacklevel=3)
            super().__init__(_error=msg, **kwargs)
            return False
        super().__init__(_data=data, **kwargs)
        return True

    @property
    def position(self) -> int:
        """The token position the analysis was computed at."""
        return self._data["position"]

    @property
    def target(self) -> str:
        """The target token's text."""
        return self._data["target"]

    def _snapshot_state(self, budget_bytes: int = 8_000_000) -> dict:
        # everything the view shows is in _data already
        return {"_rw_static": True}
