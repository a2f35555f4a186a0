import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeArray } from "../../js/shared/decode.js";
import { patternData, rasterize, scoreTables } from "../../js/views/attention_patterns/pattern_data.js";

const f16 = (x) => {
  // exact float16 bits for the few values used here
  const table = { 0: 0x0000, 1: 0x3c00, 0.5: 0x3800, 0.25: 0x3400, 0.75: 0x3a00 };
  if (!(x in table)) throw new Error(`no float16 for ${x}`);
  return table[x];
};
const half = (values) => ({
  dtype: "float16",
  shape: [values.length],
  data: new Uint8Array(new Uint16Array(values.map(f16)).buffer),
});

test("uint16 and uint8 payloads decode (also at an odd byte offset)", () => {
  const u16 = new Uint16Array([7, 65535, 0]);
  const a = decodeArray({ dtype: "uint16", shape: [3], data: new DataView(u16.buffer) });
  assert.deepEqual(Array.from(a.data), [7, 65535, 0]);
  const bytes = new Uint8Array([9, 7, 0, 255, 255]);
  const b = decodeArray({ dtype: "uint16", shape: [2], data: bytes.subarray(1) });
  assert.deepEqual(Array.from(b.data), [7, 65535]);
  const c = decodeArray({ dtype: "uint8", shape: [2, 2], data: new Uint8Array([1, 2, 3, 250]) });
  assert.deepEqual(Array.from(c.data), [1, 2, 3, 250]);
});

test("a dense pattern is the lower triangle, row by row", () => {
  // 1 head, T = 3: rows [1], [0.5, 0.5], [0.25, 0.25, 0.5]
  const p = { format: "dense", T: 3, values: { ...half([1, 0.5, 0.5, 0.25, 0.25, 0.5]), shape: [1, 6] } };
  const pd = patternData(p, 1);
  assert.equal(pd.at(0, 2, 2), 0.5);
  assert.equal(pd.at(0, 1, 0), 0.5);
  assert.ok(Number.isNaN(pd.at(0, 0, 2)), "above the diagonal: masked");
  assert.equal(pd.kept(0, 2), 1);
  const seen = [];
  pd.row(0, 2, (s, a) => seen.push([s, a]));
  assert.deepEqual(seen, [
    [0, 0.25],
    [1, 0.25],
    [2, 0.5],
  ]);
  assert.equal(pd.sparsified, false);
  assert.throws(() => patternData(p, 2), /2 heads/);
});

test("a sparse pattern holds counts, sources and weights; left-out weights are null", () => {
  // 1 head, T = 3, at most 1 weight per row
  const p = {
    format: "sparse",
    T: 3,
    k: 1,
    sparsified: true,
    counts: { dtype: "uint8", shape: [1, 3], data: new Uint8Array([1, 1, 1]) },
    index: { dtype: "uint16", shape: [3], data: new Uint8Array(new Uint16Array([0, 1, 2]).buffer) },
    values: half([1, 0.5, 0.5]),
  };
  const pd = patternData(p, 1);
  assert.equal(pd.at(0, 2, 2), 0.5);
  assert.equal(pd.at(0, 2, 0), null);
  assert.equal(pd.kept(0, 1), 0.5);
  assert.equal(pd.sparsified, true);
  const bad = { ...p, counts: { ...p.counts, data: new Uint8Array([1, 1, 2]) } };
  assert.throws(() => patternData(bad, 1), /counted/);
});

test("rasterizing keeps the largest weight under each pixel", () => {
  const p = {
    format: "dense",
    T: 4,
    values: { ...half([1, 0.25, 0.75, 0.5, 0.25, 0.25, 0, 0, 0, 1]), shape: [1, 10] },
  };
  const pd = patternData(p, 1);
  assert.deepEqual(Array.from(rasterize(pd, 0, 4)), [1, 0, 0, 0, 0.25, 0.75, 0, 0, 0.5, 0.25, 0.25, 0, 0, 0, 0, 1]);
  // 2 x 2 pixels, 2 tokens each
  assert.deepEqual(Array.from(rasterize(pd, 0, 2)), [1, 0, 0.5, 1]);
});

test("head scores must match the layers x heads they claim", () => {
  const d = {
    n_layers: 2,
    n_heads: 2,
    kinds: ["sink"],
    scores: { sink: { dtype: "float32", shape: [2, 2], data: new Float32Array([0, 1, 0.5, 0.25]) } },
  };
  assert.deepEqual(Array.from(scoreTables(d).sink), [0, 1, 0.5, 0.25]);
  assert.throws(() => scoreTables({ ...d, n_heads: 3 }), /does not match/);
  assert.throws(() => scoreTables(null), /empty payload/);
});
