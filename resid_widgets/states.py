"""Naming a residual-stream state of a :class:`~resid_widgets.Decomposition`.

The grid's rows are the stream after each component: ``"embed"`` (``"pos_embed"``), ``"attn.0"``,
``"mlp.0"``, ... ``"mlp.{L-1}"``. Tuned lenses and SAEs trained elsewhere name states the
TransformerLens way, which this module maps onto those rows:

- ``blocks.{l}.hook_resid_pre``: the stream entering block l (``mlp.{l-1}``; for l = 0 the last
  embedding row, ``embed`` or GPT-2's ``pos_embed``);
- ``blocks.{l}.hook_resid_mid``: after attention of block l (``attn.{l}``);
- ``blocks.{l}.hook_resid_post``: after block l (``mlp.{l}``).
"""
from __future__ import annotations

import re

_HOOK = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|mid|post)")

#: The name of the stream entering block 0 (whatever the grid calls that row).
BLOCK0_INPUT = "blocks.0.hook_resid_pre"


def state_index(dec, state) -> int:
    """The row of ``dec.states`` that ``state`` names.

    Args:
        dec: a Decomposition.
        state: a grid label (``"mlp.14"``), a TransformerLens hook name
            (``"blocks.14.hook_resid_post"``) or a row index (negative counts from the end).

    Raises:
        KeyError: no such state (the message lists the valid names).
    """
    n_states = len(dec.labels)
    if isinstance(state, int) and not isinstance(state, bool):
        if not -n_states <= state < n_states:
            raise KeyError(f"state {state} out of range: the grid has {n_states} states (0..{n_states - 1})")
        return state % n_states
    if not isinstance(state, str):
        raise KeyError(f"state must be a label like 'mlp.14', a hook name like 'blocks.14.hook_resid_post' "
                       f"or an index, not {type(state).__name__}")
    match = _HOOK.fullmatch(state)
    if match is None:
        return dec.index(state)
    layer, where = int(match.group(1)), match.group(2)
    if layer >= dec.n_layers:
        raise KeyError(f"{state!r}: the model has {dec.n_layers} blocks (0..{dec.n_layers - 1})")
    if where == "pre":
        return dec.n_embed - 1 if layer == 0 else dec.mlp_index(layer - 1)
    return dec.attn_index(layer) if where == "mid" else dec.mlp_index(layer)


def state_key(dec, index: int) -> str:
    """The name a state is stored under in tuned lenses: its grid label, except the stream
    entering block 0, which is :data:`BLOCK0_INPUT` (the grid calls it ``embed`` or ``pos_embed``).

    Args:
        dec: a Decomposition.
        index: the state's component index.
    """
    return BLOCK0_INPUT if index == dec.n_embed - 1 else dec.labels[index]
