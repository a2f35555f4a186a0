"""``rw.link``: keep the selection and target of views shown in separate cells in step."""

from __future__ import annotations

import traitlets

LINKABLE = ("selected", "target", "position", "method", "metric", "lens_color", "pane_mode", "per_head")


def _grid_shape(view) -> tuple:
    meta = getattr(view, "_meta", {})
    return meta.get("C"), meta.get("T")


def link(*views, traits=("selected", "target")) -> list[traitlets.link]:
    """Keep ``traits`` equal across ``views`` of one Decomposition shown in separate cells: a
    click in a StreamGrid then moves the LogitLens' selection, a target typed in the bars
    recolours the lens, and so on. A :class:`Dashboard` links its parts in the browser (also in
    snapshots); these links go through the kernel, so they need a live notebook.

    Args:
        views: two or more of StreamGrid / ContributionBars / LogitLens / Dashboard.
        traits: which synced traits to link (each view must have it), from
            ``resid_widgets.views.linking.LINKABLE``.

    A standalone ContributionBars follows the selection's position (its ``position`` trait).

    Returns:
        the ``traitlets.link`` objects (the first view that is not a ContributionBars gives the
        starting values); call ``.unlink()`` on each to stop.
    """
    if len(views) < 2:
        raise ValueError(f"rw.link needs two or more views, got {len(views)}.")
    bad = [name for name in traits if name not in LINKABLE]
    if bad:
        raise ValueError(f"cannot link {bad}: linkable traits are {list(LINKABLE)}.")
    first = views[0]
    for view in views:
        missing = [name for name in traits if not (isinstance(view, traitlets.HasTraits) and view.has_trait(name))]
        if missing:
            raise TypeError(f"{type(view).__name__} has no trait {missing}: pass resid_widgets views "
                            f"(StreamGrid, ContributionBars, LogitLens, Dashboard), or fewer traits=.")
        if _grid_shape(view) != _grid_shape(first):
            raise ValueError("the views show different decompositions (their states x tokens differ): "
                             "link views made from the same rw.decompose(...) result.")
    from .contribution_bars import ContributionBars

    # standalone bars show one position (their `position`), not a cell: a selection moves it
    anchor = next((v for v in views if not isinstance(v, ContributionBars)), first)
    links = []
    for view in views:
        if view is anchor:
            continue
        for name in traits:
            if name == "selected" and isinstance(view, ContributionBars) and not isinstance(anchor, ContributionBars):
                links.append(traitlets.link((anchor, "selected"), (view, "position"),
                                            transform=(lambda sel: sel[1], lambda p, a=anchor: (a.selected[0], p))))
            else:
                links.append(traitlets.link((anchor, name), (view, name)))
    return links
