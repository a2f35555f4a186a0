// BlockBudget: a slider over the block budget k = 0..L (blocks 0..k-1 active, the rest identity):
// the top-k next-token distribution at one position as horizontal bars, p(target) per k, and the
// drop-one effect of each block. Every k is precomputed in `_data`, so snapshots work offline.
import { h, messageBox } from "../shared/dom.js";
import { decodeArray } from "../shared/decode.js";
import { cssAt, rgbAt, textOn } from "../shared/colors.js";
import { fmt, fmtSigned } from "../shared/scale.js";
import { displayToken } from "../shared/tokens.js";
import { barScale } from "./contribution_bars.js";
import { positionPicker } from "./common.js";

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
  const L = d.n_layers, k = d.k;
  const ids = decodeArray(d.top_ids, "top_ids"), probs = decodeArray(d.top_probs, "top_probs");
  if (ids.shape[0] !== L + 1 || ids.shape[1] !== k || probs.data.length !== ids.data.length) {
    throw new Error(`block budget: top_ids [${ids.shape}] does not match ${L + 1} budgets x ${k}`);
  }
  return { ...d, L, ids: ids.data, probs: probs.data };
}

export function mountBlockBudget(root, store) {
  root.setAttribute("data-rw", "block-budget");
  const err = store.get("_error");
  if (err) { root.appendChild(messageBox(err)); return null; }
  const d = budgetData(store.get("_data"));
  const { L, k, ids, probs, vocab } = d;
  const text = (id) => (vocab[String(id)] === undefined ? `#${id}` : vocab[String(id)]);
  let pmax = 1e-9;
  for (const p of probs) pmax = Math.max(pmax, p);
  const scaleMax = Math.min(1, pmax * 1.05);
  const offs = [];

  const title = h("div", { class: "rw-title" }, h("span", { text: "Block budget: next token at position " + d.position + " " }),
    h("span", { class: "rw-tok", text: displayToken(d.tokens[d.position]) }));
  const slider = h("input", { type: "range", min: "0", max: String(L), step: "1", "aria-label": "block budget k", class: "rw-budget-slider" });
  slider.style.width = "min(420px, 60%)";
  const kLabel = h("span", { class: "rw-budget-k" });
  const kName = h("span", { class: "rw-sub" });
  const bars = h("div", { class: "rw-budget-bars", role: "list", "aria-label": "top next tokens" });
  const tline = h("div", { class: "rw-summary rw-budget-target" });
  const strips = h("div", { class: "rw-budget-strips" });
  const note = h("div", { class: "rw-note" });
  const picker = positionPicker(root, store, d.tokens, d.position, "the block budget");
  root.append(title, picker, h("div", { class: "rw-bar" }, h("span", { text: "k" }), slider, kLabel, kName), bars, tline, strips, note);

  slider.addEventListener("input", () => store.set("budget", Number(slider.value)));

  // p(target) per k and drop-one per block, as clickable strips of cells
  function stripRow(label, n, value, color, tip, onclick, cls) {
    const row = h("div", { style: { display: "flex", alignItems: "center", gap: "6px", margin: "2px 0" } });
    row.appendChild(h("span", { class: "rw-sub", text: label, style: { width: "150px", flex: "0 0 150px" } }));
    const cells = h("div", { class: cls, style: { display: "flex", gap: "1px", flexWrap: "wrap" } });
    const list = [];
    for (let i = 0; i < n; i++) {
      const v = value(i);
      const c = h("div", { title: tip(i), style: { width: "16px", height: "14px", background: color(v), cursor: onclick ? "pointer" : "default", borderRadius: "2px" } });
      if (onclick) c.addEventListener("click", () => onclick(i));
      cells.appendChild(c);
      list.push(c);
    }
    row.appendChild(cells);
    strips.appendChild(row);
    return list;
  }
  const tp = d.target_prob || [];
  const tCells = stripRow(`p(${displayToken(d.target)}) per k`, L + 1, (i) => tp[i], (v) => cssAt("cividis", logT(v)),
    (i) => `k=${i}: p(${displayToken(d.target)}) = ${fmt(tp[i])}, rank ${d.target_rank[i]}`, (i) => store.set("budget", i), "rw-budget-pstrip");
  let dCells = [];
  if (d.drop && d.drop.effect) {
    const eff = d.drop.effect;
    // one block (often block 0) can dwarf the rest: scale to the second largest, clip the giant
    const m = barScale(eff.map((v) => Math.abs(v)));
    dCells = stripRow("drop one block: Δ log p", L, (i) => eff[i], (v) => cssAt("rdbu", Math.max(0, Math.min(1, 0.5 + v / (2 * m)))),
      (i) => `drop block ${i} alone: Δ log p(${displayToken(d.target)}) = ${fmtSigned(eff[i])}; top becomes ${displayToken(d.drop.top[i])}`, null, "rw-budget-drop");
    strips.appendChild(h("div", { class: "rw-note", text: `blue: removing the block lowers the target (it helped); red: raises it. Intact log p = ${fmt(d.drop.full_logprob)}. Scale ±${fmt(m)} (larger effects saturate). p(target) colour: log scale 1e-8..1.` }));
  } else if (d.drop_note) {
    strips.appendChild(h("div", { class: "rw-note", text: d.drop_note }));
  }
  note.textContent = d.repeats_input ? "k=0 mostly predicts the input token itself (tied embeddings), not a bigram table." : "";

  function current() {
    let b = store.get("budget");
    if (b == null || !Number.isFinite(b)) b = L;
    return Math.max(0, Math.min(L, Math.round(b)));
  }

  function draw() {
    const b = current();
    slider.value = String(b);
    root.dataset.rwBudget = String(b);
    kLabel.textContent = `= ${b} / ${L}`;
    kName.textContent = budgetName(b, L);
    bars.replaceChildren();
    let targetShown = false;
    for (let j = 0; j < k; j++) {
      const id = ids[b * k + j], p = probs[b * k + j];
      const isT = id === d.target_id;
      targetShown = targetShown || isT;
      const w = Math.max(0.3, (100 * p) / scaleMax);
      const row = h("div", { class: "rw-budget-row", role: "listitem", style: { display: "flex", alignItems: "center", gap: "6px", height: "18px" } },
        h("span", { class: "rw-sub", text: `#${j + 1}`, style: { width: "24px", textAlign: "right" } }),
        h("span", { class: "rw-tok rw-budget-tok", text: displayToken(text(id)), title: `token id ${id}`, style: { width: "120px", overflow: "hidden", textOverflow: "ellipsis", borderColor: isT ? "var(--rw-sel)" : null } }),
        h("div", { style: { flex: "1 1 auto", maxWidth: "460px", height: "12px", background: "var(--rw-panel)", borderRadius: "2px" } },
          h("div", { style: { width: `${w}%`, height: "100%", background: isT ? "#d6604d" : "#4393c3", borderRadius: "2px" } })),
        h("span", { text: fmt(p), style: { width: "56px", fontVariantNumeric: "tabular-nums" } }));
      if (isT) row.setAttribute("data-rw-target", "1");
      bars.appendChild(row);
    }
    const p = tp[b];
    tline.replaceChildren(h("b", { text: "p(" }), h("span", { class: "rw-tok", text: displayToken(d.target) }), h("b", { text: `) = ${fmt(p)}` }),
      h("span", { class: "rw-sub", text: `  rank ${d.target_rank[b]}${targetShown ? "" : " (not in the top " + k + ")"};  entropy ${fmt(d.entropy[b])} nats;  full model p = ${fmt(tp[L])}` }));
    tCells.forEach((c, i) => { c.style.outline = i === b ? "2px solid var(--rw-sel)" : "none"; c.setAttribute("aria-current", String(i === b)); });
    dCells.forEach((c, i) => { c.style.opacity = i < b ? "1" : "0.35"; });
  }

  draw();
  offs.push(store.on("budget", () => { try { draw(); } catch (e) { console.warn(e); } }));
  return { resize() {}, retheme: draw, destroy() { offs.forEach((f) => f()); } };
}
