"""Sparse-autoencoder features in the vector pane (``pane_mode = "features"``).

``rw.StreamGrid(dec, saes={"mlp.14": sae})`` (and ``rw.Dashboard(dec, saes=...)``) attaches SAEs to
states: keys are grid labels (``"mlp.14"``: the stream after block 14), TransformerLens hook
names (``"blocks.14.hook_resid_post"``) or row indices; values are ``rw.SparseAutoencoder``
(e.g. ``rw.SparseAutoencoder.load(folder)``) or any object with ``encode``/``decode``. A list of
SAEs that know their state (``sae.state``) works too. When the selected cell is such a state, the
pane's "features" mode shows :func:`resid_widgets.sae.sae_features` of it: the top features
(activation, direct logit attribution to the target, decoder top/bottom tokens), the other
active features, the decoder bias and the error, which together sum exactly to the state.

Synced traits:

``_features_meta``  ``{"k": shown features, "states": {"<row>": {"label", "d_sae", "name"}}}``.
``_features``       ``{"<row>:<position>:<target id>": features_payload | {"error": str}}``: filled
                    on demand (a ``{"type": "features"}`` message from the pane) and, for snapshots,
                    for the embedded panes' positions within the budget.
"""

from __future__ import annotations

from typing import Any

import traitlets as t

from ..sae import features_payload, sae_features
from ..states import state_index
from ._base import ResidView, checked_position

PANE_MODES = ("raw", "decompose", "project", "features")


def features_key(state: int, position: int, target_id: int) -> str:
    return f"{int(state)}:{int(position)}:{int(target_id)}"


def _attach(dec, saes) -> dict[int, Any]:
    """{grid row: SAE} from ``saes`` (a mapping state -> SAE, or SAEs with a ``state``)."""
    if saes is None:
        return {}
    if hasattr(saes, "encode"):
        saes = [saes]
    items = saes.items() if hasattr(saes, "items") else [(getattr(s, "state", None), s) for s in saes]
    out = {}
    for state, sae in items:
        if state is None:
            raise ValueError(f"{type(sae).__name__} does not say which state it reads (no .state): pass "
                             "saes={'mlp.14': sae} (the stream after block 14)")
        if not (callable(getattr(sae, "encode", None)) and callable(getattr(sae, "decode", None))):
            raise TypeError(f"saes[{state!r}] is a {type(sae).__name__}, not an SAE: give rw.SparseAutoencoder.load(folder) "
                            "or an object with encode(x) and decode(f)")
        try:
            index = state_index(dec, state)
        except KeyError as exc:
            raise ValueError(f"saes: {exc.args[0]}") from None
        if index in out:
            raise ValueError(f"saes: two SAEs for the state {dec.labels[index]!r}")
        out[index] = sae
    return out


class SAEPanes(ResidView):
    """Base of the views with a vector pane (StreamGrid, Dashboard): ``saes=`` (see the module
    doc) and ``sae_k`` (features shown as their own rows, default 20)."""

    _features_meta = t.Dict().tag(sync=True)
    _features = t.Dict().tag(sync=True)

    def __init__(self, dec, *args: Any, saes=None, sae_k: int = 20, **kwargs: Any):
        self._saes = _attach(dec, saes)
        self._sae_k = int(sae_k)
        super().__init__(dec, *args, **kwargs)
        if self._saes and self._meta:
            self._features_meta = {"k": self._sae_k, "states": {
                str(c): {"label": dec.labels[c], "d_sae": int(getattr(sae, "d_sae", 0) or 0),
                         "name": type(sae).__name__} for c, sae in sorted(self._saes.items())}}
            # the default cell of every attached state now: a wrong SAE fails here, with its reason
            if self._targets:
                for c in self._saes:
                    self._add_features(c, self._meta["position"], self._targets[0]["id"], strict=True)

    @t.validate("pane_mode")
    def _check_pane_mode(self, proposal):
        if proposal["value"] == "features" and not getattr(self, "_saes", None):
            raise t.TraitError("pane_mode='features' needs a sparse autoencoder: create the view with "
                               "saes={'mlp.14': rw.SparseAutoencoder.load(folder)}")
        return proposal["value"]

    def _release(self) -> None:
        super()._release()
        self._saes = {}
        self._features = {}

    def features(self, state=None, position: int | None = None, target=None):
        """:class:`~resid_widgets.sae.SAEFeatures` of an attached state (default: the selected cell's)
        for ``target`` (default: the view's), as the "features" pane shows it."""
        self._check_open()
        c = self.selected[0] if state is None else state_index(self._dec, state)
        if c not in self._saes:
            raise ValueError(self._no_sae(c))
        pos = self.selected[1] if position is None else checked_position(position, self._meta["T"])
        tid = self._target_entry()["id"] if target is None else self._ensure_target(target)["id"]
        return sae_features(self._dec, self._saes[c], state=c, position=pos, k=self._sae_k, target=tid)

    def _no_sae(self, c: int) -> str:
        attached = ", ".join(self._dec.labels[i] for i in sorted(self._saes)) or "none"
        return (f"no SAE is attached to {self._dec.labels[c]} (attached: {attached}); pass "
                f"saes={{'{self._dec.labels[c]}': sae}} to the view")

    def _add_features(self, state: int, position: int, target_id: int, strict: bool = False) -> dict:
        """features_payload of (state, position, target) added to ``_features`` (copied and
        reassigned so the change syncs); an ``{"error"}`` entry where it fails (raised if ``strict``)."""
        key = features_key(state, position, target_id)
        if key in self._features:
            return self._features[key]
        try:
            entry = features_payload(sae_features(self._dec, self._saes[state], state=state, position=position,
                                                  k=self._sae_k, target=int(target_id)))
        except Exception as exc:
            if strict:
                raise
            entry = {"error": f"{type(exc).__name__}: {exc}"}
        self._features = dict(self._features, **{key: entry})
        return entry

    def _on_custom(self, widget, content, buffers):
        if not (isinstance(content, dict) and content.get("type") == "features"):
            return super()._on_custom(widget, content, buffers)
        rid = content.get("id")
        try:
            c = int(content.get("state", -1))
            if c not in self._saes:
                raise ValueError(self._no_sae(c % len(self._dec.labels)))
            pos = checked_position(content.get("position", -1), self._meta["T"])
            tid = self._ensure_target(content.get("target"))["id"]
            entry = self._add_features(c, pos, tid)
            self.send({"type": "features", "id": rid, "ok": "error" not in entry, "error": entry.get("error", ""),
                       "key": features_key(c, pos, tid)})
        except Exception as exc:
            self.send({"type": "features", "id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def _snapshot_state(self, budget_bytes: int = 8_000_000, progress=None) -> dict:
        """As the base, and the features of every attached state for the current target at the
        positions whose vector panes are embedded (selected and default position first), within
        a quarter of the budget."""
        if not (self._saes and self._meta and self._targets):
            return super()._snapshot_state(budget_bytes, progress=progress)
        T, d = self._meta["T"], self._meta["d_model"]
        per = len(self._saes) * ((self._sae_k + 3) * (d * 2 + 24 * 10 + 64) + 512)  # one position, roughly
        reserve = min(budget_bytes // 4, per * T)
        extra = super()._snapshot_state(budget_bytes - reserve, progress=progress)
        sel_pos, default = self.selected[1], self._meta["position"]
        embedded = (extra.get("_panes") or {}).get("positions", [])
        order = list(dict.fromkeys([sel_pos, default, *embedded]))[: reserve // max(per, 1)]
        if not order:
            extra.setdefault("__notes__", []).append(
                f"SAE features left out (one position needs about {per:,} bytes, budget {int(budget_bytes):,})")
            return extra
        tid = self._target_entry()["id"]
        if progress is not None:
            progress.expect(len(order))
        before = dict(self._features)
        for pos in order:
            for c in self._saes:
                self._add_features(c, pos, tid)
            if progress is not None:
                progress.done()
        extra["_features"] = self._features
        self._features = before
        labels = ", ".join(self._meta["labels"][c] for c in sorted(self._saes))
        n = len(order)
        extra.setdefault("__notes__", []).append(
            f"SAE features ({labels}) embedded for the current target at {n} position{'s' if n != 1 else ''} "
            f"({', '.join(map(str, sorted(order)))}); other cells and targets need the kernel")
        return extra
