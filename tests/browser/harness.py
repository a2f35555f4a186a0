"""Render resid_widgets views in a plain Chromium page, without Jupyter.

``page_html(widgets)`` writes one page holding the built bundle and, for each widget, a small mock
of the anywidget model (``get``, ``set``, ``on``, ``off``, ``save_changes``, ``send``) over the widget's
state; binary buffers travel base64-encoded and are decoded back into DataViews at their paths.
``attach_kernel(page, widgets)`` bridges ``send``/``save_changes`` to the Python widgets through
playwright bindings, so kernel round-trips (panes, new targets, clicks -> traits) can be tested.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "resid_widgets" / "static" / "widget.js"


def have_chromium() -> bool:
    return os.path.exists(CHROMIUM)


def ensure_bundle() -> Path:
    """Build the bundle with npm if it is missing (tests must not download anything)."""
    if not BUNDLE.exists():
        import subprocess

        if not (ROOT / "node_modules" / ".bin" / "esbuild").exists():
            raise RuntimeError("the JS bundle is not built and node_modules is missing: run `npm install && npm run build`")
        subprocess.run(["npm", "run", "build"], cwd=ROOT, check=True, capture_output=True)
    return BUNDLE


def widget_state(widget, extra: dict | None = None) -> dict:
    """JSON-able state of a widget: {"state": ..., "buffers": [{"path": [...], "data": base64}]}."""
    from ipywidgets.widgets.widget import _remove_buffers

    state = widget.get_state()
    if extra:
        state.update(extra)
    state.pop("_esm", None)
    state.pop("_css", None)
    st, paths, bufs = _remove_buffers(state)
    return {
        "state": st,
        "buffers": [{"path": p, "data": base64.b64encode(bytes(b)).decode("ascii")} for p, b in zip(paths, bufs)],
    }


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>resid_widgets harness</title>
<style>
 html, body { margin: 0; padding: 0; background: %(bg)s; color: %(fg)s; }
 .host { padding: 12px 16px; width: %(width)s; }
</style></head>
<body>
%(hosts)s
<script id="rw-states" type="application/json">%(states)s</script>
<script id="rw-bundle" type="text/plain">%(bundle)s</script>
<script type="module">
const states = JSON.parse(document.getElementById("rw-states").textContent);
const b64 = (s) => { const bin = atob(s); const u = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i); return u; };
function putBuffers(state, buffers) {
  for (const { path, data } of buffers) {
    let o = state;
    for (let i = 0; i < path.length - 1; i++) o = o[path[i]];
    const u = b64(data);
    o[path[path.length - 1]] = new DataView(u.buffer, u.byteOffset, u.byteLength);
  }
  return state;
}
window.rwModels = [];
window.rwErrors = [];
window.rwSent = [];
function makeModel(idx, st) {
  const state = putBuffers(st.state, st.buffers);
  const handlers = {};
  let dirty = {};
  const fire = (ev, ...args) => (handlers[ev] || []).slice().forEach((f) => f(...args));
  const model = {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; dirty[k] = v; fire("change:" + k, model, v); },
    on: (ev, f) => { (handlers[ev] = handlers[ev] || []).push(f); },
    off: (ev, f) => { if (!ev) { for (const k in handlers) delete handlers[k]; return; } handlers[ev] = (handlers[ev] || []).filter((g) => g !== f); },
    save_changes: () => { const d = dirty; dirty = {}; if (window.rwSync) window.rwSync(idx, JSON.stringify(d)); },
    send: (content, callbacks, buffers) => {
      window.rwSent.push(content);
      if (!window.rwKernel) return;
      window.rwKernel(idx, JSON.stringify(content)).then((reply) => window.rwApply(idx, reply));
    },
    _state: state,
    _fire: fire,
  };
  return model;
}
window.rwApply = (idx, reply) => {
  const m = window.rwModels[idx];
  const r = typeof reply === "string" ? JSON.parse(reply) : reply;
  if (r.state) {
    const st = putBuffers(r.state.state, r.state.buffers);
    for (const [k, v] of Object.entries(st)) { m._state[k] = v; m._fire("change:" + k, m, v); }
  }
  for (const msg of r.msgs || []) {
    const bufs = (msg.buffers || []).map((s) => { const u = b64(s); return new DataView(u.buffer, u.byteOffset, u.byteLength); });
    m._fire("msg:custom", msg.content, bufs);
  }
};
window.addEventListener("error", (e) => window.rwErrors.push(String(e.message)));
const code = document.getElementById("rw-bundle").textContent;
const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
const mod = await import(url);
window.rwTimes = [];
states.forEach((st, idx) => {
  const model = makeModel(idx, st);
  window.rwModels.push(model);
  const el = document.getElementById("w" + idx);
  const t0 = performance.now();
  try { (window.rwCleanup = window.rwCleanup || {})[idx] = mod.default.render({ model, el }); } catch (e) { window.rwErrors.push(String(e && e.stack || e)); }
  window.rwTimes.push(performance.now() - t0);
});
await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
window.rwReady = true;
</script>
</body></html>
"""


def page_html(widgets, *, extras=None, dark: bool = False, width: str = "1100px") -> str:
    """HTML of a page rendering ``widgets`` (state of each, plus optional extra trait values)."""
    extras = extras or [None] * len(widgets)
    states = [widget_state(w, e) for w, e in zip(widgets, extras)]
    bundle = ensure_bundle().read_text(encoding="utf-8")
    hosts = "\n".join(f'<div class="host"><div id="w{i}"></div></div>' for i in range(len(widgets)))
    return _PAGE % {
        "bg": "#111418" if dark else "#ffffff",
        "fg": "#e6edf3" if dark else "#1f2328",
        "width": width,
        "hosts": hosts,
        "states": json.dumps(states).replace("</", "<\\/"),
        "bundle": bundle.replace("</script", "<\\/script"),
    }


def write_page(path: Path, widgets, **kw) -> Path:
    path = Path(path)
    path.write_text(page_html(widgets, **kw), encoding="utf-8")
    return path


def attach_kernel(page, widgets) -> None:
    """Bridge the mock models to the Python widgets: send() -> widget message handler, replies and
    trait changes back to JS; save_changes() -> Python trait values."""
    import traitlets

    def kernel(idx, content_json):
        w = widgets[idx]
        content = json.loads(content_json)
        sent = []
        orig_send = w.send
        w.send = lambda c, buffers=None: sent.append((c, buffers or []))  # type: ignore[method-assign]
        before = {k: v for k, v in w.get_state().items()}
        try:
            w._on_custom(w, content, [])
        finally:
            w.send = orig_send  # type: ignore[method-assign]
        after = w.get_state()
        changed = {k: v for k, v in after.items() if k not in ("_esm", "_css") and before.get(k) != v}
        reply = {"msgs": [{"content": c, "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in bufs]} for c, bufs in sent]}
        if changed:
            from ipywidgets.widgets.widget import _remove_buffers

            st, paths, bufs = _remove_buffers(changed)
            reply["state"] = {"state": st, "buffers": [{"path": p, "data": base64.b64encode(bytes(b)).decode("ascii")} for p, b in zip(paths, bufs)]}
        return json.dumps(reply)

    def sync(idx, changes_json):
        w = widgets[idx]
        changes = json.loads(changes_json)
        with w.hold_sync():
            for k, v in changes.items():
                try:
                    w.set_state({k: v})
                except traitlets.TraitError:
                    pass

    page.expose_function("rwKernel", kernel)
    page.expose_function("rwSync", sync)


def push_state(page, idx: int, widget, names) -> None:
    """Send current Python values of trait ``names`` to the page (as the comm would)."""
    from ipywidgets.widgets.widget import _remove_buffers

    state = {k: v for k, v in widget.get_state().items() if k in names}
    st, paths, bufs = _remove_buffers(state)
    payload = {"state": {"state": st, "buffers": [{"path": p, "data": base64.b64encode(bytes(b)).decode("ascii")} for p, b in zip(paths, bufs)]}}
    page.evaluate("([i, r]) => window.rwApply(i, r)", [idx, json.dumps(payload)])


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def copy_bundle_to(dirpath: Path) -> Path:
    return Path(shutil.copy(ensure_bundle(), Path(dirpath) / "widget.js"))


class OfflinePage:
    """An exported snapshot opened over file:// with every non-file request aborted and counted.

    ``check_clean()`` asserts no network request was attempted and no console error appeared."""

    def __init__(self, browser, path, color_scheme="light", viewport=None):
        self.context = browser.new_context(color_scheme=color_scheme,
                                           viewport=viewport or {"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.requests: list[str] = []
        self.errors: list[str] = []

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                self.blocked.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        self.page.on("request", lambda r: None if r.url.startswith(("file:", "blob:", "data:"))
                     else self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append("request failed: " + r.url))
        self.page.goto(Path(path).resolve().as_uri())
        self.page.wait_for_selector("html[data-rw-snapshot-ready]", timeout=30_000)

    def check_clean(self):
        assert self.blocked == [] and self.requests == [], \
            f"network requests from an offline snapshot: {self.blocked + self.requests}"
        assert self.errors == [], f"console errors: {self.errors}"

    def close(self):
        self.context.close()


class Page:
    """A page of views written by write_page and opened in ``browser``, with an optional fake kernel."""

    def __init__(self, browser, tmp_path, widgets, kernel=False, extras=None, dark=False, width="1100px", name="page"):
        self.widgets = widgets
        path = write_page(tmp_path / f"{name}.html", widgets, extras=extras, dark=dark, width=width)
        self.page = browser.new_page(viewport={"width": 1300, "height": 1000})
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if kernel:
            attach_kernel(self.page, widgets)
        self.page.goto(path.as_uri())
        self.page.wait_for_function("window.rwReady === true", timeout=15000)
        assert self.page.evaluate("window.rwErrors") == []

    def clean(self):
        assert self.errors == [], self.errors

    def close(self):
        self.page.close()
