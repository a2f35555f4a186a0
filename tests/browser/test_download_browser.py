"""The download button in every view's corner (issue 11, "Snapshots and figures"): PNG and SVG
files made in the browser alone, live and in an offline snapshot, the button left out of them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

from playwright.sync_api import expect  # noqa: E402

from .harness import have_chromium  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

from views_fixtures import view_decomposition  # noqa: E402

# the PNG decoded by the browser: its size and how many distinct colours its pixels have
PNG_FACTS = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const px = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const colours = new Set();
  for (let k = 0; k < px.length && colours.size < 50; k += 4 * 97) colours.add(px[k] << 16 | px[k + 1] << 8 | px[k + 2]);
  return { width: bitmap.width, height: bitmap.height, colours: colours.size };
}"""


def download(page, view, fmt: str, tmp_path: Path) -> Path:
    """Open the view's download menu, pick fmt, and return the saved file."""
    view.locator('[data-rw="download"] .rw-download-toggle').click()
    with page.expect_download() as info:
        view.locator(f'[data-rw="download"] [data-rw-format="{fmt}"]').click()
    d = info.value
    assert d.suggested_filename.startswith(view.get_attribute("data-rw") + "-")
    assert d.suggested_filename.endswith("." + fmt)
    path = tmp_path / d.suggested_filename
    d.save_as(path)
    return path


def check_files(page, view, tmp_path, token: str):
    box = view.bounding_box()
    png = download(page, view, "png", tmp_path)
    facts = page.evaluate(PNG_FACTS, base64.b64encode(png.read_bytes()).decode("ascii"))
    # drawn at devicePixelRatio 2, and not one flat colour (the canvases came through)
    assert facts["width"] == pytest.approx(2 * box["width"], abs=4)
    assert facts["height"] == pytest.approx(2 * box["height"], abs=4)
    assert facts["colours"] > 5, facts
    svg = download(page, view, "svg", tmp_path).read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "<foreignObject" in svg
    assert token in svg, "the selected token's text is in the SVG"
    assert "data:image/png;base64," in svg, "the canvases are embedded as images"
    assert 'data-rw="download"' not in svg, "the button is left out of the image"


@pytest.mark.parametrize("name", ["StreamGrid", "Dashboard"])
def test_png_and_svg_downloads_of_a_live_view(open_page, rw, tmp_path, name):
    dec = view_decomposition(T=8, n_layers=3)
    w = getattr(rw, name)(dec)
    pg = open_page([w])
    page = pg.page
    view = page.locator(f'[data-rw="{w._rw_view}"]').first
    assert page.locator('[data-rw="download"]').count() == 1
    check_files(page, view, tmp_path, dec.tokens[-1].strip())
    pg.clean()


def test_every_view_has_one_download_button(open_page, rw):
    dec = view_decomposition(T=6, n_layers=2)
    views = [rw.StreamGrid(dec), rw.LogitLens(dec), rw.ContributionBars(dec), rw.Dashboard(dec)]
    pg = open_page(views)
    for w in views:
        view = pg.page.locator(f'.rw-root[data-rw="{w._rw_view}"]')
        assert view.locator(':scope > [data-rw="download"]').count() == 1, w._rw_view
    # the menu closes with Escape, and with a click elsewhere
    menu = pg.page.locator('.rw-root[data-rw="stream-grid"] .rw-download-menu')
    toggle = pg.page.locator('.rw-root[data-rw="stream-grid"] .rw-download-toggle')
    toggle.click()
    expect(menu).to_be_visible()
    pg.page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    toggle.click()
    expect(menu).to_be_visible()
    pg.page.mouse.click(5, 900)
    expect(menu).to_be_hidden()
    pg.clean()


def test_downloads_from_an_offline_snapshot(tmp_path, open_offline, rw):
    import resid_widgets as rwp

    dec = view_decomposition(T=8, n_layers=3)
    path = rwp.export_html(rw.LogitLens(dec), tmp_path / "lens.html")
    pg = open_offline(path)
    view = pg.page.locator('[data-rw="logit-lens"]')
    check_files(pg.page, view, tmp_path, dec.tokens[-1].strip())
    pg.check_clean()


def test_a_failed_download_says_why(open_page, rw):
    dec = view_decomposition(T=6, n_layers=2)
    pg = open_page([rw.StreamGrid(dec)])
    page = pg.page
    # what a page that forbids it does: the PNG cannot be made
    page.evaluate("() => { HTMLCanvasElement.prototype.toBlob = () => { throw new Error('blocked here'); }; }")
    view = page.locator('[data-rw="stream-grid"]')
    view.locator('[data-rw="download"] .rw-download-toggle').click()
    view.locator('[data-rw="download"] [data-rw-format="png"]').click()
    msg = view.locator(".rw-download-msg")
    msg.wait_for(state="visible", timeout=5000)
    assert "blocked here" in msg.inner_text() and "figure()" in msg.inner_text()


def test_a_sandboxed_frame_gets_the_picture_to_save_by_hand(browser, tmp_path, rw):
    from .harness import write_page

    write_page(tmp_path / "inner.html", [rw.StreamGrid(view_decomposition(T=6, n_layers=2))])
    # a host that renders outputs in a frame without allow-downloads
    outer = tmp_path / "outer.html"
    outer.write_text('<iframe sandbox="allow-scripts" src="inner.html" width="1150" height="900"></iframe>')
    page = browser.new_page(viewport={"width": 1200, "height": 950})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.goto(outer.as_uri())
    frame = page.frame_locator("iframe")
    view = frame.locator('[data-rw="stream-grid"]')
    view.locator('[data-rw="download"] .rw-download-toggle').click()
    view.locator('[data-rw="download"] [data-rw-format="png"]').click()
    msg = view.locator(".rw-download-msg")
    msg.wait_for(state="visible", timeout=10000)
    assert "forbids downloads" in msg.inner_text()
    # the picture itself, decoded, to save with a right click
    assert msg.locator("img").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    assert downloads == [] and errors == []
    page.close()
