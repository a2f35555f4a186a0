// resid_widgets front end: one ESM bundle; render() dispatches on the `_rw_view` trait.
import { h, ensureStyle, messageBox } from "./shared/dom.js";
import { createStore } from "./shared/store.js";
import { detectTheme, watchTheme } from "./shared/theme.js";
import { mountStreamGrid } from "./views/stream_grid.js";
import { mountContributionBars } from "./views/contribution_bars.js";
import { mountLogitLens } from "./views/logit_lens.js";
import { mountDashboard } from "./views/dashboard.js";
import { mountBlockBudget } from "./views/block_budget.js";
import { mountAttentionSources } from "./views/attention_sources.js";
import { mountAttentionPatterns } from "./views/attention_patterns.js";
import { mountPatchingGrid } from "./views/patching_grid.js";
import { mountCompare } from "./views/compare.js";
import { guard } from "./shared/lifecycle.js";
import { downloadButton } from "./shared/download.js";

export const VIEWS = {
  "stream-grid": mountStreamGrid,
  "contribution-bars": mountContributionBars,
  "logit-lens": mountLogitLens,
  dashboard: mountDashboard,
  "block-budget": mountBlockBudget,
  "attention-sources": mountAttentionSources,
  "attention-patterns": mountAttentionPatterns,
  "patching-grid": mountPatchingGrid,
  compare: mountCompare,
};

function render({ model, el }) {
  const t0 = performance.now();
  ensureStyle(el);
  const root = h("div", { class: "rw-root", tabindex: "-1" });
  el.appendChild(root);
  const kind = model.get("_rw_view") || "stream-grid";
  root.setAttribute("data-rw", kind);
  const store = createStore(model);
  let view = null;

  const applyTheme = () => {
    const dark = detectTheme(el.parentElement || el) === "dark";
    const changed = root.classList.contains("rw-dark") !== dark;
    root.classList.toggle("rw-dark", dark);
    return changed;
  };

  function mount() {
    if (view && view.destroy) view.destroy();
    root.replaceChildren();
    const f = VIEWS[kind];
    if (!f) {
      root.appendChild(messageBox(`resid_widgets: unknown view ${JSON.stringify(kind)}`));
      return;
    }
    view = guard(root, () => f(root, store, {}));
    // after the view, which may replace root's children while it mounts
    root.appendChild(downloadButton(root, kind));
    // a long prompt's first payload holds the lens of some positions: the kernel sends the rest (a
    // new _meta remounts the view, which drops this note)
    const partial = (model.get("_meta") || {}).lens_positions;
    if (partial && !model.get("_rw_static")) {
      model.send({ type: "lens" });
      const [start, stop] = partial;
      const text = `lens of positions ${start}\u2013${stop - 1} shown; the kernel is computing the others\u2026`;
      root.appendChild(h("div", { class: "rw-pending", role: "status", "data-rw-part": "lens-pending", text }));
    }
  }

  applyTheme();
  // the layout classes first: the views size their canvases from the columns they get
  root.classList.toggle("rw-narrow", (root.clientWidth || 1000) < 760);
  root.classList.toggle("rw-wide", (root.clientWidth || 1000) >= 1100);
  // the output area's width is known only once el is in the page
  mount();
  root.dataset.rwRenderMs = String(Math.round((performance.now() - t0) * 10) / 10);

  let raf = 0,
    lastW = root.clientWidth;
  const ro =
    typeof ResizeObserver !== "undefined"
      ? new ResizeObserver(() => {
          cancelAnimationFrame(raf);
          raf = requestAnimationFrame(() => {
            const w = root.clientWidth;
            const layoutChanged =
              root.classList.toggle("rw-narrow", w < 760) !== lastW < 760 ||
              root.classList.toggle("rw-wide", w >= 1100) !== lastW >= 1100;
            if ((layoutChanged || Math.abs(w - lastW) >= 2) && view && view.resize) {
              lastW = w;
              view.resize();
            }
          });
        })
      : null;
  ro && ro.observe(root);
  const unwatch = watchTheme(() => {
    if (applyTheme() && view && view.retheme) view.retheme();
  });
  const offData = ["_meta", "_arrays", "_data", "_error"].map((n) => store.on(n, () => mount()));

  return () => {
    ro && ro.disconnect();
    unwatch();
    offData.forEach((f) => f());
    if (view && view.destroy) view.destroy();
    store.destroy();
  };
}

export default { render };
