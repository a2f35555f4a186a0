import { test } from "node:test";
import assert from "node:assert/strict";
import { placeTooltip } from "../../js/shared/tooltip.js";
import { findTokens } from "../../js/shared/token_search.js";

const box = (left, top, right, bottom) => ({ left, top, right, bottom });

test("a tooltip near the right or bottom edge flips and stays inside the root and the viewport", () => {
  const root = box(100, 50, 700, 900);
  // room to the right and below: beside the pointer
  assert.deepEqual(placeTooltip(200, 100, 150, 80, root, 800), { left: 214, top: 114 });
  // near the right edge: to the left of the pointer, inside the root
  const right = placeTooltip(690, 100, 150, 80, root, 800);
  assert.equal(right.left, 690 - 150 - 14);
  // near the bottom of the viewport (the root goes on below it): above the pointer
  const bottom = placeTooltip(200, 790, 150, 200, root, 800);
  assert.equal(bottom.top, 790 - 200 - 14);
  assert.ok(bottom.top + 200 <= 800);
  // wider than the root: at its left edge; taller than the visible root: inside the viewport
  assert.equal(placeTooltip(300, 100, 700, 80, root, 800).left, 100);
  const tall = placeTooltip(300, 60, 150, 300, box(100, 40, 700, 120), 800);
  assert.ok(tall.top >= 0 && tall.top + 300 <= 800);
});

test("token search matches raw and displayed token text, case-insensitively", () => {
  const tokens = [" Paris", "paris", "\n", " France", "Par"];
  assert.deepEqual(findTokens(tokens, "paris"), [0, 1]);
  assert.deepEqual(findTokens(tokens, "·Par"), [0]);
  assert.deepEqual(findTokens(tokens, " Par"), [0]);
  assert.deepEqual(findTokens(tokens, "↵"), [2]);
  assert.deepEqual(findTokens(tokens, ""), []);
});
