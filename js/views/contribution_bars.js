// ContributionBars: one bar per layer (attention and MLP stacked) or per component, DLA or
// log-prob increase, with the total and the model's own logit / log-prob beside it.
import { h, s, checkbox, messageBox, sizeCanvas } from "../shared/dom.js";
import { PART_COLORS, cssAt, rgbAt, textOn } from "../shared/colors.js";
import { fmt, fmtSigned } from "../shared/scale.js";
import { displayToken } from "../shared/tokens.js";
import { makeTooltip } from "../shared/tooltip.js";
import { afterPaint, promptStrip, segmented } from "./common.js";
import { decodeArray } from "../shared/decode.js";
import { NeedsKernel } from "../shared/store.js";

/** Rows of the chart at one position: [{label, parts: [{kind, label, value}]}]. */
export function barRows(meta, values, group) {
  const { labels, kinds, layers, n_layers } = meta;
  if (group === "component") return labels.map((l, c) => ({ label: l, parts: [{ kind: kinds[c], label: l, value: values[c], layer: layers[c] }] }));
  const rows = [];
  const embed = { label: "embed", parts: [] };
  const byLayer = Array.from({ length: n_layers }, (_, l) => ({ label: `layer ${l}`, parts: [] }));
  const other = [];
  labels.forEach((l, c) => {
    const part = { kind: kinds[c], label: l, value: values[c], layer: layers[c] };
    if (kinds[c] === "embed") embed.parts.push(part);
    else if ((kinds[c] === "attn" || kinds[c] === "mlp") && layers[c] >= 0 && layers[c] < n_layers) byLayer[layers[c]].parts.push(part);
    else other.push({ label: l, parts: [part] });
  });
  if (embed.parts.length) rows.push(embed);
  rows.push(...byLayer, ...other);
  return rows;
}

/**
 * Half-width of the bar scale: the largest extent, unless one bar dwarfs the rest (log-prob of the
 * first layer often does): then 1.15 x the second largest, and the giant is cut.
 */
/** A number short enough for a heat-map cell: "0", "0.42", "−3.1", "13". */
export function cellNumber(v) {
  if (!Number.isFinite(v)) return "";
  const a = Math.abs(v);
  const s = a < 0.005 ? "0" : a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s.replace("-", "−");
}

export function barScale(extents) {
  const a = extents.filter((x) => Number.isFinite(x)).sort((x, y) => y - x);
  if (!a.length || a[0] <= 0) return 1e-9;
  if (a.length > 2 && a[1] > 0 && a[0] > 3 * a[1]) return 1.15 * a[1];
  return a[0];
}

/** Contributions [C] at a position for a target entry (decoded) and method. */
export function contributions(meta, t, position, method) {
  const { C, T } = meta;
  const out = new Float64Array(C);
  if (method === "dla") {
    for (let c = 0; c < C; c++) out[c] = t.dla[c * T + position];
  } else {
    // log-prob increase telescopes: each component = log p after it - log p before it
    for (let c = 1; c < C; c++) out[c] = t.logp[c * T + position] - t.logp[(c - 1) * T + position];
  }
  return out;
}

export function mountContributionBars(root, store, opts = {}) {
  root.setAttribute("data-rw", "contribution-bars");
  const meta = store.meta();
  const { T, tokens } = meta;
  const tooltip = opts.tooltip || makeTooltip(opts.tooltipRoot || root);
  const offs = [];
  const follow = opts.follow || "position";
  let group = "layer";

  const methodSeg = segmented([["dla", "DLA", "direct logit attribution (frozen final norm); sums with the constant to the logit"], ["logprob", "log-prob", "log-probability increase (Yu & Ananiadou); telescopes to log p(final) − log p(embedding)"]],
    store.get("method") || "dla", (v) => store.set("method", v), "value shown", "method");
  const groupSeg = segmented([["layer", "per layer"], ["component", "per component"]], group, (v) => { group = v; draw(); }, "one bar per layer (attention + MLP stacked) or per component");
  const headBox = checkbox("per head", store.get("per_head"), (v) => store.set("per_head", v), "attention split by head (not additive for log-prob)");
  const input = h("input", { type: "text", placeholder: "target token…", title: "type a token (a leading space as ' ' or '·') and press Enter", "aria-label": "target token" });
  const status = h("span", { class: "rw-sub" });
  const title = h("div", { class: "rw-title" });
  const chips = h("div", { class: "rw-chips" });
  const chart = h("div", { class: "rw-chart" });
  const summary = h("div", { class: "rw-summary" });
  const heads = h("div", { class: "rw-heads" });
  const neurons = h("div", { class: "rw-neurons" });
  let openLayer = null; // the MLP layer whose neuron breakdown is expanded
  // standalone: a strip of the prompt's tokens picks the position (in a dashboard the grid does)
  const prompt = follow === "position"
    ? promptStrip(tokens, (i) => store.set("position", i), { title: (i) => `position ${i}: show the contributions here` })
    : null;
  root.append(...[title, prompt, h("div", { class: "rw-bar" }, methodSeg, groupSeg, headBox), h("div", { class: "rw-bar" }, h("span", { class: "rw-sub", text: "target" }), input, status), chips, chart, neurons, summary, heads].filter(Boolean));

  input.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    ev.preventDefault();
    const text = input.value.replace(/·/g, " ").replace(/↵/g, "\n");
    if (!text) return;
    chooseTarget(text);
  });

  function chooseTarget(text) {
    const hit = store.findTarget(text) || store.targets().find((t) => displayToken(t.text) === displayToken(text));
    if (hit) { store.set("target", hit.text); status.textContent = ""; return; }
    status.textContent = "asking the kernel…";
    store.ensureTarget(text).then(
      (t) => { status.textContent = ""; store.set("target", t); },
      (e) => { status.textContent = String(e.message || e).startsWith("needs the kernel") ? `${displayToken(text)} is not precomputed: ${e.message}` : String(e.message || e); }
    );
  }

  function position() {
    const p = follow === "selected" ? (store.get("selected") || [0, T - 1])[1] : store.get("position");
    return p == null || p < 0 ? T - 1 : p;
  }

  function drawChips() {
    const cur = store.get("target");
    chips.replaceChildren(h("span", { class: "rw-sub", text: "precomputed:" }));
    for (const t of store.targets()) {
      const b = h("button", { class: "rw-chip", type: "button", text: displayToken(t.text), title: `${t.source === "top" ? "top prediction" : t.source === "next" ? "an actual next token" : t.source === "alt" ? "runner-up prediction" : "asked for"} (id ${t.id})` });
      b.setAttribute("aria-pressed", String(t.text === cur));
      b.addEventListener("click", () => store.set("target", t.text));
      chips.appendChild(b);
    }
  }

  let lastKey = "";
  function draw(force) {
    const method = store.get("method") || "dla";
    const key = [method, group, store.get("target"), store.get("per_head"), position(), root.clientWidth, store.targets().length].join("|");
    if (key === lastKey && force !== true) return;
    lastKey = key;
    methodSeg.setValue(method);
    root.setAttribute("data-rw-method", method);
    groupSeg.setValue(group);
    headBox.input.checked = !!store.get("per_head");
    const p = position();
    const t = store.target(store.get("target")) || store.target();
    if (prompt) prompt.mark(p);
    drawChips();
    title.replaceChildren(h("span", { text: "Contributions to " }), h("span", { class: "rw-tok", text: t ? displayToken(t.text) : "?" }),
      h("span", { text: ` at position ${p} ` }), h("span", { class: "rw-tok", text: displayToken(tokens[p]) }));
    if (!t) { chart.replaceChildren(messageBox("no target data", "info")); return; }
    const vals = contributions(meta, t, p, method);
    const rows = barRows(meta, vals, group);
    drawChart(rows, method);
    let sum = 0;
    for (const v of vals) sum += v;
    summary.replaceChildren();
    if (method === "dla") {
      const logit = t.logit[p];
      const constant = t.dla_constant == null ? logit - sum : t.dla_constant;
      const recon = sum + constant;
      const off = Math.abs(recon - logit) > 1e-3 * Math.max(1, Math.abs(logit));
      summary.append(h("div", {}, h("b", { text: "Σ contributions " }), h("span", { text: fmtSigned(sum) }), h("span", { text: `  + constant ${fmtSigned(constant)} (final-norm and unembedding biases)  = ` }), h("b", { text: fmt(recon) })),
        h("div", { class: "rw-sub", text: off ? "(differs from the model's logit: final soft-cap or numerical error)" : "" }),
        h("div", { class: "rw-sub", text: `model's logit of ${displayToken(t.text)} at position ${p}: ${fmt(logit)};  model's log p: ${fmt(t.logprob[p])}  (p = ${fmt(Math.exp(t.logprob[p]))})` }));
    } else {
      const C = meta.C;
      const lpFinal = t.logp[(C - 1) * T + p], lp0 = t.logp[p];
      summary.append(h("div", {}, h("b", { text: "Σ contributions " }), h("span", { text: fmtSigned(sum) }), h("span", { text: ` = log p(final) ${fmt(lpFinal)} − log p(embedding) ${fmt(lp0)}` })),
        h("div", { class: "rw-sub", text: `model's log p of ${displayToken(t.text)} at position ${p}: ${fmt(t.logprob[p])}  (p = ${fmt(Math.exp(t.logprob[p]))})` }));
    }
    drawHeads(t, p, method);
    drawNeurons(t, p, vals);
  }

  function toggleLayer(l) {
    openLayer = openLayer === l ? null : l;
    draw(true);
  }

  let neuronsToken = 0;
  function drawNeurons(t, p, vals) {
    const my = ++neuronsToken;
    root.dataset.rwOpenMlp = openLayer == null ? "" : String(openLayer);
    if (openLayer == null || !t) { neurons.replaceChildren(); return; }
    const l = openLayer;
    const key = `${t.id}:${p}`;
    const entry = (store.get("_neurons") || {})[key];
    const close = h("button", { class: "rw-btn", type: "button", text: "×", title: "close the neuron breakdown", "aria-label": "close" });
    close.addEventListener("click", () => toggleLayer(l));
    const head = h("div", { class: "rw-bar" }, h("b", { text: `MLP layer ${l}: top neurons` }), h("span", { text: " for " }),
      h("span", { class: "rw-tok", text: displayToken(t.text) }), h("span", { text: ` at position ${p}` }), close);
    if (entry && entry.error) { neurons.replaceChildren(head, messageBox(`neuron breakdown not available: ${entry.error}`, "info")); return; }
    if (!entry) {
      neurons.replaceChildren(head, h("div", { class: "rw-note", text: "top neurons: asking the kernel…" }));
      store.request({ type: "neurons", target: t.text, position: p }).then(async () => {
        for (let i = 0; i < 50 && !(store.get("_neurons") || {})[key]; i++) await new Promise((r) => setTimeout(r, 20));
        if (my === neuronsToken) draw(true);
      }, (e) => {
        if (my !== neuronsToken) return;
        const msg = e instanceof NeedsKernel || String(e.message || e).startsWith("needs the kernel")
          ? `top neurons for ${displayToken(t.text)} at position ${p} were not precomputed: ${e.message || e}` : `top neurons: ${e.message || e}`;
        neurons.replaceChildren(head, messageBox(msg, "info"));
      });
      return;
    }
    paintNeurons(head, entry, l, t, p, vals);
  }

  function paintNeurons(head, entry, l, t, p, vals) {
    const idx = decodeArray(entry.index, "neurons index"), dla = decodeArray(entry.dla, "neurons dla"), act = decodeArray(entry.act, "neurons act");
    const n = idx.shape[1];
    if (l < 0 || l >= idx.shape[0]) { neurons.replaceChildren(head, messageBox(`no neurons for layer ${l}`, "info")); return; }
    let m = 1e-9, shown = 0;
    for (let j = 0; j < n; j++) { m = Math.max(m, Math.abs(dla.data[l * n + j])); shown += dla.data[l * n + j]; }
    const c = meta.labels.indexOf(`mlp.${l}`);
    const total = c >= 0 ? t.dla[c * T + p] : NaN;
    const table = h("div", { class: "rw-neuron-table", role: "table", "aria-label": `top neurons of MLP layer ${l}`,
      style: { display: "grid", gridTemplateColumns: "auto minmax(40px, 120px) auto auto minmax(0, 1fr)", gap: "2px 8px", alignItems: "center" } });
    for (const x of ["neuron", "DLA", "", "act", "top tokens (W_U·value)"]) table.appendChild(h("span", { class: "rw-sub", text: x, style: { whiteSpace: "nowrap" } }));
    for (let j = 0; j < n; j++) {
      const v = dla.data[l * n + j];
      const w = (50 * Math.abs(v)) / m;
      const bar = h("div", { style: { position: "relative", height: "10px", background: "var(--rw-panel)", borderRadius: "2px" } },
        h("div", { style: { position: "absolute", top: "0", height: "100%", left: v >= 0 ? "50%" : `${50 - w}%`, width: `${w}%`, background: v >= 0 ? "#d6604d" : "#4393c3", borderRadius: "2px" } }));
      const toks = h("span", { class: "rw-chips", title: (entry.bs_top[l][j] || []).map(displayToken).join("  "), style: { marginTop: "0", flexWrap: "nowrap", overflow: "hidden", minWidth: "0" } }, ...(entry.bs_top[l][j] || []).map((x) => h("span", { class: "rw-tok", text: displayToken(x) })));
      table.append(h("span", { class: "rw-tok rw-neuron-name", text: `L${l}N${idx.data[l * n + j]}` }), bar,
        h("span", { text: fmtSigned(v), style: { fontVariantNumeric: "tabular-nums" } }), h("span", { class: "rw-sub", text: fmt(act.data[l * n + j]) }), toks);
    }
    neurons.replaceChildren(head, table, h("div", { class: "rw-note", text:
      `the ${n} neurons with the largest |DLA| (logit units, frozen final norm), sum ${fmtSigned(shown)} of the layer's DLA ${fmtSigned(total)}; act = activation; tokens: W_U · neuron value` }));
    neurons.style.cssText = "margin-top: 6px; padding: 6px 8px; border: 1px solid var(--rw-border); border-radius: 6px; background: var(--rw-bg);";
  }

  function drawChart(rows, method) {
    const width = Math.max(260, Math.floor(root.clientWidth || 420));
    const labelW = 62, valW = 62;
    const rowH = rows.length > 40 ? 12 : 17;
    const top = 16;
    const H = top + rows.length * rowH + 4;
    const extents = rows.map((r) => {
      let pos = 0, neg = 0;
      for (const part of r.parts) (part.value >= 0 ? (pos += part.value) : (neg += part.value));
      return Math.max(pos, -neg);
    });
    const maxAbs = barScale(extents);
    const clippedAny = extents.some((e) => e > maxAbs * 1.0001);
    const barW = width - labelW - valW;
    const zero = labelW + barW / 2;
    const sx = (barW / 2 - 2) / maxAbs;
    const lim = barW / 2 - 2;
    const clampX = (x) => Math.max(zero - lim, Math.min(zero + lim, x));
    const svg = s("svg", { width, height: H, viewBox: `0 0 ${width} ${H}`, role: "img", "aria-label": "contribution bars" });
    svg.appendChild(s("text", { x: labelW, y: 11, class: "rw-muted" }, `− ${fmt(maxAbs, 2)}`));
    svg.appendChild(s("text", { x: width - valW, y: 11, "text-anchor": "end", class: "rw-muted" }, `+ ${fmt(maxAbs, 2)}`));
    svg.appendChild(s("text", { x: zero, y: 11, "text-anchor": "middle", class: "rw-muted" }, method === "dla" ? "logit units" : "Δ log p"));
    rows.forEach((r, k) => {
      const y = top + k * rowH;
      const g = s("g", { class: "rw-barrow" });
      g.appendChild(s("text", { x: labelW - 4, y: y + rowH * 0.72, "text-anchor": "end" }, r.label));
      let pos = 0, neg = 0, total = 0;
      for (const part of r.parts) {
        const v = part.value;
        total += v;
        const a = v >= 0 ? zero + pos * sx : zero + (neg + v) * sx;
        const b = v >= 0 ? zero + (pos + v) * sx : zero + neg * sx;
        v >= 0 ? (pos += v) : (neg += v);
        const x0 = clampX(a), x1 = clampX(b);
        const rect = s("rect", { x: x0, y: y + 2, width: Math.max(0.5, x1 - x0), height: rowH - 4, fill: PART_COLORS[part.kind] || PART_COLORS.other });
        if (part.kind === "mlp" && part.layer >= 0) {
          // an MLP bar expands into its top neurons
          rect.setAttribute("class", "rw-mlp-bar");
          rect.setAttribute("data-rw-layer", String(part.layer));
          rect.style.cursor = "pointer";
          if (openLayer === part.layer) { rect.setAttribute("stroke", "var(--rw-sel)"); rect.setAttribute("stroke-width", "1.5"); }
          rect.addEventListener("click", () => { tooltip.hide(); toggleLayer(part.layer); });
        }
        rect.addEventListener("mousemove", (ev) => tooltip.show(ev.clientX, ev.clientY, [part.label, [method === "dla" ? "DLA" : "Δ log p", fmtSigned(v)], ["row total", fmtSigned(total)]].concat(part.kind === "mlp" ? [["click", "top neurons"]] : [])));
        rect.addEventListener("mouseleave", () => tooltip.hide());
        g.appendChild(rect);
      }
      if (extents[k] > maxAbs * 1.0001) {
        // a bar longer than the scale: cut, with an arrow at the cut end
        const right = pos * sx > lim;
        const ax = right ? zero + lim : zero - lim;
        g.appendChild(s("path", { d: right ? `M${ax - 6},${y + 1} L${ax + 1},${y + rowH / 2} L${ax - 6},${y + rowH - 1} Z` : `M${ax + 6},${y + 1} L${ax - 1},${y + rowH / 2} L${ax + 6},${y + rowH - 1} Z`, class: "rw-cut" }));
      }
      g.appendChild(s("text", { x: width - valW + 4, y: y + rowH * 0.72, class: total < 0 ? "rw-muted" : "" }, fmtSigned(total, 2)));
      svg.appendChild(g);
    });
    svg.appendChild(s("line", { x1: zero, x2: zero, y1: top - 2, y2: H, class: "rw-axis" }));
    const key = h("div", { class: "rw-chips" });
    for (const [kind, label] of [["embed", "embedding"], ["attn", "attention"], ["mlp", "MLP"]]) {
      const sw = h("span", { style: { display: "inline-block", width: "10px", height: "10px", background: PART_COLORS[kind], borderRadius: "2px" } });
      key.append(h("span", { class: "rw-legend" }, sw, h("span", { text: label })));
    }
    key.append(h("span", { class: "rw-sub", text: "  —  bars right of the axis push the target up, left push it down; click an MLP bar for its top neurons" + (clippedAny ? "; ▶ = bar cut to keep the others readable (its value is on the right)" : "") }));
    chart.replaceChildren(svg, key);
  }

  let headsToken = 0;
  function drawHeads(t, p, method) {
    const my = ++headsToken;
    if (!store.get("per_head")) { heads.replaceChildren(); return; }
    const entry = t.heads[String(p)];
    if (entry && entry[method]) { paintHeads(entry[method], method); return; }
    if (entry && entry.error) { heads.replaceChildren(messageBox(`per-head values are not available: ${entry.error}`, "info")); return; }
    heads.replaceChildren(h("div", { class: "rw-note", text: "per-head values: asking the kernel…" }));
    store.ensureHeads(t.text, p).then(
      () => { if (my === headsToken) draw(true); },
      (e) => { if (my === headsToken) heads.replaceChildren(messageBox(`per-head values for position ${p}: ${e.message || e}`, "info")); }
    );
  }

  function paintHeads(arr, method) {
    const [L, H1] = arr.shape;
    const width = Math.max(200, Math.min(root.clientWidth || 400, 60 + H1 * 40));
    const cw = Math.max(6, Math.floor((width - 60) / H1));
    const ch = L > 40 ? 8 : 14;
    const canvas = h("canvas", { "aria-label": "per-head contributions" });
    const g = sizeCanvas(canvas, 60 + cw * H1, 14 + ch * L);
    let m = 1e-9;
    for (const v of arr.data) m = Math.max(m, Math.abs(v));
    const fg = getComputedStyle(root).getPropertyValue("--rw-fg").trim() || "#000";
    g.font = "10px system-ui, sans-serif";
    g.textBaseline = "middle";
    g.fillStyle = fg;
    g.textAlign = "center";
    for (let j = 0; j < H1; j++) if (cw >= 14 || j % 4 === 0 || j === H1 - 1) g.fillText(j === H1 - 1 ? "rest" : `h${j}`, 60 + j * cw + cw / 2, 7);
    for (let l = 0; l < L; l++) {
      g.fillStyle = fg;
      g.textAlign = "right";
      if (ch >= 10 || l % 4 === 0) g.fillText(`attn.${l}`, 56, 14 + l * ch + ch / 2);
      for (let j = 0; j < H1; j++) {
        const v = arr.data[l * H1 + j];
        const rgb = rgbAt("rdbu", 0.5 + v / (2 * m));
        g.fillStyle = cssAt("rdbu", 0.5 + v / (2 * m));
        g.fillRect(60 + j * cw, 14 + l * ch, cw - 1, ch - 1);
        if (cw >= 34 && ch >= 12) { g.fillStyle = textOn(rgb); g.textAlign = "center"; g.fillText(cellNumber(v), 60 + j * cw + cw / 2, 14 + l * ch + ch / 2); }
      }
    }
    canvas.addEventListener("mousemove", (ev) => {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor((ev.clientX - r.left - 60) / cw), l = Math.floor((ev.clientY - r.top - 14) / ch);
      if (j < 0 || l < 0 || j >= H1 || l >= L) { tooltip.hide(); return; }
      tooltip.show(ev.clientX, ev.clientY, [`layer ${l} ${j === H1 - 1 ? "rest (output bias, non-head part)" : "head " + j}`, [method === "dla" ? "DLA" : "Δ log p", fmtSigned(arr.data[l * H1 + j])]]);
    });
    canvas.addEventListener("mouseleave", () => tooltip.hide());
    heads.replaceChildren(h("div", { class: "rw-note", text: `per head (blue lowers, red raises the target; ±${fmt(m)})${method === "logprob" ? " — head log-prob scores are not additive" : ""}` }), canvas);
  }

  draw();
  const redraw = () => { try { draw(); } catch (e) { console.warn(e); } };
  const redrawAll = () => { try { draw(true); } catch (e) { console.warn(e); } };
  for (const n of ["method", "target", "per_head", "_targets"]) offs.push(store.on(n, redraw));
  offs.push(store.on("_neurons", redrawAll));
  offs.push(store.on(follow === "selected" ? "selected" : "position", afterPaint(redraw)));
  return { resize: redraw, retheme: redrawAll, chooseTarget, toggleLayer, destroy() { offs.forEach((f) => f()); } };
}
