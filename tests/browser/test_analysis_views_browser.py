"""The analysis views in exported offline snapshots (rw.export_html), opened over file:// in
headless Chromium: the slider, the MLP neuron breakdown and the head x source heatmap work with
no kernel, no console errors and no network request."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

import resid_widgets as rw  # noqa: E402
from models_zoo import build, random_ids  # noqa: E402

from .harness import ensure_bundle, have_chromium  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]


@pytest.fixture(scope="module", autouse=True)
def bundle():
    ensure_bundle()


@pytest.fixture(scope="module")
def dec():
    return rw.decompose(build("llama"), random_ids(11))


@pytest.fixture
def offline(open_offline):
    return lambda path: open_offline(path, viewport={"width": 1200, "height": 1000})


def bar_tokens(page, root):
    return page.evaluate(f"[...document.querySelectorAll('{root} .rw-budget-tok')].map(e => e.textContent)")


def test_block_budget_slider_offline(tmp_path, offline, dec):
    w = rw.BlockBudget(dec, k=6)
    L = dec.n_layers
    path = rw.export_html(w, tmp_path / "budget.html")
    pg = offline(path)
    page = pg.page
    root = "[data-rw=block-budget]"
    page.wait_for_selector(f"{root} .rw-budget-row")
    assert page.get_attribute(root, "data-rw-budget") == str(L)
    assert page.locator(f"{root} .rw-budget-row").count() == 6
    full = bar_tokens(page, root)
    assert page.locator(f"{root} [data-rw-target]").count() == 1  # the target = top prediction at k=L
    # slide to k = 0: the direct path
    page.fill(f"{root} input[type=range]", "0")
    page.wait_for_function(f"document.querySelector('{root}').dataset.rwBudget === '0'")
    floor = bar_tokens(page, root)
    ids = rw.views.payload.decode_payload(w._data["top_ids"])
    vocab = w._data["vocab"]
    from resid_widgets.views.payload import display_token

    assert floor == [display_token(vocab[str(int(i))]) for i in ids[0]]
    assert full == [display_token(vocab[str(int(i))]) for i in ids[L]]
    assert "direct path" in page.inner_text(root)
    # the p(target) strip also picks k
    page.locator(f"{root} .rw-budget-pstrip > div").nth(1).click()
    assert page.get_attribute(root, "data-rw-budget") == "1"
    # drop-one strip, one cell per block
    assert page.locator(f"{root} .rw-budget-drop > div").count() == L
    pg.check_clean()


def test_block_budget_token_text_is_text(tmp_path, offline, dec):
    w = rw.BlockBudget(dec, k=3)
    tid = int(rw.views.payload.decode_payload(w._data["top_ids"])[0, 0])
    data = dict(w._data)
    data["vocab"] = dict(data["vocab"], **{str(tid): "<img src=x onerror=alert(1)>"})
    w._data = data
    path = rw.export_html(w, tmp_path / "xss.html")
    pg = offline(path)
    page = pg.page
    page.fill("[data-rw=block-budget] input[type=range]", "0")
    assert page.locator("[data-rw=block-budget] img").count() == 0
    assert "<img src=x onerror=alert(1)>" in bar_tokens(page, "[data-rw=block-budget]")
    pg.check_clean()


def test_mlp_bar_expands_into_top_neurons_offline(tmp_path, offline, dec):
    w = rw.ContributionBars(dec)
    path = rw.export_html(w, tmp_path / "bars.html")
    pg = offline(path)
    page = pg.page
    root = "[data-rw=contribution-bars]"
    page.wait_for_selector(f"{root} rect.rw-mlp-bar")
    assert page.locator(f"{root} .rw-neuron-name").count() == 0
    page.locator(f"{root} rect.rw-mlp-bar[data-rw-layer='1']").click()
    names = page.locator(f"{root} .rw-neuron-name").all_text_contents()
    assert len(names) == 8 and all(n.startswith("L1N") for n in names)
    assert page.get_attribute(root, "data-rw-open-mlp") == "1"
    # another precomputed target: its own neurons (embedded for every precomputed target)
    page.locator(f"{root} .rw-chip").nth(1).click()
    names2 = page.locator(f"{root} .rw-neuron-name").all_text_contents()
    assert len(names2) == 8
    # a position that was not precomputed: says it needs the kernel
    page.locator(f"{root} .rw-prompt .rw-tok").nth(2).click()
    page.wait_for_function(f"document.querySelector('{root} .rw-neurons').textContent.includes('needs the kernel')")
    # the same bar closes the breakdown; the bars are still there
    page.locator(f"{root} rect.rw-mlp-bar[data-rw-layer='1']").click()
    assert page.locator(f"{root} .rw-neurons").inner_text() == ""
    assert page.locator(f"{root} .rw-barrow").count() > 0
    pg.check_clean()


def test_mlp_breakdown_asks_the_kernel_live(tmp_path, browser, dec):
    from .harness import attach_kernel, write_page

    w = rw.ContributionBars(dec)
    path = write_page(tmp_path / "live.html", [w])
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    attach_kernel(page, [w])
    page.goto(path.as_uri())
    page.wait_for_function("window.rwReady === true")
    root = "[data-rw=contribution-bars]"
    page.locator(f"{root} .rw-prompt .rw-tok").nth(2).click()
    page.locator(f"{root} rect.rw-mlp-bar[data-rw-layer='0']").click()
    page.wait_for_function(f"document.querySelectorAll('{root} .rw-neuron-name').length === 8")
    assert f"{w._targets[0]['id']}:2" in w._neurons
    assert errors == []
    page.close()


def test_attention_sources_layer_selector_offline(tmp_path, offline, dec):
    w = rw.AttentionSources(dec, layer=0)
    H, S = w._data["n_heads"], len(w._data["tokens"])
    path = rw.export_html(w, tmp_path / "sources.html")
    pg = offline(path)
    page = pg.page
    root = "[data-rw=attention-sources]"
    page.wait_for_selector(f"{root} .rw-src-cell")
    assert page.locator(f"{root} .rw-src-cell").count() == H * S
    from resid_widgets.views.payload import display_token

    assert page.locator(f"{root} .rw-src-tok").all_text_contents() == [display_token(x) for x in w._data["tokens"]]
    before = page.evaluate(f"[...document.querySelectorAll('{root} .rw-src-cell')].map(e => e.getAttribute('aria-label'))")
    page.select_option(f"{root} select", "1")
    page.wait_for_function(f"document.querySelector('{root}').dataset.rwLayer === '1'")
    after = page.evaluate(f"[...document.querySelectorAll('{root} .rw-src-cell')].map(e => e.getAttribute('aria-label'))")
    assert after != before and after[0].startswith("L1H0")
    page.locator(f"{root} .rw-src-layers > div").nth(0).click()
    assert page.get_attribute(root, "data-rw-layer") == "0"
    pg.check_clean()


def live_page(browser, path, widgets):
    """(page, console errors): ``widgets`` on one page, bridged to Python as a kernel would be."""
    from .harness import attach_kernel, write_page

    write_page(path, widgets)
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    attach_kernel(page, widgets)
    page.goto(path.as_uri())
    page.wait_for_function("window.rwReady === true")
    return page, errors


def test_budget_and_layer_traits_sync_both_ways(tmp_path, browser, dec):
    from .harness import push_state

    bb, src = rw.BlockBudget(dec, k=4), rw.AttentionSources(dec, layer=0)
    page, errors = live_page(browser, tmp_path / "sync.html", [bb, src])
    # Python -> browser
    bb.budget = 1
    push_state(page, 0, bb, ["budget"])
    assert page.get_attribute("[data-rw=block-budget]", "data-rw-budget") == "1"
    src.layer = 1
    push_state(page, 1, src, ["layer"])
    assert page.get_attribute("[data-rw=attention-sources]", "data-rw-layer") == "1"
    # browser -> Python
    page.fill("[data-rw=block-budget] input[type=range]", "0")
    page.wait_for_function("document.querySelector('[data-rw=block-budget]').dataset.rwBudget === '0'")
    _until(page, lambda: bb.budget == 0)
    page.select_option("[data-rw=attention-sources] select", "0")
    _until(page, lambda: src.layer == 0)
    assert errors == []
    page.close()


def _until(page, cond, tries=100):
    for _ in range(tries):
        if cond():
            return
        page.wait_for_timeout(20)
    assert cond()


def test_clicking_a_token_recomputes_at_that_position_live(tmp_path, browser, dec):
    from .harness import push_state

    T = len(dec.tokens)
    bb, src = rw.BlockBudget(dec, k=4, drop=False), rw.AttentionSources(dec, layer=0)
    page, errors = live_page(browser, tmp_path / "positions.html", [bb, src])
    for idx, (w, root) in enumerate(((bb, "[data-rw=block-budget]"), (src, "[data-rw=attention-sources]"))):
        strip = f"{root} [data-rw=prompt-strip]"
        assert page.get_attribute(root, "data-rw-position") == str(T - 1)
        assert page.locator(f"{strip} .rw-tok").count() == T
        page.locator(f"{strip} [data-rw-pos='4']").click()
        _until(page, lambda: w.position == 4 and w._data["position"] == 4)
        push_state(page, idx, w, ["_data", "position"])  # the recomputed view, as the comm sends it
        page.wait_for_function(f"document.querySelector('{root}').dataset.rwPosition === '4'")
        assert page.locator(f"{strip} [aria-current=true]").get_attribute("data-rw-pos") == "4"
    assert page.locator("[data-rw=attention-sources] .rw-src-tok").count() == 5  # sources 0..4
    assert errors == []
    page.close()


def test_a_snapshot_holds_its_one_position(tmp_path, offline, dec):
    T = len(dec.tokens)
    w = rw.BlockBudget(dec, k=4, drop=False, position=5)
    pg = offline(rw.export_html(w, tmp_path / "budget_position.html"))
    page = pg.page
    root = "[data-rw=block-budget]"
    chips = page.locator(f"{root} [data-rw=prompt-strip] .rw-tok")
    chips.first.wait_for()
    assert chips.count() == T
    assert page.locator(f"{root} [data-rw=prompt-strip] [aria-disabled=true]").count() == T - 1
    assert page.locator(f"{root} [data-rw=prompt-strip] [aria-current=true]").get_attribute("data-rw-pos") == "5"
    chips.nth(2).click()
    page.wait_for_timeout(100)
    assert page.get_attribute(root, "data-rw-position") == "5"
    assert "snapshot holds position 5" in chips.nth(2).get_attribute("title")
    pg.check_clean()
