"""anywidget views of a Decomposition: StreamGrid, ContributionBars, LogitLens, Dashboard.

All four share one ESM bundle (``resid_widgets/static/widget.js``) that dispatches on ``_rw_view``.
"""

from ._base import ResidView
from .contribution_bars import ContributionBars
from .dashboard import Dashboard
from .logit_lens import LogitLens
from .stream_grid import StreamGrid

__all__ = ["StreamGrid", "ContributionBars", "LogitLens", "Dashboard", "ResidView"]
