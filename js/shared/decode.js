// Binary payload decoding: {dtype, shape, data} where data arrives as a DataView (ipywidgets
// binary buffer), an ArrayBuffer, a typed array, or a base64 string (static snapshots).

let HALF_LUT = null;

function buildHalfLut() {
  const lut = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) lut[h] = halfToFloat(h);
  return lut;
}

/** One IEEE-754 binary16 value (as uint16 bits) to a JS number. */
export function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x03ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

/** Float16 bytes (little-endian) to a Float32Array. */
export function decodeFloat16(u8) {
  if (!HALF_LUT) HALF_LUT = buildHalfLut();
  const n = u8.byteLength >> 1;
  const out = new Float32Array(n);
  if (u8.byteOffset % 2 === 0) {
    const u16 = new Uint16Array(u8.buffer, u8.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = HALF_LUT[u16[i]];
  } else {
    for (let i = 0; i < n; i++) out[i] = HALF_LUT[u8[2 * i] | (u8[2 * i + 1] << 8)];
  }
  return out;
}

function base64ToBytes(s) {
  if (typeof atob === "function") {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  // node (unit tests)
  return new Uint8Array(globalThis.Buffer.from(s, "base64"));
}

/** Whatever a buffer arrived as -> Uint8Array over the same bytes (no copy where possible). */
export function toBytes(x) {
  if (x == null) return null;
  if (x instanceof Uint8Array) return x;
  if (x instanceof DataView) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (typeof x === "string") return base64ToBytes(x);
  if (typeof x === "object" && x.buffer) return toBytes(x.buffer);
  return null;
}

const SIZES = { float16: 2, float32: 4, int32: 4, uint16: 2, uint8: 1, prob8: 1 };
// "prob8": a probability in one byte, round(p * 254); 255 is NaN (resid_widgets/views/payload.py)
const PROB8_STEPS = 254;
const INTS = { int32: Int32Array, uint16: Uint16Array, uint8: Uint8Array };

/**
 * Decode a payload into {data: Float32Array|Int32Array|Uint16Array|Uint8Array, shape}. Throws an
 * Error with a readable message when the payload is missing, empty or does not match its shape.
 */
export function decodeArray(p, name = "array") {
  if (!p || typeof p !== "object") throw new Error(`${name}: no data was sent`);
  const { dtype, shape } = p;
  if (!(dtype in SIZES)) throw new Error(`${name}: unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape)) throw new Error(`${name}: missing shape`);
  const n = shape.reduce((a, b) => a * b, 1);
  const u8 = toBytes(p.data);
  if (!u8) throw new Error(`${name}: the binary buffer is missing`);
  const need = n * SIZES[dtype];
  if (u8.byteLength !== need) {
    throw new Error(
      `${name}: ${u8.byteLength} bytes do not match shape [${shape.join(", ")}] of ${dtype} (${need} bytes)`,
    );
  }
  let data;
  if (dtype === "float16") data = decodeFloat16(u8);
  else if (dtype === "prob8") {
    data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = u8[i] === 255 ? NaN : u8[i] / PROB8_STEPS;
  } else {
    const Ctor = dtype === "float32" ? Float32Array : INTS[dtype];
    if (u8.byteOffset % SIZES[dtype] === 0) data = new Ctor(u8.buffer, u8.byteOffset, n);
    else data = new Ctor(u8.slice().buffer);
  }
  return { data, shape: shape.slice() };
}
