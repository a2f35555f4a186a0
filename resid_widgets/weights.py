"""Reading weights safely, also from models dispatched with accelerate (``device_map``).

accelerate may keep a module's parameters on the ``meta`` device and load them only for the
duration of its forward (CPU/disk offload). :func:`materialized` loads them the same way for a
moment and puts them back, so the model is left as it was found.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch


@contextmanager
def materialized(module: torch.nn.Module, root: torch.nn.Module | None = None):
    """Within the block, ``module``'s parameters are real tensors (not ``meta``).

    ``root`` (an ancestor, e.g. the decoder layer) is searched for the hook that loads them when
    accelerate hooked a parent rather than ``module`` itself (``preload_module_classes``).
    """
    offloaded = any(p.device.type == "meta" for p in module.parameters(recurse=False))
    owner = _loading_owner(module, root) if offloaded else None
    if owner is None:
        yield module
        return
    owner._hf_hook.pre_forward(owner)
    try:
        yield module
    finally:
        owner._hf_hook.post_forward(owner, None)


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
