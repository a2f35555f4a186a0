"""Live JupyterLab: a Dashboard of a tiny random Llama in a real notebook. A click on a grid cell
reaches the kernel; setting `selected` from Python moves the highlight (data-rw-selected); a
StreamGrid and a LogitLens in separate outputs, joined by rw.link, follow one selection; the
dashboard's edit mode zeroes a component through the kernel and undoes it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="the playwright package is not installed")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")

from .harness import ROOT, have_chromium, launch  # noqa: E402

pytestmark = [
    pytest.mark.jupyter,
    pytest.mark.browser,
    pytest.mark.skipif(not have_chromium(), reason="/usr/bin/chromium is not installed"),
]

SETUP = """\
import torch
from transformers import LlamaConfig, LlamaForCausalLM
import resid_widgets.views as rwv
import resid_widgets as rw
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
model = LlamaForCausalLM(cfg).eval()
dec = rw.decompose(model, torch.tensor([5, 17, 3, 42, 8, 11, 23, 60]))
dash = rwv.Dashboard(dec)
dash"""
READ = 'print("SEL", tuple(dash.selected), "TARGET", repr(dash.target))'
SET = "dash.selected = (1, 2)"
LINKED = """\
from IPython.display import display
grid, lens = rwv.StreamGrid(dec), rwv.LogitLens(dec)
links = rw.link(grid, lens)
display(grid, lens)"""
EDITS = 'print("EDITS", [e["kind"] + " " + e["component"] for e in dash.edits], "EDITED", dash.edited is not None)'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path) -> None:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in (SETUP, READ, SET, LINKED, EDITS)
    ]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    _notebook(work / "dash.ipynb")
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JUPYTER_CONFIG_DIR"] = str(work / ".jupyter")  # no user settings, no news/update checks
    env["JUPYTER_RUNTIME_DIR"] = str(work / ".runtime")
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={work}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/api", timeout=1)
            break
        except Exception:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("JupyterLab did not start:\n" + (work / "lab.log").read_text()[-3000:])
    if proc.poll() is not None:
        pytest.fail("JupyterLab exited:\n" + (work / "lab.log").read_text()[-3000:])
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _run_cell(page, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")


def test_dashboard_live_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{lab}/lab/tree/dash.ipynb")
        # accept the "Select Kernel" dialog if it comes
        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=20000)
        except Exception:
            pass
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=30000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Toolbar-kernelStatus").first.wait_for(timeout=30000)
        _run_cell(page, 0)
        dash = page.locator('[data-rw="dashboard"]')
        dash.wait_for(timeout=90000)
        for name in ("stream-grid", "contribution-bars", "logit-lens"):
            dash.locator(f'[data-rw="{name}"]').wait_for(timeout=10000)
        grid = dash.locator('[data-rw="stream-grid"]')
        assert grid.get_attribute("data-rw-selected") == "4,7"
        # the first vector pane came with the widget: no round trip to a kernel busy with Run All
        dash.locator('[data-rw-part="pane"] canvas').wait_for(timeout=10000)
        # click a grid cell -> the kernel sees it
        grid.locator('[data-rw-cell="2,3"]').click()
        assert grid.get_attribute("data-rw-selected") == "2,3"
        # the vector pane of the cell comes from the kernel as a binary buffer
        pane = dash.locator('[data-rw-part="pane"]')
        pane.locator("canvas").wait_for(timeout=30000)
        assert "sources add up to this stream" in pane.inner_text()
        page.wait_for_timeout(300)
        _run_cell(page, 1)
        out = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea-output")
        out.first.wait_for(timeout=30000)
        assert "SEL (2, 3)" in out.first.inner_text()
        # Python -> browser
        _run_cell(page, 2)
        page.wait_for_function(
            "() => document.querySelector('[data-rw=\"stream-grid\"]').getAttribute('data-rw-selected') === '1,2'",
            timeout=30000,
        )
        # the lens and bars followed the selection in the same dashboard
        from playwright.sync_api import expect

        expect(dash.locator('[data-rw="contribution-bars"] .rw-title')).to_contain_text("at position 2")
        # views in separate outputs, linked with rw.link: a click in the grid moves the lens
        _run_cell(page, 3)
        linked = page.locator(".jp-Notebook .jp-Cell").nth(3)
        lone_grid, lone_lens = linked.locator('[data-rw="stream-grid"]'), linked.locator('[data-rw="logit-lens"]')
        lone_lens.wait_for(timeout=60000)
        lone_grid.locator('[data-rw-cell="3,5"]').wait_for(timeout=10000)
        assert lone_lens.get_attribute("data-rw-selected") == "4,7"
        lone_grid.locator('[data-rw-cell="3,5"]').click()
        expect(lone_lens).to_have_attribute("data-rw-selected", "3,5", timeout=30000)
        # edit mode, live: zero mlp.0 (grid row 2) through the kernel, see it in Python, undo it
        panel = dash.locator('[data-rw="edit-panel"]')
        grid.locator('[data-rw-cell="2,7"]').click()
        expect(panel).to_have_attribute("data-rw-component", "mlp.0", timeout=10000)
        panel.locator('[data-rw-edit="zero"]').click()
        expect(panel).to_have_attribute("data-rw-edits", "1", timeout=60000)
        # the edit's name comes from the kernel with the edited run: wait for it
        expect(panel.locator('[data-rw="edit-list"]')).to_contain_text("zero mlp.0", timeout=60000)
        dash.locator("svg .rw-ghost").first.wait_for(timeout=30000)  # the original run as ghost outlines
        _run_cell(page, 4)
        out = page.locator(".jp-Notebook .jp-Cell").nth(4).locator(".jp-OutputArea-output")
        out.first.wait_for(timeout=30000)
        assert "EDITS ['zero mlp.0'] EDITED True" in out.first.inner_text()
        panel.locator('[data-rw-edit="undo"]').click()
        expect(panel).to_have_attribute("data-rw-edits", "0", timeout=60000)
        rw_errors = [e for e in errors if "resid_widgets" in e or "widget" in e.lower()]
        assert rw_errors == []
        browser.close()
