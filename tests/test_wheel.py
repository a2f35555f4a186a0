"""The wheel carries the built JavaScript and installs without Node; the tutorials' setup cell
installs an uploaded wheel by itself (what a Colab user does).

The wheel is built offline from this checkout (``python -m build --wheel --no-isolation``: the build
backend comes from the test extras). Each fresh virtual environment sees the base environment's
packages (torch, transformers, anywidget, IPython, pip) through a folder of links that leaves out
everything named resid_widgets, so the checkout's editable install and its metadata are invisible
and the only resid_widgets it can import is the wheel's. Its PATH holds its own bin folder and a
folder with a link to ``sh`` only (IPython's ``%pip`` and ``!`` run through a shell): no node, no npm. pip runs with no index, so nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest
from test_notebooks import notebook_generator

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = REPO / "notebooks" / "01_residual_stream.ipynb"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fresh environment is built with symlinks")

# Runs a setup cell the way a notebook does (IPython, %pip for real or recorded), reports as JSON.
RUN_CELL = """\
import json, sys
from IPython.core.interactiveshell import InteractiveShell

cell, report, mode = sys.argv[1:4]
shell = InteractiveShell.instance()
pip_lines = []
if mode == "record-pip":
    shell.register_magic_function(pip_lines.append, "line", "pip")
result = shell.run_cell(open(cell, encoding="utf-8").read())
error = result.error_before_exec or result.error_in_exec
with open(report, "w", encoding="utf-8") as f:
    json.dump({"error": type(error).__name__ if error else None, "message": str(error or ""), "pip": pip_lines}, f)
"""

# Imports the installed package, renders a view and exports a snapshot: what a user of the wheel does.
USE_WHEEL = """\
import hashlib, json, sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import resid_widgets as rw

torch.manual_seed(0)
config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
dec = rw.decompose(LlamaForCausalLM(config).eval(), torch.arange(1, 8))
dash = rw.Dashboard(dec, position=-1)
state = dash.get_state()
path = rw.export_html(dash, Path(sys.argv[1]))
static = Path(rw.__file__).parent / "static"
print(json.dumps({
    "file": rw.__file__, "version": rw.__version__, "view": state["_rw_view"], "error": state["_error"],
    # the views ship the bundle as text (plus a newline that keeps anywidget from reading it as a path)
    "esm_sha": hashlib.sha256(state["_esm"].rstrip().encode()).hexdigest(),
    "static_sha": hashlib.sha256((static / "widget.js").read_text(encoding="utf-8").rstrip().encode()).hexdigest(),
    "runtime": (static / "snapshot.js").read_text(encoding="utf-8"),
    "snapshot": str(path), "model_name": dec.model_name,
}))
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("resid_widgets-*-py3-none-any.whl")
    return built


def fresh_env(root: Path) -> tuple[Path, dict]:
    """(python, environment variables) of a new virtual environment without resid_widgets and node."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root / "venv")
    bin_dir = root / "venv" / "bin"
    purelib = subprocess.run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    base = root / "base-packages"
    base.mkdir()
    for folder in (Path(p) for p in sys.path if Path(p).name in ("site-packages", "dist-packages")):
        for entry in (folder.iterdir() if folder.is_dir() else ()):
            # .pth files are where editable installs hook in; links to them would not run anyway
            hidden = "resid_widgets" in entry.name.lower().replace("-", "_") or entry.suffix == ".pth"
            if not hidden and not (base / entry.name).exists():
                (base / entry.name).symlink_to(entry)
    (Path(purelib) / "base-packages.pth").write_text(f"{base}\n", encoding="utf-8")

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_FIND_LINKS", "PIP_INDEX_URL")}
    shell_only = root / "shell-only"
    shell_only.mkdir()
    (shell_only / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    env.update(PATH=os.pathsep.join((str(bin_dir), str(shell_only))), PYTHONNOUSERSITE="1", PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull,
               PIP_DISABLE_PIP_VERSION_CHECK="1", IPYTHONDIR=str(root / "ipython"), TQDM_DISABLE="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    assert shutil.which("node", path=env["PATH"]) is None and shutil.which("npm", path=env["PATH"]) is None
    python = bin_dir / "python"
    assert _run(python, env, root, "-c", "import importlib.util as u; print(u.find_spec('resid_widgets'))").stdout.strip() \
        == "None", "the fresh environment must not see the checkout's resid_widgets"
    return python, env


def _run(python: Path, env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def run_setup_cell(python: Path, env: dict, cwd: Path, source: str, record_pip: bool = False) -> dict:
    scratch = cwd.parent / f"{cwd.name}-cell"
    scratch.mkdir()
    (scratch / "cell.py").write_text(source, encoding="utf-8")
    (scratch / "run_cell.py").write_text(RUN_CELL, encoding="utf-8")
    proc = _run(python, env, cwd, str(scratch / "run_cell.py"), str(scratch / "cell.py"), str(scratch / "report.json"),
                "record-pip" if record_pip else "real-pip")
    report = json.loads((scratch / "report.json").read_text(encoding="utf-8"))
    report["output"] = proc.stdout + proc.stderr
    return report


def setup_cell_of_the_tutorials() -> str:
    return nbformat.read(TUTORIAL, as_version=4).cells[1].source


def generated_setup_cell(home: str) -> str:
    """The setup cell notebooks/make_notebooks.py writes for the project's home ``home``."""
    return notebook_generator().setup_cell(home)


# ----------------------------------------------------------------------------- the wheel

def test_wheel_carries_the_built_javascript(wheel):
    assert wheel.stat().st_size < 400_000
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert sha256(zf.read("resid_widgets/static/widget.js")) == \
            sha256((REPO / "resid_widgets" / "static" / "widget.js").read_bytes())
        assert zf.read("resid_widgets/static/snapshot.js") == (REPO / "js" / "snapshot" / "runtime.js").read_bytes()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert not any(n.startswith(("js/", "node_modules/", "tests/")) for n in names)


def test_sdist_builds_the_javascript_at_install_time(tmp_path):
    """The sdist ships the JS sources, not the bundle; building a wheel from it runs the npm build.
    npm runs offline on a copy of this checkout's node_modules (what `pip install -e .` installed)."""
    if shutil.which("npm") is None or not (REPO / "node_modules" / "esbuild").is_dir():
        pytest.skip("needs npm and this checkout's node_modules (pip install -e . runs npm install)")
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = tmp_path.glob("resid_widgets-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
        tf.extractall(tmp_path / "unpacked", filter="data")
    assert {"js/widget.js", "js/snapshot/runtime.js", "build.mjs", "package.json", "package-lock.json", "LICENSE",
            "CHANGELOG.md", "pyproject.toml"} <= names
    assert not any(n.startswith(("resid_widgets/static/", "node_modules/", ".ci/")) for n in names)

    source = next((tmp_path / "unpacked").iterdir())
    shutil.copytree(REPO / "node_modules", source / "node_modules", symlinks=True)
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                           str(source)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "npm_config_offline": "true"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "node build.mjs" in proc.stdout + proc.stderr, "the npm build ran"
    (built,) = (tmp_path / "dist").glob("resid_widgets-*-py3-none-any.whl")
    with zipfile.ZipFile(built) as zf:
        assert sha256(zf.read("resid_widgets/static/widget.js")) == \
            sha256((REPO / "resid_widgets" / "static" / "widget.js").read_bytes())


def test_setup_cell_installs_an_uploaded_wheel_and_the_view_renders_without_node(wheel, tmp_path):
    python, env = fresh_env(tmp_path)
    upload = tmp_path / "content"  # Colab's working folder, with the uploaded wheel
    upload.mkdir()
    shutil.copy(wheel, upload)

    report = run_setup_cell(python, env, upload, setup_cell_of_the_tutorials())
    assert report["error"] is None, report["output"][-3000:]

    use = tmp_path / "use"
    use.mkdir()
    (use / "use_wheel.py").write_text(USE_WHEEL, encoding="utf-8")
    out = json.loads(_run(python, env, use, "use_wheel.py", str(use / "snap.html")).stdout.strip().splitlines()[-1])
    venv_root = (tmp_path / "venv").resolve()
    assert Path(out["file"]).resolve().is_relative_to(venv_root), f"imported {out['file']}, not the wheel's copy"
    assert out["version"] == wheel.name.split("-")[1]
    assert out["view"] == "dashboard" and out["error"] == ""
    with zipfile.ZipFile(wheel) as zf:
        shipped = sha256(zf.read("resid_widgets/static/widget.js").decode("utf-8").rstrip().encode())
    assert out["esm_sha"] == out["static_sha"] == shipped, "the view loads the bundle the wheel shipped"

    page = Path(out["snapshot"]).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and f'content="resid_widgets {out["version"]}"' in page
    assert out["runtime"].strip() in page, "the snapshot inlines the wheel's snapshot runtime"
    assert 'id="rw-snapshot-data"' in page and '"_rw_view":"dashboard"' in page
    assert f'"model_name":"{out["model_name"]}"' in page


def test_setup_cell_without_a_wheel_says_what_to_do(tmp_path):
    """While the project has no home address (as today), the cell asks for a wheel."""
    python, env = fresh_env(tmp_path)
    empty = tmp_path / "content"
    empty.mkdir()
    report = run_setup_cell(python, env, empty, generated_setup_cell(""))
    assert report["error"] == "FileNotFoundError"
    message = report["message"]
    assert str(empty) in message and "python -m build --wheel" in message and "Files panel" in message
    assert "Mount Drive" in message
    assert _run(python, env, empty, "-c", "import importlib.util as u; print(u.find_spec('resid_widgets'))").stdout.strip() \
        == "None"


def test_setup_cell_prefers_the_newest_wheel_then_the_project_home(wheel, tmp_path):
    """With a home address set (a stand-in here), the cell installs an uploaded wheel first, the
    newest of several, and the home's repository only when there is none; pip is recorded, not run."""
    home = "https://git.example.org/resid_widgets.git"
    cell = generated_setup_cell(home)
    python, env = fresh_env(tmp_path)

    upload = tmp_path / "content"
    upload.mkdir()
    older = upload / "resid_widgets-0.0.1-py3-none-any.whl"
    shutil.copy(wheel, older)
    os.utime(older, (1_000_000_000, 1_000_000_000))
    shutil.copy(wheel, upload)
    report = run_setup_cell(python, env, upload, cell, record_pip=True)
    assert report["pip"] == [f'install -q "{upload / wheel.name}"']
    # pip was only recorded: the cell notices that nothing was installed
    assert report["error"] == "ImportError" and "installing resid_widgets failed" in report["message"]

    empty = tmp_path / "empty"
    empty.mkdir()
    report = run_setup_cell(python, env, empty, cell, record_pip=True)
    assert report["pip"] == [f'install -q "resid_widgets @ git+{home}"']
