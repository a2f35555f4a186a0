"""Long prompts in the grid views (issues #11, #13): real decompositions of tiny random Llamas with
207 and 4096 tokens in headless Chromium. The grid canvas stays as wide as the visible area and
paints the columns scrolled into view; the header shows the tokens; every row can be named from its
label and no two labels overlap; the token search box selects and scrolls; tooltips stay inside the
view; a snapshot marks the columns whose vector pane it embeds."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

import resid_widgets as rw  # noqa: E402
from views_fixtures import tiny_llama_decomposition  # noqa: E402

from .harness import have_chromium, push_state  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

GRID = '[data-rw="stream-grid"]'
LENS = '[data-rw="logit-lens"]'


@pytest.fixture(scope="module")
def dec207():
    """207 tokens, 30 layers: 61 rows, as SmolLM2-135M on the issue's prompt."""
    return tiny_llama_decomposition(T=207, n_layers=30)


@pytest.fixture(scope="module")
def dec207_12():
    """207 tokens, 12 layers: 25 rows."""
    return tiny_llama_decomposition(T=207, n_layers=12, seed=1)


@pytest.fixture(scope="module")
def dec4096():
    return tiny_llama_decomposition(T=4096, n_layers=1)


def grid_state(page, root):
    """What the grid exposes: header kind, cell size, visible columns, canvas and viewport widths."""
    return page.evaluate(
        """(root) => {
          const wrap = document.querySelector(root + " .rw-gridwrap");
          const canvas = wrap.querySelector("canvas.rw-cells"), scroll = wrap.querySelector(".rw-scroll");
          const [cellW, cellH] = wrap.dataset.rwCellsize.split("x").map(Number);
          const [i0, last] = wrap.dataset.rwVisibleTokens.split("-").map(Number);
          return {header: wrap.dataset.rwHeader, cellW, cellH, headerH: Number(wrap.dataset.rwHeaderH), i0, i1: last + 1,
                  canvasW: canvas.width, viewW: scroll.clientWidth, dpr: Math.min(devicePixelRatio || 1, 2),
                  spacerW: wrap.querySelector(".rw-inner").getBoundingClientRect().width,
                  boxes: JSON.parse(wrap.dataset.rwRowLabelBoxes), nLabels: Number(wrap.dataset.rwRowLabels)};
        }""",
        root,
    )


# Opaque pixels of the grid canvas in a rectangle of CSS pixels relative to the canvas.
INK = """([root, x, y, w, h]) => {
  const c = document.querySelector(root + " canvas.rw-cells");
  const k = c.width / c.getBoundingClientRect().width;
  const d = c.getContext("2d").getImageData(Math.round(x * k), Math.round(y * k), Math.max(1, Math.round(w * k)),
                                            Math.max(1, Math.round(h * k))).data;
  let ink = 0;
  for (let p = 3; p < d.length; p += 4) if (d[p] > 40) ink++;
  return ink;
}"""


def check_labels(st, C):
    """Every row is named by one label, and no two label boxes overlap."""
    covered = sorted(r for _, c0, c1, _, _ in st["boxes"] for r in range(c0, c1))
    assert covered == list(range(C)), "every row belongs to exactly one label"
    assert st["nLabels"] == len(st["boxes"])
    tops = sorted((top, bottom) for *_, top, bottom in st["boxes"])
    for (_, bottom), (top, _) in zip(tops, tops[1:]):
        assert bottom <= top + 0.01, "label boxes overlap"
    for text, c0, c1, top, bottom in st["boxes"]:
        assert st["headerH"] + c0 * st["cellH"] - 0.01 <= top and bottom <= st["headerH"] + c1 * st["cellH"] + 0.01, text


def test_tokens_and_row_labels_at_207_tokens(open_page, dec207, dec207_12):
    grids = [rw.StreamGrid(dec207), rw.LogitLens(dec207), rw.StreamGrid(dec207_12)]
    pg = open_page(grids)
    page = pg.page
    for idx, (root, dec) in enumerate(((GRID, dec207), (LENS, dec207), (GRID, dec207_12))):
        sel = f"#w{idx} {root}"
        st = grid_state(page, sel)
        assert st["header"] in ("rotated", "horizontal"), "the header shows token text, not index ticks"
        assert st["cellW"] >= 14
        assert st["canvasW"] <= st["viewW"] * st["dpr"] + 1, "the canvas is never wider than the visible area"
        assert st["spacerW"] == pytest.approx(207 * st["cellW"], abs=1)
        # the last position is selected, so the grid starts scrolled to it
        assert st["i0"] < 206 < st["i1"] == 207
        # token text inked above the last visible column
        x = (206 * st["cellW"]) - page.evaluate(f"document.querySelector('{sel} .rw-scroll').scrollLeft")
        assert page.evaluate(INK, [sel, x, 2, st["cellW"], st["headerH"] - 8]) > 10
        check_labels(st, len(dec.labels))
        if len(dec.labels) == 61:
            assert st["cellH"] < 9 and st["nLabels"] == 31, "one label per layer (a / m markers) and embed"
            assert {b[0] for b in st["boxes"]} == {"embed", *map(str, range(30))}
        else:
            assert st["nLabels"] == len(dec.labels), "rows tall enough: one label each"
            assert [b[0] for b in st["boxes"]] == dec.labels
        assert page.evaluate(f"document.querySelector('{sel} .rw-scroll').title") == ""
    # the selected row's label is drawn in its own band only; hovering a label names the row
    page.locator(f"#w0 {GRID} .rw-scroll").focus()
    page.keyboard.press("ArrowUp")
    box = page.locator(f"#w0 {GRID} canvas.rw-rowlabels").bounding_box()
    st = grid_state(page, f"#w0 {GRID}")
    page.mouse.move(box["x"] + 5, box["y"] + st["headerH"] + 59.5 * st["cellH"])
    assert page.locator(f"#w0 {GRID} .rw-tooltip").inner_text().startswith("attn.29")
    pg.clean()


def test_4096_tokens_virtualised(open_page, dec4096):
    w = rw.StreamGrid(dec4096)
    pg = open_page([w], kernel=True)
    page = pg.page
    C, T = len(dec4096.labels), 4096
    st = grid_state(page, GRID)
    assert st["canvasW"] <= st["viewW"] * st["dpr"] + 1
    assert st["spacerW"] == pytest.approx(T * st["cellW"], abs=1)
    assert page.locator(f"{GRID} [data-rw-cell]").count() == 0
    assert st["i1"] == T, "starts at the selected (last) position"
    scroller = f"document.querySelector('{GRID} .rw-scroll')"
    page.evaluate(f"{scroller}.scrollLeft = 0")
    page.wait_for_function(f"document.querySelector('{GRID} .rw-gridwrap').dataset.rwVisibleTokens.startsWith('0-')")
    page.evaluate(f"{scroller}.scrollLeft = 1e9")
    page.wait_for_function(
        f"document.querySelector('{GRID} .rw-gridwrap').dataset.rwVisibleTokens.endsWith('-{T - 1}')"
    )
    st = grid_state(page, GRID)
    view_w = st["canvasW"] / st["dpr"]
    assert page.evaluate(INK, [GRID, view_w - st["cellW"], st["headerH"] + 1, st["cellW"], st["cellH"] * C - 2]) > 0
    assert page.evaluate(INK, [GRID, view_w - st["cellW"], 2, st["cellW"], st["headerH"] - 8]) > 0, "last token"
    # the middle: a click selects the cell under the pointer, in Python too
    page.evaluate(f"{scroller}.scrollLeft = {2000 * st['cellW']}")
    page.wait_for_function(
        f"document.querySelector('{GRID} .rw-gridwrap').dataset.rwVisibleTokens.startsWith('2000-')"
    )
    r = page.locator(f"{GRID} .rw-inner").bounding_box()
    page.mouse.click(r["x"] + 2003.5 * st["cellW"], r["y"] + st["headerH"] + 1.5 * st["cellH"])
    assert page.locator(GRID).get_attribute("data-rw-selected") == "1,2003"
    assert tuple(w.selected) == (1, 2003)
    # a selection from Python (or another view) far off screen is scrolled into view
    w.selected = (0, 10)
    push_state(page, 0, w, ["selected"])
    page.wait_for_function(f"document.querySelector('{GRID}').dataset.rwSelected === '0,10'")
    st = grid_state(page, GRID)
    assert st["i0"] <= 10 < st["i1"]
    pg.clean()


def test_token_search_selects_and_scrolls(open_page, dec207):
    w = rw.StreamGrid(dec207)
    pg = open_page([w], kernel=True)
    page = pg.page
    box = page.locator(f"{GRID} [data-rw=token-search]")
    tokens = dec207.tokens
    text = tokens[20]
    matches = [i for i, t in enumerate(tokens) if text.lower() in t.lower()]
    # typed from the start of the prompt: the first match
    page.locator(f"{GRID} .rw-scroll").focus()
    page.keyboard.press("Home")
    row = int(page.locator(GRID).get_attribute("data-rw-selected").split(",")[0])
    box.fill(text)
    assert page.locator(f"{GRID} [data-rw-part=token-search-count]").inner_text() == f"1 of {len(matches)}"
    assert page.locator(GRID).get_attribute("data-rw-selected") == f"{row},{matches[0]}"
    box.press("Enter")
    want = matches[1 % len(matches)]
    assert page.locator(GRID).get_attribute("data-rw-selected") == f"{row},{want}"
    st = grid_state(page, GRID)
    assert st["i0"] <= want < st["i1"], "the match is scrolled into view"
    assert tuple(w.selected) == (row, want)
    # keys typed in the box stay in it: neither the grid (h / j / k / l move its selection) nor the
    # notebook (command-mode shortcuts listen on the document) sees them
    page.evaluate("window.rwKeysOut = []; document.addEventListener('keydown', (e) => window.rwKeysOut.push(e.key))")
    box.fill("")
    for key in "hjkl":
        box.press(key)
    assert box.input_value() == "hjkl"
    assert page.evaluate("window.rwKeysOut") == []
    assert page.locator(GRID).get_attribute("data-rw-selected").split(",")[0] == str(row)
    pg.clean()


def test_tooltip_stays_inside_the_view(open_page, dec207):
    pg = open_page([rw.LogitLens(dec207)], width="700px")
    page = pg.page
    page.set_viewport_size({"width": 900, "height": 520})
    st = grid_state(page, LENS)
    page.evaluate(f"document.querySelector('{LENS} canvas.rw-cells').scrollIntoView({{block: 'end'}})")
    canvas = page.locator(f"{LENS} canvas.rw-cells").bounding_box()
    assert canvas["y"] + canvas["height"] <= 520
    # the bottom-right visible cell, near both edges of the view
    page.mouse.move(canvas["x"] + canvas["width"] - 2, canvas["y"] + st["headerH"] + (len(dec207.labels) - 0.5) * st["cellH"])
    tip = page.locator(f"{LENS} .rw-tooltip")
    assert tip.is_visible()
    t, root = tip.bounding_box(), page.locator(LENS).bounding_box()
    assert t["x"] >= root["x"] - 0.5 and t["x"] + t["width"] <= root["x"] + root["width"] + 0.5
    assert t["y"] >= 0 and t["y"] + t["height"] <= 520
    assert t["height"] > 100, "the whole top-k shows"
    pg.clean()


@pytest.mark.parametrize("view", ["StreamGrid", "Dashboard"])
def test_snapshot_marks_embedded_panes(tmp_path, open_offline, view):
    dec = tiny_llama_decomposition(T=60, n_layers=2, d=64)
    w = getattr(rw, view)(dec)
    embedded = []
    snapshot_state = w._snapshot_state

    def spy(*args, **kw):  # what the export embeds
        extra = snapshot_state(*args, **kw)
        embedded[:] = extra["_panes"].get("positions", [])
        return extra

    w._snapshot_state = spy
    # room for the page and about 15 of the 60 panes (640 bytes each)
    with pytest.warns(UserWarning, match="over the budget"):
        budget = len(rw.export_html(w, None, budget_bytes=1)) + 10_000
    path = rw.export_html(w, tmp_path / "marks.html", budget_bytes=budget)
    assert 0 < len(embedded) < 60
    pg = open_offline(path)
    page = pg.page
    wrap = page.locator(f"{GRID} .rw-gridwrap")
    assert sorted(map(int, wrap.get_attribute("data-rw-marked").split(","))) == sorted(embedded)
    assert page.locator(f"{GRID} [data-rw-part=marks-legend]").inner_text() == "• = vector pane embedded"
    pg.check_clean()


def test_attention_sources_at_length(open_page, dec207):
    w = rw.AttentionSources(dec207, layer=0)
    pg = open_page([w])
    page = pg.page
    root = "[data-rw=attention-sources]"
    assert page.locator(f"{root} .rw-src-cell[title]").count() == 0, "no native tooltips"
    toks = page.evaluate(
        f"[...document.querySelectorAll('{root} .rw-src-tok')].map(e => {{ const r = e.getBoundingClientRect();"
        " return [r.left, r.right]; })"
    )
    assert len(toks) == 207
    for (_, right), (left, _) in zip(toks, toks[1:]):
        assert right <= left + 0.5, "source headers overlap"
    cell = page.locator(f"{root} .rw-src-cell").nth(3)
    cell.scroll_into_view_if_needed()
    cell.hover()
    text = page.locator(f"{root} .rw-tooltip").inner_text()
    assert "L0H0" in text and "α" in text
    pg.clean()

