"""The Dashboard's edit mode: ``Dashboard.edits`` (a synced list) re-runs the prompt with those
edits (``dec.edit``) and the views show the edited run against the original.

An edit travels as a JSON dict (the view makes them, Python may too, or pass ``rw.Zero(...)``,
``rw.ProjectOut``, ``rw.Add``, ``rw.Patch`` objects)::

    {"kind": "zero", "component": "mlp.3", "head": None, "neuron": None, "positions": None}
    {"kind": "project_out", "component": "attn.5", "direction": {"target": 1234}}   # W_U row of a token
    {"kind": "project_out", "component": "attn.5", "direction": [...d_model floats...]}
    {"kind": "add", "component": "attn.7", "vector": [...], "scale": 4.0, "positions": [-1]}
    {"kind": "patch", "component": "attn.14", "head": 3, "positions": [-1]}  # from the Dashboard's source=

``positions``: None (every position) or a list of ints (negative from the end).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import traitlets as t

from ..edits import EDIT_KINDS, Add, EditError, Patch, ProjectOut, Zero, resolve
from . import payload as P

KINDS = {"zero": Zero, "project_out": ProjectOut, "add": Add, "patch": Patch}
_NAMES = {cls: name for name, cls in KINDS.items()}


def _vector_json(v) -> Any:
    if isinstance(v, dict):
        return dict(v)
    return [float(x) for x in (v.detach().float().cpu().reshape(-1).tolist() if hasattr(v, "detach") else v)]


def _positions_json(positions) -> list[int] | None:
    if positions is None:
        return None
    if isinstance(positions, slice):
        raise EditError("Dashboard.edits: give positions as a list of ints (a slice cannot travel to the view)")
    items = positions.tolist() if hasattr(positions, "tolist") else positions
    return [int(p) for p in (items if isinstance(items, (list, tuple, range)) else [items])]


def edit_spec(edit) -> dict:
    """An edit object (or an edit dict) as the JSON dict ``Dashboard.edits`` holds."""
    if isinstance(edit, dict):
        kind = edit.get("kind")
        if kind not in KINDS:
            raise EditError(f"an edit's kind must be one of {sorted(KINDS)}, not {kind!r}")
        out = {k: v for k, v in edit.items() if k != "source"}
    elif isinstance(edit, EDIT_KINDS):
        out = {"kind": _NAMES[type(edit)], "component": edit.component}
        for name in ("head", "neuron", "scale"):
            if hasattr(edit, name):
                out[name] = getattr(edit, name)
        if isinstance(edit, ProjectOut):
            out["direction"] = _vector_json(edit.direction)
        if isinstance(edit, Add):
            out["vector"] = _vector_json(edit.vector)
        out["positions"] = edit.positions
    else:
        raise EditError(f"{edit!r} is not an edit: give rw.Zero, rw.ProjectOut, rw.Add, rw.Patch objects or edit dicts")
    out["positions"] = _positions_json(out.get("positions"))
    for name in ("head", "neuron"):
        if out.get(name) is not None:
            out[name] = int(out[name])
    return out


def _direction(dec, value) -> torch.Tensor:
    """A direction of an edit dict: {"target": token} is that token's unembedding row."""
    if isinstance(value, dict) and "target" in value:
        return dec.readout.unembed[dec.target_id(value["target"])].detach().float().cpu()
    return torch.as_tensor(value, dtype=torch.float32)


def edit_object(dec, spec: dict, source=None):
    """The rw edit object of an edit dict (``source``: the Decomposition a "patch" takes values from)."""
    cls = KINDS[spec["kind"]]
    common = {"component": spec.get("component"), "positions": spec.get("positions")}
    if cls is Zero:
        return Zero(head=spec.get("head"), neuron=spec.get("neuron"), **common)
    if cls is ProjectOut:
        return ProjectOut(direction=_direction(dec, spec.get("direction")), **common)
    if cls is Add:
        return Add(vector=_direction(dec, spec.get("vector")), scale=spec.get("scale", 1.0), **common)
    if source is None:
        raise EditError("a patch edit needs a second prompt: make the dashboard with rw.Dashboard(dec, source=other), "
                        "other a Decomposition of the same model and length")
    return Patch(source=source, head=spec.get("head"), neuron=spec.get("neuron"), **common)


def checked_specs(dec, edits, source=None) -> list[dict]:
    """``edits`` (objects or dicts) as edit dicts, each checked against ``dec`` (EditError if not)."""
    specs = [edit_spec(e) for e in edits]
    for spec in specs:
        resolve(dec, edit_object(dec, spec, source))
    return specs


def describe(spec: dict) -> str:
    """One line naming an edit: "zero mlp.3 head 2 @ [-1]"."""
    parts = [spec["kind"].replace("_", " "), spec["component"]]
    if spec.get("head") is not None:
        parts.append(f"head {spec['head']}")
    if spec.get("neuron") is not None:
        parts.append(f"neuron {spec['neuron']}")
    if spec["kind"] == "project_out" and isinstance(spec.get("direction"), dict):
        parts.append(f"along W_U[{spec['direction']['target']}]")
    if spec.get("positions") is not None:
        parts.append(f"@ {spec['positions']}")
    return " ".join(parts)


def original_payload(base_targets: list[dict]) -> dict:
    """What the bars draw as the ghost of the original run: each precomputed target's DLA and lens
    log-prob [C, T] (the original's own payload entries, by token id)."""
    return {"targets": {str(tp["id"]): {k: tp[k] for k in ("dla", "logp", "logit", "logprob")} for tp in base_targets}}


def zero_effects(dec, target_id: int, position: int, progress=None) -> dict:
    """For each attention and MLP component, what zeroing it (every position) does to ``target_id``
    at ``position``: the edited run's DLA [C] and lens log-prob [C] there, its logit and log-prob.
    A snapshot embeds these so that the zero edits of whole components work offline.

    Hugging Face models run every zero-ablation as one row of a batched forward
    (:func:`resid_widgets.runner.run_batches`), capturing only what each sub-layer writes at
    ``position``; the numbers are those of ``dec.edit(rw.Zero(label))`` (:func:`zero_effects_unbatched`),
    up to float rounding of the batched matrix products. ``progress`` counts one unit per component.
    """
    from ..engine import is_transformer_lens

    if dec.model is None or is_transformer_lens(dec.model) or dec.adapter is None:
        return zero_effects_unbatched(dec, target_id, position, progress)
    pos = dec.position_index(position)
    labels = [label for label, kind in zip(dec.labels, P.component_kinds(dec.labels)[0]) if kind in ("attn", "mlp")]
    deltas, logits = _zeroed_runs(dec, labels, pos, None if progress is None else progress.done)
    states = deltas.cumsum(1)  # [N, C, d]: the stream after each component, as Decomposition.states
    # the lens of every state of every run at once: one pass over the unembedding, not one per run
    lens_lp = dec.lens_logprob(states.reshape(-1, states.shape[-1]), target_id).reshape(len(labels), -1)
    out = {}
    for n, label in enumerate(labels):
        dla = deltas[n] @ dec.readout_direction(target_id, pos, reference=states[n, -1])
        row = logits[n].double()
        out[label] = {
            "dla": P.array_payload(P._np(dla).astype(np.float32), "float32"),
            "logp": P.array_payload(P._np(lens_lp[n]).astype(np.float32), "float32"),
            "logit": float(row[target_id]),
            "logprob": float(torch.log_softmax(row, -1)[target_id]),
        }
    return out


#: the most token positions (2L zero-ablated runs x prompt length up to the shown position) whose
#: what-ifs a snapshot embeds by default (``what_ifs=None``): about one forward of 4,096 tokens, a few
#: seconds on a laptop CPU; past it an export would spend most of its time on them
WHAT_IF_AUTO_TOKENS = 4096

#: token positions (rows x prompt length) one batched forward of :func:`zero_effects` holds: large
#: enough for efficient matrix products, small enough that an export's bar moves every few seconds
ZERO_BATCH_TOKENS = 4096


def _zeroed_runs(dec, labels: list[str], pos: int, after_batch=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward row per label of ``labels`` with that sub-layer zeroed, of the prompt up to
    ``pos`` (as ``analysis.drop_one``): every component's delta
    at ``pos`` [N, C, d] (float32, CPU; the embeddings are the unedited run's, which a zeroed
    sub-layer cannot change) and the model's own logits at ``pos`` [N, V]. ``after_batch(rows)``
    follows the batches."""
    from ..adapters.base import require_module
    from ..runner import Capture, Edit, logits_at_one_position, run_batches

    model, adapter = dec.model, dec.adapter
    layers = require_module(model, adapter.layers, "decoder layers", adapter)
    writers = {}  # label -> the module whose output is what that sub-layer adds to the stream
    for i, layer in enumerate(layers):
        for kind in ("attn", "mlp"):
            writers[f"{kind}.{i}"] = require_module(layer, adapter.delta_path(kind), f"{kind} output", adapter)
    capture = {label: Capture(writers[label]) for label in dec.labels[dec.n_embed:]}
    token_ids = dec.token_ids[: pos + 1]  # later tokens cannot change position pos in a causal model
    T = pos + 1
    rows_per_batch = max(1, ZERO_BATCH_TOKENS // T)
    if not logits_at_one_position(model):  # every row's [T, vocab] logits are made: keep them near 256 MB
        rows_per_batch = max(1, min(rows_per_batch, 2**28 // (4 * T * dec.vocab_size)))

    def edits_for(rows):
        return [Edit.zero(writers[label], rows=[labels[r] == label for r in rows]) for label in labels]

    run = run_batches(model, token_ids, len(labels), edits_for, capture, batch_size=rows_per_batch,
                      position=pos, logits=True, after_batch=after_batch)
    embed = dec.deltas[: dec.n_embed, pos].expand(len(labels), -1, -1)
    written = torch.stack([run.captured[label].float().cpu() for label in capture], 1)
    return torch.cat([embed, written], 1), run.logits.float().cpu()


def zero_effects_unbatched(dec, target_id: int, position: int, progress=None) -> dict:
    """:func:`zero_effects` with one ``dec.edit(rw.Zero(label))`` per component (any backend)."""
    out = {}
    kinds, _ = P.component_kinds(dec.labels)
    for label, kind in zip(dec.labels, kinds):
        if kind not in ("attn", "mlp"):
            continue
        ed = dec.edit(Zero(label))
        # the lens at this one position only ([C, V] logits, not the whole [C, T] lens)
        lp = P._np(ed.lens_logprob(ed.states[:, position], target_id)).astype(np.float32)
        logits = ed.logits[position].double()
        out[label] = {
            "dla": P.array_payload(P._np(ed.contributions(target_id, position)).astype(np.float32), "float32"),
            "logp": P.array_payload(lp, "float32"),
            "logit": float(logits[target_id]),
            "logprob": float(torch.log_softmax(logits, -1)[target_id]),
        }
        if progress is not None:
            progress.done()
    return out


class EditMode(t.HasTraits):
    """Mixin of the Dashboard: the synced ``edits`` list and the ``edited`` Decomposition.

    Setting ``edits`` (from Python, or by an edit made in the view) re-runs the original prompt with
    them; the dashboard then shows the edited run, and its bars draw the original as a ghost
    outline. ``edits = []`` goes back to the original. A snapshot embeds, for each attention and
    MLP component, the effect of zeroing it (``zero_effects``), so that edit works offline:
    ``what_ifs=True`` always, ``False`` never, ``None`` (default) when those 2L runs cover at most
    :data:`WHAT_IF_AUTO_TOKENS` token positions (the snapshot says when it left them out, and how to
    include them).
    """

    edits = t.List().tag(sync=True)  # edit dicts; edit objects given are turned into them
    _edit_names = t.List(t.Unicode()).tag(sync=True)
    _edit_error = t.Unicode("").tag(sync=True)
    _original = t.Dict().tag(sync=True)
    _whatif = t.Dict().tag(sync=True)
    _can_patch = t.Bool(False).tag(sync=True)

    def __init__(self, dec, *args, source=None, edits=None, what_ifs: bool | None = None, **kwargs):
        if what_ifs not in (None, True, False):
            raise ValueError(f"what_ifs={what_ifs!r}: pass True (always embed the zero-ablation what-ifs in a "
                             "snapshot), False (never) or None (when they are cheap)")
        self._what_ifs = what_ifs
        baseline = getattr(dec, "baseline", None)
        initial = list(getattr(dec, "edits", ()) or ()) if baseline is not None else []
        if source is None:  # an edited Decomposition's patches name their source
            source = next((e.source for e in initial if isinstance(e, Patch)), None)
        self._baseline = baseline if baseline is not None else dec
        self._source = source
        self._edited = dec if baseline is not None else None
        super().__init__(dec, *args, **kwargs)
        if not self._meta:
            return
        self._base_targets = list(self._targets)
        self._can_patch = source is not None
        if self._edited is not None:  # shown as made: the original's payload becomes the ghost
            base = P.build_payload(self._baseline, targets=[tp["id"] for tp in self._targets],
                                   position=self._meta["position"], k=self._meta["k"], full_lens=True)
            self._base_targets = base["_targets"]
            self._original = original_payload(self._base_targets)
            specs = [edit_spec(e) for e in initial]
            with self._quiet_edits():
                self.edits = specs
            self._edit_names = [describe(s) for s in specs]
        if edits:
            self._set_or_close(edits=list(edits))

    @property
    def edited(self):
        """The current edited Decomposition (``dec.edit(*edits)``), or None without edits."""
        self._check_open()
        return self._edited

    @property
    def source(self):
        """The second prompt's Decomposition that "patch" edits take values from (or None)."""
        self._check_open()
        return self._source

    def _release(self) -> None:
        super()._release()
        self._baseline = self._source = self._edited = None
        self._base_targets = []
        self._original, self._whatif = {}, {}

    def _quiet_edits(self):
        """A context in which setting ``edits`` does not re-run the model."""
        owner = self

        class Quiet:
            def __enter__(self):
                owner.__dict__["_rw_quiet"] = True

            def __exit__(self, *exc):
                owner.__dict__["_rw_quiet"] = False

        return Quiet()

    @t.validate("edits")
    def _check_edits(self, proposal):
        base = getattr(self, "_baseline", None)
        if base is None or not self._meta:
            return proposal["value"]
        try:
            return checked_specs(base, proposal["value"], self._source)
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            if "edits" in getattr(self, "_property_lock", {}):  # made in the view: keep the old list, say why
                self._edit_error = msg
                return list(self.edits)
            raise t.TraitError(f"Dashboard.edits: {msg}") from exc

    @t.observe("edits")
    def _on_edits(self, change):
        if self.__dict__.get("_rw_quiet") or getattr(self, "_baseline", None) is None or not self._meta:
            return
        try:
            self._show(change["new"])
        except Exception as exc:  # the model could not run them: back to the last good list
            self._edit_error = f"{type(exc).__name__}: {exc}"
            with self._quiet_edits():
                self.edits = change["old"]
            raise

    def _show(self, specs: list[dict]) -> None:
        base = self._baseline
        edited = base.edit(*[edit_object(base, s, self._source) for s in specs]) if specs else None
        shown = edited if edited is not None else base
        data = P.build_payload(shown, targets=[tp["id"] for tp in self._targets], position=self._meta["position"],
                               k=self._meta["k"], heads=bool(self.per_head))
        self._dec, self._edited = shown, edited
        with self.hold_sync():
            for name, value in data.items():
                setattr(self, name, value)
            self._panes, self._neurons = {}, {}
            self._original = original_payload(self._base_targets) if edited is not None else {}
            self._edit_names = [describe(s) for s in specs]
            self._edit_error = ""

    def _snapshot_state(self, budget_bytes: int = 8_000_000, progress=None) -> dict:
        extra = super()._snapshot_state(budget_bytes, progress=progress)
        if not self._meta or not self._base_targets:
            return extra
        if self._edited is not None:  # the what-ifs are of the original run, which this snapshot does not show
            extra["__notes__"] = list(extra.get("__notes__", [])) + [
                "this snapshot shows the edited run: further edits need the kernel"]
            return extra
        base = self._baseline
        tp = self._base_targets[0]
        pos = self._meta["position"]
        runs = 2 * base.n_layers
        tokens = runs * (base.position_index(pos) + 1)
        if self._what_ifs is False or (self._what_ifs is None and tokens > WHAT_IF_AUTO_TOKENS):
            why = "what_ifs=False" if self._what_ifs is False else (
                f"{runs} zero-ablated runs of {tokens // runs} tokens; Dashboard(dec, what_ifs=True) embeds them")
            extra["__notes__"] = list(extra.get("__notes__", [])) + [
                f"zero-ablation effects left out ({why}): zero edits need the kernel"]
            return extra
        try:
            if progress is not None:
                progress.expect(2 * base.n_layers)
            effects = zero_effects(base, tp["id"], pos, progress)
            extra["_whatif"] = {"target": tp["id"], "text": tp["text"], "position": pos, "effects": effects}
            extra["__notes__"] = list(extra.get("__notes__", [])) + [
                f"zeroing each attention / MLP layer embedded for {P.display_token(tp['text'])} at position {pos}; "
                "other edits need the kernel"]
        except Exception as exc:  # optional
            extra["__notes__"] = list(extra.get("__notes__", [])) + [f"zero-ablation effects left out ({exc})"]
        return extra
