"""A patching result computed independently of the engine: plain forward pre-hooks on a tiny
transformers model patch the clean stream before each block (TransformerLens ``resid_pre``) into
the corrupt run, one position at a time. The views take it as they take ``rw.patching``'s result."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class HookPatching:
    """raw / values [L, T]; labels "resid_pre.l"; tokens [T]; metric a callable on logits [V]."""

    raw: torch.Tensor
    values: torch.Tensor
    labels: list
    clean_value: float
    corrupt_value: float
    tokens: list
    metric: object = None
    method: str = "exact"
    extra: dict = field(default_factory=dict)


def logit_diff_ids(a: int, b: int):
    """metric(logits [V]) = logits[a] - logits[b]."""

    def metric(logits):
        return logits[a] - logits[b]

    metric.name = f"logit[{a}] − logit[{b}]"
    return metric


def hook_resid_patching(model, clean_ids, corrupt_ids, metric) -> HookPatching:
    """Patch the clean ``resid_pre`` of every layer and position into the corrupt run (hooks)."""
    layers = model.model.layers
    clean_ids, corrupt_ids = clean_ids.reshape(1, -1), corrupt_ids.reshape(1, -1)
    T = clean_ids.shape[1]
    stored = []
    hooks = [layer.register_forward_pre_hook(lambda m, args, kw: stored.append(args[0] if args else kw["hidden_states"]),
                                             with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            clean_logits = model(clean_ids).logits[0, -1]
    finally:
        for hk in hooks:
            hk.remove()
    with torch.no_grad():
        corrupt_logits = model(corrupt_ids).logits[0, -1]
    clean_value, corrupt_value = float(metric(clean_logits)), float(metric(corrupt_logits))
    raw = torch.zeros(len(layers), T)
    for l, layer in enumerate(layers):
        for p in range(T):
            def patch(m, args, kw, l=l, p=p):
                h = (args[0] if args else kw["hidden_states"]).clone()
                h[:, p] = stored[l][:, p]
                if args:
                    return (h, *args[1:]), kw
                return args, {**kw, "hidden_states": h}

            hk = layer.register_forward_pre_hook(patch, with_kwargs=True)
            try:
                with torch.no_grad():
                    raw[l, p] = float(metric(model(corrupt_ids).logits[0, -1]))
            finally:
                hk.remove()
    values = (raw - corrupt_value) / (clean_value - corrupt_value)
    return HookPatching(raw=raw, values=values, labels=[f"resid_pre.{l}" for l in range(len(layers))],
                        clean_value=clean_value, corrupt_value=corrupt_value,
                        tokens=[f"t{int(i)}" for i in corrupt_ids[0]], metric=metric)
