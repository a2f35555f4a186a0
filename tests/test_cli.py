"""The command line: resid-widgets snapshot ... -o out.html.

A tiny random Llama with a byte-level BPE tokenizer trained here stands in for a model folder,
so nothing downloads; the bundled SmolLM2 (default model and its .gguf file) is marked slow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resid_widgets import cli

REPO = Path(__file__).resolve().parent.parent
CORPUS = [
    "The capital of France is Paris.",
    "The capital of Italy is Rome.",
    "The capital of Spain is Madrid.",
    "Paris is in France and Rome is in Italy.",
] * 4


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    assert tok.convert_tokens_to_ids("ĠParis") != tok.unk_token_id
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


def run_cli(capsys, *args):
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "snapshot" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exc:
        cli.main(["snapshot", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--prompt", "--model", "--target", "--view", "--output", "--budget-mb", "examples:", ".gguf"):
        assert flag in text


def test_no_command_prints_help(capsys):
    rc, out, _ = run_cli(capsys)
    assert rc == 2 and "snapshot" in out


def test_version(capsys):
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out.startswith("resid-widgets ")


def test_errors_are_clear(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "hi", "--model", str(tmp_path / "nope"), "-q")
    assert rc == 1 and "model not found" in err and "Traceback" not in err

    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "hi", "--model", str(tmp_path / "empty"), "-q")
    assert rc == 1 and "config.json" in err

    (tmp_path / "weights.bin").write_bytes(b"x")
    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "hi", "--model", str(tmp_path / "weights.bin"), "-q")
    assert rc == 1 and ".gguf" in err

    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "   ", "-q")
    assert rc == 1 and "prompt is empty" in err

    with pytest.raises(SystemExit) as exc:
        cli.main(["snapshot", "--prompt", "hi", "--view", "nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_snapshot_from_model_folder(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "grid.html"
    rc, _, err = run_cli(
        capsys, "snapshot", "--prompt", "The capital of France is", "--model", str(tiny_model_dir),
        "--target", " Paris", "--target", " Rome", "--view", "bars", "-o", str(out),
    )
    assert rc == 0, err
    assert out.is_file() and out.stat().st_size > 1000
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and 'id="rw-snapshot-data"' in text
    assert "Paris" in text and "Rome" in text
    assert "running the model" in err  # the progress bar
    assert f"wrote {out}" in err


@pytest.mark.browser
def test_cli_snapshot_opens_offline(capsys, tmp_path, tiny_model_dir, open_offline):
    if not (REPO / "resid_widgets" / "static" / "widget.js").exists():
        pytest.skip("resid_widgets/static/widget.js is not built")
    out = tmp_path / "dash.html"
    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "The capital of France is", "--model", str(tiny_model_dir), "-o", str(out), "-q")
    assert rc == 0, err
    pg = open_offline(out)
    pg.page.wait_for_selector('[data-rw="dashboard"] [data-rw="stream-grid"]', timeout=10_000)
    pg.check_clean()


def test_bad_target_is_clear(capsys, tmp_path, tiny_model_dir):
    rc, _, err = run_cli(
        capsys, "snapshot", "--prompt", "The capital of France is", "--model", str(tiny_model_dir),
        "--target", " Zanzibar Zanzibar", "-o", str(tmp_path / "x.html"), "-q",
    )
    assert rc == 1 and "Zanzibar" in err and "Traceback" not in err


def test_console_script_module_entry(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "resid_widgets.cli", "snapshot", "--help"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "resid-widgets snapshot" in proc.stdout


def test_pyproject_declares_the_script():
    text = (REPO / "pyproject.toml").read_text()
    assert 'resid-widgets = "resid_widgets.cli:main"' in text


@pytest.mark.slow
def test_snapshot_default_smollm2(capsys, tmp_path):
    out = tmp_path / "dash.html"
    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "The capital of France is", "--target", " Paris", "-o", str(out))
    assert rc == 0, err
    assert out.stat().st_size <= 5_000_000
    data = out.read_text(encoding="utf-8").split('id="rw-snapshot-data">')[1].split("</script>")[0]
    data = json.loads(data)
    assert data["models"], data.keys()


@pytest.mark.slow
def test_snapshot_from_gguf(capsys, tmp_path):
    from resid_widgets import models

    try:
        gguf = models.smollm2_gguf()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    out = tmp_path / "lens.html"
    rc, _, err = run_cli(capsys, "snapshot", "--prompt", "One, two, three,", "--model", str(gguf), "--view", "lens", "-o", str(out), "-q")
    assert rc == 0, err
    assert out.is_file()


# ----------------------------------------------------------------------------- the entry point, as a user runs it

def entry_point() -> list[str]:
    """The installed `resid-widgets` script (it imports this checkout through PYTHONPATH), else
    the same main() through the module."""
    import shutil

    script = shutil.which("resid-widgets")
    return [script] if script else [sys.executable, "-m", "resid_widgets.cli"]


def run_entry(cwd: Path, *args: str, env_extra: dict | None = None, preexec_fn=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               **(env_extra or {}))
    return subprocess.run([*entry_point(), "snapshot", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600, preexec_fn=preexec_fn)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, rc: int = 1) -> str:
    assert proc.returncode == rc, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], proc.stderr
    return lines[0]


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: use /sys then)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        folder = Path("/sys")
        try:
            (folder / "resid-widgets-probe.html").open("x").close()
        except OSError:
            return folder
        pytest.skip("no folder that root cannot write to")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


def _special_files(folder: Path) -> None:
    (folder / "prompt.txt").write_bytes(b"caf\xe9 au lait")
    (folder / "afile").write_text("keep me")
    (folder / "afolder").mkdir()
    os.mkfifo(folder / "fifo")
    (folder / "link").symlink_to(folder / "afile")


def _special_files_untouched(folder: Path) -> None:
    import stat

    assert (folder / "afile").read_text() == "keep me" and (folder / "link").is_symlink()
    assert (folder / "afolder").is_dir() and not any((folder / "afolder").iterdir())
    assert stat.S_ISFIFO(os.lstat(folder / "fifo").st_mode)
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case", ["bad utf-8 prompt file", "budget nan", "banana device, default model",
                                  "output is a fifo", "unwritable folder"])
def test_entry_point_errors_are_one_line(case, tmp_path):
    """Each of these used to end in a traceback (or, for --device without --model, in success)."""
    _special_files(tmp_path)
    args, needles, rc = {
        "bad utf-8 prompt file": (["--prompt-file", "prompt.txt"], ["prompt.txt", "not UTF-8", "0xe9"], 1),
        "budget nan": (["-p", "hi", "--budget-mb", "nan"], ["--budget-mb", "finite"], 2),
        "banana device, default model": (["-p", "hi", "--device", "banana"], ["'banana' is not a torch device"], 1),
        "output is a fifo": (["-p", "hi", "-o", "fifo"], ["special file", "refusing to replace"], 1),
        "unwritable folder": (["-p", "hi", "-o", str(_unwritable_folder(tmp_path) / "x.html")], ["cannot write"], 1),
    }[case]
    assert_one_line_error(run_entry(tmp_path, *args, "-q"), *needles, rc=rc)
    _special_files_untouched(tmp_path)


def test_more_bad_arguments_and_outputs(capsys, tmp_path, monkeypatch):
    """The same checks in-process (the entry point calls this main())."""
    _special_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    for args, needle in [(["--budget-mb", "inf"], "finite"), (["--budget-mb", "-1"], "positive"),
                         (["--budget-mb", "x"], "not a number")]:
        with pytest.raises(SystemExit) as exc:
            cli.main(["snapshot", "-p", "hi", *args])
        assert exc.value.code == 2 and needle in capsys.readouterr().err
    for args, needle in [(["--device", "meta"], "meta holds no numbers"),
                         (["-p", "caf\udce9"], "--prompt is not valid UTF-8"),  # argv bytes that are not UTF-8
                         (["-o", "afile/x.html"], "afile is a file, not a folder"),
                         (["-o", "afolder"], "afolder is a folder; give a file name"),
                         (["-o", "link"], "link is a symbolic link")]:
        rc, _, err = run_cli(capsys, "snapshot", "-p", "hi", *args, "-q")
        assert rc == 1 and needle in err and err.count("\n") == 1, err
    _special_files_untouched(tmp_path)


def test_entry_point_device_with_a_model_folder(tmp_path, tiny_model_dir):
    import torch

    proc = run_entry(tmp_path, "-p", "hi", "-m", str(tiny_model_dir), "--device", "banana", "-q")
    assert_one_line_error(proc, "'banana' is not a torch device")
    if not torch.cuda.is_available():
        proc = run_entry(tmp_path, "-p", "hi", "-m", str(tiny_model_dir), "--device", "cuda", "-q")
        assert_one_line_error(proc, "--device cuda is not available on this machine")


def test_entry_point_position_outside_a_one_token_prompt(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tiny_model_dir)("The")["input_ids"]) == 1
    proc = run_entry(tmp_path, "-p", "The", "-m", str(tiny_model_dir), "--position", "5", "-q")
    line = assert_one_line_error(proc, "--position 5 is outside the prompt", "1 token")
    assert proc.stderr.strip() == line, "only the error line (no RuntimeWarning with a source line)"


def test_entry_point_progress_and_a_missing_folder(tmp_path, tiny_model_dir):
    proc = run_entry(tmp_path, "-p", "The capital of France is", "-m", str(tiny_model_dir), "-t", " Paris", "-t", " Rome",
                     "-o", "new/sub/dash.html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "new" / "sub" / "dash.html").is_file()
    assert "resid-widgets: created the folder new\n" in proc.stderr, "a missing folder is created, and said so"
    for step in ("loading the model", "running the model", "building the view"):
        assert step in proc.stderr
    # the writing step fills a bar of its units of work (vector panes, heads, each target's neurons)
    counts = [(int(n), int(total)) for n, total in re.findall(r"writing the snapshot[^\r\n]*?(\d+)/(\d+) \[", proc.stderr)]
    assert counts and max(total for _, total in counts) > 10, proc.stderr
    assert counts[-1][0] == counts[-1][1], "the bar ends full"


@pytest.mark.parametrize("view, marker", [("budget", '"_rw_view":"block-budget"'), ("attention", '"_rw_view":"attention-sources"')])
def test_analysis_views_from_the_cli(view, marker, capsys, tmp_path, tiny_model_dir):
    out = tmp_path / f"{view}.html"
    rc, _, err = run_cli(capsys, "snapshot", "-p", "The capital of France is", "-m", str(tiny_model_dir),
                         "--view", view, "-t", " Paris", "-o", str(out), "-q")
    assert rc == 0, err
    assert marker in out.read_text(encoding="utf-8")
    rc, _, err = run_cli(capsys, "snapshot", "-p", "The capital of France is", "-m", str(tiny_model_dir),
                         "--view", view, "-t", " Paris", "-t", " Rome", "-o", str(out), "-q")
    assert rc == 1 and f"--view {view} shows one target" in err


def test_attention_patterns_from_the_cli(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "patterns.html"
    rc, _, err = run_cli(capsys, "snapshot", "-p", "The capital of France is", "-m", str(tiny_model_dir),
                         "--view", "patterns", "-o", str(out), "-q")
    assert rc == 0, err
    text = out.read_text(encoding="utf-8")
    assert '"_rw_view":"attention-patterns"' in text and "attention patterns: all 2 layers embedded" in text
    rc, _, err = run_cli(capsys, "snapshot", "-p", "The capital of France is", "-m", str(tiny_model_dir),
                         "--view", "patterns", "-t", " Paris", "-o", str(out), "-q")
    assert rc == 1 and err.strip() == "resid-widgets: error: --view patterns shows no target; leave --target out"


def test_view_choices_come_from_the_views_package(capsys):
    from resid_widgets.views import VIEWS

    with pytest.raises(SystemExit):
        cli.main(["snapshot", "--help"])
    text = capsys.readouterr().out
    for cls in VIEWS:
        assert cls.short_name in text


def _fill_disk_after(limit: int):
    def limit_file_size():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_file_size


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_entry_point_write_failing_midway_leaves_nothing(tmp_path, tiny_model_dir):
    """The disk "fills up" 20 kB into the file: a one-line error, the old file intact, no temporary file."""
    (tmp_path / "dash.html").write_text("the previous snapshot")
    proc = run_entry(tmp_path, "-p", "The capital of France is", "-m", str(tiny_model_dir), "-o", "dash.html", "-q",
                     preexec_fn=_fill_disk_after(20_000))
    assert_one_line_error(proc, "could not write dash.html", "too large")
    assert (tmp_path / "dash.html").read_text() == "the previous snapshot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dash.html"]


def test_a_long_step_ticks_on_a_terminal(monkeypatch):
    """On a terminal a step's clock moves while it runs (here a 1.6 s step shows 00:01 before it
    is done), so a long step never looks stuck."""
    import io
    import time

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with cli._Steps(quiet=False).step("a long step"):
        time.sleep(1.6)
    assert re.search(r"a long step[^\r\n]* 0/1 \[00:01", terminal.getvalue()), terminal.getvalue()


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "resid_widgets", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_demo_refuses_a_bad_output_in_one_line(tmp_path):
    (tmp_path / "afolder").mkdir()
    proc = run_demo(tmp_path, "-o", "afolder")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "python -m resid_widgets: error: afolder is a folder; give a file name such as afolder/snapshot.html"


@pytest.mark.slow
def test_demo_writes_its_snapshot(tmp_path):
    proc = run_demo(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout and (tmp_path / "resid_widgets_demo.html").stat().st_size > 100_000
