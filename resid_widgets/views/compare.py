"""Compare: a clean and a corrupt prompt side by side (both stream grids, one selection), each
component's contribution to the metric in both (paired bars), and the activation-patching grid."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import traitlets as t

from . import payload as P
from ._base import METRICS, NORMALIZE, checked_position
from ._two_prompt_base import TwoPromptView
from .lifetime import ClosedDecomposition
from ..patching import _metric as _patching_metric
from .patching_grid import SCALES, patching_data, strongest_cell


def metric_function(dec, metric):
    """(``metric`` as a function of the final logits [V] -> scalar tensor, its name), as
    ``rw.patching`` reads it: ``rw.logit_diff(a, b)``, a target token (its log-prob) or a callable.

    Raises:
        PatchingError: ``metric`` is none of these.
    """
    rows, name = _patching_metric(metric, dec)
    return (lambda logits: rows(logits[None])[0]), name


@dataclass
class MetricContributions:
    """Each component's share of a metric of the last position's logits, linearised through the
    final norm frozen at the real final stream (for a metric linear in the logits, such as a logit
    difference, these are exactly the components' direct logit attributions to it).

    Attributes:
        values: float32 [C] the share of each component (``dec.labels``).
        value: the metric of the model's own final logits.
        rest: ``value - values.sum()``: biases, and the curvature of a non-linear metric.
        gradient: float32 [V] d metric / d logits at the model's logits (what the shares weigh).
    """

    values: np.ndarray
    value: float
    rest: float
    gradient: np.ndarray


def metric_contributions(dec, metric) -> MetricContributions:
    """:class:`MetricContributions` of ``dec``'s last position under ``metric``."""
    fn, _ = metric_function(dec, metric)
    logits = dec.logits[-1].detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        value = fn(logits)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TypeError(f"the metric must return one number (a scalar tensor) of the logits, got {value!r}")
        (grad,) = torch.autograd.grad(value, logits, allow_unused=True)
    grad = torch.zeros_like(logits) if grad is None else grad.detach()
    readout = dec.readout
    if readout.softcap:  # logits = s·tanh(z/s): d/dz = 1 - (logits/s)^2
        grad = grad * (1 - (logits.detach() / readout.softcap) ** 2)
    direction = grad.to(readout.unembed.device) @ readout.unembed  # [d]
    r = readout.norm.to("cpu").frozen_readout(direction.cpu(), dec.states[-1, -1])
    values = (dec.deltas[:, -1].float() @ r).numpy().astype(np.float32)
    v = float(value.detach())
    return MetricContributions(values=values, value=v, rest=v - float(values.astype(np.float64).sum()),
                               gradient=grad.numpy().astype(np.float32))


def _side(dec, contrib: MetricContributions, targets: list[int], k: int) -> dict:
    """One prompt's stream payload (as a StreamGrid's traits) and its metric shares."""
    data = P.build_payload(dec, targets=targets, position=-1, k=k)
    data["contrib"] = P.array_payload(contrib.values, "float32")
    data["value"] = contrib.value
    data["rest"] = contrib.rest
    return data


class Compare(TwoPromptView):
    """Two prompts side by side: ``rw.Compare(clean, corrupt, metric=rw.logit_diff(" Mary", " John"))``.

    - both stream grids, with one selection: ``selected = (state, position)`` moves the highlight
      in both (a click in either sets it);
    - paired bars of each component's share of the metric at the last position in the clean and
      in the corrupt run, with their difference (``contributions()``; click a bar to select its row);
    - the activation-patching grid of ``rw.patching(clean, corrupt, metric=..., components=...,
      positions="each")`` (or the result given as ``patching=``); its selected column follows the
      selected position and the other way round.

    Everything is in the widget's state, so a static snapshot (``to_html()``) keeps the selection,
    the bars and the patching grid.

    Args:
        clean, corrupt: Decompositions of the two prompts (same model, same number of tokens).
        metric: ``rw.logit_diff(a, b)``, a target token (its log-prob), or a callable on the final
            logits [V] returning a scalar tensor.
        patching: a patching result to show instead of running ``rw.patching``.
        components: what ``rw.patching`` patches when it runs here ("resid", "attn", "mlp", "all").
        k: top-k tokens of the logit lens kept per cell (grid tooltips).

    Synced traits: ``selected``, ``target`` (the token the grids' "prob"/"dla" colours follow),
    ``grid_metric`` (what the grids colour: "norm", "delta", "prob", "dla"), ``normalize``,
    ``exclude_first``, ``patch_selected`` and ``scale`` (the patching grid's).

    Raises:
        ValueError: the prompts differ in length or come from different models.
    """

    _rw_view = t.Unicode("compare").tag(sync=True)
    short_name = "compare"
    target = t.Unicode("").tag(sync=True)
    grid_metric = t.Enum(METRICS, default_value="dla").tag(sync=True)
    normalize = t.Enum(NORMALIZE, default_value="quantile").tag(sync=True)
    exclude_first = t.Bool(False).tag(sync=True)
    patch_selected = t.Tuple(t.Int(), t.Int(), default_value=(0, 0)).tag(sync=True)
    scale = t.Enum(SCALES, default_value="normalized").tag(sync=True)

    def __init__(self, clean, corrupt, metric, *, patching=None, components: str = "resid", k: int = 10,
                 **kwargs: Any):
        _check_pair(clean, corrupt)
        self._dec = clean
        self._corrupt = corrupt
        self.metric = metric
        self._patching = patching
        try:
            shares = [metric_contributions(d, metric) for d in (clean, corrupt)]
            # the grids' targets: the tokens the metric pushes up and down most (a logit difference's two)
            g = shares[0].gradient
            targets = list(dict.fromkeys([int(np.argmax(g)), int(np.argmin(g))]))
            data = {"clean": _side(clean, shares[0], targets, k), "corrupt": _side(corrupt, shares[1], targets, k),
                    "metric": metric_function(clean, metric)[1], "patching": {}, "patching_error": ""}
        except Exception as exc:
            self._failed("compare these prompts", exc, **kwargs)
            return
        try:
            if self._patching is None:
                from .. import patching as run_patching

                self._patching = run_patching(clean, corrupt, metric=metric, components=components, positions="each")
            data["patching"] = patching_data(self._patching, tokens=corrupt.tokens)
        except Exception as exc:  # the rest of the view stands without it
            data["patching_error"] = f"no patching grid: {type(exc).__name__}: {exc}"
            warnings.warn(f"Compare: {data['patching_error']}", RuntimeWarning, stacklevel=2)
        C, T = len(clean.labels), len(clean.tokens)
        target = data["clean"]["_targets"][0]["text"]
        selected = kwargs.pop("selected", (C - 1, T - 1))
        super().__init__(_data=data, target=target, **kwargs)
        self._adopt()
        values = {"selected": tuple(selected)}
        if data["patching"]:
            values["patch_selected"] = strongest_cell(data["patching"])
        self._set_or_close(**values)

    def _release(self) -> None:
        self._dec = ClosedDecomposition()
        self._corrupt = None
        self._patching = None
        self._data = {}

    @t.validate("selected")
    def _check_selected(self, proposal):
        s, pos = (int(x) for x in proposal["value"])
        meta = ((self._data or {}).get("clean") or {}).get("_meta")
        if meta:
            C = meta["C"]
            s = s + C if s < 0 else s
            pos = checked_position(pos, meta["T"])
            if not 0 <= s < C:
                raise t.TraitError(f"selected={proposal['value']}: state {s} is outside 0..{C - 1}")
        return (s, pos)

    @t.validate("target")
    def _check_target(self, proposal):
        value = proposal["value"]
        targets = ((self._data or {}).get("clean") or {}).get("_targets")
        if targets and value and not any(tp["text"] == value for tp in targets):
            known = ", ".join(repr(tp["text"]) for tp in targets)
            raise t.TraitError(f"target {value!r} is not precomputed here; choose one of {known}")
        return value

    # ---------------------------------------------------------------- python side
    @property
    def clean(self):
        """The clean prompt's Decomposition."""
        self._check_open()
        return self._dec

    @property
    def corrupt(self):
        """The corrupt prompt's Decomposition."""
        self._check_open()
        return self._corrupt

    @property
    def patching(self):
        """The patching result shown (None when it could not be computed: see the view)."""
        self._check_open()
        return self._patching

    def contributions(self) -> dict[str, np.ndarray]:
        """{"clean": [C], "corrupt": [C], "difference": clean - corrupt}: each component's share of
        the metric at the last position (see :func:`metric_contributions`)."""
        self._check_open()
        out = {side: P.decode_payload(self._data[side]["contrib"]) for side in ("clean", "corrupt")}
        out["difference"] = out["clean"] - out["corrupt"]
        return out

    def figure(self):
        """plotly: paired bars of each component's share of the metric, clean and corrupt."""
        import plotly.graph_objects as go

        self._check_open()
        if not self._data:
            raise ValueError(self._error)
        from .figures import PAIR_COLORS, bar_scale

        v = self.contributions()
        labels = self._data["clean"]["_meta"]["labels"]
        fig = go.Figure([go.Bar(y=labels, x=v[side], orientation="h", name=f"{side} ({self._data[side]['value']:.3f})",
                                marker_color=PAIR_COLORS[side]) for side in ("clean", "corrupt")])
        # the view's scale: a component that dwarfs the rest is cut (barScale)
        m = bar_scale(np.maximum(np.abs(v["clean"]), np.abs(v["corrupt"])))
        fig.update_layout(barmode="group", title=f"Each component's share of {self._data['metric']}",
                          yaxis={"autorange": "reversed"}, xaxis={"range": [-1.04 * m, 1.04 * m], "zeroline": True},
                          height=max(400, 16 * len(labels) + 120))
        return fig


def _check_pair(clean, corrupt) -> None:
    if len(clean.tokens) != len(corrupt.tokens):
        raise ValueError(f"Compare needs prompts of the same length: clean has {len(clean.tokens)} tokens, "
                         f"corrupt {len(corrupt.tokens)}; reword one so both tokenize to the same length")
    models = (getattr(clean, "model", None), getattr(corrupt, "model", None))
    if (list(clean.labels) != list(corrupt.labels) or clean.d_model != corrupt.d_model
            or (None not in models and models[0] is not models[1])):
        raise ValueError("Compare needs two Decompositions of the same model object (their models, components or "
                         "d_model differ): decompose both prompts with one model")

