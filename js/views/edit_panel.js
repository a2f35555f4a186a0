// The Dashboard's edit mode: the selected grid row's component (one of its heads, or an MLP neuron)
// can be zeroed, have the target's direction projected out, or be patched from the second prompt;
// the edit goes into the synced `edits` list and the kernel re-runs the prompt (the views then show
// the edited run, the bars with the original as a ghost outline). The list has undo. Offline, zeroing
// a whole attention or MLP layer shows its precomputed effect (`_whatif`); other edits need the kernel.
import { decodeArray } from "../shared/decode.js";
import { h, messageBox } from "../shared/dom.js";
import { safely } from "../shared/lifecycle.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { tokenLabel } from "../shared/tokens.js";
import { drawPairedBars } from "./compare/paired_bars.js";

const NEEDS_KERNEL = "needs the kernel: this offline snapshot holds only the effect of zeroing each whole layer";

/** An edit dict of the `edits` trait (see resid_widgets/views/edit_mode.py). */
export function editSpec(kind, component, { head = null, neuron = null, positions = null, target = null } = {}) {
  const spec = { kind, component, head, neuron, positions };
  if (kind === "project_out") spec.direction = { target };
  return spec;
}

export function createEditPanel(root, store, meta, tooltip) {
  const { labels, kinds, T } = meta;
  const panel = h("div", { class: "rw-pane rw-edit", "data-rw": "edit-panel" });
  const title = h("div", { class: "rw-title" });
  const headSel = h("select", { class: "rw-select", "aria-label": "head", title: "edit one head only" });
  const neuron = h("input", { type: "text", class: "rw-edit-neuron", placeholder: "neuron #", title: "one neuron" });
  const buttons = h("div", { class: "rw-bar" });
  const list = h("div", { class: "rw-chips", "data-rw": "edit-list" });
  const status = h("div", { class: "rw-note" });
  const whatif = h("div", { class: "rw-edit-whatif" });
  panel.append(title, buttons, list, status, whatif);
  root.appendChild(panel);
  const isStatic = () => store.isStatic();

  function current() {
    const [c, p] = store.get("selected") || [labels.length - 1, T - 1];
    return { c, p, label: labels[c], kind: kinds[c] };
  }

  function options() {
    const { kind } = current();
    const out = {};
    if (kind === "attn" && headSel.value !== "") out.head = Number(headSel.value);
    if (kind === "mlp" && neuron.value.trim() !== "") out.neuron = Number(neuron.value);
    return out;
  }

  function add(spec) {
    status.textContent = "";
    if (isStatic()) {
      showWhatIf(spec);
      return;
    }
    store.set("edits", [...(store.get("edits") || []), spec]);
    status.textContent = "re-running the prompt with the edits…";
  }

  function button(text, tip, attr, make) {
    const b = h("button", { class: "rw-btn", type: "button", text, title: tip });
    b.setAttribute("data-rw-edit", attr);
    b.addEventListener("click", () => add(make()));
    return b;
  }

  function draw() {
    const { p, label, kind } = current();
    const editable = kind === "attn" || kind === "mlp" || kind === "embed";
    title.replaceChildren(
      h("span", { text: "Edit " }),
      h("b", { text: label }),
      h("span", { class: "rw-sub", text: `  (selected row; position ${p} ${tokenLabel(meta.tokens[p])})` }),
    );
    panel.dataset.rwComponent = label;
    headSel.replaceChildren(h("option", { value: "", text: "all heads" }));
    for (let k = 0; k < (meta.n_heads || 0); k++) headSel.appendChild(h("option", { value: String(k), text: `H${k}` }));
    const t = store.target(store.get("target")) || store.target();
    const items = [];
    if (kind === "attn" && meta.n_heads) items.push(headSel);
    if (kind === "mlp") items.push(neuron);
    if (editable) {
      items.push(
        button("zero", "zero what it writes, every position", "zero", () => editSpec("zero", label, options())),
        button("zero here", `zero it at position ${p} only`, "zero-here", () =>
          editSpec("zero", label, { ...options(), positions: [p] }),
        ),
      );
      if (t && !options().head && !options().neuron)
        items.push(
          button(
            `project out ${tokenLabel(t.text)}`,
            "remove what it writes along the target's unembedding",
            "project",
            () => editSpec("project_out", label, { target: t.id }),
          ),
        );
      if (store.get("_can_patch"))
        items.push(
          button("patch", "take its output from the second prompt (source=)", "patch", () =>
            editSpec("patch", label, options()),
          ),
          button("patch here", `patch it from the second prompt at position ${p} only`, "patch-here", () =>
            editSpec("patch", label, { ...options(), positions: [p] }),
          ),
        );
    } else items.push(h("span", { class: "rw-sub", text: "select a grid row of an attention, MLP or embedding" }));
    buttons.replaceChildren(...items);

    const edits = store.get("edits") || [];
    const names = store.get("_edit_names") || [];
    list.replaceChildren(h("span", { class: "rw-sub", text: edits.length ? "edits:" : "no edits (original run)" }));
    edits.forEach((spec, i) => {
      const chip = h("button", { class: "rw-chip", type: "button", text: `${names[i] || spec.kind} ×` });
      chip.title = "remove this edit";
      chip.setAttribute("data-rw-edit-index", String(i));
      chip.addEventListener("click", () => remove(i));
      list.appendChild(chip);
    });
    if (edits.length) {
      const undo = h("button", { class: "rw-btn", type: "button", text: "undo", title: "remove the last edit" });
      undo.setAttribute("data-rw-edit", "undo");
      undo.addEventListener("click", () => remove(edits.length - 1));
      list.appendChild(undo);
    }
    const err = store.get("_edit_error");
    if (err) status.replaceChildren(messageBox(err));
    panel.dataset.rwEdits = String(edits.length);
  }

  function remove(i) {
    if (isStatic()) {
      status.textContent = NEEDS_KERNEL;
      return;
    }
    const edits = (store.get("edits") || []).slice();
    edits.splice(i, 1);
    store.set("edits", edits);
  }

  /** Offline: a precomputed zero-ablation, else "needs the kernel". */
  function showWhatIf(spec) {
    const w = store.get("_whatif") || {};
    const effect = w.effects && w.effects[spec.component];
    const whole = spec.kind === "zero" && spec.head == null && spec.neuron == null && spec.positions == null;
    if (!whole || !effect) {
      whatif.replaceChildren();
      status.textContent = NEEDS_KERNEL;
      panel.dataset.rwWhatif = "";
      return;
    }
    const base = store.findTarget(String(w.target)) ? store.target(String(w.target)) : null;
    const zeroed = decodeArray(effect.dla, "what-if DLA").data;
    const rows = labels.map((label, c) => ({
      label,
      clean: base ? base.dla[c * T + w.position] : NaN,
      corrupt: zeroed[c],
    }));
    const logit = base ? base.logit[w.position] : NaN;
    const logprob = base ? base.logprob[w.position] : NaN;
    const chart = h("div");
    whatif.replaceChildren(
      h("div", {
        class: "rw-summary",
        text:
          `zero ${spec.component}: logit of ${tokenLabel(w.text)} at position ${w.position} ${fmt(logit)} → ` +
          `${fmt(effect.logit)} (${fmtSigned(effect.logit - logit)}), log p ${fmt(logprob)} → ${fmt(effect.logprob)}`,
      }),
      chart,
    );
    drawPairedBars(chart, rows, {
      width: Math.max(300, Math.floor(root.clientWidth || 600) - 20),
      unit: `DLA to ${tokenLabel(w.text)}`,
      current: -1,
      tooltip,
      onPick: () => {},
      sides: [
        ["clean", "original"],
        ["corrupt", `${spec.component} zeroed`],
      ],
    });
    panel.dataset.rwWhatif = spec.component;
  }

  draw();
  const offs = ["selected", "edits", "_edit_names", "_edit_error", "target"].map((n) => store.on(n, safely(draw)));
  return {
    el: panel,
    draw,
    destroy() {
      offs.forEach((off) => off());
    },
  };
}
