"""The tutorial notebooks: structure (fast), execution on SmolLM2 with nbclient (slow), and
nbconvert keeping the saved widget state.

Execution runs a real kernel (this venv's python) with the repository on PYTHONPATH, in a
temporary folder, so the snapshots the notebooks write land there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NB_DIR = REPO / "notebooks"
NOTEBOOKS = ["01_residual_stream.ipynb", "02_where_paris_comes_from.ipynb", "03_heads_and_induction.ipynb"]
MAX_SECONDS = 300  # "under a few minutes" each (SmolLM2 conversion excluded: cached by then)
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NB_DIR / name, as_version=4)


# ----------------------------------------------------------------------------- structure

def test_generator_and_files_agree():
    proc = subprocess.run(
        [sys.executable, str(NB_DIR / "make_notebooks.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name):
    nb = load(name)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    url = f"https://colab.research.google.com/github/resid-widgets/resid_widgets/blob/main/notebooks/{name}"
    assert f"]({url})" in first.source, "the notebook must open with its Colab badge"
    assert "colab-badge.svg" in first.source

    install = nb.cells[1]
    assert install.cell_type == "code"
    src = install.source
    assert 'find_spec("resid_widgets") is None' in src and "%pip install" in src
    assert "enable_custom_widget_manager()" in src and "google.colab" in src
    # the guarded %pip lines must be valid IPython (magics inside an if block)
    from IPython.core.inputtransformer2 import TransformerManager

    compile(TransformerManager().transform_cell(src), name, "exec")

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "rw.export_html(dash" in code[-1].source, "each notebook ends by exporting its dashboard"
    assert all(not c.get("outputs") for c in code), "commit notebooks without outputs"


# ----------------------------------------------------------------------------- execution

def _kernel_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def execute(nb, cwd: Path, timeout: int = 600):
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True, allow_errors=False,
    )
    client.execute()
    return nb


def _needs_views():
    import resid_widgets as rw

    missing = [n for n in ("StreamGrid", "ContributionBars", "LogitLens", "Dashboard", "export_html") if not hasattr(rw, n)]
    if missing:
        pytest.skip(f"resid_widgets does not export {missing} yet")
    if not (REPO / "resid_widgets" / "static" / "widget.js").exists():
        pytest.skip("resid_widgets/static/widget.js is not built")


@pytest.fixture(scope="session")
def smollm2_cached():
    """Convert SmolLM2 once before timing the notebooks (the first conversion takes ~35 s)."""
    import resid_widgets as rw

    rw.models.smollm2()


EXECUTED: dict[str, Path] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_offline(name, tmp_path, monkeypatch, smollm2_cached):
    _needs_views()
    _kernel_env(monkeypatch)
    nb = load(name)
    t0 = time.perf_counter()
    execute(nb, tmp_path)
    elapsed = time.perf_counter() - t0
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if o.get("output_type") == "error" or (o.get("output_type") == "stream" and o.get("name") == "stderr" and "Traceback" in o.get("text", ""))
    ]
    assert errors == [], errors
    assert elapsed < MAX_SECONDS, f"{name} took {elapsed:.0f} s"
    snap = tmp_path / "snapshots" / name.replace(".ipynb", ".html")
    assert snap.is_file(), "the notebook must end by writing its snapshot"
    assert snap.stat().st_size <= 5_000_000
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    views = {m["state"].get("_rw_view") for m in state.values() if "_rw_view" in m.get("state", {})}
    assert "dashboard" in views, "the executed notebook keeps the widget state"
    out = tmp_path / name
    nbformat.write(nb, out)
    EXECUTED[name] = out


# ----------------------------------------------------------------------------- nbconvert

TOY_NOTEBOOK = [
    "import anywidget, traitlets\n"
    "class Toy(anywidget.AnyWidget):\n"
    "    _esm = 'export default { render({ model, el }) { el.textContent = \"TOY-\" + model.get(\"value\"); } };'\n"
    "    value = traitlets.Unicode('nbconvert-keeps-me').tag(sync=True)\n"
    "w = Toy()\n"
    "w",
]


def _nbconvert_html(ipynb: Path, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(ipynb), "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        proc = subprocess.run(
            [sys.executable, "-m", "nbconvert", "--to", "html", str(ipynb), "--output-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return (tmp_path / (ipynb.stem + ".html")).read_text(encoding="utf-8")


def _widget_state_from_html(text: str) -> dict:
    m = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">\s*(.*?)\s*</script>', text, re.S)
    assert m, "nbconvert's HTML has no widget state"
    return json.loads(m.group(1))


def test_nbconvert_keeps_widget_state(tmp_path, monkeypatch):
    """A notebook executed with widget state saved, converted by nbconvert, still holds the
    widget and its ESM; the page loads the widget manager from a CDN (online only)."""
    _kernel_env(monkeypatch)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in TOY_NOTEBOOK])
    execute(nb, tmp_path, timeout=120)
    view = [o for o in nb.cells[-1].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert view, "the widget's output holds its view"
    ipynb = tmp_path / "toy.ipynb"
    nbformat.write(nb, ipynb)
    html = _nbconvert_html(ipynb, tmp_path)
    state = _widget_state_from_html(html)["state"]
    model_id = view[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert model_id in state
    assert state[model_id]["state"]["value"] == "nbconvert-keeps-me"
    assert "TOY-" in state[model_id]["state"]["_esm"]
    # documented: this path needs network access for the widget manager (our export does not)
    assert re.search(r"https://(cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com)/", html)


@pytest.mark.slow
def test_nbconvert_of_executed_tutorial_keeps_views(tmp_path, monkeypatch, smollm2_cached):
    _needs_views()
    name = NOTEBOOKS[0]
    ipynb = EXECUTED.get(name)
    if ipynb is None or not ipynb.exists():
        _kernel_env(monkeypatch)
        nb = execute(load(name), tmp_path)
        ipynb = tmp_path / name
        nbformat.write(nb, ipynb)
    html = _nbconvert_html(ipynb, tmp_path)
    state = _widget_state_from_html(html)["state"]
    views = {m["state"].get("_rw_view") for m in state.values()}
    assert {"stream-grid", "logit-lens", "dashboard"} <= views
