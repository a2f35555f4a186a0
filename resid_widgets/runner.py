"""Modified forward passes: run a model with edits and captures, and leave it as found.

An analysis that asks "what if this block were the identity?" or "what does this module receive?"
re-runs the model with hooks. This module is the one place that does so for Hugging Face models:

- :class:`Edit` changes what one module returns (``on="output"``) or receives (``on="input"``),
  for some rows of the batch or for all of them: make a block the identity, zero a sub-layer's
  output, or write any tensor in (activation patching: ``Edit(module, lambda value, inputs:
  stored_value)``).
- :class:`Capture` records what one module returns or receives (detached), or the rest of its
  call (``on="call"``: a :class:`ModuleCall`, to run the module again later).
- :func:`run_forward` runs one batch with its edits and captures; :func:`run_batches` runs many
  variants of one prompt (one batch row per variant), ``batch_size`` rows at a time, and
  concatenates what was captured; :func:`run_layers` starts the forward at a decoder layer, from
  a given stream and the layers' recorded calls (the layers before it are not run again).

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

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch

from .model_state import hooks, model_left_as_found
from .weights import module_device

#: ``fn(value, inputs) -> new value`` of an :class:`Edit`, for the edited rows only:
#: ``value`` is what the module returns (``on="output"``) or receives (``on="input"``),
#: ``inputs`` what it receives (the same tensor for ``on="input"``).
EditFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def first_output(out):
    """The tensor a module returns: ``out`` itself, or the first element of a tuple / list.

    Args:
        out: what a module returned.
    """
    return out[0] if isinstance(out, (tuple, list)) else out


def replace_first_output(out, new: torch.Tensor):
    """``out`` with its tensor (the first element of a tuple / list) replaced by ``new``.

    Args:
        out: what a module returned.
        new: the tensor to put in its place.
    """
    if isinstance(out, tuple):
        return (new,) + tuple(out[1:])
    if isinstance(out, list):
        return [new] + list(out[1:])
    return new


def hidden_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The tensor a module receives: its first positional argument, else ``hidden_states=``
    (else its first keyword argument).

    Args:
        args, kwargs: the module's call, as a forward pre-hook with ``with_kwargs=True`` sees it.
    """
    return args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))


def _replace_input(args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (new,) + tuple(args[1:]), kwargs
    key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
    return args, {**kwargs, key: new}


def input_device(model: torch.nn.Module) -> torch.device:
    """The device a model's input ids go to (where its input embedding computes).

    Args:
        model: a Hugging Face model.
    """
    return module_device(model.get_input_embeddings())


def _row_mask(rows) -> torch.Tensor | None:
    if rows is None:
        return None
    mask = torch.as_tensor(rows, dtype=torch.bool)
    if mask.dim() != 1:
        raise ValueError(f"Edit rows must be a 1-D boolean mask over the batch, got shape {tuple(mask.shape)}.")
    return mask


def tile_batch(value, batch: int, copies: int):
    """Every tensor of ``value`` (args, kwargs, nested) with a batch dimension of ``batch``
    (dimension 0 of a tensor with 2+ dimensions), repeated ``copies`` times along it; tensors
    that broadcast over the batch (dimension 0 of 1 where the batch is larger), and everything
    else, pass unchanged. Whoever replays a call this way checks that an unedited replay
    reproduces the recorded run.

    Args:
        value: a tensor, or a tuple / list / dict of them (nested).
        batch: the batch size of the recorded tensors.
        copies: how many times to repeat each along the batch.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() >= 2 and value.shape[0] == batch:
            return value.repeat(copies, *([1] * (value.dim() - 1)))
        return value
    if isinstance(value, tuple):
        return tuple(tile_batch(v, batch, copies) for v in value)
    if isinstance(value, list):
        return [tile_batch(v, batch, copies) for v in value]
    if isinstance(value, dict):
        return {k: tile_batch(v, batch, copies) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ModuleCall:
    """What a module received besides its input tensor, recorded by ``Capture(module, on="call")``.

    Attributes:
        args: its positional arguments after the first (the input tensor).
        kwargs: its keyword arguments other than ``hidden_states`` (attention mask, position
            embeddings, ...).
        batch: the batch size of the recorded input.
    """

    args: tuple
    kwargs: dict
    batch: int

    def tiled(self, rows: int) -> "ModuleCall":
        """The call for a batch of ``rows`` rows, a multiple of :attr:`batch`: every tensor with
        the batch dimension repeated (see :func:`tile_batch`)."""
        if rows % self.batch:
            raise ValueError(f"a call recorded with a batch of {self.batch} cannot be replayed on {rows} rows: "
                             "pass a multiple of it.")
        copies = rows // self.batch
        return ModuleCall(tile_batch(self.args, self.batch, copies), tile_batch(self.kwargs, self.batch, copies), rows)


def _module_call(args: tuple, kwargs: dict) -> ModuleCall:
    hidden = hidden_input(args, kwargs)
    return ModuleCall(tuple(args[1:]) if args else (), {k: v for k, v in kwargs.items() if k != "hidden_states"},
                      hidden.shape[0])


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
    """Record what ``module`` returns (``on="output"``), receives (``on="input"``), or the rest of
    its call (``on="call"``: a :class:`ModuleCall`, for :func:`run_layers`).

    Attributes:
        module: the module to watch.
        on: "output", "input" or "call".

    The first call in a forward pass is kept (a module that runs twice keeps its first value).
    """

    module: torch.nn.Module
    on: Literal["output", "input", "call"] = "output"

    def __post_init__(self):
        if self.on not in ("output", "input", "call"):
            raise ValueError(f"Capture on={self.on!r}: pass 'output' or 'input' (or 'call' for the rest of the call).")

    def register(self, handles: list, store: Callable[[Any], None], keep_graph: bool = False) -> None:
        """Place the hook on ``module``: ``store(value)`` receives each value, detached unless
        ``keep_graph`` (a run with gradients)."""
        keep = (lambda value: value) if keep_graph else (lambda value: value.detach())
        if self.on == "output":
            handles.append(self.module.register_forward_hook(
                lambda module, args, out: store(keep(first_output(out)))))
        elif self.on == "input":
            handles.append(self.module.register_forward_pre_hook(
                lambda module, args, kwargs: store(keep(hidden_input(args, kwargs))), with_kwargs=True))
        else:
            handles.append(self.module.register_forward_pre_hook(
                lambda module, args, kwargs: store(_module_call(args, kwargs)), with_kwargs=True))


@dataclass
class ForwardRun:
    """What a modified run kept.

    Attributes:
        captured: {name: tensor} per :class:`Capture`: [B, T, ...] from :func:`run_forward`;
            from :func:`run_batches`, [n_rows, ...] at ``position`` or [n_rows, T, ...], on the
            device the model computed it on, in the model's dtype (a :class:`ModuleCall` for
            ``on="call"``).
        logits: [B, T, vocab] (or [n_rows, vocab] at ``position``) when asked for, else None;
            from :func:`run_layers`, what its ``readout`` returned.
    """

    captured: dict[str, Any] = field(default_factory=dict)
    logits: torch.Tensor | None = None


@contextmanager
def _placed(model: torch.nn.Module, edits: Sequence[Edit], capture: Mapping[str, Capture],
            grad: bool = False) -> Iterator[dict[str, Any]]:
    """Within the block: the model's lock held, ``edits`` and ``capture`` hooked in, eval() and
    no_grad (autograd on with ``grad``); yields {name: captured value}, complete on exit. Every
    hook is removed and the model left as found on exit, also when the run raises."""
    seen: dict[str, Any] = {}

    def keeper(name):
        def store(value):
            seen.setdefault(name, value)
        return store

    with model_left_as_found(model), hooks(model) as handles, torch.set_grad_enabled(grad):
        for edit in edits:
            edit.register(handles)
        for name, cap in capture.items():
            cap.register(handles, keeper(name), keep_graph=grad)
        yield seen
    missing = [name for name in capture if name not in seen]
    if missing:
        raise RuntimeError(f"Captured modules did not run in the forward pass: {missing}. Capture modules that the "
                           "model calls (its decoder layers, norms, projections).")


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
                grad: bool = False, logits_positions: torch.Tensor | None = None) -> ForwardRun:
    """One forward pass of ``input_ids`` [B, T] (or [T]) with ``edits`` applied.

    Args:
        model: a Hugging Face causal LM (called as ``model(input_ids=..., use_cache=False)``).
        input_ids: LongTensor [B, T] or [T]; moved to the model's input device.
        edits: the changes, placed in order (two edits of one module apply one after the other).
        capture: {name: Capture}: what to record.
        logits: keep the model's output logits [B, T, vocab].
        grad: run with autograd: the captures and logits stay in the graph (for gradients with
            respect to activations, an edit can make one a leaf: ``value.detach().requires_grad_()``).
        logits_positions: LongTensor [P]: the model computes its logits at these positions only
            ([B, P, vocab]); needs :func:`logits_at_one_position`.

    Returns:
        :class:`ForwardRun` with one value per capture.

    Raises:
        RuntimeError: a captured module did not run (the path names a module outside the forward).
    """
    ids = input_ids[None] if input_ids.dim() == 1 else input_ids
    kwargs = {} if logits_positions is None else {"logits_to_keep": logits_positions}
    with _placed(model, edits, dict(capture or {}), grad) as seen:
        out = model(input_ids=ids.to(input_device(model)), use_cache=False, **kwargs)
    kept = None if not logits else out.logits if grad else out.logits.detach()
    return ForwardRun(seen, kept)


def run_layers(model: torch.nn.Module, layers: Sequence[torch.nn.Module], start: int, hidden: torch.Tensor,
               calls: Sequence[ModuleCall], edits: Sequence[Edit] = (), capture: Mapping[str, Capture] | None = None,
               readout: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ForwardRun:
    """The forward from decoder layer ``start`` on: ``layers[start:]`` run on the stream
    ``hidden``, with ``edits`` applied; the layers before ``start`` are not run.

    Exact when ``hidden`` is the stream a full forward gives layer ``start`` and ``calls`` were
    recorded in that forward: the same layers see the same inputs.

    Args:
        model: the model the layers belong to (its lock is held, and it is left as found).
        layers: its decoder layers, in order.
        start: the first layer to run.
        hidden: [E, T, d_model] the stream entering layer ``start``, one row per variant.
        calls: per layer, its recorded call (``Capture(layer, on="call")``), tiled to E rows.
        edits: the changes, placed in order.
        capture: {name: Capture}: what to record.
        readout: ``readout(stream)`` on the last layer's output [E, T, d_model], run while the
            model is still held (e.g. final norm and unembedding); its result is ``logits``.

    Returns:
        :class:`ForwardRun` with one value per capture, and ``logits`` when ``readout`` is given.

    Raises:
        RuntimeError: a captured module did not run.
    """
    rows = hidden.shape[0]
    with _placed(model, edits, dict(capture or {})) as seen:
        stream = hidden
        for index in range(start, len(layers)):
            call = calls[index].tiled(rows)
            stream = first_output(layers[index](stream, *call.args, **call.kwargs))
        kept = readout(stream) if readout is not None else None
    return ForwardRun(seen, kept)


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
    if any(cap.on == "call" for cap in (capture or {}).values()):
        raise ValueError("Capture(on='call') records one call, which batches cannot concatenate: use run_forward.")
    ids = input_ids.reshape(-1)
    parts: dict[str, list[torch.Tensor]] = {}
    kept_logits: list[torch.Tensor] = []
    one = None
    if logits and position is not None and logits_at_one_position(model):
        one = torch.tensor([position % ids.shape[0]])  # the [rows, T, vocab] logits are never made
    for start in range(0, n_rows, batch_size):
        rows = range(start, min(n_rows, start + batch_size))
        run = run_forward(model, ids[None].expand(len(rows), -1), edits_for(rows), capture, logits,
                          logits_positions=one)
        for name, value in run.captured.items():
            parts.setdefault(name, []).append(value if position is None else value[:, position])
        if logits:
            kept_logits.append(run.logits if position is None else run.logits[:, 0 if one is not None else position])
        if after_batch is not None:
            after_batch(len(rows))
    return ForwardRun({name: torch.cat(values) for name, values in parts.items()},
                      torch.cat(kept_logits) if logits else None)
