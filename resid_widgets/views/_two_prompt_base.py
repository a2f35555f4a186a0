"""Lean base of the views of two prompts (PatchingGrid, Compare): one ``_data`` dict trait holds
everything the view shows, so a static snapshot is as interactive as the live view."""

from __future__ import annotations

import warnings

import anywidget
import traitlets as t

from ..export import SnapshotMixin
from ._base import ESM
from .lifetime import ViewLifetime


class TwoPromptView(ViewLifetime, SnapshotMixin, anywidget.AnyWidget):
    """Base of PatchingGrid and Compare (not used directly): ``_data``, ``_error``, ``selected``."""

    _esm = ESM
    _rw_view = t.Unicode("").tag(sync=True)
    _data = t.Dict().tag(sync=True)
    _rw_static = t.Bool(False).tag(sync=True)
    _error = t.Unicode("").tag(sync=True)
    selected = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)

    def _failed(self, what: str, exc: Exception, **kwargs) -> None:
        """Make the widget showing why it cannot show ``what`` (a readable message, never a blank area)."""
        msg = f"cannot {what}: {type(exc).__name__}: {exc}"
        warnings.warn(f"{type(self).__name__}: {msg}", RuntimeWarning, stacklevel=3)
        super().__init__(_error=msg, **kwargs)
        self._adopt()

    def _snapshot_state(self, budget_bytes: int = 8_000_000) -> dict:
        # everything the view shows is in _data already
        return {"_rw_static": True}
