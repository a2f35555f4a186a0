"""figure() looks like its view (issue 11, "Snapshots and figures"): on real tiny decompositions,
each figure's colour range is the one the view's JS computes from the same payload (scale.js run
by node on the same numbers), with the views' colour maps (colors.js), titles that name the target
and the position, and the logit lens's text only where its cells are large enough to read it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import resid_widgets as rw
from models_zoo import build, random_ids
from resid_widgets.views.figures import (
    PAIR_COLORS,
    PART_COLORS,
    STOPS,
    bar_scale,
    color_range,
    colorscale,
    position_labels,
)
from resid_widgets.views.payload import display_token
from views_fixtures import tiny_llama_decomposition

ROOT = Path(__file__).resolve().parents[1]
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# reads [{kind, ...}] on stdin, answers with what js/shared/scale.js and colors.js compute
NODE = """
import { makeNormalizer, barScale } from "./js/shared/scale.js";
import { lut } from "./js/shared/colors.js";
let text = "";
for await (const chunk of process.stdin) text += chunk;
const out = JSON.parse(text).map((c) => {
  if (c.kind === "barScale") return barScale(c.extents);
  if (c.kind === "lut") return Array.from(lut(c.name));
  const values = Float64Array.from(c.values, (v) => (v === null ? NaN : v));
  const n = makeNormalizer(values, c.C, c.T, c.opts);
  return { lo: n.lo, hi: n.hi, rowLo: n.rowLo && Array.from(n.rowLo), rowHi: n.rowHi && Array.from(n.rowHi) };
});
process.stdout.write(JSON.stringify(out));
"""


def js(cases: list[dict]) -> list:
    """Run the cases through the views' own JS (one node process for all of them)."""
    r = subprocess.run(["node", "--input-type=module", "-e", NODE], cwd=ROOT, input=json.dumps(cases),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def normalizer_case(values, mode="quantile", signed=False, skip_first=False, fixed=None) -> dict:
    """A makeNormalizer call on a [C, T] matrix, as the views make it (normalizerFor)."""
    v = np.asarray(values, dtype=np.float64)
    opts = {"mode": "fixed", "lo": fixed[0], "hi": fixed[1]} if fixed else \
        {"mode": mode, "signed": signed, "skipFirst": skip_first}
    flat = [None if not np.isfinite(x) else float(x) for x in v.ravel()]
    return {"kind": "normalizer", "values": flat, "C": v.shape[0], "T": v.shape[1], "opts": opts}


def heatmaps(fig):
    return [tr for tr in fig.data if tr.type == "heatmap"]


# ------------------------------------------------------------------- the mirror of scale.js

SINK = np.array([[900.0, 1.0, 2.0, 3.0, np.nan, 5.0],
                 [-800.0, -4.0, 6.0, -2.0, 0.5, 7.0],
                 [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
RANGE_CASES = [dict(mode=m, signed=s, skip_first=k) for m in ("quantile", "global", "row")
               for s in (False, True) for k in (False, True)] + [dict(fixed=(0, 1))]


@needs_node
def test_color_range_is_the_range_scale_js_computes():
    got = js([normalizer_case(SINK, **case) for case in RANGE_CASES])
    for case, want in zip(RANGE_CASES, got):
        rng = color_range(SINK, **case)
        assert (rng.lo, rng.hi) == pytest.approx((want["lo"], want["hi"]), rel=1e-12), case
        if case.get("mode") == "row":
            np.testing.assert_allclose(rng.row_lo, want["rowLo"], rtol=1e-12)
            np.testing.assert_allclose(rng.row_hi, want["rowHi"], rtol=1e-12)
    # left out of the statistics, the sink at position 0 no longer sets the scale
    assert color_range(SINK, mode="global").hi == 900 and color_range(SINK, mode="global", skip_first=True).hi == 7


@needs_node
def test_bar_scale_and_colour_maps_are_the_ones_of_the_views():
    extents = [[3.0, 1.0, 0.5], [40.0, 2.0, 1.5, 1.0], [], [0.0, 0.0], [5.0, 4.0, np.nan]]
    got = js([{"kind": "barScale", "extents": [x if np.isfinite(x) else None for x in e]} for e in extents]
             + [{"kind": "lut", "name": name} for name in STOPS])
    assert [bar_scale(e) for e in extents] == pytest.approx(got[:len(extents)])
    for name, table in zip(STOPS, got[len(extents):]):
        scale = colorscale(name)
        at = np.array([pos for pos, _ in scale])
        rgb = np.array([[int(c[k:k + 2], 16) for k in (1, 3, 5)] for _, c in scale], dtype=float)
        t = np.arange(256) / 255
        ours = np.stack([np.interp(t, at, rgb[:, j]) for j in range(3)], 1)
        np.testing.assert_allclose(ours, np.array(table, dtype=float).reshape(256, 3), atol=1.0, err_msg=name)


# ------------------------------------------------------------------- the views' figures

@pytest.fixture(scope="module")
def dec():
    return tiny_llama_decomposition(T=10, n_layers=2)


GRID_CASES = [("norm", "quantile", True), ("norm", "global", False), ("delta", "row", False),
              ("prob", "quantile", False), ("dla", "quantile", False), ("dla", "global", True), ("dla", "row", True)]


@needs_node
def test_stream_grid_figure_has_the_views_colour_range(dec):
    w = rw.StreamGrid(dec)
    cases, figs = [], []
    for metric, normalize, exclude_first in GRID_CASES:
        w.metric, w.normalize, w.exclude_first = metric, normalize, exclude_first
        values = w.values()
        # as js/views/stream_grid.js colours it: p on a fixed 0..1, DLA diverging, norms sequential
        fixed = (0, 1) if metric == "prob" else None
        cases.append(normalizer_case(values, normalize, metric == "dla", exclude_first, fixed))
        figs.append((w.figure(), values, metric, normalize))
    for (fig, values, metric, normalize), want in zip(figs, js(cases)):
        (heat,) = heatmaps(fig)
        cmap = {"norm": "viridis", "delta": "viridis", "prob": "cividis", "dla": "rdbu"}[metric]
        assert [list(s) for s in heat.colorscale] == colorscale(cmap)
        if normalize == "row" and metric != "prob":
            # each row on its own range: z is the position in it, the values are in the hover
            span = np.array(want["rowHi"]) - np.array(want["rowLo"])
            t = np.clip((values - np.array(want["rowLo"])[:, None]) / span[:, None], 0, 1)
            np.testing.assert_allclose(np.array(heat.z, dtype=float), t, rtol=1e-6, atol=1e-9)
            assert (heat.zmin, heat.zmax) == (0, 1)
        else:
            assert (heat.zmin, heat.zmax) == pytest.approx((want["lo"], want["hi"]), rel=1e-9), (metric, normalize)
            np.testing.assert_allclose(np.array(heat.z, dtype=float), values, rtol=1e-6)
        if metric == "dla":  # centred at 0 (per row: each row's range is)
            lo, hi = (want["rowLo"], want["rowHi"]) if normalize == "row" else ([heat.zmin], [heat.zmax])
            np.testing.assert_array_equal(np.negative(lo), hi)
            assert display_token(w.target) in fig.layout.title.text


def test_logit_lens_text_only_where_readable():
    short, long_ = tiny_llama_decomposition(T=10, n_layers=2), tiny_llama_decomposition(T=150, n_layers=2)
    fig = rw.LogitLens(short).figure()
    (heat,) = heatmaps(fig)
    assert heat.texttemplate == "%{text}" and 8 <= heat.textfont.size <= 11
    assert all(len(cell) <= 20 for row in heat.text for cell in row)
    assert (heat.zmin, heat.zmax) == (0, 1) and [list(s) for s in heat.colorscale] == colorscale("cividis")
    (heat,) = heatmaps(rw.LogitLens(long_).figure())
    # 150 columns are too narrow to print a token: the top token is in the hover only
    assert heat.text is None and heat.texttemplate is None
    assert "%{customdata}" in heat.hovertemplate and len(heat.customdata[0]) == 150


def test_contribution_bars_figure_names_target_and_position_in_the_views_colours(dec):
    w = rw.ContributionBars(dec, position=6)
    fig = w.figure()
    title = fig.layout.title.text
    assert f"to {display_token(w.target)} at position 6 ({display_token(dec.tokens[6])})" in title
    assert {tr.marker.color for tr in fig.data} == {PART_COLORS[k] for k in ("embed", "attn", "mlp")}
    # one row per layer plus the embedding, stacked as in the view, on its scale
    assert fig.layout.barmode == "relative"
    assert list(fig.layout.yaxis.categoryarray) == ["embed"] + [f"layer {k}" for k in range(dec.n_layers)]
    values = w.values()
    per_row = [abs(values[0])] + [max(sum(x for x in values[c] if x > 0), -sum(x for x in values[c] if x < 0))
                                  for c in ([1, 2], [3, 4])]
    assert fig.layout.xaxis.range[1] == pytest.approx(1.04 * bar_scale(per_row))
    fig = w.figure(group="component")
    assert sum(len(tr.x) for tr in fig.data) == len(dec.labels)
    with pytest.raises(ValueError, match="'layer' or 'component'"):
        w.figure(group="head")


@needs_node
def test_dashboard_figure_looks_like_its_views(dec):
    w = rw.Dashboard(dec, selected=(3, 7))
    fig = w.figure()
    grid, lens = heatmaps(fig)
    want = js([normalizer_case(rw.StreamGrid.values(w), skip_first=w.exclude_first)])[0]
    # not min-max (all purple but position 0): the grid's robust range
    assert (grid.zmin, grid.zmax) == pytest.approx((want["lo"], want["hi"]), rel=1e-9)
    assert [list(s) for s in grid.colorscale] == colorscale("viridis")
    titles = [a.text for a in fig.layout.annotations]
    assert any(f"to {display_token(w.target)} at position 7" in t for t in titles), titles
    assert lens.texttemplate == "%{text}" and (lens.zmin, lens.zmax) == (0, 1)
    long_ = rw.Dashboard(tiny_llama_decomposition(T=150, n_layers=2)).figure()
    assert heatmaps(long_)[1].texttemplate is None


@pytest.fixture(scope="module")
def pair():
    model = build("llama")
    clean = random_ids(7, seed=1)
    corrupt = clean.clone()
    corrupt[2] = (corrupt[2] + 5) % 97
    return rw.decompose(model, clean), rw.decompose(model, corrupt)


@needs_node
def test_patching_and_compare_figures_use_the_views_scales(pair):
    clean, corrupt = pair
    res = rw.patching(clean, corrupt, metric=rw.logit_diff(3, 4), components="resid", positions="each",
                      progress=False)
    grid = rw.PatchingGrid(res)
    (heat,) = heatmaps(grid.figure())
    want = js([normalizer_case(grid.values(), "global", True)])[0]
    assert (heat.zmin, heat.zmax) == pytest.approx((want["lo"], want["hi"]), rel=1e-9)
    assert [list(s) for s in heat.colorscale] == colorscale("rdbu")
    assert list(heat.x) == position_labels(corrupt.tokens)  # the columns: the corrupt prompt's tokens
    cmp = rw.Compare(clean, corrupt, metric=rw.logit_diff(3, 4))
    fig = cmp.figure()
    assert [tr.marker.color for tr in fig.data] == [PAIR_COLORS["clean"], PAIR_COLORS["corrupt"]]
    v = cmp.contributions()
    m = bar_scale(np.maximum(np.abs(v["clean"]), np.abs(v["corrupt"])))
    assert fig.layout.xaxis.range[1] == pytest.approx(1.04 * m)


def test_analysis_figures_name_target_and_position_in_the_views_colours():
    d = rw.decompose(build("llama"), random_ids(9))
    sources = rw.AttentionSources(d, position=6, layer=1)
    fig = sources.figure()
    (heat,) = heatmaps(fig)
    m = float(np.abs(sources.table()).max())
    assert (heat.zmin, heat.zmax) == pytest.approx((-m, m))
    assert [list(s) for s in heat.colorscale] == colorscale("rdbu")
    target = display_token(sources._data["target"])
    assert f"of {target} at position 6" in fig.layout.title.text and "layer 1" in fig.layout.title.text
    budget = rw.BlockBudget(d, position=5, k=3, drop=False)
    assert f"for {display_token(budget._data['target'])} at position 5" in budget.figure().layout.title.text
    patterns = rw.AttentionPatterns(d, layer=1, head=0, position=4)
    heat = heatmaps(patterns.figure())
    assert heat[0].colorscale[-1][1] == STOPS["rdbu"][1]  # the view's attention ink
    assert [list(s) for s in heat[-1].colorscale] == colorscale("viridis")  # the head scores
