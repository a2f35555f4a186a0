"""Reading weights: the :class:`WeightsReader` interface, and reading safely from models
dispatched with accelerate (``device_map``).

accelerate may keep a module's parameters on the ``meta`` device and load them only for the
duration of its forward (CPU/disk offload). :func:`materialized` loads them the same way for a
moment and puts them back, so the model is left as it was found.
"""
from __future__ import annotations

import contextlib
import weakref
from contextlib import contextmanager
from typing import Protocol, Sequence, runtime_checkable

import torch

from .adapters.base import Adapter, get_module, require_module
from .errors import UnsupportedModelError
from .model_state import model_lock
from .norms import Norm


@contextmanager
def materialized(module: torch.nn.Module, root: torch.nn.Module | None = None):
    """Within the block, ``module``'s parameters are real tensors (not ``meta``).

    ``root`` (an ancestor, e.g. the decoder layer) is searched for the hook that loads them when
    accelerate hooked a parent rather than ``module`` itself (``preload_module_classes``).
    Loading goes through accelerate's public ``align_module_device``; finding the hook reads
    accelerate's ``_hf_hook`` (see docs/compatibility.md). Where that no longer loads the weights,
    :class:`~resid_widgets.errors.UnsupportedModelError` says so instead of reading ``meta`` tensors.

    Args:
        module: the module whose weights are read.
        root: an ancestor to search for the loading hook, or None.
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
    return any(param.device.type == "meta" for param in module.parameters(recurse=False))


def _loading_owner(module: torch.nn.Module, root: torch.nn.Module | None) -> torch.nn.Module | None:
    """``module`` if it has an accelerate hook, else its nearest ancestor under ``root`` whose
    hook loads its submodules' offloaded weights, else None."""
    if hasattr(getattr(module, "_hf_hook", None), "pre_forward"):
        return module
    if root is None:
        return None
    path = next((name for name, candidate in root.named_modules() if candidate is module), None)
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

    ``root``: see :func:`materialized`.

    Args:
        module: a Linear or a Conv1D.
        root: see :func:`materialized`.
    """
    with materialized(module, root):
        weight = module.weight.detach()
        if type(module).__name__ == "Conv1D":  # GPT-2 stores [in, out]
            weight = weight.t()
        bias = getattr(module, "bias", None)
        return weight.float().clone(), (None if bias is None else bias.detach().float().clone())


def module_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` computes (accelerate's execution device when it dispatches).

    Args:
        module: any module.
    """
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for param in module.parameters():
        if param.device.type != "meta":
            return param.device
    return torch.device("cpu")


# fp32 copies of half-precision unembeddings, kept while the parameter lives and is unchanged
# (checked against the tensor's in-place version counter), so repeated decompositions don't
# re-cast a [vocab, d_model] matrix each time. Keyed by id() since tensors hash by value.
_FP32_CACHE: dict[int, tuple] = {}


def unembedding_fp32(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_U [V, d], b_U [V] or None) in fp32 without copying fp32 weights (read-only use).

    Args:
        module: the unembedding (a Linear, or a Conv1D).
    """
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


@runtime_checkable
class WeightsReader(Protocol):
    """The weights behind the per-head and per-neuron splits, read layer by layer.

    A :class:`~resid_widgets.Decomposition` holds one as ``dec.weights``. Implemented by
    :class:`LayerWeights` (Hugging Face models, through an adapter) and by the TransformerLens
    backend's :class:`~resid_widgets.backends.transformer_lens.TLWeights`. Tensors are fp32 copies
    (read-only use), on the CPU or on the device the model keeps the weight.
    """

    def attn_out(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_O [d_model, H*d_head], b_O [d_model] or None): the attention output projection."""
        ...

    def mlp_out(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_out [d_model, d_ff], b_out [d_model] or None): the FFN output projection."""
        ...

    def mlp_key(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(K [d_ff, d_model], b [d_ff] or None): each row one neuron's key (the gate of a gated FFN)."""
        ...

    def norm(self, layer: int, which: str) -> Norm | None:
        """The layer's norm ``which`` in {"attn", "mlp", "attn_post", "mlp_post"}, or None where
        the layer has none (e.g. no post-norms outside Gemma 2/3 and OLMo 2/3)."""
        ...


class LayerWeights:
    """Reads one family's output projections and norms, layer by layer (fp32 copies on demand).

    Weights that accelerate offloads are loaded for the moment they are read, while holding the
    model's lock (``model``), so no run of that model sees them come and go.
    Implements :class:`WeightsReader` for Hugging Face models (the TransformerLens backend has
    its own, :class:`~resid_widgets.backends.transformer_lens.TLWeights`).

    Args:
        layers: the model's decoder layers.
        adapter: its family's adapter (where each layer keeps its projections and norms).
        model: the model, whose lock is held while offloaded weights are loaded (None: no lock).
    """

    def __init__(self, layers: Sequence[torch.nn.Module], adapter: Adapter, model: torch.nn.Module | None = None):
        self._layers = layers
        self._adapter = adapter
        self._lock = model_lock(model) if model is not None else contextlib.nullcontext()
        self._norms: dict[tuple[int, str], Norm | None] = {}

    def _linear(self, layer: int, path: str, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        module = require_module(self._layers[layer], path, what, self._adapter)
        with self._lock:
            return linear_weight(module, self._layers[layer])

    def attn_out(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_O [d_model, H*d_head], b_O [d_model] or None)."""
        return self._linear(layer, self._adapter.attn_out_proj, "attention output projection")

    def mlp_out(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_out [d_model, d_ff], b_out [d_model] or None)."""
        return self._linear(layer, self._adapter.mlp_out_proj, "FFN output projection")

    def mlp_key(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(K [d_ff, d_model], b [d_ff] or None): each row is one neuron's key (gate for gated FFNs)."""
        weight, bias = self._linear(layer, self._adapter.mlp_key, "FFN key")
        if self._adapter.mlp_key_rows == "first_half":
            half = weight.shape[0] // 2
            weight, bias = weight[:half], (None if bias is None else bias[:half])
        return weight, bias

    def norm(self, layer: int, which: str) -> Norm | None:
        """The layer's norm ``which`` in {"attn", "mlp", "attn_post", "mlp_post"}, or None."""
        key = (layer, which)
        if key not in self._norms:
            path = getattr(self._adapter, f"{which}_norm")
            module = get_module(self._layers[layer], path) if path else None
            if module is None:
                self._norms[key] = None
            else:
                with self._lock, materialized(module, self._layers[layer]):
                    self._norms[key] = Norm.from_module(module, self._adapter.norm_kind, self._adapter.norm_offset)
        return self._norms[key]
