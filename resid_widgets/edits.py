"""Edits of the residual stream: zero, project out, steer, patch (``dec.edit(...)``).

An edit changes what one component writes into the stream, at chosen positions, and the model
runs again on the same tokens with it applied; everything downstream recomputes (docs/METHODS.md,
"Edits"). Where each edit acts:

- a whole component (``"attn.5"``, ``"mlp.20"``, ``"embed"``): the tensor added to the stream,
  i.e. the output of the sub-layer (after its post-norm where there is one, Gemma 2/3, OLMo 2/3),
  or the embedding (the first block's input where the family has no separate embedding module);
- one head (``head=3``): that head's slice of the attention output projection's input, so the
  output bias stays and a post-norm recomputes on the edited output;
- one neuron (``neuron=1233``): that FFN neuron's activation, the input of the down-projection.

>>> ed = dec.edit(rw.Zero("mlp.3"), rw.Add("attn.7", vector=v, scale=4.0, positions=[-1]))
>>> ed.edits, ed.baseline      # what was done, to which (unedited) Decomposition
>>> ed.contributions(" Paris") - dec.contributions(" Paris")

The result is an ordinary exact :class:`~resid_widgets.Decomposition` of the edited run: its
deltas add up to the edited stream (``additivity_error``) and every method and view works on it.
For a component edited as a whole, its per-head and per-neuron splits (``head_deltas``,
``neuron_dla``) describe what the sub-layer computed before the edit replaced its output; head and
neuron edits are seen by those splits.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ResidWidgetsError, UnsupportedModelError


class EditError(ResidWidgetsError, ValueError):
    """An edit cannot be applied to this Decomposition (unknown component, index out of range,
    a vector of the wrong size, a patch source of another prompt length or model)."""


@dataclass(frozen=True)
class Zero:
    """Zero what ``component`` writes into the stream (ablation).

    Args:
        component: a label of ``dec.labels`` ("attn.5", "mlp.20", "embed").
        head: zero only this attention head's share (its slice of the output projection's input;
            the output bias stays).
        neuron: zero only this FFN neuron's activation (its subvalue m_k W_out[:, k]).
        positions: int(s) (negative count from the end) or a slice; default every position.
    """

    component: str
    head: int | None = None
    neuron: int | None = None
    positions: Any = None


@dataclass(frozen=True)
class ProjectOut:
    """Remove what ``component`` wrote along ``direction``: delta := delta − (delta·u) u, u = v / |v|.

    Args:
        component: a label of ``dec.labels``.
        direction: [d_model] any non-zero norm.
        positions: int(s) or a slice; default every position.
    """

    component: str
    direction: Any
    positions: Any = None


@dataclass(frozen=True)
class Add:
    """Steer: add ``scale * vector`` to the stream right after ``component`` (to what it writes).

    The edited Decomposition's row of ``component`` holds its own output plus the steering vector.

    Args:
        component: a label of ``dec.labels``.
        vector: [d_model] the steering vector (non-zero).
        scale: multiplies ``vector``.
        positions: int(s) or a slice; default every position.
    """

    component: str
    vector: Any
    scale: float = 1.0
    positions: Any = None


@dataclass(frozen=True)
class Patch:
    """Activation patching: what ``component`` writes becomes its value in ``source``, another
    Decomposition of the same model and prompt length (denoising: ``corrupt.edit(Patch(c, source=clean))``).

    Args:
        component: a label of ``dec.labels``.
        source: the :class:`~resid_widgets.Decomposition` to take the values from.
        head: patch only this head's share (output projection input slice).
        neuron: patch only this neuron's activation.
        positions: int(s) or a slice; default every position.
    """

    component: str
    source: Any = field(repr=False, compare=False, default=None)
    head: int | None = None
    neuron: int | None = None
    positions: Any = None


EDIT_KINDS = (Zero, ProjectOut, Add, Patch)


# --------------------------------------------------------------------------------------------
# Resolution: an edit checked against one Decomposition, as a site and a tensor function
# --------------------------------------------------------------------------------------------
@dataclass
class ResolvedEdit:
    """An edit checked against a Decomposition.

    Attributes:
        edit: the edit as given.
        site: "delta" (the component's output), "head" (output projection input) or "neuron"
            (down-projection input).
        component: its index in ``dec.labels``; label: its label.
        layer: its layer (None for embeddings).
        positions: LongTensor [P] (sorted, distinct) or None for every position.
        apply: the function the hook applies, site tensor [B, T, ...] -> edited copy.
    """

    edit: Any
    site: str
    component: int
    label: str
    layer: int | None
    positions: torch.Tensor | None
    apply: Callable[[torch.Tensor], torch.Tensor]


def resolve_positions(positions, n_tokens: int, what: str = "positions") -> torch.Tensor | None:
    """ints (negative from the end), a sequence of them, a slice or None -> sorted distinct
    LongTensor [P] in 0..T-1, or None for every position; EditError otherwise.

    Args:
        positions: an int, a sequence of ints, a slice, or None.
        n_tokens: T.
        what: the argument's name in the error.

    Raises:
        EditError: not positions of this prompt.
    """
    from .core import as_index

    if positions is None:
        return None
    if isinstance(positions, slice):
        idx = list(range(n_tokens))[positions]
    else:
        items = positions.tolist() if isinstance(positions, torch.Tensor) else positions
        items = [items] if not isinstance(items, (list, tuple, range)) else items
        idx = []
        for item in items:
            try:
                i = as_index(item, what)
            except TypeError as exc:
                raise EditError(f"{exc}; pass ints (negative count from the end) or a slice") from None
            if not -n_tokens <= i < n_tokens:
                raise EditError(f"position {i} out of range for a prompt of {n_tokens} tokens "
                                f"(0..{n_tokens - 1}, or negative from the end)")
            idx.append(i % n_tokens)
    if not idx:
        raise EditError(f"{what} selects no position (the prompt has {n_tokens} tokens)")
    return torch.tensor(sorted(set(idx)), dtype=torch.long)


def _vector(value, d_model: int, what: str, kind: str) -> torch.Tensor:
    try:
        v = torch.as_tensor(value).detach().float().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise EditError(f"{kind}: {what} must be a vector of {d_model} numbers: {exc}") from None
    v = v.reshape(-1) if v.dim() == 2 and 1 in v.shape else v
    if v.dim() != 1 or v.shape[0] != d_model:
        raise EditError(f"{kind}: {what} has shape {tuple(v.shape)} but the stream has d_model={d_model}: "
                        f"pass a vector of shape [{d_model}]")
    if not bool(torch.isfinite(v).all()):
        raise EditError(f"{kind}: {what} holds NaN/inf")
    if float(v.norm()) == 0.0:
        raise EditError(f"{kind}: {what} is the zero vector, which {'has no direction' if kind == 'ProjectOut' else 'changes nothing'}: "
                        "pass a non-zero vector")
    return v


def _index(value, size: int, what: str, component: str) -> int:
    from .core import as_index

    try:
        i = as_index(value, what)
    except TypeError as exc:
        raise EditError(str(exc)) from None
    if not 0 <= i < size:
        raise EditError(f"{what} {i} out of range for {component}: it has {size} ({what}s 0..{size - 1})")
    return i


def _layer_of(label: str) -> tuple[str, int | None]:
    kind, _, layer = label.partition(".")
    return (kind, int(layer)) if layer.isdigit() else (label, None)


def _positions_slice(t: torch.Tensor, positions: torch.Tensor | None):
    return slice(None) if positions is None else positions.to(t.device)


class _DeviceCache:
    """A CPU tensor, moved once to each device/dtype the hooks see."""

    def __init__(self, value: torch.Tensor):
        self.value = value
        self._moved: dict = {}

    def to(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._moved:
            self._moved[key] = self.value.to(like.device, like.dtype)
        return self._moved[key]


def _heads_view(z: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, T, H*dh] or [B, T, H, dh] -> a [B, T, H, dh] view."""
    return z if z.dim() == 4 else z.view(*z.shape[:-1], n_heads, -1)


def resolve(dec, edit) -> ResolvedEdit:
    """Check ``edit`` against ``dec`` (labels, head and neuron counts, sizes, patch source) and
    build the function its hook applies. Raises :class:`EditError` (a ValueError) naming the fix.

    Args:
        dec: the Decomposition edited (its baseline for an edited one).
        edit: a :class:`Zero`, :class:`ProjectOut`, :class:`Add` or :class:`Patch`.
    """
    if not isinstance(edit, EDIT_KINDS):
        raise EditError(f"{edit!r} is not an edit: pass rw.Zero, rw.ProjectOut, rw.Add or rw.Patch objects")
    kind = type(edit).__name__
    label = edit.component
    if not isinstance(label, str) or label not in dec.labels:
        raise EditError(f"{kind}: unknown component {label!r}; components are the labels of dec.labels: "
                        f"{', '.join(dec.labels[:6])}, ..., {dec.labels[-1]}")
    c = dec.labels.index(label)
    family, layer = _layer_of(label)
    positions = resolve_positions(edit.positions, dec.n_tokens)
    head = getattr(edit, "head", None)
    neuron = getattr(edit, "neuron", None)
    if head is not None and neuron is not None:
        raise EditError(f"{kind}: give head= or neuron=, not both")
    if head is not None and family != "attn":
        raise EditError(f"{kind}: head= applies to attention components ('attn.N'), not {label!r}")
    if neuron is not None and family != "mlp":
        raise EditError(f"{kind}: neuron= applies to MLP components ('mlp.N'), not {label!r}")
    site = "head" if head is not None else "neuron" if neuron is not None else "delta"
    if head is not None:
        head = _index(head, dec.n_heads, "head", label)
    if neuron is not None:
        acts = dec.neuron_activations(layer)
        neuron = _index(neuron, acts.shape[-1], "neuron", label)

    if isinstance(edit, Zero):
        apply = _zero(site, positions, head, neuron, dec.n_heads)
    elif isinstance(edit, ProjectOut):
        u = _vector(edit.direction, dec.d_model, "direction", kind)
        apply = _project_out(_DeviceCache(u / u.norm()), positions)
    elif isinstance(edit, Add):
        try:
            scale = float(edit.scale)
        except (TypeError, ValueError):
            raise EditError(f"Add: scale must be a number, not {edit.scale!r}") from None
        v = _vector(edit.vector, dec.d_model, "vector", kind)
        apply = _add(_DeviceCache(v * scale), positions)
    else:
        apply = _patch(site, positions, head, neuron, dec.n_heads, _patch_values(dec, edit, c, layer, site))
    return ResolvedEdit(edit, site, c, label, layer, positions, apply)


def _patch_values(dec, edit: Patch, c: int, layer: int | None, site: str) -> _DeviceCache:
    from .core import Decomposition

    source = edit.source
    if not isinstance(source, Decomposition):
        raise EditError(f"Patch: source must be a Decomposition of the same model (rw.decompose(model, other_prompt)), "
                        f"not {type(source).__name__}")
    if source.n_tokens != dec.n_tokens:
        raise EditError(f"Patch: the source prompt has {source.n_tokens} tokens but this one has {dec.n_tokens}: "
                        "patching needs prompts of the same length (pad or rephrase one of them)")
    if source.model is not dec.model or source.labels != dec.labels or source.d_model != dec.d_model:
        raise EditError("Patch: the source was decomposed with another model "
                        f"({source.model_name or type(source.model).__name__}, {len(source.labels)} components); "
                        "decompose both prompts with the same model object")
    if site == "head":
        return _DeviceCache(source._head_inputs[layer])  # [T, H*dh]
    if site == "neuron":
        return _DeviceCache(source.neuron_activations(layer))  # [T, d_ff]
    return _DeviceCache(source.deltas[c])  # [T, d]


def _zero(site, positions, head, neuron, n_heads):
    def apply(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        p = _positions_slice(t, positions)
        if site == "head":
            _heads_view(t, n_heads)[:, p, head] = 0
        elif site == "neuron":
            t[:, p, neuron] = 0
        else:
            t[:, p] = 0
        return t
    return apply


def _project_out(u: _DeviceCache, positions):
    def apply(t: torch.Tensor) -> torch.Tensor:
        p = _positions_slice(t, positions)
        x = t[:, p].float()
        uu = u.to(x)
        t = t.clone()
        t[:, p] = (x - (x @ uu)[..., None] * uu).to(t.dtype)
        return t
    return apply


def _add(v: _DeviceCache, positions):
    def apply(t: torch.Tensor) -> torch.Tensor:
        p = _positions_slice(t, positions)
        t = t.clone()
        x = t[:, p].float()
        t[:, p] = (x + v.to(x)).to(t.dtype)
        return t
    return apply


def _patch(site, positions, head, neuron, n_heads, values: _DeviceCache):
    def apply(t: torch.Tensor) -> torch.Tensor:
        src = values.to(t)
        t = t.clone()
        p = _positions_slice(t, positions)
        if site == "head":
            _heads_view(t, n_heads)[:, p, head] = _heads_view(src[None], n_heads)[0, p, head]
        elif site == "neuron":
            t[:, p, neuron] = src[p, neuron]
        else:
            t[:, p] = src[p]
        return t
    return apply


# --------------------------------------------------------------------------------------------
# Placing the hooks
# --------------------------------------------------------------------------------------------
def _output_hook(apply):
    def hook(module, args, out):
        if isinstance(out, tuple):
            return (apply(out[0]),) + tuple(out[1:])
        if isinstance(out, list):
            return [apply(out[0])] + list(out[1:])
        return apply(out)
    return hook


def _input_hook(apply):
    def hook(module, args, kwargs):
        if args:
            return (apply(args[0]),) + tuple(args[1:]), kwargs
        key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
        return args, {**kwargs, key: apply(kwargs[key])}
    return hook


def hf_hooks(model, adapter, resolved: Sequence[ResolvedEdit]) -> Callable[[list], None]:
    """A function that registers the edits' hooks on a Hugging Face model (appending the handles
    to the list it is given), before any other hook of the run, in the order of the edits.

    Args:
        model: the Hugging Face model.
        adapter: its family's adapter.
        resolved: the edits, from :func:`resolve`.
    """
    from .adapters.base import require_module

    def place(handles: list) -> None:
        layers = require_module(model, adapter.layers, "decoder layers", adapter)
        embeddings = dict(adapter.embeddings)
        for edit in resolved:
            if edit.layer is None:  # an embedding
                if embeddings:
                    module = require_module(model, embeddings[edit.label], f"embedding '{edit.label}'", adapter)
                    handles.append(module.register_forward_hook(_output_hook(edit.apply)))
                else:  # the embedding is what enters the first block
                    handles.append(layers[0].register_forward_pre_hook(_input_hook(edit.apply), with_kwargs=True))
                continue
            layer = layers[edit.layer]
            kind = "attn" if edit.label.startswith("attn") else "mlp"
            if edit.site == "delta":
                module = require_module(layer, adapter.delta_path(kind), f"{kind} output", adapter)
                handles.append(module.register_forward_hook(_output_hook(edit.apply)))
            else:
                path = adapter.attn_out_proj if edit.site == "head" else adapter.mlp_out_proj
                module = require_module(layer, path, "output projection", adapter)
                handles.append(module.register_forward_pre_hook(_input_hook(edit.apply), with_kwargs=True))
    return place


def tl_hooks(resolved: Sequence[ResolvedEdit]) -> list[tuple[str, Callable]]:
    """The edits as TransformerLens ``fwd_hooks`` (hook_embed / hook_pos_embed,
    blocks.l.hook_attn_out / hook_mlp_out, attn.hook_z, mlp.hook_post).

    Args:
        resolved: the edits, from :func:`resolve`.
    """
    hooks = []
    for edit in resolved:
        if edit.layer is None:
            name = "hook_embed" if edit.label == "embed" else "hook_pos_embed"
        elif edit.site == "head":
            name = f"blocks.{edit.layer}.attn.hook_z"
        elif edit.site == "neuron":
            name = f"blocks.{edit.layer}.mlp.hook_post"
        else:
            name = f"blocks.{edit.layer}.hook_{'attn' if edit.label.startswith('attn') else 'mlp'}_out"
        hooks.append((name, lambda tensor, hook, apply=edit.apply: apply(tensor)))
    return hooks


def edit(dec, *edits):
    """:meth:`Decomposition.edit`: re-run ``dec``'s tokens with ``edits`` applied; see the module
    docstring. Edits of an already edited Decomposition add to its edits (the baseline stays the
    unedited run).

    Args:
        dec: a Decomposition (plain or edited).
        *edits: the edits (or one list of them).

    Raises:
        EditError: an edit does not fit ``dec`` (see :meth:`Decomposition.edit`).
    """
    from .backends.huggingface import decompose_huggingface
    from .engine import is_transformer_lens

    if not edits:
        raise EditError("edit() needs at least one edit: dec.edit(rw.Zero('mlp.3'), ...)")
    if len(edits) == 1 and isinstance(edits[0], (list, tuple)):
        edits = tuple(edits[0])
    baseline = getattr(dec, "baseline", None) or dec
    all_edits = tuple(getattr(dec, "edits", ())) + tuple(edits)
    resolved = [resolve(baseline, edit) for edit in all_edits]
    model = dec.model
    if model is None:
        raise UnsupportedModelError("This Decomposition holds no model (it was loaded or freed), so it cannot be "
                                    "re-run with edits: decompose the prompt again with the model.")
    if is_transformer_lens(model):
        from .backends.transformer_lens import decompose_transformer_lens

        out = decompose_transformer_lens(model, baseline.token_ids, tokenizer=baseline.tokenizer,
                                         extra_hooks=tl_hooks(resolved))
    else:
        out = decompose_huggingface(model, baseline.token_ids, baseline.tokenizer, adapter=baseline.adapter,
                                    edit_hooks=hf_hooks(model, baseline.adapter, resolved))
    out.edits = all_edits
    out.baseline = baseline
    return out
