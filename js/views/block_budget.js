// BlockBudget: a slider over the block budget k = 0..L (blocks 0..k-1 active, the rest identity):
// the top-k next-token distribution at one position as horizontal bars, p(target) per k, and the
// drop-one effect of each block. Every k is precomputed in `_data`, so snapshots work offline.
import { keepKeys, SLIDER_KEYS } from "../shared/keys.js";
import { cssAt, signedT } from "../shared/colors.js";
import { cellStrip } from "../shared/cellstrip.js";
import { decodeArray } from "../shared/decode.js";
import { h } from "../shared/dom.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { analysisData, safely } from "../shared/lifecycle.js";
import { positionPicker } from "../shared/prompt.js";
import { barScale, clampIndex } from "../shared/scale.js";
import { tokenEl, tokenLabel } from "../shared/tokens.js";

/** Colour position of a probability on a log scale from 1e-8 to 1. */
export function logT(p) {
  return Number.isFinite(p) && p > 0 ? Math.max(0, Math.min(1, (Math.log10(p) + 8) / 8)) : 0;
}

/** Human name of a budget. */
export function budgetName(k, L) {
  if (k === 0) return "direct path / bigram floor (no block)";
  if (k === L) return `full model (all ${L} blocks)`;
  return `blocks 0..${k - 1} active, ${k}..${L - 1} identity`;
}

/** Decoded `_data` of a BlockBudget view; throws a readable Error on bad input. */
export function budgetData(d) {
  if (!d || d.n_layers == null) throw new Error("no block-budget data to show (empty payload)");
  const L = d.n_layers,
    k = d.k;
  const ids = decodeArray(d.top_ids, "top_ids"),
    probs = decodeArray(d.top_probs, "top_probs");
  if (ids.shape[0] !== L + 1 || ids.shape[1] !== k || probs.data.length !== ids.data.length) {
    throw new Error(`block budget: top_ids [${ids.shape}] does not match ${L + 1} budgets x ${k}`);
  }
  return { ...d, L, ids: ids.data, probs: probs.data };
}

/** A labelled strip of cells (cellStrip options), one row of the strips under the bars. */
function stripRow(label, n, options) {
  const strip = cellStrip(n, options);
  return {
    row: h("div", { class: "rw-strip-row" }, h("span", { class: "rw-sub rw-strip-label", text: label }), strip),
    strip,
  };
}

export function mountBlockBudget(root, store) {
  root.setAttribute("data-rw", "block-budget");
  const d = analysisData(root, store, budgetData);
  if (!d) return null;
  const { L, k, ids, probs, vocab } = d;
  const text = (id) => (vocab[String(id)] === undefined ? `#${id}` : vocab[String(id)]);
  let pmax = 1e-9;
  for (const p of probs) pmax = Math.max(pmax, p);
  const scaleMax = Math.min(1, pmax * 1.05);
  const target = tokenLabel(d.target);

  const title = h(
    "div",
    { class: "rw-title" },
    h("span", { text: "Block budget: next token at position " + d.position + " " }),
    tokenEl(d.tokens[d.position]),
  );
  const slider = h("input", {
    type: "range",
    min: "0",
    max: String(L),
    step: "1",
    "aria-label": "block budget k",
    class: "rw-budget-slider",
  });
  const kLabel = h("span", { class: "rw-budget-k" });
  const kName = h("span", { class: "rw-sub" });
  const bars = h("div", { class: "rw-budget-bars", role: "list", "aria-label": "top next tokens" });
  const tline = h("div", { class: "rw-summary rw-budget-target" });
  const strips = h("div", { class: "rw-budget-strips" });
  const note = h("div", { class: "rw-note" });
  const picker = positionPicker(root, store, d.tokens, d.position, "the block budget");
  const sliderBar = h("div", { class: "rw-bar" }, h("span", { text: "k" }), slider, kLabel, kName);
  root.append(title, picker, sliderBar, bars, tline, strips, note);

  slider.addEventListener("input", () => store.set("budget", Number(slider.value)));
  keepKeys(slider, () => false, { native: SLIDER_KEYS });

  // p(target) per k and drop-one per block, as strips of cells
  const tp = d.target_prob || [];
  const pRow = stripRow(`p(${target}) per k`, L + 1, {
    className: "rw-budget-pstrip",
    color: (i) => cssAt("cividis", logT(tp[i])),
    title: (i) => `k=${i}: p(${target}) = ${fmt(tp[i])}, rank ${d.target_rank[i]}`,
    onPick: (i) => store.set("budget", i),
  });
  strips.appendChild(pRow.row);
  let dropCells = [];
  if (d.drop && d.drop.effect) {
    const eff = d.drop.effect;
    // one block (often block 0) can dwarf the rest: scale to the second largest, clip the giant
    const m = barScale(eff.map((v) => Math.abs(v)));
    const dropRow = stripRow("drop one block: Δ log p", L, {
      className: "rw-budget-drop",
      color: (i) => cssAt("rdbu", signedT(eff[i], m)),
      title: (i) =>
        `drop block ${i} alone: Δ log p(${target}) = ${fmtSigned(eff[i])}; top becomes ${tokenLabel(d.drop.top[i])}`,
    });
    dropCells = dropRow.strip.cells;
    const legend =
      "blue: removing the block lowers the target (it helped); red: raises it. " +
      `Intact log p = ${fmt(d.drop.full_logprob)}. Scale ±${fmt(m)} (larger effects saturate). ` +
      "p(target) colour: log scale 1e-8..1.";
    strips.append(dropRow.row, h("div", { class: "rw-note", text: legend }));
  } else if (d.drop_note) {
    strips.appendChild(h("div", { class: "rw-note", text: d.drop_note }));
  } else if (d.drop_pending) {
    strips.appendChild(dropButton());
  }

  /** Long prompts: the drop-one strip (n_layers forwards) is computed when asked for. */
  function dropButton() {
    const status = h("span", { class: "rw-sub" });
    const live = !store.isStatic();
    const button = h("button", {
      class: "rw-btn",
      type: "button",
      "data-rw-part": "drop-button",
      text: "compute drop-one effects",
      title: `re-runs the model once per block (${L} runs) to show what removing each block does`,
      disabled: !live,
    });
    if (!live) status.textContent = " not computed in this snapshot (needs the kernel)";
    button.addEventListener("click", () => {
      button.disabled = true;
      status.textContent = ` re-running the model ${L} times…`;
      // the new _data remounts the view with the strip
      store.request({ type: "drop" }, { onWait: (note) => (status.textContent = ` ${note}`) }).catch((e) => {
        button.disabled = false;
        status.textContent = ` ${e.message || e}`;
      });
    });
    return h("div", { class: "rw-bar" }, button, status);
  }
  note.textContent = d.repeats_input
    ? "k=0 mostly predicts the input token itself (tied embeddings), not a bigram table."
    : "";

  function barRow(j, id, p, isTarget) {
    const fill = h("div", { class: "rw-budget-fill" });
    fill.style.width = `${Math.max(0.3, (100 * p) / scaleMax)}%`;
    const row = h(
      "div",
      { class: "rw-budget-row", role: "listitem", "data-rw-target": isTarget ? "1" : null },
      h("span", { class: "rw-sub rw-budget-rank", text: `#${j + 1}` }),
      tokenEl(text(id), { class: "rw-budget-tok", title: `token id ${id}` }),
      h("div", { class: "rw-budget-track" }, fill),
      h("span", { class: "rw-budget-p", text: fmt(p) }),
    );
    return row;
  }

  function draw() {
    const b = clampIndex(store.get("budget"), 0, L, L);
    slider.value = String(b);
    root.dataset.rwBudget = String(b);
    kLabel.textContent = `= ${b} / ${L}`;
    kName.textContent = budgetName(b, L);
    let targetShown = false;
    const rows = [];
    for (let j = 0; j < k; j++) {
      const id = ids[b * k + j];
      const isTarget = id === d.target_id;
      targetShown = targetShown || isTarget;
      rows.push(barRow(j, id, probs[b * k + j], isTarget));
    }
    bars.replaceChildren(...rows);
    const rank = `  rank ${d.target_rank[b]}${targetShown ? "" : " (not in the top " + k + ")"}`;
    tline.replaceChildren(
      h("b", { text: "p(" }),
      tokenEl(d.target),
      h("b", { text: `) = ${fmt(tp[b])}` }),
      h("span", {
        class: "rw-sub",
        text: `${rank};  entropy ${fmt(d.entropy[b])} nats;  full model p = ${fmt(tp[L])}`,
      }),
    );
    pRow.strip.mark(b);
    dropCells.forEach((c, i) => c.classList.toggle("rw-inactive", i >= b));
  }

  draw();
  const off = store.on("budget", safely(draw));
  return { resize() {}, retheme: draw, destroy: off };
}
