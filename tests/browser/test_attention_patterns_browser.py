"""rw.AttentionPatterns in headless Chromium: thumbnails, opening a head, hover with the view's own
tooltip, the destination row, the head-score heatmap, layers in an offline snapshot (dense and
sparsified), and the selection linked to a StreamGrid through the kernel."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("playwright", reason="the playwright package is not installed")

import resid_widgets as rw  # noqa: E402
from models_zoo import build, random_ids  # noqa: E402
from resid_widgets.views.payload import display_token  # noqa: E402

from .harness import ensure_bundle, have_chromium, push_state  # noqa: E402
from .test_analysis_views_browser import _until, live_page  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

ROOT = "[data-rw=attention-patterns]"


@pytest.fixture(scope="module", autouse=True)
def bundle():
    ensure_bundle()


@pytest.fixture(scope="module")
def dec():
    ids = random_ids(6, seed=4)
    return rw.decompose(build("llama"), torch.cat([ids, ids[:5]]))


def cell_center(page, t: int, s: int) -> tuple[float, float]:
    """Page coordinates of cell (destination t, source s) of the opened pattern."""
    canvas = page.locator(f"{ROOT} canvas.rw-att-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    label_w, hdr, ppt = (float(x) for x in page.get_attribute(f"{ROOT} canvas.rw-att-canvas", "data-rw-geometry").split(","))
    return box["x"] + label_w + (s + 0.5) * ppt, box["y"] + hdr + (t + 0.5) * ppt


def tooltip(page) -> str:
    return page.locator(f"{ROOT} .rw-tooltip").inner_text()


def isolated(token: str) -> str:
    """A token inside a longer text of the view: its display form between FSI and PDI (tokens.js tokenLabel)."""
    return f"\u2068{display_token(token)}\u2069"


def test_thumbnails_open_a_head_hover_and_rows_offline(tmp_path, open_offline, dec):
    w = rw.AttentionPatterns(dec, layer=1)
    H = dec.n_heads
    pg = open_offline(rw.export_html(w, tmp_path / "patterns.html"), viewport={"width": 1200, "height": 1000})
    page = pg.page
    page.wait_for_selector(f"{ROOT} .rw-att-thumb")
    assert page.locator(f"{ROOT} .rw-att-thumb").count() == H
    assert page.get_attribute(ROOT, "data-rw-layer") == "1"
    assert page.locator(f"{ROOT} canvas.rw-att-canvas").count() == 0  # nothing opened yet
    # open head 2
    page.locator(f"{ROOT} .rw-att-thumb[data-rw-head='2']").click()
    assert page.get_attribute(ROOT, "data-rw-head") == "2"
    assert page.get_attribute(f"{ROOT} .rw-att-thumb[data-rw-head='2']", "aria-pressed") == "true"
    page.wait_for_selector(f"{ROOT} canvas.rw-att-canvas")
    # hover (destination 7, source 3): the view's own tooltip, with the weight the pattern holds
    x, y = cell_center(page, 7, 3)
    page.mouse.move(x, y)
    text = tooltip(page)
    alpha = float(w.scores.pattern(1).dense()[2, 7, 3])
    assert "L1H2" in text and f"7 {isolated(dec.tokens[7])}" in text and f"3 {isolated(dec.tokens[3])}" in text
    assert f"{alpha:.4f}".replace("-", "−") in text
    assert page.locator(f"{ROOT} canvas.rw-att-canvas").get_attribute("title") is None  # not the browser's
    x, y = cell_center(page, 2, 6)  # above the diagonal: masked
    page.mouse.move(x, y)
    assert "causal mask" in tooltip(page)
    # click a row: it becomes the selected destination
    x, y = cell_center(page, 5, 1)
    page.mouse.click(x, y)
    assert page.get_attribute(ROOT, "data-rw-position") == "5"
    assert page.locator(f"{ROOT} [data-rw=prompt-strip] [aria-current=true]").get_attribute("data-rw-pos") == "5"
    page.locator(f"{ROOT} canvas.rw-att-canvas").press("ArrowDown")
    assert page.get_attribute(ROOT, "data-rw-position") == "6"
    # the prompt strip picks the row too
    page.locator(f"{ROOT} [data-rw=prompt-strip] [data-rw-pos='2']").click()
    assert page.get_attribute(ROOT, "data-rw-position") == "2"
    # every layer is in the snapshot
    page.select_option(f"{ROOT} select.rw-att-layer", "0")
    assert page.get_attribute(ROOT, "data-rw-layer") == "0"
    assert page.locator(f"{ROOT} .rw-att-thumb").count() == H
    assert "every weight of the causal triangle" in page.inner_text(f"{ROOT} .rw-att-note")
    assert page.get_attribute(ROOT, "data-rw-sparse") == "false"
    pg.check_clean()


def test_the_head_score_heatmap_opens_heads_and_sorts(tmp_path, open_offline, dec):
    w = rw.AttentionPatterns(dec, layer=0)
    L, H = dec.n_layers, dec.n_heads
    pg = open_offline(rw.export_html(w, tmp_path / "scores.html"), viewport={"width": 1200, "height": 1000})
    page = pg.page
    cells = page.locator(f"{ROOT} .rw-att-score")
    cells.first.wait_for()
    assert cells.count() == L * H
    page.locator(f"{ROOT} .rw-att-score[data-rw-cell='1,3']").click()
    assert page.get_attribute(ROOT, "data-rw-layer") == "1" and page.get_attribute(ROOT, "data-rw-head") == "3"
    page.wait_for_selector(f"{ROOT} canvas.rw-att-canvas")
    page.locator(f"{ROOT} .rw-att-score[data-rw-cell='0,1']").hover()
    text = tooltip(page)
    sink = w.scores.scores["sink"][0, 1]
    assert "L0H1" in text and f"{float(sink):.2f}" in text
    # sort each layer's heads by the previous-token score
    page.select_option(f"{ROOT} select.rw-att-kind", "previous_token")
    page.locator(f"{ROOT} .rw-att-sort input").check()
    order = page.evaluate(f"[...document.querySelectorAll('{ROOT} .rw-att-score')].slice(0, {H}).map(e => e.dataset.rwCell)")
    expected = sorted(range(H), key=lambda h: -float(w.scores.scores["previous_token"][0, h]))
    assert order == [f"0,{h}" for h in expected]
    assert "sorted by score" in page.inner_text(ROOT)
    pg.check_clean()


def test_a_tight_snapshot_sparsifies_and_says_so(tmp_path, open_offline, dec):
    w = rw.AttentionPatterns(dec, layer=1, head=0)
    # the exporter keeps a margin for the page around the data: step down to where dense no longer fits
    start = len(rw.export_html(w).encode()) + 16_000
    budget = next(b for b in range(start, start - 20_000, -50)
                  if "sparsified to" in rw.export_html(w, budget_bytes=b))
    path = rw.export_html(w, tmp_path / "tight.html", budget_bytes=budget)
    assert path.stat().st_size <= budget
    pg = open_offline(path, viewport={"width": 1200, "height": 1000})
    page = pg.page
    page.wait_for_selector(f"{ROOT} canvas.rw-att-canvas")
    assert page.get_attribute(ROOT, "data-rw-sparse") == "true"
    note = page.inner_text(f"{ROOT} .rw-att-note")
    assert "sparsified" in note and "snapshot:" in note
    assert "sparsified to" in page.inner_text("[data-rw-left-out]")
    x, y = cell_center(page, 10, 10)
    page.mouse.move(x, y)
    assert "row keeps" in tooltip(page)
    pg.check_clean()


def test_token_text_is_text(tmp_path, open_offline):
    evil = "<img src=x onerror=alert(1)>"
    model = build("gpt2")

    class Tok:
        def decode(self, ids):
            return evil if ids[0] % 2 else f"t{ids[0]}"

    dec = rw.decompose(model, random_ids(8), tokenizer=Tok())
    w = rw.AttentionPatterns(dec, head=0)
    pg = open_offline(rw.export_html(w, tmp_path / "xss.html"), viewport={"width": 1200, "height": 1000})
    page = pg.page
    page.wait_for_selector(f"{ROOT} canvas.rw-att-canvas")
    assert page.locator(f"{ROOT} img").count() == 0
    assert evil in page.inner_text(f"{ROOT} [data-rw=prompt-strip]")
    pg.check_clean()


def test_selection_linked_to_a_grid_and_layers_from_the_kernel(tmp_path, browser, dec):
    grid, pat = rw.StreamGrid(dec), rw.AttentionPatterns(dec, layer=1, head=1)
    rw.link(grid, pat)
    page, errors = live_page(browser, tmp_path / "linked.html", [grid, pat])
    # a click in the grid moves the destination row (through the kernel)
    page.locator("[data-rw=stream-grid] [data-rw-cell='2,4']").click()
    _until(page, lambda: grid.selected == (2, 4) and pat.position == 4)
    push_state(page, 1, pat, ["position"])
    assert page.get_attribute(ROOT, "data-rw-position") == "4"
    # a row clicked in the pattern moves the grid's selection
    x, y = cell_center(page, 8, 0)
    page.mouse.click(x, y)
    _until(page, lambda: pat.position == 8 and grid.selected == (2, 8))
    push_state(page, 0, grid, ["selected"])
    assert page.get_attribute("[data-rw=stream-grid]", "data-rw-selected") == "2,8"
    # another layer: the kernel computes its patterns
    page.select_option(f"{ROOT} select.rw-att-layer", "0")
    _until(page, lambda: pat.layer == 0 and "0" in pat._patterns)
    push_state(page, 1, pat, ["_patterns"])
    assert page.get_attribute(ROOT, "data-rw-layer") == "0"
    assert page.locator(f"{ROOT} .rw-att-thumb").count() == dec.n_heads
    # Python -> browser
    pat.head = 3
    push_state(page, 1, pat, ["head"])
    assert page.get_attribute(ROOT, "data-rw-head") == "3"
    assert errors == []
    page.close()
