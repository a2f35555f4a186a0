// A row of small coloured cells, one per item (a layer, a budget, a block): the colour shows a
// value, a click picks the item, mark(i) outlines the current one (attention sources, block budget).
import { h } from "./dom.js";

/**
 * n cells; color(i) is a CSS colour, title(i) a tooltip, onPick(i) (optional) makes them clickable.
 * Returns the element, with cells (the n elements) and mark(i).
 */
export function cellStrip(n, { color, title, onPick, className = "" }) {
  const strip = h("div", { class: `rw-cellstrip ${className}`.trim() });
  const cells = [];
  for (let i = 0; i < n; i++) {
    const cell = h("div", { class: onPick ? "rw-strip-cell rw-clickable" : "rw-strip-cell", title: title(i) });
    cell.style.background = color(i);
    if (onPick) cell.addEventListener("click", () => onPick(i));
    strip.appendChild(cell);
    cells.push(cell);
  }
  strip.cells = cells;
  strip.mark = (current) => cells.forEach((c, i) => c.setAttribute("aria-current", String(i === current)));
  return strip;
}
