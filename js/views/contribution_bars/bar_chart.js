// The bars of ContributionBars: one row per layer (attention and MLP stacked) or per component,
// negative parts left of the axis and positive parts right, a bar longer than the scale cut with an
// arrow, a row left out of the scale (log-prob's first layer) cut with a break mark, MLP bars
// clickable (they open their layer's top neurons).
import { PART_COLORS } from "../../shared/colors.js";
import { s } from "../../shared/dom.js";
import { fmt, fmtSigned } from "../../shared/format.js";
import { swatchKey } from "../../shared/legend.js";
import { barScale } from "../../shared/scale.js";

const LABEL_W = 62;
const VALUE_W = 62;
const TOP = 16;
const KEY = [
  ["embed", "embedding"],
  ["attn", "attention"],
  ["mlp", "MLP"],
];

/** Rows of the chart at one position: [{label, parts: [{kind, label, value, layer}]}]. */
export function barRows(meta, values, group) {
  const { labels, kinds, layers, n_layers } = meta;
  const part = (c) => ({ kind: kinds[c], label: labels[c], value: values[c], layer: layers[c] });
  if (group === "component") return labels.map((label, c) => ({ label, parts: [part(c)] }));
  const embed = { label: "embed", parts: [] };
  const byLayer = Array.from({ length: n_layers }, (_, l) => ({ label: `layer ${l}`, parts: [] }));
  const other = [];
  labels.forEach((label, c) => {
    const inLayer = (kinds[c] === "attn" || kinds[c] === "mlp") && layers[c] >= 0 && layers[c] < n_layers;
    if (kinds[c] === "embed") embed.parts.push(part(c));
    else if (inLayer) byLayer[layers[c]].parts.push(part(c));
    else other.push({ label, parts: [part(c)] });
  });
  return [...(embed.parts.length ? [embed] : []), ...byLayer, ...other];
}

/** Longest stack of a row on either side of the axis. */
function extent(row) {
  let pos = 0,
    neg = 0;
  for (const part of row.parts) {
    if (part.value >= 0) pos += part.value;
    else neg += part.value;
  }
  return Math.max(pos, -neg);
}

/**
 * Draw the chart of rows into el (replacing what it held).
 * opts: width (px), method ("dla" | "logprob"), openLayer (the MLP layer shown open, or null),
 * tooltip (makeTooltip), onMlpClick(layer), ghost (rows of the original run, same order, drawn as
 * dashed outlines behind an edited run's bars; or null), unscaled (indices of rows the scale leaves
 * out: drawn cut with a break mark, their value on the right).
 */
export function drawBarChart(el, rows, { width, method, openLayer, tooltip, onMlpClick, ghost = null, unscaled = [] }) {
  const rowH = rows.length > 20 ? 10 : 17;
  const H = TOP + rows.length * rowH + 4;
  const extents = rows.map((row, k) => Math.max(extent(row), ghost && ghost[k] ? extent(ghost[k]) : 0));
  const maxAbs = barScale(extents.map((x, k) => (unscaled.includes(k) ? NaN : x)));
  const cut = (k) => extents[k] > maxAbs * 1.0001;
  const barW = width - LABEL_W - VALUE_W;
  const zero = LABEL_W + barW / 2;
  const lim = barW / 2 - 2;
  const sx = lim / maxAbs;
  const clampX = (x) => Math.max(zero - lim, Math.min(zero + lim, x));
  const unit = method === "dla" ? "DLA" : "Δ log p";
  const svg = s("svg", {
    width,
    height: H,
    viewBox: `0 0 ${width} ${H}`,
    role: "img",
    "aria-label": "contribution bars",
  });
  svg.append(
    s("text", { x: LABEL_W, y: 11, class: "rw-muted" }, `− ${fmt(maxAbs, 2)}`),
    s("text", { x: width - VALUE_W, y: 11, "text-anchor": "end", class: "rw-muted" }, `+ ${fmt(maxAbs, 2)}`),
    s("text", { x: zero, y: 11, "text-anchor": "middle", class: "rw-muted" }, method === "dla" ? "logit units" : unit),
  );
  rows.forEach((row, k) => {
    const y = TOP + k * rowH;
    const g = s("g", { class: "rw-barrow" });
    g.appendChild(s("text", { x: LABEL_W - 4, y: y + rowH * 0.72, "text-anchor": "end" }, row.label));
    const total = row.parts.reduce((sum, part) => sum + part.value, 0);
    const before = ghost && ghost[k] ? ghost[k].parts.reduce((sum, part) => sum + part.value, 0) : null;
    let pos = 0,
      neg = 0;
    for (const part of row.parts) {
      const v = part.value;
      const a = v >= 0 ? zero + pos * sx : zero + (neg + v) * sx;
      const b = v >= 0 ? zero + (pos + v) * sx : zero + neg * sx;
      if (v >= 0) pos += v;
      else neg += v;
      const x0 = clampX(a),
        x1 = clampX(b);
      const fill = PART_COLORS[part.kind] || PART_COLORS.other;
      const rect = s("rect", { x: x0, y: y + 2, width: Math.max(0.5, x1 - x0), height: rowH - 4, fill });
      const lines = [part.label, [unit, fmtSigned(v)], ["row total", fmtSigned(total)]];
      if (before != null) lines.push(["original (ghost)", fmtSigned(before)]);
      if (part.kind === "mlp" && part.layer >= 0) {
        // an MLP bar expands into its top neurons
        lines.push(["click", "top neurons"]);
        rect.setAttribute("class", "rw-mlp-bar");
        rect.setAttribute("data-rw-layer", String(part.layer));
        if (openLayer === part.layer) {
          rect.setAttribute("stroke", "var(--rw-sel)");
          rect.setAttribute("stroke-width", "1.5");
        }
        rect.addEventListener("click", () => {
          tooltip.hide();
          onMlpClick(part.layer);
        });
      }
      rect.addEventListener("mousemove", (ev) => tooltip.show(ev.clientX, ev.clientY, lines));
      rect.addEventListener("mouseleave", () => tooltip.hide());
      g.appendChild(rect);
    }
    if (before != null) g.appendChild(ghostOutline(ghost[k], zero, sx, lim, y, rowH));
    if (cut(k) && unscaled.includes(k)) {
      g.setAttribute("data-rw-unscaled", "true");
      g.appendChild(breakMark(pos * sx > lim ? zero + lim * 0.8 : zero - lim * 0.8, y, rowH));
    } else if (cut(k)) g.appendChild(cutArrow(pos * sx > lim ? zero + lim : zero - lim, pos * sx > lim, y, rowH));
    g.appendChild(
      s(
        "text",
        { x: width - VALUE_W + 4, y: y + rowH * 0.72, class: total < 0 ? "rw-muted" : "" },
        fmtSigned(total, 2),
      ),
    );
    svg.appendChild(g);
  });
  svg.appendChild(s("line", { x1: zero, x2: zero, y1: TOP - 2, y2: H, class: "rw-axis" }));
  let note = "  —  bars right of the axis push the target up, left push it down; click an MLP bar for its top neurons";
  if (ghost) note += "; dashed outline = the original run, before the edits";
  if (extents.some((_, k) => cut(k) && !unscaled.includes(k)))
    note += "; ▶ = bar cut to keep the others readable (its value is on the right)";
  if (unscaled.some((k) => cut(k))) note += "; ⫽ = bar left out of the scale, broken (its value is on the right)";
  el.replaceChildren(svg, swatchKey(KEY, "rw-part-", note));
}

/** The original run's bar of a row, as a dashed outline from its negative to its positive end. */
function ghostOutline(row, zero, sx, lim, y, rowH) {
  let pos = 0,
    neg = 0;
  for (const part of row.parts) {
    if (part.value >= 0) pos += part.value;
    else neg += part.value;
  }
  const x0 = Math.max(zero - lim, zero + neg * sx),
    x1 = Math.min(zero + lim, zero + pos * sx);
  return s("rect", { class: "rw-ghost", x: x0, y: y + 1, width: Math.max(0.5, x1 - x0), height: rowH - 2 });
}

/** Two slanted strokes across a bar at x: the bar is broken there (its length is not to scale). */
function breakMark(x, y, rowH) {
  const d = `M${x - 5},${y + rowH} L${x - 1},${y} M${x},${y + rowH} L${x + 4},${y}`;
  return s("path", { d, class: "rw-break" });
}

/** The arrow at the cut end (x) of a bar longer than the scale, pointing right or left. */
function cutArrow(x, right, y, rowH) {
  const d = right
    ? `M${x - 6},${y + 1} L${x + 1},${y + rowH / 2} L${x - 6},${y + rowH - 1} Z`
    : `M${x + 6},${y + 1} L${x - 1},${y + rowH / 2} L${x + 6},${y + rowH - 1} Z`;
  return s("path", { d, class: "rw-cut" });
}
