"""Reading weights safely, also from models dispatched with accelerate (``device_map``).

accelerate may keep a module's parameters on the ``meta`` device and load them only for the
duration of its forward (CPU/disk offload). :func:`materialized` loads them the same way for a
moment and puts them back, so the model is left as it was found.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch

from .errors import UnsupportedModelError


@contextmanager
def materialized(module: torch.nn.Module, root: torch.nn.Module | None = None):
    """Within the block, ``module``'s parameters are real tensors (not ``meta``).

    ``root`` (an ancestor, e.g. the decoder layer) is searched for the hook that loads them when
    accelerate hooked a parent rather than ``module`` itself (``preload_module_classes``).
    Loading goes through accelerate's public ``align_module_device``; finding the hook reads
    accelerate's ``_hf_hook`` (see docs/compatibility.md). Where that no longer loads the weights,
    :class:`~resid_widgets.errors.UnsupportedModelError` says so instead of reading ``meta`` tensors.
    """
    if not _has_meta(module):
        yield module
        return
    owner = _loading_owner(module, root)
    if owner is None:
        raise UnsupportedModelError(_NOT_LOADED.format(name=type(module).__name__))
    from accelerate.utils import align_module_device

    with align_module_device(owner):
        if _has_meta(module):
            raise UnsupportedModelError(_NOT_LOADED.format(name=type(module).__name__))
        yield module


_NOT_LOADED = ("{name}'s weights are on the meta device and no accelerate hook loaded them (accelerate's "
               "offload hooks may have changed: docs/compatibility.md lists the accelerate versions this was "
               "checked on). Load the model without offloading, or with a checked accelerate version.")


def _has_meta(module: torch.nn.Module) -> bool:
    return any(p.device.type == "meta" for p in module.parameters(recurse=False))


def _loading_owner(module: torch.nn.Module, root: torch.nn.Module | None) -> torch.nn.Module | None:
    """``module`` if it has an accelerate hook, else its nearest ancestor under ``root`` whose
    hook loads its submodules' offloaded weights, else None."""
    if hasattr(getattr(module, "_hf_hook", None), "pre_forward"):
        return module
    if root is None:
        return None
    path = next((name for name, m in root.named_modules() if m is module), None)
    if not path:
        return None
    parts = path.split(".")
    for n in range(len(parts) - 1, -1, -1):
        ancestor = root.get_submodule(".".join(parts[:n]))
        hook = getattr(ancestor, "_hf_hook", None)
        hooks = getattr(hook, "hooks", [hook])  # a SequentialHook or one hook
        if any(getattr(h, "offload", False) and getattr(h, "place_submodules", False) for h in hooks):
            return ancestor
    return None


def linear_weight(module: torch.nn.Module, root: torch.nn.Module | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W [out, in], b [out] or None) of a Linear or of GPT-2's transposed Conv1D, as fp32 copies.

    ``root``: see :func:`materialized`."""
    with materialized(module, root):
        weight = module.weight.detach()
        if type(module).__name__ == "Conv1D":  # GPT-2 stores [in, out]
            weight = weight.t()
        bias = getattr(module, "bias", None)
        return weight.float().clone(), (None if bias is None else bias.detach().float().clone())


def module_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` computes (accelerate's execution device when it dispatches)."""
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


# fp32 copies of half-precision unembeddings, kept while the parameter lives and is unchanged
# (checked against the tensor's in-place version counter), so repeated decompositions don't
# re-cast a [vocab, d_model] matrix each time. Keyed by id() since tensors hash by value.
_FP32_CACHE: dict[int, tuple] = {}


def unembedding_fp32(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_U [V, d], b_U [V] or None) in fp32 without copying fp32 weights (read-only use)."""
    with materialized(module):
        weight = module.weight
        if weight.device.type == "meta":
            return linear_weight(module)
        bias = getattr(module, "bias", None)
        bias = None if bias is None else bias.detach().float()
        if weight.dtype == torch.float32:
            return weight.detach(), bias
        cached = _FP32_CACHE.get(id(weight))
        if cached is None or cached[0]() is not weight or cached[1] != weight._version:
            key = id(weight)
            cached = (weakref.ref(weight, lambda _: _FP32_CACHE.pop(key, None)), weight._version,
                      weight.detach().float())
            _FP32_CACHE[key] = cached
        return cached[2], bias
