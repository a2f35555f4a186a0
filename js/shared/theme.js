// Light/dark detection from the computed background colour of the output area (there is no
// theme API shared by JupyterLab, Notebook, VS Code and Colab), and the theme's colours for canvas drawing.
import { THEMES, hexToRgb } from "./colors.js";

/** "rgb(…)", "rgba(…)" or "#rrggbb" -> {r, g, b, a}; null for anything else. */
export function parseColor(s) {
  if (/^#[0-9a-f]{6}$/i.test((s || "").trim())) {
    const [r, g, b] = hexToRgb(s.trim());
    return { r, g, b, a: 1 };
  }
  const m = /rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:[,\s/]+([\d.]+%?))?\s*\)/.exec(s || "");
  if (!m) return null;
  let a = m[4] === undefined ? 1 : parseFloat(m[4]);
  if (m[4] && m[4].endsWith("%")) a /= 100;
  return { r: +m[1], g: +m[2], b: +m[3], a };
}

export function isDarkColor(c) {
  return c ? 0.299 * c.r + 0.587 * c.g + 0.114 * c.b < 128 : false;
}

/** "dark" or "light" for the page around element el. */
export function detectTheme(el) {
  try {
    let node = el;
    while (node && node.nodeType === 1) {
      const c = parseColor(getComputedStyle(node).backgroundColor);
      if (c && c.a > 0.5) return isDarkColor(c) ? "dark" : "light";
      node = node.parentElement || (node.getRootNode && node.getRootNode().host) || null;
    }
    const body = document.body;
    if (body && body.dataset && body.dataset.jpThemeLight !== undefined) {
      return body.dataset.jpThemeLight === "false" ? "dark" : "light";
    }
    if (window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches) return "dark";
  } catch (e) {
    /* ignore */
  }
  return "light";
}

/** Call cb() when the page theme may have changed; returns an unsubscribe function. */
export function watchTheme(cb) {
  const offs = [];
  try {
    const mo = new MutationObserver(() => cb());
    mo.observe(document.body, {
      attributes: true,
      attributeFilter: ["class", "data-jp-theme-light", "data-jp-theme-name", "style"],
    });
    mo.observe(document.documentElement, { attributes: true, attributeFilter: ["class", "style", "data-theme"] });
    offs.push(() => mo.disconnect());
  } catch (e) {
    /* ignore */
  }
  try {
    const mq = window.matchMedia("(prefers-color-scheme: dark)");
    mq.addEventListener("change", cb);
    offs.push(() => mq.removeEventListener("change", cb));
  } catch (e) {
    /* ignore */
  }
  return () => offs.forEach((f) => f());
}

/**
 * The theme colours in effect at element el ({fg, muted, bg, sel, grid, ...}, from the CSS custom
 * properties --rw-<name>) for drawing on a canvas. getComputedStyle forces a style pass: read once
 * per paint, not per cell.
 */
export function themeColors(el) {
  const style = getComputedStyle(el);
  const out = {};
  for (const [name, fallback] of Object.entries(THEMES.light)) {
    out[name] = style.getPropertyValue(`--rw-${name}`).trim() || fallback;
  }
  return out;
}
