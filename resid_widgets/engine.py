"""``decompose``: the one entry point, dispatching to a backend.

- :mod:`resid_widgets.backends.huggingface`: transformers causal LMs, described by an
  :class:`~resid_widgets.adapters.Adapter`;
- :mod:`resid_widgets.backends.transformer_lens`: TransformerLens ``HookedTransformer`` /
  ``TransformerBridge`` models, read through their own hook points.

Both return the same :class:`Decomposition`, checked the same way (:mod:`resid_widgets.checks`).
"""
from __future__ import annotations

import torch

from .adapters.base import Adapter
from .backends import nnsight as nnsight_backend
from .backends.huggingface import decompose_huggingface
from .backends.transformer_lens import decompose_transformer_lens
from .core import Decomposition
from .errors import UnsupportedModelError


def decompose(model, prompt, tokenizer=None, *, adapter: Adapter | None = None) -> Decomposition:
    """Run ``prompt`` through ``model`` once and split its residual stream into components.

    Args:
        model: a Hugging Face causal LM of a supported family (GPT-2, GPT-NeoX/Pythia, Llama,
            Mistral, Qwen2/3, SmolLM, Gemma 1/2/3, Phi-3, OLMo 1/2/3), also dispatched with
            accelerate's ``device_map``; or a TransformerLens ``HookedTransformer`` /
            ``TransformerBridge``; or an ``nnsight.LanguageModel`` of one (for a model on NDIF
            see ``rw.decompose_remote``). Runs of one model from several threads take turns.
        prompt: text (needs ``tokenizer``), or token ids (a list, LongTensor or numpy array of
            shape [T] or [1, T]).
        tokenizer: the model's tokenizer, used to tokenize text and decode token texts; one that
            cannot be the model's (larger vocabulary, other BOS/EOS ids) raises TokenizerError.
        adapter: describe an unsupported family yourself (see :class:`resid_widgets.Adapter`).

    Raises:
        AdditivityError / ReadoutError: (fp32) the deltas miss the model's own stream, or the
            declared final norm + unembedding miss its own logits; warnings in half precision.

    Returns:
        :class:`Decomposition` with ``deltas``/``states`` [C, T, d_model] (float32, CPU) and
        ``logits`` [T, vocab], C = 1 (+1 for learned positions) + 2 * n_layers.
    """
    if nnsight_backend.is_nnsight(model):
        return nnsight_backend.decompose_nnsight(model, prompt, tokenizer, adapter=adapter)
    if not isinstance(model, torch.nn.Module):
        raise UnsupportedModelError(f"model must be a torch.nn.Module (a causal LM), not {type(model).__name__}")
    if is_transformer_lens(model):
        return decompose_transformer_lens(model, prompt, tokenizer=tokenizer)
    return decompose_huggingface(model, prompt, tokenizer, adapter=adapter)


def is_transformer_lens(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a TransformerLens model (a HookedTransformer or a TransformerBridge).

    Args:
        model: any torch module.
    """
    return any(cls.__module__.startswith("transformer_lens") for cls in type(model).__mro__)
