// Compare: a clean and a corrupt prompt side by side. Both stream grids read one `selected` (a
// click in either moves both), paired bars show each component's share of the metric in both runs,
// and the patching grid's selected column follows the selected position (and sets it).
import { decodeArray } from "../shared/decode.js";
import { h, messageBox } from "../shared/dom.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { analysisData, guard, safely } from "../shared/lifecycle.js";
import { createStore, scopedModel } from "../shared/store.js";
import { makeTooltip } from "../shared/tooltip.js";
import { drawPairedBars } from "./compare/paired_bars.js";
import { mountPatchingGrid } from "./patching_grid.js";
import { mountStreamGrid } from "./stream_grid.js";

/** The decoded `_data` of Compare (throws a readable Error on a bad payload). */
export function compareData(d) {
  if (!d || !d.clean || !d.corrupt) throw new Error("no prompts to compare (empty payload)");
  const out = { ...d };
  for (const side of ["clean", "corrupt"]) {
    const m = d[side]._meta;
    const contrib = decodeArray(d[side].contrib, `${side} contributions`).data;
    if (contrib.length !== m.labels.length)
      throw new Error(`${side}: ${contrib.length} contributions for ${m.labels.length} components`);
    out[side] = { ...d[side], contribValues: contrib };
  }
  if (d.clean._meta.T !== d.corrupt._meta.T) throw new Error("the two prompts differ in length");
  return out;
}

export function mountCompare(root, store) {
  root.setAttribute("data-rw", "compare");
  const d = analysisData(root, store, compareData);
  if (!d) return null;
  const tooltip = makeTooltip(root);
  const { labels, T } = d.clean._meta;
  const views = [];
  // a store per part, over the same widget: the grids share `selected`; the patching grid has its own
  const part = (key, rename) => createStore(scopedModel(store.model, () => key(store.get("_data")), rename));
  const stores = [];

  root.append(
    h(
      "div",
      { class: "rw-dash-head" },
      h("span", { class: "rw-title", text: `Clean vs corrupt — ${d.metric}` }),
      h("span", {
        class: "rw-sub",
        text:
          `clean ${fmt(d.clean.value)}, corrupt ${fmt(d.corrupt.value)} ` +
          `(Δ ${fmtSigned(d.clean.value - d.corrupt.value)})`,
      }),
    ),
  );
  const layout = h("div", { class: "rw-compare" });
  root.appendChild(layout);
  for (const side of ["clean", "corrupt"]) {
    const el = h("div", { class: "rw-view", "data-rw-side": side });
    layout.appendChild(el);
    const sub = part((data) => data[side], { metric: "grid_metric" });
    stores.push(sub);
    const title = `${side === "clean" ? "Clean" : "Corrupt"}: ${d[side]._meta.tokens.join("")}`;
    views.push(guard(el, () => mountStreamGrid(el, sub, { tooltip, pane: false, title })));
  }

  const barsEl = h("div", { class: "rw-view rw-full", "data-rw": "paired-bars" });
  const chart = h("div", { class: "rw-chart" });
  const summary = h("div", { class: "rw-summary" });
  barsEl.append(h("div", { class: "rw-title", text: `Each component's share of ${d.metric}` }), chart, summary);
  layout.appendChild(barsEl);
  const rows = labels.map((label, c) => ({
    label,
    clean: d.clean.contribValues[c],
    corrupt: d.corrupt.contribValues[c],
  }));
  const sum = (side) => d[side].contribValues.reduce((a, b) => a + b, 0);
  summary.textContent =
    `Σ shares + rest = metric: clean ${fmtSigned(sum("clean"))} ${fmtSigned(d.clean.rest)} = ${fmt(d.clean.value)}; ` +
    `corrupt ${fmtSigned(sum("corrupt"))} ${fmtSigned(d.corrupt.rest)} = ${fmt(d.corrupt.value)} ` +
    "(rest: biases, and the curvature of a non-linear metric)";
  function drawBars() {
    const sel = store.get("selected") || [labels.length - 1, T - 1];
    barsEl.dataset.rwCurrent = String(sel[0]);
    drawPairedBars(chart, rows, {
      width: Math.max(300, Math.floor(barsEl.clientWidth || root.clientWidth || 600)),
      unit: d.metric,
      current: sel[0],
      tooltip,
      onPick: (c) => store.set("selected", [c, T - 1]),
    });
  }
  drawBars();

  const patchEl = h("div", { class: "rw-view rw-full" });
  layout.appendChild(patchEl);
  let patchStore = null;
  if (d.patching && d.patching.R != null) {
    patchStore = part((data) => ({ _data: data.patching, _error: "" }), { selected: "patch_selected" });
    stores.push(patchStore);
    const tokenColumns = d.patching.column_kind === "token";
    const follow = (sel) => {
      const now = store.get("selected") || [labels.length - 1, T - 1];
      if (tokenColumns && now[1] !== sel[1]) store.set("selected", [now[0], sel[1]]);
    };
    views.push(guard(patchEl, () => mountPatchingGrid(patchEl, patchStore, { tooltip, onSelect: follow })));
  } else {
    patchEl.appendChild(messageBox(d.patching_error || "no patching result", "info"));
  }

  // the selected position moves the patching grid's column (its row stays)
  const onSelected = safely((sel) => {
    drawBars();
    if (!patchStore || d.patching.column_kind !== "token" || !Array.isArray(sel)) return;
    const ps = patchStore.get("selected") || [0, 0];
    if (ps[1] !== sel[1]) patchStore.set("selected", [ps[0], sel[1]]);
  });
  const offs = [store.on("selected", onSelected)];
  root.dataset.rwSelected = (store.get("selected") || []).join(",");
  offs.push(store.on("selected", (sel) => (root.dataset.rwSelected = (sel || []).join(","))));
  return {
    resize() {
      views.forEach((v) => v && v.resize && v.resize());
      drawBars();
    },
    retheme() {
      views.forEach((v) => v && v.retheme && v.retheme());
    },
    destroy() {
      offs.forEach((f) => f());
      views.forEach((v) => v && v.destroy && v.destroy());
      stores.forEach((s) => s.destroy());
    },
  };
}
