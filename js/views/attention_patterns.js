// AttentionPatterns: for one layer, a thumbnail of every head's attention pattern; clicking one opens
// its destination × source pattern (token texts on both axes, hover for (destination, source, α),
// the selected destination row highlighted) beside the sortable [layers × heads] head-score heatmap
// (clicking a cell opens that head). `_data` holds the scores; `_patterns` holds the patterns of the
// layers at hand: the kernel sends a layer when `layer` changes, a snapshot embeds every layer that
// fit its size budget.
import { THEMES } from "../shared/colors.js";
import { h, messageBox, select, sizeCanvas } from "../shared/dom.js";
import { fmt } from "../shared/format.js";
import { analysisData, redrawnView } from "../shared/lifecycle.js";
import { promptStrip } from "../shared/prompt.js";
import { clampIndex } from "../shared/scale.js";
import { parseColor, themeColors } from "../shared/theme.js";
import { makeTooltip } from "../shared/tooltip.js";
import { createScoreGrid, scoreLines, shownKind } from "./attention_patterns/head_scores.js";
import { createOpenedHead } from "./attention_patterns/opened_head.js";
import { patternData, rasterCanvas, rasterize, scoreTables } from "./attention_patterns/pattern_data.js";

const THUMB = 84; // thumbnail side, CSS pixels

/** The [r, g, b] ink of attention weights in the theme's colours (the light theme's if unreadable). */
function attentionInk(colours) {
  const { r, g, b } = parseColor(colours.attention) || parseColor(THEMES.light.attention);
  return [r, g, b];
}

export function mountAttentionPatterns(root, store) {
  root.setAttribute("data-rw", "attention-patterns");
  const data = analysisData(root, store, (raw) => ({ ...raw, tables: scoreTables(raw) }));
  if (!data) return null;
  const { T, n_layers: L, n_heads: H, tokens, tables } = data;
  const live = !store.get("_rw_static");
  const tooltip = makeTooltip(root);
  const shownLayer = () => clampIndex(store.get("layer"), 0, L - 1, 0);
  const openHead = () => clampIndex(store.get("head"), -1, H - 1, -1); // -1: none opened
  const selectedRow = () => clampIndex(store.get("position"), 0, T - 1, T - 1);

  // ---- header: layer picker, prompt strip, notes
  const layers = Array.from({ length: L }, (_, l) => [String(l), `layer ${l}`]);
  const layerSel = select(layers, String(shownLayer()), (value) => store.set("layer", Number(value)), "layer");
  layerSel.classList.add("rw-att-layer");
  layerSel.setAttribute("aria-label", "layer");
  const step = (delta) => () => store.set("layer", clampIndex(shownLayer() + delta, 0, L - 1, 0));
  const prev = h("button", { class: "rw-btn", type: "button", text: "◀", title: "previous layer", onclick: step(-1) });
  const next = h("button", { class: "rw-btn", type: "button", text: "▶", title: "next layer", onclick: step(1) });
  const note = h("div", { class: "rw-note rw-att-note" });
  const strip = promptStrip(tokens, (i) => store.set("position", i), {
    title: (i) => `position ${i}: the destination row`,
    label: "destination position",
  });
  const model = data.model_name ? h("span", { class: "rw-sub", text: data.model_name }) : null;
  const title = h("span", { class: "rw-title", text: "Attention patterns" });
  root.append(h("div", { class: "rw-bar" }, title, model, prev, layerSel, next), strip, note);

  // ---- body: thumbnails and the opened head | head scores
  const thumbs = h("div", { class: "rw-att-thumbs" });
  const opened = createOpenedHead({
    tokens,
    tooltip,
    onRow: (t) => store.set("position", t),
    width: () => main.clientWidth || root.clientWidth || 700,
  });
  const main = h("div", { class: "rw-att-main" }, thumbs, opened.el);
  const scoreGrid = createScoreGrid(store, data, tooltip);
  root.appendChild(h("div", { class: "rw-att-body" }, main, scoreGrid.el));

  // decoded patterns, per layer, for the payload object currently in the store
  const decoded = new Map();
  function pattern(l) {
    const payload = (store.get("_patterns") || {})[String(l)];
    if (!payload) return null;
    const hit = decoded.get(l);
    if (hit && hit.payload === payload) return hit.pattern;
    const fresh = patternData(payload, H);
    decoded.set(l, { payload, pattern: fresh });
    return fresh;
  }

  // painted rasters of one layer, per head, size and theme: a click on a row or a thumbnail
  // repaints without walking the weights again
  const rasters = new Map();
  let rastersLayer = -1;
  function raster(l, shown, head, P, colours) {
    if (l !== rastersLayer) {
      rasters.clear();
      rastersLayer = l;
    }
    const key = `${head}:${P}:${colours.attention}:${colours.masked}`;
    let hit = rasters.get(key);
    if (!hit || hit.pattern !== shown) {
      const canvas = rasterCanvas(rasterize(shown, head, P), P, attentionInk(colours), colours.masked);
      hit = { pattern: shown, canvas };
      rasters.set(key, hit);
    }
    return hit.canvas;
  }

  function drawNote(shown) {
    const parts = [];
    if (shown && shown.sparsified) {
      parts.push(
        `sparsified: at most ${shown.k} weights per row are shown (the largest); hover a row for the share it keeps`,
      );
    } else if (shown) parts.push("every weight of the causal triangle (float16)");
    const snapshot = store.get("_patterns_note");
    if (snapshot) parts.push(`snapshot: ${snapshot}`);
    note.textContent = parts.join(" · ");
    root.dataset.rwSparse = String(!!(shown && shown.sparsified));
  }

  function drawThumbs(l, shown, colours) {
    const open = openHead(),
      row = selectedRow(),
      kind = shownKind(store, data);
    const P = Math.min(T, THUMB);
    const side = T <= THUMB ? Math.floor(THUMB / T) * T : THUMB;
    const buttons = [];
    for (let head = 0; head < H; head++) {
      const canvas = h("canvas", { "aria-hidden": "true" });
      const ctx = sizeCanvas(canvas, side, side);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(raster(l, shown, head, P, colours), 0, 0, side, side);
      ctx.fillStyle = colours.sel; // the selected destination row
      ctx.fillRect(0, (row * side) / T + side / T / 2 - 0.5, 3, 1.5);
      const label = h("span", { class: "rw-sub", text: `H${head} · ${fmt(tables[kind][l * H + head], 2)}` });
      const button = h(
        "button",
        { class: "rw-att-thumb", type: "button", "aria-label": `open head ${head}`, "data-rw-head": String(head) },
        canvas,
        label,
      );
      button.setAttribute("aria-pressed", String(head === open));
      button.addEventListener("click", () => store.set("head", head === open ? -1 : head));
      button.addEventListener("mousemove", (ev) => {
        const action = head === open ? "click to close" : "click to open";
        tooltip.show(ev.clientX, ev.clientY, [...scoreLines(data, l, head), action]);
      });
      button.addEventListener("mouseleave", () => tooltip.hide());
      buttons.push(button);
    }
    thumbs.replaceChildren(...buttons);
  }

  function showMissing(l) {
    const why = live
      ? `computing layer ${l} in the kernel…`
      : `layer ${l} was left out of this snapshot by its size budget; in a notebook the kernel computes it`;
    thumbs.replaceChildren(messageBox(why, live ? "info" : "error"));
    opened.clear();
  }

  function draw() {
    const l = shownLayer(),
      open = openHead(),
      row = selectedRow();
    layerSel.value = String(l);
    root.dataset.rwLayer = String(l);
    root.dataset.rwHead = String(open);
    root.dataset.rwPosition = String(row);
    strip.mark(row);
    scoreGrid.draw(l, open);
    let shown = null;
    try {
      shown = pattern(l);
    } catch (e) {
      thumbs.replaceChildren(messageBox(`cannot show layer ${l}: ${e.message || e}`));
      opened.clear();
      return;
    }
    drawNote(shown);
    if (!shown) {
      showMissing(l);
      return;
    }
    const colours = themeColors(root);
    drawThumbs(l, shown, colours);
    const rasterOf = (P) => raster(l, shown, open, P, colours);
    opened.show({ layer: l, head: open, pattern: shown, row, colours, rasterOf });
  }

  draw();
  const traits = ["layer", "head", "position", "_patterns", "_patterns_note", "score_kind", "sort_heads"];
  return redrawnView(root, store, traits, draw);
}
