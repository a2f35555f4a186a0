// PNG / SVG download of a view, in the browser alone (no kaleido, no kernel: also in snapshots).
// SVG: the view's DOM cloned into <svg><foreignObject>, every computed style inlined (the page's
// stylesheet does not travel with the file) and every <canvas> replaced by an <img> of its pixels.
// PNG: that SVG drawn into a canvas at twice the size. The download button itself is left out.
import { h } from "./dom.js";
import { keepKeys } from "./keys.js";

const XHTML = "http://www.w3.org/1999/xhtml";
const SVGNS = "http://www.w3.org/2000/svg";
/** Device pixels per CSS pixel of the PNG. */
export const PNG_SCALE = 2;

// inherited properties are always written: a clone inherits from its parent's inline style, not
// from the page, so "equal to the default" does not mean "can be left out" for them
const INHERITED = new RegExp(
  "^(color|font|line-height|letter-spacing|word-|white-space|text-|writing-mode|direction|visibility|" +
    "fill|stroke|tab-size|hyphens|cursor)",
);
// SVG shapes take their geometry from attributes; only their paint comes from CSS
const SVG_PAINT = /^(fill|stroke|opacity|font|text-anchor|dominant-baseline|visibility|display)/;

const defaults = new Map();
/** Computed style of a bare element of this tag (the values not worth writing out). */
function defaultStyle(tag, ns) {
  const key = `${ns}:${tag}`;
  if (!defaults.has(key)) {
    const box = document.createElement("div");
    box.setAttribute("aria-hidden", "true");
    const el = ns === SVGNS ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
    (ns === SVGNS ? box.appendChild(document.createElementNS(SVGNS, "svg")) : box).appendChild(el);
    document.body.appendChild(box);
    const cs = getComputedStyle(el);
    const out = {};
    for (let k = 0; k < cs.length; k++) out[cs[k]] = cs.getPropertyValue(cs[k]);
    box.remove();
    defaults.set(key, out);
  }
  return defaults.get(key);
}

function inlineStyle(src, dst) {
  const cs = getComputedStyle(src);
  const svg = src.namespaceURI === SVGNS && src.localName !== "svg";
  const base = defaultStyle(src.localName, src.namespaceURI);
  const parts = [];
  for (let k = 0; k < cs.length; k++) {
    const name = cs[k];
    if (name.startsWith("--")) continue;
    if (svg && !SVG_PAINT.test(name)) continue;
    const value = cs.getPropertyValue(name);
    if (!INHERITED.test(name) && base[name] === value) continue;
    parts.push(`${name}:${value}`);
  }
  // a picture has nothing to scroll: no scroll bars in it
  if (/auto|scroll/.test(cs.overflowX + cs.overflowY)) parts.push("scrollbar-width:none");
  dst.setAttribute("style", parts.join(";"));
}

/** The clone of node with styles inlined, canvases as images, form values as attributes. */
function cloneForExport(src) {
  if (src.nodeType === Node.TEXT_NODE) return document.createTextNode(src.textContent);
  if (src.nodeType !== Node.ELEMENT_NODE) return null;
  if (src.getAttribute("data-rw") === "download" || src.classList.contains("rw-tooltip")) return null;
  if (src.localName === "canvas") {
    const img = document.createElement("img");
    img.setAttribute("src", src.toDataURL("image/png"));
    inlineStyle(src, img);
    const box = src.getBoundingClientRect();
    img.style.width = `${box.width}px`;
    img.style.height = `${box.height}px`;
    return img;
  }
  const dst = src.cloneNode(false);
  if (src.localName === "input" && (src.type === "checkbox" || src.type === "radio")) {
    if (src.checked) dst.setAttribute("checked", "");
    else dst.removeAttribute("checked");
  } else if (src.localName === "input") {
    dst.setAttribute("value", src.value);
  } else if (src.localName === "option") {
    if (src.selected) dst.setAttribute("selected", "");
    else dst.removeAttribute("selected");
  }
  inlineStyle(src, dst);
  for (const child of src.childNodes) {
    const c = cloneForExport(child);
    if (c) dst.appendChild(c);
  }
  // what was scrolled into view stays in view (the clone starts at the top left)
  if (src.scrollTop || src.scrollLeft) {
    const inner = document.createElement("div");
    inner.setAttribute("style", `margin:${-src.scrollTop}px 0 0 ${-src.scrollLeft}px`);
    inner.append(...dst.childNodes);
    if (src.localName !== "svg") dst.appendChild(inner);
    else dst.append(...inner.childNodes);
  }
  return dst;
}

/** The view as an SVG document (text) and its size in CSS pixels. */
export function viewToSvg(root) {
  const box = root.getBoundingClientRect();
  const width = Math.ceil(box.width);
  const height = Math.ceil(box.height);
  const clone = cloneForExport(root);
  const cs = getComputedStyle(root);
  // the page's background is not part of the view: the theme's own
  clone.style.background = cs.getPropertyValue("--rw-bg").trim() || "#ffffff";
  clone.style.width = `${width}px`;
  clone.style.height = `${height}px`;
  clone.style.margin = "0";
  clone.setAttribute("xmlns", XHTML);
  const body = new XMLSerializer().serializeToString(clone);
  const svg =
    `<svg xmlns="${SVGNS}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<foreignObject x="0" y="0" width="${width}" height="${height}">${body}</foreignObject></svg>`;
  return { svg, width, height };
}

/** The SVG text drawn into a canvas at PNG_SCALE, as a PNG Blob. */
export async function svgToPng({ svg, width, height }) {
  const img = new Image();
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(width * PNG_SCALE);
  canvas.height = Math.round(height * PNG_SCALE);
  const ctx = canvas.getContext("2d");
  ctx.scale(PNG_SCALE, PNG_SCALE);
  ctx.drawImage(img, 0, 0, width, height);
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the browser made no PNG"))), "image/png"),
  );
}

/** "dashboard-2026-12-07T01-40-12": the view's name and the local time, safe in a file name. */
export function fileStem(name, now = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  const stamp =
    `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}` +
    `T${pad(now.getHours())}-${pad(now.getMinutes())}-${pad(now.getSeconds())}`;
  return `${name}-${stamp}`;
}

/** Start the download of url as filename. */
function save(url, filename) {
  const a = h("a", { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
}

/** In a frame (a sandbox may block downloads without an error anyone can catch). */
function inFrame() {
  try {
    return window.self !== window.top;
  } catch {
    return true;
  }
}

/**
 * The download button of a view (top-right corner, `data-rw="download"`): a menu PNG / SVG.
 * root: the view's .rw-root; name: the view's name (the file's name starts with it).
 * Errors (a sandboxed frame without downloads, a tainted canvas) are shown under the menu.
 */
export function downloadButton(root, name) {
  const message = h("div", { class: "rw-download-msg", role: "status", hidden: true });
  const item = (format, label) =>
    h("button", {
      class: "rw-btn",
      type: "button",
      role: "menuitem",
      "data-rw-format": format,
      text: label,
      onclick: () => run(format),
    });
  const menu = h(
    "div",
    { class: "rw-download-menu", role: "menu", hidden: true },
    item("png", "PNG"),
    item("svg", "SVG"),
  );
  const toggle = h("button", {
    class: "rw-btn rw-download-toggle",
    type: "button",
    title: "download this view as PNG or SVG",
    "aria-label": "download this view",
    "aria-haspopup": "menu",
    "aria-expanded": "false",
    text: "⤓",
    onclick: () => open(menu.hidden),
  });
  const wrap = h("div", { class: "rw-download", "data-rw": "download" }, toggle, menu, message);
  // Escape closes the menu; Enter and Space press its buttons without reaching the notebook
  keepKeys(wrap, (key) => key === "Escape" && !menu.hidden && (open(false), true), { native: [" ", "Enter"] });

  // a click elsewhere closes the menu
  wrap.addEventListener("focusout", (ev) => {
    if (!wrap.contains(ev.relatedTarget)) open(false);
  });

  function open(show) {
    menu.hidden = !show;
    toggle.setAttribute("aria-expanded", String(show));
    if (show) message.hidden = true;
  }

  let lastUrl = null;
  function say(text, kind, preview) {
    message.className = `rw-download-msg rw-download-${kind}`;
    message.replaceChildren(
      h("div", { text }),
      preview ? h("img", { src: preview, alt: "the view as a picture" }) : null,
    );
    message.hidden = false;
  }

  async function run(format) {
    open(false);
    try {
      const doc = viewToSvg(root);
      const blob = format === "svg" ? new Blob([doc.svg], { type: "image/svg+xml" }) : await svgToPng(doc);
      if (lastUrl) URL.revokeObjectURL(lastUrl);
      lastUrl = URL.createObjectURL(blob);
      save(lastUrl, `${fileStem(name)}.${format}`);
      // a frame's sandbox can drop the download silently: the picture is shown to save by hand
      if (inFrame()) {
        say(
          `If no ${format.toUpperCase()} was saved, this frame forbids downloads: right-click the picture.`,
          "info",
          lastUrl,
        );
      }
    } catch (e) {
      console.warn("resid_widgets: download failed:", e);
      say(
        `Could not save the ${format.toUpperCase()}: ${e && e.message ? e.message : e}. ` +
          "A sandboxed page may forbid it: take a screenshot, or use the view's figure() in Python.",
        "error",
      );
    }
  }
  return wrap;
}
