"""Modified forward passes: run a model with edits and captures, and leave it as found.

An analysis that asks "what if this block were the identity?" or "what does this module receive?"
re-runs the model with hooks. This module is the one place that does so for Hugging Face models:

- :class:`Edit` changes what one module returns (``on="output"``) or receives (``on="input"``),
  for some rows of the batch or for all of them: make a block the identity, zero a sub-layer's
  output, or write any tensor in (activation patching: ``Edit(module, lambda value, inputs:
  stored_value)``).
- :class:`Capture` records what one module returns or receives (detached).
- :func:`run_forward` runs one batch with its edits and captures; :func:`run_batches` runs many
  variants of one prompt (one batch row per variant), ``batch_size`` rows at a time, and
  concatenates what was captured.

Every run holds the model's lock from its first hook to its last (runs of one model from several
threads take turns, :mod:`resid_widgets.model_state`), runs in ``eval()`` mode under ``no_grad``,
and removes every hook and restores train/eval flags and ``requires_grad`` afterwards, also when
the forward raises.

Example: log p of the top token with block 3 replaced by the identity, next to the intact model::

    layers, final_norm = ...                       # the adapter's modules
    def edits(rows):                               # rows: the variant indices in this batch
        return [Edit.identity(layers[3], rows=[r == 0 for r in rows])]
    run = run_batches(model, token_ids, n_rows=2, edits_for=edits,
                      capture={"final": Capture(final_norm, on="input")}, position=-1)
    run.captured["final"]                          # [2, d_model]: row 0 edited, row 1 intact

Hooks see the module's first positional argument (or its ``hidden_states`` keyword) as its input,
and the first element of a tuple output as its output; the rest of a tuple is passed on unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Sequence

import torch

from .model_state import hooks, model_left_as_found
from .weights import module_device

#: ``fn(value, inputs) -> new value`` of an :class:`Edit`, for the edited rows only:
#: ``value`` is what the module returns (``on="output"``) or receives (``on="input"``),
#: ``inputs`` what it receives (the same tensor for ``on="input"``).
EditFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def first_output(out):
    """The tensor a module returns: ``out`` itself, or the first element of a tuple / list."""
    return out[0] if isinstance(out, (tuple, list)) else out


def replace_first_output(out, new: torch.Tensor):
    """``out`` with its tensor (the first element of a tuple / list) replaced by ``new``."""
    if isinstance(out, tuple):
        return (new,) + tuple(out[1:])
    if isinstance(out, list):
        return [new] + list(out[1:])
    return new


def hidden_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The tensor a module receives: its first positional argument, else ``hidden_states=``
    (else its first keyword argument)."""
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


def _replace_input(args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (new,) + tuple(args[1:]), kwargs
    key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
    return args, {**kwargs, key: new}


def input_device(model: torch.nn.Module) -> torch.device:
    """The device a model's input ids go to (where its input embedding computes)."""
    return module_device(model.get_input_embeddings())


def _row_mask(rows) -> torch.Tensor | None:
    if rows is None:
        return None
    mask = torch.as_tensor(rows, dtype=torch.bool)
    if mask.dim() != 1:
        raise ValueError(f"Edit rows must be a 1-D boolean mask over the batch, got shape {tuple(mask.shape)}.")
    return mask


@dataclass(frozen=True)
class Edit:
    """Change what ``module`` returns or receives, in the batch rows ``rows``.

    Attributes:
        module: the module whose output (or input) is changed.
        fn: ``fn(value, inputs) -> new value`` for the edited rows: ``value`` [b, ...] is the
            module's output (``on="output"``) or input (``on="input"``) in those rows, ``inputs``
            [b, ...] its input there. The result must have ``value``'s shape; it is cast to its
            dtype. ``fn`` may return a stored tensor (patching) as long as the shape matches.
        rows: a boolean mask [B] over the batch (a list, tuple or tensor), or None for every row.
        on: "output" (a forward hook) or "input" (a forward pre-hook).
    """

    module: torch.nn.Module
    fn: EditFunction
    rows: Sequence[bool] | torch.Tensor | None = None
    on: Literal["output", "input"] = "output"

    def __post_init__(self):
        if self.on not in ("output", "input"):
            raise ValueError(f"Edit on={self.on!r}: pass 'output' or 'input'.")

    @classmethod
    def identity(cls, module: torch.nn.Module, rows=None) -> "Edit":
        """The module returns what it receives (a decoder block: the stream passes unchanged)."""
        return cls(module, lambda value, inputs: inputs.clone(), rows)

    @classmethod
    def zero(cls, module: torch.nn.Module, rows=None) -> "Edit":
        """The module returns zeros (a sub-layer: it adds nothing to the stream)."""
        return cls(module, lambda value, inputs: torch.zeros_like(value), rows)

    def _apply(self, value: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        mask = _row_mask(self.rows)
        if mask is None:
            return self.fn(value, inputs).to(value.dtype)
        if mask.shape[0] != value.shape[0]:
            raise ValueError(f"Edit rows has {mask.shape[0]} entries but the batch has {value.shape[0]} rows.")
        new = value.clone()
        new[mask.to(value.device)] = self.fn(value[mask.to(value.device)],
                                             inputs[mask.to(inputs.device)]).to(value.dtype)
        return new

    def register(self, handles: list) -> None:
        """Place the hook on ``module``; its handle goes into ``handles`` (removed by the caller)."""
        if self.on == "output":
            def hook(module, args, kwargs, out):
                value = first_output(out)
                return replace_first_output(out, self._apply(value, hidden_input(args, kwargs)))

            handles.append(self.module.register_forward_hook(hook, with_kwargs=True))
        else:
            def pre_hook(module, args, kwargs):
                value = hidden_input(args, kwargs)
                return _replace_input(args, kwargs, self._apply(value, value))

            handles.append(self.module.register_forward_pre_hook(pre_hook, with_kwargs=True))


@dataclass(frozen=True)
class Capture:
    """Record what ``module`` returns (``on="output"``) or receives (``on="input"``).

    Attributes:
        module: the module to watch.
        on: "output" or "input".

    The first call in a forward pass is kept (a module that runs twice keeps its first value).
    """

    module: torch.nn.Module
    on: Literal["output", "input"] = "output"

    def __post_init__(self):
        if self.on not in ("output", "input"):
            raise ValueError(f"Capture on={self.on!r}: pass 'output' or 'input'.")

    def register(self, handles: list, store: Callable[[torch.Tensor], None]) -> None:
        """Place the hook on ``module``: ``store(tensor)`` receives each value, detached."""
        if self.on == "output":
            handles.append(self.module.register_forward_hook(
                lambda module, args, out: store(first_output(out).detach())))
        else:
            handles.append(self.module.register_forward_pre_hook(
                lambda module, args, kwargs: store(hidden_input(args, kwargs).detach()), with_kwargs=True))


@dataclass
class ForwardRun:
    """What a modified run kept.

    Attributes:
        captured: {name: tensor} per :class:`Capture`: [B, T, ...] from :func:`run_forward`;
            from :func:`run_batches`, [n_rows, ...] at ``position`` or [n_rows, T, ...], on the
            device the model computed it on, in the model's dtype.
        logits: [B, T, vocab] (or [n_rows, vocab] at ``position``) when asked for, else None.
    """

    captured: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


def logits_at_one_position(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward can compute its logits at chosen positions only (Hugging Face's
    ``logits_to_keep``), which :func:`run_batches` uses when it keeps one position."""
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def run_forward(model: torch.nn.Module, input_ids: torch.Tensor, edits: Sequence[Edit] = (),
                capture: Mapping[str, Capture] | None = None, logits: bool = False,
                logits_positions: torch.Tensor | None = None) -> ForwardRun:
    """One forward pass of ``input_ids`` [B, T] (or [T]) with ``edits`` applied.

    Args:
        model: a Hugging Face causal LM (called as ``model(input_ids=..., use_cache=False)``).
        input_ids: LongTensor [B, T] or [T]; moved to the model's input device.
        edits: the changes, placed in order (two edits of one module apply one after the other).
        capture: {name: Capture}: what to record.
        logits: keep the model's output logits [B, T, vocab].
        logits_positions: LongTensor [P]: the model computes its logits at these positions only
            ([B, P, vocab]); needs :func:`logits_at_one_position`.

    Returns:
        :class:`ForwardRun` with one tensor per capture.

    Raises:
        RuntimeError: a captured module did not run (the path names a module outside the forward).
    """
    capture = dict(capture or {})
    ids = input_ids[None] if input_ids.dim() == 1 else input_ids
    seen: dict[str, torch.Tensor] = {}

    def keeper(name):
        def store(value):
            seen.setdefault(name, value)
        return store

    with model_left_as_found(model), hooks(model) as handles:
        for edit in edits:
            edit.register(handles)
        for name, cap in capture.items():
            cap.register(handles, keeper(name))
        kwargs = {} if logits_positions is None else {"logits_to_keep": logits_positions}
        out = model(input_ids=ids.to(input_device(model)), use_cache=False, **kwargs)
    missing = [name for name in capture if name not in seen]
    if missing:
        raise RuntimeError(f"Captured modules did not run in the forward pass: {missing}. Capture modules that the "
                           "model calls (its decoder layers, norms, projections).")
    return ForwardRun(seen, out.logits.detach() if logits else None)


def run_batches(model: torch.nn.Module, input_ids: torch.Tensor, n_rows: int,
                edits_for: Callable[[range], Sequence[Edit]], capture: Mapping[str, Capture] | None = None,
                batch_size: int = 8, position: int | None = None, logits: bool = False,
                after_batch: Callable[[int], None] | None = None) -> ForwardRun:
    """``n_rows`` variants of one prompt, each a batch row, run ``batch_size`` rows at a time.

    Args:
        model: a Hugging Face causal LM.
        input_ids: LongTensor [T]: the prompt every row runs.
        n_rows: how many variants.
        edits_for: ``edits_for(rows)`` -> the edits of one batch, ``rows`` the range of variant
            indices it holds (batch row i is variant ``rows[i]``); an edit's ``rows`` mask is over
            this batch, e.g. ``[r == 3 for r in rows]`` edits variant 3 only.
        capture: {name: Capture}: what to record in every batch.
        batch_size: rows per forward pass (memory grows with it).
        position: keep only this position of each capture and of the logits (saves memory; a
            model that supports it computes its logits at this position only).
        logits: keep the model's output logits.
        after_batch: called with the number of rows each batch ran, after it (a progress bar).

    Returns:
        :class:`ForwardRun` whose tensors are the batches' concatenated along the first dimension:
        [n_rows, ...] at ``position``, else [n_rows, T, ...].
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    ids = input_ids.reshape(-1)
    parts: dict[str, list[torch.Tensor]] = {}
    kept_logits: list[torch.Tensor] = []
    one = None
    if logits and position is not None and logits_at_one_position(model):
        one = torch.tensor([position % ids.shape[0]])  # the [rows, T, vocab] logits are never made
    for start in range(0, n_rows, batch_size):
        rows = range(start, min(n_rows, start + batch_size))
        run = run_forward(model, ids[None].expand(len(rows), -1), edits_for(rows), capture, logits, one)
        for name, value in run.captured.items():
            parts.setdefault(name, []).append(value if position is None else value[:, position])
        if logits:
            kept_logits.append(run.logits if position is None else run.logits[:, 0 if one is not None else position])
        if after_batch is not None:
            after_batch(len(rows))
    return ForwardRun({name: torch.cat(values) for name, values in parts.items()},
                      torch.cat(kept_logits) if logits else None)
