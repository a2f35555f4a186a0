// ContributionBars: one bar per layer (attention and MLP stacked) or per component, DLA or
// log-prob increase, with the total and the model's own logit / log-prob beside it. Its parts:
// the bar chart, the per-head heat map, the top-neuron table, the target picker and the summary.
import { decodeArray } from "../shared/decode.js";
import { checkbox, h, messageBox, segmented } from "../shared/dom.js";
import { afterPaint, safely } from "../shared/lifecycle.js";
import { promptStrip } from "../shared/prompt.js";
import { tokenEl } from "../shared/tokens.js";
import { makeTooltip } from "../shared/tooltip.js";
import { barRows, drawBarChart } from "./contribution_bars/bar_chart.js";
import { createHeadPanel } from "./contribution_bars/head_grid.js";
import { createNeuronPanel } from "./contribution_bars/neuron_table.js";
import { drawSummary } from "./contribution_bars/summary.js";
import { createTargetPicker } from "./contribution_bars/target_picker.js";

const METHODS = [
  ["dla", "DLA", "direct logit attribution (frozen final norm); sums with the constant to the logit"],
  ["logprob", "log-prob", "log-probability increase (Yu & Ananiadou); telescopes to log p(final) − log p(embedding)"],
];
const GROUPS = [
  ["layer", "per layer"],
  ["component", "per component"],
];

/** Contributions [C] at a position for a target entry (decoded) and method. */
export function contributions(meta, t, position, method) {
  const { C, T } = meta;
  const out = new Float64Array(C);
  if (method === "dla") {
    for (let c = 0; c < C; c++) out[c] = t.dla[c * T + position];
  } else {
    // log-prob increase telescopes: each component = log p after it - log p before it
    for (let c = 1; c < C; c++) out[c] = t.logp[c * T + position] - t.logp[(c - 1) * T + position];
  }
  return out;
}

/** The original run's contributions (an edited dashboard's ghost), or null without edits. */
export function originalContributions(store, meta, t, position, method) {
  const o = store.get("_original");
  const entry = o && o.targets && o.targets[String(t.id)];
  if (!entry) return null;
  const original = {
    dla: decodeArray(entry.dla, "original dla").data,
    logp: decodeArray(entry.logp, "original logp").data,
  };
  return contributions(meta, original, position, method);
}

/**
 * opts.follow: "position" (standalone: its own prompt strip sets `position`) or "selected" (in a
 * dashboard: the grid's selected cell); opts.tooltip shares one tooltip between views.
 */
export function mountContributionBars(root, store, opts = {}) {
  root.setAttribute("data-rw", "contribution-bars");
  const meta = store.meta();
  const { T, tokens } = meta;
  const tooltip = opts.tooltip || makeTooltip(opts.tooltipRoot || root);
  const follow = opts.follow || "position";
  let group = "layer";
  let openLayer = null; // the MLP layer whose neuron breakdown is expanded

  const methodSeg = segmented(METHODS, ...store.bind("method", "dla"), "value shown", "method");
  const groupSeg = segmented(
    GROUPS,
    group,
    (v) => {
      group = v;
      draw();
    },
    "one bar per layer (attention + MLP stacked) or per component",
  );
  const headBox = checkbox(
    "per head",
    ...store.bind("per_head", false),
    "attention split by head (not additive for log-prob)",
  );
  const picker = createTargetPicker(store);
  const title = h("div", { class: "rw-title" });
  const chart = h("div", { class: "rw-chart" });
  const summary = h("div", { class: "rw-summary" });
  const redrawAll = safely(() => draw(true));
  const heads = createHeadPanel(store, root, tooltip, { onArrive: redrawAll });
  const neurons = createNeuronPanel(store, meta, { onClose: () => toggleLayer(openLayer), onArrive: redrawAll });
  // standalone: a strip of the prompt's tokens picks the position (in a dashboard the grid does)
  const prompt =
    follow === "position"
      ? promptStrip(tokens, (i) => store.set("position", i), {
          title: (i) => `position ${i}: show the contributions here`,
        })
      : null;
  root.append(
    ...[
      title,
      prompt,
      h("div", { class: "rw-bar" }, methodSeg, groupSeg, headBox),
      picker.bar,
      picker.chips,
      chart,
      neurons.el,
      summary,
      heads.el,
    ].filter(Boolean),
  );

  function position() {
    const p = follow === "selected" ? (store.get("selected") || [0, T - 1])[1] : store.get("position");
    return p == null || p < 0 ? T - 1 : p;
  }

  function toggleLayer(layer) {
    openLayer = openLayer === layer ? null : layer;
    draw(true);
  }

  let lastKey = "";
  function draw(force) {
    const method = store.get("method") || "dla";
    const p = position();
    const key = [
      method,
      group,
      store.get("target"),
      store.get("per_head"),
      p,
      root.clientWidth,
      store.targets().length,
    ];
    if (key.join("|") === lastKey && force !== true) return;
    lastKey = key.join("|");
    methodSeg.setValue(method);
    root.setAttribute("data-rw-method", method);
    groupSeg.setValue(group);
    headBox.input.checked = !!store.get("per_head");
    const t = store.target(store.get("target")) || store.target();
    if (prompt) prompt.mark(p);
    picker.update();
    title.replaceChildren(
      h("span", { text: "Contributions to " }),
      t ? tokenEl(t.text) : h("span", { class: "rw-tok", text: "?" }),
      h("span", { text: ` at position ${p} ` }),
      tokenEl(tokens[p]),
    );
    if (!t) {
      chart.replaceChildren(messageBox("no target data", "info"));
      return;
    }
    const values = contributions(meta, t, p, method);
    const width = Math.max(260, Math.floor(root.clientWidth || 420));
    const before = originalContributions(store, meta, t, p, method);
    const ghost = before && barRows(meta, before, group);
    drawBarChart(chart, barRows(meta, values, group), {
      width,
      method,
      openLayer,
      tooltip,
      onMlpClick: toggleLayer,
      ghost,
    });
    drawSummary(summary, meta, t, p, method, values);
    heads.show(t, p, method);
    root.dataset.rwOpenMlp = openLayer == null ? "" : String(openLayer);
    neurons.show(openLayer, t, p);
  }

  draw();
  const redraw = safely(() => draw());
  const offs = ["method", "target", "per_head", "_targets"].map((name) => store.on(name, redraw));
  offs.push(store.on("_neurons", redrawAll), store.on("_original", redrawAll));
  offs.push(store.on(follow === "selected" ? "selected" : "position", afterPaint(redraw)));
  return {
    resize: redraw,
    retheme: redrawAll,
    chooseTarget: picker.choose,
    toggleLayer,
    destroy() {
      offs.forEach((off) => off());
    },
  };
}
