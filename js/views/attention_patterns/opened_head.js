// The opened head of AttentionPatterns: its destination x source pattern on a canvas, with the
// token texts on both axes where they fit (indices otherwise) and the selected destination row
// framed. Hover shows (destination, source, α); a click or ↑/↓ picks the destination row.
import { h, sizeCanvas } from "../../shared/dom.js";
import { fmt } from "../../shared/format.js";
import { keepKeys } from "../../shared/keys.js";
import { hitCell, niceStep } from "../../shared/scale.js";
import { MONO, SANS } from "../../shared/style.js";
import { canvasToken, tokenEl, tokenLabel } from "../../shared/tokens.js";

const FULL_MAX = 640; // largest side of the opened pattern, CSS pixels
const TOKEN_CHARS = 12; // token texts on the axes are clipped to this many characters
const MIN_NAMED_CELL = 9; // smallest cell, CSS pixels, that gets the token texts on its axes

/**
 * The panel (el), show(...) and clear(). `tokens`: the prompt's token texts; onRow(t) picks a
 * destination row; width() gives the pixels the panel may use.
 */
export function createOpenedHead({ tokens, tooltip, onRow, width }) {
  const T = tokens.length;
  const el = h("div", { class: "rw-att-full" });
  const canvas = h("canvas", { class: "rw-att-canvas", tabindex: "0", role: "img" });
  let geometry = null; // where the cells are, and what they show: {labelW, header, ppt, pattern, layer, head, row}

  function clear() {
    geometry = null;
    el.replaceChildren();
  }

  /**
   * Paint head `head` of `pattern` (layer `layer`) with destination row `row` selected; colours
   * from the theme (themeColors), `rasterOf(P)` the head's raster canvas of P x P pixels.
   */
  function show({ layer, head, pattern, row, colours, rasterOf }) {
    geometry = null;
    if (head < 0) {
      el.replaceChildren(
        h("div", {
          class: "rw-note",
          text: "click a thumbnail (or a cell of the head scores) to open its destination × source pattern",
        }),
      );
      return;
    }
    const avail = Math.max(120, width() - 4);
    const probe = canvas.getContext("2d");
    probe.font = `11px ${MONO}`;
    let textW = 0;
    for (const s of tokens) textW = Math.max(textW, Math.ceil(probe.measureText(canvasToken(s, TOKEN_CHARS)).width));
    const named = T <= 96 && Math.floor((avail - textW - 40) / T) >= MIN_NAMED_CELL; // token texts fit on both axes
    const labelW = named ? textW + 34 : 34; // token text and index
    const header = named ? Math.min(96, textW + 10) : 18;
    const room = Math.min(FULL_MAX, avail - labelW);
    const cell = T <= room ? Math.max(1, Math.min(28, Math.floor(room / T))) : 0; // 0: several tokens per pixel
    const P = cell ? T : room;
    const side = cell ? cell * T : room;
    const ppt = side / T; // pixels per token
    geometry = { labelW, header, ppt, pattern, layer, head, row };
    canvas.dataset.rwGeometry = `${labelW},${header},${ppt}`; // where the cells are (tests, tools)
    const ctx = sizeCanvas(canvas, labelW + side + 4, header + side + 4);
    const { fg, muted, sel } = colours;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(rasterOf(P), labelW, header, side, side);
    ctx.strokeStyle = muted;
    ctx.lineWidth = 1;
    ctx.strokeRect(labelW - 0.5, header - 0.5, side + 1, side + 1);
    ctx.font = named ? `11px ${MONO}` : `11px ${SANS}`;
    ctx.textBaseline = "middle";
    if (named) {
      for (let i = 0; i < T; i++) {
        const text = canvasToken(tokens[i], TOKEN_CHARS);
        ctx.fillStyle = i === row ? sel : fg;
        ctx.textAlign = "right";
        ctx.fillText(`${text} ${i}`, labelW - 4, header + (i + 0.5) * ppt);
        ctx.save();
        ctx.translate(labelW + (i + 0.5) * ppt, header - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillStyle = fg;
        ctx.fillText(text, 0, 0);
        ctx.restore();
      }
    } else {
      const every = niceStep(Math.ceil(24 / ppt));
      ctx.fillStyle = muted;
      for (let i = 0; i < T; i += every) {
        ctx.textAlign = "right";
        ctx.fillText(String(i), labelW - 4, header + (i + 0.5) * ppt);
        ctx.textAlign = "center";
        ctx.fillText(String(i), labelW + (i + 0.5) * ppt, header - 8);
      }
    }
    // the selected destination row, up to the diagonal (its allowed sources)
    ctx.strokeStyle = sel;
    ctx.lineWidth = 2;
    ctx.strokeRect(labelW, header + row * ppt, Math.max(2, (row + 1) * ppt), Math.max(2, ppt));
    canvas.setAttribute(
      "aria-label",
      `layer ${layer} head ${head}: attention from destination tokens (rows) to source tokens (columns); ` +
        `row ${row} selected`,
    );
    const kept = pattern.sparsified
      ? `; row ${row} keeps ${fmt(100 * pattern.kept(head, row), 1)} % of its weight`
      : "";
    el.replaceChildren(
      h(
        "div",
        { class: "rw-sub" },
        `L${layer}H${head}: destination (rows) × source (columns), colour √α; row ${row} `,
        tokenEl(tokens[row]),
        ` selected${kept}`,
      ),
      h("div", { class: "rw-att-scroll" }, canvas),
    );
  }

  /** [destination, source] under the pointer; source -1 over the row labels; null elsewhere. */
  function cellAt(ev) {
    if (!geometry) return null;
    const { labelW, header, ppt } = geometry;
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - labelW;
    const y = ev.clientY - r.top - header;
    const cells = { cellW: ppt, cellH: ppt };
    if (x < 0) {
      const label = x >= -labelW && hitCell(0, y, cells, T, T);
      return label ? [label[0], -1] : null;
    }
    return hitCell(x, y, cells, T, T);
  }

  canvas.addEventListener("mousemove", (ev) => {
    const hit = cellAt(ev);
    if (!hit) {
      tooltip.hide();
      return;
    }
    const [t, s] = hit;
    const { pattern, layer, head } = geometry;
    const lines = [`L${layer}H${head}`, ["destination", `${t} ${tokenLabel(tokens[t])}`]];
    if (s >= 0) {
      lines.push(["source", `${s} ${tokenLabel(tokens[s])}`]);
      const a = pattern.at(head, t, s);
      if (Number.isNaN(a)) lines.push("a later token: the causal mask gives it no attention");
      else if (a === null) lines.push(["α", "below the weights kept for this row"]);
      else lines.push(["α", fmt(a, 4)]);
    }
    if (pattern.sparsified) lines.push(["row keeps", `${fmt(100 * pattern.kept(head, t), 1)} % of its weight`]);
    lines.push("click: select this destination row");
    tooltip.show(ev.clientX, ev.clientY, lines);
  });
  canvas.addEventListener("mouseleave", () => tooltip.hide());
  canvas.addEventListener("click", (ev) => {
    const hit = cellAt(ev);
    if (hit) onRow(hit[0]);
  });
  keepKeys(canvas, (key) => {
    const step = { ArrowUp: -1, ArrowDown: 1 }[key];
    if (!step || !geometry) return false; // other keys reach the notebook
    onRow(Math.max(0, Math.min(T - 1, geometry.row + step)));
    return true;
  });

  return { el, show, clear };
}
