"""The JS linter (ESLint, eslint.config.mjs) and formatter (prettier, .prettierrc.json) pass on js/,
so the README's test command covers them (`pip install -e .` runs `npm install`, which installs
both from package.json's devDependencies)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "node_modules" / ".bin"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def npm_script(name: str) -> list[str]:
    """The command line of package.json's script `name`, run with node_modules/.bin on the PATH."""
    scripts = json.loads((ROOT / "package.json").read_text())["scripts"]
    assert name in scripts, f"package.json has no {name!r} script"
    return ["npm", "run", "--silent", name]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    for tool in ("eslint", "prettier"):
        if not (BIN / tool).exists():
            pytest.fail(f"{tool} is not installed in node_modules: run `npm install` (it is a devDependency)")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


def test_eslint_passes():
    r = run(npm_script("lint"))
    assert r.returncode == 0, "npm run lint:\n" + r.stdout[-6000:] + r.stderr[-2000:]


def test_prettier_formatting_holds():
    r = run(npm_script("format:check"))
    assert r.returncode == 0, "npm run format:check (fix with `npm run format`):\n" + r.stdout[-4000:] + r.stderr[-2000:]


def test_the_linter_fails_on_a_lint_error():
    """The config reaches js/: an unused variable and a line over 120 characters are errors."""
    bad = "const unused = 1;\nexport const long = " + '"' + "x" * 120 + '";\n'
    r = run([str(BIN / "eslint"), "--stdin", "--stdin-filename", "js/views/lint_probe.js"], input=bad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no-unused-vars" in r.stdout and "max-len" in r.stdout, r.stdout


def test_the_formatter_applies_the_project_config():
    """prettier reads .prettierrc.json for js/: 120 columns (a 100-column call stays on one line)."""
    call = "export const value = combine(" + ", ".join(f'"argument{i}"' for i in range(6)) + ");\n"
    assert 90 < len(call) < 120
    messy = call.replace(", ", ",")
    r = run([str(BIN / "prettier"), "--stdin-filepath", "js/views/format_probe.js"], input=messy)
    assert r.returncode == 0, r.stderr
    assert r.stdout == call
