import { test } from "node:test";
import assert from "node:assert/strict";
import {
  makeNormalizer,
  cellLayout,
  hitCell,
  rowLabelGroups,
  visibleColumns,
  moveSelection,
  quantileSorted,
  niceStep,
  barScale,
} from "../../js/shared/scale.js";
import { cellNumber, fmt, fmtSigned } from "../../js/shared/format.js";
import { lut, rgbAt, textOn, luminance } from "../../js/shared/colors.js";
import { canvasToken, clip, displayToken, tokenFromDisplay, tokenLabel } from "../../js/shared/tokens.js";
import { parseColor, isDarkColor } from "../../js/shared/theme.js";
import { contributions } from "../../js/views/contribution_bars.js";
import { barRows } from "../../js/views/contribution_bars/bar_chart.js";

test("quantiles", () => {
  const s = Float64Array.from([0, 1, 2, 3, 4]);
  assert.equal(quantileSorted(s, 0.5), 2);
  assert.equal(quantileSorted(s, 0.25), 1);
  assert.equal(quantileSorted(s, 1), 4);
});

test("attention sink: per-row and quantile scales are not washed out by position 0", () => {
  // 2 states x 5 positions; position 0 has a norm 100x the others
  const v = Float32Array.from([22000, 100, 150, 170, 120, 21000, 110, 160, 175, 130]);
  const g = makeNormalizer(v, 2, 5, { mode: "global" });
  assert.ok(g.t(0, 3) < 0.01, "a min-max scale is washed out");
  const r = makeNormalizer(v, 2, 5, { mode: "row", skipFirst: true });
  assert.equal(r.t(0, 1), 0);
  assert.equal(r.t(0, 3), 1);
  assert.equal(r.t(0, 0), 1, "the sink is clipped");
  assert.ok(r.clipped(0, 0));
  assert.ok(!r.clipped(0, 2));
  const q = makeNormalizer(v, 2, 5, { mode: "quantile", skipFirst: true });
  assert.ok(q.hi < 200 && q.lo >= 100);
});

test("signed values are centred on zero", () => {
  const v = Float32Array.from([-2, 0, 1, 2]);
  const n = makeNormalizer(v, 1, 4, { mode: "global", signed: true });
  assert.equal(n.t(0, 1), 0.5);
  assert.equal(n.t(0, 0), 0);
  assert.equal(n.t(0, 3), 1);
  assert.equal(n.lo, -2);
});

test("NaN cells stay NaN; constant rows do not divide by zero", () => {
  const v = Float32Array.from([NaN, 3, 3, 3]);
  const n = makeNormalizer(v, 1, 4, { mode: "row" });
  assert.ok(Number.isNaN(n.t(0, 0)));
  assert.ok(Number.isFinite(n.t(0, 1)));
  const f = makeNormalizer(v, 1, 4, { mode: "fixed", lo: 0, hi: 1 });
  assert.equal(f.t(0, 1), 1);
});

test("layout adapts to the width: big cells for short prompts, scrolling for 1k tokens", () => {
  const small = cellLayout(800, 6, 7);
  assert.equal(small.cellW, 64);
  assert.ok(small.rotated && !small.scroll);
  // long prompts keep columns wide enough for a rotated token and scroll
  const big = cellLayout(800, 1024, 61);
  assert.equal(big.cellW, 14);
  assert.ok(big.scroll && big.rotated && big.header === "rotated");
  assert.equal(big.viewW, 800, "the visible width, never the full one");
  assert.ok(big.gridH <= 480);
  assert.ok(big.cellH >= 5);
  // index ticks only when a caller allows columns under 9 px
  const ticks = cellLayout(800, 1024, 61, { minCellW: 3 });
  assert.equal(ticks.header, "ticks");
  assert.ok(ticks.tickEvery >= 10);
  const mid = cellLayout(1000, 100, 20, { textMinW: 8, minCellW: 8 });
  assert.equal(mid.cellW, 10);
  assert.equal(mid.showText, true);
  // tokens lie flat when a cell holds the widest one
  assert.equal(cellLayout(800, 6, 7, { tokenTextW: 40 }).header, "horizontal");
  assert.equal(cellLayout(800, 60, 7, { tokenTextW: 40 }).header, "rotated");
});

test("visible columns of a scrolled grid", () => {
  const lay = cellLayout(700, 4096, 3);
  assert.deepEqual(visibleColumns(0, 700, lay, 4096), { i0: 0, i1: 50 });
  assert.deepEqual(visibleColumns(14 * 2000 + 7, 700, lay, 4096), { i0: 2000, i1: 2051 });
  assert.deepEqual(visibleColumns(14 * 4096 - 700, 700, lay, 4096), { i0: 4046, i1: 4096 });
});

test("row labels: one per row when tall enough, else one per layer's attn / mlp pair", () => {
  const labels = ["embed", "attn.0", "mlp.0", "attn.1", "mlp.1"];
  assert.equal(rowLabelGroups(labels, 12).length, 5);
  const groups = rowLabelGroups(labels, 7);
  assert.deepEqual(
    groups.map((g) => [g.text, g.c0, g.c1]),
    [
      ["embed", 0, 1],
      ["0", 1, 3],
      ["1", 3, 5],
    ],
  );
  // other names: runs of rows tall enough together for one legible label
  const other = rowLabelGroups(["a", "b", "c", "d", "e"], 4);
  assert.deepEqual(
    other.map((g) => [g.text, g.c0, g.c1]),
    [
      ["a", 0, 3],
      ["d", 3, 5],
    ],
  );
});

test("hit testing and arrow keys", () => {
  const lay = cellLayout(100, 10, 4);
  assert.deepEqual(hitCell(0, 0, lay, 10, 4), [0, 0]);
  assert.deepEqual(hitCell(lay.cellW * 3 + 1, lay.cellH * 2 + 1, lay, 10, 4), [2, 3]);
  assert.equal(hitCell(-1, 0, lay, 10, 4), null);
  assert.equal(hitCell(lay.cellW * 10, 0, lay, 10, 4), null);
  assert.deepEqual(moveSelection([0, 0], "ArrowUp", 4, 10), [0, 0]);
  assert.deepEqual(moveSelection([0, 0], "ArrowDown", 4, 10), [1, 0]);
  assert.deepEqual(moveSelection([1, 9], "ArrowRight", 4, 10), [1, 9]);
  assert.deepEqual(moveSelection([1, 5], "Home", 4, 10), [1, 0]);
  assert.equal(moveSelection([1, 5], "a", 4, 10), null);
  assert.equal(niceStep(7), 10);
});

test("colour maps: colour-blind-safe endpoints, readable text colour", () => {
  assert.equal(lut("viridis").length, 768);
  assert.deepEqual(rgbAt("viridis", 0), [0x44, 0x01, 0x54]);
  assert.deepEqual(rgbAt("viridis", 1), [0xfd, 0xe7, 0x25]);
  for (const x of rgbAt("rdbu", 0.5)) assert.ok(Math.abs(x - 0xf7) <= 2, "zero is neutral");
  assert.equal(rgbAt("cividis", NaN), null);
  assert.equal(textOn([255, 255, 255]), "#000");
  assert.equal(textOn([0, 34, 78]), "#fff");
  assert.ok(luminance([255, 255, 255]) > 0.99);
});

test("tokens as people read them", () => {
  assert.equal(displayToken(" Paris"), "·Paris");
  assert.equal(displayToken("ĠParis"), "·Paris");
  assert.equal(displayToken("\n"), "↵");
  assert.equal(displayToken("  "), "··");
  assert.equal(displayToken(""), "∅");
  assert.equal(displayToken("<script>"), "<script>");
  assert.equal(clip("abcdefgh", 4), "abc…");
});

test("invisible and control characters show visibly; token text is isolated inside strings", () => {
  assert.equal(displayToken("\u202e"), "⟨U+202E⟩", "a right-to-left override neither blanks nor reverses");
  assert.equal(displayToken("ab\u202ecd"), "ab⟨U+202E⟩cd");
  assert.equal(displayToken("\u200b"), "⟨U+200B⟩");
  assert.equal(displayToken("\u2067x\u2069"), "⟨U+2067⟩x⟨U+2069⟩");
  assert.equal(displayToken("\x07"), "⟨U+0007⟩");
  assert.equal(displayToken("\x1b[0m"), "⟨U+001B⟩[0m");
  assert.equal(displayToken("\x7f"), "⟨U+007F⟩");
  assert.equal(displayToken("\x85"), "⟨U+0085⟩");
  assert.equal(displayToken("\u{e0041}"), "⟨U+E0041⟩");
  assert.equal(displayToken("\u00a0"), "⟨U+00A0⟩", "a token of blanks only shows each");
  assert.equal(displayToken(" \u3000"), "·⟨U+3000⟩");
  assert.equal(displayToken("a\u00a0b"), "a\u00a0b");
  for (const s of [" Paris", "\u202e", "\x07x", "\n", "\t", "\u200b\u200d", "  "]) {
    assert.equal(tokenFromDisplay(displayToken(s)), s, JSON.stringify(s));
  }
  assert.equal(tokenLabel("\u202e"), "\u2068⟨U+202E⟩\u2069");
  assert.equal(canvasToken("\u202eabcdefgh", 5), "\u2068⟨U+2…\u2069");
  assert.equal(fmt(1234567), "1.23e+6");
  assert.equal(fmtSigned(-0.5), "−0.500");
});

test("theme from a background colour", () => {
  assert.ok(isDarkColor(parseColor("rgb(17, 20, 24)")));
  assert.ok(!isDarkColor(parseColor("rgba(255, 255, 255, 1)")));
  assert.equal(parseColor("rgba(0, 0, 0, 0)").a, 0);
  assert.equal(parseColor("transparent"), null);
  // theme colours as declared in colors.js (custom properties read back as written)
  assert.deepEqual(parseColor(" #2166ac"), { r: 33, g: 102, b: 172, a: 1 });
  assert.equal(parseColor("#21"), null);
});

test("bars: layers stack attention and MLP; log-prob contributions telescope", () => {
  const meta = {
    labels: ["embed", "attn.0", "mlp.0", "attn.1", "mlp.1"],
    kinds: ["embed", "attn", "mlp", "attn", "mlp"],
    layers: [-1, 0, 0, 1, 1],
    n_layers: 2,
    C: 5,
    T: 2,
  };
  const rows = barRows(meta, [0.1, 1, -2, 3, 4], "layer");
  assert.deepEqual(
    rows.map((r) => r.label),
    ["embed", "layer 0", "layer 1"],
  );
  assert.deepEqual(
    rows[1].parts.map((p) => p.kind),
    ["attn", "mlp"],
  );
  assert.equal(barRows(meta, [0, 0, 0, 0, 0], "component").length, 5);
  const logp = Float32Array.from([-5, -6, -4, -4.5, -3, -3.5, -2, -1, -1, -0.5]);
  const t = { logp, dla: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) };
  const lp = contributions(meta, t, 0, "logprob");
  const sum = Array.from(lp).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - (-1 - -5)) < 1e-9);
  assert.equal(lp[0], 0);
  assert.deepEqual(Array.from(contributions(meta, t, 1, "dla")), [2, 4, 6, 8, 10]);
});

test("bar scale cuts a giant bar; heat-map numbers stay short", () => {
  assert.equal(barScale([1, 2, 3]), 3);
  assert.ok(Math.abs(barScale([97, 12, 4, 3]) - 13.8) < 1e-9);
  assert.equal(barScale([]), 1e-9);
  assert.equal(cellNumber(7.63e-4), "0");
  assert.equal(cellNumber(-3.14159), "−3.14");
  assert.equal(cellNumber(13.25), "13.3");
  assert.equal(cellNumber(250.4), "250");
});
