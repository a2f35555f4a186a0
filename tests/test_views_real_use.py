"""Views in ordinary use (issue 11): the first vector pane without a round trip, the Dashboard's
position following its selection both ways, and where a snapshot spends its pane budget."""

from __future__ import annotations

import numpy as np
import pytest

from resid_widgets.views import ContributionBars, Dashboard, LogitLens, StreamGrid
from resid_widgets.views import payload as P
from views_fixtures import view_decomposition


@pytest.mark.parametrize("cls", [StreamGrid, Dashboard])
def test_first_pane_is_in_the_first_payload(cls, view_dec):
    w = cls(view_dec, position=2)
    assert w._panes["positions"] == [2] == [w.selected[1]]
    got = P.decode_payload(w._panes)  # [C, 1, d] float16
    want = view_dec.deltas[:, 2, :].numpy()
    np.testing.assert_allclose(got[:, 0, :], want, rtol=2e-3, atol=2e-3)
    # the kernel answers the same numbers for that position
    header, data = P.pane_payload(view_dec, 2)
    np.testing.assert_allclose(np.frombuffer(data, np.float16).reshape(header["shape"]), got[:, 0, :])


@pytest.mark.parametrize("cls", [ContributionBars, LogitLens])
def test_views_without_a_pane_embed_none(cls, view_dec):
    assert not cls(view_dec).has_trait("_panes")


def test_dashboard_position_is_the_selected_column(view_dec):
    dash = Dashboard(view_dec)
    dash.selected = (1, 2)
    assert dash.position == 2
    dash.position = 4
    assert dash.selected == (1, 4)
    dash.position = -1  # counts from the end, as everywhere
    assert dash.position == len(view_dec.tokens) - 1
    assert dash.selected[1] == dash.position


def test_pane_order_target_first_then_spread():
    order = P.pane_order(207, first=[206], around=100, n=30)
    assert len(order) == len(set(order)) == 30
    assert order[:9] == [206, 99, 101, 98, 102, 97, 103, 96, 104]
    rest = sorted(order[9:])
    gaps = np.diff([0] + rest + [206])
    assert gaps.max() <= 2 * 207 // 20 + 1, "the remaining budget is spread over the prompt"
    assert P.pane_order(5, first=[2], around=2) == [2, 1, 3, 0, 4]
    assert P.pane_order(5, n=0) == []


def test_snapshot_of_all_panes_lists_nothing_as_left_out():
    dec = view_decomposition(T=6, n_layers=2)
    w = StreamGrid(dec)
    state = w._snapshot_state(10_000_000)
    assert state["_panes"]["positions"] == list(range(6))
    assert state["_panes_note"] == ""
    assert not any("vector pane" in n for n in state["__notes__"])
    small = w._snapshot_state(len(dec.labels) * dec.d_model * 2 * 2)
    assert len(small["_panes"]["positions"]) == 2
    assert "2 of 6 positions" in small["_panes_note"]
    assert any("2 of 6 positions" in n for n in small["__notes__"])


def test_block_budget_leaves_drop_one_of_a_long_prompt_for_later():
    import resid_widgets as rw
    from resid_widgets.views.block_budget import DROP_NOW_MAX_TOKENS
    from views_fixtures import tiny_llama_decomposition

    dec = tiny_llama_decomposition(T=DROP_NOW_MAX_TOKENS + 2)
    lazy, eager = rw.BlockBudget(dec), rw.BlockBudget(dec, drop=True)
    assert lazy._data["drop_pending"] and lazy._data["drop"] is None
    assert eager._data["drop"] is not None and not eager._data["drop_pending"]
    notes = lazy._snapshot_state()["__notes__"]
    assert "drop-one effects not computed" in notes[0]
    # the view's button sends {"type": "drop"}: the same numbers as computed at once
    sent = []
    lazy.send = lambda content, buffers=None: sent.append(content)
    lazy._on_custom(lazy, {"type": "drop", "id": "rw1"}, [])
    assert sent == [{"type": "drop", "id": "rw1", "ok": True}]
    assert not lazy._data["drop_pending"]
    np.testing.assert_allclose(lazy._data["drop"]["effect"], eager._data["drop"]["effect"], rtol=1e-5, atol=1e-6)
    assert "__notes__" not in lazy._snapshot_state()
    short = rw.BlockBudget(tiny_llama_decomposition(T=8))
    assert short._data["drop"] is not None, "short prompts get the strip at once"


def test_each_view_declares_only_its_own_traits(view_dec):
    grid_only = {"metric", "normalize", "exclude_first", "pane_mode", "_panes", "_panes_note"}
    bars_only = {"method", "per_head", "_neurons"}
    lens_only = {"lens_color"}
    has = {cls: {n for n in grid_only | bars_only | lens_only if cls(view_dec).has_trait(n)}
           for cls in (StreamGrid, ContributionBars, LogitLens, Dashboard)}
    assert has[StreamGrid] == grid_only
    assert has[ContributionBars] == bars_only
    assert has[LogitLens] == lens_only
    assert has[Dashboard] == grid_only | bars_only | lens_only
    # a view without a pane embeds none in a snapshot (smaller files)
    assert "_panes" not in ContributionBars(view_dec)._snapshot_state()
    assert "_panes" not in LogitLens(view_dec)._snapshot_state()


def test_every_view_is_exported_and_has_a_cli_name():
    import resid_widgets as rw
    from resid_widgets.views import VIEWS

    names = {cls.__name__ for cls in VIEWS}
    assert names <= set(rw.__all__) and all(getattr(rw, n) is getattr(rw.views, n) for n in names)
    short = [cls.short_name for cls in VIEWS]
    assert len(short) == len(set(short)) == len(VIEWS)
