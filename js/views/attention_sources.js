// AttentionSources: DLA of each attention head × source token to the target at one position, one
// layer at a time (a strip of per-layer totals picks the layer). All layers are in `_data`.
import { cssAt, divergingCell, signedT } from "../shared/colors.js";
import { cellStrip } from "../shared/cellstrip.js";
import { decodeArray } from "../shared/decode.js";
import { h } from "../shared/dom.js";
import { cellNumber, fmt, fmtSigned } from "../shared/format.js";
import { analysisData, redrawnView } from "../shared/lifecycle.js";
import { positionPicker } from "../shared/prompt.js";
import { clampIndex, maxAbs } from "../shared/scale.js";
import { tokenEl, tokenLabel } from "../shared/tokens.js";
import { makeTooltip } from "../shared/tooltip.js";

// columns never narrower than this: room for a source token written vertically, so headers never overlap
const MIN_CELL_W = 14;

/** A colour value for v on a ±m scale whose colour grows as sqrt(|v| / m): small values stay visible. */
function sqrtScaled(v, m) {
  return Math.sign(v) * Math.sqrt(Math.abs(v) * m);
}

export function sourcesData(d) {
  if (!d || d.n_layers == null) throw new Error("no attention data to show (empty payload)");
  const L = d.n_layers,
    H = d.n_heads,
    S = d.tokens.length;
  const dla = decodeArray(d.dla, "dla"),
    alpha = decodeArray(d.alpha, "alpha");
  if (dla.shape.join() !== [L, H, S].join() || alpha.shape.join() !== [L, H, S].join()) {
    throw new Error(`attention sources: dla [${dla.shape}] does not match ${L} layers x ${H} heads x ${S} sources`);
  }
  return { ...d, L, H, S, dla: dla.data, alpha: alpha.data };
}

export function mountAttentionSources(root, store) {
  root.setAttribute("data-rw", "attention-sources");
  const d = analysisData(root, store, sourcesData);
  if (!d) return null;
  const { L, H, S, dla, alpha } = d;
  const tooltip = makeTooltip(root);

  const title = h(
    "div",
    { class: "rw-title" },
    h("span", { text: "Attention to " }),
    tokenEl(d.target),
    h("span", { text: ` at position ${d.position} ` }),
    tokenEl(d.tokens[d.position]),
    h("span", { text: ": DLA per head × source token" }),
  );
  const select = h("select", { class: "rw-select", "aria-label": "layer" });
  for (let l = 0; l < L; l++) {
    const text = `layer ${l}  (attn DLA ${fmtSigned(d.layer_dla[l], 2)})`;
    select.appendChild(h("option", { value: String(l), text }));
  }
  select.addEventListener("change", () => store.set("layer", Number(select.value)));
  const layerMax = maxAbs(d.layer_dla);
  const strip = cellStrip(L, {
    className: "rw-src-layers",
    color: (l) => cssAt("rdbu", signedT(d.layer_dla[l], layerMax)),
    title: (l) => `layer ${l}: attention DLA ${fmtSigned(d.layer_dla[l])} (click to show)`,
    onPick: (l) => store.set("layer", l),
  });
  const grid = h("div", { class: "rw-src-grid", role: "table", "aria-label": "DLA per head and source token" });
  const foot = h("div", { class: "rw-note" });
  const picker = positionPicker(root, store, d.prompt_tokens, d.position, "the attention sources");
  const layerBar = h(
    "div",
    { class: "rw-bar" },
    h("span", { text: "layer" }),
    select,
    h("span", { class: "rw-sub", text: "attention DLA per layer:" }),
    strip,
  );
  root.append(title, picker, layerBar, grid, foot);

  function draw() {
    const l = clampIndex(store.get("layer"), 0, L - 1, 0);
    select.value = String(l);
    root.dataset.rwLayer = String(l);
    strip.mark(l);
    const m = maxAbs(dla.subarray(l * H * S, (l + 1) * H * S));
    const avail = Math.max(200, (root.clientWidth || 800) - 110);
    const cw = Math.max(MIN_CELL_W, Math.min(64, Math.floor(avail / S)));
    const numbers = cw >= 34;
    grid.classList.toggle("rw-vertical", cw < 40);
    grid.style.gridTemplateColumns = `40px repeat(${S}, ${cw}px) 56px`;
    grid.style.setProperty("--rw-src-cw", `${cw}px`);
    grid.replaceChildren(h("span"));
    d.tokens.forEach((tok, j) => {
      grid.appendChild(tokenEl(tok, { class: "rw-src-tok", "data-rw-src-tok": String(j) }));
    });
    grid.appendChild(h("span", { class: "rw-sub rw-src-sumhead", text: "Σ head" }));
    for (let head = 0; head < H; head++) {
      grid.appendChild(h("span", { class: "rw-sub rw-src-head", text: `H${head}` }));
      let sum = 0;
      for (let j = 0; j < S; j++) {
        const k = (l * H + head) * S + j;
        const v = dla[k];
        sum += v;
        const cell = h("div", {
          class: "rw-src-cell",
          "data-rw-src": `${head},${j}`,
          "aria-label": `L${l}H${head} ← ${j} ${tokenLabel(d.tokens[j])}: DLA ${fmtSigned(v)}, α ${fmt(alpha[k])}`,
          text: numbers ? cellNumber(v) : null,
        });
        const colors = divergingCell(sqrtScaled(v, m), m);
        cell.style.background = colors.fill;
        cell.style.color = colors.text;
        grid.appendChild(cell);
      }
      grid.appendChild(h("span", { class: "rw-src-sum", text: fmtSigned(sum, 2) }));
    }
    shown = { l, m };
    const heads = d.layer_dla[l] - d.bias_dla[l];
    foot.textContent =
      `layer ${l}: heads sum to ${fmtSigned(heads)} + output bias ${fmtSigned(d.bias_dla[l])} = attention DLA ` +
      `${fmtSigned(d.layer_dla[l])}.  Red raises the target, blue lowers it (±${fmt(m)}, this layer; the colour ` +
      "grows as √|DLA|, so small values show); hover a cell for α, the attention weight.";
  }

  // the view's own tooltip: source, destination, DLA and the attention weight α
  let shown = null;
  grid.addEventListener("mousemove", (ev) => {
    const cell = ev.target.closest && ev.target.closest("[data-rw-src], [data-rw-src-tok]");
    if (!cell || !shown) return tooltip.hide();
    const dest = `${d.position} ${tokenLabel(d.tokens[d.position])}`;
    if (cell.hasAttribute("data-rw-src-tok")) {
      const j = Number(cell.getAttribute("data-rw-src-tok"));
      return tooltip.show(ev.clientX, ev.clientY, [`source ${j}: ${tokenLabel(d.tokens[j])}`]);
    }
    const [head, j] = cell.getAttribute("data-rw-src").split(",").map(Number);
    const k = (shown.l * H + head) * S + j;
    tooltip.show(ev.clientX, ev.clientY, [
      `L${shown.l}H${head}`,
      ["source", `${j} ${tokenLabel(d.tokens[j])}`],
      ["destination", dest],
      ["DLA → target", fmtSigned(dla[k])],
      ["α (attention weight)", fmt(alpha[k])],
    ]);
  });
  grid.addEventListener("mouseleave", () => tooltip.hide());

  draw();
  return redrawnView(root, store, ["layer"], draw);
}
