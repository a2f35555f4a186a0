"""BlockBudget: the next-token distribution with only blocks 0..k-1 active, k = 0..L, on a slider."""

from __future__ import annotations

import math
from typing import Any

import traitlets as t

from ..analysis import block_budget, drop_one
from ._analysis_base import AnalysisView
from ._base import WholeNumber
from .payload import array_payload, display_token


#: prompts up to this many tokens get their drop-one effects at once (n_layers forwards are quick);
#: longer ones on demand (a button in the view, or ``BlockBudget.compute_drop()``)
DROP_NOW_MAX_TOKENS = 48


def drop_payload(dec, tid: int, pos: int) -> dict:
    """The drop-one strip's data (re-runs the model once per block; a progress bar once that has
    taken 2 s)."""
    from ..export import delayed_bar

    bar = delayed_bar("drop-one effects")
    try:
        if bar is not None:
            bar.total = dec.n_layers + 1
        d = drop_one(dec, target=tid, position=pos, after_batch=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    return {"effect": [float(x) for x in d.effect.tolist()], "full_logprob": float(d.full_logprob),
            "top": [str(x) for x in d.top_texts]}


def budget_payload(dec, position: int = -1, k: int = 10, target=None, drop: bool | None = None) -> dict:
    """Everything the BlockBudget view shows: top-k ids/probs for every budget 0..L (and optional
    drop-one effects), small: (L+1)·k ids + probs. ``drop``: True computes the drop-one effects
    now, False never, None now for prompts of up to ``DROP_NOW_MAX_TOKENS`` tokens and else on
    demand (``drop_pending`` in the payload)."""
    pos = dec.position_index(position)
    tid = dec.top_prediction(pos) if target is None or target == "" else dec.target_id(target)
    res = block_budget(dec, position=pos, k=k, target=tid)
    L = dec.n_layers
    ids = res.top_ids.tolist()
    vocab = {str(i): dec.token_text(i) for row in ids for i in row}
    vocab[str(tid)] = dec.token_text(tid)
    data: dict[str, Any] = {
        "tokens": list(dec.tokens),
        "position": pos,
        "n_layers": L,
        "k": int(res.top_ids.shape[1]),
        "target": dec.token_text(tid),
        "target_id": int(tid),
        "top_ids": array_payload(res.top_ids, "int32"),
        "top_probs": array_payload(res.top_probs, "float32"),
        "target_prob": [float(math.exp(x)) for x in res.target_logprob.tolist()],
        "target_rank": [int(r["target_rank"]) for r in res.rows],
        "entropy": [float(x) for x in res.entropy.tolist()],
        "repeats_input": bool(res.repeats_input),
        "vocab": vocab,
        "drop": None,
        "drop_note": "",
        "drop_pending": False,
    }
    if drop is None and len(dec.tokens) > DROP_NOW_MAX_TOKENS:
        data["drop_pending"] = True  # n_layers forwards of a long prompt: only when asked for
    elif drop or drop is None:
        try:
            data["drop"] = drop_payload(dec, tid, pos)
        except Exception as exc:  # needs the model (re-runs); optional
            data["drop_note"] = f"drop-one effects left out ({type(exc).__name__}: {exc})"
    return data


class BlockBudget(AnalysisView):
    """Slider over the block budget k = 0..L: the top-k next tokens at ``position`` when only blocks
    0..k-1 run (k=0: the direct path / bigram floor, k=L: the full model), with p(target).

    All budgets are precomputed (they are the logit lens of the states after each block), so the
    slider also works in an offline snapshot. ``budget`` (synced) is the slider's value; with the
    model available a strip shows each block's drop-one effect on log p(target) (``drop=None``:
    at once for short prompts, else when the view's button or :meth:`compute_drop` asks, since it
    re-runs the model once per block). ``position``
    (synced; or click a token) recomputes at another position; with ``target=None`` the target
    is the top prediction there.
    """

    _rw_view = t.Unicode("block-budget").tag(sync=True)
    short_name = "budget"  # the CLI's --view
    budget = WholeNumber(0, " of blocks k in 0..n_layers (negative counts from the end)").tag(sync=True)

    def __init__(self, dec, position: int = -1, k: int = 10, target: Any = None, *, budget: int | None = None,
                 drop: bool | None = None, **kwargs: Any):
        self._dec = dec
        self._options = dict(k=k, target=target, drop=drop)
        if not self._start(position, **kwargs):
            return
        L = self._data["n_layers"]
        self._set_or_close(budget=L if budget is None else budget)
        self.on_msg(self._on_custom)

    def compute_drop(self) -> None:
        """Compute the drop-one strip now if it was left for later (long prompts); the view shows it."""
        self._check_open()
        d = self._data
        if not d.get("drop_pending"):
            return
        new = dict(d, drop_pending=False)
        try:
            new["drop"] = drop_payload(self._dec, d["target_id"], d["position"])
        except Exception as exc:  # needs the model (re-runs)
            new["drop_note"] = f"drop-one effects left out ({type(exc).__name__}: {exc})"
        self._data = new

    def _on_custom(self, _widget, content, buffers):
        if isinstance(content, dict) and content.get("type") == "drop":
            self.compute_drop()
            self.send({"type": "drop", "id": content.get("id"), "ok": True})

    def _snapshot_state(self, budget_bytes: int = 8_000_000) -> dict:
        state = super()._snapshot_state(budget_bytes)
        if self._data.get("drop_pending"):
            state["__notes__"] = ["drop-one effects not computed (call compute_drop() before the export, or "
                                  "click the view's button in a notebook)"]
        return state

    def _payload(self, position: int) -> dict:
        return budget_payload(self._dec, position, **self._options)

    @t.validate("budget")
    def _check_budget(self, proposal):
        b = int(proposal["value"])
        L = (self._data or {}).get("n_layers")
        if L is not None:
            b = b + L + 1 if b < 0 else b
            if not 0 <= b <= L:
                raise t.TraitError(f"budget {proposal['value']} is outside 0..{L} (or -{L + 1}..-1 from the end)")
        return b

    # ------------------------------------------------------------------ python side
    def top(self, budget: int | None = None) -> list[tuple[str, float]]:
        """[(token text, prob)] of the top-k next tokens at ``budget`` (default: the slider's)."""
        from .payload import decode_payload

        self._check_open()
        b = self.budget if budget is None else budget
        ids = decode_payload(self._data["top_ids"])[b]
        probs = decode_payload(self._data["top_probs"])[b]
        return [(self._data["vocab"][str(int(i))], float(p)) for i, p in zip(ids, probs)]

    def figure(self):
        """plotly: the top-k bars at the current budget, and p(target) over all budgets."""
        from plotly.subplots import make_subplots

        from .figures import SIGN_COLORS

        d = self._data
        b = self.budget
        tops = self.top(b)
        L = d["n_layers"]
        name = "direct path / bigram floor" if b == 0 else "full model" if b == L else f"blocks 0..{b - 1}"
        fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.15,
                            subplot_titles=(f"k={b} ({name})", f"p({display_token(d['target'])}) per budget k"))
        fig.add_bar(y=[display_token(s) for s, _ in tops], x=[p for _, p in tops], orientation="h",
                    marker_color=[SIGN_COLORS["up" if s == d["target"] else "down"] for s, _ in tops],
                    hovertemplate="%{y}: p=%{x:.4f}<extra></extra>", row=1, col=1)
        fig.add_scatter(x=list(range(L + 1)), y=d["target_prob"], mode="lines+markers", name="p(target)", row=1, col=2)
        fig.update_yaxes(autorange="reversed", row=1, col=1)
        fig.update_xaxes(title_text="probability", range=[0, 1], row=1, col=1)
        fig.update_xaxes(title_text="block budget k", row=1, col=2)
        tok = display_token(d["tokens"][d["position"]])
        fig.update_layout(title=f"Block budget for {display_token(d['target'])} at position {d['position']} ({tok})",
                          showlegend=False,
                          height=max(360, 26 * len(tops) + 160))
        return fig
