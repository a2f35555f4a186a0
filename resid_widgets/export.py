"""Self-contained offline HTML snapshots of anywidget views.

``export_html(widget_or_list, path)`` writes ONE HTML file holding everything the views need:
each distinct ESM bundle once (shared by all widgets that use it), their CSS, the widgets'
state with binary buffers as base64, and a small runtime (``js/snapshot/runtime.js``) that
gives each view an anywidget-like ``model`` backed by that state.  The file makes no network
request when opened from disk.

Views can put more in a snapshot than their live state by implementing
``_snapshot_state(budget_bytes: int) -> dict``: it returns trait values (e.g. every vector pane
in float16) to embed in place of / beside the current ones, staying under ``budget_bytes`` of
binary data.  The special key ``"__notes__"`` (a string or a list of strings) is not a trait:
it says what was left out, and the exporter lists it in the page.  A ``_snapshot_state`` that
also takes ``progress`` gets a :class:`Progress` to report long work on. A view whose live data
alone may outgrow the budget implements ``_snapshot_fit(whole_bytes)``, called first with its
share of the whole budget: its ``_snapshot_state`` then returns trimmed data (and says so).

In the page, ``model.__rw_offline === true`` and ``model.send`` goes nowhere; a view shows
"needs the kernel" for anything that was not precomputed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import inspect
import json
import math
import numbers
import os
import secrets
import stat
import warnings
from pathlib import Path
from typing import Any, Iterable

__all__ = ["export_html", "snapshot_html", "SnapshotMixin", "DEFAULT_BUDGET_BYTES", "Progress", "check_output_path"]

#: Default size budget for a whole snapshot file, in bytes (the JS bundle included).
DEFAULT_BUDGET_BYTES = 4_500_000

_NOTES_KEY = "__notes__"
_SKIP_STATE_KEYS = {"_esm", "_css", "layout", "tabbable", "tooltip", "_dom_classes", "children"}
_LAYOUT_PROPS = (
    "width", "height", "min_width", "max_width", "min_height", "max_height",
    "margin", "padding", "border", "overflow", "flex", "align_items", "justify_content",
)


class SnapshotMixin:
    """Gives a widget ``to_html()``: an offline, self-contained HTML snapshot of itself."""

    def to_html(self, path: str | os.PathLike | None = None, **kwargs: Any) -> str | Path:
        """Write a self-contained HTML snapshot of this widget.

        With ``path`` the file is written and its ``Path`` returned; without, the HTML text is
        returned.  Keyword arguments go to :func:`export_html` (``budget_bytes``, ``title``).
        """
        return export_html(self, path, **kwargs)


class Progress:
    """Units of work of a snapshot, shown on a tqdm bar (or nowhere when ``bar`` is None).

    A view's ``_snapshot_state(budget_bytes, progress)`` calls ``expect(n)`` before work of ``n``
    units and ``done()`` after each, so a long export shows how far it is.
    """

    def __init__(self, bar: Any = None):
        self.bar = bar

    def expect(self, units: int) -> None:
        if self.bar is not None and units > 0:
            self.bar.total = (self.bar.total or 0) + units
            self.bar.refresh()

    def done(self, units: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(units)


#: seconds of work before an automatic progress bar shows (shorter work stays silent)
BAR_DELAY_S = 2.0


def delayed_bar(desc: str) -> Any:
    """A tqdm bar (a widget in a notebook, a line on stderr elsewhere) that shows only once its
    work has taken :data:`BAR_DELAY_S`; None where tqdm is missing."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(total=0, desc=desc, unit="step", delay=BAR_DELAY_S, leave=False)


def _progress_of(progress: Any) -> tuple[Progress, Any]:
    """(the Progress to count on, a bar this call made and must close, or None)."""
    if isinstance(progress, Progress):
        return progress, None
    if progress is None:
        bar = delayed_bar("snapshot")
        return Progress(bar), bar
    return Progress(progress or None), None


# ----------------------------------------------------------------------------- runtime JS

def _runtime_js() -> str:
    here = Path(__file__).resolve().parent
    for candidate in (here / "static" / "snapshot.js", here.parent / "js" / "snapshot" / "runtime.js"):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
            if "</script" in text.lower():
                raise RuntimeError(f"{candidate} contains '</script' and cannot be inlined")
            return text
    raise FileNotFoundError(
        "resid_widgets snapshot runtime not found (expected resid_widgets/static/snapshot.js "
        "from `npm run build`, or js/snapshot/runtime.js in a source checkout)"
    )


# ----------------------------------------------------------------------------- state

def _is_widget(obj: Any) -> bool:
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - ipywidgets is a dependency
        return False
    return isinstance(obj, ipywidgets.Widget)


def _json_safe(value: Any) -> Any:
    """Make a trait's JSON value strictly JSON-safe (no NaN/inf, numpy scalars as Python)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    if _is_widget(value):
        return "IPY_MODEL_" + value.model_id
    try:  # numpy scalars and arrays
        import numpy as np

        if isinstance(value, np.ndarray):
            return _json_safe(value.tolist())
        if isinstance(value, np.generic):
            return _json_safe(value.item())
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot put a {type(value).__name__} into a snapshot")


def _split_buffers(state: Any, path: list, buffers: list) -> Any:
    """Replace bytes-like values by None and collect them as base64 buffers with their path."""
    if isinstance(state, (bytes, bytearray, memoryview)):
        raw = bytes(state) if not isinstance(state, memoryview) else state.tobytes()
        buffers.append({"path": list(path), "data": base64.b64encode(raw).decode("ascii")})
        return None
    if isinstance(state, dict):
        return {k: _split_buffers(v, path + [k], buffers) for k, v in state.items()}
    if isinstance(state, list):
        return [_split_buffers(v, path + [i], buffers) for i, v in enumerate(state)]
    return state


def _serialize(widget: Any, name: str, value: Any) -> Any:
    if widget.has_trait(name):
        to_json = widget.trait_metadata(name, "to_json", widget._trait_to_json)
        value = to_json(value, widget)
    return _json_safe(value)


def _css_of(widget: Any) -> str | None:
    css = getattr(widget, "_css", None)
    if css is None:
        return None
    css = str(css)
    if css.strip().startswith(("http://", "https://")):
        warnings.warn(f"{type(widget).__name__}._css is a URL; it is left out of the offline snapshot")
        return None
    return css or None


def _esm_of(widget: Any) -> str:
    esm = str(getattr(widget, "_esm"))
    if esm.strip().startswith(("http://", "https://")):
        raise ValueError(
            f"{type(widget).__name__}._esm is a URL ({esm.strip()[:80]}); an offline snapshot "
            "needs the module's text"
        )
    return esm


def _layout_of(widget: Any) -> dict:
    layout = getattr(widget, "layout", None)
    out = {}
    if layout is None or not _is_widget(layout):
        return out
    for prop in _LAYOUT_PROPS:
        value = getattr(layout, prop, None)
        if value:
            out[prop.replace("_", "-")] = str(value)
    return out


class _WidgetBundle:
    """The widgets of one export: their states, JS modules and CSS (deduplicated), and notes on
    what was left out to stay within ``budget_bytes``."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.models: dict[str, dict] = {}
        self.esm: list[str] = []
        self._esm_index: dict[str, int] = {}
        self.css: list[str] = []
        self._css_seen: set[str] = set()
        self.notes: list[tuple[str, str]] = []
        self._snapshotters: list[Any] = []

    # pass 1: the widgets, their children and their current state
    def add(self, widget: Any) -> str:
        import ipywidgets

        mid = widget.model_id
        if mid in self.models:
            return mid
        name = type(widget).__name__
        entry: dict[str, Any] = {"name": name, "dom_classes": list(getattr(widget, "_dom_classes", ()) or ())}
        entry["layout"] = _layout_of(widget)
        self.models[mid] = entry
        if hasattr(widget, "_esm") and widget.has_trait("_esm"):
            esm = _esm_of(widget)
            key = hashlib.sha256(esm.encode("utf-8")).hexdigest()
            if key not in self._esm_index:
                self._esm_index[key] = len(self.esm)
                self.esm.append(esm)
            entry["kind"] = "anywidget"
            entry["esm"] = self._esm_index[key]
            css = _css_of(widget)
            if css and css not in self._css_seen:
                self._css_seen.add(css)
                self.css.append(css)
            state = {}
            for key_ in widget.keys:
                if key_ in _SKIP_STATE_KEYS:
                    continue
                state[key_] = _serialize(widget, key_, getattr(widget, key_))
            entry["state"] = state
            if callable(getattr(widget, "_snapshot_state", None)):
                self._snapshotters.append(widget)
            # widgets referenced from traits (e.g. a child view) come along
            for key_ in widget.keys:
                if key_ in ("layout", "style"):
                    continue
                for child in _widgets_in(getattr(widget, key_, None)):
                    if isinstance(child, ipywidgets.DOMWidget):
                        self.add(child)
        elif isinstance(widget, ipywidgets.Box):
            entry["kind"] = "box"
            entry["direction"] = "row" if isinstance(widget, ipywidgets.HBox) else "column"
            entry["children"] = [self.add(child) for child in widget.children]
            entry["state"] = {}
        elif isinstance(widget, (ipywidgets.HTML, ipywidgets.HTMLMath)):
            entry["kind"] = "html"
            entry["html"] = widget.value
            entry["state"] = {}
        elif isinstance(widget, ipywidgets.Label):
            entry["kind"] = "html"
            entry["html"] = html.escape(widget.value)
            entry["state"] = {}
        else:
            entry["kind"] = "unsupported"
            entry["state"] = {}
            self.notes.append((name, "this widget type has no offline renderer; it shows a placeholder"))
        return mid

    # pass 2: ask views for their richer snapshot state, sharing the budget
    def enrich(self, fixed_bytes: int, progress: Progress) -> None:
        if not self._snapshotters:
            return
        # views whose own data may outgrow the budget (a long prompt) first fit it into their share
        whole = int(max(0, self.budget_bytes - fixed_bytes) * 3 / 4) // len(self._snapshotters)
        for widget in self._snapshotters:
            if callable(getattr(widget, "_snapshot_fit", None)):
                widget._snapshot_fit(whole)
        current = sum(state_bytes(self.models[w.model_id]["state"]) for w in self._snapshotters)
        # budget counts base64 text (4/3 of the binary) plus the fixed parts of the file
        raw_budget = int(max(0, self.budget_bytes - fixed_bytes) * 3 / 4) - current
        share = max(0, raw_budget) // len(self._snapshotters)
        for widget in self._snapshotters:
            name = type(widget).__name__
            if "progress" in inspect.signature(widget._snapshot_state).parameters:
                extra = widget._snapshot_state(share, progress=progress)
            else:
                extra = widget._snapshot_state(share)
            if not extra:
                continue
            extra = dict(extra)
            notes = extra.pop(_NOTES_KEY, None)
            if isinstance(notes, str):
                notes = [notes]
            for note in notes or ():
                self.notes.append((name, str(note)))
            state = self.models[widget.model_id]["state"]
            added = 0  # net: the new values minus the live values they replace
            for key, value in extra.items():
                new = _serialize(widget, key, value)
                added += state_bytes(new) - state_bytes(state.get(key))
                state[key] = new
            if added > share * 1.05 + 1024:
                warnings.warn(
                    f"{name}._snapshot_state added {added:,} bytes, over its budget of {share:,}"
                )


def _widgets_in(value: Any) -> Iterable[Any]:
    if _is_widget(value):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _widgets_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _widgets_in(v)


def state_bytes(state: Any) -> int:
    """Bytes of the binary buffers in a widget state (dicts and lists of them)."""
    if isinstance(state, (bytes, bytearray)):
        return len(state)
    if isinstance(state, memoryview):
        return state.nbytes
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


# ----------------------------------------------------------------------------- HTML

_PAGE_CSS = """
:root { color-scheme: light dark; }
html, body { margin: 0; padding: 0; }
body { background: #ffffff; color: #1f2328;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
@media (prefers-color-scheme: dark) { body { background: #161b22; color: #e6edf3; } }
.rw-snapshot { max-width: 1400px; margin: 0 auto; padding: 16px 20px 32px; }
.rw-snapshot-widget { margin: 0 0 24px; }
.rw-snapshot-box { display: flex; gap: 12px; }
.rw-snapshot-row { flex-direction: row; flex-wrap: wrap; }
.rw-snapshot-column { flex-direction: column; }
.rw-snapshot-missing, .rw-snapshot-error { padding: 8px 12px; border: 1px dashed currentColor;
  border-radius: 6px; opacity: 0.8; }
.rw-snapshot-error { color: #cf222e; }
.rw-snapshot-footer { margin-top: 16px; font-size: 12px; opacity: 0.75; }
.rw-snapshot-footer summary { cursor: pointer; }
.rw-snapshot-footer ul { margin: 6px 0; padding-left: 20px; }
"""


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _version() -> str:
    from . import __version__

    return __version__


def _checked_budget(budget_bytes: Any) -> int:
    """``budget_bytes`` as a whole number of bytes; a clear error for NaN, inf, <= 0 and non-numbers."""
    if (isinstance(budget_bytes, bool) or not isinstance(budget_bytes, numbers.Real)
            or not math.isfinite(budget_bytes) or budget_bytes < 1):
        raise ValueError(f"budget_bytes must be a finite number of bytes >= 1 (default {DEFAULT_BUDGET_BYTES:,}), "
                         f"got {budget_bytes!r}")
    return int(budget_bytes)


def snapshot_html(
    widgets: Any,
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    title: str | None = None,
    progress: Any = None,
) -> str:
    """The text of a self-contained HTML snapshot of one widget or a list of widgets (arguments as
    :func:`export_html`)."""
    budget_bytes = _checked_budget(budget_bytes)
    progress, own_bar = _progress_of(progress)
    try:
        return _snapshot_text(widgets, budget_bytes, title, progress)
    finally:
        if own_bar is not None:
            own_bar.close()


def _snapshot_text(widgets: Any, budget_bytes: int, title: str | None, progress: Progress) -> str:
    if _is_widget(widgets):
        widgets = [widgets]
    widgets = list(widgets)
    if not widgets:
        raise ValueError("export_html needs at least one widget")
    for w in widgets:
        if not _is_widget(w):
            raise TypeError(f"export_html takes widgets, not {type(w).__name__}")

    runtime = _runtime_js()
    collector = _WidgetBundle(budget_bytes)
    roots = [collector.add(w) for w in widgets]
    # in UTF-8 bytes, as the budget is: the bundle's non-ASCII text (… − ‖) takes 2-3 bytes a character,
    # and the bundle is written as a JSON string (its quotes and backslashes escaped: ~4% more)
    fixed = (sum(len(part.encode("utf-8")) for part in (runtime, *collector.css))
             + sum(len(_json_for_script(esm).encode("utf-8")) for esm in collector.esm) + 8192)
    collector.enrich(fixed, progress)

    models_out = {}
    for mid, entry in collector.models.items():
        buffers: list = []
        state = _split_buffers(entry["state"], [], buffers)
        out = {k: v for k, v in entry.items() if k != "state"}
        out["state"] = state
        out["buffers"] = buffers
        models_out[mid] = out

    title = title or ("resid_widgets snapshot: " + ", ".join(dict.fromkeys(type(w).__name__ for w in widgets)))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = collector.notes
    data = {
        "version": _version(),
        "created": stamp,
        "roots": roots,
        "models": models_out,
        "notes": [{"widget": w, "note": n} for w, n in notes],
    }

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        '<meta name="generator" content="resid_widgets ' + html.escape(data["version"]) + '">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_PAGE_CSS}</style>",
    ]
    for css in collector.css:
        parts.append("<style data-rw-css>" + css.replace("</style", "<\\/style") + "</style>")
    parts.append("</head>")
    parts.append("<body>")
    comment_notes = "; ".join(f"{w}: {n}" for w, n in notes) or "nothing"
    parts.append(
        "<!-- resid_widgets offline snapshot. Left out by the size budget: "
        + html.escape(comment_notes).replace("--", "- -")
        + " -->"
    )
    parts.append('<main class="rw-snapshot">')
    for mid in roots:
        parts.append(f'<div class="rw-snapshot-widget" data-rw-root="{html.escape(mid)}"></div>')
    footer = [
        '<footer class="rw-snapshot-footer" data-rw-snapshot-footer>',
        "<div>Offline snapshot made with resid_widgets "
        + html.escape(data["version"])
        + f" on {stamp}. It works without Python; what needs the kernel says so.</div>",
    ]
    if notes:
        footer.append('<details open data-rw-left-out><summary>Left out of this snapshot</summary><ul>')
        for w, n in notes:
            footer.append(f"<li><b>{html.escape(w)}</b>: {html.escape(n)}</li>")
        footer.append("</ul></details>")
    else:
        footer.append("<div data-rw-left-out>Nothing was left out of this snapshot.</div>")
    footer.append("</footer>")
    parts.extend(footer)
    parts.append("</main>")
    for i, esm in enumerate(collector.esm):
        parts.append(f'<script type="application/json" id="rw-esm-{i}">{_json_for_script(esm)}</script>')
    parts.append(f'<script type="application/json" id="rw-snapshot-data">{_json_for_script(data)}</script>')
    parts.append(f'<script type="module">\n{runtime}\n</script>')
    parts.append("</body>")
    parts.append("</html>")
    text = "\n".join(parts) + "\n"
    size = len(text.encode("utf-8"))
    if size > budget_bytes * 1.1:
        warnings.warn(f"snapshot is {size:,} bytes, over the budget of {int(budget_bytes):,}")
    return text


def export_html(
    widget_or_list: Any,
    path: str | os.PathLike | None = None,
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    title: str | None = None,
    progress: Any = None,
) -> str | Path:
    """Write one or several widgets into ONE self-contained, offline HTML file.

    Parameters
    ----------
    widget_or_list:
        An anywidget view (``rw.Dashboard(dec)``…), an ipywidgets Box of them, or a list.
    path:
        Where to write the file.  ``None`` returns the HTML text instead.  Missing folders are
        created.  A folder, a symbolic link, a device or any other non-regular file there is
        refused (``IsADirectoryError`` / ``FileExistsError``), never replaced.  The file appears
        whole or not at all: it is written to a temporary file beside it, which is removed if
        writing fails (disk full, interrupted).
    budget_bytes:
        Rough upper bound on the file size (finite, >= 1).  Views with ``_snapshot_state`` share
        what is left after the JS and their live state, and say in the file what they left out.
    title:
        The page title.
    progress:
        A tqdm bar to count the views' work on (the views' long steps add to its ``total``);
        None (default) for a bar of its own that shows once the export has taken 2 s (a
        widget in a notebook); False for none.

    The file inlines the JS once (shared by all widgets), the CSS and the data (binary buffers
    as base64), makes no network requests and follows the reader's light/dark preference.
    """
    text = snapshot_html(widget_or_list, budget_bytes=budget_bytes, title=title, progress=progress)
    if path is None:
        return text
    return _write_whole(Path(path), text.encode("utf-8"))


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if a snapshot may be written there, else a clear ``OSError``: a folder
    (``IsADirectoryError``), a symbolic link, device or other non-regular file (``FileExistsError``:
    refused, never replaced), or a file where a folder of the path should be (``NotADirectoryError``).
    Missing folders are fine (:func:`export_html` creates them)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:  # some folder of the path is a file; found below
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path} is a folder; give a file name such as {path / 'snapshot.html'}")
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a device or other special file"
        raise FileExistsError(f"{path} is {kind}, not a regular file; refusing to replace it: "
                              "give the path of a regular file (or remove what is there)")
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {folder} is a file, not a folder")
            break
    return path


def _write_whole(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it (removed on any failure), so
    the file appears whole or not at all; keeps an existing file's permissions."""
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        old_mode = None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never write through something that appeared under the temporary name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if old_mode is not None:
            os.chmod(tmp, old_mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
