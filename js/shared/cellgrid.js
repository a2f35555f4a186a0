// A states x positions canvas shared by the stream grid and the logit lens: row labels, token
// header, cells, hover tooltips, click and arrow-key selection. Virtualised: the canvas is only as
// wide as the visible area; a spacer of the full width scrolls under it, and each scroll repaints
// the visible columns (rAF-throttled) from a T x C colour layer. The visible columns are cached in
// a base layer, so a click repaints with one drawImage plus the selection.
import { h, sizeCanvas } from "./dom.js";
import { cellLayout, hitCell, moveSelection, rowLabelGroups, visibleColumns } from "./scale.js";
import { canvasToken, tokenLabel } from "./tokens.js";
import { keepKeys } from "./keys.js";
import { MONO, SANS } from "./style.js";
import { themeColors } from "./theme.js";
import { SEARCH_MIN_TOKENS, tokenSearch } from "./token_search.js";

const FONT = `11px ${SANS}`;
const HINT = "click a cell, or use the arrow keys (or h j k l)";
// a row label needs this many px to be legible; shorter rows share labels (rowLabelGroups)
const LABEL_MIN_H = 9;
// width of the a / m marker column of grouped row labels
const MARK_W = 9;
// height of the strip under the header that holds the column marks
const MARKS_H = 6;
// tokens in the header are clipped to this many characters (the tooltip of the header shows them whole)
const TOKEN_CHARS = 10;

/**
 * opts: C, T, rowLabels [C], tokens [T], tooltip, layout (cellLayout options), selected [c, i],
 * onSelect(sel), onActivate(sel), tooltipLines(c, i), overlay(ctx, lay, {i0, i1}) (draws the
 * visible columns i0..i1-1, in grid coordinates, under the header), maxHitCells, ariaLabel,
 * markedColumns (positions marked with a dot under the header; setMarks() changes them) and
 * marksLegend (the note that explains the dots), search (false: no token search box), searchSlot
 * (where the search box and the marks' note go; default: above and under the grid).
 */
export function createCellGrid(root, opts) {
  const { C, T, rowLabels, tokens, tooltip } = opts;
  const labels = h("canvas", { class: "rw-rowlabels", "aria-hidden": "true" });
  const cells = h("canvas", { class: "rw-cells", role: "grid", "aria-label": opts.ariaLabel || "states by positions" });
  // transparent per-cell targets (small grids only) so cells can be found and clicked by tests
  // and assistive tools; events are handled on the container either way
  const hits = h("div", { class: "rw-hits" });
  // the spacer: as wide as every column, the canvas stays over its visible part (sticky)
  const inner = h("div", { class: "rw-inner" }, cells, hits);
  const scroll = h("div", { class: "rw-scroll", tabindex: "0", "aria-label": HINT }, inner);
  const wrap = h("div", { class: "rw-gridwrap" }, labels, scroll);
  const marksNote = h("span", { class: "rw-note", "data-rw-part": "marks-legend", hidden: true });
  const search =
    opts.search !== false && T > SEARCH_MIN_TOKENS
      ? tokenSearch(
          tokens,
          (i) => select([selected[0], i], true, true),
          () => selected[1],
        )
      : null;
  // in the view's own bar when it gives one (no extra line), else above the grid; the marks'
  // legend likewise, else under the grid
  if (search) (opts.searchSlot || root).appendChild(search.el);
  root.append(wrap);
  (opts.searchSlot || root).appendChild(marksNote);

  let colors = null; // Uint8ClampedArray C*T*4 (RGBA)
  let small = null; // T x C offscreen canvas of cell colours
  let base = null; // the visible columns without the selection
  let baseAt = ""; // what base shows: scroll position and size
  let lay = null;
  let view = { i0: 0, i1: 1, x0: 0, w: 1 };
  let groups = [];
  let labelW = 60;
  let labelsSized = "";
  let colorsDirty = true;
  let baseDirty = true;
  let selected = opts.selected || [C - 1, T - 1];
  let marks = new Set();
  const dpr = () => Math.min(window.devicePixelRatio || 1, 2);
  // theme colours, read once per layout (not on every click)
  let colours = null;
  function readColours() {
    colours = themeColors(root);
    return colours;
  }

  // the widest token label at 11 px (measured once; a narrower font scales it)
  let tokenTextW = null;
  function measureTokens() {
    if (tokenTextW != null) return tokenTextW;
    const ctx = cells.getContext("2d");
    ctx.font = `11px ${MONO}`;
    let w = 0;
    for (const t of tokens) w = Math.max(w, ctx.measureText(canvasToken(t, TOKEN_CHARS)).width);
    tokenTextW = Math.ceil(w);
    return tokenTextW;
  }

  function setColors(rgba) {
    colors = rgba;
    colorsDirty = true;
    baseDirty = true;
  }

  function buildSmall() {
    if (!small) small = document.createElement("canvas");
    small.width = T;
    small.height = C;
    const ctx = small.getContext("2d");
    const img = ctx.createImageData(T, C);
    if (colors) img.data.set(colors.subarray(0, T * C * 4));
    ctx.putImageData(img, 0, 0);
    colorsDirty = false;
  }

  // ---------------------------------------------------------------- layout
  function labelFont(g, bold) {
    const band = (g.c1 - g.c0) * lay.cellH;
    const size = Math.max(6, Math.min(11, lay.grouped ? band - 1 : band));
    return `${bold ? "600 " : ""}${size}px ${SANS}`;
  }

  function layoutLabels() {
    groups = rowLabelGroups(rowLabels, lay.cellH, LABEL_MIN_H);
    lay.grouped = groups.length < C;
    const ctx = labels.getContext("2d");
    let w = 0;
    for (const g of groups) {
      ctx.font = labelFont(g, true); // the selected row's label is bold
      w = Math.max(w, ctx.measureText(g.text).width);
    }
    labelW = Math.min(120, Math.ceil(w) + 10 + (lay.grouped ? MARK_W : 0));
    // label boxes (test hook and hover): each inside its own band of rows, so none overlap
    const boxes = groups.map((g) => {
      const size = parseFloat(labelFont(g, false));
      const mid = lay.headerH + ((g.c0 + g.c1) / 2) * lay.cellH;
      return [g.text, g.c0, g.c1, +(mid - size / 2).toFixed(1), +(mid + size / 2).toFixed(1)];
    });
    wrap.setAttribute("data-rw-row-labels", String(groups.length));
    wrap.setAttribute("data-rw-row-label-boxes", JSON.stringify(boxes));
  }

  function computeLayout() {
    const avail = Math.max(50, (wrap.clientWidth || root.clientWidth || 800) - 2);
    // the label column depends on the row height, which does not depend on the width
    const rowH = cellLayout(avail, T, C, opts.layout || {}).cellH;
    lay = { cellH: rowH, headerH: 0 };
    layoutLabels();
    lay = cellLayout(Math.max(50, avail - labelW), T, C, { tokenTextW: measureTokens(), ...(opts.layout || {}) });
    lay.marksH = marks.size ? MARKS_H : 0;
    if (lay.header === "rotated") {
      // header tall enough for the longest (clipped) token at the font that fits the column
      const size = Math.min(11, lay.cellW - 3);
      lay.headerH = Math.min(80, Math.max(24, Math.ceil((tokenTextW * size) / 11) + 10));
    }
    lay.headerH += lay.marksH;
    layoutLabels(); // again: the header height moves the labels
    // the label column takes its width now, so the scroller's visible width is final
    sizeCanvas(labels, labelW, lay.headerH + lay.gridH);
    labelsSized = `${labelW}x${lay.headerH + lay.gridH}`;
    inner.style.width = `${lay.gridW}px`;
    inner.style.height = `${lay.headerH + lay.gridH}px`;
    wrap.setAttribute("data-rw-header", lay.header);
    wrap.setAttribute("data-rw-cellsize", `${lay.cellW}x${lay.cellH}`);
    wrap.setAttribute("data-rw-header-h", String(lay.headerH));
    return lay;
  }

  // ---------------------------------------------------------------- row labels
  function drawGroup(ctx, g, bold) {
    const { fg, muted, sel } = colours || readColours();
    const y0 = lay.headerH + g.c0 * lay.cellH;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.font = labelFont(g, bold);
    ctx.fillStyle = bold ? fg : muted;
    const right = labelW - (lay.grouped ? 3 + MARK_W : 5);
    ctx.fillText(g.text, right, y0 + ((g.c1 - g.c0) * lay.cellH) / 2);
    if (!lay.grouped) return;
    // one a / m marker per row of a layer's pair
    ctx.font = `${Math.max(5, Math.min(9, lay.cellH))}px ${MONO}`;
    for (let c = g.c0; c < g.c1; c++) {
      const kind = /^(attn|mlp)\./.exec(rowLabels[c]);
      if (!kind || g.c1 - g.c0 < 2) continue;
      ctx.fillStyle = bold && c === selected[0] ? sel : muted;
      ctx.fillText(kind[1][0], labelW - 3, lay.headerH + c * lay.cellH + lay.cellH / 2);
    }
  }

  // every label drawn once into a cached layer; a selection change redraws one band
  let labelBase = null,
    labelsDirty = true;
  function paintLabels() {
    const H = lay.headerH + lay.gridH;
    const d = dpr();
    if (labelsDirty || !labelBase) {
      if (!labelBase) labelBase = document.createElement("canvas");
      labelBase.width = Math.max(1, Math.round(labelW * d));
      labelBase.height = Math.max(1, Math.round(H * d));
      const b = labelBase.getContext("2d");
      b.setTransform(d, 0, 0, d, 0, 0);
      for (const g of groups) drawGroup(b, g, false);
      labelsDirty = false;
    }
    const key = `${labelW}x${H}`;
    let ctx;
    if (key !== labelsSized) {
      ctx = sizeCanvas(labels, labelW, H);
      labelsSized = key;
    } else ctx = labels.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, labels.width, labels.height);
    ctx.drawImage(labelBase, 0, 0);
    ctx.setTransform(d, 0, 0, d, 0, 0);
    const g = groups.find((x) => selected[0] >= x.c0 && selected[0] < x.c1);
    if (g) {
      // the selected row's label, bold, in place of its own: exactly its band is cleared
      ctx.clearRect(0, lay.headerH + g.c0 * lay.cellH, labelW, (g.c1 - g.c0) * lay.cellH);
      drawGroup(ctx, g, true);
    }
  }

  // ---------------------------------------------------------------- cells
  function paintHeader(ctx, { i0, i1 }) {
    const { fg, muted } = colours;
    const bottom = lay.headerH - 3 - lay.marksH;
    ctx.fillStyle = fg;
    if (lay.header === "rotated") {
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      ctx.font = `${Math.min(11, lay.cellW - 3)}px ${MONO}`;
      for (let i = i0; i < i1; i++) {
        ctx.save();
        ctx.translate(i * lay.cellW + lay.cellW / 2, bottom);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(canvasToken(tokens[i], TOKEN_CHARS), 0, 0);
        ctx.restore();
      }
    } else if (lay.header === "horizontal") {
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      ctx.font = `11px ${MONO}`;
      for (let i = i0; i < i1; i++) ctx.fillText(canvasToken(tokens[i], TOKEN_CHARS), (i + 0.5) * lay.cellW, bottom);
    } else {
      ctx.font = FONT;
      ctx.fillStyle = muted;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      for (let i = Math.floor(i0 / lay.tickEvery) * lay.tickEvery; i < i1; i += lay.tickEvery) {
        ctx.fillText(String(i), i * lay.cellW + 1, bottom + 1);
        ctx.fillRect(i * lay.cellW, bottom + 1, 1, 2);
      }
    }
    if (!marks.size) return;
    ctx.fillStyle = fg;
    for (let i = i0; i < i1; i++) {
      if (!marks.has(i)) continue;
      ctx.beginPath();
      ctx.arc((i + 0.5) * lay.cellW, lay.headerH - 3 - lay.marksH / 2, 2, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  function paintBase() {
    if (colorsDirty) buildSmall();
    const H = lay.headerH + lay.gridH;
    const d = dpr();
    if (!base) base = document.createElement("canvas");
    base.width = Math.max(1, Math.round(view.w * d));
    base.height = Math.max(1, Math.round(H * d));
    const ctx = base.getContext("2d");
    // grid coordinates: x = i * cellW, shifted by the scroll position
    ctx.setTransform(d, 0, 0, d, -view.x0 * d, 0);
    readColours();
    paintHeader(ctx, view);
    const { i0, i1 } = view;
    const x0 = i0 * lay.cellW,
      w = (i1 - i0) * lay.cellW;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, i0, 0, i1 - i0, C, x0, lay.headerH, w, lay.gridH);
    // thin separators when cells are large enough
    ctx.fillStyle = colours.grid;
    if (lay.cellW >= 8)
      for (let i = Math.max(1, i0); i < i1; i++) ctx.fillRect(i * lay.cellW, lay.headerH, 1, lay.gridH);
    if (lay.cellH >= 8) for (let c = 1; c < C; c++) ctx.fillRect(x0, lay.headerH + c * lay.cellH, w, 1);
    if (opts.overlay) {
      ctx.save();
      ctx.translate(0, lay.headerH);
      ctx.beginPath();
      ctx.rect(x0, 0, w, lay.gridH);
      ctx.clip();
      opts.overlay(ctx, lay, { i0, i1 });
      ctx.restore();
    }
    baseDirty = false;
    baseAt = `${view.x0}:${view.w}`;
  }

  function measureView() {
    const w = Math.max(1, Math.min(lay.gridW, scroll.clientWidth || lay.viewW));
    const x0 = Math.max(0, Math.min(lay.gridW - w, scroll.scrollLeft));
    view = { x0, w, ...visibleColumns(x0, w, lay, T) };
    wrap.setAttribute("data-rw-visible-tokens", `${view.i0}-${view.i1 - 1}`);
  }

  let cellsSized = "";
  function paint() {
    if (!lay) computeLayout();
    measureView();
    if (baseDirty || baseAt !== `${view.x0}:${view.w}`) paintBase();
    const H = lay.headerH + lay.gridH;
    let ctx;
    if (cellsSized !== `${view.w}x${H}`) {
      ctx = sizeCanvas(cells, view.w, H);
      cellsSized = `${view.w}x${H}`;
    } else ctx = cells.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cells.width, cells.height);
    ctx.drawImage(base, 0, 0);
    const d = dpr();
    ctx.setTransform(d, 0, 0, d, -view.x0 * d, 0);
    const [c, i] = selected;
    if (c >= 0 && c < C && i >= view.i0 && i < view.i1) {
      const { sel, bg } = colours || readColours();
      const x = i * lay.cellW,
        y = lay.headerH + c * lay.cellH;
      // column marker in the header and a frame around the cell
      ctx.fillStyle = sel;
      ctx.fillRect(x, lay.headerH - 3, Math.max(2, lay.cellW), 3);
      ctx.lineWidth = 2;
      ctx.strokeStyle = bg;
      ctx.strokeRect(x - 1, y - 1, Math.max(2, lay.cellW) + 2, Math.max(2, lay.cellH) + 2);
      ctx.strokeStyle = sel;
      ctx.strokeRect(x, y, Math.max(2, lay.cellW), Math.max(2, lay.cellH));
    }
    paintLabels();
  }

  let hitsKey = "";
  function buildHits() {
    const key = `${lay.cellW}x${lay.cellH}x${lay.headerH}`;
    if (key === hitsKey) return;
    hitsKey = key;
    hits.style.top = `${lay.headerH}px`;
    hits.style.width = `${lay.gridW}px`;
    hits.style.height = `${lay.gridH}px`;
    if (C * T > (opts.maxHitCells ?? 3000)) {
      hits.replaceChildren();
      hits.style.pointerEvents = "none";
      return;
    }
    hits.style.pointerEvents = "auto";
    const frag = document.createDocumentFragment();
    for (let c = 0; c < C; c++)
      for (let i = 0; i < T; i++) {
        const d = document.createElement("div");
        d.setAttribute("data-rw-cell", `${c},${i}`);
        d.style.cssText = `left:${i * lay.cellW}px;top:${c * lay.cellH}px;width:${lay.cellW}px;height:${lay.cellH}px`;
        frag.appendChild(d);
      }
    hits.replaceChildren(frag);
  }

  let shownOnce = false;
  function full() {
    readColours();
    computeLayout();
    baseDirty = true;
    labelsDirty = true;
    cellsSized = "";
    if (!shownOnce && lay.scroll) {
      shownOnce = true;
      // long prompts: start scrolled to the selected position (by default the last one)
      scroll.scrollLeft = Math.max(0, selected[1] * lay.cellW - scroll.clientWidth / 2);
    }
    paint();
    buildHits();
  }

  let frame = 0;
  scroll.addEventListener(
    "scroll",
    () => {
      if (frame || !lay) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        paint();
      });
    },
    { passive: true },
  );

  function select(sel, fromUser, center) {
    const moved = sel[1] !== selected[1];
    selected = [sel[0], sel[1]];
    // a column picked here, or in another view (the lens, the prompt strip), is scrolled into view
    if (lay && (fromUser || moved)) ensureVisible(center);
    paint();
    if (fromUser) opts.onSelect && opts.onSelect(selected.slice());
  }

  /** Scroll the selected column into view (to the middle when it is far off, or when asked). */
  function ensureVisible(center) {
    const x = selected[1] * lay.cellW,
      left = scroll.scrollLeft,
      w = scroll.clientWidth;
    if (x >= left && x + lay.cellW <= left + w && !center) return;
    if (center || x + lay.cellW < left - w / 2 || x > left + 1.5 * w) scroll.scrollLeft = Math.max(0, x - w / 2);
    else if (x < left) scroll.scrollLeft = Math.max(0, x - 20);
    else scroll.scrollLeft = x + lay.cellW - w + 20;
  }

  /** [c, i] of the cell under the pointer, [-1, i] over the header, or null. */
  function cellAt(ev) {
    const r = inner.getBoundingClientRect();
    const x = ev.clientX - r.left,
      y = ev.clientY - r.top;
    if (y < lay.headerH && y >= 0) {
      const hit = hitCell(x, 0, lay, T, C);
      return hit ? [-1, hit[1]] : null;
    }
    return hitCell(x, y - lay.headerH, lay, T, C);
  }

  inner.addEventListener("click", (ev) => {
    const hit = cellAt(ev);
    if (hit && hit[0] >= 0) {
      scroll.focus({ preventScroll: true });
      select(hit, true);
    }
  });
  inner.addEventListener("dblclick", (ev) => {
    const hit = cellAt(ev);
    if (hit && hit[0] >= 0 && opts.onActivate) opts.onActivate(hit);
  });
  inner.addEventListener("mousemove", (ev) => {
    const hit = cellAt(ev);
    if (!tooltip) return;
    if (hit && hit[0] < 0)
      tooltip.show(ev.clientX, ev.clientY, [`position ${hit[1]}  ${tokenLabel(tokens[hit[1]])}`, HINT]);
    else if (hit && opts.tooltipLines) tooltip.show(ev.clientX, ev.clientY, opts.tooltipLines(hit[0], hit[1]));
    else tooltip.hide();
  });
  inner.addEventListener("mouseleave", () => tooltip && tooltip.hide());
  // a row label names its row in full (grouped labels show only the layer)
  labels.addEventListener("mousemove", (ev) => {
    if (!tooltip || !lay) return;
    const c = Math.floor((ev.clientY - labels.getBoundingClientRect().top - lay.headerH) / lay.cellH);
    if (c >= 0 && c < C) tooltip.show(ev.clientX, ev.clientY, [`${rowLabels[c]}  (row ${c} of ${C})`]);
    else tooltip.hide();
  });
  labels.addEventListener("mouseleave", () => tooltip && tooltip.hide());
  keepKeys(scroll, (key) => {
    if (key === "Enter" && opts.onActivate) {
      opts.onActivate(selected.slice());
      return true;
    }
    const next = moveSelection(selected, key, C, T);
    if (next) select(next, true);
    return !!next;
  });

  function setMarks(positions) {
    const next = new Set(Array.from(positions || [], Number).filter((i) => i >= 0 && i < T));
    const relayout = !!next.size !== !!marks.size;
    marks = next;
    const list = [...marks].sort((a, b) => a - b);
    if (list.length) wrap.setAttribute("data-rw-marked", list.join(","));
    else wrap.removeAttribute("data-rw-marked");
    marksNote.textContent = opts.marksLegend || "";
    marksNote.hidden = !(list.length && opts.marksLegend);
    baseDirty = true;
    if (lay && relayout) full();
    else if (lay) paint();
  }
  setMarks(opts.markedColumns);

  return {
    el: wrap,
    canvas: cells,
    scroll,
    search,
    setColors,
    setMarks,
    setOverlay(f) {
      opts.overlay = f;
      baseDirty = true;
    },
    invalidate() {
      baseDirty = true;
    },
    paint,
    full,
    select,
    layout: () => lay,
    get selected() {
      return selected.slice();
    },
  };
}
