"""The contract between the Python views and the JS bundle, read from both sides with node:
every view name Python sends (`_rw_view`) has a renderer in js/widget.js's `VIEWS` and every
renderer has a Python view; Python's display_token and JS's displayToken show token text alike."""

import importlib
import inspect
import json
import pkgutil
import shutil
import subprocess
from pathlib import Path

import anywidget
import pytest

import resid_widgets.views
from resid_widgets.views.payload import display_token

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Tokens that must read the same in figures and in the views: byte-level BPE markers, leading
# and lone blanks, controls, bidi overrides and isolates, zero-width and tag characters, RTL text.
TRICKY_TOKENS = [
    " Paris", "ĠParis", "▁the", "Ċ", "\n", "\t", "\r\n", "", "  ", " \u00a0", "\u3000", "\u00a0x",
    "\u202e", "abc\u202edef", "\u2066x\u2069", "\u200b", "\u200d", "\ufeff", "\x00", "\x07", "\x1b[31m",
    "\x7f", "\x85", "\u00ad", "\u2028", "\U000e0041", "<script>", "مرحبا 42", "שלום", "😀",
]


def run_node(script: str):
    """The JSON that an ES module script (run from the repository root) prints."""
    r = subprocess.run(["node", "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def python_view_names() -> set[str]:
    """`_rw_view` of every widget class defined in resid_widgets/views/ (base classes' "" left out)."""
    names = set()
    for info in pkgutil.iter_modules(resid_widgets.views.__path__):
        module = importlib.import_module(f"resid_widgets.views.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, anywidget.AnyWidget):
                trait = cls.class_traits().get("_rw_view")
                if trait is not None and trait.default_value:
                    names.add(trait.default_value)
    return names


def test_python_view_names_match_the_js_registry():
    js = set(run_node('const m = await import("./js/widget.js"); console.log(JSON.stringify(Object.keys(m.VIEWS)));'))
    python = python_view_names()
    assert python, "no view classes found in resid_widgets/views/"
    assert python - js == set(), f"Python views with no renderer in js/widget.js VIEWS: {sorted(python - js)}"
    assert js - python == set(), f"renderers in js/widget.js VIEWS that no Python view uses: {sorted(js - python)}"


def test_python_and_js_show_token_text_alike():
    script = (
        'import { displayToken } from "./js/shared/tokens.js";'
        f"const tokens = {json.dumps(TRICKY_TOKENS)};"
        "console.log(JSON.stringify(tokens.map(displayToken)));"
    )
    js = run_node(script)
    assert js == [display_token(t) for t in TRICKY_TOKENS]


@pytest.mark.parametrize("token, shown", [
    ("\u202e", "⟨U+202E⟩"), ("abc\u202edef", "abc⟨U+202E⟩def"), ("\u200b", "⟨U+200B⟩"), ("\x07", "⟨U+0007⟩"),
    ("\x7f", "⟨U+007F⟩"), ("\x85", "⟨U+0085⟩"), ("\u00a0", "⟨U+00A0⟩"), (" \u3000", "·⟨U+3000⟩"), ("\U000e0041", "⟨U+E0041⟩"),
    ("\t", "⇥"), (" Paris", "·Paris"), ("مرحبا", "مرحبا"),
])
def test_invisible_and_control_characters_show_visibly(token, shown):
    assert display_token(token) == shown
