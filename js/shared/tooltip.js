// One tooltip per view root; lines are set with textContent.
import { h } from "./dom.js";

export function makeTooltip(root) {
  const tip = h("div", { class: "rw-tooltip", role: "tooltip", hidden: true });
  root.appendChild(tip);
  return {
    el: tip,
    /** lines: array of strings or [key, value] pairs; x, y: client coordinates. */
    show(x, y, lines) {
      tip.replaceChildren(
        ...lines.map((line) =>
          Array.isArray(line)
            ? h(
                "div",
                { class: "rw-tip-row" },
                h("span", { class: "rw-tip-k", text: line[0] }),
                h("span", { class: "rw-tip-v", text: line[1] }),
              )
            : h("div", { class: "rw-tip-line", text: line }),
        ),
      );
      tip.hidden = false;
      // positioned inside the root (fixed positioning breaks under transformed ancestors)
      const rr = root.getBoundingClientRect();
      const r = tip.getBoundingClientRect();
      const { left, top } = placeTooltip(x, y, r.width, r.height, rr, window.innerHeight);
      tip.style.left = `${left - rr.left}px`;
      tip.style.top = `${top - rr.top}px`;
    },
    hide() {
      tip.hidden = true;
    },
  };
}

/**
 * Where a tooltip of size w x h goes for a pointer at (x, y) (client coordinates): beside the
 * pointer, flipped to its other side when it would leave the root's box (rootBox, a DOMRect), then
 * clamped horizontally into that box and vertically into the part of the box the viewport
 * (0..viewH) shows; when that part is shorter than the tooltip, anywhere in the viewport.
 * Returns {left, top} in client coordinates.
 */
export function placeTooltip(x, y, w, h, rootBox, viewH, pad = 14) {
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  let left = x + pad;
  if (left + w > rootBox.right - 2) left = x - w - pad;
  left = clamp(left, rootBox.left, Math.max(rootBox.left, rootBox.right - w));
  let lo = Math.max(rootBox.top, 0) + 2,
    hi = Math.min(rootBox.bottom, viewH) - h - 2;
  if (hi < lo) {
    lo = 2;
    hi = Math.max(2, viewH - h - 2);
  }
  let top = y + pad;
  if (top > hi) top = y - h - pad;
  return { left, top: clamp(top, lo, hi) };
}
