"""Turn a Decomposition into the binary payloads the widget bundle reads.

Every array travels as ``{"dtype": "float16"|"float32"|"int32"|"uint16"|"uint8", "shape": [...], "data": bytes}``;
ipywidgets moves the ``bytes`` as binary buffers (DataViews in JS), never as JSON lists.
Only top-k lens entries are shipped, never a full vocabulary row.

Layout of the synced traits (shared by every view, see ``views/_base.py``):

``_meta``     tokens, token ids, component labels/kinds, sizes, model name, default position.
``_arrays``   ``state_norm`` [C,T] f32, ``delta_norm`` [C,T] f32, ``lens_ids`` [C,T,k] i32,
              ``lens_probs`` [C,T,k] f16, ``next_prob`` [C,T] f16 (prob of the actual next token,
              NaN in the last column).
``_targets``  list of precomputed targets: ``{text, id, source, logp [C,T] f32, dla [C,T] f32,
              logit [T] f32, logprob [T] f32, heads: {"<pos>": {"dla": [L,H+1], "logprob": [L,H+1]}}}``.
``_vocab``    ``{str(id): text}`` for every id that appears in the lens top-k or in a target.
``_panes``    (snapshots only) ``{dtype, shape [C,P,d], positions [P], data}``: the deltas of the
              positions that fit the budget, in float16.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np

__all__ = [
    "array_payload",
    "decode_payload",
    "build_payload",
    "target_payload",
    "pane_payload",
    "pane_order",
    "panes_payload",
    "component_kinds",
    "display_token",
]

_DTYPES = {"float16": np.float16, "float32": np.float32, "int32": np.int32, "uint16": np.uint16, "uint8": np.uint8}


def _np(x: Any) -> np.ndarray:
    """Tensor/array/list -> numpy array (on CPU, detached)."""
    if hasattr(x, "detach"):
        x = x.detach()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")).startswith("torch.bfloat"):
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


def array_payload(x: Any, dtype: str = "float32") -> dict:
    """Pack an array as ``{dtype, shape, data: bytes}`` (little-endian, C order)."""
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported payload dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    arr = _np(x)
    if dtype == "float16":
        # keep infinities out: float16 overflows above 65504
        arr = np.clip(arr.astype(np.float32), -65504.0, 65504.0)
    arr = np.ascontiguousarray(arr.astype(_DTYPES[dtype]).astype(np.dtype(_DTYPES[dtype]).newbyteorder("<")))
    return {"dtype": dtype, "shape": [int(s) for s in arr.shape], "data": arr.tobytes()}


def decode_payload(p: dict) -> np.ndarray:
    """Inverse of :func:`array_payload` (used by tests and ``figure()``)."""
    if not p or "data" not in p:
        raise ValueError("empty payload")
    data = p["data"]
    if isinstance(data, memoryview):
        data = data.tobytes()
    arr = np.frombuffer(data, dtype=np.dtype(_DTYPES[p["dtype"]]).newbyteorder("<"))
    return arr.reshape(p["shape"]).astype(np.float32 if p["dtype"].startswith("float") else np.int64)


# Shown as escapes: invisible characters and those that reorder or hide the text around them.
# js/shared/tokens.js applies the same rule in the views: keep the two in step.
_INVISIBLE = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0 controls, DEL, C1 controls
    "\u00ad\u061c\u180e"  # soft hyphen, Arabic letter mark, Mongolian vowel separator
    "\u200b-\u200f"  # zero-width space / non-joiner / joiner, left-to-right and right-to-left marks
    "\u2028-\u202e"  # line and paragraph separators, bidi embeddings and overrides (U+202E)
    "\u2060-\u206f"  # word joiner, invisible operators, bidi isolates, deprecated format controls
    "\ufeff\ufff9-\ufffb"  # zero-width no-break space (BOM), interlinear annotation marks
    "\U000e0000-\U000e007f"  # tag characters
    "]"
)
# Blank characters a token may consist of entirely (then each one is shown).
_ONLY_BLANK = re.compile("[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_NAMED = {"\n": "↵", "\t": "⇥"}


def _visible_char(char: str) -> str:
    """A visible stand-in for one invisible or control character: '↵', '⇥', else '⟨U+202E⟩'
    (control pictures such as '␇' are missing from common fonts and would show as empty boxes)."""
    return _NAMED.get(char) or f"⟨U+{ord(char):04X}⟩"


def display_token(text: str) -> str:
    """Token text as people read it (the views' rule, js/shared/tokens.js).

    Leading spaces show as '·', newlines as '↵', tabs as '⇥', every other control, bidi control
    and invisible character as an escape such as '⟨U+202E⟩' (a U+202E token must neither vanish nor
    reverse the text around it); a token of blanks only shows each of them; empty shows as '∅'.
    """
    if text is None:
        return "∅"
    out = str(text).replace("Ġ", " ").replace("Ċ", "\n").replace("▁", " ")
    out = _INVISIBLE.sub(lambda m: _visible_char(m.group()), out)
    if _ONLY_BLANK.fullmatch(out):
        return "".join("·" if char == " " else _visible_char(char) for char in out)
    n = len(out) - len(out.lstrip(" "))
    out = "·" * n + out[n:]
    return out if out else "∅"


def component_kinds(labels: Iterable[str]) -> tuple[list[str], list[int]]:
    """For each component label, its kind ("embed", "attn", "mlp", "other") and layer (-1 if none)."""
    kinds, layers = [], []
    for lab in labels:
        lab = str(lab)
        head, _, tail = lab.partition(".")
        if head in ("attn", "mlp") and tail.isdigit():
            kinds.append(head)
            layers.append(int(tail))
        elif head in ("embed", "pos_embed") or lab.startswith("embed"):
            kinds.append("embed")
            layers.append(-1)
        else:
            kinds.append("other")
            layers.append(int(tail) if tail.isdigit() else -1)
    return kinds, layers


def _position(dec, position: int) -> int:
    T = len(dec.tokens)
    p = int(position)
    if p < 0:
        p += T
    if not 0 <= p < T:
        raise IndexError(f"position {position} is outside the prompt (0..{T - 1})")
    return p


def _log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def resolve_target_id(dec, target) -> int:
    """Token text or id -> id; also understands "<7>", "#7" and "7" (tokens without a tokenizer)."""
    import re

    try:
        return int(dec.target_id(target))
    except Exception:
        m = re.fullmatch(r"\s*(?:<(\d+)>|#(\d+)|(\d+))\s*", target) if isinstance(target, str) else None
        if not m:
            raise
        return int(dec.target_id(int(next(g for g in m.groups() if g is not None))))


def target_payload(dec, target, *, lens=None, source: str = "user", head_positions: Iterable[int] = (), _logsm=None) -> dict:
    """Everything the views need about one target token (as a dict of arrays)."""
    tid = resolve_target_id(dec, target)
    text = dec.token_text(tid)
    if lens is None:
        lens = dec.logit_lens(k=1)
    logp = _np(lens.logprob(tid)).astype(np.float32)
    dla = _np(dec.dla_grid(tid)).astype(np.float32)
    logits = _np(dec.logits).astype(np.float32)
    logit = logits[:, tid]
    if _logsm is None:
        _logsm = _log_softmax_rows(logits.astype(np.float64))
    logprob = _logsm[:, tid].astype(np.float32)
    out = {
        "text": text,
        "display": display_token(text),
        "id": tid,
        "source": source,
        "logp": array_payload(logp, "float32"),
        "dla": array_payload(dla, "float32"),
        "logit": array_payload(logit, "float32"),
        "logprob": array_payload(logprob, "float32"),
        "heads": {},
        "dla_constant": float(dec.dla_constant(tid, -1)),
    }
    for p in head_positions:
        add_heads(dec, out, p)
    return out


def add_heads(dec, tpayload: dict, position: int, methods=("dla", "logprob")) -> dict:
    """Add per-head contributions of a target at ``position`` (in place); returns the entry."""
    p = _position(dec, position)
    key = str(p)
    entry = dict(tpayload["heads"].get(key, {}))
    for method in methods:
        if method in entry:
            continue
        try:
            h = _np(dec.head_contributions(tpayload["id"], position=p, method=method)).astype(np.float32)
        except Exception as exc:  # engine may not support per-head for every family
            entry["error"] = f"{type(exc).__name__}: {exc}"
            continue
        entry[method] = array_payload(h, "float32")
    tpayload["heads"][key] = entry
    return entry


def column_logprobs(dec, lens, ids, states=None) -> np.ndarray:
    """[C, n] log p(ids[t] | the state of component c at position t) under ``lens``, for the first
    n = len(ids) positions: one token per column, in one batched pass (normed states . W_U[ids[t]]).

    ``states`` [C, T, d] are what the lens reads (default ``dec.states``; a tuned lens's translated
    states)."""
    import torch

    readout = dec.readout
    n = len(ids)
    with torch.no_grad():
        states = (dec.states if states is None else states)[:, :n, :]
        n_states, d_model = states.shape[0], states.shape[-1]
        device = readout.unembed.device
        normed = readout.norm(states.reshape(-1, d_model).to(device, torch.float32)).reshape(n_states, n, d_model)
        ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
        rows = readout.unembed[ids_t].to(torch.float32)  # [n, d]
        logits = torch.einsum("ctd,td->ct", normed, rows)
        if readout.unembed_bias is not None:
            logits = logits + readout.unembed_bias[ids_t].to(torch.float32)
        logits = readout.cap(logits)
        return logits.cpu().double().numpy() - _np(lens.logsumexp).astype(np.float64)[:, :n]


def _next_prob(dec, lens, states=None) -> np.ndarray:
    """[C,T] probability of the actual next token at each position (NaN at the last one) under
    ``lens``, whose readout reads ``states`` [C, T, d] (default ``dec.states``; a tuned lens's
    translated states)."""
    ids = _np(dec.token_ids).reshape(-1).astype(np.int64)
    C, T = len(dec.labels), len(ids)
    out = np.full((C, T), np.nan, dtype=np.float32)
    if T < 2:
        return out
    out[:, : T - 1] = np.exp(column_logprobs(dec, lens, ids[1:], states))
    return out


def default_targets(dec, position: int = -1, n_alternatives: int = 2, n_next: int = 3) -> list[tuple[int, str]]:
    """Targets worth precomputing: the top prediction(s) at ``position`` and a few actual next tokens."""
    p = _position(dec, position)
    out: list[tuple[int, str]] = []
    seen: set[int] = set()

    def add(tid: int, source: str):
        if tid not in seen:
            seen.add(tid)
            out.append((tid, source))

    add(int(dec.top_prediction(p)), "top")
    logits = _np(dec.logits[p]).astype(np.float32)
    for tid in np.argsort(-logits)[1 : 1 + n_alternatives]:
        add(int(tid), "alt")
    ids = _np(dec.token_ids).reshape(-1)
    # actual next tokens of the selected position and the ones before it
    for t in range(p, max(p - n_next, 0), -1):
        if t + 1 < len(ids):
            add(int(ids[t + 1]), "next")
    return out


def build_payload(dec, *, targets: Iterable = (), position: int = -1, k: int = 10, heads: bool = False) -> dict:
    """All synced data of a view: returns trait values ``_meta, _arrays, _targets, _vocab``."""
    C = len(dec.labels)
    T = len(dec.tokens)
    if C == 0 or T == 0:
        raise ValueError("the decomposition is empty (no components or no tokens)")
    p = _position(dec, position)
    states = dec.states
    deltas = dec.deltas
    state_norm = _np(states.float().norm(dim=-1))
    delta_norm = _np(deltas.float().norm(dim=-1))
    k = max(1, min(int(k), int(dec.vocab_size)))
    lens = dec.logit_lens(k=k)
    top_ids = _np(lens.top_ids).astype(np.int64)
    top_probs = _np(lens.top_probs).astype(np.float32)
    next_prob = _next_prob(dec, lens)

    logsm = _log_softmax_rows(_np(dec.logits).astype(np.float64))
    tlist = []
    seen = set()
    wanted: list[tuple[Any, str]] = [(t, "user") for t in targets]
    wanted += default_targets(dec, p)
    for t, source in wanted:
        tp = target_payload(dec, t, lens=lens, source=source, head_positions=[p] if heads else [], _logsm=logsm)
        if tp["id"] in seen:
            continue
        seen.add(tp["id"])
        tlist.append(tp)

    vocab_ids = set(int(i) for i in np.unique(top_ids))
    vocab_ids.update(tp["id"] for tp in tlist)
    vocab = {str(i): dec.token_text(i) for i in sorted(vocab_ids)}
    kinds, layers = component_kinds(dec.labels)
    tokens = [str(t) for t in dec.tokens]
    meta = {
        "tokens": tokens,
        "token_ids": [int(i) for i in _np(dec.token_ids).reshape(-1)],
        "labels": [str(x) for x in dec.labels],
        "kinds": kinds,
        "layers": layers,
        "n_layers": int(dec.n_layers),
        "n_heads": int(getattr(dec, "n_heads", 0) or 0),
        "d_model": int(dec.d_model),
        "vocab_size": int(dec.vocab_size),
        "model_name": str(getattr(dec, "model_name", "") or ""),
        "T": T,
        "C": C,
        "k": k,
        "position": p,
    }
    arrays = {
        "state_norm": array_payload(state_norm, "float32"),
        "delta_norm": array_payload(delta_norm, "float32"),
        "lens_ids": array_payload(top_ids, "int32"),
        "lens_probs": array_payload(top_probs, "float16"),
        "next_prob": array_payload(next_prob, "float16"),
    }
    return {"_meta": meta, "_arrays": arrays, "_targets": tlist, "_vocab": vocab}


def pane_payload(dec, position: int) -> tuple[dict, bytes]:
    """Deltas of every component at one position, float16 [C, d]: (header, buffer)."""
    p = _position(dec, position)
    d = _np(dec.deltas[:, p, :]).astype(np.float32)
    pay = array_payload(d, "float16")
    data = pay.pop("data")
    pay["position"] = p
    return pay, data


def pane_order(T: int, first: Iterable[int] = (), around: int | None = None, n: int | None = None) -> list[int]:
    """Positions in the order a snapshot spends its pane budget on them: ``first`` (the selected
    and the shown position), then the neighbours of ``around`` (nearest first, up to 4 each side),
    then evenly spread over the prompt (so a reader finds a pane wherever they click); ``n`` caps
    the length."""
    n = T if n is None else max(0, min(int(n), T))
    order: list[int] = []

    def add(q: int) -> None:
        q = q + T if q < 0 else q
        if 0 <= q < T and q not in order and len(order) < n:
            order.append(q)

    for q in first:
        add(int(q))
    if around is not None:
        a = int(around) + T if int(around) < 0 else int(around)
        for step in range(1, 5):
            add(a - step)
            add(a + step)
    add(T - 1)
    left = n - len(order)
    if left > 0:
        # evenly: every stride-th position, then the gaps halved, until the budget is spent
        stride = max(1, T // max(1, left))
        while len(order) < n:
            for q in range(0, T, stride):
                add(q)
            if stride == 1:
                break
            stride = max(1, stride // 2)
    return order


def panes_payload(dec, budget_bytes: int, first: Iterable[int] = (), around: int | None = None) -> tuple[dict, str]:
    """As many positions' deltas as fit ``budget_bytes`` (float16), in :func:`pane_order`.

    Returns (the ``_panes`` trait: ``positions`` and a [C, P, d] float16 array; a note that says
    which positions are embedded, empty when all are)."""
    C, T, d = len(dec.labels), len(dec.tokens), int(dec.d_model)
    per = C * d * 2
    n_fit = max(0, int(budget_bytes) // per) if per else 0
    keep = sorted(pane_order(T, first, around, n_fit))
    if not keep:
        note = f"no vector panes embedded (one position needs {per:,} bytes, budget {int(budget_bytes):,})"
        return {}, note
    d_arr = _np(dec.deltas[:, keep, :]).astype(np.float32)
    pay = array_payload(d_arr, "float16")
    pay["positions"] = keep
    if len(keep) == T:
        note = ""
    else:
        note = (
            f"vector panes embedded for {len(keep)} of {T} positions (marked on the grid; float16, budget "
            f"{int(budget_bytes):,} bytes); the others need the kernel"
        )
    return pay, note
