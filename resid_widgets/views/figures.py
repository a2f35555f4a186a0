"""What the views' ``figure()`` share so that a plotly figure looks like its view: the palette of
``js/shared/colors.js`` and the colour ranges of ``js/shared/scale.js``, mirrored once here
(tests/test_figures.py runs both on the same numbers), and the rule for text in heat-map cells.

>>> lo, hi = color_range(values, mode="quantile", signed=False)   # what the view's legend shows
>>> go.Heatmap(z=values, **heatmap_colors(values, "viridis", mode="quantile"))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the colour stops of js/shared/colors.js (viridis, cividis; ColorBrewer RdBu, blue = negative)
STOPS = {
    "viridis": ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
                "#b5de2b", "#fde725"],
    "cividis": ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8779", "#a69d75", "#c4b56c",
                "#e4cf5b", "#fee838"],
    "rdbu": ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d",
             "#b2182b", "#67001f"],
}
#: Okabe–Ito colours of a bar's parts, as the views draw them
PART_COLORS = {"embed": "#999999", "attn": "#0072B2", "mlp": "#E69F00", "other": "#CC79A7"}
#: the two runs of a comparison (clean, corrupt)
PAIR_COLORS = {"clean": "#0072B2", "corrupt": "#D55E00"}
#: raises the target (RdBu red) or lowers it (RdBu blue)
SIGN_COLORS = {"up": STOPS["rdbu"][8], "down": STOPS["rdbu"][2]}
#: the selection frame (the light theme's --rw-sel)
SELECTION = "#ff2d95"
#: the views' fonts; plotly's default font size is 12
FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'


def position_labels(tokens, max_chars: int = 12) -> list[str]:
    """Column labels "i:token" of a heat map, each token shown as the views show it (spaces as
    "·") and clipped to max_chars (rotated tick labels must not run into the next plot)."""
    from .payload import display_token

    shown = (display_token(tok) for tok in tokens)
    return [f"{i}:{tok if len(tok) <= max_chars else tok[: max_chars - 1] + '…'}" for i, tok in enumerate(shown)]


def colorscale(name: str) -> list[list]:
    """The plotly colorscale of one of the views' colour maps ("viridis", "cividis", "rdbu")."""
    stops = STOPS[name]
    return [[k / (len(stops) - 1), c] for k, c in enumerate(stops)]


@dataclass
class ColorRange:
    """A colour scale's range: ``lo``..``hi``; with ``mode="row"`` each state row's own range
    (``row_lo``, ``row_hi``, shape [C]) and ``lo``/``hi`` the widest of them."""

    lo: float
    hi: float
    mode: str
    signed: bool
    row_lo: np.ndarray | None = None
    row_hi: np.ndarray | None = None


def color_range(values, mode: str = "quantile", signed: bool = False, skip_first: bool = False,
                fixed: tuple[float, float] | None = None) -> ColorRange:
    """The range the views colour a [C, T] matrix by (``makeNormalizer`` in js/shared/scale.js).

    Args:
        values: [C, T] array (NaN cells are left out).
        mode: "quantile" (2nd..98th percentile; signed: ± the 98th percentile of |v|), "global"
            (min..max; signed: ± max |v|), "row" (each row on its own range) or "fixed".
        signed: diverging, centred at 0.
        skip_first: position 0 (an attention sink) is left out of the statistics.
        fixed: (lo, hi) for mode "fixed" (also selects it).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    if fixed is not None or mode == "fixed":
        lo, hi = fixed if fixed is not None else (0.0, 1.0)
        return ColorRange(float(lo), float(hi), "fixed", signed)
    stats = v[:, 1:] if skip_first and v.shape[1] > 1 else v
    if mode == "row":
        row_lo, row_hi = np.zeros(len(v)), np.ones(len(v))
        for c, row in enumerate(stats):
            row = row[np.isfinite(row)]
            a, b = (float(row.min()), float(row.max())) if row.size else (0.0, 1.0)
            if signed:
                m = max(abs(a), abs(b)) or 1.0
                a, b = -m, m
            elif b - a < 1e-12:
                b = a + 1
            row_lo[c], row_hi[c] = a, b
        return ColorRange(float(row_lo.min()), float(row_hi.max()), mode, signed, row_lo, row_hi)
    finite = stats[np.isfinite(stats)]
    if not finite.size:
        lo, hi = 0.0, 1.0
    elif mode == "global":
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = (float(x) for x in np.quantile(finite, [0.02, 0.98]))
    if signed:
        m = max(abs(lo), abs(hi))
        if mode == "quantile" and finite.size:
            m = float(np.quantile(np.abs(finite), 0.98))
        m = m or 1.0
        return ColorRange(-m, m, mode, signed)
    if not hi - lo > 1e-12:
        hi = lo + 1
    return ColorRange(lo, hi, mode, signed)


def heatmap_colors(values, cmap: str, **range_options) -> dict:
    """Keyword arguments of a ``go.Heatmap`` coloured as the view colours ``values`` [C, T]:
    ``z`` (None for NaN), ``zmin``/``zmax`` from :func:`color_range` (cells beyond them
    saturate, as in the view), the view's colour map. With ``mode="row"`` z is each row's
    position in its own range (0..1) and the values go in ``customdata`` for the hover."""
    v = np.asarray(values, dtype=np.float64)
    rng = color_range(v, **range_options)
    out = {"colorscale": colorscale(cmap), "zmin": rng.lo, "zmax": rng.hi}
    if rng.mode == "row":
        span = (rng.row_hi - rng.row_lo)[:, None]
        z = np.clip((v - rng.row_lo[:, None]) / span, 0, 1)
        out.update(zmin=0.0, zmax=1.0, customdata=_nulls(v))
        v = z
    out["z"] = _nulls(v)
    return out


def _nulls(v: np.ndarray) -> list:
    """Nested lists with None for NaN (plotly leaves those cells empty)."""
    out = v.astype(object)
    out[~np.isfinite(v)] = None
    return out.tolist()


def max_abs(values, floor: float = 1e-9) -> float:
    """Half-width of a symmetric colour scale: the largest |v| (``maxAbs`` in scale.js)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    return float(max(floor, v.max())) if v.size else floor


def bar_scale(extents) -> float:
    """Half-width of a bar scale (``barScale`` in scale.js): the largest extent, unless one bar is
    more than 3x the next: then 1.15x the second largest, and the giant is cut."""
    a = sorted((float(x) for x in extents if np.isfinite(x)), reverse=True)
    if not a or a[0] <= 0:
        return 1e-9
    if len(a) > 2 and a[1] > 0 and a[0] > 3 * a[1]:
        return 1.15 * a[1]
    return a[0]


# a heat map's cells, as the figures lay them out: the plot area's width, a row's height
PLOT_WIDTH = 860
MARGIN = {"l": 90, "r": 30, "t": 80, "b": 110}
TEXT_MIN_W = 26  # the logit lens's textMinW (js/views/logit_lens.js)
TEXT_MIN_H = 11  # scale.js's cellLayout shows text from 11 px rows


def cell_text_size(cell_w: float, cell_h: float, chars: int = 5) -> int | None:
    """Font size (px) for text in a heat map's cells of that size, or None when it would not be
    readable there (then the text belongs in the hover only)."""
    if cell_w < TEXT_MIN_W or cell_h < TEXT_MIN_H:
        return None
    return int(max(8, min(11, cell_h - 3, 1.7 * cell_w / max(1, chars))))


def heatmap_height(n_rows: int, row_px: float, extra: int = 0) -> int:
    """The figure height that gives n_rows rows of row_px pixels (plus margins and extra)."""
    return int(MARGIN["t"] + MARGIN["b"] + extra + n_rows * row_px)


def frame(fig, state: int, position: int, **where):
    """Frame the selected cell (a state row, a position column) of a heat map in the views'
    selection colour; ``where``: plotly's ``row=``, ``col=`` of a subplot."""
    fig.add_shape(type="rect", x0=position - 0.5, x1=position + 0.5, y0=state - 0.5, y1=state + 0.5,
                  line={"color": SELECTION, "width": 2}, **where)
    return fig
