"""Turn a Decomposition into the binary payloads the widget bundle reads.

Every array travels as ``{"dtype": "float16"|"float32"|"int32"|"uint16"|"uint8", "shape": [...], "data": bytes}``;
ipywidgets moves the ``bytes`` as binary buffers (DataViews in JS), never as JSON lists.
Only top-k lens entries are shipped, never a full vocabulary row.

Layout of the synced traits (shared by every view, see ``views/_base.py``):

``_meta``     tokens, token ids, component labels/kinds, sizes, model name, default position;
              ``lens_positions`` [start, stop] while the lens holds only those positions (a long
              prompt's first view, :data:`FIRST_LENS_CELLS`; the other cells are id -1 and NaN
              until :func:`complete_lens`).
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
import weakref
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

_DTYPES = {"float16": np.float16, "float32": np.float32, "int32": np.int32, "uint16": np.uint16, "uint8": np.uint8,
           "prob8": np.uint8}
#: "prob8": a probability in [0, 1] in one byte, round(p * 254); 255 is NaN (js/shared/decode.js reads it)
PROB8_STEPS = 254


def _np(x: Any) -> np.ndarray:
    """Tensor/array/list -> numpy array (on CPU, detached)."""
    if hasattr(x, "detach"):
        x = x.detach()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")).startswith("torch.bfloat"):
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


def array_payload(x: Any, dtype: str = "float32") -> dict:
    """Pack an array as ``{dtype, shape, data: bytes}`` (little-endian, C order); ``"prob8"``
    stores probabilities in one byte each (steps of 1/254, NaN kept)."""
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported payload dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    arr = _np(x)
    if dtype == "prob8":
        arr = arr.astype(np.float32)
        arr = np.where(np.isnan(arr), 255, np.round(np.clip(arr, 0.0, 1.0) * PROB8_STEPS)).astype(np.uint8)
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
    arr = np.frombuffer(data, dtype=np.dtype(_DTYPES[p["dtype"]]).newbyteorder("<")).reshape(p["shape"])
    if p["dtype"] == "prob8":
        return np.where(arr == 255, np.float32("nan"), arr.astype(np.float32) / PROB8_STEPS)
    return arr.astype(np.float32 if p["dtype"].startswith("float") else np.int64)


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


def logsumexp_rows(logits) -> np.ndarray:
    """[T] log-sum-exp of each row of the model's logits [T, V] (as ``Decomposition.logprob``):
    a token's log-probability is its logit minus this."""
    import torch

    return torch.logsumexp(torch.as_tensor(_np(logits)), -1).numpy().astype(np.float64)


def target_payload(dec, target, *, lens=None, source: str = "user", head_positions: Iterable[int] = (), _lse=None) -> dict:
    """Everything the views need about one target token (as a dict of arrays)."""
    tid = resolve_target_id(dec, target)
    text = dec.token_text(tid)
    if lens is None:
        lens = dec.logit_lens(k=1)
    logp = _np(lens.logprob(tid)).astype(np.float32)
    dla = _np(dec.dla_grid(tid)).astype(np.float32)
    logit = _np(dec.logits[:, tid]).astype(np.float32)
    if _lse is None:
        _lse = logsumexp_rows(dec.logits)
    logprob = (logit.astype(np.float64) - _lse).astype(np.float32)
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


#: A long prompt's first view computes the lens of at most this many states x positions (the
#: C states of the positions nearest the shown one: SmolLM2 at 2,048 cells takes ~1.5 s of these 2
#: CPU cores, every cell of 207 tokens ~6 s); :func:`complete_lens` adds the rest.
FIRST_LENS_CELLS = 2048


def lens_window(C: int, T: int, position: int, cells: int | None = FIRST_LENS_CELLS) -> tuple[int, int] | None:
    """The positions [start, stop) whose lens a first view computes: the ``cells // C`` positions
    ending at ``position`` (or starting at 0), None when every cell fits (or ``cells`` is None)."""
    if cells is None or C * T <= cells:
        return None
    width = max(1, cells // C)
    start = max(0, min(position - width + 1, T - width))
    return start, start + width


class WindowLens:
    """The lens of the positions [start, stop) only, in a LensResult's shapes: outside it ids are
    -1, probabilities and log-probabilities NaN (what a view shows as not computed yet)."""

    def __init__(self, dec, k: int, window: tuple[int, int]):
        from ..lens import LensResult

        self.window = window
        self._T = len(dec.tokens)
        self._lens = LensResult(dec.states[:, window[0]:window[1]], dec.readout, k, dec.target_id)
        self.top_ids = self._pad(self._lens.top_ids, -1)
        self.top_probs = self._pad(self._lens.top_probs, float("nan"))
        self.logsumexp = self._pad(self._lens.logsumexp, float("nan"))

    def _pad(self, part, fill):
        import torch

        full = torch.full((part.shape[0], self._T, *part.shape[2:]), fill, dtype=part.dtype)
        full[:, self.window[0]:self.window[1]] = part
        return full

    def logprob(self, target):
        return self._pad(self._lens.logprob(target), float("nan"))

    def prob(self, target):
        return self.logprob(target).exp()


#: the last window lens of each Decomposition: a view's first payload and the Dashboard's auto
#: targets read the same window (weak keys: the cache never keeps a Decomposition alive)
_WINDOW_LENSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def window_lens(dec, k: int, window: tuple[int, int]) -> WindowLens:
    """The lens of the positions [start, stop) of ``dec`` (:class:`WindowLens`), computed once for
    the views built on one Decomposition."""
    window = (int(window[0]), int(window[1]))
    cached = _WINDOW_LENSES.get(dec)
    if cached is None or cached[0] != (k, window):
        cached = ((k, window), WindowLens(dec, k, window))
        _WINDOW_LENSES[dec] = cached
    return cached[1]


def lens_ids_dtype(vocab_size: int) -> str:
    """uint16 where every id fits (half the bytes of int32, e.g. SmolLM2's 49,152 tokens), else int32."""
    return "uint16" if vocab_size < 2**16 - 1 else "int32"


def pending_id(vocab_size: int) -> int:
    """The lens id of a cell not computed yet (shown as "…" until :func:`complete_lens`)."""
    return 2**16 - 1 if lens_ids_dtype(vocab_size) == "uint16" else -1


def lens_arrays(dec, lens) -> dict:
    """The ``_arrays`` entries of a lens (a LensResult or a window of one): top-k ids (uint16 where
    the vocabulary allows, :func:`lens_ids_dtype`) and probabilities, and the probability of the
    actual next token."""
    top_ids = _np(lens.top_ids).astype(np.int64)
    top_ids[top_ids < 0] = pending_id(dec.vocab_size)
    return {
        "lens_ids": array_payload(top_ids, lens_ids_dtype(dec.vocab_size)),
        "lens_probs": array_payload(_np(lens.top_probs).astype(np.float32), "float16"),
        "next_prob": array_payload(_next_prob(dec, lens), "float16"),
    }


def _lens_vocab(dec, lens_ids: np.ndarray, vocab: dict) -> dict:
    """``vocab`` with the text of every id in ``lens_ids``; "…" for :func:`pending_id` while there is one."""
    out = {key: text for key, text in vocab.items() if int(key) != pending_id(dec.vocab_size)}
    for i in (int(x) for x in np.unique(lens_ids)):
        if str(i) not in out:
            out[str(i)] = dec.token_text(i) if 0 <= i < dec.vocab_size else "…"
    return dict(sorted(out.items(), key=lambda item: int(item[0])))


def build_payload(dec, *, targets: Iterable = (), position: int = -1, k: int = 10, heads: bool = False,
                  full_lens: bool = False) -> dict:
    """All synced data of a view: returns trait values ``_meta, _arrays, _targets, _vocab``.

    Past :data:`FIRST_LENS_CELLS` states x positions the lens is computed only for the positions
    nearest ``position`` (:func:`lens_window`; ``_meta["lens_positions"]`` says which) and
    :func:`complete_lens` adds the rest, unless ``full_lens``."""
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
    # a lens already computed (another view of this Decomposition) is used whole
    window = None if dec.has_lens(k) else lens_window(C, T, p, None if full_lens else FIRST_LENS_CELLS)
    lens = dec.logit_lens(k=k) if window is None else window_lens(dec, k, window)
    lens_data = lens_arrays(dec, lens)

    lse = logsumexp_rows(dec.logits)
    tlist = []
    seen = set()
    wanted: list[tuple[Any, str]] = [(t, "user") for t in targets]
    wanted += default_targets(dec, p)
    for t, source in wanted:
        tp = target_payload(dec, t, lens=lens, source=source, head_positions=[p] if heads else [], _lse=lse)
        if tp["id"] in seen:
            continue
        seen.add(tp["id"])
        tlist.append(tp)

    vocab = _lens_vocab(dec, decode_payload(lens_data["lens_ids"]), {str(tp["id"]): dec.token_text(tp["id"]) for tp in tlist})
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
    if window is not None:
        meta["lens_positions"] = list(window)
    arrays = {
        "state_norm": array_payload(state_norm, "float32"),
        "delta_norm": array_payload(delta_norm, "float32"),
        **lens_data,
    }
    return {"_meta": meta, "_arrays": arrays, "_targets": tlist, "_vocab": vocab}


def complete_lens(dec, data: dict) -> dict:
    """The trait values ``_meta, _arrays, _targets, _vocab`` of ``data`` (as :func:`build_payload`
    returns them) with the lens of every cell: the whole lens, each target's lens log-probs; the
    rest (norms, DLA, per-head values) kept. ``data`` itself when it already has every cell."""
    meta = data["_meta"]
    if not meta.get("lens_positions"):
        return data
    lens = dec.logit_lens(k=meta["k"])
    arrays = dict(data["_arrays"], **lens_arrays(dec, lens))
    targets = [dict(tp, logp=array_payload(_np(lens.logprob(tp["id"])).astype(np.float32), "float32"))
               for tp in data["_targets"]]
    meta = {key: value for key, value in meta.items() if key != "lens_positions"}
    vocab = _lens_vocab(dec, decode_payload(arrays["lens_ids"]), data["_vocab"])
    return {"_meta": meta, "_arrays": arrays, "_targets": targets, "_vocab": vocab}


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


#: the words of :func:`fit_payload`'s note when every step was not enough
STILL_OVER = "still over this view's share"


def value_bytes(value) -> int:
    """Bytes a trait value takes in a snapshot, counted as :func:`payload_bytes` does: its binary
    buffers, plus its other parts as JSON at 3/4 of a binary byte per character."""
    import json

    from ..export import state_bytes

    def without_buffers(part):
        if isinstance(part, (bytes, bytearray, memoryview)):
            return None
        if isinstance(part, dict):
            return {key: without_buffers(item) for key, item in part.items()}
        if isinstance(part, (list, tuple)):
            return [without_buffers(item) for item in part]
        return part

    return state_bytes(value) + len(json.dumps(without_buffers(value), ensure_ascii=False).encode("utf-8")) * 3 // 4


def payload_bytes(data: dict) -> int:
    """Bytes a view's data takes in a snapshot, in binary units (base64 adds a third to them):
    the buffers of ``_arrays`` and ``_targets``, plus ``_meta`` and ``_vocab`` as JSON (which
    costs 3/4 of a binary byte per character there)."""
    import json

    from ..export import state_bytes

    text = len(json.dumps([data["_meta"], data["_vocab"]], ensure_ascii=False).encode("utf-8"))
    return state_bytes(data["_arrays"]) + state_bytes(data["_targets"]) + text * 3 // 4


def fit_payload(dec, data: dict, budget_bytes: int) -> tuple[dict, list[str]]:
    """``data`` (``_meta, _arrays, _targets, _vocab``) made to fit ``budget_bytes``
    (:func:`payload_bytes`) for a snapshot, in steps that keep every cell's colour: the grid's
    norms in float16, only the first target, fewer lens top-k tokens per cell, the target's
    per-cell values in float16, the lens's probabilities in 8 bits. Returns (the data, one note per step taken)."""
    meta, arrays, targets = dict(data["_meta"]), dict(data["_arrays"]), list(data["_targets"])
    out = dict(data, _meta=meta, _arrays=arrays, _targets=targets)
    notes: list[str] = []
    if payload_bytes(out) <= budget_bytes:
        return data, notes
    for name in ("state_norm", "delta_norm"):
        arrays[name] = array_payload(decode_payload(arrays[name]), "float16")
    notes.append("grid norms embedded in float16")
    if payload_bytes(out) > budget_bytes and len(targets) > 1:
        notes.append("precomputed targets left out to fit the budget (they need the kernel): "
                     + ", ".join(display_token(tp["text"]) for tp in targets[1:]))
        del targets[1:]
    k = meta["k"]
    ids, probs = decode_payload(arrays["lens_ids"]), decode_payload(arrays["lens_probs"])
    while payload_bytes(out) > budget_bytes and meta["k"] > 1:
        meta["k"] = max(1, meta["k"] // 2)
        arrays["lens_ids"] = array_payload(ids[:, :, : meta["k"]], arrays["lens_ids"]["dtype"])
        arrays["lens_probs"] = array_payload(probs[:, :, : meta["k"]], "float16")
        out["_vocab"] = _lens_vocab(dec, ids[:, :, : meta["k"]], {str(tp["id"]): tp["text"] for tp in targets})
    if meta["k"] < k:
        notes.append(f"logit lens: the top {meta['k']} of the {k} top tokens of each cell embedded, to fit the budget")
    if payload_bytes(out) > budget_bytes:
        targets[:] = [dict(tp, logp=array_payload(decode_payload(tp["logp"]), "float16"),
                           dla=array_payload(decode_payload(tp["dla"]), "float16")) for tp in targets]
        notes.append("the target's per-cell log-probs and DLA embedded in float16")
    if payload_bytes(out) > budget_bytes:
        for name in ("lens_probs", "next_prob"):
            if name in arrays:
                arrays[name] = array_payload(decode_payload(arrays[name]), "prob8")
        notes.append(f"the lens's probabilities embedded in 8 bits (steps of 1/{PROB8_STEPS})")
    if payload_bytes(out) > budget_bytes:
        notes.append(f"the grid's data ({payload_bytes(out):,} bytes) is {STILL_OVER} of the "
                     f"budget ({int(budget_bytes):,}): pass a larger budget_bytes")
    return out, notes
