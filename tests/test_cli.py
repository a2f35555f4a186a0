"""The command line: resid-widgets snapshot ... -o out.html.

A tiny random Llama with a byte-level BPE tokenizer trained here stands in for a model folder,
so nothing downloads; the bundled SmolLM2 (default model and its .gguf file) is marked slow.
"""

from __future__ import annotations

import json
import os
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
