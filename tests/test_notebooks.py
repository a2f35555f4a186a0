"""The tutorial notebooks: structure (fast), execution on SmolLM2 with nbclient (slow), and
nbconvert keeping the saved widget state.

Execution runs a real kernel (this venv's python) with the repository on PYTHONPATH, in a
temporary folder, so the snapshots the notebooks write land there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NB_DIR = REPO / "notebooks"
NOTEBOOKS = ["01_residual_stream.ipynb", "02_where_paris_comes_from.ipynb", "03_heads_and_induction.ipynb"]
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NB_DIR / name, as_version=4)


# ----------------------------------------------------------------------------- structure

def test_generator_and_files_agree():
    proc = subprocess.run(
        [sys.executable, str(NB_DIR / "make_notebooks.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def notebook_generator():
    """notebooks/make_notebooks.py as a module."""
    spec = importlib.util.spec_from_file_location("make_notebooks", NB_DIR / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compiles_as_ipython(src: str, name: str) -> None:
    # the guarded %pip lines must be valid IPython (magics inside an if block)
    from IPython.core.inputtransformer2 import TransformerManager

    compile(TransformerManager().transform_cell(src), name, "exec")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name):
    """Badge and install address follow the project's home setting; without one, the notebook
    holds no address at all and explains how to install from a wheel."""
    gen = notebook_generator()
    home = gen.project_home()
    nb = load(name)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert "### Running this notebook" in first.source and "python -m build --wheel" in first.source
    assert "Files" in first.source and "Mount Drive" in first.source

    install = nb.cells[1]
    assert install.cell_type == "code"
    src = install.source
    assert src == gen.setup_cell(home)
    assert 'find_spec("resid_widgets") is None' in src and "%pip install" in src
    assert "enable_custom_widget_manager()" in src and "google.colab" in src
    _compiles_as_ipython(src, name)

    addresses = {u for c in nb.cells for u in re.findall(r"https?://[^\s)\"']+", c.source)}
    colab = gen.colab_url(name, home)
    if colab:
        assert first.source.startswith("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                                       f"({colab})"), "the notebook opens with its Colab badge"
    else:
        assert "colab-badge" not in first.source
    assert addresses <= {home, colab, "https://colab.research.google.com/assets/colab-badge.svg"} - {""}, (
        "every address in a notebook comes from [project.urls] in pyproject.toml")
    if home:
        assert f'%pip install -q "resid_widgets @ git+{home}"' in src
    else:
        assert "git+" not in src and "raise FileNotFoundError(" in src, "no home: the setup cell asks for a wheel"

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "rw.export_html(dash" in code[-1].source, "each notebook ends by exporting its dashboard"
    assert all(not c.get("outputs") for c in code), "commit notebooks without outputs"


def test_generator_follows_the_home_setting(tmp_path):
    """The same generator with a home set (a stand-in address in a temporary pyproject.toml)."""
    gen = notebook_generator()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\n', encoding="utf-8")
    assert gen.project_home(pyproject) == ""
    assert gen.colab_badge(NOTEBOOKS[0], "") == "" and gen.colab_url(NOTEBOOKS[0], "") == ""
    assert "Or open it from the repository" not in gen.run_steps(NOTEBOOKS[0], "")

    github = "https://github.com/OWNER/REPO"  # stand-in: Colab derives its address from GitHub's
    pyproject.write_text(f'[project]\nname = "x"\n[project.urls]\nRepository = "{github}/"\n', encoding="utf-8")
    assert gen.project_home(pyproject) == github
    colab = f"https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/{NOTEBOOKS[0]}"
    assert gen.colab_url(NOTEBOOKS[0], github) == gen.colab_url(NOTEBOOKS[0], github + ".git") == colab
    assert gen.colab_badge(NOTEBOOKS[0], github).endswith(f"]({colab})")
    assert f"from the repository, {github} (the Colab badge at the top)" in gen.run_steps(NOTEBOOKS[0], github)
    cell = gen.setup_cell(github)
    assert f'%pip install -q "resid_widgets @ git+{github}"' in cell and "FileNotFoundError" not in cell
    _compiles_as_ipython(cell, "setup")

    elsewhere = "https://git.example.org/resid_widgets.git"  # a Git host Colab cannot open notebooks from
    assert gen.colab_url(NOTEBOOKS[0], elsewhere) == gen.colab_badge(NOTEBOOKS[0], elsewhere) == ""
    assert f"from the repository, {elsewhere}: " in gen.run_steps(NOTEBOOKS[0], elsewhere)


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
    """Convert SmolLM2 once, before the first notebook needs it (the first conversion takes ~35 s)."""
    import resid_widgets as rw

    rw.models.smollm2()


EXECUTED: dict[str, Path] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_offline(name, tmp_path, monkeypatch, smollm2_cached):
    _needs_views()
    _kernel_env(monkeypatch)
    nb = load(name)
    execute(nb, tmp_path)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if o.get("output_type") == "error" or (o.get("output_type") == "stream" and o.get("name") == "stderr" and "Traceback" in o.get("text", ""))
    ]
    assert errors == [], errors
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
