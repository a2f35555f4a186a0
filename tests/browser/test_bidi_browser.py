"""Token text that holds bidi controls, zero-width and control characters (Gemma-3's tokenizer emits
U+202E as a token of its own) in Chromium: every chip shows a visible escape instead of going blank,
the views' own labels stay in reading order (a U+202E chip used to turn "(d_model = 32)" into
"(23 = ledom_d)"), also with that token selected, live and in an exported snapshot."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")

import torch  # noqa: E402

import resid_widgets as rw  # noqa: E402
from models_zoo import VOCAB, build  # noqa: E402
from resid_widgets.views.payload import display_token  # noqa: E402

from .harness import have_chromium, write_page  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

RLO, ZWSP, BEL = "\u202e", "\u200b", "\x07"
WORDS = [" The", RLO, " capital", ZWSP, " of", BEL, " is", " Paris"]
PROMPT = list(range(7))  # " The", U+202E, " capital", U+200B, " of", BEL, " is"
SPECIAL = {1: "⟨U+202E⟩", 3: "⟨U+200B⟩", 5: "⟨U+0007⟩"}  # position -> what its chip must show


@pytest.fixture(scope="module")
def dec():
    """A tiny random Llama with a word-level tokenizer whose vocabulary holds the tricky tokens."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    vocab.update({f"w{i}": i for i in range(len(WORDS), VOCAB)})
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab=vocab, unk_token="w96")))
    d = rw.decompose(build("llama"), torch.tensor(PROMPT), tokenizer=tokenizer)
    assert d.tokens[1] == RLO and d.tokens[3] == ZWSP and d.tokens[5] == BEL
    return d


# Text nodes of plain ASCII (the views' own labels) whose first character is drawn right of their
# last one: a bidi override leaked into them and reversed them.
REVERSED_LABELS = """(root) => {
  const out = [];
  const walker = document.createTreeWalker(document.querySelector(root), NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  const box = (node, i) => { range.setStart(node, i); range.setEnd(node, i + 1); return range.getBoundingClientRect(); };
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent;
    if (!/^[\\x20-\\x7e]+$/.test(text)) continue;
    const first = text.search(/\\S/), last = text.search(/\\S\\s*$/);
    if (first < 0 || last <= first) continue;
    const a = box(node, first), b = box(node, last);
    if (!a.width || !b.width || Math.abs(a.top - b.top) > 2) continue;  // not shown, or wrapped
    if (a.left >= b.left) out.push(text);
  }
  return out;
}"""

# Ink in the header of the grid canvas above position i (where the token is drawn), in pixels that
# differ from the top-left corner (the background).
HEADER_INK = """([root, i]) => {
  const canvas = document.querySelector(root + " canvas.rw-cells");
  const cell = document.querySelector(root + ` [data-rw-cell="0,${i}"]`).getBoundingClientRect();
  const rc = canvas.getBoundingClientRect(), k = canvas.width / rc.width;
  const x0 = Math.round((cell.left - rc.left) * k), x1 = Math.round((cell.right - rc.left) * k);
  const y1 = Math.round((cell.top - rc.top - 4) * k);
  const data = canvas.getContext("2d").getImageData(x0, 0, x1 - x0, y1).data;
  let ink = 0;
  for (let p = 0; p < data.length; p += 4) if (data[p + 3] > 40) ink++;
  return ink;
}"""


def check_tokens_and_labels(page, root: str, dec) -> None:
    """Prompt chips non-blank with visible escapes; grid headers inked; no reversed label."""
    chips = page.locator(f"{root} .rw-prompt .rw-tok")
    assert chips.all_text_contents() == [display_token(t) for t in dec.tokens]
    for i, shown in SPECIAL.items():
        assert chips.nth(i).text_content() == shown
        assert chips.nth(i).bounding_box()["width"] > 14, f"chip {i} ({shown}) is blank"
    for grid in ("stream-grid", "logit-lens"):
        sel = f'{root} [data-rw="{grid}"]'
        if page.locator(sel).count():
            for i in SPECIAL:
                assert page.evaluate(HEADER_INK, [sel, i]) > 20, f"{grid}: the header of position {i} is blank"
    assert page.evaluate(REVERSED_LABELS, root) == []
    assert RLO not in page.locator(root).inner_text(), "a raw U+202E reached the page"


def select_each_special_token(page, root: str, dec) -> None:
    """Click each tricky token in the dashboard's prompt strip: the selected views still read."""
    for i, shown in SPECIAL.items():
        page.locator(f"{root} .rw-dash-head + .rw-prompt .rw-tok").nth(i).click()
        pane = page.locator(f"{root} [data-rw-part=pane] .rw-title")
        pane.filter(has_text=f"at position {i} {shown}").wait_for(timeout=5000)
        page.locator(f'{root} [data-rw="contribution-bars"] .rw-title', has_text=f"at position {i} {shown}").wait_for()
        assert "(d_model = 32)" in pane.inner_text()
        check_tokens_and_labels(page, root, dec)


def test_bidi_and_invisible_tokens_live(browser, tmp_path, dec):
    widgets = [rw.Dashboard(dec, target=" Paris"), rw.BlockBudget(dec, k=4), rw.AttentionSources(dec, target=" Paris"),
               rw.AttentionPatterns(dec, head=0, position=1)]
    path = write_page(tmp_path / "bidi.html", widgets)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("window.rwReady === true", timeout=15000)
    assert page.evaluate("window.rwErrors") == []
    check_tokens_and_labels(page, "#w0", dec)
    select_each_special_token(page, "#w0", dec)
    for root in ("#w1", "#w2", "#w3"):  # the analysis views: their prompt strips and own labels
        check_tokens_and_labels(page, root, dec)
    assert page.locator("#w2 .rw-src-tok").all_text_contents() == [display_token(t) for t in dec.tokens]
    # the opened attention pattern names its selected row (the U+202E token) in an isolated chip
    assert page.locator("#w3 .rw-att-full .rw-tok").all_text_contents() == [SPECIAL[1]]
    assert errors == []
    page.close()


def test_bidi_and_invisible_tokens_in_a_snapshot(open_offline, tmp_path, dec):
    path = rw.export_html([rw.Dashboard(dec, target=" Paris"), rw.BlockBudget(dec, k=4)], tmp_path / "bidi.html")
    pg = open_offline(path, viewport={"width": 1300, "height": 1000})
    page = pg.page
    root = '[data-rw="dashboard"]'
    page.wait_for_selector(f"{root} canvas.rw-cells")
    check_tokens_and_labels(page, root, dec)
    select_each_special_token(page, root, dec)
    check_tokens_and_labels(page, '[data-rw="block-budget"]', dec)
    pg.check_clean()
