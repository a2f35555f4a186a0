// Helpers shared by the views.
import { lut } from "../shared/colors.js";
import { h, messageBox } from "../shared/dom.js";
import { makeNormalizer, fmt } from "../shared/scale.js";
import { displayToken } from "../shared/tokens.js";

/** RGBA bytes (C*T*4) for a [C,T] matrix through a normaliser and a colour map. */
export function colorize(values, C, T, norm, cmap, nanRGB = [128, 128, 128]) {
  const L = lut(cmap);
  const out = new Uint8ClampedArray(C * T * 4);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < T; i++) {
      const k = (c * T + i) * 4;
      const t = norm.t(c, i);
      if (Number.isFinite(t)) {
        const j = Math.round(t * 255) * 3;
        out[k] = L[j]; out[k + 1] = L[j + 1]; out[k + 2] = L[j + 2];
      } else {
        out[k] = nanRGB[0]; out[k + 1] = nanRGB[1]; out[k + 2] = nanRGB[2];
      }
      out[k + 3] = 255;
    }
  }
  return out;
}

/** Legend: a gradient with its range and a note on how the range was chosen. */
export function legend(cmap, norm, label) {
  const c = document.createElement("canvas");
  c.width = 120;
  c.height = 10;
  const ctx = c.getContext("2d");
  const L = lut(cmap);
  for (let x = 0; x < 120; x++) {
    const j = Math.round((x / 119) * 255) * 3;
    ctx.fillStyle = `rgb(${L[j]},${L[j + 1]},${L[j + 2]})`;
    ctx.fillRect(x, 0, 1, 10);
  }
  c.style.width = "120px";
  c.style.height = "10px";
  const how = { row: "per row", quantile: "2–98% quantiles", global: "min–max", fixed: "" }[norm.mode] || "";
  const lo = norm.mode === "row" ? "row min" : fmt(norm.lo);
  const hi = norm.mode === "row" ? "row max" : fmt(norm.hi);
  return h("span", { class: "rw-legend", title: `colour scale: ${label}${how ? " (" + how + ")" : ""}` },
    h("span", { text: label }), h("span", { text: lo }), c, h("span", { text: hi }), how ? h("span", { text: `(${how})` }) : null);
}

/** Vector-valued [C,T] matrix from the store for a grid metric. */
export function metricValues(store, metric, targetText) {
  const { C, T } = store.meta();
  if (metric === "norm") return { values: store.array("state_norm", [C, T]).data, signed: false, cmap: "viridis", label: "‖stream‖" };
  if (metric === "delta") return { values: store.array("delta_norm", [C, T]).data, signed: false, cmap: "viridis", label: "‖delta‖" };
  const t = store.target(targetText) || store.target();
  if (!t) throw new Error(`target ${JSON.stringify(targetText)} is not precomputed`);
  if (metric === "prob") {
    const v = new Float32Array(C * T);
    for (let k = 0; k < v.length; k++) v[k] = Math.exp(t.logp[k]);
    return { values: v, signed: false, cmap: "cividis", label: "lens p(target)", fixed: [0, 1] };
  }
  // cumulative DLA: what the stream so far says directly about the target's logit
  const v = new Float32Array(C * T);
  for (let i = 0; i < T; i++) {
    let acc = 0;
    for (let c = 0; c < C; c++) { acc += t.dla[c * T + i]; v[c * T + i] = acc; }
  }
  return { values: v, signed: true, cmap: "rdbu", label: "DLA of stream → target" };
}

export function normalizerFor(mv, C, T, mode, skipFirst) {
  if (mv.fixed) return makeNormalizer(mv.values, C, T, { mode: "fixed", lo: mv.fixed[0], hi: mv.fixed[1] });
  return makeNormalizer(mv.values, C, T, { mode, signed: mv.signed, skipFirst });
}

/** Run f(); on error replace the contents of root by a readable message. */
export function guard(root, f) {
  try {
    return f();
  } catch (e) {
    console.warn("resid_widgets:", e);
    root.replaceChildren(messageBox(`resid_widgets cannot show this view: ${e.message || e}`));
    return null;
  }
}

/**
 * fn, run once after the next frame has been painted (calls in between coalesce). Secondary
 * updates (bars, pane, top-k list) go through this so a click repaints the grid within one frame.
 */
export function afterPaint(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    const run = () => { pending = false; try { fn(); } catch (e) { console.warn("resid_widgets:", e); } };
    if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => setTimeout(run, 0));
    else setTimeout(run, 0);
  };
}

/** A group of toggle buttons. */
export function segmented(options, value, onchange, title, attr) {
  const wrap = h("span", { class: "rw-seg", role: "group", title });
  const btns = options.map(([v, label, tip]) => {
    const b = h("button", { class: "rw-btn", type: "button", text: label, title: tip || label });
    b.dataset.value = v;
    if (attr) b.setAttribute(`data-rw-${attr}`, v);
    b.addEventListener("click", () => { set(v); onchange(v); });
    wrap.appendChild(b);
    return b;
  });
  function set(v) { for (const b of btns) b.setAttribute("aria-pressed", String(b.dataset.value === v)); }
  set(value);
  wrap.setValue = set;
  return wrap;
}

/** A strip of the prompt's tokens (class rw-prompt); clicking token i calls onPick(i).
 * `title(i)` is each chip's tooltip; `enabled(i)` false greys a chip out (a snapshot that holds
 * only some positions). Returns the element, with mark(i) to show the current position. */
export function promptStrip(tokens, onPick, { title, enabled = () => true, label = "position" } = {}) {
  const strip = h("div", { class: "rw-prompt", "aria-label": label });
  strip.setAttribute("data-rw", "prompt-strip");
  const chips = tokens.map((t, i) => {
    const on = enabled(i);
    const b = h("span", { class: "rw-tok", text: displayToken(t), title: title ? title(i) : `position ${i}` });
    b.dataset.rwPos = String(i);
    if (on) b.addEventListener("click", () => onPick(i));
    else b.setAttribute("aria-disabled", "true");
    strip.appendChild(b);
    return b;
  });
  strip.mark = (p) => chips.forEach((c, i) => c.setAttribute("aria-current", String(i === p)));
  return strip;
}

/** The prompt strip of an analysis view (and its root's data-rw-position): a click asks Python
 * to recompute at that position; a snapshot (no kernel) holds only the position it was made at. */
export function positionPicker(root, store, tokens, position, what) {
  root.dataset.rwPosition = String(position);
  const live = !store.get("_rw_static");
  const strip = promptStrip(tokens, (i) => { if (i !== position) store.set("position", i); }, {
    enabled: (i) => live || i === position,
    title: (i) => (live ? `position ${i}: ${what} here` : i === position ? `position ${i}: shown`
      : `this snapshot holds position ${position} only; in a notebook, a click recomputes ${what} here`),
  });
  strip.mark(position);
  return strip;
}
