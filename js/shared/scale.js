// Scales: robust normalisation of a [C, T] matrix into [0, 1] for colouring, bar and heat-map
// ranges, and the layout maths of a states x positions grid.

export function quantileSorted(sorted, q) {
  if (!sorted.length) return NaN;
  const x = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const i = Math.floor(x);
  const f = x - i;
  return i + 1 < sorted.length ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

function finiteSorted(values) {
  const a = [];
  for (const v of values) if (Number.isFinite(v)) a.push(v);
  return Float64Array.from(a).sort();
}

/**
 * Normaliser for a [C, T] row-major matrix.
 * opts.mode: "row" (each state row on its own range), "quantile" (2nd..98th percentile of all
 *   cells), "global" (min..max of all cells), "fixed" (opts.lo..opts.hi).
 * opts.signed: diverging around 0 (t = 0.5 at zero).
 * opts.skipFirst: position 0 is left out of the statistics (its cells are clipped).
 * Returns {t(c, i) -> [0,1] or NaN, lo, hi, mode, signed, clipped(c, i)}.
 */
export function makeNormalizer(values, C, T, opts = {}) {
  const mode = opts.mode || "quantile";
  const signed = !!opts.signed;
  const t0 = opts.skipFirst && T > 1 ? 1 : 0;
  const pick = (c0, c1) => {
    const out = [];
    for (let c = c0; c < c1; c++) for (let i = t0; i < T; i++) out.push(values[c * T + i]);
    return out;
  };
  let lo, hi;
  let rowLo = null,
    rowHi = null;
  if (mode === "fixed") {
    lo = opts.lo ?? 0;
    hi = opts.hi ?? 1;
  } else if (mode === "row") {
    rowLo = new Float64Array(C);
    rowHi = new Float64Array(C);
    lo = Infinity;
    hi = -Infinity;
    for (let c = 0; c < C; c++) {
      let a = Infinity,
        b = -Infinity;
      for (let i = t0; i < T; i++) {
        const v = values[c * T + i];
        if (Number.isFinite(v)) {
          if (v < a) a = v;
          if (v > b) b = v;
        }
      }
      if (!Number.isFinite(a)) {
        a = 0;
        b = 1;
      }
      if (signed) {
        const m = Math.max(Math.abs(a), Math.abs(b)) || 1;
        a = -m;
        b = m;
      } else if (b - a < 1e-12) {
        b = a + 1;
      }
      rowLo[c] = a;
      rowHi[c] = b;
      lo = Math.min(lo, a);
      hi = Math.max(hi, b);
    }
  } else {
    const s = finiteSorted(pick(0, C));
    if (!s.length) {
      lo = 0;
      hi = 1;
    } else if (mode === "global") {
      lo = s[0];
      hi = s[s.length - 1];
    } else {
      lo = quantileSorted(s, 0.02);
      hi = quantileSorted(s, 0.98);
    }
    if (signed) {
      let m = Math.max(Math.abs(lo), Math.abs(hi));
      if (mode === "quantile") {
        const abs = finiteSorted(Array.from(s, Math.abs));
        m = quantileSorted(abs, 0.98);
      }
      m = m || 1;
      lo = -m;
      hi = m;
    } else if (!(hi - lo > 1e-12)) {
      hi = lo + 1;
    }
  }
  const t = (c, i) => {
    const v = values[c * T + i];
    if (!Number.isFinite(v)) return NaN;
    const a = rowLo ? rowLo[c] : lo;
    const b = rowHi ? rowHi[c] : hi;
    const x = (v - a) / (b - a);
    return x < 0 ? 0 : x > 1 ? 1 : x;
  };
  const clipped = (c, i) => {
    const v = values[c * T + i];
    const a = rowLo ? rowLo[c] : lo;
    const b = rowHi ? rowHi[c] : hi;
    return v < a - 1e-9 * Math.abs(a) || v > b + 1e-9 * Math.abs(b);
  };
  return { t, lo, hi, mode, signed, clipped, rowLo, rowHi };
}

/** Normaliser of a grid metric ({values, signed, fixed: [lo, hi] or undefined}). */
export function normalizerFor(metric, C, T, mode, skipFirst) {
  if (metric.fixed)
    return makeNormalizer(metric.values, C, T, { mode: "fixed", lo: metric.fixed[0], hi: metric.fixed[1] });
  return makeNormalizer(metric.values, C, T, { mode, signed: metric.signed, skipFirst });
}

/** A synced index (a layer, a budget) as an integer in lo..hi; fallback when it is missing. */
export function clampIndex(value, lo, hi, fallback) {
  const v = value == null || !Number.isFinite(value) ? fallback : value;
  return Math.max(lo, Math.min(hi, Math.round(v)));
}

/** Largest |v| of the values (at least floor): the half-width of a symmetric colour scale. */
export function maxAbs(values, floor = 1e-9) {
  let m = floor;
  for (const v of values) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * Half-width of a bar scale: the largest extent, unless one bar dwarfs the rest (log-prob of the
 * first layer often does): then 1.15 x the second largest, and the giant is cut.
 */
export function barScale(extents) {
  const a = extents.filter((x) => Number.isFinite(x)).sort((x, y) => y - x);
  if (!a.length || a[0] <= 0) return 1e-9;
  if (a.length > 2 && a[1] > 0 && a[0] > 3 * a[1]) return 1.15 * a[1];
  return a[0];
}

/**
 * Cell layout of a states x positions canvas.
 * width: pixels available for the cell area. Columns never get narrower than opts.minCellW (14 px
 * by default, room for a rotated token): longer prompts scroll. opts.tokenTextW (the widest token
 * label in px) lets the header lie flat when a cell holds it. Returns {cellW, cellH, gridW, gridH,
 * viewW (the visible width: the canvas is never wider), scroll, showText, header ("horizontal",
 * "rotated" or "ticks": index ticks only, when cells are under 9 px), rotated, headerH, tickEvery}.
 */
export function cellLayout(width, T, C, opts = {}) {
  const minW = opts.minCellW ?? 14;
  const maxW = opts.maxCellW ?? 64;
  const maxH = opts.maxHeight ?? 480;
  const w = Math.max(1, Math.floor(width));
  let cellW = Math.floor(w / Math.max(1, T));
  cellW = Math.max(minW, Math.min(maxW, cellW));
  const cellH = Math.max(opts.minCellH ?? 5, Math.min(opts.maxCellH ?? 22, Math.floor(maxH / Math.max(1, C))));
  const gridW = cellW * T;
  const gridH = cellH * C;
  const showText = cellW >= (opts.textMinW ?? 30) && cellH >= 11;
  let header = "ticks";
  if (opts.tokenTextW != null && cellW >= opts.tokenTextW + 6) header = "horizontal";
  else if (cellW >= 9) header = "rotated";
  const rotated = header === "rotated";
  const headerH = rotated ? (opts.headerH ?? 64) : 18;
  // when tokens do not fit, label every k-th position with its index
  const tickEvery = header === "ticks" ? niceStep(Math.ceil(36 / cellW)) : 1;
  return {
    cellW,
    cellH,
    gridW,
    gridH,
    viewW: Math.min(gridW, w),
    scroll: gridW > w,
    showText,
    header,
    rotated,
    headerH,
    tickEvery,
  };
}

/** The columns [i0, i1) of a layout that show in a window of viewW px scrolled by scrollLeft px. */
export function visibleColumns(scrollLeft, viewW, lay, T) {
  const i0 = Math.max(0, Math.min(T - 1, Math.floor(scrollLeft / lay.cellW)));
  const i1 = Math.max(i0 + 1, Math.min(T, Math.ceil((scrollLeft + viewW) / lay.cellW)));
  return { i0, i1 };
}

/**
 * Row labels of a grid whose rows may be too short for one label each (under minH px): "attn.12"
 * and "mlp.12" then share one label "12" (the grid adds an a / m marker per row), and runs of other
 * rows share the first one's name (enough rows for a legible label). Returns [{text, c0, c1 (rows
 * c0..c1-1), rows (their names)}] in row order; one per row when every row is tall enough.
 */
export function rowLabelGroups(labels, cellH, minH = 9) {
  if (cellH >= minH) return labels.map((text, c) => ({ text, c0: c, c1: c + 1, rows: [text] }));
  const run = Math.ceil(minH / Math.max(1, cellH));
  const out = [];
  labels.forEach((name, c) => {
    const m = /^(attn|mlp)\.(\d+)$/.exec(name);
    const key = m ? `layer ${m[2]}` : "other";
    const last = out[out.length - 1];
    const joins = last && last.key === key && (m ? true : last.c1 - last.c0 < run);
    if (joins) {
      last.c1 = c + 1;
      last.rows.push(name);
    } else out.push({ text: m ? m[2] : name, key, c0: c, c1: c + 1, rows: [name] });
  });
  return out;
}

export function niceStep(n) {
  const steps = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000];
  for (const s of steps) if (s >= n) return s;
  return 1000 * Math.ceil(n / 1000);
}

/** Cell under a point (x, y relative to the cell area) or null. */
export function hitCell(x, y, lay, T, C) {
  const i = Math.floor(x / lay.cellW);
  const c = Math.floor(y / lay.cellH);
  if (x < 0 || y < 0 || i < 0 || c < 0 || i >= T || c >= C) return null;
  return [c, i];
}

/** Move a (state, position) selection with an arrow key; clamps to the grid. */
export function moveSelection([c, i], key, C, T) {
  const d = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1], Home: [0, -T], End: [0, T] }[
    key
  ];
  if (!d) return null;
  return [Math.max(0, Math.min(C - 1, c + d[0])), Math.max(0, Math.min(T - 1, i + d[1]))];
}
