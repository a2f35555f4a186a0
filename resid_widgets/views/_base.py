"""Common machinery of every view: synced traits, kernel messages, snapshot state."""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import anywidget
import traitlets as t

from ..export import Progress, SnapshotMixin
from . import payload as P
from .lifetime import ClosedDecomposition, ViewLifetime
from .neurons import neuron_key, neurons_payload, neurons_units

STATIC = Path(__file__).resolve().parent.parent / "static"
BUNDLE = STATIC / "widget.js"

METRICS = ("norm", "delta", "prob", "dla")
NORMALIZE = ("row", "quantile", "global")
LENS_COLOR = ("top", "target", "next")


def _esm_source() -> str | Path:
    """The views' front-end module, read once at import.

    Text, not a Path: for a Path anywidget connects a callback holding each view to a class-level
    file-watch signal, so no view (nor its Decomposition) would ever be freed. ``ANYWIDGET_HMR=1``
    (development only) passes the Path so that anywidget reloads the bundle when ``npm run build``
    rewrites it; views then live until the kernel ends.
    """
    if not BUNDLE.is_file():
        # a readable message instead of a blank output when the bundle was not built
        return (
            "export default { render({ el }) { el.textContent = 'resid_widgets: the front-end bundle "
            "resid_widgets/static/widget.js is missing; run `npm install && npm run build` in the "
            "repository (or reinstall the package).'; } };\n"
        )
    if os.environ.get("ANYWIDGET_HMR") == "1":
        return BUNDLE
    # the trailing newline keeps anywidget from taking a one-line text for a file name
    return BUNDLE.read_text(encoding="utf-8") + "\n"


ESM = _esm_source()


class WholeNumber(t.Int):
    """An Int trait that refuses bools and non-integers (NaN, inf, 2.5) with an error that names
    the trait, the value and what to give (``hint``); numpy integers are fine."""

    def __init__(self, default_value: int = 0, hint: str = "", **kwargs: Any):
        self.hint = hint
        super().__init__(default_value, **kwargs)

    def validate(self, obj, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise t.TraitError(f"{self.name} must be a whole number{self.hint}, got {value!r}")
        return super().validate(obj, int(value))


def checked_position(value, n_tokens: int) -> int:
    """A position trait's value: negative counts from the end; outside the prompt is a TraitError.
    ``n_tokens`` 0 (nothing to show yet) accepts any value."""
    p = int(value)
    if n_tokens:
        p = p + n_tokens if p < 0 else p
        if not 0 <= p < n_tokens:
            raise t.TraitError(f"position {value} is outside the prompt (0..{n_tokens - 1})")
    return p


def checked_layer(value, n_layers: int | None) -> int:
    """A layer trait's value: negative counts from the end; outside the model is a TraitError.
    ``n_layers`` None (nothing to show yet) accepts any value."""
    v = int(value)
    if n_layers is not None:
        v = v + n_layers if v < 0 else v
        if not 0 <= v < n_layers:
            raise t.TraitError(f"layer {value} is outside 0..{n_layers - 1}")
    return v


class ResidView(ViewLifetime, SnapshotMixin, anywidget.AnyWidget):
    """Base of StreamGrid, ContributionBars, LogitLens and Dashboard (not used directly).

    The decomposition's data (``_meta``, ``_arrays``, ``_targets``, ``_vocab``) and the state they
    all share (``selected``, ``target``, ``position``). What a view does more is keyed on its own
    traits: a ``_panes`` trait (GridState) embeds the selected cell's vector pane and answers pane
    requests, a ``_neurons`` trait (BarsState) answers neuron requests and embeds them in snapshots.

    ``close()`` lets go of the Decomposition and the data; in a notebook, re-running the cell
    that made a view closes it (see :mod:`resid_widgets.views.lifetime`).
    """

    _esm = ESM
    _rw_view = t.Unicode("stream-grid").tag(sync=True)

    # data (binary buffers inside dicts)
    _meta = t.Dict().tag(sync=True)
    _arrays = t.Dict().tag(sync=True)
    _targets = t.List().tag(sync=True)
    _vocab = t.Dict().tag(sync=True)
    _rw_static = t.Bool(False).tag(sync=True)
    _error = t.Unicode("").tag(sync=True)
    # user state every view shares; each view module declares the traits only it uses (a
    # ``*State`` mixin: GridState, BarsState, LensState) and the Dashboard takes all three
    selected = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)
    target = t.Union([t.Unicode(), t.Int()], default_value="").tag(sync=True)
    position = WholeNumber(-1, " (a token position; negative counts from the end)").tag(sync=True)

    def __init__(
        self,
        dec,
        target: Any = None,
        position: int = -1,
        *,
        targets: Iterable = (),
        k: int = 10,
        **kwargs: Any,
    ):
        self._dec = dec
        extra = list(targets)
        if target is not None and not (isinstance(target, str) and target == ""):
            extra = [target] + extra
        try:
            data = P.build_payload(dec, targets=extra, position=position, k=k, heads=bool(kwargs.get("per_head")))
        except Exception as exc:  # show the problem in the cell, never a blank area
            msg = f"cannot show this decomposition: {type(exc).__name__}: {exc}"
            warnings.warn(f"{type(self).__name__}: {msg}", RuntimeWarning, stacklevel=2)
            super().__init__(_error=msg, **kwargs)
            self._adopt()
            return
        meta = data["_meta"]
        # the asked-for target (if any) comes first, else the top prediction
        tname = data["_targets"][0]["text"] if data["_targets"] else ""
        T, C = meta["T"], meta["C"]
        p = meta["position"]
        sel = kwargs.pop("selected", (C - 1, p))
        super().__init__(**data, target=tname, position=p, **kwargs)
        self._set_or_close(selected=tuple(sel))
        if T > 1 and self.has_trait("exclude_first") and not self.exclude_first and "exclude_first" not in kwargs:
            # attention-sink: position 0 often dwarfs the rest (SmolLM2: ~22k vs ~170)
            try:
                norms = P.decode_payload(data["_arrays"]["state_norm"])
                if norms[:, 0].max() > 8 * max(norms[:, 1:].max(), 1e-9):
                    self.exclude_first = True
            except Exception:
                pass
        # top neurons (seconds of work for a large model) wait until an MLP bar is opened; a
        # snapshot embeds them for the precomputed targets
        if self.has_trait("_panes"):
            self._embed_first_pane()
        self.on_msg(self._on_custom)
        self._adopt()

    def _embed_first_pane(self) -> None:
        """The vector pane of the selected cell, in the synced state: the first paint needs no round
        trip to a kernel that may be busy (Run All) for as long as the rest of the notebook runs."""
        one = self._meta["C"] * self._meta["d_model"] * 2
        try:
            self._panes = P.panes_payload(self._dec, one, first=[self.selected[1]])[0]
        except Exception as exc:  # the pane then comes from the kernel, as for any other cell
            warnings.warn(f"{type(self).__name__}: the first vector pane is not embedded: {exc}", RuntimeWarning,
                          stacklevel=3)

    def _complete_lens(self) -> None:
        """The lens of every cell, where a long prompt's first payload holds only the positions
        nearest the shown one (``_meta["lens_positions"]``): asked for by the view once it is up,
        and by anything in Python that reads the lens (values, figures, snapshots)."""
        if not self._meta.get("lens_positions"):
            return
        self._check_open()
        data = P.complete_lens(self._dec, {name: getattr(self, name) for name in ("_meta", "_arrays", "_targets", "_vocab")})
        with self.hold_sync():  # one message: the view redraws once, with every cell
            for name, value in data.items():
                setattr(self, name, value)

    def _release(self) -> None:
        self._dec = ClosedDecomposition()
        self._arrays, self._targets, self._vocab = {}, [], {}
        for name in ("_panes", "_neurons"):
            if self.has_trait(name):
                setattr(self, name, {})

    # ---------------------------------------------------------------- validation
    @t.validate("selected")
    def _check_selected(self, proposal):
        s, pos = proposal["value"]
        C, T = self._meta.get("C", 0), self._meta.get("T", 0)
        if C and T:
            s = s + C if s < 0 else s
            pos = pos + T if pos < 0 else pos
            if not (0 <= s < C and 0 <= pos < T):
                raise t.TraitError(f"selected={proposal['value']} is outside the grid ({C} states x {T} positions)")
        return (int(s), int(pos))

    @t.validate("position")
    def _check_position(self, proposal):
        return checked_position(proposal["value"], self._meta.get("T", 0))

    @t.validate("target")
    def _check_target(self, proposal):
        """Accepts token text (" Paris") or a token id; stores the token text."""
        value = proposal["value"]
        if not self._meta or value == "":
            return value
        try:
            return self._ensure_target(value)["text"]
        except Exception as exc:
            raise t.TraitError(f"target {value!r}: {exc}") from exc

    # ---------------------------------------------------------------- helpers
    def _find_target(self, text_or_id) -> dict | None:
        for tp in self._targets:
            if tp["text"] == text_or_id or tp["id"] == text_or_id:
                return tp
        return None

    def _ensure_target(self, target) -> dict:
        """Precompute ``target`` (token text or id) if it is not there yet; returns its entry."""
        found = self._find_target(target)
        if found is not None:
            return found
        self._complete_lens()  # a new target's lens log-probs are of every cell
        tid = P.resolve_target_id(self._dec, target)
        found = self._find_target(tid)
        if found is not None:
            return found
        tp = P.target_payload(self._dec, tid, lens=self._dec.logit_lens(k=self._meta["k"]), source="user")
        vocab = dict(self._vocab)
        vocab[str(tid)] = tp["text"]
        self._vocab = vocab
        self._targets = list(self._targets) + [tp]
        return tp

    def _target_entry(self) -> dict:
        self._check_open()
        self._complete_lens()
        tp = self._find_target(self.target) if self.target else None
        return tp if tp is not None else (self._targets[0] if self._targets else None)

    def _lens_logp(self, tp: dict, lens: str | None = None):
        """[C, T] log-probability of the target entry ``tp`` under the lens the view shows: the
        logit lens here; views with a lens switch (``LensSwitch``) also the tuned lens."""
        return P.decode_payload(tp["logp"])

    def _array(self, name: str):
        self._check_open()
        if name in ("lens_ids", "lens_probs", "next_prob"):
            self._complete_lens()
        return P.decode_payload(self._arrays[name])

    def _add_neurons(self, target_id: int, position: int, progress=None) -> dict:
        """Top neurons of every MLP layer for (target, position), added to ``_neurons`` (copied
        and reassigned so the change syncs); an ``{"error"}`` entry where the engine cannot."""
        key = neuron_key(target_id, position)
        if key in self._neurons:
            return self._neurons[key]
        try:
            entry = neurons_payload(self._dec, int(target_id), int(position), progress=progress)
        except Exception as exc:  # optional: e.g. no neuron activations for this model
            entry = {"error": f"{type(exc).__name__}: {exc}"}
        new = dict(self._neurons)
        new[key] = entry
        self._neurons = new
        return entry

    # ---------------------------------------------------------------- kernel messages
    def _on_custom(self, _widget, content, buffers):
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        rid = content.get("id")
        try:
            if kind == "lens":  # the view is up: the rest of a long prompt's lens
                self._complete_lens()
            elif kind == "pane" and self.has_trait("_panes"):
                pos = int(content.get("position", self.selected[1]))
                header, data = P.pane_payload(self._dec, pos)
                header.update(type="pane", id=rid, state=int(content.get("state", 0)))
                self.send(header, buffers=[data])
            elif kind == "target":
                tp = self._ensure_target(content.get("target"))
                self.send({"type": "target", "id": rid, "ok": True, "text": tp["text"], "token_id": tp["id"]})
            elif kind == "heads":
                tid = self._ensure_target(content.get("target"))["id"]
                pos = int(content.get("position", -1))
                # copy, then reassign, so the change syncs (and lands in snapshots)
                new = [dict(x, heads=dict(x["heads"])) for x in self._targets]
                P.add_heads(self._dec, next(x for x in new if x["id"] == tid), pos)
                self._targets = new
                self.send({"type": "heads", "id": rid, "ok": True, "position": pos})
            elif kind == "neurons" and self.has_trait("_neurons"):
                tid = self._ensure_target(content.get("target"))["id"]
                pos = checked_position(content.get("position", -1), self._meta["T"])
                entry = self._add_neurons(tid, pos)
                self.send({"type": "neurons", "id": rid, "ok": "error" not in entry, "error": entry.get("error", ""),
                           "key": neuron_key(tid, pos)})
        except Exception as exc:
            self.send({"type": kind or "error", "id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    # ---------------------------------------------------------------- snapshots
    _DATA = ("_meta", "_arrays", "_targets", "_vocab")

    def _snapshot_fit(self, whole_bytes: int) -> None:
        """Before :meth:`_snapshot_state`: the exporter gives this view ``whole_bytes`` for all of
        its data. A long prompt's grid and lens data can outgrow that alone; they are then trimmed
        for the snapshot (:func:`payload.fit_payload`, every cell keeps its colour), leaving room
        for the selected cell's vector pane. The live view keeps its data."""
        if not self._meta or isinstance(self.__dict__.get("_dec"), ClosedDecomposition):
            return  # nothing to fit (a closed view's snapshot says so itself)
        partial = bool(self._meta.get("lens_positions"))
        self._complete_lens()  # a snapshot has no kernel to ask: every cell now
        pane = self._meta["C"] * self._meta["d_model"] * 2 if self.has_trait("_panes") else 0
        data = {name: getattr(self, name) for name in self._DATA}
        current = self._target_entry()  # kept first when only one target fits
        data["_targets"] = sorted(data["_targets"], key=lambda tp: current is None or tp["id"] != current["id"])
        fitted, notes = P.fit_payload(self._dec, data, max(0, whole_bytes - pane))
        # the exporter read the live state before: completed or trimmed data replaces it
        self.__dict__["_rw_fit"] = {"data": fitted if notes or partial else {}, "notes": notes,
                                    "room": max(0, whole_bytes - P.payload_bytes(fitted))}

    def _snapshot_state(self, budget_bytes: int = 8_000_000, progress=None) -> dict:
        """Extra trait values a static snapshot embeds: vector panes (float16) within the budget,
        per-head values and top neurons. ``progress`` (an ``export.Progress``) counts the work."""
        extra: dict[str, Any] = {"_rw_static": True}
        if not self._meta:
            return extra
        progress = progress if progress is not None else Progress()
        fit = self.__dict__.pop("_rw_fit", None)
        if self._meta.get("lens_positions"):  # a snapshot has no kernel to ask: every cell now
            progress.expect(1)
            self._complete_lens()
            extra.update({name: getattr(self, name) for name in self._DATA})
            progress.done()
        notes = []
        if fit and fit["data"]:  # trimmed to the budget: the room left goes to the vector panes
            extra.update(fit["data"])
            notes += fit["notes"]
            budget_bytes = max(int(budget_bytes), fit["room"])
        sel_pos = self.selected[1] if self.selected else self._meta["position"]
        neuron_keys = []
        if self.has_trait("_neurons"):
            neuron_keys = [(tp["id"], pos) for tp in self._targets
                           for pos in dict.fromkeys([sel_pos, self._meta["position"]])
                           if neuron_key(tp["id"], pos) not in self._neurons]
        progress.expect(2 + len(neuron_keys) * neurons_units(self._meta["n_layers"]))
        if self.has_trait("_panes"):
            panes, note = P.panes_payload(self._dec, budget_bytes, first=[sel_pos, self._meta["position"]],
                                          around=self._meta["position"])
            extra["_panes"] = panes
            extra["_panes_note"] = note
            notes += [note] if note else []  # all panes embedded: nothing to list as left out
        progress.done()
        # per-head values of the current target at the selected position (computed now if missing)
        try:
            tp = self._target_entry() if self.has_trait("per_head") else None
            if tp is not None:
                new = [dict(x, heads=dict(x["heads"])) for x in extra.get("_targets", self._targets)]
                mine = next(x for x in new if x["id"] == tp["id"])
                P.add_heads(self._dec, mine, sel_pos)
                extra["_targets"] = new
                notes.append(f"per-head values embedded for {P.display_token(tp['text'])} at position {sel_pos}; other targets/positions need the kernel")
        except Exception as exc:  # per-head is optional
            notes.append(f"per-head values left out ({type(exc).__name__}: {exc})")
        progress.done()
        if self.has_trait("_neurons"):
            # top neurons per MLP layer for every precomputed target at the selected position
            try:
                before = dict(self._neurons)
                for target_id, pos in neuron_keys:
                    self._add_neurons(target_id, pos, progress)
                extra["_neurons"] = self._neurons
                self._neurons = before
                notes.append(f"top MLP neurons embedded for the precomputed targets at position {sel_pos}; others need the kernel")
            except Exception as exc:
                notes.append(f"MLP neuron breakdown left out ({type(exc).__name__}: {exc})")
        extra["__notes__"] = notes
        return extra
