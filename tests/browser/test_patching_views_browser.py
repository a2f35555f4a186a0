"""rw.PatchingGrid and rw.Compare in headless Chromium: hover with the views' own tooltip (raw and
normalised values), selection (click, arrow keys, Python -> browser), the diverging scale, one
selection shared by the two stream grids, and the offline snapshots."""
from __future__ import annotations

import pytest
import torch

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


def hover_cell(page, root: str, r: int, k: int, view: str | None = None) -> str:
    """Hover cell (r, k) of the grid under ``root``; the text of the tooltip of ``view`` (default: root)."""
    cell = page.locator(f"{root} [data-rw-cell='{r},{k}']")
    cell.scroll_into_view_if_needed()
    cell.hover()
    return page.locator(f"{view or root} .rw-tooltip").first.inner_text()


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


CMP = "[data-rw=compare]"


@pytest.fixture(scope="module")
def pair(model, prompts):
    return rw.decompose(model, prompts[0]), rw.decompose(model, prompts[1])


def selected_of(page, side: str) -> str:
    return page.get_attribute(f"{CMP} [data-rw-side={side}]", "data-rw-selected")


def test_compare_grids_share_one_selection_bars_and_patching_live(tmp_path, browser, pair, res):
    clean, corrupt = pair
    cmp = rw.Compare(clean, corrupt, metric=res.metric, patching=res)
    C, T = len(clean.labels), len(clean.tokens)
    page, errors = live_page(browser, tmp_path / "compare.html", [cmp])
    assert page.locator(f"{CMP} [data-rw=stream-grid]").count() == 2
    assert selected_of(page, "clean") == selected_of(page, "corrupt") == f"{C - 1},{T - 1}"
    # a click in the clean grid moves both grids and Python
    page.locator(f"{CMP} [data-rw-side=clean] [data-rw-cell='2,3']").click()
    _until(page, lambda: cmp.selected == (2, 3))
    assert selected_of(page, "corrupt") == "2,3"
    # ... and in the corrupt grid
    page.locator(f"{CMP} [data-rw-side=corrupt] [data-rw-cell='4,1']").click()
    _until(page, lambda: cmp.selected == (4, 1))
    assert selected_of(page, "clean") == "4,1"
    # the patching grid's column followed the position
    assert page.get_attribute(f"{CMP} {GRID}", "data-rw-selected").endswith(",1")
    # Python -> browser
    cmp.selected = (1, 5)
    push_state(page, 0, cmp, ["selected"])
    assert selected_of(page, "clean") == selected_of(page, "corrupt") == "1,5"
    # paired bars: one row per component; hover shows both shares and their difference
    shares = cmp.contributions()
    assert page.locator(f"{CMP} .rw-pair-row").count() == C
    row = page.locator(f"{CMP} .rw-pair-row[data-rw-row='3']")
    row.hover()
    text = page.locator(f"{CMP} .rw-tooltip").first.inner_text()
    assert clean.labels[3] in text
    for key in ("clean", "corrupt", "difference"):
        assert num(float(shares[key][3])).lstrip("−") in text
    row.click()
    _until(page, lambda: cmp.selected == (3, T - 1))
    assert page.get_attribute(f"{CMP} .rw-pair-row[data-rw-row='3']", "aria-current") == "true"
    # a click in the patching grid moves the stream grids' position
    page.locator(f"{CMP} {GRID} [data-rw-cell='1,2']").click()
    _until(page, lambda: cmp.patch_selected == (1, 2) and cmp.selected == (3, 2))
    assert selected_of(page, "clean") == "3,2"
    assert errors == []
    page.close()


def test_compare_snapshot_works_offline(tmp_path, open_offline, pair, res):
    clean, corrupt = pair
    cmp = rw.Compare(clean, corrupt, metric=res.metric, patching=res, selected=(2, 4))
    pg = open_offline(rw.export_html(cmp, tmp_path / "compare.html"))
    page = pg.page
    page.wait_for_selector(f"{CMP} {GRID} [data-rw-cell]")
    assert selected_of(page, "clean") == selected_of(page, "corrupt") == "2,4"
    page.locator(f"{CMP} [data-rw-side=corrupt] [data-rw-cell='4,6']").click()
    assert selected_of(page, "clean") == "4,6"
    assert page.get_attribute(f"{CMP} {GRID}", "data-rw-selected").endswith(",6")
    text = hover_cell(page, f"{CMP} {GRID}", 0, 2, view=CMP)
    assert num(float(res.raw[0, 2])) in text
    page.locator(f"{CMP} .rw-pair-row[data-rw-row='1']").click()
    assert page.get_attribute(f"{CMP} .rw-pair-row[data-rw-row='1']", "aria-current") == "true"
    pg.check_clean()


DASH = "[data-rw=dashboard]"
PANEL = "[data-rw=edit-panel]"
DATA = ["_meta", "_arrays", "_targets", "_vocab", "_original", "edits", "_edit_names", "_edit_error", "_panes",
        "_neurons"]


def test_dashboard_edit_mode_zero_patch_and_undo_live(tmp_path, browser, pair):
    clean, corrupt = pair
    dash = rw.Dashboard(corrupt, source=clean)
    C, T = len(corrupt.labels), len(corrupt.tokens)
    page, errors = live_page(browser, tmp_path / "edit.html", [dash])
    assert page.get_attribute(PANEL, "data-rw-edits") == "0"
    # pick mlp.0 (grid row 2) and zero it: the kernel re-runs the prompt with the edit
    page.locator(f"{DASH} [data-rw=stream-grid] [data-rw-cell='2,{T - 1}']").click()
    assert page.get_attribute(PANEL, "data-rw-component") == "mlp.0"
    page.locator(f"{PANEL} [data-rw-edit=zero]").click()
    _until(page, lambda: dash.edited is not None)
    assert dash.edits == [{"kind": "zero", "component": "mlp.0", "head": None, "neuron": None, "positions": None}]
    assert torch.equal(dash.edited.deltas[2], torch.zeros_like(dash.edited.deltas[2]))
    assert dash.edited.edits == (rw.Zero("mlp.0"),)
    push_state(page, 0, dash, DATA)  # the edited run arrives as the comm sends it
    page.wait_for_selector(f"{PANEL}[data-rw-edits='1']")
    assert "zero mlp.0" in page.locator(f"{PANEL} [data-rw=edit-list]").inner_text()
    # the bars draw the original run as ghost outlines, and say so on hover
    assert page.locator(f"{DASH} svg .rw-ghost").count() > 0
    # a patch of one head from the second prompt at the selected position
    page.locator(f"{DASH} [data-rw=stream-grid] [data-rw-cell='3,{T - 1}']").click()
    page.locator(f"{PANEL} select[aria-label=head]").select_option("1")
    page.locator(f"{PANEL} [data-rw-edit=patch-here]").click()
    _until(page, lambda: len(dash.edits) == 2)
    assert dash.edits[1] == {"kind": "patch", "component": "attn.1", "head": 1, "neuron": None, "positions": [T - 1]}
    reference = corrupt.edit(rw.Zero("mlp.0"), rw.Patch("attn.1", source=clean, head=1, positions=[-1]))
    torch.testing.assert_close(dash.edited.logits, reference.logits)
    push_state(page, 0, dash, DATA)
    page.wait_for_selector(f"{PANEL}[data-rw-edits='2']")
    # undo removes the last edit; removing the other goes back to the original run
    page.locator(f"{PANEL} [data-rw-edit=undo]").click()
    _until(page, lambda: len(dash.edits) == 1)
    torch.testing.assert_close(dash.edited.logits, corrupt.edit(rw.Zero("mlp.0")).logits)
    push_state(page, 0, dash, DATA)
    page.wait_for_selector(f"{PANEL}[data-rw-edits='1']")
    page.locator(f"{PANEL} [data-rw-edit-index='0']").click()
    _until(page, lambda: dash.edits == [] and dash.edited is None)
    push_state(page, 0, dash, DATA)
    page.wait_for_selector(f"{PANEL}[data-rw-edits='0']")
    assert page.locator(f"{DASH} svg .rw-ghost").count() == 0
    # Python -> view
    dash.edits = [rw.Zero("attn.0", head=2)]
    push_state(page, 0, dash, DATA)
    page.wait_for_selector(f"{PANEL}[data-rw-edits='1']")
    assert "zero attn.0 head 2" in page.locator(f"{PANEL} [data-rw=edit-list]").inner_text()
    assert C == len(dash._meta["labels"])
    assert errors == []
    page.close()


def test_dashboard_snapshot_zero_ablation_works_offline(tmp_path, open_offline, pair):
    clean, corrupt = pair
    dash = rw.Dashboard(clean)
    T = len(clean.tokens)
    pg = open_offline(rw.export_html(dash, tmp_path / "edit.html"))
    page = pg.page
    page.wait_for_selector(PANEL)
    # zeroing a whole layer shows its precomputed effect
    page.locator(f"{DASH} [data-rw=stream-grid] [data-rw-cell='3,{T - 1}']").click()
    page.locator(f"{PANEL} [data-rw-edit=zero]").click()
    assert page.get_attribute(PANEL, "data-rw-whatif") == "attn.1"
    tid = dash._targets[0]["id"]
    zeroed = clean.edit(rw.Zero("attn.1"))
    text = page.locator(f"{PANEL} .rw-edit-whatif").inner_text()
    assert num(float(zeroed.logits[-1, tid])) in text
    assert page.locator(f"{PANEL} .rw-pair-row").count() == len(clean.labels)
    # any other edit says it needs the kernel
    page.locator(f"{PANEL} [data-rw-edit=zero-here]").click()
    assert "needs the kernel" in page.locator(PANEL).inner_text()
    pg.check_clean()
