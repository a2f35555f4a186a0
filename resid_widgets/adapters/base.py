"""Declarative adapters: where each model family reads and writes its residual stream.

An adapter only names modules (dotted paths, relative to the model or to one decoder layer).
The Hugging Face backend (:mod:`resid_widgets.backends.huggingface`) places the hooks, collects and
checks (:mod:`resid_widgets.checks`). A path may list alternatives separated by ``|`` (the first
that exists is used), because module names move between transformers releases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import UnsupportedModelError


@dataclass(frozen=True)
class Adapter:
    """Where one model family keeps its residual stream (paths are dotted module paths,
    alternatives split by ``|``).

    Attributes:
        name: the family's name, as :func:`supported_families` lists it.
        model_types: the ``config.model_type`` values it serves.
        layers, final_norm, unembed: model-level paths: the ModuleList of decoder blocks, the
            final norm, the unembedding.
        attn, mlp: layer-level paths (relative to one block, as all below) of the modules whose
            output (first element when a tuple) is what the sub-layer computes, before any
            post-norm.
        attn_post_norm, mlp_post_norm: norms applied to that output before it is added (Gemma
            2/3, OLMo 2/3); their output is then the delta. None where there is none.
        attn_out_proj: the linear map whose input is the concatenated head outputs [T, H*d_head].
        mlp_out_proj: the linear map whose input is the neuron activations [T, d_ff].
        attn_norm, mlp_norm: the pre-norms each sub-layer reads the stream through (None where a
            sub-layer reads the stream itself, as in OLMo 2).
        mlp_key: the linear map whose rows are the neurons' keys (the gate for gated FFNs);
            ``mlp_key_rows`` = "first_half" where gate and up are fused (Phi-3).
        attn_key: the linear map whose output holds the attention keys (before RoPE or a key
            norm), read by the key-path ablations of ``rw.analysis.induction_circuit``;
            ``attn_key_columns`` says which of its outputs are keys: None (all of them), "qkv"
            (fused [queries | keys | values], GPT-2, Phi-3) or "qkv_per_head" (per head
            [q | k | v], GPT-NeoX).
        embeddings: (label, path) pairs recorded as separate components (GPT-2's token and
            learned position embeddings). Empty: the embedding is the input of the first block.
        norm_kind: "rms" or "layer"; norm_offset: added to the norm weight (Gemma: 1).
        parallel_residual: whether attention and MLP read the same stream (GPT-NeoX), or a
            function of the model config that says so.
        max_positions_attrs: config attributes holding the longest prompt the model takes.
        notes: free text about the family.
    """

    name: str
    model_types: tuple[str, ...]
    layers: str
    final_norm: str
    unembed: str
    attn: str
    mlp: str
    attn_out_proj: str
    mlp_out_proj: str
    attn_norm: str | None
    mlp_norm: str | None
    mlp_key: str
    mlp_key_rows: str | None = None
    attn_key: str | None = None
    attn_key_columns: str | None = None
    attn_post_norm: str | None = None
    mlp_post_norm: str | None = None
    embeddings: tuple[tuple[str, str], ...] = ()
    norm_kind: str = "rms"  # "rms" or "layer"
    norm_offset: float = 0.0  # Gemma's RMSNorm multiplies by (1 + weight)
    parallel_residual: Callable[[object], bool] | bool = False
    max_positions_attrs: tuple[str, ...] = ("max_position_embeddings", "n_positions")
    notes: str = ""

    def delta_path(self, kind: str) -> str:
        """The layer-level path of the module whose output is what sub-layer ``kind`` ("attn" or
        "mlp") adds to the stream: its post-norm where the family has one, else the sub-layer.

        Args:
            kind: "attn" or "mlp".
        """
        return getattr(self, f"{kind}_post_norm") or getattr(self, kind)

    def is_parallel(self, config) -> bool:
        """Whether a model of this family with ``config`` has a parallel residual.

        Args:
            config: the model's config.
        """
        parallel = self.parallel_residual
        return bool(parallel(config)) if callable(parallel) else bool(parallel)


_REGISTRY: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> Adapter:
    """Make ``adapter`` the one used for every ``config.model_type`` it lists.

    Args:
        adapter: the family's declaration; it replaces any adapter registered for those types.

    Returns:
        ``adapter`` (so a module can register and keep it in one line).
    """
    for model_type in adapter.model_types:
        _REGISTRY[model_type] = adapter
    return adapter


def supported_families() -> list[str]:
    """The names of the registered families (built in and :func:`register_adapter`'s), sorted."""
    return sorted({adapter.name for adapter in _REGISTRY.values()})


def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module | None:
    """The module at a dotted ``path`` (alternatives split by ``|``), or None.

    Args:
        root: the module the path starts from.
        path: e.g. "model.layers" or "model.norm|model.final_layernorm".
    """
    for candidate in path.split("|"):
        module = root
        for part in candidate.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None:
            return module
    return None


def require_module(root: torch.nn.Module, path: str, what: str, adapter: Adapter) -> torch.nn.Module:
    """The module at ``path`` under ``root`` (see :func:`get_module`).

    Args:
        root: the module the path starts from.
        path: the dotted path (alternatives split by ``|``).
        what: what the module is, for the error ("final norm").
        adapter: the adapter that declared the path, for the error.

    Raises:
        UnsupportedModelError: nothing is at ``path``; the message says what to pass instead.
    """
    module = get_module(root, path)
    if module is None:
        raise UnsupportedModelError(
            f"{type(root).__name__} has no {what} at '{path}' (adapter '{adapter.name}'). "
            + ("A causal language model (e.g. AutoModelForCausalLM, *ForCausalLM) is needed: "
               "a base model without its unembedding cannot be read out."
               if what in ("unembedding", "final norm") else
               "The installed transformers may have renamed it: describe the model with "
               "rw.Adapter(...) and pass adapter= to rw.decompose.")
        )
    return module


def adapter_for(model: torch.nn.Module) -> Adapter:
    """The registered adapter for ``model.config.model_type``; a clear error otherwise.

    Args:
        model: a Hugging Face model (its ``config.model_type`` is looked up).

    Raises:
        UnsupportedModelError: no adapter is registered for that model type.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type in _REGISTRY:
        return _REGISTRY[model_type]
    raise UnsupportedModelError(
        f"No adapter for model_type={model_type!r} ({type(model).__name__}). Supported families: "
        f"{', '.join(supported_families())} (model types: {', '.join(sorted(_REGISTRY))}). "
        "To add one, describe where the stream is read and written: "
        "rw.register_adapter(rw.Adapter(name=..., model_types=(...,), layers='model.layers', "
        "final_norm='model.norm', unembed='lm_head', attn='self_attn', mlp='mlp', ...)) "
        "- see resid_widgets/adapters/families.py for complete examples (rw.adapters.families.LLAMA)."
    )
