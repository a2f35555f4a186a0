"""rw.PatchingGrid and rw.Compare in headless Chromium: hover with the views' own tooltip (raw and
normalised values), selection (click, arrow keys, Python -> browser), the diverging scale, one
selection shared by the two stream grids, and the offline snapshots."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

import resid_widgets as rw  # noqa: E402
from models_zoo import build, random_ids  # noqa: E402
from patching_fixtures import hook_resid_patching, logit_diff_ids  # noqa: E402

from .harness import ensure_bundle, have_chromium, push_state  # noqa: E402
from .test_analysis_views_browser import _until, live_page  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

GRID = "[data-rw=patching-grid]"


@pytest.fixture(scope="module", autouse=True)
def bundle():
    ensure_bundle()


@pytest.fixture(scope="module")
def model():
    return build("llama")


@pytest.fixture(scope="module")
def prompts():
    clean = random_ids(7, seed=1)
    corrupt = clean.clone()
    corrupt[2] = (corrupt[2] + 5) % 97
    return clean, corrupt


@pytest.fixture(scope="module")
def res(model, prompts):
    return hook_resid_patching(model, *prompts, logit_diff_ids(3, 4))


def num(x: float, digits: int = 3) -> str:
    """A number as the views print it (shared/format.js fmt: a real minus sign)."""
    a = abs(x)
    s = f"{x:.2e}" if a != 0 and (a >= 1e5 or a < 1e-3) else f"{x:.{1 if a >= 100 else digits}f}"
    return s.replace("-", "−")


def hover_cell(page, root: str, r: int, k: int) -> str:
    cell = page.locator(f"{root} [data-rw-cell='{r},{k}']")
    cell.scroll_into_view_if_needed()
    cell.hover()
    return page.locator(f"{root} .rw-tooltip").first.inner_text()


def test_patching_grid_hover_select_and_scale_live(tmp_path, browser, res):
    grid = rw.PatchingGrid(res)
    R, K = res.raw.shape
    page, errors = live_page(browser, tmp_path / "grid.html", [grid])
    assert page.locator(f"{GRID} [data-rw-cell]").count() == R * K
    # the strongest cell is selected at first
    assert page.get_attribute(GRID, "data-rw-selected") == "0,2"
    # hover: the view's own tooltip with the raw and the normalised value of that cell
    text = hover_cell(page, GRID, 1, 3)
    assert "resid_pre.1 @ 3" in text
    assert num(float(res.raw[1, 3])) in text and num(float(res.values[1, 3])) in text
    assert num(res.clean_value) in text and num(res.corrupt_value) in text
    # the scale is shown, symmetric around 0 and as wide as the largest |value|
    m = float(res.values.abs().max())
    legend = page.locator(f"{GRID} .rw-legend").first.inner_text()
    assert "normalised" in legend and num(-m) in legend and num(m) in legend
    # click -> Python
    page.locator(f"{GRID} [data-rw-cell='1,4']").click()
    _until(page, lambda: grid.selected == (1, 4))
    assert page.get_attribute(GRID, "data-rw-selected") == "1,4"
    page.keyboard.press("ArrowLeft")
    _until(page, lambda: grid.selected == (1, 3))
    # Python -> browser
    grid.selected = (0, 5)
    push_state(page, 0, grid, ["selected"])
    assert page.get_attribute(GRID, "data-rw-selected") == "0,5"
    # the raw metric scale
    page.locator(f"{GRID} [data-rw-scale=raw]").first.click()
    _until(page, lambda: grid.scale == "raw")
    assert page.get_attribute(GRID, "data-rw-scale") == "raw"
    m_raw = float(res.raw.abs().max())
    assert num(m_raw) in page.locator(f"{GRID} .rw-legend").first.inner_text()
    assert errors == []
    page.close()


def test_patching_grid_snapshot_works_offline(tmp_path, open_offline, res):
    grid = rw.PatchingGrid(res, selected=(1, 6))
    pg = open_offline(rw.export_html(grid, tmp_path / "patching.html"))
    page = pg.page
    page.wait_for_selector(f"{GRID} [data-rw-cell]")
    assert page.get_attribute(GRID, "data-rw-selected") == "1,6"
    text = hover_cell(page, GRID, 0, 2)
    assert num(float(res.raw[0, 2])) in text and num(float(res.values[0, 2])) in text
    page.locator(f"{GRID} [data-rw-cell='1,1']").click()
    assert page.get_attribute(GRID, "data-rw-selected") == "1,1"
    page.locator(f"{GRID} [data-rw-scale=raw]").first.click()
    assert page.get_attribute(GRID, "data-rw-scale") == "raw"
    pg.check_clean()
