// PatchingGrid: an activation-patching sweep as components x tokens, diverging colour around 0
// (normalised: 0 = corrupt, 1 = clean; or the raw metric), hover for both values, click to select.
import { createCellGrid } from "../shared/cellgrid.js";
import { colorize } from "../shared/colors.js";
import { decodeArray } from "../shared/decode.js";
import { h, segmented } from "../shared/dom.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { legend } from "../shared/legend.js";
import { analysisData, safely } from "../shared/lifecycle.js";
import { makeNormalizer } from "../shared/scale.js";
import { tokenLabel } from "../shared/tokens.js";
import { makeTooltip } from "../shared/tooltip.js";

const SCALES = [
  ["normalized", "normalised", "(patched − corrupt) / (clean − corrupt): 0 = corrupt run, 1 = clean run"],
  ["raw", "raw metric", "the metric of each patched run"],
];

/** The decoded `_data` of a PatchingGrid (throws a readable Error on a bad payload). */
export function patchingData(d) {
  if (!d || d.R == null) throw new Error("no patching result to show (empty payload)");
  const raw = decodeArray(d.raw, "raw"),
    values = decodeArray(d.values, "values");
  for (const a of [raw, values])
    if (a.shape.join() !== [d.R, d.K].join())
      throw new Error(`patching grid: shape [${a.shape}] does not match ${d.R} rows x ${d.K} columns`);
  if (d.labels.length !== d.R || d.columns.length !== d.K)
    throw new Error(`patching grid: ${d.labels.length} labels x ${d.columns.length} columns for [${d.R}, ${d.K}]`);
  return { ...d, raw: raw.data, values: values.data };
}

/** Header of a column: "3 ·John" for a token, the column's name otherwise. */
function columnTitle(d, k) {
  return d.column_kind === "token" ? `${k} ${tokenLabel(d.columns[k])}` : d.columns[k];
}

/** The normaliser of one scale: symmetric around 0, as wide as the largest |value|. */
export function patchingNormalizer(values, R, K) {
  return makeNormalizer(values, R, K, { mode: "global", signed: true });
}

/** opts.tooltip shares a tooltip; opts.title replaces the title; opts.onSelect(sel) after a click. */
export function mountPatchingGrid(root, store, opts = {}) {
  root.setAttribute("data-rw", "patching-grid");
  const d = analysisData(root, store, patchingData);
  if (!d) return null;
  const { R, K } = d;
  const tooltip = opts.tooltip || makeTooltip(root);
  const scaleSeg = segmented(SCALES, ...store.bind("scale", "normalized"), "what the colour shows", "scale");
  const legendSlot = h("span");
  const method = d.method ? ` (${d.method})` : "";
  root.append(
    h(
      "div",
      { class: "rw-bar" },
      h("span", { class: "rw-title", text: opts.title || `Activation patching${method}` }),
      scaleSeg,
      legendSlot,
    ),
    h("div", {
      class: "rw-sub",
      text:
        `metric ${d.metric || "?"}: clean run ${fmt(d.clean_value)}, corrupt run ${fmt(d.corrupt_value)}; ` +
        "each cell patches that component's clean activation into the corrupt run",
    }),
  );

  let norm = null;
  const shown = () => (store.get("scale") === "raw" ? d.raw : d.values);
  const grid = createCellGrid(root, {
    C: R,
    T: K,
    rowLabels: d.labels,
    tokens: d.columns,
    tooltip,
    layout: { maxCellW: 64, maxHeight: 560 },
    ariaLabel: "activation patching: components by positions",
    selected: store.get("selected"),
    onSelect: (sel) => {
      store.set("selected", sel);
      if (opts.onSelect) opts.onSelect(sel);
    },
    tooltipLines: (r, k) => {
      const v = d.values[r * K + k];
      const lines = [
        `${d.labels[r]} @ ${columnTitle(d, k)}`,
        ["patched metric (raw)", fmt(d.raw[r * K + k])],
        ["normalised", fmtSigned(v)],
        ["clean / corrupt", `${fmt(d.clean_value)} / ${fmt(d.corrupt_value)}`],
      ];
      if (norm && norm.clipped(r, k)) lines.push("outside the colour scale (clipped)");
      return lines;
    },
  });
  const foot = h("div", { class: "rw-note" });
  root.appendChild(foot);

  function recolor() {
    const scale = store.get("scale") === "raw" ? "raw" : "normalized";
    scaleSeg.setValue(scale);
    root.dataset.rwScale = scale;
    norm = patchingNormalizer(shown(), R, K);
    grid.setColors(colorize(shown(), R, K, norm, "rdbu"));
    legendSlot.replaceChildren(legend("rdbu", norm, scale === "raw" ? "metric" : "normalised"));
    foot.textContent =
      scale === "raw"
        ? `Red: the patched run's metric is above 0, blue: below (±${fmt(norm.hi)}).`
        : "Red: patching this moves the metric toward the clean run (1 = all the way), blue: away from it " +
          `(±${fmt(norm.hi)}).`;
  }

  function onSelected(sel) {
    if (!Array.isArray(sel)) return;
    root.dataset.rwSelected = `${sel[0]},${sel[1]}`;
    grid.select(sel, false);
  }

  recolor();
  grid.full();
  onSelected(store.get("selected") || [0, 0]);
  const repaint = safely(() => {
    recolor();
    grid.full();
  });
  const offs = [store.on("scale", repaint), store.on("selected", onSelected)];
  return {
    grid,
    resize: () => grid.full(),
    retheme: () => grid.full(),
    destroy() {
      offs.forEach((f) => f());
    },
  };
}
