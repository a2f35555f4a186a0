// The palette, in one place: colour scales, the light/dark theme, categorical and sign colours.
// Sequential: viridis and cividis (colour-blind safe, perceptually uniform).
// Diverging: ColorBrewer RdBu (colour-blind safe), blue = negative, red = positive.

const STOPS = {
  viridis: [
    "#440154",
    "#482878",
    "#3e4989",
    "#31688e",
    "#26828e",
    "#1f9e89",
    "#35b779",
    "#6ece58",
    "#b5de2b",
    "#fde725",
  ],
  cividis: [
    "#00224e",
    "#123570",
    "#3b496c",
    "#575d6d",
    "#707173",
    "#8a8779",
    "#a69d75",
    "#c4b56c",
    "#e4cf5b",
    "#fee838",
  ],
  rdbu: [
    "#053061",
    "#2166ac",
    "#4393c3",
    "#92c5de",
    "#d1e5f0",
    "#f7f7f7",
    "#fddbc7",
    "#f4a582",
    "#d6604d",
    "#b2182b",
    "#67001f",
  ],
};

/**
 * Theme colours; style.js turns them into the CSS custom properties --rw-<name>. `attention`: the
 * ink of attention weights, which shade the background (an RdBu blue, dark or light to stand out
 * on the theme); `masked`: the causal mask above a pattern's diagonal.
 */
export const THEMES = {
  light: {
    fg: "#1f2328",
    muted: "#59636e",
    bg: "#ffffff",
    panel: "#f6f8fa",
    border: "#d0d7de",
    accent: "#000000",
    sel: "#ff2d95",
    grid: "rgba(255,255,255,0.55)",
    error: "#d1242f",
    shadow: "rgba(0,0,0,0.25)",
    attention: STOPS.rdbu[1],
    masked: "rgba(0,0,0,0.05)",
  },
  dark: {
    fg: "#e6edf3",
    muted: "#9198a1",
    bg: "#111418",
    panel: "#1b1f24",
    border: "#3d444d",
    accent: "#ffffff",
    sel: "#ff5fb0",
    grid: "rgba(0,0,0,0.45)",
    error: "#d1242f",
    shadow: "rgba(0,0,0,0.25)",
    attention: STOPS.rdbu[3],
    masked: "rgba(255,255,255,0.06)",
  },
};

// Okabe–Ito palette (colour-blind safe) for categorical parts of a bar.
export const PART_COLORS = { embed: "#999999", attn: "#0072B2", mlp: "#E69F00", other: "#CC79A7" };

/** The two runs of a comparison (Okabe–Ito blue and vermillion); the ghost of an edit's original. */
export const PAIR_COLORS = { clean: "#0072B2", corrupt: "#D55E00" };

/** Bars whose sign matters: raises the target (RdBu red) or lowers it (RdBu blue). */
export const SIGN_COLORS = { up: STOPS.rdbu[8], down: STOPS.rdbu[2] };

/** Cells with no value (NaN); the darker grey sits under cell text. */
export const NAN_RGB = [128, 128, 128];
export const NAN_RGB_UNDER_TEXT = [90, 90, 90];

/** Marks drawn over heat-map cells (a block that wrote ≈0). */
export const CELL_MARK = "#000000";

/** "#rrggbb" -> [r, g, b]. */
export function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
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
  const table = lut(name);
  return [table[3 * i], table[3 * i + 1], table[3 * i + 2]];
}

export function cssAt(name, t, fallback = `rgb(${NAN_RGB.join(",")})`) {
  const c = rgbAt(name, t);
  return c ? `rgb(${c[0]},${c[1]},${c[2]})` : fallback;
}

/** Position of v on a diverging scale of half-width m: 0.5 at zero, clamped to [0, 1] (NaN stays NaN). */
export function signedT(v, m) {
  return Math.max(0, Math.min(1, 0.5 + v / (2 * m)));
}

/**
 * Theme-aware diverging fill of v on ±m: on a light background the RdBu scale (white at zero);
 * on a dark one the side's full colour with opacity |v|/m, so zero is the background, not a
 * white glare.
 */
export function divergingFill(v, m, dark) {
  if (!dark) return cssAt("rdbu", signedT(v, m));
  const c = rgbAt("rdbu", v >= 0 ? 0.9 : 0.1);
  const a = Math.min(1, Math.abs(v) / m);
  return Number.isFinite(a) && c ? `rgba(${c[0]},${c[1]},${c[2]},${a.toFixed(3)})` : "transparent";
}

/**
 * Fill and readable text colour of a heat-map cell holding v on the RdBu scale ±m. dark: the
 * side's colour blended over the dark background by |v|/m (zero is the background, as in
 * divergingFill), so a dark page has no white cells.
 */
export function divergingCell(v, m, dark = false) {
  const t = signedT(v, m);
  if (!dark) return { fill: cssAt("rdbu", t), text: textOn(rgbAt("rdbu", t)) };
  const side = rgbAt("rdbu", v >= 0 ? 0.9 : 0.1);
  const a = Math.min(1, Math.abs(v) / m);
  if (!side || !Number.isFinite(a)) return { fill: `rgb(${NAN_RGB.join(",")})`, text: "#fff" };
  const bg = hexToRgb(THEMES.dark.bg);
  const rgb = side.map((x, j) => Math.round(bg[j] * (1 - a) + x * a));
  return { fill: `rgb(${rgb.join(",")})`, text: textOn(rgb) };
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

/** RGBA bytes (C*T*4) for a [C,T] matrix through a normaliser and a colour map. */
export function colorize(values, C, T, norm, cmap, nanRGB = NAN_RGB) {
  const table = lut(cmap);
  const out = new Uint8ClampedArray(C * T * 4);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < T; i++) {
      const k = (c * T + i) * 4;
      const t = norm.t(c, i);
      if (Number.isFinite(t)) {
        const j = Math.round(t * 255) * 3;
        out[k] = table[j];
        out[k + 1] = table[j + 1];
        out[k + 2] = table[j + 2];
      } else {
        out[k] = nanRGB[0];
        out[k + 1] = nanRGB[1];
        out[k + 2] = nanRGB[2];
      }
      out[k + 3] = 255;
    }
  }
  return out;
}
