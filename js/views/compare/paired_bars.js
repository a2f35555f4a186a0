// Paired bars of Compare: for each component, its share of the metric in the clean run (upper bar)
// and in the corrupt run (lower bar), the difference on the right; a click on a row selects it.
import { s } from "../../shared/dom.js";
import { fmt, fmtSigned } from "../../shared/format.js";
import { swatchKey } from "../../shared/legend.js";
import { barScale } from "../../shared/scale.js";

const LABEL_W = 62;
const VALUE_W = 70;
const TOP = 16;
const SIDES = [
  ["clean", "clean"],
  ["corrupt", "corrupt"],
];

/**
 * Draw the paired bars into el (replacing what it held).
 * rows: [{label, clean, corrupt}]; opts: width (px), unit (the metric's name), current (the row
 * marked as selected, or -1), tooltip (makeTooltip), onPick(row), sides (the two series' names:
 * [["clean", name], ["corrupt", name]], by default "clean" and "corrupt").
 */
export function drawPairedBars(el, rows, { width, unit, current, tooltip, onPick, sides = SIDES }) {
  const rowH = rows.length > 40 ? 14 : 18;
  const H = TOP + rows.length * rowH + 4;
  const maxAbs = barScale(rows.map((r) => Math.max(Math.abs(r.clean), Math.abs(r.corrupt))));
  const barW = width - LABEL_W - VALUE_W;
  const zero = LABEL_W + barW / 2;
  const lim = barW / 2 - 2;
  const x = (v) => zero + Math.max(-lim, Math.min(lim, (v / maxAbs) * lim));
  const svg = s("svg", { width, height: H, viewBox: `0 0 ${width} ${H}`, role: "img", "aria-label": "paired bars" });
  svg.append(
    s("text", { x: LABEL_W, y: 11, class: "rw-muted" }, `− ${fmt(maxAbs, 2)}`),
    s("text", { x: width - VALUE_W, y: 11, "text-anchor": "end", class: "rw-muted" }, `+ ${fmt(maxAbs, 2)}`),
    s("text", { x: width - 2, y: 11, "text-anchor": "end", class: "rw-muted" }, "Δ"),
  );
  rows.forEach((row, k) => {
    const y = TOP + k * rowH;
    const diff = row.clean - row.corrupt;
    const g = s("g", { class: "rw-pair-row", "data-rw-row": k, "aria-current": String(k === current) });
    g.appendChild(s("rect", { class: "rw-pair-band", x: 0, y, width, height: rowH }));
    g.appendChild(s("text", { x: LABEL_W - 4, y: y + rowH * 0.72, "text-anchor": "end" }, row.label));
    const half = (rowH - 4) / 2;
    sides.forEach(([side], j) => {
      const v = row[side];
      const x0 = Math.min(x(0), x(v)),
        x1 = Math.max(x(0), x(v));
      g.appendChild(
        s("rect", {
          class: `rw-pair-${side}`,
          "data-rw-side": side,
          x: x0,
          y: y + 2 + j * half,
          width: Math.max(0.5, x1 - x0),
          height: half,
        }),
      );
    });
    g.appendChild(
      s("text", { x: width - 2, y: y + rowH * 0.72, "text-anchor": "end", class: "rw-num" }, fmtSigned(diff, 2)),
    );
    const lines = [
      row.label,
      [sides[0][1], fmtSigned(row.clean)],
      [sides[1][1], fmtSigned(row.corrupt)],
      [`${sides[0][1]} − ${sides[1][1]}`, fmtSigned(diff)],
    ];
    if (Math.max(Math.abs(row.clean), Math.abs(row.corrupt)) > maxAbs * 1.0001) lines.push("bar cut at the scale");
    g.addEventListener("mousemove", (ev) => tooltip.show(ev.clientX, ev.clientY, lines));
    g.addEventListener("mouseleave", () => tooltip.hide());
    g.addEventListener("click", () => onPick(k));
    svg.appendChild(g);
  });
  svg.appendChild(s("line", { x1: zero, x2: zero, y1: TOP - 2, y2: H, class: "rw-axis" }));
  const note = ` — each component's share of ${unit}; Δ = ${sides[0][1]} − ${sides[1][1]}; click a row to select it`;
  el.replaceChildren(svg, swatchKey(sides, "rw-pair-", note));
}
