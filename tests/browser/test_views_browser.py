"""The views in a real (headless) Chromium, through tests/browser/harness.py: rendering, token
safety, selection (click, keys, from Python), linking in the dashboard, panes and targets with and
without a kernel, bad input, theme."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

from playwright.sync_api import expect  # noqa: E402

from .harness import have_chromium, push_state

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

from views_fixtures import view_decomposition  # noqa: E402


def canvas_colours(page, selector):
    """Number of distinct colours on a canvas (a blank canvas has 1)."""
    return page.evaluate(
        """(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const s = new Set(); for (let i = 0; i < d.length; i += 16) s.add(d[i] << 16 | d[i+1] << 8 | d[i+2]); return s.size; }""",
        selector,
    )


def test_all_views_render_non_blank(open_page, rw):
    dec = view_decomposition(T=8, n_layers=3)
    pg = open_page([rw.StreamGrid(dec), rw.ContributionBars(dec), rw.LogitLens(dec), rw.Dashboard(dec)])
    page = pg.page
    for name, n in (("stream-grid", 2), ("contribution-bars", 2), ("logit-lens", 2), ("dashboard", 1)):
        assert page.locator(f'[data-rw="{name}"]').count() == n, name
    assert canvas_colours(page, '[data-rw="stream-grid"] canvas.rw-cells') > 8
    assert canvas_colours(page, '[data-rw="logit-lens"] canvas.rw-cells') > 8
    assert page.locator('[data-rw="contribution-bars"] svg rect').count() >= dec.n_layers * 2
    # in the dashboard, sub-views keep their own roots
    dash = page.locator('[data-rw="dashboard"]')
    for name in ("stream-grid", "contribution-bars", "logit-lens"):
        assert dash.locator(f'[data-rw="{name}"]').count() == 1
    # no stray "null"/"undefined"/"NaN" text anywhere
    import re

    body = page.locator("body").inner_text()
    assert not re.search(r"\b(null|undefined|NaN)\b", body), re.findall(r".{30}\b(?:null|undefined|NaN)\b.{10}", body)
    # grid root carries the selection
    assert page.locator('[data-rw="stream-grid"]').first.get_attribute("data-rw-selected") == f"{len(dec.labels) - 1},{len(dec.tokens) - 1}"
    pg.clean()


def test_token_text_is_data_not_html(open_page, rw):
    dec = view_decomposition(T=6)
    assert dec.tokens[1].startswith("<script>") and "onerror" in dec.tokens[2]
    pg = open_page([rw.Dashboard(dec)])
    page = pg.page
    assert page.evaluate("window.__pwned") is None
    assert page.locator('[data-rw="dashboard"] script').count() == 0
    assert page.locator('[data-rw="dashboard"] img').count() == 0
    text = page.locator(".rw-prompt").inner_text()
    assert "<script>alert(1)</script>" in text and "<img src=x" in text
    pg.clean()


def test_click_keys_and_python_selection(open_page, rw):
    dec = view_decomposition(T=8, n_layers=3)
    w = rw.StreamGrid(dec)
    pg = open_page([w], kernel=True)
    page = pg.page
    grid = page.locator('[data-rw="stream-grid"]')
    page.locator('[data-rw-cell="2,3"]').first.click()
    assert grid.get_attribute("data-rw-selected") == "2,3"
    page.wait_for_timeout(50)
    assert w.selected == (2, 3), "the click reached Python"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    assert grid.get_attribute("data-rw-selected") == "3,4"
    assert w.selected == (3, 4)
    # Python -> browser
    w.selected = (1, 6)
    push_state(page, 0, w, ["selected"])
    assert grid.get_attribute("data-rw-selected") == "1,6"
    pg.clean()


def test_dashboard_views_are_linked_without_a_kernel(open_page, rw):
    dec = view_decomposition(T=8, n_layers=3)
    w = rw.Dashboard(dec)
    pg = open_page([w], extras=[w._snapshot_state(10_000_000)])
    page = pg.page
    grid = page.locator('[data-rw="stream-grid"]')
    bars = page.locator('[data-rw="contribution-bars"]')
    lens = page.locator('[data-rw="logit-lens"]')
    lens.locator('[data-rw-cell="4,2"]').click()
    assert grid.get_attribute("data-rw-selected") == "4,2"
    expect(bars.locator(".rw-title")).to_contain_text("at position 2")
    # pick a target by clicking a token in the lens' top-k
    chips = lens.locator('[data-rw-part="topk"] .rw-chip[data-rw-precomputed="true"][aria-pressed="false"]')
    if chips.count():
        want = chips.first.inner_text().rsplit(" ", 1)[0]
        chips.first.click()
        expect(bars.locator(".rw-title")).to_contain_text(want)
    other = lens.locator('[data-rw-part="topk"] .rw-chip[data-rw-precomputed="false"]')
    if other.count():
        other.first.click()
        expect(other.first).to_contain_text("needs the kernel")
    # a precomputed target chip in the bars also sets the target for the whole dashboard
    bars.locator(".rw-chip").nth(1).click()
    expect(bars.locator(".rw-chip").nth(1)).to_have_attribute("aria-pressed", "true")
    # method switch
    bars.locator('[data-rw-method="logprob"]').click()
    expect(bars).to_have_attribute("data-rw-method", "logprob")
    expect(bars.locator(".rw-summary")).to_contain_text("log p(final)")
    pg.clean()


def test_pane_embedded_kernel_and_missing(open_page, rw):
    dec = view_decomposition(T=6, n_layers=2)
    w1, w2, w3 = rw.StreamGrid(dec), rw.StreamGrid(dec), rw.StreamGrid(dec)
    per = len(dec.labels) * dec.d_model * 2
    extras = [w1._snapshot_state(10_000_000), w2._snapshot_state(per + 1), None]
    pg = open_page([w1, w2, w3], extras=extras, kernel=True)
    page = pg.page
    panes = page.locator('[data-rw-part="pane"]')
    # 1: all panes embedded: a decomposition strip canvas, no kernel needed
    panes.nth(0).locator("canvas").wait_for(timeout=5000)
    page.locator('[data-rw="stream-grid"]').nth(0).locator('[data-rw-cell="1,0"]').click()
    panes.nth(0).locator("canvas").wait_for(timeout=5000)
    # 2: a static snapshot with only the last position: another position says it needs the kernel
    page.locator('[data-rw="stream-grid"]').nth(1).locator('[data-rw-cell="1,0"]').click()
    panes.nth(1).get_by_text("needs the kernel").wait_for(timeout=5000)
    # ... but "project on target" works without it
    panes.nth(1).locator('[data-rw-mode="project"]').click()
    panes.nth(1).locator("canvas").wait_for(timeout=5000)
    expect(panes.nth(1)).to_have_attribute("data-rw-pane-mode", "project")
    # 3: live, the kernel answers the pane request
    page.locator('[data-rw="stream-grid"]').nth(2).locator('[data-rw-cell="2,1"]').click()
    panes.nth(2).locator("canvas").wait_for(timeout=5000)
    panes.nth(2).locator('[data-rw-mode="raw"]').click()
    expect(panes.nth(2)).to_contain_text("the stream vector")
    sent = page.evaluate("window.rwSent")
    assert any(m.get("type") == "pane" for m in sent)
    pg.clean()


def test_new_target_asks_kernel_or_says_it_needs_one(open_page, rw):
    dec = view_decomposition(T=6, n_layers=2)
    live, static = rw.ContributionBars(dec), rw.ContributionBars(dec)
    pg = open_page([live, static], extras=[None, static._snapshot_state(1000)], kernel=True)
    page = pg.page
    inputs = page.locator('[data-rw="contribution-bars"] input[type=text]')
    inputs.nth(0).fill(" Paris")
    inputs.nth(0).press("Enter")
    page.locator('[data-rw="contribution-bars"]').nth(0).locator(".rw-title", has_text="·Paris").wait_for(timeout=5000)
    assert live.target == " Paris"
    inputs.nth(1).fill("·Paris")
    inputs.nth(1).press("Enter")
    page.locator('[data-rw="contribution-bars"]').nth(1).get_by_text("needs the kernel").wait_for(timeout=5000)
    pg.clean()


def test_bad_input_shows_a_message(open_page, rw):
    dec = view_decomposition(T=5)
    good = rw.LogitLens(dec)
    broken = rw.StreamGrid(dec)
    broken._arrays = {**broken._arrays, "state_norm": {**broken._arrays["state_norm"], "data": b"\x00" * 12}}
    empty = rw.ContributionBars(dec)
    empty._meta = {}
    dec2 = view_decomposition(T=3)
    dec2.labels = []
    with pytest.warns(RuntimeWarning):
        err = rw.Dashboard(dec2)
    pg = open_page([good, broken, empty, err])
    page = pg.page
    msgs = page.locator(".rw-msg-error")
    assert msgs.count() == 3
    text = page.locator("body").inner_text()
    assert "do not match shape" in text and "empty payload" in text and "empty" in text
    pg.clean()


def test_dark_theme_followed(open_page, rw):
    dec = view_decomposition(T=5)
    pg = open_page([rw.StreamGrid(dec)], dark=True)
    assert "rw-dark" in pg.page.locator(".rw-root").first.get_attribute("class")
    pg.clean()


def test_sink_excluded_and_legend_shown(open_page, rw):
    dec = view_decomposition(T=6)
    pg = open_page([rw.StreamGrid(dec)])
    page = pg.page
    assert page.locator('.rw-check input').first.is_checked()
    assert "quantiles" in page.locator(".rw-legend").first.inner_text()
    page.locator(".rw-check input").first.uncheck()
    pg.clean()


def test_large_grid_renders_and_scrolls(open_page, rw):
    dec = view_decomposition(T=400, n_layers=8, d_model=16, vocab=60)
    pg = open_page([rw.Dashboard(dec)])
    page = pg.page
    assert page.locator("[data-rw-cell]").count() == 0  # no per-cell elements for big grids
    # every column scrolls (the spacer is as wide as all of them); the canvas covers the visible part
    assert page.locator('[data-rw="stream-grid"] .rw-inner').bounding_box()["width"] >= 400 * 3
    box = page.locator('[data-rw="stream-grid"] canvas.rw-cells').bounding_box()
    assert box["width"] <= page.locator('[data-rw="stream-grid"] .rw-scroll').bounding_box()["width"] + 0.5
    page.locator('[data-rw="stream-grid"] .rw-scroll').focus()
    page.keyboard.press("ArrowLeft")
    assert page.locator('[data-rw="stream-grid"]').get_attribute("data-rw-selected") == f"{len(dec.labels) - 1},398"
    pg.clean()


def test_per_head_from_kernel_or_snapshot(open_page, rw):
    dec = view_decomposition(T=6, n_layers=3)
    live = rw.ContributionBars(dec)
    snap = rw.ContributionBars(dec)
    pg = open_page([live, snap], extras=[None, snap._snapshot_state(10_000_000)], kernel=True)
    page = pg.page
    bars = page.locator('[data-rw="contribution-bars"]')
    for i in range(2):
        bars.nth(i).locator(".rw-check input").check()
        bars.nth(i).locator('canvas[aria-label="per-head contributions"]').wait_for(timeout=5000)
    assert str(len(dec.tokens) - 1) in live._targets[0]["heads"], "the kernel computed the heads"
    pg.clean()


@pytest.mark.slow
def test_smollm2_dashboard_reads_well(open_page, rw, paris):
    w = rw.Dashboard(paris)
    pg = open_page([w], extras=[w._snapshot_state(4_000_000)])
    page = pg.page
    text = page.locator('[data-rw="dashboard"]').inner_text()
    assert "Ġ" not in text and "·Paris" in text and "·France" in text
    assert page.locator('[data-rw="stream-grid"] .rw-check input').first.is_checked(), "sink excluded"
    bars = page.locator('[data-rw="contribution-bars"]')
    expect(bars.locator(".rw-title")).to_contain_text("·Paris")
    assert canvas_colours(page, '[data-rw="logit-lens"] canvas.rw-cells') > 20
    page.locator('[data-rw-part="pane"] canvas').wait_for(timeout=5000)
    pg.clean()


def test_cells_adapt_to_the_width(open_page, rw):
    dec = view_decomposition(T=30, n_layers=2)
    pg = open_page([rw.StreamGrid(dec)], width="1000px")
    page = pg.page
    canvas = page.locator('[data-rw="stream-grid"] canvas.rw-cells')
    wide = canvas.bounding_box()["width"]
    page.evaluate("document.querySelector('.host').style.width = '500px'")
    page.wait_for_function(f"document.querySelector('[data-rw=\"stream-grid\"] canvas.rw-cells').getBoundingClientRect().width < {wide} * 0.8")
    narrow = canvas.bounding_box()["width"]
    assert narrow < wide * 0.8
    assert narrow <= 500
    pg.clean()


def test_every_family_renders_in_the_browser(open_page, rw):
    import resid_widgets as rwp
    from models_zoo import FAMILIES, build, random_ids

    widgets = [rw.Dashboard(rwp.decompose(build(f), random_ids(6))) for f in FAMILIES]
    pg = open_page(widgets)
    page = pg.page
    assert page.locator('[data-rw="dashboard"]').count() == len(FAMILIES)
    assert page.locator(".rw-msg-error").count() == 0
    for i in range(len(FAMILIES)):
        assert canvas_colours(page, f'#w{i} [data-rw="stream-grid"] canvas.rw-cells') > 4, FAMILIES[i]
    pg.clean()


def test_standalone_bars_pick_a_position(open_page, rw):
    dec = view_decomposition(T=6, n_layers=2)
    w = rw.ContributionBars(dec)
    pg = open_page([w], kernel=True)
    page = pg.page
    bars = page.locator('[data-rw="contribution-bars"]')
    bars.locator(".rw-prompt .rw-tok").nth(3).click()
    expect(bars.locator(".rw-title")).to_contain_text("at position 3")
    page.wait_for_timeout(50)
    assert w.position == 3
    pg.clean()
