// LogitLens: rows = states, columns = positions; colour = probability of the top token (or of the
// target, or of the actual next token); cell text = top token; hover = top-k.
import { h, select } from "../shared/dom.js";
import { makeTooltip } from "../shared/tooltip.js";
import { createCellGrid } from "../shared/cellgrid.js";
import { colorize, NAN_RGB_UNDER_TEXT, textOn } from "../shared/colors.js";
import { fmt } from "../shared/format.js";
import { legend } from "../shared/legend.js";
import { afterPaint } from "../shared/lifecycle.js";
import { normalizerFor } from "../shared/scale.js";
import { bareToken, canvasToken, tokenEl, tokenLabel } from "../shared/tokens.js";
import { lensData, lensToggle } from "./lens_toggle.js";

export function mountLogitLens(root, store, opts = {}) {
  root.setAttribute("data-rw", "logit-lens");
  const { C, T, labels, tokens, token_ids } = store.meta();
  const tooltip = opts.tooltip || makeTooltip(opts.tooltipRoot || root);
  const offs = [];
  // the current lens's data (logit or tuned, lens_toggle.js); reloaded when `lens` changes
  let L, K, ids, probs, nextProb;
  const load = () => {
    L = lensData(store);
    ({ K, ids, probs, nextProb } = L);
    root.setAttribute("data-rw-lens", L.lens);
  };
  load();

  const colorSel = select(
    [
      ["top", "p(top token)"],
      ["target", "p(target)"],
      ["next", "p(actual next token)"],
    ],
    ...store.bind("lens_color", "top"),
    "what the colour shows",
  );
  const legendSlot = h("span");
  const title = h("span", { class: "rw-title" });
  const setTitle = () => (title.textContent = opts.title ? `${opts.title} (${L.name.toLowerCase()})` : L.name);
  setTitle();
  const toggle = lensToggle(store);
  const bar = h("div", { class: "rw-bar" }, title, toggle, colorSel, legendSlot);
  root.append(bar);

  let values = null,
    rgba = null;
  const grid = createCellGrid(root, {
    C,
    T,
    rowLabels: labels,
    tokens,
    tooltip,
    ariaLabel: "logit lens: states by positions",
    selected: store.get("selected"),
    // short prompts get rows tall enough to print the top token in every cell
    layout: {
      maxCellW: 110,
      textMinW: 26,
      maxCellH: 18,
      minCellH: 5,
      maxHeight: T <= 32 ? Math.max(480, C * 13) : 480,
      ...(opts.layout || {}),
    },
    onSelect: (sel) => store.set("selected", sel),
    onActivate: ([c, i]) => store.set("target", store.vocab(ids[(c * T + i) * K])),
    tooltipLines: (c, i) => tip(c, i),
    overlay: (ctx, lay, cols) => textOverlay(ctx, lay, cols),
    searchSlot: bar,
  });
  const info = h("div", { class: "rw-chips", "data-rw-part": "topk" });
  root.append(
    info,
    h("div", {
      class: "rw-note",
      text:
        "click a cell to see its top tokens; click a token to make it the target " +
        "(double-click or Enter on a cell: its top token)",
    }),
  );

  /** The top token in each visible cell (columns i0..i1-1), when cells are wide and tall enough. */
  function textOverlay(ctx, lay, { i0, i1 }) {
    if (!lay.showText) return;
    const size = Math.min(11, lay.cellH - 3);
    ctx.font = `${size}px ui-monospace, SFMono-Regular, Menlo, monospace`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const maxChars = Math.max(1, Math.floor((lay.cellW - 3) / (size * 0.62)));
    for (let c = 0; c < C; c++)
      for (let i = i0; i < i1; i++) {
        const k = c * T + i;
        ctx.fillStyle = textOn([rgba[4 * k], rgba[4 * k + 1], rgba[4 * k + 2]]);
        ctx.fillText(
          canvasToken(store.vocab(ids[k * K]), maxChars),
          i * lay.cellW + lay.cellW / 2,
          c * lay.cellH + lay.cellH / 2 + 0.5,
        );
      }
  }

  function tip(c, i) {
    const k = c * T + i;
    const lines = [`${labels[c]} @ ${i}  ${tokenLabel(tokens[i])}`];
    for (let j = 0; j < Math.min(K, 10); j++)
      lines.push([tokenLabel(store.vocab(ids[k * K + j])), fmt(probs[k * K + j])]);
    const t = store.target(store.get("target"));
    const logp = L.logp(t);
    if (logp) lines.push([`target ${tokenLabel(t.text)}`, fmt(Math.exp(logp[k]))]);
    if (nextProb && i + 1 < T) lines.push([`next ${tokenLabel(tokens[i + 1])}`, fmt(nextProb[k])]);
    if (L.kl) lines.push(["KL to output (nats)", fmt(L.kl[k])]);
    return lines;
  }

  function recolor() {
    const mode = store.get("lens_color") || "top";
    colorSel.value = mode;
    values = new Float32Array(C * T);
    let label = "p(top token)";
    if (mode === "top") for (let k = 0; k < C * T; k++) values[k] = probs[k * K];
    else if (mode === "next" && nextProb) {
      values.set(nextProb);
      label = "p(actual next token)";
    } else {
      const t = store.target(store.get("target")) || store.target();
      const logp = L.logp(t);
      values.fill(NaN);
      if (logp) for (let k = 0; k < C * T; k++) values[k] = Math.exp(logp[k]);
      label = t ? `p(${tokenLabel(t.text)})` : "p(target)";
    }
    const norm = normalizerFor({ values, fixed: [0, 1] }, C, T);
    rgba = colorize(values, C, T, norm, "cividis", NAN_RGB_UNDER_TEXT);
    grid.setColors(rgba);
    legendSlot.replaceChildren(legend("cividis", norm, label));
  }

  function drawInfo() {
    const [c, i] = grid.selected;
    const k = c * T + i;
    const cur = store.get("target");
    info.replaceChildren(
      h("span", { class: "rw-sub", text: `${labels[c]} @ ${i} ` }),
      tokenEl(tokens[i]),
      h("span", { class: "rw-sub", text: " → " }),
    );
    for (let j = 0; j < K; j++) {
      const text = store.vocab(ids[k * K + j]);
      const b = h(
        "button",
        { class: "rw-chip", type: "button", title: "make this token the target" },
        bareToken(text),
        ` ${fmt(probs[k * K + j], 2)}`,
      );
      b.setAttribute("aria-pressed", String(text === cur));
      const pre = !!store.findTarget(text);
      b.setAttribute("data-rw-precomputed", String(pre));
      if (!pre)
        b.title = store.isStatic()
          ? "not precomputed in this snapshot (needs the kernel)"
          : "make this token the target (asks the kernel)";
      b.addEventListener("click", () => {
        if (store.findTarget(text)) store.set("target", text);
        else {
          store.ensureTarget(text, { onWait: (note) => (b.title = note) }).then(
            (t) => store.set("target", t),
            (e) => {
              b.title = String(e.message || e);
              b.replaceChildren(bareToken(text), `: ${e.message || e}`);
            },
          );
        }
      });
      info.appendChild(b);
    }
    if (i + 1 < T && token_ids) {
      const p = nextProb ? " p=" + fmt(nextProb[k]) : "";
      info.appendChild(h("span", { class: "rw-sub", text: `  actual next: ${tokenLabel(tokens[i + 1])}${p}` }));
    }
  }

  const markSelected = (sel) => root.setAttribute("data-rw-selected", `${sel[0]},${sel[1]}`);
  recolor();
  grid.full();
  drawInfo();
  markSelected(grid.selected);
  const infoLater = afterPaint(drawInfo);
  offs.push(
    store.on("selected", (sel) => {
      if (Array.isArray(sel)) {
        grid.select(sel, false);
        markSelected(sel);
        infoLater();
      }
    }),
  );
  offs.push(
    store.on("lens_color", () => {
      recolor();
      grid.full();
    }),
  );
  const relens = () => {
    load();
    setTitle();
    if (toggle) toggle.setValue(L.lens);
    recolor();
    grid.full();
    drawInfo();
  };
  offs.push(store.on("lens", relens), store.on("_lenses", relens));
  offs.push(
    store.on("target", () => {
      if ((store.get("lens_color") || "top") === "target") {
        recolor();
        grid.full();
      }
      drawInfo();
    }),
  );
  return {
    resize() {
      grid.full();
    },
    retheme() {
      grid.full();
    },
    grid,
    destroy() {
      offs.forEach((f) => f());
    },
  };
}
