// Dashboard: the three views in one root, linked through the shared store (selection, target),
// so the linking also works in a static snapshot without a kernel. The bars follow the selected
// position.
import { h } from "../shared/dom.js";
import { makeTooltip } from "../shared/tooltip.js";
import { mountStreamGrid } from "./stream_grid.js";
import { mountContributionBars } from "./contribution_bars.js";
import { mountLogitLens } from "./logit_lens.js";
import { guard } from "../shared/lifecycle.js";
import { promptStrip } from "../shared/prompt.js";
import { createEditPanel } from "./edit_panel.js";

export function mountDashboard(root, store) {
  root.setAttribute("data-rw", "dashboard");
  const meta = store.meta();
  const tooltip = makeTooltip(root);
  const offs = [];
  const prompt = promptStrip(
    meta.tokens,
    (i) => {
      const sel = store.get("selected") || [meta.C - 1, i];
      store.set("selected", [sel[0], i]);
    },
    { label: "prompt tokens", title: (i) => `position ${i} (id ${meta.token_ids ? meta.token_ids[i] : "?"}): select` },
  );
  root.append(
    h(
      "div",
      { class: "rw-dash-head" },
      h("span", { class: "rw-title", text: `resid_widgets — ${meta.model_name || "model"}` }),
      h("span", { class: "rw-sub", text: `${meta.n_layers} layers · d_model ${meta.d_model} · ${meta.T} tokens` }),
    ),
    prompt,
  );
  // compact (about 900 px tall): the grid across, then bars | lens | vector pane side by side
  // (stacked on narrow outputs); the pane folds away
  const gridRoot = h("div", { class: "rw-view rw-full" });
  const barsRoot = h("div", { class: "rw-view" });
  const lensRoot = h("div", { class: "rw-view" });
  const paneRoot = h("div", { class: "rw-view rw-dash-pane" });
  // the vector pane and the edit panel share the third column
  const sideRoot = h("div", { class: "rw-dash-side" }, paneRoot);
  root.append(h("div", { class: "rw-dash" }, gridRoot, barsRoot, lensRoot, sideRoot));
  // 3 px rows keep SmolLM2's 61 states under 200 px; the lens below has the taller rows
  const compact = { maxHeight: 190, minCellH: 3 };
  const views = [
    guard(gridRoot, () => mountStreamGrid(gridRoot, store, { tooltip, paneRoot, layout: compact })),
    guard(barsRoot, () => mountContributionBars(barsRoot, store, { tooltip, follow: "selected" })),
    // short prompts keep rows tall enough for the top token's text, in a box that scrolls
    guard(lensRoot, () => mountLogitLens(lensRoot, store, { tooltip, layout: meta.T <= 32 ? {} : { maxHeight: 320 } })),
  ].filter(Boolean);
  // edit mode: its own module, under the vector pane
  const editRoot = h("div", { class: "rw-view" });
  sideRoot.appendChild(editRoot);
  const edit = guard(editRoot, () => createEditPanel(editRoot, store, meta, tooltip));
  if (edit) views.push(edit);
  // `position` is the selected column, both ways (the bars explain it; Python reads dash.position)
  function onSelected(sel) {
    if (!Array.isArray(sel)) return;
    prompt.mark(sel[1]);
    if (store.get("position") !== sel[1]) store.set("position", sel[1]);
  }
  function onPosition(p) {
    const sel = store.get("selected") || [meta.C - 1, p];
    if (Number.isInteger(p) && p >= 0 && p < meta.T && sel[1] !== p) store.set("selected", [sel[0], p]);
  }
  onSelected(store.get("selected"));
  offs.push(store.on("selected", onSelected), store.on("position", onPosition));
  return {
    resize() {
      views.forEach((v) => v.resize && v.resize());
    },
    retheme() {
      views.forEach((v) => v.retheme && v.retheme());
    },
    destroy() {
      offs.forEach((f) => f());
      views.forEach((v) => v.destroy && v.destroy());
    },
  };
}
