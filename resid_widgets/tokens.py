"""Prompts as token ids: the checks every backend runs before a forward pass.

:func:`prepare_token_ids` turns text or ids into a LongTensor [T] with clear errors for empty,
malformed or too long prompts; :func:`check_tokenizer` refuses a tokenizer that cannot be the
model's; :func:`context_length` reads how many tokens the model takes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import PromptError, TokenizerError

if TYPE_CHECKING:
    from .adapters.base import Adapter


def _special_ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple, set)) else {int(value)}


def check_tokenizer(tokenizer, config, vocab_size: int | None = None) -> None:
    """TokenizerError when ``tokenizer`` cannot be the model's: it has more tokens than the model's
    vocabulary (``vocab_size``, default ``config.vocab_size``), or its BOS/EOS id is none of the
    model's special ids (``config``'s bos/eos/pad ids). Otherwise the model would run on other
    tokens than the text shown."""
    if tokenizer is None:
        return
    vocab_size = vocab_size if vocab_size is not None else getattr(config, "vocab_size", None)
    try:
        n_tokens = len(tokenizer)
    except TypeError:
        n_tokens = None
    fix = ("Pass the tokenizer saved with this model (AutoTokenizer.from_pretrained of the same folder or "
           "name), or pass token ids and no tokenizer.")
    if vocab_size is not None and n_tokens is not None and n_tokens > vocab_size:
        raise TokenizerError(f"The tokenizer ({type(tokenizer).__name__}, {n_tokens} tokens) is not this model's: "
                             f"the model's vocabulary has {vocab_size} tokens. {fix}")
    model_ids = set().union(*(_special_ids(getattr(config, f"{kind}_token_id", None))
                              for kind in ("bos", "eos", "pad")))
    for kind in ("bos", "eos"):
        theirs = _special_ids(getattr(tokenizer, f"{kind}_token_id", None))
        ours = _special_ids(getattr(config, f"{kind}_token_id", None))
        if theirs and ours and not theirs & model_ids:
            raise TokenizerError(f"The tokenizer's {kind.upper()} token id is {sorted(theirs)[0]}, but the model's "
                                 f"special token ids are {sorted(model_ids)}: it is not this model's tokenizer. {fix}")


def prepare_token_ids(prompt, tokenizer, config, adapter: Adapter | None = None) -> torch.Tensor:
    """Text or ids (a list, tuple, tensor or numpy array of shape [T] or [1, T]) -> LongTensor [T],
    with clear errors for empty / too long / malformed prompts."""
    if isinstance(prompt, str):
        if not prompt:
            raise PromptError("The prompt is empty: pass some text or token ids.")
        if tokenizer is None:
            raise PromptError("The prompt is text but no tokenizer was given: pass tokenizer=..., "
                              "or pass token ids (a LongTensor of shape [T]).")
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    elif isinstance(prompt, (list, tuple, torch.Tensor)) or type(prompt).__name__ == "ndarray":
        try:
            ids = torch.as_tensor(prompt)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PromptError(f"Token ids must be integers in a list, tensor or numpy array of shape [T]: "
                              f"{exc}") from None
        if ids.numel() == 0:  # before the dtype: an empty list becomes a float32 tensor
            raise PromptError("The prompt is empty (it has no tokens).")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise PromptError(f"Token ids must be integers, got {ids.dtype}.")
        if ids.dim() == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.dim() != 1:
            raise PromptError(f"Token ids must have shape [T] or [1, T], got {tuple(ids.shape)}; "
                              "decompose one prompt at a time.")
        ids = ids.long().cpu()
    else:
        raise PromptError(f"prompt must be a string or token ids, not {type(prompt).__name__}")
    if ids.numel() == 0:
        raise PromptError("The prompt is empty (it has no tokens).")
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise PromptError(f"Token ids must lie in 0..{vocab - 1} (the model's vocabulary); got "
                          f"{int(ids.min())}..{int(ids.max())}.")
    limit = context_length(config, adapter)
    if limit is not None and ids.numel() > limit:
        raise PromptError(f"The prompt has {ids.numel()} tokens but the model's context holds {limit}: "
                          "shorten the prompt.")
    return ids


def context_length(config, adapter: Adapter | None = None) -> int | None:
    """The most tokens the model takes, from the first config attribute the adapter names."""
    attrs = adapter.max_positions_attrs if adapter else ("max_position_embeddings", "n_positions", "n_ctx")
    return next((getattr(config, a) for a in attrs if getattr(config, a, None)), None)


def spaced_variant(tokenizer, text: str) -> int | None:
    """The id of ``" " + text`` when that is one token other than ``text``'s own, else None.

    A target typed without its leading space ("Rome") is the word-start-less token, rarely the one
    a prompt predicts (" Rome"); the views offer the spaced one instead of silently using the other.
    """
    if tokenizer is None or not text or text[0].isspace():
        return None
    spaced = tokenizer.encode(" " + text, add_special_tokens=False)
    if len(spaced) != 1:
        return None
    own = tokenizer.encode(text, add_special_tokens=False)
    return None if own == spaced else int(spaced[0])


def token_pieces(tokenizer, text: str) -> list[str]:
    """The tokens ``text`` splits into (each decoded on its own), in order."""
    if tokenizer is None or not text:
        return []
    return [tokenizer.decode([i]) for i in tokenizer.encode(text, add_special_tokens=False)]


def target_hint(tokenizer, text: str, token_text=None) -> dict:
    """What a view says about a target typed as ``text``.

    Args:
        tokenizer: the decomposition's tokenizer (None: nothing to say).
        text: the typed target.
        token_text: id -> the token's text as the views show it (default: ``tokenizer.decode``).

    Returns:
        ``{}`` when there is nothing to add; ``{"typed", "suggestion"}`` when ``" " + text`` is a
        different single token (the suggestion is its text); ``{"typed", "pieces", "error"}`` when
        ``text`` is several tokens (``pieces`` their texts, ``error`` a sentence saying how to
        pick one).
    """
    if tokenizer is None or not isinstance(text, str) or not text:
        return {}
    pieces = token_pieces(tokenizer, text)
    if len(pieces) > 1:
        shown = " + ".join(repr(piece) for piece in pieces)
        return {"typed": text, "pieces": pieces,
                "error": f"{text!r} is {len(pieces)} tokens ({shown}); a target is one token: pick one of "
                         "them, or type a single token (a leading space is part of it, as in ' Paris')."}
    spaced = spaced_variant(tokenizer, text)
    if spaced is None:
        return {}
    name = token_text(spaced) if token_text is not None else tokenizer.decode([spaced])
    return {"typed": text, "suggestion": name}
