// The legend of a colour scale: a gradient with its range and how the range was chosen.
import { cssAt } from "./colors.js";
import { h } from "./dom.js";
import { fmt } from "./format.js";

const RANGE_NOTE = { row: "per row", quantile: "2–98% quantiles", global: "min–max", fixed: "" };

/** Legend of colour map cmap under normaliser norm (from scale.makeNormalizer); label names the value. */
export function legend(cmap, norm, label) {
  const c = h("canvas", { class: "rw-legend-ramp", width: 120, height: 10 });
  const ctx = c.getContext("2d");
  for (let x = 0; x < 120; x++) {
    ctx.fillStyle = cssAt(cmap, x / 119);
    ctx.fillRect(x, 0, 1, 10);
  }
  const how = RANGE_NOTE[norm.mode] || "";
  const lo = norm.mode === "row" ? "row min" : fmt(norm.lo);
  const hi = norm.mode === "row" ? "row max" : fmt(norm.hi);
  return h(
    "span",
    { class: "rw-legend", title: `colour scale: ${label}${how ? " (" + how + ")" : ""}` },
    h("span", { text: label }),
    h("span", { text: lo }),
    c,
    h("span", { text: hi }),
    how ? h("span", { text: `(${how})` }) : null,
  );
}

/**
 * The key of a bar chart's series: a chip per [name, label] with a swatch of class
 * `rw-swatch ${prefix}${name}` (e.g. rw-part-attn, rw-pair-clean), then `note` in muted text.
 */
export function swatchKey(entries, prefix, note) {
  const key = h("div", { class: "rw-chips" });
  for (const [name, label] of entries) {
    key.append(
      h("span", { class: "rw-legend" }, h("span", { class: `rw-swatch ${prefix}${name}` }), h("span", { text: label })),
    );
  }
  key.append(h("span", { class: "rw-sub", text: note }));
  return key;
}
