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
def materialized(module: torch.nn.Module):
    """Within the block, ``module``'s parameters are real tensors (not ``meta``)."""
    hook = getattr(module, "_hf_hook", None)
    offloaded = any(p.device.type == "meta" for p in module.parameters(recurse=False))
    if hook is None or not offloaded or not hasattr(hook, "pre_forward"):
        yield module
        return
    hook.pre_forward(module)
    try:
        yield module
    finally:
        hook.post_forward(module, None)


def linear_weight(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W [out, in], b [out] or None) of a Linear or of GPT-2's transposed Conv1D, as fp32 copies."""
    with materialized(module):
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
