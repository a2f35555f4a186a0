// StreamGrid: rows = residual states, columns = tokens; colour = a scalar per cell.
import { createCellGrid } from "../shared/cellgrid.js";
import { CELL_MARK, colorize } from "../shared/colors.js";
import { checkbox, h, select } from "../shared/dom.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { legend } from "../shared/legend.js";
import { afterPaint, safely } from "../shared/lifecycle.js";
import { normalizerFor } from "../shared/scale.js";
import { themeColors } from "../shared/theme.js";
import { tokenLabel } from "../shared/tokens.js";
import { makeTooltip } from "../shared/tooltip.js";
import { lensData } from "./lens_toggle.js";
import { createPane } from "./pane.js";

const ZERO_REL = 1e-3;
// pane modes that show something about the target (redrawn when it changes)
const TARGET_PANES = ["project", "features"];

const METRICS = [
  ["norm", "‖stream‖"],
  ["delta", "‖delta‖ (block output)"],
  ["prob", "lens p(target)"],
  ["dla", "DLA → target"],
];

/** The [C, T] values a grid metric colours, with its scale: {values, signed, cmap, label, fixed?}. */
export function metricValues(store, metric, targetText) {
  const { C, T } = store.meta();
  if (metric === "norm") {
    return { values: store.array("state_norm", [C, T]).data, signed: false, cmap: "viridis", label: "‖stream‖" };
  }
  if (metric === "delta") {
    return { values: store.array("delta_norm", [C, T]).data, signed: false, cmap: "viridis", label: "‖delta‖" };
  }
  const t = store.target(targetText) || store.target();
  if (!t) throw new Error(`target ${JSON.stringify(targetText)} is not precomputed`);
  if (metric === "prob") {
    // the lens the view reads (logit or tuned): the colour agrees with the lens heatmap beside it
    const lens = lensData(store);
    const logp = lens.logp(t);
    if (!logp) throw new Error(`${lens.name} log-probs of ${tokenLabel(t.text)} are not precomputed`);
    const v = new Float32Array(C * T);
    for (let k = 0; k < v.length; k++) v[k] = Math.exp(logp[k]);
    const label = `${lens.lens === "tuned" ? "tuned" : "logit"} lens p(target)`;
    return { values: v, signed: false, cmap: "cividis", label, fixed: [0, 1] };
  }
  // cumulative DLA: what the stream so far says directly about the target's logit
  const v = new Float32Array(C * T);
  for (let i = 0; i < T; i++) {
    let acc = 0;
    for (let c = 0; c < C; c++) {
      acc += t.dla[c * T + i];
      v[c * T + i] = acc;
    }
  }
  return { values: v, signed: true, cmap: "rdbu", label: "DLA of stream → target" };
}

export function mountStreamGrid(root, store, opts = {}) {
  root.setAttribute("data-rw", "stream-grid");
  const { C, T, labels, tokens } = store.meta();
  const tooltip = opts.tooltip || makeTooltip(opts.tooltipRoot || root);
  const offs = [];

  const metricSel = select(METRICS, ...store.bind("metric", "norm"), "what the colour shows");
  const normSel = select(
    [
      ["row", "per row"],
      ["quantile", "quantiles"],
      ["global", "min–max"],
    ],
    ...store.bind("normalize", "quantile"),
    "colour normalisation",
  );
  const excl = checkbox(
    "exclude position 0",
    ...store.bind("exclude_first", false),
    "leave position 0 (often an attention sink with a huge norm) out of the colour scale",
  );
  const legendSlot = h("span");
  const targetNote = h("span", { class: "rw-sub" });
  const head = h(
    "div",
    { class: "rw-bar" },
    h("span", { class: "rw-title", text: opts.title || "Residual stream" }),
    metricSel,
    normSel,
    excl,
    legendSlot,
    targetNote,
  );
  root.appendChild(head);

  let mv = null,
    norm = null,
    zeroMask = null;
  const deltaNorm = store.array("delta_norm", [C, T]).data;
  const stateNorm = store.array("state_norm", [C, T]).data;
  // a block "wrote (near) zero" where its output is under 0.1% of the stream it wrote into
  zeroMask = new Uint8Array(C * T);
  let nZero = 0;
  for (let k = 0; k < C * T; k++) {
    zeroMask[k] = deltaNorm[k] === 0 || deltaNorm[k] < ZERO_REL * stateNorm[k] ? 1 : 0;
    nZero += zeroMask[k];
  }
  if (nZero)
    head.appendChild(
      h("span", {
        class: "rw-sub",
        text: `⊘ block wrote ≈0 (< ${ZERO_REL * 100}% of ‖stream‖): ${nZero} cell${nZero > 1 ? "s" : ""}`,
        title: "cells where the block's output is tiny next to the stream it adds to",
      }),
    );

  const grid = createCellGrid(root, {
    C,
    T,
    rowLabels: labels,
    tokens,
    tooltip,
    layout: { maxCellW: 120, ...(opts.layout || {}) },
    ariaLabel: "residual stream grid: states by positions",
    selected: store.get("selected"),
    onSelect: (sel) => store.set("selected", sel),
    tooltipLines: (c, i) => tooltipLines(c, i),
    overlay: (ctx, lay, cols) => overlay(ctx, lay, cols),
    marksLegend: "• = vector pane embedded",
    searchSlot: head,
  });

  /** Marks under the header: in a snapshot, the positions whose vector pane is embedded. */
  function markPanes() {
    const p = store.isStatic() ? store.get("_panes") : null;
    grid.setMarks(p && Array.isArray(p.positions) ? p.positions : []);
  }

  function overlay(ctx, lay, { i0, i1 }) {
    const { fg } = themeColors(root);
    // blocks that wrote (near) zero: a hollow mark
    ctx.strokeStyle = CELL_MARK;
    ctx.fillStyle = CELL_MARK;
    for (let c = 0; c < C; c++)
      for (let i = i0; i < i1; i++) {
        if (!zeroMask[c * T + i]) continue;
        const x = i * lay.cellW,
          y = c * lay.cellH;
        if (lay.cellW >= 6 && lay.cellH >= 6) {
          const r = Math.max(1.5, Math.min(lay.cellW, lay.cellH) / 2 - 2);
          ctx.beginPath();
          ctx.arc(x + lay.cellW / 2, y + lay.cellH / 2, r, 0, 2 * Math.PI);
          ctx.lineWidth = 1.5;
          ctx.stroke();
          ctx.beginPath();
          ctx.moveTo(x + lay.cellW / 2 - r, y + lay.cellH / 2 + r);
          ctx.lineTo(x + lay.cellW / 2 + r, y + lay.cellH / 2 - r);
          ctx.stroke();
        } else {
          ctx.fillRect(x, y, Math.max(1, lay.cellW), Math.max(1, lay.cellH));
        }
      }
    // position 0 left out of the scale: hatch it
    if (store.get("exclude_first") && T > 1 && !mv.fixed && i0 === 0) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(0, 0, lay.cellW, lay.gridH);
      ctx.clip();
      ctx.strokeStyle = fg;
      ctx.globalAlpha = 0.45;
      ctx.lineWidth = 1;
      for (let y = -lay.cellW; y < lay.gridH; y += 6) {
        ctx.beginPath();
        ctx.moveTo(0, y + lay.cellW);
        ctx.lineTo(lay.cellW, y);
        ctx.stroke();
      }
      ctx.restore();
    }
  }

  function tooltipLines(c, i) {
    const lines = [`${labels[c]} @ ${i}  ${tokenLabel(tokens[i])}`];
    lines.push(["‖stream‖", fmt(stateNorm[c * T + i])]);
    lines.push(["‖delta‖", fmt(deltaNorm[c * T + i]) + (zeroMask[c * T + i] ? "  (≈0: < 0.1% of the stream)" : "")]);
    try {
      const ids = store.array("lens_ids").data,
        probs = store.array("lens_probs").data,
        k = store.array("lens_ids").shape[2];
      lines.push(["lens top", `${tokenLabel(store.vocab(ids[(c * T + i) * k]))}  ${fmt(probs[(c * T + i) * k])}`]);
    } catch (e) {
      /* no lens data */
    }
    const t = store.target(store.get("target"));
    if (t) {
      const logp = lensNow && lensNow.logp(t);
      if (logp) lines.push([`${lensNow.lens} lens p(${tokenLabel(t.text)})`, fmt(Math.exp(logp[c * T + i]))]);
      lines.push(["DLA of block", fmtSigned(t.dla[c * T + i])]);
    }
    if (mv && store.get("metric") === "dla") lines.push(["DLA of stream", fmtSigned(mv.values[c * T + i])]);
    if (norm && norm.clipped(c, i)) lines.push("outside the colour scale (clipped)");
    return lines;
  }

  // opts.paneRoot: where the pane goes (the Dashboard puts it beside the bars and the lens)
  const pane = opts.pane === false ? null : createPane(opts.paneRoot || root, store, tooltip);

  let lensNow = null; // the lens the tooltips read (logit or tuned), as of the last colouring
  function recolor() {
    lensNow = lensData(store);
    const metric = store.get("metric") || "norm";
    const tgt = store.get("target");
    mv = metricValues(store, metric, tgt);
    norm = normalizerFor(mv, C, T, store.get("normalize") || "quantile", !!store.get("exclude_first"));
    grid.setColors(colorize(mv.values, C, T, norm, mv.cmap));
    legendSlot.replaceChildren(legend(mv.cmap, norm, mv.label));
    const t = store.target(tgt);
    targetNote.textContent = metric === "prob" || metric === "dla" ? `target ${t ? tokenLabel(t.text) : "?"}` : "";
    metricSel.value = metric;
    normSel.value = store.get("normalize") || "quantile";
    normSel.disabled = !!mv.fixed;
    excl.input.checked = !!store.get("exclude_first");
  }

  function setSelectedAttr(sel) {
    root.setAttribute("data-rw-selected", `${sel[0]},${sel[1]}`);
  }

  const paneLater = afterPaint(() => pane && pane.update());
  function onSelected(sel) {
    if (!Array.isArray(sel)) return;
    setSelectedAttr(sel);
    grid.select(sel, false);
    paneLater();
  }

  recolor();
  markPanes();
  grid.full();
  const sel0 = store.get("selected") || [C - 1, T - 1];
  setSelectedAttr(sel0);
  pane && pane.update();

  const repaint = safely(() => {
    recolor();
    grid.full();
  });
  offs.push(store.on("selected", onSelected));
  for (const n of ["metric", "normalize", "exclude_first"]) offs.push(store.on(n, repaint));
  const repaintProb = () => store.get("metric") === "prob" && repaint();
  offs.push(store.on("lens", repaintProb), store.on("_lenses", repaintProb));
  offs.push(
    store.on("target", () => {
      const m = store.get("metric");
      if (m === "prob" || m === "dla") repaint();
      if (pane && TARGET_PANES.includes(store.get("pane_mode"))) pane.update();
    }),
  );
  offs.push(store.on("pane_mode", () => pane && pane.update()));
  offs.push(
    store.on("_targets", () => {
      if (pane && TARGET_PANES.includes(store.get("pane_mode"))) pane.update();
    }),
  );
  offs.push(
    store.on("_panes", () => {
      markPanes();
      if (pane) pane.update();
    }),
  );

  return {
    resize() {
      grid.full();
      pane && pane.update();
    },
    retheme() {
      grid.full();
      pane && pane.update();
    },
    grid,
    destroy() {
      offs.forEach((f) => f());
    },
  };
}
