"""Attention weights and values, read through transformers' public ``AttentionInterface``.

Requirements, in order:

1. Only public extension points: an attention function registered with
   ``transformers.AttentionInterface.register`` and its mask builder with
   ``transformers.AttentionMaskInterface.register``; the model switched to it with
   ``model.set_attn_implementation(...)`` for one forward pass and switched back afterwards, also
   when the pass raises. No modeling module's globals or private functions are read or patched
   (transformers 5.24 wrapped attention ``forward`` methods in a decorator, which broke a capture
   that looked functions up in ``forward.__globals__``).
2. The eager maths every supported family applies, exactly: the scaling the module passes, the
   causal and sliding-window masks built by transformers' own eager mask builder, attention
   logit soft-capping (``softcap=``, Gemma 2), attention sinks (``s_aux=``), grouped-query heads,
   softmax in float32.
3. Checked end to end: the stream entering the final norm in the capture pass must match the
   model's own pass (its usual attention implementation) to rounding. A family whose attention
   differs from these maths raises :class:`CaptureError` instead of giving wrong weights.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from .errors import ResidWidgetsError

#: The name the capture function is registered under in transformers' attention interfaces.
CAPTURE_IMPLEMENTATION = "resid_widgets_capture"

# id(attention module) -> recorder(probs [B, H, T, S], values [B, KV, S, dh]); filled only while a
# capture runs. Keys are module identities, so captures of different models never mix.
_recorders: dict[int, Callable[[torch.Tensor, torch.Tensor], None]] = {}
_recorders_lock = threading.Lock()
_registered = False


class CaptureError(ResidWidgetsError, RuntimeError):
    """Attention weights cannot be read for this model (the message says why)."""


def capture_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                              value: torch.Tensor, attention_mask: torch.Tensor | None,
                              scaling: float | None = None, dropout: float = 0.0,
                              softcap: float | None = None, s_aux: torch.Tensor | None = None,
                              **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention with the signature of transformers' attention interface.

    Args:
        query: [B, H, T, dh]; key, value: [B, KV, S, dh] (KV divides H: grouped-query heads).
        attention_mask: additive float or boolean mask [B, 1, T, >= S] (causal, sliding window).
        scaling: multiplies q·k (default dh ** -0.5); softcap: cap · tanh(scores / cap);
        s_aux: [H] attention-sink logits, a column that takes probability mass and is dropped.

    Returns:
        (output [B, T, H, dh], probabilities [B, H, T, S]); the probabilities and the values are
        also handed to the active capture of ``module``, if any.
    """
    n_rep = query.shape[1] // key.shape[1]
    keys = key.repeat_interleave(n_rep, dim=1) if n_rep > 1 else key
    values = value.repeat_interleave(n_rep, dim=1) if n_rep > 1 else value
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, keys.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : keys.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    if s_aux is not None:
        sinks = s_aux.reshape(1, -1, 1, 1).expand(query.shape[0], -1, query.shape[-2], -1).to(scores.dtype)
        both = torch.cat([scores, sinks], dim=-1)
        both = both - both.max(dim=-1, keepdim=True).values
        probs = torch.softmax(both, dim=-1, dtype=torch.float32)[..., :-1].to(query.dtype)
    else:
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, values).transpose(1, 2).contiguous()
    recorder = _recorders.get(id(module))
    if recorder is not None:
        recorder(probs, value)
    return output, probs


def register_capture_implementation() -> str:
    """Register the capture function and its (eager) mask builder with transformers, once."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface, AttentionMaskInterface

        AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture_attention_forward)
        AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, AttentionMaskInterface()["eager"])
        _registered = True
    return CAPTURE_IMPLEMENTATION


def attention_implementation(model: torch.nn.Module) -> str | None:
    """The model's current attention implementation name.

    transformers keeps it only in the private ``config._attn_implementation`` (no public getter
    up to 5.24; see docs/compatibility.md). It is read to switch the model back after a capture:
    where it is gone, :class:`CaptureError` says so rather than leaving the model switched.

    Args:
        model: a Hugging Face model.

    Raises:
        CaptureError: the config keeps no implementation name.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "_attn_implementation"):
        raise CaptureError(f"{type(model).__name__}'s config has no _attn_implementation: this transformers release "
                           "keeps the attention implementation elsewhere, so resid_widgets could not restore it after "
                           "reading attention weights (docs/compatibility.md lists the checked releases).")
    return config._attn_implementation


@contextmanager
def implementation_switched(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Within the block the model computes attention with ``name``; afterwards its previous
    implementation is set back (``set_attn_implementation``), also when the block raises.

    Args:
        model: a Hugging Face model.
        name: a registered attention implementation ("eager", or resid_widgets' capture).
    """
    if not hasattr(model, "set_attn_implementation"):
        raise CaptureError(f"{type(model).__name__} has no set_attn_implementation(): attention weights are read "
                           "through transformers' AttentionInterface, which needs a transformers PreTrainedModel "
                           "of a supported family.")
    previous = attention_implementation(model)
    model.set_attn_implementation(name)
    try:
        if attention_implementation(model) != name:
            raise CaptureError(f"{type(model).__name__} cannot switch its attention implementation (transformers "
                               "refused set_attn_implementation): its attention does not go through "
                               "transformers' AttentionInterface, so its weights cannot be read.")
        yield
    finally:
        if attention_implementation(model) != previous and previous is not None:
            model.set_attn_implementation(previous)


@contextmanager
def recording(modules: list[torch.nn.Module],
              on_record: Callable[[int, torch.Tensor, torch.Tensor], None]) -> Iterator[None]:
    """While the block runs, ``on_record(i, probs [B, H, T, S], values [B, KV, S, dh])`` is called
    as the attention of ``modules[i]`` computes (detached, on the model's device and in its dtype).
    A caller that reduces them at once holds one layer's weights at a time. The recorders are
    removed on exit.

    Args:
        modules: the attention modules watched.
        on_record: called with (index in ``modules``, probs, values).

    Raises:
        CaptureError: another capture of these modules is running.
    """

    def recorder(i):
        def record(p, v):
            on_record(i, p.detach(), v.detach())
        return record

    with _recorders_lock:
        taken = [id(module) for module in modules if id(module) in _recorders]
        if taken:
            raise CaptureError("another attention capture of this model is running: captures of one model run "
                               "one at a time.")
        for i, module in enumerate(modules):
            _recorders[id(module)] = recorder(i)
    try:
        yield
    finally:
        with _recorders_lock:
            for module in modules:
                _recorders.pop(id(module), None)
