"""``rw.link``: keep the selection and target of views shown in separate cells in step."""

from __future__ import annotations

import traitlets

LINKABLE = ("selected", "target", "position", "method", "metric", "lens_color", "pane_mode", "per_head")


def _grid_shape(view) -> tuple:
    """(states, tokens) of a grid view; (None, tokens) of a view that shows no states."""
    meta = getattr(view, "_meta", None)
    if meta:
        return meta.get("C"), meta.get("T")
    return None, (getattr(view, "_data", None) or {}).get("T")


def _same_prompt(a, b) -> bool:
    (ca, ta), (cb, tb) = _grid_shape(a), _grid_shape(b)
    return ta == tb and (ca is None or cb is None or ca == cb)


def _follows_position(view) -> bool:
    """Views that show one position (standalone bars, an attention pattern's destination row):
    a selection moves their ``position``."""
    from .attention_patterns import AttentionPatterns
    from .contribution_bars import ContributionBars

    return isinstance(view, (ContributionBars, AttentionPatterns))


def link(*views, traits=None) -> list[traitlets.link]:
    """Keep ``traits`` equal across ``views`` of one Decomposition shown in separate cells: a
    click in a StreamGrid then moves the LogitLens' selection, a target typed in the bars
    recolours the lens, and so on. A :class:`Dashboard` links its parts in the browser (also in
    snapshots); these links go through the kernel, so they need a live notebook.

    Args:
        views: two or more of StreamGrid / ContributionBars / LogitLens / Dashboard /
            AttentionPatterns.
        traits: which synced traits to link (each view must have it), from
            ``resid_widgets.views.linking.LINKABLE``. Default ("selected", "target"), where an
            AttentionPatterns (which has no target) takes part in the selection only.

    A standalone ContributionBars and an AttentionPatterns follow the selection's position
    (their ``position`` trait: the bars' position, the pattern's destination row).

    Returns:
        the ``traitlets.link`` objects (the first view that is not a ContributionBars or an
        AttentionPatterns gives the starting values); call ``.unlink()`` on each to stop. Closing
        a view undoes its links.
    """
    if len(views) < 2:
        raise ValueError(f"rw.link needs two or more views, got {len(views)}.")
    default = traits is None
    traits = ("selected", "target") if default else tuple(traits)
    bad = [name for name in traits if name not in LINKABLE]
    if bad:
        raise ValueError(f"cannot link {bad}: linkable traits are {list(LINKABLE)}.")
    first = views[0]

    def has(view, name):
        if name == "selected" and _follows_position(view):
            return view.has_trait("position")
        return isinstance(view, traitlets.HasTraits) and view.has_trait(name)

    for view in views:
        missing = [name for name in traits if not has(view, name)]
        if missing and not (default and _follows_position(view)):
            raise TypeError(f"{type(view).__name__} has no trait {missing}: pass resid_widgets views "
                            f"(StreamGrid, ContributionBars, LogitLens, Dashboard, AttentionPatterns), or fewer traits=.")
        if not _same_prompt(view, first):
            raise ValueError("the views show different decompositions (their states x tokens differ): "
                             "link views made from the same rw.decompose(...) result.")

    # views that show one position, not a cell: a selection moves their position
    anchor = next((v for v in views if not _follows_position(v)), first)
    links = []
    for view in views:
        if view is anchor:
            continue
        for name in traits:
            if not has(view, name) or not has(anchor, name):
                continue  # a trait the default pair names but this view lacks (an AttentionPatterns' target)
            if name == "selected" and _follows_position(view) and not _follows_position(anchor):
                one = traitlets.link((anchor, "selected"), (view, "position"),
                                     transform=(lambda sel: sel[1], lambda p, a=anchor: (a.selected[0], p)))
            elif name == "selected" and not (view.has_trait("selected") and anchor.has_trait("selected")):
                one = traitlets.link((anchor, "position"), (view, "position"))
            else:
                one = traitlets.link((anchor, name), (view, name))
            for end in (anchor, view):  # closing either view undoes the link, so it cannot keep the other alive
                if hasattr(end, "_remember_link"):
                    end._remember_link(one)
            links.append(one)
    return links
