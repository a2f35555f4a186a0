// The strip of the prompt's tokens that picks a position (dashboard, standalone bars, analysis views).
import { h } from "./dom.js";
import { tokenEl } from "./tokens.js";

/**
 * A strip of the prompt's tokens (class rw-prompt); clicking token i calls onPick(i).
 * `title(i)` is each chip's tooltip; `enabled(i)` false greys a chip out (a snapshot that holds
 * only some positions). Returns the element, with mark(i) to show the current position.
 */
export function promptStrip(tokens, onPick, { title, enabled = () => true, label = "position" } = {}) {
  const strip = h("div", { class: "rw-prompt", "aria-label": label, "data-rw": "prompt-strip" });
  const chips = tokens.map((t, i) => {
    const chip = tokenEl(t, { title: title ? title(i) : `position ${i}`, "data-rw-pos": String(i) });
    if (enabled(i)) chip.addEventListener("click", () => onPick(i));
    else chip.setAttribute("aria-disabled", "true");
    strip.appendChild(chip);
    return chip;
  });
  strip.mark = (p) => chips.forEach((c, i) => c.setAttribute("aria-current", String(i === p)));
  return strip;
}

/**
 * The prompt strip of an analysis view (and its root's data-rw-position): a click asks Python
 * to recompute at that position; a snapshot (no kernel) holds only the position it was made at.
 */
export function positionPicker(root, store, tokens, position, what) {
  root.dataset.rwPosition = String(position);
  const live = !store.get("_rw_static");
  const title = (i) => {
    if (live) return `position ${i}: ${what} here`;
    if (i === position) return `position ${i}: shown`;
    return `this snapshot holds position ${position} only; in a notebook, a click recomputes ${what} here`;
  };
  const strip = promptStrip(
    tokens,
    (i) => {
      if (i !== position) store.set("position", i);
    },
    { enabled: (i) => live || i === position, title },
  );
  strip.mark(position);
  return strip;
}
