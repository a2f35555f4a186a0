"""Browser timings of the views in headless Chromium (Debian's /usr/bin/chromium).

Measures, for a random 30-layer Llama at T=256 (61 states) and for 1,024 tokens x 61 states:
  * "up":     render() of each view plus its first frame (must stay under 300 ms at T=256);
  * "click":  a click on a grid cell -> the handler has repainted -> the next frame
              (must fit in one frame, ~16 ms);
  * "scroll": a StreamGrid of 4,096 tokens (--scroll): render, and a scroll -> the visible columns
              painted (two animation frames).
The page is built by tests/browser/harness.py (bundle + a mock anywidget model over the state).

    python benchmarks/browser_bench.py [--tokens 256] [--layers 30] [--big 1024] [--smollm2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tests.browser.harness import have_chromium, launch, write_page  # noqa: E402

MEASURE_UP = """async () => {
  const out = {};
  for (const el of document.querySelectorAll('[id^="w"]')) {
    const root = el.querySelector('.rw-root');
    out[el.id] = { kind: root.getAttribute('data-rw'), render_ms: window.rwTimes[+el.id.slice(1)] };
  }
  return out;
}"""

# render each view again from scratch, timing render() + the next frame
MEASURE_RERENDER = """async ([idx, reps]) => {
  const host = document.getElementById('w' + idx);
  const mod = window.rwModule;
  const times = [];
  for (let r = 0; r < reps; r++) {
    if (window.rwCleanup && window.rwCleanup[idx]) window.rwCleanup[idx]();
    host.replaceChildren();
    const t0 = performance.now();
    (window.rwCleanup = window.rwCleanup || {})[idx] = mod.default.render({ model: window.rwModels[idx], el: host });
    const t1 = performance.now();
    await new Promise((res) => requestAnimationFrame(() => res()));
    times.push([t1 - t0, performance.now() - t0]);
  }
  return times;
}"""

MEASURE_CLICK = """async ([idx, reps]) => {
  const host = document.getElementById('w' + idx);
  const grid = host.querySelector('[data-rw="stream-grid"]') || host.querySelector('[data-rw="logit-lens"]');
  const inner = grid.querySelector('.rw-inner');
  const canvas = grid.querySelector('canvas.rw-cells');
  const times = [];
  let changed = 0;
  for (let k = 0; k < reps; k++) {
    // a visible cell of the (possibly scrolled) grid
    const vis = grid.querySelector('.rw-scroll').getBoundingClientRect();
    const rc = canvas.getBoundingClientRect();
    const left = Math.max(rc.left, vis.left);
    const x = left + 2 + ((k * 37) % Math.max(1, Math.min(rc.right, vis.right) - left - 4));
    const y = rc.top + rc.height - 3 - ((k * 13) % 40);
    const before = grid.getAttribute('data-rw-selected');
    const t0 = performance.now();
    inner.dispatchEvent(new MouseEvent('click', { clientX: x, clientY: y, bubbles: true }));
    const t1 = performance.now();
    // read one pixel back: forces the canvas to rasterise what the click drew
    canvas.getContext('2d').getImageData(0, canvas.height - 1, 1, 1);
    const t2 = performance.now();
    await new Promise((res) => requestAnimationFrame(() => res()));
    times.push([t1 - t0, performance.now() - t0, t2 - t0]);
    changed += before !== grid.getAttribute('data-rw-selected') ? 1 : 0;
    // let the secondary updates (bars, pane, top-k; scheduled after the paint) finish, as
    // between two clicks of a person
    await new Promise((res) => setTimeout(res, 60));
  }
  return { times, changed };
}"""


# a long prompt in the stream grid: scroll to far-apart places, timing each scroll until the
# visible columns are painted (the scroll handler repaints in the next animation frame)
MEASURE_SCROLL = """async ([reps]) => {
  const grid = document.querySelector('[data-rw="stream-grid"]');
  const scroll = grid.querySelector('.rw-scroll'), wrap = grid.querySelector('.rw-gridwrap');
  const canvas = grid.querySelector('canvas.rw-cells');
  const max = scroll.scrollWidth - scroll.clientWidth;
  const times = [];
  for (let k = 0; k < reps; k++) {
    const before = wrap.dataset.rwVisibleTokens;
    const t0 = performance.now();
    scroll.scrollLeft = Math.round(((k * 0.37) % 1) * max);
    await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
    canvas.getContext('2d').getImageData(0, canvas.height - 1, 1, 1);
    times.push([performance.now() - t0, before !== wrap.dataset.rwVisibleTokens]);
  }
  return { times, canvas: canvas.width, view: scroll.clientWidth, spacer: scroll.scrollWidth };
}"""


def bench_scroll(dec, browser, reps: int = 30) -> dict:
    """A StreamGrid of a long prompt: render + first frame, and scroll -> repainted columns."""
    import resid_widgets.views as v

    with tempfile.TemporaryDirectory() as tmp:
        path = write_page(Path(tmp) / "scroll.html", [v.StreamGrid(dec)])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(path.as_uri())
        page.wait_for_function("window.rwReady === true", timeout=120000)
        up = page.evaluate("window.rwTimes[0]")
        out = page.evaluate(MEASURE_SCROLL, [reps])
        page.close()
    return {"C": len(dec.labels), "T": len(dec.tokens), "render_ms": up,
            "scroll_to_frame_ms": _stats([t for t, _ in out["times"]]),
            "scrolls_that_moved": f"{sum(m for _, m in out['times'])}/{len(out['times'])}",
            "canvas_px": out["canvas"], "view_px": out["view"], "spacer_px": out["spacer"]}


def _decomposition(tokens: int, layers: int, d: int = 64, vocab: int = 1000):
    from views_fixtures import tiny_llama_decomposition

    return tiny_llama_decomposition(T=tokens, n_layers=layers, vocab=vocab, d=d)


def _smollm2(prompt: str):
    import resid_widgets as rw

    model, tok = rw.models.smollm2()
    return rw.decompose(model, prompt, tokenizer=tok)


def _stats(xs):
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))], "max": xs[-1]}


def bench(dec, label: str, browser, reps: int = 10) -> dict:
    import resid_widgets.views as v

    t = time.perf_counter()
    widgets = [v.StreamGrid(dec), v.ContributionBars(dec), v.LogitLens(dec), v.Dashboard(dec)]
    py_ms = (time.perf_counter() - t) * 1000 / len(widgets)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_page(Path(tmp) / "bench.html", widgets)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(path.as_uri())
        page.wait_for_function("window.rwReady === true", timeout=60000)
        page.evaluate("async () => { const code = document.getElementById('rw-bundle').textContent; "
                      "window.rwModule = await import(URL.createObjectURL(new Blob([code], {type: 'text/javascript'}))); }")
        res = {"label": label, "C": len(dec.labels), "T": len(dec.tokens), "python_payload_ms": py_ms, "views": {}}
        for idx, w in enumerate(widgets):
            times = page.evaluate(MEASURE_RERENDER, [idx, reps])
            res["views"][w._rw_view] = {"render_ms": _stats([a for a, _ in times]), "up_ms": _stats([b for _, b in times])}
        for idx in (0, 3):
            out = page.evaluate(MEASURE_CLICK, [idx, 3 * reps])
            res["views"][widgets[idx]._rw_view]["click_handler_ms"] = _stats([t[0] for t in out["times"]])
            res["views"][widgets[idx]._rw_view]["click_to_frame_ms"] = _stats([t[1] for t in out["times"]])
            res["views"][widgets[idx]._rw_view]["click_to_pixels_ms"] = _stats([t[2] for t in out["times"]])
            res["views"][widgets[idx]._rw_view]["clicks_that_moved_selection"] = f"{out['changed']}/{len(out['times'])}"
        res["errors"] = errors
        page.close()
    return res


def report(res: dict) -> None:
    print(f"\n{res['label']}: {res['C']} states x {res['T']} tokens (python payload {res['python_payload_ms']:.0f} ms/view)")
    print(f"  {'view':<18} {'render med/p95':>16} {'up (+frame) med/p95':>22} {'click handler med/p95':>23} {'click->pixels med/p95':>22} {'click->frame med':>17}")
    for name, r in res["views"].items():
        ch = r.get("click_handler_ms")
        cf = r.get("click_to_frame_ms")
        cp = r.get("click_to_pixels_ms")
        print(
            f"  {name:<18} {r['render_ms']['median']:7.1f}/{r['render_ms']['p95']:6.1f} ms "
            f"{r['up_ms']['median']:11.1f}/{r['up_ms']['p95']:6.1f} ms "
            + (f"{ch['median']:13.2f}/{ch['p95']:6.2f} ms {cp['median']:12.2f}/{cp['p95']:6.2f} ms {cf['median']:13.1f} ms"
               f"  (selection moved {r['clicks_that_moved_selection']})" if ch else "")
        )
    if res["errors"]:
        print("  ERRORS:", res["errors"][:5])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--big", type=int, default=1024, help="also a run with this many tokens (0: skip)")
    ap.add_argument("--scroll", type=int, default=4096,
                    help="also a stream grid of this many tokens: render and scroll timings (0: skip)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--smollm2", action="store_true", help="also SmolLM2-135M on a short prompt")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if not have_chromium():
        print("no /usr/bin/chromium: nothing to measure")
        return 1
    from playwright.sync_api import sync_playwright

    runs = [(f"random Llama, {args.layers} layers", lambda: _decomposition(args.tokens, args.layers))]
    if args.big:
        runs.append((f"random Llama, {args.layers} layers, long prompt", lambda: _decomposition(args.big, args.layers, d=32, vocab=500)))
    if args.smollm2:
        runs.append(("SmolLM2-135M", lambda: _smollm2("The capital of France is")))
    results = []
    with sync_playwright() as p:
        browser = launch(p)
        for label, make in runs:
            t = time.perf_counter()
            dec = make()
            print(f"[{label}] decomposed in {time.perf_counter() - t:.1f} s", flush=True)
            res = bench(dec, label, browser, reps=args.reps)
            report(res)
            results.append(res)
        if args.scroll:
            r = bench_scroll(_decomposition(args.scroll, 2, d=32, vocab=500), browser, reps=3 * args.reps)
            sc = r["scroll_to_frame_ms"]
            print(f"\nstream grid, {r['C']} states x {r['T']} tokens: render {r['render_ms']:.0f} ms; scroll -> painted "
                  f"columns {sc['median']:.1f}/{sc['p95']:.1f} ms (median/p95, two frames; moved {r['scrolls_that_moved']}); "
                  f"canvas {r['canvas_px']} px for a {r['view_px']} px view of {r['spacer_px']} px")
            results.append({"label": "scroll", **r})
        browser.close()
    views = [r for r in results if "views" in r]
    ok = all(r["views"][n]["up_ms"]["median"] < 300 for r in views if r["T"] <= 256 for n in r["views"])
    ok_click = all(r["views"][n].get("click_to_pixels_ms", {"median": 0})["median"] < 16 for r in views for n in r["views"])
    print(f"\nviews up < 300 ms at T<=256: {'yes' if ok else 'NO'};  click repaint within one frame (click -> pixels < 16 ms): {'yes' if ok_click else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok and ok_click else 2


if __name__ == "__main__":
    raise SystemExit(main())
