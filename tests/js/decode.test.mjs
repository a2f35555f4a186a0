import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeArray, decodeFloat16, halfToFloat, toBytes } from "../../js/shared/decode.js";

test("float16 bits decode to the right numbers", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), Math.pow(2, -24));
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.equal(halfToFloat(0x3555), 0.333251953125);
});

test("float16 at an odd byte offset", () => {
  const buf = new Uint8Array([0xff, 0x00, 0x3c, 0x00, 0xc0]);
  const out = decodeFloat16(buf.subarray(1));
  assert.deepEqual(Array.from(out), [1, -2]);
});

test("float32 from a DataView with an offset (ipywidgets buffers)", () => {
  const f = new Float32Array([9, 1.5, -2.25, 3]);
  const dv = new DataView(f.buffer, 4, 12);
  const a = decodeArray({ dtype: "float32", shape: [3], data: dv });
  assert.deepEqual(Array.from(a.data), [1.5, -2.25, 3]);
  assert.deepEqual(a.shape, [3]);
});

test("unaligned float32 is copied, not misread", () => {
  const bytes = new Uint8Array(9);
  new DataView(bytes.buffer).setFloat32(1, 7.5, true);
  new DataView(bytes.buffer).setFloat32(5, -1, true);
  const a = decodeArray({ dtype: "float32", shape: [2], data: new DataView(bytes.buffer, 1, 8) });
  assert.deepEqual(Array.from(a.data), [7.5, -1]);
});

test("int32 and base64 input (static snapshots)", () => {
  const i = new Int32Array([5, -7, 1000000]);
  const b64 = Buffer.from(i.buffer).toString("base64");
  const a = decodeArray({ dtype: "int32", shape: [1, 3], data: b64 });
  assert.deepEqual(Array.from(a.data), [5, -7, 1000000]);
});

test("bad payloads give readable errors", () => {
  assert.throws(() => decodeArray(undefined, "norms"), /norms: no data was sent/);
  assert.throws(() => decodeArray({ dtype: "float64", shape: [1], data: new Uint8Array(8) }), /unknown dtype/);
  assert.throws(
    () => decodeArray({ dtype: "float32", shape: [2, 2], data: new Uint8Array(12) }, "x"),
    /x: 12 bytes do not match shape \[2, 2\]/,
  );
  assert.throws(() => decodeArray({ dtype: "float32", shape: [1] }), /buffer is missing/);
});

test("toBytes accepts the forms buffers arrive in", () => {
  const u = new Uint8Array([1, 2, 3]);
  assert.deepEqual(Array.from(toBytes(u.buffer)), [1, 2, 3]);
  assert.deepEqual(Array.from(toBytes(new DataView(u.buffer, 1))), [2, 3]);
  assert.equal(toBytes(null), null);
});

test("prob8: a probability in one byte (steps of 1/254), 255 is NaN", () => {
  const a = decodeArray({ dtype: "prob8", shape: [2, 2], data: new Uint8Array([0, 127, 254, 255]) });
  assert.ok(a.data instanceof Float32Array);
  assert.deepEqual(Array.from(a.data.subarray(0, 3)), [0, Math.fround(127 / 254), 1]);
  assert.ok(Number.isNaN(a.data[3]));
  assert.deepEqual(a.shape, [2, 2]);
});
