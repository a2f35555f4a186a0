// The payloads of AttentionPatterns decoded: the [L, H] head scores and one layer's patterns (the
// causal lower triangle, dense or as the largest weights of each row), and a head's pattern
// painted on a raster.
import { decodeArray } from "../../shared/decode.js";

/** The [L, H] head scores of `_data`, decoded and checked: {kind: Float32Array}. */
export function scoreTables(data) {
  if (!data || data.n_layers == null || !data.scores) throw new Error("no attention data to show (empty payload)");
  const tables = {};
  for (const kind of data.kinds) {
    const table = decodeArray(data.scores[kind], `${kind} scores`);
    if (table.shape.join() !== [data.n_layers, data.n_heads].join()) {
      throw new Error(
        `${kind} scores: shape [${table.shape}] does not match ${data.n_layers} layers x ${data.n_heads} heads`,
      );
    }
    tables[kind] = table.data;
  }
  return tables;
}

/**
 * One layer's pattern payload -> {T, H, format, sparsified, k, row(head, t, cb(s, α)), at(head, t, s),
 * kept(head, t)}. "dense": the causal lower triangle row by row; "sparse": per row a count, then
 * (source, α) pairs (the largest weights of the row). at() is NaN above the diagonal and null for a
 * weight a sparse payload left out.
 */
export function patternData(payload, H) {
  if (!payload || !payload.format) throw new Error("no pattern data for this layer");
  const T = payload.T;
  if (payload.format === "dense") return densePattern(payload, T, H);
  if (payload.format !== "sparse") throw new Error(`pattern: unknown format ${JSON.stringify(payload.format)}`);
  return sparsePattern(payload, T, H);
}

function densePattern(payload, T, H) {
  const N = (T * (T + 1)) / 2;
  const values = decodeArray(payload.values, "pattern");
  if (values.shape.join() !== [H, N].join()) {
    throw new Error(`pattern: shape [${values.shape}] is not ${H} heads x ${N} (lower triangle of ${T})`);
  }
  const weights = values.data;
  const start = (head, t) => head * N + (t * (t + 1)) / 2;
  return {
    T,
    H,
    format: "dense",
    sparsified: false,
    k: T,
    row(head, t, cb) {
      const o = start(head, t);
      for (let s = 0; s <= t; s++) cb(s, weights[o + s]);
    },
    at(head, t, s) {
      return s > t ? NaN : weights[start(head, t) + s];
    },
    kept(head, t) {
      let mass = 0;
      const o = start(head, t);
      for (let s = 0; s <= t; s++) mass += weights[o + s];
      return mass;
    },
  };
}

function sparsePattern(payload, T, H) {
  const counts = decodeArray(payload.counts, "pattern counts");
  const sources = decodeArray(payload.index, "pattern sources").data;
  const weights = decodeArray(payload.values, "pattern weights").data;
  if (counts.shape.join() !== [H, T].join()) {
    throw new Error(`pattern counts: shape [${counts.shape}] is not ${H} heads x ${T} rows`);
  }
  const offsets = new Int32Array(H * T + 1);
  for (let i = 0; i < H * T; i++) offsets[i + 1] = offsets[i] + counts.data[i];
  if (offsets[H * T] !== sources.length || sources.length !== weights.length) {
    throw new Error(
      `pattern: ${offsets[H * T]} weights counted, ${sources.length} sources and ${weights.length} weights sent`,
    );
  }
  const first = (head, t) => offsets[head * T + t];
  const end = (head, t) => offsets[head * T + t + 1];
  return {
    T,
    H,
    format: "sparse",
    sparsified: !!payload.sparsified,
    k: payload.k,
    row(head, t, cb) {
      for (let j = first(head, t); j < end(head, t); j++) cb(sources[j], weights[j]);
    },
    at(head, t, s) {
      if (s > t) return NaN;
      for (let j = first(head, t); j < end(head, t); j++) if (sources[j] === s) return weights[j];
      return null;
    },
    kept(head, t) {
      let mass = 0;
      for (let j = first(head, t); j < end(head, t); j++) mass += weights[j];
      return mass;
    },
  };
}

/** Per-pixel maxima of one head's pattern on a P x P raster (P <= T: each pixel covers T/P tokens). */
export function rasterize(pattern, head, P) {
  const { T } = pattern;
  const out = new Float32Array(P * P);
  for (let t = 0; t < T; t++) {
    const i = Math.floor((t * P) / T);
    pattern.row(head, t, (s, a) => {
      const k = i * P + Math.floor((s * P) / T);
      if (a > out[k]) out[k] = a;
    });
  }
  return out;
}

/**
 * The raster on an offscreen P x P canvas: colour `ink` ([r, g, b]) at opacity √α, so that small
 * weights stay visible; the causal mask above the diagonal shaded `masked` (a CSS colour).
 */
export function rasterCanvas(raster, P, ink, masked) {
  const canvas = document.createElement("canvas");
  canvas.width = P;
  canvas.height = P;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = masked;
  for (let i = 0; i < P; i++) ctx.fillRect(i + 1, i, P - i - 1, 1);
  const img = ctx.getImageData(0, 0, P, P);
  for (let k = 0; k < P * P; k++) {
    const a = raster[k];
    if (a > 0) {
      img.data.set(ink, 4 * k);
      img.data[4 * k + 3] = Math.round(255 * Math.sqrt(Math.min(1, a)));
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
