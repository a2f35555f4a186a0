// ContributionBars: one bar per layer (attention and MLP stacked) or per component, DLA or
// log-prob increase, with the total and the model's own logit / log-prob beside it. Its parts:
// the bar chart, the per-head heat map, the top-neuron table, the target picker and the summary.
import { decodeArray } from "../shared/decode.js";
import { checkbox, h, messageBox, segmented } from "../shared/dom.js";
import { afterPaint, safely } from "../shared/lifecycle.js";
import { promptStrip } from "../shared/prompt.js";
import { fmt, fmtSigned } from "../shared/format.js";
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
 * Each position's own top token as a target entry ({text, id, dla, logp, logit, logprob,
 * dla_constant}; only column p of the arrays is read), from a dashboard's `_top_targets`.
 */
export function topTarget(top, p) {
  return {
    text: top.texts[p],
    id: top.ids[p],
    source: "top",
    heads: {},
    dla_constant: top.dla_constant[p],
    dla: decodeArray(top.dla, "top targets dla").data,
    logp: decodeArray(top.logp, "top targets logp").data,
    logit: decodeArray(top.logit, "top targets logit").data,
    logprob: decodeArray(top.logprob, "top targets logprob").data,
  };
}

/** Rows (barRows) of layer 0 and the embedding: log-prob's first step, left out of the scale. */
function firstStepRows(rows) {
  const out = [];
  rows.forEach((row, k) => {
    if (row.parts.length && row.parts.every((part) => part.kind === "embed" || part.layer === 0)) out.push(k);
  });
  return out;
}

/**
 * opts.follow: "position" (standalone: its own prompt strip sets `position`) or "selected" (in a
 * dashboard: the grid's selected cell); opts.tooltip shares one tooltip between views. In a
 * dashboard (`_top_targets` and `target_pinned`), the bars explain the selected position's own
 * top token until a target is pinned.
 */
export function mountContributionBars(root, store, opts = {}) {
  root.setAttribute("data-rw", "contribution-bars");
  const meta = store.meta();
  const { T, tokens } = meta;
  const tooltip = opts.tooltip || makeTooltip(opts.tooltipRoot || root);
  const follow = opts.follow || "position";
  let group = "layer";
  let openLayer = null; // the MLP layer whose neuron breakdown is expanded
  // log-prob: the first layer lifts log p from the embedding's near-uniform start and dwarfs the rest
  let scaleWithoutEmbedding = true;
  const canFollow = follow === "selected" && !!(store.get("_top_targets") || {}).ids;
  const following = () => canFollow && !store.get("target_pinned");

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
  const scaleBox = checkbox(
    "scale without the embedding",
    scaleWithoutEmbedding,
    (v) => {
      scaleWithoutEmbedding = v;
      draw(true);
    },
    "leave layer 0 (log p rising from the embedding's near-uniform start) out of the bar scale",
  );
  scaleBox.setAttribute("data-rw-part", "scale-without-embedding");
  const scaleSlot = h("span");
  const embedNote = h("div", { class: "rw-note", "data-rw-part": "embed-note" });
  // a target the user picks pins it in a dashboard (the bars stop following the selection)
  const picker = createTargetPicker(store, { onPick: () => canFollow && store.set("target_pinned", true) });
  // in a dashboard, after the title: whether the target follows the selection or is pinned
  const targetMode = h("span", { "data-rw-part": "target-mode" });
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
      h("div", { class: "rw-bar" }, methodSeg, groupSeg, headBox, scaleSlot),
      picker.bar,
      picker.chips,
      embedNote,
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

  let topMemo = { top: null, p: -1, t: null }; // the decoded auto target, until either changes
  /** The target the bars explain at p: the selected position's own top token while following. */
  function explained(p) {
    if (!following()) return store.target(store.get("target")) || store.target();
    const top = store.get("_top_targets");
    const hit = store.targets().find((x) => x.id === top.ids[p]);
    if (hit) return store.target(hit.text);
    if (topMemo.top !== top || topMemo.p !== p) topMemo = { top, p, t: topTarget(top, p) };
    return topMemo.t;
  }

  function drawTargetMode(t, p) {
    if (!canFollow || !t) return;
    root.dataset.rwTargetMode = following() ? "auto" : "pinned";
    if (following()) {
      targetMode.replaceChildren(h("span", { class: "rw-sub", text: ` — position ${p}'s top token (auto)` }));
      return;
    }
    const unpin = h("button", {
      class: "rw-btn",
      type: "button",
      "data-rw-part": "unpin",
      text: "unpin",
      title: "explain each selected position's own top token again (the target follows the selection)",
    });
    unpin.addEventListener("click", () => store.set("target_pinned", false));
    targetMode.replaceChildren(h("span", { class: "rw-sub", text: " — pinned target " }), unpin);
  }

  /** Log-prob: which rows the scale leaves out, and the note saying where log p started. */
  function firstStep(rows, t, p, method) {
    // in the page only when it applies (log-prob), so the bars keep one checkbox otherwise
    if (method === "logprob") scaleSlot.replaceChildren(scaleBox);
    else scaleSlot.replaceChildren();
    const kinds = meta.kinds;
    const lastEmbed = kinds.lastIndexOf("embed");
    embedNote.hidden = method !== "logprob" || lastEmbed < 0;
    if (embedNote.hidden) return [];
    const start = t.logp[lastEmbed * T + p];
    const ks = firstStepRows(rows).filter((k) => rows[k].parts.some((part) => part.kind !== "embed"));
    const lift = ks.reduce((sum, k) => sum + rows[k].parts.reduce((a, part) => a + part.value, 0), 0);
    embedNote.textContent =
      `layer 0: ${fmtSigned(lift, 1)}, from log p = ${fmt(start, 1)} after the embedding (uniform-ish start)` +
      (scaleWithoutEmbedding ? "; left out of the scale (bar broken, value on the right)" : "");
    return scaleWithoutEmbedding ? ks : [];
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
      following(),
    ];
    if (key.join("|") === lastKey && force !== true) return;
    lastKey = key.join("|");
    methodSeg.setValue(method);
    root.setAttribute("data-rw-method", method);
    groupSeg.setValue(group);
    headBox.input.checked = !!store.get("per_head");
    const t = explained(p);
    drawTargetMode(t, p);
    if (prompt) prompt.mark(p);
    picker.update();
    title.replaceChildren(
      h("span", { text: "Contributions to " }),
      t ? tokenEl(t.text) : h("span", { class: "rw-tok", text: "?" }),
      h("span", { text: ` at position ${p} ` }),
      tokenEl(tokens[p]),
      ...(canFollow ? [targetMode] : []),
    );
    if (!t) {
      chart.replaceChildren(messageBox("no target data", "info"));
      return;
    }
    const values = contributions(meta, t, p, method);
    const width = Math.max(260, Math.floor(root.clientWidth || 420));
    const before = originalContributions(store, meta, t, p, method);
    const ghost = before && barRows(meta, before, group);
    const rows = barRows(meta, values, group);
    drawBarChart(chart, rows, {
      width,
      method,
      openLayer,
      tooltip,
      onMlpClick: toggleLayer,
      ghost,
      unscaled: firstStep(rows, t, p, method),
    });
    drawSummary(summary, meta, t, p, method, values);
    heads.show(t, p, method);
    root.dataset.rwOpenMlp = openLayer == null ? "" : String(openLayer);
    neurons.show(openLayer, t, p);
  }

  /**
   * A snapshot has no kernel to pin a target chosen elsewhere (a click in the lens): a target
   * other than the one followed pins it here. Live, Python pins it (and moves the target itself
   * while following, so its echoes must not pin).
   */
  function pinInSnapshot(target) {
    if (!store.get("_rw_static") || !following()) return;
    const auto = explained(position());
    if (auto && target && target !== auto.text) store.set("target_pinned", true);
  }

  draw();
  const redraw = safely(() => draw());
  const offs = ["method", "target", "per_head", "_targets", "target_pinned"].map((name) => store.on(name, redraw));
  offs.push(store.on("_top_targets", redrawAll), picker.destroy);
  if (canFollow) offs.push(store.on("target", pinInSnapshot));
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
