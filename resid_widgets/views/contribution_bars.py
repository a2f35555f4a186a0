"""ContributionBars: how much each layer (attention, MLP) pushed the target at one position."""

from __future__ import annotations

import numpy as np
import traitlets as t

from ..tokens import target_hint
from ._base import ResidView
from .payload import decode_payload, display_token


class BarsState(t.HasTraits):
    """The traits of the contribution bars (ContributionBars, Dashboard).

    ``target_hint`` (read it, the view shows it) says more about the last target: ``{"typed",
    "suggestion"}`` when a target typed without its leading space ("Rome") has a spaced
    single-token variant (" Rome"): the target stays what was typed, the view offers the other
    (only for a target the user named, not one the view chose: its default, a chip, an auto target);
    ``{"typed", "pieces", "error"}`` when a target (typed in the view or set from Python) is several tokens; ``{}``
    otherwise. It is recomputed whenever the target changes, so an error goes away then.
    """

    method = t.Enum(("dla", "logprob"), default_value="dla").tag(sync=True)
    per_head = t.Bool(False).tag(sync=True)
    # top FFN neurons per MLP layer, {"<target id>:<position>": neurons_payload}: computed when an
    # MLP bar is opened (a kernel request) and embedded in snapshots
    _neurons = t.Dict().tag(sync=True)
    target_hint = t.Dict().tag(sync=True)

    def _hint_for(self, text) -> dict:
        dec = getattr(self, "_dec", None)
        try:
            if isinstance(text, int) and not isinstance(text, bool):
                text = dec.token_text(text)
            return target_hint(getattr(dec, "tokenizer", None), text, token_text=dec.token_text)
        except Exception:  # a closed view, or a tokenizer that cannot encode: nothing to add
            return {}

    def _ensure_target_noted(self, ensure, target) -> dict:
        """``ensure(target)``; when it fails for a multi-token text, ``target_hint`` says how that
        text splits (set before the error reaches the view, so it shows the pieces)."""
        try:
            return ensure(target)
        except Exception:
            hint = self._hint_for(target)
            if hint.get("error"):
                self.target_hint = hint
            raise

    @t.observe("target")
    def _hint_after_target(self, change):
        hint = self._hint_for(change["new"])
        if "suggestion" in hint and not self._named_by_user(change["new"]):
            hint = {}  # the view's own choice (the model's prediction, a chip): no "did you mean"
        self.target_hint = hint

    def _named_by_user(self, target) -> bool:
        """Whether ``target`` was typed or set by the user, not chosen by the view (the default
        top prediction, a precomputed chip, the Dashboard's auto target)."""
        if getattr(self, "_auto_depth", 0):
            return False
        entry = self._find_target(target)
        return entry is None or entry.get("source") == "user"


class ContributionBars(BarsState, ResidView):
    """One bar per layer (stacked attention + MLP) or per component, DLA or log-prob increase.

    ``target`` defaults to the model's top prediction at ``position``; ``method`` is ``"dla"``
    (sums, with the constant term, to the model's logit) or ``"logprob"`` (telescopes to
    log p(final) - log p(embedding)).
    """

    _rw_view = t.Unicode("contribution-bars").tag(sync=True)
    short_name = "bars"  # the CLI's --view

    def _ensure_target(self, target) -> dict:
        return self._ensure_target_noted(super()._ensure_target, target)

    def values(self, method: str | None = None, position: int | None = None) -> np.ndarray:
        """[C] contributions of every component at ``position`` for the current target."""
        method = method or self.method
        p = self.position if position is None else position
        tp = self._target_entry()
        if method == "dla":
            return decode_payload(tp["dla"])[:, p]
        lp = decode_payload(tp["logp"]).astype(np.float64)[:, p]
        out = np.zeros_like(lp)
        out[1:] = np.diff(lp)
        return out.astype(np.float32)

    def actual(self, method: str | None = None, position: int | None = None) -> float:
        """The model's own logit (dla) or log-prob (logprob) of the target at ``position``."""
        method = method or self.method
        p = self.position if position is None else position
        tp = self._target_entry()
        return float(decode_payload(tp["logit" if method == "dla" else "logprob"])[p])

    def figure(self, group: str = "layer"):
        """plotly bars as the view draws them: one row per layer with attention and MLP stacked
        (``group="component"``: one per component), coloured by part, on the view's scale (a bar
        that dwarfs the rest is cut); the title names the target and the position.

        Args:
            group: "layer" (the view's default) or "component".
        """
        import plotly.graph_objects as go

        from .figures import PART_COLORS, bar_scale

        if group not in ("layer", "component"):
            raise ValueError(f"group={group!r}: use 'layer' or 'component'")
        v = self.values()
        rows = bar_rows(self._meta, v, group)
        fig = go.Figure()
        names = {"embed": "embedding", "attn": "attention", "mlp": "MLP", "other": "other"}
        for kind, name in names.items():
            parts = [(label, part) for label, row in rows for part in row if part[0] == kind]
            if parts:
                fig.add_bar(y=[label for label, _ in parts], x=[p[2] for _, p in parts], orientation="h", name=name,
                            marker_color=PART_COLORS[kind], customdata=[p[1] for _, p in parts],
                            hovertemplate="%{customdata}: %{x:.4f}<extra></extra>")
        extents = [max(sum(p[2] for p in row if p[2] > 0), -sum(p[2] for p in row if p[2] < 0)) for _, row in rows]
        m = bar_scale(extents)
        unit = "DLA (logit units)" if self.method == "dla" else "log-prob increase"
        tok = display_token(self._meta["tokens"][self.position])
        fig.update_layout(
            title=(
                f"Contributions to {display_token(self.target)} at position {self.position} ({tok}) — {unit}<br>"
                f"<sup>Σ={v.sum():.3f}, model {'logit' if self.method == 'dla' else 'log p'}={self.actual():.3f}"
                f"{'; bars past ±%.3g cut' % m if max(extents, default=0) > m * 1.0001 else ''}</sup>"
            ),
            barmode="relative",
            yaxis={"autorange": "reversed", "categoryorder": "array", "categoryarray": [label for label, _ in rows]},
            xaxis={"title": unit, "zeroline": True, "range": [-1.04 * m, 1.04 * m]},
            height=max(360, 16 * len(rows) + 180),  # 16 px a row: every row keeps its label
            legend={"orientation": "h", "y": -0.12},
        )
        return fig


def bar_rows(meta: dict, values, group: str = "layer") -> list[tuple[str, list[tuple[str, str, float]]]]:
    """The rows of the bar chart ([(row label, [(kind, component label, value)])]), grouped as
    ``barRows`` in js/views/contribution_bars/bar_chart.js: the embedding, one row per layer
    (attention and MLP), the other components; or one row per component."""
    labels, kinds, layers, L = meta["labels"], meta["kinds"], meta["layers"], meta["n_layers"]
    part = [(kinds[c], labels[c], float(values[c])) for c in range(len(labels))]
    if group == "component":
        return [(labels[c], [part[c]]) for c in range(len(labels))]
    embed, by_layer, other = [], [[] for _ in range(L)], []
    for c in range(len(labels)):
        if kinds[c] == "embed":
            embed.append(part[c])
        elif kinds[c] in ("attn", "mlp") and 0 <= layers[c] < L:
            by_layer[layers[c]].append(part[c])
        else:
            other.append((labels[c], [part[c]]))
    return ([("embed", embed)] if embed else []) + [(f"layer {k}", row) for k, row in enumerate(by_layer)] + other
