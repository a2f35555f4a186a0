// The [layers x heads] heat map of one head score beside the patterns: a menu picks the score, a
// box sorts each layer's heads by it, a click on a cell opens that head.
import { cssAt } from "../../shared/colors.js";
import { checkbox, h, select } from "../../shared/dom.js";
import { fmt } from "../../shared/format.js";
import { legend } from "../../shared/legend.js";

const CELL_W = 16; // a head's column, CSS pixels

const EXPLAINED = {
  previous_token: "previous token: mean α[t, t−1].",
  sink: "sink: mean α[t, 0], attention to the first token.",
  self: "self: mean α[t, t].",
};

/** Tooltip lines of head (layer, head): its label, then every score. */
export function scoreLines(data, layer, head) {
  const H = data.n_heads;
  return [
    `L${layer}H${head}`,
    ...data.kinds.map((kind) => [data.titles[kind] || kind, fmt(data.tables[kind][layer * H + head], 2)]),
  ];
}

/** The shown score kind: the `score_kind` trait when the payload has it, else the first. */
export function shownKind(store, data) {
  const kind = store.get("score_kind");
  return data.kinds.includes(kind) ? kind : data.kinds[0];
}

/**
 * The panel (el) and draw(layer, head): the heat map with the open head outlined. `data` is the
 * view's `_data` with its decoded score `tables`.
 */
export function createScoreGrid(store, data, tooltip) {
  const { n_layers: L, n_heads: H } = data;
  const kinds = data.kinds.map((kind) => [kind, data.titles[kind] || kind]);
  const kindSel = select(kinds, ...store.bind("score_kind", data.kinds[0]), "the head score shown");
  kindSel.classList.add("rw-att-kind");
  kindSel.setAttribute("aria-label", "head score");
  const sortBox = checkbox("sort heads", ...store.bind("sort_heads", false), "order each layer's heads by the score");
  sortBox.classList.add("rw-att-sort");
  const scale = legend("viridis", { mode: "fixed", lo: 0, hi: 1 }, "score");
  const grid = h("div", { class: "rw-att-scores", role: "grid", "aria-label": "head scores, layers by heads" });
  grid.style.gridTemplateColumns = `30px repeat(${H}, ${CELL_W}px)`;
  const note = h("div", { class: "rw-note" });
  const el = h(
    "div",
    { class: "rw-att-side" },
    h("div", { class: "rw-bar" }, h("span", { class: "rw-sub", text: "head score" }), kindSel, sortBox, scale),
    grid,
    note,
  );
  el.style.width = `${Math.max(240, 34 + 17 * H)}px`;

  function draw(openLayer, openHead) {
    const kind = shownKind(store, data);
    const sorted = !!store.get("sort_heads");
    kindSel.value = kind;
    sortBox.input.checked = sorted;
    const values = data.tables[kind];
    const rank = (layer, head) => (Number.isFinite(values[layer * H + head]) ? values[layer * H + head] : -1);
    grid.replaceChildren(h("span"));
    for (let j = 0; j < H; j++)
      grid.appendChild(h("span", { class: "rw-sub rw-att-colhead", text: `${sorted ? j + 1 : j}` }));
    for (let layer = 0; layer < L; layer++) {
      const current = layer === openLayer;
      grid.appendChild(
        h("span", { class: "rw-sub rw-att-rowhead", text: `L${layer}`, "aria-current": String(current) }),
      );
      const order = Array.from({ length: H }, (_, j) => j);
      if (sorted) order.sort((a, b) => rank(layer, b) - rank(layer, a));
      for (const head of order) {
        const cell = h("div", { class: "rw-att-score", role: "gridcell", "data-rw-cell": `${layer},${head}` });
        cell.style.background = cssAt("viridis", values[layer * H + head]);
        cell.setAttribute("aria-selected", String(current && head === openHead));
        cell.addEventListener("click", () => {
          store.set("layer", layer);
          store.set("head", head);
        });
        cell.addEventListener("mousemove", (ev) =>
          tooltip.show(ev.clientX, ev.clientY, [...scoreLines(data, layer, head), "click to open"]),
        );
        cell.addEventListener("mouseleave", () => tooltip.hide());
        grid.appendChild(cell);
      }
    }
    const layout = sorted ? "Each row sorted by score (hover names the head)" : "Columns are heads";
    note.textContent = `${explain(kind)} ${layout}; click a cell to open that head.`;
  }

  function explain(kind) {
    if (kind !== "induction") return EXPLAINED[kind] || "";
    const n = data.n_induction_positions;
    if (!n) return "induction: undefined here, no token of the prompt occurs twice (grey).";
    return (
      "induction: attention to the tokens after earlier copies of the current token, " +
      `mean over the ${n} positions whose token occurred before.`
    );
  }

  return { el, draw };
}
