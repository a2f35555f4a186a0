// The vector pane of the selected cell: raw stream, decomposition by source (one heat strip per
// component, dims optionally sorted by magnitude) or projection onto the target's unembedding
// direction (each source -> one number, its direct logit attribution).
import { divergingFill, PART_COLORS } from "../shared/colors.js";
import { checkbox, h, messageBox, segmented, sizeCanvas } from "../shared/dom.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { maxAbs, quantileSorted } from "../shared/scale.js";
import { themeColors } from "../shared/theme.js";
import { tokenEl, tokenLabel } from "../shared/tokens.js";
import { featureStates, renderFeatures } from "./pane_features.js";

export function createPane(root, store, tooltip) {
  const title = h("div", { class: "rw-title" });
  const mode = segmented(
    [
      ["raw", "raw", "the stream vector itself"],
      ["decompose", "decompose", "one strip per source that wrote into it"],
      ["project", "project on target", "each source → its direct logit attribution to the target"],
      ...(Object.keys(featureStates(store)).length
        ? [["features", "features", "the state split into sparse-autoencoder features, bias and error"]]
        : []),
    ],
    ...store.bind("pane_mode", "decompose"),
    "how to show the vector",
    "mode",
  );
  let sortDims = false;
  const sortBox = checkbox(
    "sort by magnitude",
    false,
    (v) => {
      sortDims = v;
      update();
    },
    "order dimensions (or sources) by |value|",
  );
  const body = h("div", { class: "rw-pane-body" });
  // the pane folds to its title line (the grid stays linked; unfolding shows the current cell)
  const fold = h("button", {
    class: "rw-btn",
    type: "button",
    "data-rw-part": "pane-fold",
    "aria-expanded": "true",
    title: "fold / unfold the vector pane",
    text: "▾",
  });
  const pane = h(
    "div",
    { class: "rw-pane", "data-rw-part": "pane", "data-rw-folded": "false" },
    h("div", { class: "rw-bar" }, fold, title, h("span", { class: "rw-pane-tools" }, mode, sortBox)),
    body,
  );
  fold.addEventListener("click", () => {
    const folded = pane.getAttribute("data-rw-folded") !== "true";
    pane.setAttribute("data-rw-folded", String(folded));
    fold.setAttribute("aria-expanded", String(!folded));
    fold.textContent = folded ? "▸" : "▾";
    if (!folded) update();
  });
  root.appendChild(pane);
  let token = 0;

  function update() {
    const my = ++token;
    const { C, T, labels, tokens, d_model } = store.meta();
    const [c, i] = store.get("selected") || [C - 1, T - 1];
    if (!(c >= 0 && c < C && i >= 0 && i < T)) {
      body.replaceChildren(messageBox("no cell selected", "info"));
      return;
    }
    const m = store.get("pane_mode") || "decompose";
    mode.setValue(m);
    pane.setAttribute("data-rw-pane-mode", m);
    title.textContent = `stream after ${labels[c]} at position ${i} `;
    title.appendChild(tokenEl(tokens[i]));
    title.appendChild(h("span", { class: "rw-sub", text: `  (d_model = ${d_model})` }));
    if (m === "project") {
      renderProject(c, i);
      return;
    }
    if (m === "features") {
      renderFeatures(store, body, c, i, {
        sortByDla: sortDims,
        stillCurrent: () => my === token,
        redraw: update,
        onSelect: (sel) => store.set("selected", sel),
      });
      return;
    }
    body.replaceChildren(h("div", { class: "rw-note", text: "loading the vector…" }));
    const onWait = (note) => my === token && body.replaceChildren(h("div", { class: "rw-note", text: note }));
    store.pane(c, i, { onWait }).then(
      (p) => {
        if (my === token) (m === "raw" ? renderRaw : renderDecompose)(p, c, i);
      },
      (e) => {
        if (my !== token) return;
        const note = store.get("_panes_note") ? ` ${store.get("_panes_note")}.` : "";
        const why = String(e.message || e);
        const msg = why.startsWith("needs the kernel")
          ? `The vector pane of this cell needs the kernel (${why.replace(/^needs the kernel:?\s*/, "")}).${note} ` +
            '"project on target" works without it.'
          : `cannot load the vector: ${why}`;
        body.replaceChildren(messageBox(msg, "info"));
      },
    );
  }

  function renderProject(c, i) {
    const { T, labels, kinds } = store.meta();
    const tt = store.target(store.get("target"));
    if (!tt) {
      body.replaceChildren(messageBox("the target is not precomputed", "info"));
      return;
    }
    const rows = [];
    for (let k = 0; k <= c; k++) rows.push([k, tt.dla[k * T + i]]);
    if (sortDims) rows.sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
    const total = rows.reduce((a, r) => a + r[1], 0);
    const width = Math.max(240, (body.clientWidth || 500) - 10);
    const rowH = 15,
      labelW = 70,
      valW = 64;
    const H = rows.length * rowH + 4;
    const canvas = h("canvas");
    const g = sizeCanvas(canvas, width, H);
    const { fg } = themeColors(root);
    const m = maxAbs(rows.map((r) => r[1]));
    const barW = width - labelW - valW;
    const zero = labelW + barW / 2;
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    rows.forEach(([k, v], r) => {
      const y = r * rowH + 2;
      g.fillStyle = fg;
      g.textAlign = "right";
      g.fillText(labels[k], labelW - 4, y + rowH / 2);
      g.fillStyle = PART_COLORS[kinds[k]] || PART_COLORS.other;
      const w = (v / m) * (barW / 2);
      g.fillRect(w >= 0 ? zero : zero + w, y + 2, Math.abs(w), rowH - 4);
      g.fillStyle = fg;
      g.textAlign = "left";
      g.fillText(fmtSigned(v), labelW + barW + 4, y + rowH / 2);
    });
    g.fillStyle = fg;
    g.fillRect(zero, 0, 1, H);
    body.replaceChildren(
      h("div", {
        class: "rw-note",
        text:
          `each source projected on the unembedding direction of ${tokenLabel(tt.text)} ` +
          `(direct logit attribution, frozen final norm); sum = ${fmtSigned(total)}`,
      }),
      canvas,
    );
  }

  function strips(vectors, names, i, subtitle) {
    const d = vectors[0].length;
    const final = new Float32Array(d);
    for (const v of vectors) for (let j = 0; j < d; j++) final[j] += v[j];
    let order = null;
    if (sortDims) {
      order = Array.from({ length: d }, (_, j) => j).sort((a, b) => Math.abs(final[b]) - Math.abs(final[a]));
    }
    // robust shared scale: the 99th percentile of |x| (the attention sink must not wash everything out)
    const abs = [];
    for (const v of vectors)
      for (let j = 0; j < d; j += Math.max(1, Math.floor((d * vectors.length) / 20000))) abs.push(Math.abs(v[j]));
    abs.sort((a, b) => a - b);
    const scale = Math.max(1e-9, quantileSorted(abs, 0.99));
    const width = Math.max(240, (body.clientWidth || 600) - 10);
    const labelW = 110;
    const stripW = width - labelW;
    const rowH = vectors.length > 40 ? 10 : 13;
    const H = vectors.length * rowH + 16;
    const canvas = h("canvas");
    const g = sizeCanvas(canvas, width, H);
    const { fg, muted } = themeColors(root);
    const dark = !!root.closest(".rw-dark");
    const bins = Math.min(d, Math.floor(stripW));
    const px = stripW / bins;
    g.font = `${rowH >= 13 ? 10 : 9}px system-ui, sans-serif`;
    g.textBaseline = "middle";
    vectors.forEach((v, r) => {
      const y = r * rowH;
      let n2 = 0;
      for (let j = 0; j < d; j++) n2 += v[j] * v[j];
      g.fillStyle = fg;
      g.textAlign = "right";
      if (rowH >= 8) g.fillText(`${names[r]} ‖${fmt(Math.sqrt(n2), 1)}‖`, labelW - 4, y + rowH / 2);
      for (let b = 0; b < bins; b++) {
        // each pixel column shows the largest-magnitude value of its dims
        const j0 = Math.floor((b * d) / bins),
          j1 = Math.max(j0 + 1, Math.floor(((b + 1) * d) / bins));
        let best = 0;
        for (let j = j0; j < j1; j++) {
          const x = v[order ? order[j] : j];
          if (Math.abs(x) > Math.abs(best)) best = x;
        }
        g.fillStyle = divergingFill(best, scale, dark);
        g.fillRect(labelW + b * px, y, Math.ceil(px), rowH - (rowH >= 8 ? 1 : 0));
      }
    });
    g.fillStyle = muted;
    g.textAlign = "left";
    const dims = order ? "dims sorted by |final value|" : "dims 0.." + (d - 1);
    const perPixel = bins < d ? `, ${Math.ceil(d / bins)} per pixel (largest |x|)` : "";
    const scaleNote = `; colour ±${fmt(scale)} (99th pct of |x|, clipped)`;
    g.fillText(dims + perPixel + scaleNote, labelW, vectors.length * rowH + 9);
    canvas.addEventListener("mousemove", (ev) => {
      const rc = canvas.getBoundingClientRect();
      const x = ev.clientX - rc.left - labelW,
        y = ev.clientY - rc.top;
      const r = Math.floor(y / rowH);
      if (x < 0 || r < 0 || r >= vectors.length) {
        tooltip.hide();
        return;
      }
      const b = Math.floor(x / px);
      const j0 = Math.floor((b * d) / bins);
      const dim = order ? order[j0] : j0;
      tooltip.show(ev.clientX, ev.clientY, [names[r], ["dim", String(dim)], ["value", fmtSigned(vectors[r][dim])]]);
    });
    canvas.addEventListener("mouseleave", () => tooltip.hide());
    // top dims of the final vector
    const top = Array.from({ length: d }, (_, j) => j)
      .sort((a, b) => Math.abs(final[b]) - Math.abs(final[a]))
      .slice(0, 6);
    const n = Math.sqrt(final.reduce((a, x) => a + x * x, 0));
    const largest = top.map((j) => `${j} (${fmtSigned(final[j], 2)})`).join(", ");
    body.replaceChildren(
      h("div", {
        class: "rw-note",
        text: `${subtitle}; ‖stream‖ = ${fmt(n)}; largest dims: ${largest}`,
      }),
      canvas,
    );
  }

  function renderRaw(p, c, i) {
    const { labels } = store.meta();
    const state = new Float32Array(p.d);
    for (let k = 0; k <= c; k++) for (let j = 0; j < p.d; j++) state[j] += p.data[k * p.d + j];
    strips([state], [labels[c]], i, "the stream vector");
  }

  function renderDecompose(p, c, i) {
    const { labels } = store.meta();
    const vs = [],
      names = [];
    for (let k = 0; k <= c; k++) {
      vs.push(p.data.subarray(k * p.d, (k + 1) * p.d));
      names.push(labels[k]);
    }
    strips(vs, names, i, `${vs.length} sources add up to this stream`);
  }

  return { el: pane, update };
}
