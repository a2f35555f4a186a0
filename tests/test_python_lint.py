"""ruff (configured in pyproject.toml's [tool.ruff]) finds nothing in the package, the tests and
the benchmarks: unused imports and names, redefinitions, undefined names, blind
``pytest.raises(Exception)``. ruff is in the test extras (``pip install -e .[test]``)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.fail("ruff is not installed: pip install -e '.[test]' (or pip install ruff)")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "resid_widgets", "tests", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "ruff check (fix the findings, `ruff check --fix` for the safe ones):\n" + r.stdout[-6000:]


def test_ruff_finds_what_it_should(tmp_path):
    """The configuration is live: an unused import and a blind pytest.raises are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport pytest\n\n\ndef test_x():\n    with pytest.raises(Exception):\n        pass\n")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "F401" in r.stdout and "B017" in r.stdout
