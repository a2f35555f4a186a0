"""The tuned-lens toggle (LogitLens, Dashboard) and the vector pane's SAE "features" mode in
headless Chromium: live through the kernel bridge, and in exported offline snapshots."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

import resid_widgets as rw  # noqa: E402
from lens_sae_fixtures import perturbed_lens, small_sae  # noqa: E402
from models_zoo import build, random_ids  # noqa: E402
from resid_widgets.views.payload import display_token  # noqa: E402

from .harness import ensure_bundle, have_chromium, push_state  # noqa: E402
from .test_analysis_views_browser import _until, live_page  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

LENS = "[data-rw=logit-lens]"
PANE = "[data-rw-part=pane]"


@pytest.fixture(scope="module", autouse=True)
def bundle():
    ensure_bundle()


@pytest.fixture(scope="module")
def dec():
    return rw.decompose(build("llama"), random_ids(7, seed=2))


@pytest.fixture(scope="module")
def lens(dec):
    return perturbed_lens(dec)


def chips(page, root=LENS) -> list[str]:
    """The top-k chips' tokens of the lens view's selected cell."""
    return [t.split(" ")[0] for t in page.locator(f"{root} [data-rw-part=topk] .rw-chip").all_inner_texts()]


def top_k_of(dec, lens, c, i, k=10) -> list[str]:
    result = dec.logit_lens(k, lens=lens)
    return [display_token(dec.token_text(int(x))) for x in result.top_ids[c, i]]


def test_the_toggle_switches_lenses_both_ways(tmp_path, browser, dec, lens):
    w = rw.LogitLens(dec, tuned_lens=lens)
    page, errors = live_page(browser, tmp_path / "lens.html", [w])
    c, i = w.selected
    assert page.get_attribute(LENS, "data-rw-lens") == "tuned"
    assert page.locator(f"{LENS} .rw-title").first.inner_text() == "Tuned lens"
    assert page.locator(f"{LENS} [data-rw-lens=tuned]").get_attribute("aria-pressed") == "true"
    kl_note = page.locator(f"{LENS} [data-rw-part=lens-kl]").inner_text()
    assert kl_note.startswith("mean KL to the output: logit ") and " · tuned " in kl_note
    assert chips(page) == top_k_of(dec, lens, c, i)
    before = page.locator(f"{LENS} canvas.rw-cells").screenshot()
    # browser -> Python
    page.locator(f"{LENS} button[data-rw-lens=logit]").click()
    _until(page, lambda: w.lens == "logit")
    assert page.get_attribute(LENS, "data-rw-lens") == "logit"
    assert page.locator(f"{LENS} .rw-title").first.inner_text() == "Logit lens"
    assert chips(page) == top_k_of(dec, None, c, i)
    assert page.locator(f"{LENS} canvas.rw-cells").screenshot() != before
    # Python -> browser
    w.lens = "tuned"
    push_state(page, 0, w, ["lens"])
    page.wait_for_function(f"document.querySelector('{LENS}').dataset.rwLens === 'tuned'")
    assert page.locator(f"{LENS} [data-rw-lens=tuned]").get_attribute("aria-pressed") == "true"
    assert chips(page) == top_k_of(dec, lens, c, i)
    assert errors == []
    page.close()


def test_no_toggle_without_a_tuned_lens(tmp_path, browser, dec):
    page, errors = live_page(browser, tmp_path / "plain.html", [rw.LogitLens(dec)])
    assert page.locator(f"{LENS} [data-rw-lens]").count() == 0
    assert page.get_attribute(LENS, "data-rw-lens") == "logit"
    assert errors == []
    page.close()


def test_features_pane_through_the_kernel(tmp_path, browser, dec):
    sae = small_sae(dec.d_model)
    w = rw.StreamGrid(dec, saes={"mlp.0": sae}, sae_k=4)
    page, errors = live_page(browser, tmp_path / "features.html", [w])
    c = dec.index("mlp.0")
    page.locator(f'[data-rw-cell="{c},3"]').first.click()
    page.locator(f"{PANE} button[data-rw-mode=features]").click()
    _until(page, lambda: w.pane_mode == "features")
    # position 3 was not computed up front: the pane asks the kernel, then shows the table
    page.wait_for_selector(f"{PANE} .rw-feature-table")
    expected = w.features("mlp.0", position=3)
    shown = page.locator(f"{PANE} .rw-feature-table [data-rw-feature]").all_inner_texts()
    assert shown == expected.labels
    assert page.locator(f"{PANE} .rw-feature-table [data-rw-feature=error]").count() == 1
    note = page.locator(f"{PANE} [data-rw-part=features-note]").inner_text()
    assert f"{expected.n_active} of 64 features active" in note and "sum exactly to the state" in note
    # a state without an SAE: a message and a chip that selects the one with it
    page.locator(f'[data-rw-cell="{c + 1},3"]').first.click()
    page.wait_for_selector(f"{PANE} .rw-msg-info")
    assert "no sparse autoencoder is attached to attn.1" in page.locator(f"{PANE} .rw-msg").inner_text()
    page.locator(f"{PANE} .rw-chip", has_text="mlp.0").click()
    _until(page, lambda: tuple(w.selected) == (c, 3))
    page.wait_for_selector(f"{PANE} .rw-feature-table")
    assert errors == []
    page.close()


def test_offline_dashboard_toggles_lenses_and_shows_features(tmp_path, open_offline, dec, lens):
    w = rw.Dashboard(dec, tuned_lens=lens, saes={"mlp.1": small_sae(dec.d_model)}, sae_k=3)
    c = dec.index("mlp.1")
    w.selected = (c, 2)
    w.pane_mode = "features"
    pg = open_offline(rw.export_html(w, tmp_path / "dash.html"))
    page = pg.page
    root = "[data-rw=dashboard]"
    # features of the selected (embedded) cell, without a kernel
    page.wait_for_selector(f"{root} {PANE} .rw-feature-table")
    expected = w.features("mlp.1", position=2)
    assert page.locator(f"{root} {PANE} [data-rw-feature]").all_inner_texts() == expected.labels
    # the lens toggle works offline
    lens_root = f"{root} {LENS}"
    assert page.get_attribute(lens_root, "data-rw-lens") == "tuned"
    assert chips(page, lens_root) == top_k_of(dec, lens, c, 2)
    page.locator(f"{lens_root} button[data-rw-lens=logit]").click()
    page.wait_for_function(f"document.querySelector('{lens_root}').dataset.rwLens === 'logit'")
    assert chips(page, lens_root) == top_k_of(dec, None, c, 2)
    pg.check_clean()
