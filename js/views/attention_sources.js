// AttentionSources: DLA of each attention head × source token to the target at one position, one
// layer at a time (a strip of per-layer totals picks the layer). All layers are in `_data`.
import { h, messageBox } from "../shared/dom.js";
import { decodeArray } from "../shared/decode.js";
import { cssAt, rgbAt, textOn } from "../shared/colors.js";
import { fmt, fmtSigned } from "../shared/scale.js";
import { displayToken } from "../shared/tokens.js";
import { cellNumber } from "./contribution_bars.js";
import { positionPicker } from "./common.js";

export function sourcesData(d) {
  if (!d || d.n_layers == null) throw new Error("no attention data to show (empty payload)");
  const L = d.n_layers, H = d.n_heads, S = d.tokens.length;
  const dla = decodeArray(d.dla, "dla"), alpha = decodeArray(d.alpha, "alpha");
  if (dla.shape.join() !== [L, H, S].join() || alpha.shape.join() !== [L, H, S].join()) {
    throw new Error(`attention sources: dla [${dla.shape}] does not match ${L} layers x ${H} heads x ${S} sources`);
  }
  return { ...d, L, H, S, dla: dla.data, alpha: alpha.data };
}

export function mountAttentionSources(root, store) {
  root.setAttribute("data-rw", "attention-sources");
  const err = store.get("_error");
  if (err) { root.appendChild(messageBox(err)); return null; }
  const d = sourcesData(store.get("_data"));
  const { L, H, S, dla, alpha } = d;
  const offs = [];

  const title = h("div", { class: "rw-title" }, h("span", { text: "Attention to " }), h("span", { class: "rw-tok", text: displayToken(d.target) }),
    h("span", { text: ` at position ${d.position} ` }), h("span", { class: "rw-tok", text: displayToken(d.tokens[d.position]) }),
    h("span", { text: ": DLA per head × source token" }));
  const select = h("select", { class: "rw-select", "aria-label": "layer" });
  for (let l = 0; l < L; l++) select.appendChild(h("option", { value: String(l), text: `layer ${l}  (attn DLA ${fmtSigned(d.layer_dla[l], 2)})` }));
  select.addEventListener("change", () => store.set("layer", Number(select.value)));
  const strip = h("div", { class: "rw-src-layers", style: { display: "flex", gap: "1px", flexWrap: "wrap" } });
  let lm = 1e-9;
  for (const v of d.layer_dla) lm = Math.max(lm, Math.abs(v));
  const layerCells = d.layer_dla.map((v, l) => {
    const c = h("div", { title: `layer ${l}: attention DLA ${fmtSigned(v)} (click to show)`, style: { width: "14px", height: "14px", background: cssAt("rdbu", 0.5 + v / (2 * lm)), cursor: "pointer", borderRadius: "2px" } });
    c.addEventListener("click", () => store.set("layer", l));
    strip.appendChild(c);
    return c;
  });
  const grid = h("div", { class: "rw-src-grid", role: "table", "aria-label": "DLA per head and source token" });
  const foot = h("div", { class: "rw-note" });
  const picker = positionPicker(root, store, d.prompt_tokens, d.position, "the attention sources");
  root.append(title, picker, h("div", { class: "rw-bar" }, h("span", { text: "layer" }), select, h("span", { class: "rw-sub", text: "attention DLA per layer:" }), strip), grid, foot);

  function current() {
    let l = store.get("layer");
    if (l == null || !Number.isFinite(l)) l = 0;
    return Math.max(0, Math.min(L - 1, Math.round(l)));
  }

  function draw() {
    const l = current();
    select.value = String(l);
    root.dataset.rwLayer = String(l);
    layerCells.forEach((c, i) => { c.style.outline = i === l ? "2px solid var(--rw-sel)" : "none"; });
    let m = 1e-9;
    for (let k = l * H * S; k < (l + 1) * H * S; k++) m = Math.max(m, Math.abs(dla[k]));
    const avail = Math.max(200, (root.clientWidth || 800) - 110);
    const cw = Math.max(10, Math.min(64, Math.floor(avail / S)));
    const vertical = cw < 40;
    const numbers = cw >= 34;
    grid.style.cssText = `display: grid; grid-template-columns: 40px repeat(${S}, ${cw}px) 56px; gap: 1px; align-items: end; overflow-x: auto; max-width: 100%;`;
    grid.replaceChildren(h("span"));
    for (let j = 0; j < S; j++) {
      grid.appendChild(h("span", { class: "rw-tok rw-src-tok", text: displayToken(d.tokens[j]), title: `source ${j}: ${displayToken(d.tokens[j])}`,
        style: { fontSize: "10px", overflow: "hidden", textOverflow: "ellipsis", maxHeight: "80px", maxWidth: vertical ? null : `${cw}px`, writingMode: vertical ? "vertical-rl" : null, justifySelf: "center" } }));
    }
    grid.appendChild(h("span", { class: "rw-sub", text: "Σ head", style: { textAlign: "right" } }));
    for (let hh = 0; hh < H; hh++) {
      grid.appendChild(h("span", { class: "rw-sub", text: `H${hh}`, style: { textAlign: "right", paddingRight: "4px" } }));
      let sum = 0;
      for (let j = 0; j < S; j++) {
        const k = (l * H + hh) * S + j;
        const v = dla[k];
        sum += v;
        const t = 0.5 + v / (2 * m);
        const cell = h("div", { class: "rw-src-cell", title: `L${l}H${hh} ← ${j} ${displayToken(d.tokens[j])}\nDLA ${fmtSigned(v)}\nα ${fmt(alpha[k])}`,
          style: { height: "18px", background: cssAt("rdbu", t), color: textOn(rgbAt("rdbu", t)), fontSize: "10px", textAlign: "center", lineHeight: "18px" } });
        if (numbers) cell.textContent = cellNumber(v);
        grid.appendChild(cell);
      }
      grid.appendChild(h("span", { text: fmtSigned(sum, 2), style: { textAlign: "right", fontVariantNumeric: "tabular-nums", fontSize: "11px" } }));
    }
    foot.textContent = `layer ${l}: heads sum to ${fmtSigned(d.layer_dla[l] - d.bias_dla[l])} + output bias ${fmtSigned(d.bias_dla[l])} = attention DLA ${fmtSigned(d.layer_dla[l])}.  Red raises the target, blue lowers it (±${fmt(m)}, this layer); hover a cell for α, the attention weight.`;
  }

  draw();
  offs.push(store.on("layer", () => { try { draw(); } catch (e) { console.warn(e); } }));
  let lastW = root.clientWidth;
  return { resize() { if (root.clientWidth !== lastW) { lastW = root.clientWidth; draw(); } }, retheme: draw, destroy() { offs.forEach((f) => f()); } };
}
