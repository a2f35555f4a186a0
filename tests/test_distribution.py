"""Distribution: one version everywhere, and nothing local in files made to be shared.

A snapshot of a model loaded from a local folder names the model by the folder's own name, never
by its path (which holds the user's home, user name or host name).
"""
from __future__ import annotations

import getpass
import json
import os
import re
import socket
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

import resid_widgets as rw
from models_zoo import build, random_ids

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


# ----------------------------------------------------------------------------- version

def test_one_version_everywhere():
    version = PYPROJECT["version"]
    package_json = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    assert package_json["version"] == version, "keep package.json's version in step with pyproject.toml"
    assert lock["version"] == lock["packages"][""]["version"] == version, "run npm install after a version change"
    assert rw.__version__ == version, "pip install -e . again: the installed metadata is older than pyproject.toml"
    assert f"## {version}" in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")


def test_license_file_matches_the_declared_licence():
    assert PYPROJECT["license"] == "MIT" and PYPROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "the resid_widgets developers" in text


# ----------------------------------------------------------------------------- no local details

@pytest.mark.parametrize("name_or_path, shown", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("gpt2", "gpt2"),
    ("/home/alice/models/my-llama", "my-llama"),
    ("/home/alice/models/my-llama/", "my-llama"),
    ("~/models/my-llama", "my-llama"),
    ("./my-llama", "my-llama"),
    ("models/llama/checkpoint-100", "checkpoint-100"),
    ("C:\\Users\\alice\\my-llama", "my-llama"),
    ("/home/alice/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M/snapshots/0123abc",
     "HuggingFaceTB/SmolLM2-135M"),
    ("/home/alice/models/model.Q8_0.gguf", "model.Q8_0.gguf"),
    ("", ""),
    ("/", ""),
])
def test_display_name(name_or_path, shown):
    assert rw.models.display_name(name_or_path) == shown


def _local_details(folder: Path) -> list[str]:
    """What must not appear in a shared file: the folder's path, $HOME, the user and host names."""
    found = [str(folder), str(folder.resolve())]
    home = os.path.expanduser("~")
    if home not in ("", "/"):
        found.append(home)
    return found


def _shared_text(page: str) -> str:
    """The page's title and every text of its data (names, tokens, notes), without the views' code
    (whose words, such as 'root', say nothing about the user) or the base64 of binary arrays."""
    def strings(value, key=""):
        if key in ("buffers", "esm", "_esm", "_css"):
            return
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from strings(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    data = json.loads(re.search(r'<script type="application/json" id="rw-snapshot-data">(.*?)</script>', page, re.S)[1])
    title = re.search(r"<title>(.*?)</title>", page, re.S)[1]
    return "\n".join([title, *strings(data)])


def test_snapshot_of_a_locally_loaded_model_holds_no_local_path(tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "my-local-llama"
    build("llama").save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert str(folder) in model.config._name_or_path  # what transformers records: the full path

    dec = rw.decompose(model, random_ids(7))
    assert dec.model_name == "my-local-llama"
    page = rw.export_html(rw.Dashboard(dec), None)
    assert '"model_name":"my-local-llama"' in page
    for detail in _local_details(folder):
        assert detail not in page, f"the snapshot holds {detail!r}"
    text = _shared_text(page)
    assert "my-local-llama" in text
    for name in {getpass.getuser(), socket.gethostname()} - {""}:
        assert not re.search(rf"\b{re.escape(name)}\b", text), f"the snapshot's data holds {name!r}"


def test_transformer_lens_model_loaded_from_a_folder_is_named_by_the_folder(tmp_path):
    pytest.importorskip("transformer_lens", reason="transformer_lens is not installed")
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    folder = tmp_path / "my-local-llama"
    hf = build("llama")
    bridge = build_bridge_from_module(hf, "LlamaForCausalLM", hf_config=hf.config)
    bridge.cfg.model_name = str(folder)  # what boot_transformers(folder) records
    assert rw.decompose(bridge, random_ids(7)).model_name == "my-local-llama"
