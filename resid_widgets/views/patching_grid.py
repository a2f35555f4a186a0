"""PatchingGrid: the result of an activation-patching sweep as a components x tokens heat map."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from ._two_prompt_base import TwoPromptView
from .lifetime import ClosedDecomposition
from .payload import array_payload, decode_payload

#: what the colour shows: the normalised recovery (0 = corrupt, 1 = clean) or the raw metric
SCALES = ("normalized", "raw")


def _numpy(x) -> np.ndarray:
    """A tensor or array-like as a float64 numpy array (a tensor's graph and device dropped)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def metric_name(metric) -> str:
    """A short readable name of a patching metric: a result's metric name (text) as it is, else the
    metric's ``name`` (or ``__name__``), else its type."""
    if metric is None or isinstance(metric, str):
        return metric or ""
    for attr in ("name", "__name__"):
        value = getattr(metric, attr, None)
        if isinstance(value, str) and value and value != "<lambda>":
            return value
    return type(metric).__name__


def _prompt_tokens(res, tokens) -> list[str] | None:
    """The prompt's tokens: given, or ``res.tokens``, or the tokens of the result's corrupt/clean run."""
    if tokens is not None:
        return [str(x) for x in tokens]
    for owner in (res, getattr(res, "corrupt", None), getattr(res, "clean", None)):
        found = getattr(owner, "tokens", None) if owner is not None else None
        if found is not None:
            return [str(x) for x in found]
    return None


def patching_data(res, tokens=None) -> dict:
    """The synced payload of a patching result ``res`` (``.raw``, ``.values``, ``.labels``,
    ``.clean_value``, ``.corrupt_value``): rows, columns and the [R, K] raw and normalised values
    (float32).

    Columns are the prompt's tokens when ``raw`` is [rows, T]; one "all positions" column when it
    is [rows] (or [rows, 1]); heads ("H0", ...) when it is [layers, heads] (``components="heads"``
    with ``positions="all"``).

    Raises:
        ValueError: the result's arrays and labels do not fit together (names the shapes).
    """
    raw, values = _numpy(res.raw), _numpy(res.values)
    if raw.shape != values.shape:
        raise ValueError(f"patching result: raw {list(raw.shape)} and values {list(values.shape)} differ in shape")
    if raw.ndim == 1:
        raw, values = raw[:, None], values[:, None]
    if raw.ndim != 2:
        raise ValueError(f"patching result: raw must be [rows, positions] or [rows], got shape {list(raw.shape)}")
    R, K = raw.shape
    labels = [str(x) for x in res.labels]
    prompt = _prompt_tokens(res, tokens)
    if len(labels) == R:
        row_labels = labels
    elif len(labels) == R * K:  # [L, H] heads: the labels name each head; rows are the layers
        row_labels = [f"L{r}" for r in range(R)]
    else:
        raise ValueError(f"patching result: {len(labels)} labels for {R} rows (raw {list(raw.shape)})")
    given = [str(x) for x in getattr(res, "columns", None) or ()]
    if K == 1:
        kind, columns = "all", ["all positions"]
    elif prompt is not None and K == len(prompt) and len(labels) == R and getattr(res, "positions", "each") == "each":
        kind, columns = "token", prompt
    elif len(labels) == R * K or getattr(res, "components", "") == "heads":
        kind, columns = "head", given if len(given) == K else [f"H{k}" for k in range(K)]
    else:
        kind, columns = "index", given if len(given) == K else [str(k) for k in range(K)]
    return {
        "labels": row_labels,
        "columns": columns,
        "column_kind": kind,
        "R": R,
        "K": K,
        "raw": array_payload(raw.astype(np.float32), "float32"),
        "values": array_payload(values.astype(np.float32), "float32"),
        "clean_value": float(res.clean_value),
        "corrupt_value": float(res.corrupt_value),
        "metric": metric_name(getattr(res, "metric", None)),
        "method": str(getattr(res, "method", "") or ""),
    }


def strongest_cell(data: dict) -> tuple[int, int]:
    """(row, column) of the largest |normalised value| of a :func:`patching_data` payload."""
    v = np.abs(np.nan_to_num(decode_payload(data["values"])))
    r, k = np.unravel_index(int(v.argmax()), v.shape)
    return int(r), int(k)


class PatchingGrid(TwoPromptView):
    """An activation-patching result (``rw.patching(clean, corrupt, metric=...)``) as a heat map.

    Rows are the patched components (``res.labels``), columns the tokens (or one "all positions"
    column, or heads). The colour is diverging around 0 with its scale shown: ``scale="normalized"``
    (default) colours ``res.values`` (0 = the corrupt run, 1 = the clean run), ``scale="raw"`` the
    metric of each patched run. Hover a cell for both values; click (or arrow keys) selects it:
    ``selected = (row, column)``, synced. Everything is in the widget's state, so a static
    snapshot (``to_html()``) is as interactive as the live view.

    Args:
        res: a patching result with ``raw``, ``values``, ``labels``, ``clean_value`` and
            ``corrupt_value``.
        tokens: the prompt's tokens for the column headers (default: the result's own).
    """

    _rw_view = t.Unicode("patching-grid").tag(sync=True)
    short_name = "patching"
    scale = t.Enum(SCALES, default_value="normalized").tag(sync=True)

    def __init__(self, res, tokens=None, **kwargs: Any):
        self._dec = None  # no Decomposition of its own; ClosedDecomposition once closed
        self._res = res
        try:
            data = patching_data(res, tokens)
        except Exception as exc:
            self._failed("show this patching result", exc, **kwargs)
            return
        selected = kwargs.pop("selected", None)
        super().__init__(_data=data, **kwargs)
        self._adopt()
        self._set_or_close(selected=tuple(strongest_cell(data) if selected is None else selected))

    def _release(self) -> None:
        self._dec = ClosedDecomposition()
        self._res = None
        self._data = {}

    @t.validate("selected")
    def _check_selected(self, proposal):
        r, k = (int(x) for x in proposal["value"])
        R, K = (self._data or {}).get("R"), (self._data or {}).get("K")
        if R is not None:
            r, k = r + R if r < 0 else r, k + K if k < 0 else k
            if not (0 <= r < R and 0 <= k < K):
                raise t.TraitError(f"selected={proposal['value']} is outside the grid ({R} rows x {K} columns)")
        return (r, k)

    # ---------------------------------------------------------------- python side
    @property
    def result(self):
        """The patching result shown."""
        self._check_open()
        return self._res

    def values(self, scale: str | None = None) -> np.ndarray:
        """[R, K] what the colour shows (``scale`` defaults to the current one)."""
        self._check_open()
        scale = scale or self.scale
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
        return decode_payload(self._data["values" if scale == "normalized" else "raw"])

    def figure(self):
        """plotly heat map of what the view shows (diverging around 0, the selected cell framed)."""
        import plotly.graph_objects as go

        self._check_open()
        if not self._data:
            raise ValueError(self._error)
        d = self._data
        from .figures import frame, heatmap_colors, position_labels

        z = self.values()
        x = position_labels(d["columns"]) if d["column_kind"] == "token" else list(d["columns"])
        title = "normalised (0 = corrupt, 1 = clean)" if self.scale == "normalized" else f"metric {d['metric']}"
        # the view's scale: symmetric around 0, as wide as the largest |value| (patchingNormalizer)
        colors = heatmap_colors(z, "rdbu", mode="global", signed=True)
        fig = go.Figure(go.Heatmap(x=x, y=d["labels"], colorbar={"title": title}, **colors))
        frame(fig, *self.selected)
        fig.update_layout(title=f"Activation patching {d['metric']}: clean {d['clean_value']:.3f}, "
                                f"corrupt {d['corrupt_value']:.3f}", yaxis={"autorange": "reversed"})
        return fig
