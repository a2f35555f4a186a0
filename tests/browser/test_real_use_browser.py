"""Views in ordinary use (issue 11) in Chromium: the first pane without a round trip, a busy
kernel waited for (and said so), keys kept by a focused view only when it handles them, the
Dashboard's position following its selection both ways."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

from playwright.sync_api import expect  # noqa: E402

from .harness import have_chromium, push_state  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

from views_fixtures import view_decomposition  # noqa: E402


def test_first_pane_needs_no_round_trip_and_a_busy_kernel_is_waited_for(open_page, rw):
    dec = view_decomposition(T=8, n_layers=2)
    w = rw.StreamGrid(dec)
    pg = open_page([w], kernel=True)
    page = pg.page
    pane = page.locator('[data-rw-part="pane"]')
    pane.locator("canvas").wait_for(timeout=5000)
    assert "sources add up to this stream" in pane.inner_text()
    assert [m for m in page.evaluate("window.rwSent") if m.get("type") == "pane"] == []
    # a kernel busy with other cells (Run All): the answer comes after 12 s, past any old time-out
    page.evaluate(
        """() => { const k = window.rwKernel;
        window.rwKernel = (i, c) => new Promise((r) => setTimeout(r, 12000)).then(() => k(i, c)); }"""
    )
    page.locator('[data-rw-cell="2,3"]').click()
    clicked = page.evaluate("performance.now()")
    expect(pane).to_contain_text("kernel busy", timeout=5000)
    page.wait_for_function(f"performance.now() > {clicked} + 9000", timeout=15000)
    expect(pane).to_contain_text("kernel busy", timeout=1)  # still waiting after 9 s, no give-up
    expect(pane).to_contain_text("sources add up to this stream", timeout=10000)
    expect(pane).to_contain_text("at position 3")
    assert "needs the kernel" not in pane.inner_text()
    pg.clean()


def test_a_focused_view_keeps_only_its_own_keys(open_page, rw):
    dec = view_decomposition(T=8, n_layers=3)
    grid, lens = rw.StreamGrid(dec), rw.LogitLens(dec)
    pg = open_page([grid, lens], kernel=True)
    page = pg.page
    page.evaluate("""() => { window.rwLeaked = [];
        document.addEventListener('keydown', (e) => window.rwLeaked.push(e.key)); }""")
    for idx, name in ((0, "stream-grid"), (1, "logit-lens")):
        view = page.locator(f'[data-rw="{name}"]')
        view.locator('[data-rw-cell="2,3"]').click()
        page.evaluate("window.rwLeaked = []")
        for key in ("j", "ArrowDown", "l", "ArrowRight", "k", "h", "x", "Shift+Enter", "Control+s"):
            page.keyboard.press(key)
        # j, l move like the arrows; k, h move back: (2,3) -> (3,3) -> (4,3) -> (4,4) -> (4,5) -> (3,5) -> (3,4)
        assert view.get_attribute("data-rw-selected") == "3,4"
        leaked = page.evaluate("window.rwLeaked")
        assert leaked == ["x", "Shift", "Enter", "Control", "s"], (name, leaked)
    assert grid.selected == (3, 4) and lens.selected == (3, 4)
    pg.clean()


def test_dashboard_position_follows_the_selection_both_ways(open_page, rw):
    dec = view_decomposition(T=8, n_layers=3)
    dash = rw.Dashboard(dec)
    pg = open_page([dash], kernel=True)
    page = pg.page
    grid = page.locator('[data-rw="stream-grid"]')
    bars = page.locator('[data-rw="contribution-bars"]')
    grid.locator('[data-rw-cell="2,5"]').click()
    expect(bars.locator(".rw-title")).to_contain_text("at position 5")
    page.wait_for_timeout(100)
    assert dash.selected == (2, 5) and dash.position == 5
    # a click on the prompt strip moves both too
    page.locator('[data-rw="prompt-strip"] [data-rw-pos="1"]').click()
    page.wait_for_timeout(100)
    assert dash.position == 1 and dash.selected == (2, 1)
    # Python -> browser: setting position moves the selection (and the bars)
    dash.position = 6
    push_state(page, 0, dash, ["position", "selected"])
    expect(grid).to_have_attribute("data-rw-selected", "2,6")
    expect(bars.locator(".rw-title")).to_contain_text("at position 6")
    pg.clean()


def test_block_budget_drop_one_on_demand(open_page, rw):
    import resid_widgets as rwp
    from resid_widgets.views.block_budget import DROP_NOW_MAX_TOKENS
    from views_fixtures import tiny_llama_decomposition

    dec = tiny_llama_decomposition(T=DROP_NOW_MAX_TOKENS + 2)
    w = rwp.BlockBudget(dec, k=4)
    pg = open_page([w], kernel=True)
    page = pg.page
    view = page.locator('[data-rw="block-budget"]')
    assert view.locator(".rw-budget-drop").count() == 0
    view.locator('[data-rw-part="drop-button"]').click()
    expect(view.locator(".rw-budget-drop > div")).to_have_count(dec.n_layers, timeout=30000)
    pg.clean()


@pytest.mark.parametrize("T", [10, 207])
def test_dashboard_fits_a_laptop_screen(open_page, rw, T):
    # SmolLM2 (30 layers) at 1,200 px wide: 870 px at 10 tokens, 811 at 207 (was 2,214, then 1,052)
    dec = view_decomposition(T=T, n_layers=30, d_model=64)
    dash = rw.Dashboard(dec)
    pg = open_page([dash], width="1200px")
    page = pg.page
    box = page.locator('[data-rw="dashboard"]').bounding_box()
    assert box["height"] <= 900, f"dashboard {box['height']:.0f} px tall at {T} tokens (was 2,214 px)"
    # the bars keep a readable width and stay inside their column
    bars = page.locator('[data-rw="contribution-bars"]')
    svg = bars.locator("svg").first.bounding_box()
    assert svg["x"] + svg["width"] <= bars.bounding_box()["x"] + bars.bounding_box()["width"] + 1
    # the pane folds to its title line and unfolds
    pane = page.locator('[data-rw-part="pane"]')
    pane.locator('[data-rw-part="pane-fold"]').click()
    expect(pane).to_have_attribute("data-rw-folded", "true")
    assert pane.bounding_box()["height"] < 120  # its title line (wrapped in a narrow column); open: ~470 px
    pane.locator('[data-rw-part="pane-fold"]').click()
    pane.locator("canvas").wait_for(timeout=5000)
    pg.clean()
