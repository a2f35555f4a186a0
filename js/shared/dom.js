// Tiny DOM helpers. Text always goes through textContent (token text is data, never HTML).
import { keepKeys, SELECT_KEYS } from "./keys.js";
import { CSS } from "./style.js";

/**
 * An HTML element: attrs "class", "text" (textContent), on<event> handlers, properties and
 * attributes (null / false ones are left out); children are nodes or strings (as text).
 * No inline styles: the look is a class in style.js, a data-driven value is set on el.style.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "style") throw new Error(`h("${tag}"): give it a class in shared/style.js, not an inline style`);
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";

/** An SVG element with attributes (null ones left out) and optional text. */
export function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  if (text != null) el.textContent = text;
  return el;
}

/** Add the stylesheet once per document (or shadow root) that holds el. */
export function ensureStyle(el) {
  const root = (el.getRootNode && el.getRootNode()) || document;
  const host = root === document || !root.host ? document.head || document.documentElement : root;
  const holder = root === document || !root.host ? document : root;
  if (holder.querySelector && holder.querySelector("style[data-rw-style]")) return;
  const st = document.createElement("style");
  st.setAttribute("data-rw-style", "1");
  st.textContent = CSS;
  host.appendChild(st);
}

/** A readable message in place of a view (bad input, missing kernel, ...). */
export function messageBox(text, kind = "error") {
  return h("div", { class: `rw-msg rw-msg-${kind}`, role: kind === "error" ? "alert" : "status", text });
}

/** Select element from [[value, label], ...]. */
export function select(options, value, onchange, title) {
  const el = h("select", { class: "rw-select", title });
  for (const [v, label] of options) el.appendChild(h("option", { value: v, text: label }));
  el.value = value;
  el.addEventListener("change", () => onchange(el.value));
  keepKeys(el, () => false, { native: SELECT_KEYS });
  return el;
}

export function checkbox(label, checked, onchange, title) {
  const input = h("input", { type: "checkbox" });
  input.checked = !!checked;
  input.addEventListener("change", () => onchange(input.checked));
  const lab = h("label", { class: "rw-check", title }, input, h("span", { text: label }));
  lab.input = input;
  return lab;
}

/** Canvas sized in CSS pixels, backed by devicePixelRatio pixels. Returns its 2D context. */
export function sizeCanvas(canvas, w, h_) {
  const dpr = Math.min(window.devicePixelRatio || 1, 2);
  const W = Math.max(1, Math.round(w * dpr));
  const H = Math.max(1, Math.round(h_ * dpr));
  if (canvas.width !== W) canvas.width = W;
  if (canvas.height !== H) canvas.height = H;
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h_}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** A group of toggle buttons ([[value, label, tooltip], ...]); setValue(v) marks one pressed. */
export function segmented(options, value, onchange, title, attr) {
  const wrap = h("span", { class: "rw-seg", role: "group", title });
  const buttons = options.map(([v, label, tip]) => {
    const b = h("button", { class: "rw-btn", type: "button", text: label, title: tip || label });
    b.dataset.value = v;
    if (attr) b.setAttribute(`data-rw-${attr}`, v);
    b.addEventListener("click", () => {
      set(v);
      onchange(v);
    });
    wrap.appendChild(b);
    return b;
  });
  function set(v) {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.value === v));
  }
  set(value);
  wrap.setValue = set;
  return wrap;
}
