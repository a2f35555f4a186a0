"""A view that reads the states through the logit lens or a tuned lens (``lens`` trait).

``rw.LogitLens(dec, tuned_lens=tl)`` and ``rw.Dashboard(dec, tuned_lens=tl)`` take a
:class:`~resid_widgets.TunedLens` trained for ``dec``'s model; ``view.lens = "logit" | "tuned"``
(or the toggle in the view) switches what the lens heatmap shows. Both lenses travel to the
browser, so the toggle works without a kernel (HTML snapshots included).

Synced trait ``_lenses`` (empty without a tuned lens)::

    {"logit": {"name", "kl": [C, T] f32, "translated": (C) bools},
     "tuned": {"name", "kl": [C, T] f32, "translated": (C) bools, "lens_ids": [C, T, k] i32,
               "lens_probs": [C, T, k] f16, "next_prob": [C, T] f16,
               "logp": {"<target id>": [C, T] f32}}}

The logit lens's top-k, next-token probabilities and target log-probs stay where every view has
them (``_arrays``, ``_targets``); ``kl`` is KL(p_final || p_lens) in nats
(:func:`resid_widgets.tuned_lens.kl_to_final`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import traitlets as t

from . import payload as P
from ._base import ResidView

LENSES = ("logit", "tuned")


def lenses_payload(dec, tuned_lens, k: int, target_ids: Iterable[int] = ()) -> dict:
    """The ``_lenses`` trait value for ``dec`` and ``tuned_lens`` (see the module doc): the
    tuned lens's top-k, next-token probabilities and target log-probs, and both lenses' KL."""
    from ..tuned_lens import kl_to_final, lens_payload

    tuned = lens_payload(dec, tuned_lens, k=k)
    result = dec.logit_lens(k, lens=tuned_lens)
    tuned["next_prob"] = P.array_payload(P._next_prob(dec, result, states=tuned_lens.transform(dec)), "float16")
    tuned["logp"] = {str(int(tid)): _logp(result, tid) for tid in target_ids}
    logit = {"name": "logit lens", "kl": P.array_payload(kl_to_final(dec), "float32"),
             "translated": [False] * len(dec.labels)}
    return {"logit": logit, "tuned": tuned}


def _logp(result, tid: int) -> dict:
    return P.array_payload(P._np(result.logprob(int(tid))).astype(np.float32), "float32")


class LensSwitch(ResidView):
    """Base of the views with a lens heatmap (LogitLens, Dashboard): ``tuned_lens=`` and the
    ``lens`` trait ("logit" | "tuned"; "tuned" by default when a tuned lens is given)."""

    lens = t.Enum(LENSES, default_value="logit").tag(sync=True)
    _lenses = t.Dict().tag(sync=True)

    def __init__(self, dec, *args: Any, tuned_lens=None, **kwargs: Any):
        if tuned_lens is not None:
            if not callable(getattr(tuned_lens, "transform", None)):
                raise TypeError(f"tuned_lens must be an rw.TunedLens (rw.TunedLens.train(...) or "
                                f"rw.TunedLens.load(folder)), not {type(tuned_lens).__name__}")
            tuned_lens.check(dec)  # a lens of another model: TunedLensError naming the fix
        self._tuned_lens = tuned_lens
        lens = kwargs.pop("lens", "tuned" if tuned_lens is not None else "logit")
        super().__init__(dec, *args, **kwargs)
        if tuned_lens is not None and self._meta:
            self._lenses = lenses_payload(dec, tuned_lens, self._meta["k"], [tp["id"] for tp in self._targets])
            ids = P.decode_payload(self._lenses["tuned"]["lens_ids"])
            vocab = dict(self._vocab)
            vocab.update({str(int(i)): dec.token_text(int(i)) for i in np.unique(ids) if str(int(i)) not in vocab})
            self._vocab = vocab
        self.lens = lens

    @t.validate("lens")
    def _check_lens(self, proposal):
        if proposal["value"] == "tuned" and getattr(self, "_tuned_lens", None) is None:
            raise t.TraitError("lens='tuned' needs a tuned lens: create the view with "
                               "tuned_lens=rw.TunedLens.train(model, texts, tokenizer=tok) (or rw.TunedLens.load(folder))")
        return proposal["value"]

    def _release(self) -> None:
        super()._release()
        self._tuned_lens = None
        self._lenses = {}

    def _ensure_target(self, target) -> dict:
        """As the base, and the new target's log-probs under the tuned lens too."""
        tp = super()._ensure_target(target)
        tuned = self._lenses.get("tuned")
        if tuned is not None and str(tp["id"]) not in tuned["logp"]:
            result = self._dec.logit_lens(self._meta["k"], lens=self._tuned_lens)
            logp = dict(tuned["logp"], **{str(tp["id"]): _logp(result, tp["id"])})
            self._lenses = dict(self._lenses, tuned=dict(tuned, logp=logp))  # reassigned: syncs
        return tp

    # ---------------------------------------------------------------- what the lens shows
    def _lens_array(self, name: str, lens: str | None = None) -> np.ndarray:
        """``lens_ids`` / ``lens_probs`` / ``next_prob`` of ``lens`` (default: the current one)."""
        if (lens or self.lens) == "tuned":
            self._check_open()
            return P.decode_payload(self._lenses["tuned"][name])
        return self._array(name)

    def _lens_logp(self, tp: dict, lens: str | None = None) -> np.ndarray:
        """[C, T] log-probability of the target entry ``tp`` under ``lens``."""
        if (lens or self.lens) == "tuned":
            self._ensure_target(tp["id"])
            return P.decode_payload(self._lenses["tuned"]["logp"][str(tp["id"])])
        return super()._lens_logp(tp)

    def kl(self, lens: str | None = None) -> np.ndarray:
        """[C, T] KL(p_final || p_lens) in nats of ``lens`` (default: the current one); needs a
        tuned lens (without one, :func:`resid_widgets.tuned_lens.kl_to_final` gives the logit lens's)."""
        if not self._lenses:
            raise ValueError("this view has no tuned lens: use rw.tuned_lens.kl_to_final(dec) for the logit lens's KL")
        return P.decode_payload(self._lenses[lens or self.lens]["kl"])

    def _snapshot_state(self, budget_bytes: int = 8_000_000, progress=None) -> dict:
        extra = super()._snapshot_state(budget_bytes, progress=progress)
        if self._lenses:
            extra.setdefault("__notes__", []).append(
                "logit lens and tuned lens both embedded: the lens toggle works offline")
        return extra
