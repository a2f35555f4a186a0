"""Views let go of their Decomposition: after close(), across rw.link, and when a notebook cell
that made them is re-run (a real kernel, sent the cellId that JupyterLab sends)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.views import _base, lifetime

REPO = Path(__file__).resolve().parent.parent
VIEW_CLASSES = list(rw.views.VIEWS)


@pytest.fixture(scope="module")
def model():
    return build("llama")


def _decompose(model, seed=0):
    return rw.decompose(model, random_ids(7, seed=seed))


@pytest.mark.parametrize("cls", VIEW_CLASSES, ids=lambda c: c.__name__)
def test_closed_view_frees_its_decomposition(cls, model):
    dec = _decompose(model)
    alive = weakref.ref(dec)
    view = cls(dec)
    assert view._error == ""
    if hasattr(view, "_on_custom"):  # a kernel message answered before closing holds nothing
        view._on_custom(view, {"type": "pane", "state": 1, "position": 2, "id": "x"}, [])
    view.close()
    del view, dec
    gc.collect()
    assert alive() is None, f"a closed {cls.__name__} keeps its Decomposition alive"


@pytest.mark.parametrize("cls", VIEW_CLASSES, ids=lambda c: c.__name__)
def test_a_closed_view_still_referenced_lets_go_of_its_decomposition(cls, model):
    """A notebook keeps closed views (in Out, in a list): close() itself must drop the data."""
    dec = _decompose(model)
    alive = weakref.ref(dec)
    view = cls(dec)
    view.close()
    del dec
    gc.collect()
    assert alive() is None, f"a closed {cls.__name__} that is still referenced keeps its Decomposition alive"
    assert view.comm is None


@pytest.mark.parametrize("cls", VIEW_CLASSES, ids=lambda c: c.__name__)
def test_closed_view_says_it_was_closed(cls, model):
    view = cls(_decompose(model))
    view.figure()
    view.close()
    with pytest.raises(RuntimeError, match="view was closed.*make a new view"):
        view.figure()
    view.close()  # twice is fine


def test_every_view_class_is_listed():
    """Every view (whatever its base: ResidView, AnalysisView, or ViewLifetime itself) is in VIEWS,
    or, for the views of two prompts, in TWO_PROMPT_VIEWS."""
    from resid_widgets.views._analysis_base import AnalysisView
    from resid_widgets.views.lens_switch import LensSwitch
    from resid_widgets.views.sae_panes import SAEPanes

    from resid_widgets.views._two_prompt_base import TwoPromptView

    bases = {rw.views.ResidView, AnalysisView, LensSwitch, SAEPanes, TwoPromptView}
    # direct subclasses only: anywidget gives each instance a subclass of its view's class
    concrete = {cls for base in (lifetime.ViewLifetime, *bases) for cls in base.__subclasses__()
                if cls.__module__.startswith("resid_widgets.views.")}
    assert concrete - bases == set(VIEW_CLASSES) | set(rw.views.TWO_PROMPT_VIEWS)


@pytest.mark.parametrize("make", [lambda dec: rw.BlockBudget(dec, drop=False, budget=float("nan")),
                                  lambda dec: rw.AttentionSources(dec, layer=99),
                                  lambda dec: rw.StreamGrid(dec, selected=(99, 0)),
                                  lambda dec: rw.AttentionPatterns(dec, head=99),
                                  lambda dec: rw.AttentionPatterns(dec, position=2.5)],
                         ids=["budget", "layer", "selected", "head", "position"])
def test_a_view_refused_while_it_is_made_holds_nothing(make, model):
    """A bad value set right after the widget exists used to leave an open widget (held by
    ipywidgets' registry) with its Decomposition."""
    import traitlets

    dec = _decompose(model)
    alive = weakref.ref(dec)
    with pytest.raises(traitlets.TraitError):
        make(dec)
    del dec
    gc.collect()
    assert alive() is None


def test_bundle_is_text_read_once_not_a_watched_file(monkeypatch, tmp_path):
    for cls in VIEW_CLASSES:
        assert isinstance(cls._esm, str) and "export" in cls._esm, cls
    assert _base.ESM.endswith("\n"), "one-line text could be taken for a file name by anywidget"
    monkeypatch.setattr(_base, "BUNDLE", tmp_path / "widget.js")
    missing = _base._esm_source()
    assert "npm run build" in missing and isinstance(missing, str)


def test_hot_reload_is_opt_in():
    code = ("import resid_widgets.views as v, anywidget._file_contents as f; "
            "print(type(v.StreamGrid._esm).__name__, type(v.BlockBudget._esm).__name__)")
    env = dict(os.environ, PYTHONPATH=str(REPO), ANYWIDGET_HMR="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FileContents", "FileContents"]


def test_link_does_not_keep_a_closed_view_alive(model):
    dec, other = _decompose(model), _decompose(model, seed=1)  # same shape, different prompts
    grid, lens, bars = rw.StreamGrid(dec), rw.LogitLens(other), rw.ContributionBars(other)
    rw.link(grid, lens, bars)
    grid_ref, dec_ref = weakref.ref(grid), weakref.ref(dec)
    grid.close()
    del grid, dec
    gc.collect()
    assert grid_ref() is None and dec_ref() is None, "rw.link kept a closed view alive"
    lens.selected = (2, 3)  # the lens and bars were linked through the grid: closing it undid both links
    assert lens.selected == (2, 3) and bars.position == len(other.tokens) - 1
    other_ref = weakref.ref(other)
    lens.close()
    bars.close()
    del lens, bars, other
    gc.collect()
    assert other_ref() is None


def test_link_does_not_keep_a_closed_attention_patterns_alive(model):
    """An AttentionPatterns follows the selection's position: closing it undoes that link too."""
    dec = _decompose(model)
    grid, pat = rw.StreamGrid(dec), rw.AttentionPatterns(dec, head=0)
    rw.link(grid, pat)
    grid.selected = (1, 2)
    assert pat.position == 2
    pat_ref = weakref.ref(pat)
    pat.close()
    del pat
    gc.collect()
    assert pat_ref() is None, "rw.link kept a closed AttentionPatterns alive"
    grid.selected = (1, 4)  # no link left to a closed view
    grid_ref, dec_ref = weakref.ref(grid), weakref.ref(dec)
    grid.close()
    del grid, dec
    gc.collect()
    assert grid_ref() is None and dec_ref() is None


def test_user_unlink_then_close(model):
    dec = _decompose(model)
    grid, lens = rw.StreamGrid(dec), rw.LogitLens(dec)
    for one in rw.link(grid, lens):
        one.unlink()
    grid.close()  # the link was undone already: no error
    lens.close()


# ----------------------------------------------------------------------------- a real kernel

RERUN_CELL = """\
dec = rw.decompose(model, ids)
dec_refs.append(weakref.ref(dec))
dash = rw.Dashboard(dec)
dash_refs.append(weakref.ref(dash))
dash"""  # the last expression also lands in IPython's Out history


class Kernel:
    """A kernel driven the way JupyterLab does it: each execute_request carries metadata.cellId."""

    def __init__(self):
        from jupyter_client.manager import start_new_kernel

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.manager, self.client = start_new_kernel(kernel_name="python3", env=env, startup_timeout=120)

    def run(self, code: str, cell_id: str, expression: str | None = None) -> str | None:
        content = {"code": code, "silent": False, "store_history": True, "allow_stdin": False,
                   "stop_on_error": True, "user_expressions": {"x": expression} if expression else {}}
        msg = self.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.client.shell_channel.send(msg)
        while True:
            reply = self.client.get_shell_msg(timeout=300)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                break
        body = reply["content"]
        assert body["status"] == "ok", "\n".join(body.get("traceback", [])) or body
        if expression:
            result = body["user_expressions"]["x"]
            assert result["status"] == "ok", result
            return result["data"]["text/plain"]
        return None

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    k.run("import gc, weakref, sys\nsys.path.insert(0, %r)\nimport resid_widgets as rw\n"
          "from models_zoo import build, random_ids\nmodel, ids = build('llama'), random_ids(7)\n"
          "dec_refs, dash_refs = [], []" % str(REPO / "tests"), cell_id="setup")
    yield k
    k.close()


def test_rerun_cell_in_a_loop_keeps_one_dashboard(kernel):
    for _ in range(6):
        kernel.run(RERUN_CELL, cell_id="dashboard-cell")
    count = "(gc.collect(), sum(r() is not None for r in dec_refs), " \
            "sum(r() is not None and r().comm is not None for r in dash_refs))[1:]"
    assert kernel.run("", cell_id="check", expression=count) == "(1, 1)", \
        "re-running a dashboard cell must leave one Decomposition and one open Dashboard"
    # another cell's views are not touched by re-running this one
    kernel.run("keep = rw.StreamGrid(dec)", cell_id="other-cell")
    kernel.run(RERUN_CELL, cell_id="dashboard-cell")
    assert kernel.run("", cell_id="check", expression="keep.comm is not None and keep._dec is not None") == "True"


def test_rerun_keeps_views_when_switched_off(kernel):
    kernel.run("rw.views.lifetime.CLOSE_ON_RERUN = False", cell_id="switch")
    try:
        for _ in range(2):
            kernel.run("kept = rw.StreamGrid(dec); kept_refs = globals().get('kept_refs', []) + [weakref.ref(kept)]",
                       cell_id="keeping-cell")
        assert kernel.run("", cell_id="check",
                          expression="sum(r() is not None and r().comm is not None for r in kept_refs)") == "2"
    finally:
        kernel.run("rw.views.lifetime.CLOSE_ON_RERUN = True", cell_id="switch")


def test_no_cell_id_no_kernel_nothing_closed(model):
    """Outside a notebook (scripts, nbclient without cell ids) views live until closed."""
    assert lifetime._running_cell() is None
    view = rw.StreamGrid(_decompose(model))
    assert view.comm is not None
    view.close()
