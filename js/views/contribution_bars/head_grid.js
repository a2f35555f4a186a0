// Per-head contributions under the bars: a layers x (heads + rest) heat map on a canvas, from the
// target's embedded per-head values or, live, from the kernel.
import { divergingCell } from "../../shared/colors.js";
import { h, messageBox, sizeCanvas } from "../../shared/dom.js";
import { cellNumber, fmt, fmtSigned } from "../../shared/format.js";
import { maxAbs } from "../../shared/scale.js";
import { themeColors } from "../../shared/theme.js";

const LABEL_W = 60;
const HEADER_H = 14;

/**
 * The panel (el) and show(target, position, method) (target null or per-head off: empty).
 * root gives the width and theme; onArrive() runs when the kernel's answer has arrived.
 */
export function createHeadPanel(store, root, tooltip, { onArrive }) {
  const el = h("div", { class: "rw-heads" });
  let token = 0;

  function show(t, p, method) {
    const my = ++token;
    if (!t || !store.get("per_head")) {
      el.replaceChildren();
      return;
    }
    const entry = t.heads[String(p)];
    if (entry && entry[method]) {
      paint(entry[method], method);
    } else if (entry && entry.error) {
      el.replaceChildren(messageBox(`per-head values are not available: ${entry.error}`, "info"));
    } else {
      el.replaceChildren(h("div", { class: "rw-note", text: "per-head values: asking the kernel…" }));
      const onWait = (note) =>
        my === token && el.replaceChildren(h("div", { class: "rw-note", text: `per-head values: ${note}` }));
      store.ensureHeads(t.text, p, { onWait }).then(
        () => my === token && onArrive(),
        (e) =>
          my === token &&
          el.replaceChildren(messageBox(`per-head values for position ${p}: ${e.message || e}`, "info")),
      );
    }
  }

  /** arr: decoded [L, H+1] values (the last column: output bias and any non-head part). */
  function paint(arr, method) {
    const [L, H1] = arr.shape;
    const width = Math.max(200, Math.min(root.clientWidth || 400, LABEL_W + H1 * 40));
    const cw = Math.max(6, Math.floor((width - LABEL_W) / H1));
    const ch = L > 40 ? 8 : 14;
    const canvas = h("canvas", { "aria-label": "per-head contributions" });
    const g = sizeCanvas(canvas, LABEL_W + cw * H1, HEADER_H + ch * L);
    const m = maxAbs(arr.data);
    const { fg } = themeColors(root);
    const dark = !!root.closest(".rw-dark");
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "middle";
    g.fillStyle = fg;
    g.textAlign = "center";
    for (let j = 0; j < H1; j++) {
      if (cw >= 14 || j % 4 === 0 || j === H1 - 1)
        g.fillText(j === H1 - 1 ? "rest" : `h${j}`, LABEL_W + j * cw + cw / 2, 7);
    }
    for (let l = 0; l < L; l++) {
      const y = HEADER_H + l * ch;
      g.fillStyle = fg;
      g.textAlign = "right";
      if (ch >= 10 || l % 4 === 0) g.fillText(`attn.${l}`, LABEL_W - 4, y + ch / 2);
      for (let j = 0; j < H1; j++) {
        const v = arr.data[l * H1 + j];
        const cell = divergingCell(v, m, dark);
        g.fillStyle = cell.fill;
        g.fillRect(LABEL_W + j * cw, y, cw - 1, ch - 1);
        if (cw >= 34 && ch >= 12) {
          g.fillStyle = cell.text;
          g.textAlign = "center";
          g.fillText(cellNumber(v), LABEL_W + j * cw + cw / 2, y + ch / 2);
        }
      }
    }
    canvas.addEventListener("mousemove", (ev) => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor((ev.clientX - r.left - LABEL_W) / cw);
      const l = Math.floor((ev.clientY - r.top - HEADER_H) / ch);
      if (j < 0 || l < 0 || j >= H1 || l >= L) {
        tooltip.hide();
        return;
      }
      const what = j === H1 - 1 ? "rest (output bias, non-head part)" : "head " + j;
      tooltip.show(ev.clientX, ev.clientY, [
        `layer ${l} ${what}`,
        [method === "dla" ? "DLA" : "Δ log p", fmtSigned(arr.data[l * H1 + j])],
      ]);
    });
    canvas.addEventListener("mouseleave", () => tooltip.hide());
    const additive = method === "logprob" ? " — head log-prob scores are not additive" : "";
    const note = `per head (blue lowers, red raises the target; ±${fmt(m)})${additive}`;
    el.replaceChildren(h("div", { class: "rw-note", text: note }), canvas);
  }

  return { el, show };
}
