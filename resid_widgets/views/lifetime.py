"""How long a view (and the Decomposition it shows) stays in memory.

ipywidgets keeps every open widget until ``close()``, so a notebook cell that is re-run would
pile up views, each holding its Decomposition (~150 MB at 256 tokens). Two rules keep memory
bounded:

- ``view.close()`` removes the view from the front ends, undoes its :func:`rw.link` links and
  lets go of its Decomposition and data (a closed view is empty; make a new one to show it again).
- In a notebook, re-running a cell closes the views that the cell's earlier runs made: their
  output was replaced, so nothing shows them any more. Set ``CLOSE_ON_RERUN = False`` (here,
  ``resid_widgets.views.lifetime``) to keep them, e.g. when one cell is re-run to collect views
  into a list shown elsewhere.

Cells are told apart by the ``cellId`` that JupyterLab and Notebook 7 (and other front ends that
follow them) send with each execution request, read through IPython's ``pre_run_cell`` event and
ipykernel's ``get_parent()``; where a front end sends none (nbclient, a terminal), views live
until closed.
"""

from __future__ import annotations

import sys
import weakref

__all__ = ["CLOSE_ON_RERUN", "ViewLifetime"]

#: re-running a notebook cell closes the views its earlier runs made
CLOSE_ON_RERUN = True

# cell id -> the open views its runs made so far (weakly: a closed view may go at once)
_views_by_cell: dict[str, weakref.WeakSet] = {}
_hooked_shells: weakref.WeakSet = weakref.WeakSet()


CLOSED = ("this view was closed (closing lets go of its Decomposition and data): make a new view, "
          "e.g. rw.Dashboard(dec)")


class ClosedDecomposition:
    """Stands in for the Decomposition of a closed view, which ``close()`` let go of."""

    def __getattr__(self, name):
        raise RuntimeError(CLOSED)

    def __bool__(self) -> bool:
        return False


class ViewLifetime:
    """Mixin of the view bases: ``close()`` frees what the view holds; notebook re-runs close views.

    A subclass calls ``self._adopt()`` once its widget exists and implements ``_release()``.
    """

    def _adopt(self) -> None:
        """Track this view under the notebook cell that is running (if any)."""
        cell = _running_cell()
        if cell is not None:
            _views_by_cell.setdefault(cell, weakref.WeakSet()).add(self)

    def _set_or_close(self, **values) -> None:
        """Set traits of a just-made view; on a bad value close it, then raise (an open widget would
        stay in ipywidgets' registry, holding its Decomposition)."""
        try:
            for name, value in values.items():
                setattr(self, name, value)
        except Exception:
            self.close()
            raise

    def _remember_link(self, link) -> None:
        """An ``rw.link`` link that ``close()`` must undo (weakly: a user's ``unlink()`` frees it)."""
        self.__dict__.setdefault("_rw_links", weakref.WeakSet()).add(link)

    def _check_open(self) -> None:
        """Raise a clear error on a closed view (its data is gone)."""
        if isinstance(self.__dict__.get("_dec"), ClosedDecomposition):
            raise RuntimeError(CLOSED)

    def _release(self) -> None:
        """Drop the Decomposition and the synced data (the widget is closed already)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the view: its outputs go blank, its ``rw.link`` links are undone, and it lets go of
        its Decomposition and data, so they can be freed."""
        was_open = getattr(self, "comm", None) is not None
        for link in list(self.__dict__.pop("_rw_links", ())):
            try:
                link.unlink()
            except ValueError:  # the other view unlinked it already
                pass
        super().close()
        if was_open:
            self._release()


def _running_cell() -> str | None:
    """The id of the notebook cell being run, or None; hooks the shell's ``pre_run_cell`` once."""
    if not CLOSE_ON_RERUN or "IPython" not in sys.modules:  # never import IPython ourselves
        return None
    shell = sys.modules["IPython"].get_ipython()
    kernel = getattr(shell, "kernel", None)
    if shell is None or kernel is None or not hasattr(kernel, "get_parent"):
        return None
    if shell not in _hooked_shells:
        shell.events.register("pre_run_cell", _close_views_of_earlier_runs)
        _hooked_shells.add(shell)
    parent = kernel.get_parent("shell") or {}
    cell = (parent.get("metadata") or {}).get("cellId")
    return str(cell) if cell else None


def _close_views_of_earlier_runs(info) -> None:
    """``pre_run_cell``: the cell is about to run again, so the views its last run made are gone
    from the page; close them."""
    cell = getattr(info, "cell_id", None)
    if not CLOSE_ON_RERUN or not cell:
        return
    for view in list(_views_by_cell.pop(str(cell), ())):
        view.close()
