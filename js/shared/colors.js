// Colour scales. Sequential: viridis and cividis (colour-blind safe, perceptually uniform).
// Diverging: ColorBrewer RdBu (colour-blind safe), blue = negative, red = positive.

const STOPS = {
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
  cividis: ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8779", "#a69d75", "#c4b56c", "#e4cf5b", "#fee838"],
  rdbu: ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"],
};

function hexToRgb(h) {
  const n = parseInt(h.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const LUTS = {};

/** 256-entry RGB lookup table (Uint8ClampedArray of length 768). */
export function lut(name) {
  if (LUTS[name]) return LUTS[name];
  const stops = (STOPS[name] || STOPS.viridis).map(hexToRgb);
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2);
    const f = x - k;
    for (let j = 0; j < 3; j++) out[3 * i + j] = Math.round(stops[k][j] * (1 - f) + stops[k + 1][j] * f);
  }
  LUTS[name] = out;
  return out;
}

/** RGB triple for t in [0, 1] (NaN -> null). */
export function rgbAt(name, t) {
  if (!Number.isFinite(t)) return null;
  const i = Math.max(0, Math.min(255, Math.round(t * 255)));
  const L = lut(name);
  return [L[3 * i], L[3 * i + 1], L[3 * i + 2]];
}

export function cssAt(name, t, fallback = "rgb(128,128,128)") {
  const c = rgbAt(name, t);
  return c ? `rgb(${c[0]},${c[1]},${c[2]})` : fallback;
}

/** Relative luminance (0..1) of an RGB triple. */
export function luminance([r, g, b]) {
  const f = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

/** Black or white text, whichever reads better on the given background. */
export function textOn(rgb) {
  return rgb && luminance(rgb) > 0.22 ? "#000" : "#fff";
}

// Okabe–Ito palette (colour-blind safe) for categorical parts of a bar.
export const PART_COLORS = { embed: "#999999", attn: "#0072B2", mlp: "#E69F00", other: "#CC79A7" };
