"""What the views mean, in Chromium: the neuron table's promoted / suppressed tokens, log-prob's
first layer left out of the scale, target hints (did you mean, multi-token pieces), and the
Dashboard's bars following the selected position's own top token until a target is pinned."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

from playwright.sync_api import expect  # noqa: E402

from .harness import have_chromium, push_state  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

from resid_widgets.views.payload import decode_payload, display_token  # noqa: E402


def _until(page, check, timeout=10.0):
    """Wait for a Python-side value the page sets through the mock comm (its calls into Python run
    while playwright waits, so wait with the page, not with time.sleep)."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "the page did not set the value in time"
        page.wait_for_timeout(50)


def _live_bars(open_page, widget):
    """(page wrapper, page, the bars' root) of ``widget`` shown with the mock kernel."""
    pg = open_page([widget], kernel=True)
    return pg, pg.page, pg.page.locator('[data-rw="contribution-bars"]')


def _type_target(view, text):
    """Type ``text`` into a view's target field and press Enter."""
    field = view.locator("input[type=text]")
    field.fill(text)
    field.press("Enter")


def test_neuron_table_lists_what_each_neuron_promotes_and_suppresses(open_page, rw, llama_dec):
    bars = rw.ContributionBars(llama_dec)
    pg = open_page([bars], kernel=True)
    page = pg.page
    page.locator('[data-rw="contribution-bars"] rect.rw-mlp-bar[data-rw-layer="1"]').click()
    table = page.locator(".rw-neuron-table")
    table.wait_for(timeout=10000)
    entry = next(iter(bars._neurons.values()))
    up, down = table.locator('[data-rw-part="promotes"]'), table.locator('[data-rw-part="suppresses"]')
    expect(up).to_have_count(len(entry["bs_top"][1]))
    expect(down).to_have_count(len(entry["bs_bottom"][1]))
    for row in range(2):
        assert up.nth(row).locator("bdi").all_text_contents() == [display_token(x) for x in entry["bs_top"][1][row]]
        assert down.nth(row).locator("bdi").all_text_contents() == [display_token(x) for x in entry["bs_bottom"][1][row]]
        assert up.nth(row).inner_text().startswith("↑") and down.nth(row).inner_text().startswith("↓")
    expect(page.locator('[data-rw="contribution-bars"] .rw-neurons')).to_contain_text("promotes / suppresses")
    pg.clean()


def test_logprob_first_layer_is_left_out_of_the_scale_with_a_note(open_page, rw, paris):
    bars = rw.ContributionBars(paris, method="logprob")
    pg = open_page([bars])
    page = pg.page
    view = page.locator('[data-rw="contribution-bars"]')
    start = decode_payload(bars._target_entry()["logp"])[0, -1]
    note = view.locator('[data-rw-part="embed-note"]')
    expect(note).to_contain_text("after the embedding (uniform-ish start)")
    expect(note).to_contain_text(f"log p = {start:.1f}".replace("-", "−"))
    broken = view.locator('g[data-rw-unscaled="true"]')
    expect(broken).to_have_count(1)
    lift = float(bars.values()[1:3].sum())
    assert f"{lift:+.2f}".replace("-", "−").lstrip("+") in broken.text_content()  # its value, printed
    assert broken.locator("path.rw-break").count() == 1
    # the box brings it back into the scale
    box = view.locator('[data-rw-part="scale-without-embedding"] input')
    assert box.is_checked()
    box.uncheck()
    expect(view.locator('g[data-rw-unscaled="true"]')).to_have_count(0)
    expect(note).not_to_contain_text("left out of the scale")
    # DLA has no such row
    view.locator('[data-rw-method="dla"]').click()
    expect(view.locator('[data-rw-part="scale-without-embedding"]')).to_have_count(0)
    pg.clean()


def test_did_you_mean_picks_the_spaced_token(open_page, rw, paris):
    bars = rw.ContributionBars(paris)
    bars.target = "Rome"  # kept, and the view offers " Rome"
    pg = open_page([bars], kernel=True)
    page = pg.page
    suggestion = page.locator('[data-rw-part="target-suggestion"]')
    expect(suggestion).to_have_text("·Rome")
    suggestion.click()
    _until(page, lambda: bars.target == " Rome")
    expect(page.locator('[data-rw="contribution-bars"] .rw-title').first).to_contain_text("·Rome")
    push_state(page, 0, bars, ["target_hint"])  # as the comm would: the hint is gone
    expect(suggestion).to_have_count(0)
    pg.clean()


def test_a_multi_token_target_explains_itself_and_clears_when_python_sets_a_target(open_page, rw, paris):
    bars = rw.ContributionBars(paris)
    pg, page, view = _live_bars(open_page, bars)
    _type_target(view, "New York")
    status = page.locator('[data-rw-part="target-status"]')
    expect(status).to_contain_text("2 tokens ('New' + ' York')")
    assert "TargetError" not in status.inner_text()
    pieces = page.locator('[data-rw-part="target-piece"]')
    expect(pieces).to_have_text(["New", "·York"])
    bars.target = " Rome"  # from Python
    push_state(page, 0, bars, ["target", "target_hint"])
    expect(status).to_have_text("")
    expect(pieces).to_have_count(0)
    # a piece is one click away
    _type_target(view, "New York")
    pieces.nth(1).click()
    _until(page, lambda: bars.target == " York")
    pg.clean()


def test_dashboard_bars_follow_the_selected_position_until_a_target_is_typed(open_page, rw, paris):
    dash = rw.Dashboard(paris)
    pg, page, bars = _live_bars(open_page, dash)
    title = bars.locator(".rw-title").first
    mode = bars.locator('[data-rw-part="target-mode"]')
    top = [display_token(paris.token_text(paris.top_prediction(p))) for p in range(paris.n_tokens)]
    expect(title).to_contain_text(f"Contributions to {top[4]} at position 4")
    expect(mode).to_have_text("— position 4's top token (auto)")
    page.locator('[data-rw="stream-grid"] [data-rw-cell="60,2"]').click()
    expect(title).to_contain_text(f"Contributions to {top[2]} at position 2")
    expect(mode).to_have_text("— position 2's top token (auto)")
    _until(page, lambda: dash.target == paris.token_text(paris.top_prediction(2)))
    assert not dash.target_pinned
    # typing a target pins it: other positions keep it
    _type_target(bars, "·Rome")
    expect(mode).to_contain_text("pinned target")
    expect(title).to_contain_text("Contributions to ·Rome at position 2")
    _until(page, lambda: dash.target == " Rome" and dash.target_pinned)
    page.locator('[data-rw="stream-grid"] [data-rw-cell="60,3"]').click()
    expect(title).to_contain_text("Contributions to ·Rome at position 3")
    # unpin: back to position 3's own top token
    mode.locator('[data-rw-part="unpin"]').click()
    expect(mode).to_have_text("— position 3's top token (auto)")
    expect(title).to_contain_text(f"Contributions to {top[3]} at position 3")
    _until(page, lambda: not dash.target_pinned and dash.target == paris.token_text(paris.top_prediction(3)))
    pg.clean()


def test_a_dashboard_snapshot_follows_the_selected_position_too(open_page, rw, paris):
    dash = rw.Dashboard(paris)
    pg = open_page([dash], extras=[dash._snapshot_state(2_000_000)])
    page = pg.page
    bars = page.locator('[data-rw="contribution-bars"]')
    top1 = display_token(paris.token_text(paris.top_prediction(1)))
    page.locator('[data-rw="stream-grid"] [data-rw-cell="60,1"]').click()
    expect(bars.locator(".rw-title").first).to_contain_text(f"Contributions to {top1} at position 1")
    expect(bars.locator('[data-rw-part="target-mode"]')).to_contain_text("(auto")
    # the bars are position 1's own numbers, from the embedded auto targets
    dla = paris.contributions(paris.top_prediction(1), 1, "dla")
    layer0 = float(dla[1] + dla[2])
    row = bars.locator("g.rw-barrow").nth(1)
    assert f"{abs(layer0):.2f}" in row.text_content()
    pg.clean()


def test_dark_theme_per_head_grid_has_no_white_cells(open_page, rw, llama_dec):
    bars = rw.ContributionBars(llama_dec, per_head=True)
    pg = open_page([bars], dark=True)
    page = pg.page
    canvas = page.locator('[data-rw="contribution-bars"] canvas[aria-label="per-head contributions"]')
    canvas.wait_for(timeout=5000)
    # each cell's corner (its fill; numbers are centred): near zero a cell is the dark background,
    # not a white glare (layers x (heads + rest) = 2 x 5 cells, 60 px of labels, 14 px of header)
    brightest = canvas.evaluate("""(c) => {
        const L = 2, H1 = 5, dpr = c.width / c.clientWidth;
        const cw = (c.clientWidth - 60) / H1, ch = (c.clientHeight - 14) / L;
        const g = c.getContext("2d");
        let best = 0;
        for (let l = 0; l < L; l++) for (let j = 0; j < H1; j++) {
          const [r, gr, b] = g.getImageData(Math.round((60 + j * cw + 1) * dpr), Math.round((14 + l * ch + 1) * dpr), 1, 1).data;
          best = Math.max(best, Math.min(r, gr, b));
        }
        return best; }""")
    assert brightest < 200, f"a cell is near white ({brightest}) on the dark theme"
    pg.clean()
