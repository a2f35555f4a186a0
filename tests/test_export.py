"""Offline HTML snapshots: rw.export_html / widget.to_html.

The generic exporter is tested on small AnyWidgets defined here; the resid_widgets views are
tested with a tiny random model's decomposition (tests/views_fixtures.py, fast) and, marked slow, with
SmolLM2 on a 64-token prompt (size budget).  Browser tests open the file over file:// in
Debian's chromium with every non-file request blocked and counted.
"""

from __future__ import annotations

import base64
import json
import math
import re
import os
import shutil
import stat
import struct
from pathlib import Path

import anywidget
import ipywidgets
import pytest
import traitlets

from resid_widgets.export import SnapshotMixin, export_html, snapshot_html

from browser.harness import OfflinePage
REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "resid_widgets" / "static" / "widget.js"

# ----------------------------------------------------------------------------- toy widgets

TOY_ESM = """
// TOY-ESM-MARKER
let initCount = 0;
function f32(dv) { return new Float32Array(dv.buffer, dv.byteOffset, dv.byteLength / 4); }
export default {
  initialize({ model }) { initCount += 1; model.set("_inits", (model.get("_inits") || 0) + 1); },
  async render({ model, el }) {
    const root = document.createElement("div");
    root.dataset.rw = "toy";
    root.dataset.label = model.get("label");
    root.dataset.sum = String(f32(model.get("data")).reduce((a, b) => a + b, 0));
    const nested = model.get("nested");
    root.dataset.nested = String(f32(nested.inner.vec)[1]) + "," + nested.name;
    root.dataset.offline = String(model.__rw_offline === true);
    root.dataset.nan = String(model.get("maybe_nan"));
    root.dataset.extra = String(model.get("extra") ?? "none");
    root.dataset.count = String(model.get("count"));
    const btn = document.createElement("button");
    btn.textContent = "+1";
    let calls = 0;
    const onCount = (m, value) => { calls += 1; root.dataset.count = String(value); root.dataset.calls = String(calls); };
    model.on("change:count", onCount);
    model.on("change", () => { root.dataset.anyChange = "yes"; });
    btn.addEventListener("click", () => {
      model.set("count", model.get("count") + 1);
      model.save_changes();
      model.send({ type: "ping" });          // goes nowhere offline, must not throw
      if (model.get("count") >= 3) model.off("change:count", onCount);
    });
    const other = model.get("other");
    if (other) {
      const peer = await model.widget_manager.get_model(other.slice("IPY_MODEL_".length));
      root.dataset.peer = peer.get("label");
    }
    root.append(btn);
    el.append(root);
  },
};
"""

FACTORY_ESM = """
export default async () => ({
  render({ model, el }) {
    const d = document.createElement("div");
    d.dataset.rw = "factory";
    d.textContent = model.get("value");
    el.append(d);
  },
});
"""


class Toy(anywidget.AnyWidget, SnapshotMixin):
    _esm = TOY_ESM
    _css = ".toy-css-marker { color: rgb(1, 2, 3); }"
    label = traitlets.Unicode("toy").tag(sync=True)
    count = traitlets.Int(0).tag(sync=True)
    data = traitlets.Bytes(b"").tag(sync=True)
    nested = traitlets.Dict().tag(sync=True)
    maybe_nan = traitlets.Float(0.0).tag(sync=True)
    other = traitlets.Unicode("").tag(sync=True)


SEEN_BUDGET: list = []


class Budgeted(Toy):
    """A toy with _snapshot_state: adds an `extra` trait and a note, within the budget."""

    extra = traitlets.Unicode("").tag(sync=True)

    def _snapshot_state(self, budget_bytes):
        SEEN_BUDGET.append(budget_bytes)
        return {"extra": "precomputed", "data": struct.pack("<2f", 10, 20), "__notes__": "pane 7 left out"}


class Factory(anywidget.AnyWidget):
    _esm = FACTORY_ESM
    value = traitlets.Unicode("hello").tag(sync=True)


def f32(*xs):
    return struct.pack(f"<{len(xs)}f", *xs)


def toy(**kw):
    kw.setdefault("data", f32(1, 2, 3, 4.5))
    kw.setdefault("nested", {"name": "n", "inner": {"vec": f32(7, 8)}})
    return Toy(**kw)


# ----------------------------------------------------------------------------- browser

def data_of(page, selector):
    return page.evaluate(
        "(sel) => [...document.querySelectorAll(sel)].map(e => Object.assign({}, e.dataset))", selector
    )


# ----------------------------------------------------------------------------- file format

def test_one_file_js_once_css_inline(tmp_path):
    a, b = toy(label="a"), toy(label="b")
    out = export_html([a, b], tmp_path / "two.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("TOY-ESM-MARKER") == 1, "two widgets with one bundle must share one copy"
    assert text.count("toy-css-marker") == 1
    assert text.count('<script type="module">') == 1
    assert len(re.findall(r'data-rw-root="[0-9a-f]+"', text)) == 2
    assert "http://" not in text and "https://" not in text
    assert "prefers-color-scheme: dark" in text


def test_state_roundtrip_and_buffers(tmp_path):
    w = toy(maybe_nan=math.nan, label="</script><b>x</b>")
    text = snapshot_html(w)
    m = re.search(r'<script type="application/json" id="rw-snapshot-data">(.*?)</script>', text, re.S)
    data = json.loads(m.group(1))
    entry = data["models"][w.model_id]
    assert entry["kind"] == "anywidget"
    assert entry["state"]["label"] == "</script><b>x</b>"  # survived the HTML escaping
    assert entry["state"]["maybe_nan"] is None  # NaN is not JSON; it becomes null
    paths = {tuple(b["path"]): base64.b64decode(b["data"]) for b in entry["buffers"]}
    assert paths[("data",)] == f32(1, 2, 3, 4.5)
    assert paths[("nested", "inner", "vec")] == f32(7, 8)
    assert "_esm" not in entry["state"]


def test_to_html_returns_text_or_path(tmp_path):
    w = toy()
    assert w.to_html().startswith("<!DOCTYPE html>")
    p = w.to_html(tmp_path / "sub" / "w.html")
    assert Path(p).is_file()


def test_snapshot_state_budget_and_notes(tmp_path):
    w = Budgeted(data=f32(1), nested={"name": "n", "inner": {"vec": f32(0, 0)}})
    text = snapshot_html(w, budget_bytes=1_000_000)
    assert 0 < SEEN_BUDGET[-1] < 1_000_000
    assert "pane 7 left out" in text
    assert "Left out of this snapshot" in text
    assert base64.b64encode(f32(10, 20)).decode() in text  # the richer state replaced the live one
    assert "__notes__" not in text.split('id="rw-snapshot-data">')[1].split("</script>")[0]


def test_rejects_non_widgets():
    with pytest.raises(TypeError):
        export_html([object()], None)
    with pytest.raises(ValueError):
        export_html([], None)


# ----------------------------------------------------------------------------- where the file goes

def _temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_refuses_a_folder_and_leaves_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match="out is a folder; give a file name"):
        export_html(toy(), tmp_path / "out")
    assert [p.name for p in tmp_path.rglob("*")] == ["out"], "a <name>.tmp was left behind"


def test_refuses_symlinks_and_special_files(tmp_path):
    real = tmp_path / "real.html"
    real.write_text("real")
    (tmp_path / "link.html").symlink_to(real)
    (tmp_path / "dangling.html").symlink_to(tmp_path / "nowhere.html")
    os.mkfifo(tmp_path / "fifo.html")
    for name, kind in [("link.html", "a symbolic link"), ("dangling.html", "a symbolic link"),
                       ("fifo.html", "a device or other special file")]:
        with pytest.raises(FileExistsError, match=f"{kind}, not a regular file; refusing to replace it"):
            export_html(toy(), tmp_path / name)
    assert (tmp_path / "link.html").is_symlink() and (tmp_path / "dangling.html").is_symlink()
    assert real.read_text() == "real" and not (tmp_path / "nowhere.html").exists()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo.html").st_mode)
    assert _temporary_files(tmp_path) == []


def test_refuses_a_device_node(tmp_path):
    """As root, exporting to /dev/full replaced the device node by a regular file. (Tested on a
    node of our own with /dev/full's numbers, never on /dev/full itself.)"""
    node = tmp_path / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except (AttributeError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    with pytest.raises(FileExistsError, match="device"):
        export_html(toy(), node)
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert _temporary_files(tmp_path) == []


def test_refuses_a_file_as_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile is a file, not a folder"):
        export_html(toy(), tmp_path / "afile" / "sub" / "w.html")


def test_replaces_a_file_whole_and_keeps_its_permissions(tmp_path):
    out = tmp_path / "w.html"
    out.write_text("old")
    out.chmod(0o640)
    (tmp_path / "w.html.tmp").write_text("the user's own file")  # not ours to touch
    assert export_html(toy(), out) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.html", "w.html.tmp"]
    assert (tmp_path / "w.html.tmp").read_text() == "the user's own file"


WRITE_FAILS_MIDWAY = """
import resource, signal, sys
import anywidget, traitlets
from resid_widgets.export import export_html

class Big(anywidget.AnyWidget):
    _esm = "export default { render() {} };\\n"
    data = traitlets.Bytes(b"x" * 200_000).tag(sync=True)

widget = Big()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # the "disk" is full after 20 kB
try:
    export_html(widget, sys.argv[1])
except OSError as exc:
    print("OSError", exc.errno)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_write_failing_midway_leaves_nothing(tmp_path):
    import errno
    import subprocess
    import sys

    out = tmp_path / "w.html"
    out.write_text("the previous snapshot")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", WRITE_FAILS_MIDWAY, str(out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.stdout.split() == ["OSError", str(errno.EFBIG)], proc.stdout + proc.stderr
    assert out.read_text() == "the previous snapshot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.html"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -5, 0, 0.5, True, "4MB", None])
def test_budget_must_be_a_finite_positive_number(bad):
    with pytest.raises(ValueError, match="budget_bytes must be a finite number of bytes >= 1.*got"):
        snapshot_html(toy(), budget_bytes=bad)
    with pytest.raises(ValueError, match="budget_bytes"):
        toy().to_html(budget_bytes=bad)


class CountingBar:
    """What export_html needs of a tqdm bar."""

    def __init__(self):
        self.total, self.n, self.refreshed = 0, 0, 0

    def update(self, n):
        self.n += n

    def refresh(self):
        self.refreshed += 1


def test_progress_counts_the_views_work():
    from views_fixtures import tiny_llama_decomposition

    rw = _views()
    dec = tiny_llama_decomposition(T=6, n_layers=3)
    dash = rw.Dashboard(dec, targets=[5, 7])
    bar = CountingBar()
    export_html([dash, rw.StreamGrid(dec)], None, progress=bar)
    # each view: vector panes, per-head values; the dashboard: top neurons of every target (none
    # is computed before an MLP bar is opened), each the neurons' DLA and one unit per layer, and
    # its edit mode's zero-ablation effect of each attention and MLP layer
    assert dash._neurons == {}
    assert bar.total == 2 + 2 + len(dash._targets) * (1 + 3) + 2 * dec.n_layers
    assert bar.n == bar.total and bar.refreshed >= 2


# ----------------------------------------------------------------------------- in the browser

@pytest.mark.browser
def test_offline_render_and_interaction(tmp_path, open_offline):
    a = toy(label="a")
    b = toy(label="b", count=5, other="IPY_MODEL_" + a.model_id)
    out = export_html([a, b, Factory()], tmp_path / "toys.html")
    pg = open_offline(out)
    toys = data_of(pg.page, '[data-rw="toy"]')
    assert [t["label"] for t in toys] == ["a", "b"]
    assert float(toys[0]["sum"]) == pytest.approx(10.5)
    assert toys[0]["nested"] == "8,n"
    assert toys[0]["offline"] == "true"
    assert toys[1]["count"] == "5"
    assert toys[1]["peer"] == "a"  # widget_manager.get_model resolves exported models
    assert pg.page.inner_text('[data-rw="factory"]') == "hello"
    # set() fires change:count with the value, then change; off() removes the listener
    btn = pg.page.locator('[data-rw="toy"][data-label="a"] button')
    for _ in range(4):
        btn.click()
    a_data = data_of(pg.page, '[data-rw="toy"][data-label="a"]')[0]
    assert a_data["count"] == "3" and a_data["calls"] == "3" and a_data["anyChange"] == "yes"
    # the page CSS and the widget CSS are there
    assert pg.page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
    pg.check_clean()


@pytest.mark.browser
def test_dark_mode_and_boxes(tmp_path, open_offline):
    box = ipywidgets.VBox([ipywidgets.HTML("<i data-rw='html-child'>hi</i>"), toy(label="in-box"), ipywidgets.IntSlider()])
    out = export_html(box, tmp_path / "box.html")
    pg = open_offline(out, color_scheme="dark")
    assert pg.page.locator("[data-rw='html-child']").count() == 1
    assert data_of(pg.page, '[data-rw="toy"]')[0]["label"] == "in-box"
    assert pg.page.locator(".rw-snapshot-missing").count() == 1  # the slider: a placeholder
    bg = pg.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg != "rgb(255, 255, 255)"
    pg.check_clean()


@pytest.mark.browser
def test_render_error_is_shown_not_hidden(tmp_path, browser):
    class Broken(anywidget.AnyWidget):
        _esm = "export default { render() { throw new Error('boom'); } };"

    out = export_html(Broken(), tmp_path / "broken.html")
    pg = OfflinePage(browser, out)
    try:
        assert "boom" in pg.page.inner_text(".rw-snapshot-error")
        assert any("boom" in e for e in pg.errors)
        assert pg.blocked == []
    finally:
        pg.close()


# ----------------------------------------------------------------------------- the real views

def _views():
    import resid_widgets as rw

    if not BUNDLE.exists():
        pytest.skip("resid_widgets/static/widget.js is not built (npm install && npm run build)")
    return rw


def test_bundle_has_no_bare_imports_or_fetches():
    if not BUNDLE.exists():
        pytest.skip("resid_widgets/static/widget.js is not built")
    js = BUNDLE.read_text(encoding="utf-8")
    bare = re.findall(r"""(?:\bimport\s*(?:[\w*{}\s,$]+\s*from\s*)?|\bimport\s*\(\s*|\bexport\s*[\w*{}\s,$]+\s*from\s*)["']([^"']+)["']""", js)
    bare = [s for s in bare if not s.startswith(("./", "../", "/", "data:", "blob:"))]
    assert bare == [], f"bare module specifiers in the bundle: {bare}"
    # XML namespace names (document.createElementNS) are identifiers, never fetched
    namespaces = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xhtml", "http://www.w3.org/1999/xlink",
                  "http://www.w3.org/1998/Math/MathML", "http://www.w3.org/2000/xmlns/")
    stripped = js
    for ns in namespaces:
        stripped = stripped.replace(ns, "")
    urls = re.findall(r"https?://[^\s\"'`)]{0,60}", stripped)
    assert urls == [], f"the bundle mentions http(s) URLs: {urls[:5]}"
    assert not re.search(r"\bfetch\s*\(|XMLHttpRequest|WebSocket|EventSource|sendBeacon", js)


@pytest.fixture
def view_dec():
    from views_fixtures import view_decomposition

    return view_decomposition(T=8, n_layers=4)


@pytest.mark.browser
def test_views_snapshot_offline(tmp_path, open_offline, view_dec):
    rw = _views()
    widgets = [rw.Dashboard(view_dec), rw.StreamGrid(view_dec), rw.ContributionBars(view_dec, target=" Paris"), rw.LogitLens(view_dec)]
    out = export_html(widgets, tmp_path / "views.html")
    text = out.read_text(encoding="utf-8")
    assert len(re.findall(r'<script type="application/json" id="rw-esm-\d+">', text)) == 1, "four views, one bundle"
    pg = open_offline(out)
    page = pg.page
    for name in ("dashboard", "stream-grid", "contribution-bars", "logit-lens"):
        assert page.locator(f'[data-rw="{name}"]').count() >= 1, f"{name} did not render"
    assert page.evaluate("window.__pwned") is None  # token texts are not HTML
    pg.check_clean()


@pytest.mark.browser
def test_views_interactive_offline(tmp_path, open_offline, view_dec):
    """Grid clicks, raw/decompose, lens tooltips, method and precomputed targets: no kernel."""
    rw = _views()
    out = export_html(rw.Dashboard(view_dec, targets=[" Paris"]), tmp_path / "dash.html")
    pg = open_offline(out)
    page = pg.page
    page.wait_for_selector('[data-rw="stream-grid"] [data-rw-cell]', timeout=10_000)
    grid = page.locator('[data-rw="stream-grid"]').first

    # clicking a grid cell selects it
    assert grid.get_attribute("data-rw-selected") != "2,3"
    grid.locator('[data-rw-cell="2,3"]').click()
    assert grid.get_attribute("data-rw-selected") == "2,3"

    # raw / decompose toggle, from the embedded panes (no "needs the kernel")
    pane = page.locator('[data-rw-part="pane"]').first
    page.locator('[data-rw-mode="raw"]').first.click()
    assert pane.get_attribute("data-rw-pane-mode") == "raw"
    assert page.locator('[data-rw-mode="raw"]').first.get_attribute("aria-pressed") == "true"
    page.wait_for_timeout(200)
    assert "needs the kernel" not in pane.inner_text()
    page.locator('[data-rw-mode="decompose"]').first.click()
    assert pane.get_attribute("data-rw-pane-mode") == "decompose"

    # hovering a lens cell shows a tooltip
    page.locator('[data-rw="logit-lens"] [data-rw-cell="3,4"]').first.hover()
    page.wait_for_timeout(100)
    tip = page.locator('[role="tooltip"]:visible')
    assert tip.count() == 1 and tip.inner_text().strip(), "no lens tooltip on hover"

    # switching the contribution method
    bars = page.locator('[data-rw="contribution-bars"]').first
    assert bars.get_attribute("data-rw-method") == "dla"
    bars.locator('[data-rw-method="logprob"]').click()
    assert bars.get_attribute("data-rw-method") == "logprob"

    # picking another precomputed target
    chips = bars.locator(".rw-chip")
    assert chips.count() >= 2
    before = bars.inner_text()
    chips.nth(1).click()
    page.wait_for_timeout(100)
    assert chips.nth(1).get_attribute("aria-pressed") == "true"
    assert bars.inner_text() != before
    pg.check_clean()


@pytest.mark.slow
@pytest.mark.browser
def test_smollm2_dashboard_64_tokens_under_5mb(tmp_path, open_offline):
    rw = _views()
    import resid_widgets

    model, tok = resid_widgets.models.smollm2()
    prompt = (
        "The residual stream is the sum of the embedding and of what every attention layer and every "
        "feed-forward layer adds to it. The capital of France is Paris, and the capital of Italy is"
    )
    ids = tok(prompt)["input_ids"]
    while len(ids) < 64:
        prompt += " and so on"
        ids = tok(prompt)["input_ids"]
    ids = ids[:64]
    prompt = tok.decode(ids, skip_special_tokens=True)
    dec = resid_widgets.decompose(model, prompt, tokenizer=tok)
    assert 60 <= len(dec.tokens) <= 66
    out = export_html(rw.Dashboard(dec, target=" Rome"), tmp_path / "smol.html")
    size = out.stat().st_size
    assert size <= 5_000_000, f"SmolLM2 dashboard snapshot is {size:,} bytes"
    pg = open_offline(out)
    assert pg.page.locator('[data-rw="dashboard"]').count() == 1
    pg.check_clean()
    shutil.copy(out, tmp_path / "keep.html")


def test_runtime_is_inlinable_and_offline():
    from resid_widgets.export import _runtime_js

    js = _runtime_js()
    assert "__rw_offline" in js and "</script" not in js.lower()
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    assert not re.search(r"https?://|\bfetch\s*\(|XMLHttpRequest|WebSocket", code)


@pytest.mark.browser
def test_views_over_budget_say_what_needs_the_kernel(tmp_path, open_offline):
    rw = _views()
    from views_fixtures import view_decomposition

    dash = rw.Dashboard(view_decomposition(T=40, n_layers=6, d_model=64))
    with pytest.warns(UserWarning, match="over the budget"):
        out = export_html(dash, tmp_path / "tight.html", budget_bytes=30_000)
    text = out.read_text(encoding="utf-8")
    assert "Left out of this snapshot" in text and "no vector panes embedded" in text
    pg = open_offline(out)
    page = pg.page
    page.wait_for_selector('[data-rw="stream-grid"] [data-rw-cell]', timeout=10_000)
    page.locator('[data-rw="stream-grid"] [data-rw-cell="3,10"]').click()
    page.locator('[data-rw-mode="raw"]').first.click()
    pane = page.locator('[data-rw-part="pane"]').first
    page.wait_for_function(
        "el => el.innerText.includes('needs the kernel')", arg=pane.element_handle(), timeout=5_000
    )
    # "project on target" is computed in the page and still works
    page.locator('[data-rw-mode="project"]').first.click()
    page.wait_for_timeout(100)
    assert "needs the kernel" not in pane.inner_text()
    pg.check_clean()
