// A states x positions canvas shared by the stream grid and the logit lens: row labels, token
// header, cell colours painted once into a cached base layer, selection drawn on top (a click
// repaints with one drawImage), hover tooltips, click and arrow-key selection.
import { h, sizeCanvas } from "./dom.js";
import { cellLayout, hitCell, moveSelection } from "./scale.js";
import { canvasToken } from "./tokens.js";
import { keepKeys } from "./keys.js";
import { themeColors } from "./theme.js";

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";

export function createCellGrid(root, opts) {
  const { C, T, rowLabels, tokens, tooltip } = opts;
  const labels = h("canvas", { class: "rw-rowlabels", "aria-hidden": "true" });
  const cells = h("canvas", { class: "rw-cells", role: "grid", "aria-label": opts.ariaLabel || "states by positions" });
  // transparent per-cell targets (small grids only) so cells can be found and clicked by tests
  // and assistive tools; events are handled on the container either way
  const hits = h("div", { class: "rw-hits" });
  const inner = h("div", { class: "rw-inner" }, cells, hits);
  const scroll = h(
    "div",
    { class: "rw-scroll", tabindex: "0", title: "click a cell, or use the arrow keys (or h j k l)" },
    inner,
  );
  const wrap = h("div", { class: "rw-gridwrap" }, labels, scroll);
  root.appendChild(wrap);

  let colors = null; // Uint8ClampedArray C*T*4 (RGBA)
  let small = null; // T x C offscreen canvas of cell colours
  let base = null; // cached full-resolution layer
  let lay = null;
  let labelW = 60;
  let colorsDirty = true;
  let baseDirty = true;
  let selected = opts.selected || [C - 1, T - 1];
  const dpr = () => Math.min(window.devicePixelRatio || 1, 2);
  // theme colours, read once per layout (not on every click)
  let colours = null;
  function readColours() {
    colours = themeColors(root);
    return colours;
  }

  function measureLabels() {
    const ctx = labels.getContext("2d");
    ctx.font = `600 ${FONT}`; // the selected row's label is bold
    let w = 0;
    for (const l of rowLabels) w = Math.max(w, ctx.measureText(l).width);
    labelW = Math.min(120, Math.ceil(w) + 10);
  }
  measureLabels();

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

  function computeLayout() {
    const avail = Math.max(50, (wrap.clientWidth || root.clientWidth || 800) - labelW - 2);
    lay = cellLayout(avail, T, C, opts.layout || {});
    if (lay.rotated) {
      // header tall enough for the longest (clipped) token
      const ctx = cells.getContext("2d");
      ctx.font = `${Math.min(11, lay.cellW - 1)}px ${MONO}`;
      let w = 0;
      for (const t of tokens) w = Math.max(w, ctx.measureText(canvasToken(t, 14)).width);
      lay.headerH = Math.min(100, Math.max(24, Math.ceil(w) + 10));
    }
    return lay;
  }

  // row labels: every label drawn once into a cached layer; a selection change redraws one row
  let labelBase = null,
    labelsDirty = true,
    labelsSized = "";
  function paintLabels() {
    const H = lay.headerH + lay.gridH;
    const d = dpr();
    const { fg, muted } = colours || readColours();
    const every = lay.cellH >= 10 ? 1 : Math.ceil(10 / lay.cellH);
    if (labelsDirty || !labelBase) {
      if (!labelBase) labelBase = document.createElement("canvas");
      labelBase.width = Math.max(1, Math.round(labelW * d));
      labelBase.height = Math.max(1, Math.round(H * d));
      const b = labelBase.getContext("2d");
      b.setTransform(d, 0, 0, d, 0, 0);
      b.font = FONT;
      b.textAlign = "right";
      b.textBaseline = "middle";
      b.fillStyle = muted;
      for (let c = 0; c < C; c++) {
        if (c % every !== 0 && c !== C - 1) continue;
        b.fillText(rowLabels[c], labelW - 5, lay.headerH + c * lay.cellH + lay.cellH / 2);
      }
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
    const c = selected[0];
    if (c >= 0 && c < C) {
      const y = lay.headerH + c * lay.cellH;
      ctx.clearRect(0, y - 6 + lay.cellH / 2, labelW, 12);
      ctx.font = `600 ${FONT}`;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillStyle = fg;
      ctx.fillText(rowLabels[c], labelW - 5, y + lay.cellH / 2);
    }
  }

  function paintBase() {
    if (colorsDirty) buildSmall();
    const W = lay.gridW,
      H = lay.headerH + lay.gridH;
    const d = dpr();
    if (!base) base = document.createElement("canvas");
    base.width = Math.max(1, Math.round(W * d));
    base.height = Math.max(1, Math.round(H * d));
    const ctx = base.getContext("2d");
    ctx.setTransform(d, 0, 0, d, 0, 0);
    const { fg, muted } = colours || readColours();
    // header
    ctx.font = FONT;
    ctx.fillStyle = muted;
    if (lay.rotated) {
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      const size = Math.min(11, lay.cellW - 1);
      ctx.font = `${size}px ${MONO}`;
      for (let i = 0; i < T; i++) {
        ctx.save();
        ctx.translate(i * lay.cellW + lay.cellW / 2, lay.headerH - 3);
        ctx.rotate(-Math.PI / 2);
        ctx.fillStyle = fg;
        ctx.fillText(canvasToken(tokens[i], 14), 0, 0);
        ctx.restore();
      }
    } else {
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      for (let i = 0; i < T; i += lay.tickEvery) {
        ctx.fillText(String(i), i * lay.cellW + 1, lay.headerH - 2);
        ctx.fillRect(i * lay.cellW, lay.headerH - 2, 1, 2);
      }
    }
    // cells
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, lay.headerH, lay.gridW, lay.gridH);
    // thin separators when cells are large enough
    const sep = colours.grid;
    ctx.fillStyle = sep;
    if (lay.cellW >= 8) for (let i = 1; i < T; i++) ctx.fillRect(i * lay.cellW, lay.headerH, 1, lay.gridH);
    if (lay.cellH >= 8) for (let c = 1; c < C; c++) ctx.fillRect(0, lay.headerH + c * lay.cellH, lay.gridW, 1);
    if (opts.overlay) {
      ctx.save();
      ctx.translate(0, lay.headerH);
      opts.overlay(ctx, lay);
      ctx.restore();
    }
    baseDirty = false;
  }

  function paint() {
    if (!lay) computeLayout();
    if (baseDirty) paintBase();
    const W = lay.gridW,
      H = lay.headerH + lay.gridH;
    let ctx;
    if (cellsSized !== `${W}x${H}`) {
      ctx = sizeCanvas(cells, W, H);
      cellsSized = `${W}x${H}`;
    } else ctx = cells.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cells.width, cells.height);
    ctx.drawImage(base, 0, 0);
    ctx.setTransform(dpr(), 0, 0, dpr(), 0, 0);
    const [c, i] = selected;
    if (c >= 0 && c < C && i >= 0 && i < T) {
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

  let cellsSized = "";
  let shownOnce = false;
  function full() {
    readColours();
    computeLayout();
    baseDirty = true;
    labelsDirty = true;
    labelsSized = "";
    cellsSized = "";
    paint();
    buildHits();
    if (!shownOnce && lay.scroll) {
      shownOnce = true;
      // long prompts: start scrolled to the selected position (by default the last one)
      scroll.scrollLeft = Math.max(0, selected[1] * lay.cellW - scroll.clientWidth / 2);
    }
  }

  function select(sel, fromUser) {
    selected = [sel[0], sel[1]];
    paint();
    if (fromUser) {
      ensureVisible();
      opts.onSelect && opts.onSelect(selected.slice());
    }
  }

  function ensureVisible() {
    const x = selected[1] * lay.cellW;
    if (x < scroll.scrollLeft) scroll.scrollLeft = Math.max(0, x - 20);
    else if (x + lay.cellW > scroll.scrollLeft + scroll.clientWidth)
      scroll.scrollLeft = x + lay.cellW - scroll.clientWidth + 20;
  }

  function cellAt(ev) {
    const r = cells.getBoundingClientRect();
    return hitCell(ev.clientX - r.left, ev.clientY - r.top - lay.headerH, lay, T, C);
  }

  inner.addEventListener("click", (ev) => {
    const hit = cellAt(ev);
    if (hit) {
      scroll.focus({ preventScroll: true });
      select(hit, true);
    }
  });
  inner.addEventListener("dblclick", (ev) => {
    const hit = cellAt(ev);
    if (hit && opts.onActivate) opts.onActivate(hit);
  });
  inner.addEventListener("mousemove", (ev) => {
    const hit = cellAt(ev);
    if (hit && tooltip && opts.tooltipLines) tooltip.show(ev.clientX, ev.clientY, opts.tooltipLines(hit[0], hit[1]));
    else if (tooltip) tooltip.hide();
  });
  inner.addEventListener("mouseleave", () => tooltip && tooltip.hide());
  keepKeys(scroll, (key) => {
    if (key === "Enter" && opts.onActivate) {
      opts.onActivate(selected.slice());
      return true;
    }
    const next = moveSelection(selected, key, C, T);
    if (next) select(next, true);
    return !!next;
  });

  return {
    el: wrap,
    canvas: cells,
    scroll,
    setColors,
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
