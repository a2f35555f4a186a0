// Find positions of a long prompt by their token text: a small input above a grid. Typing lists the
// positions whose token contains the text ("k of n") and picks the first at or after the current
// column; Enter or ↓ picks the next, ↑ the previous. Picking is what a click on the column does
// (the caller selects it and scrolls it into view). Keys typed in the box stay in the box.
import { h } from "./dom.js";
import { keepKeys } from "./keys.js";
import { displayToken } from "./tokens.js";

/** Prompts longer than this get a search box. */
export const SEARCH_MIN_TOKENS = 40;

/** Positions whose token contains `query` (case-insensitive, raw text or its display form "·Paris"). */
export function findTokens(tokens, query) {
  const q = String(query || "").toLowerCase();
  if (!q) return [];
  const out = [];
  tokens.forEach((t, i) => {
    if (
      String(t ?? "")
        .toLowerCase()
        .includes(q) ||
      displayToken(t).toLowerCase().includes(q)
    )
      out.push(i);
  });
  return out;
}

/**
 * A search box over `tokens`: onPick(position) for each match the user goes to; current() is the
 * selected position (the first pick is the first match at or after it). Returns {el, input}.
 */
export function tokenSearch(tokens, onPick, current = () => 0) {
  const input = h("input", {
    type: "text",
    class: "rw-token-search",
    "data-rw": "token-search",
    placeholder: "find token…",
    "aria-label": "find positions by token text (Enter or ↓: next, ↑: previous)",
    autocomplete: "off",
    spellcheck: "false",
  });
  const count = h("span", { class: "rw-sub", "data-rw-part": "token-search-count", "aria-live": "polite" });
  let matches = [];
  let k = -1;

  function go(next) {
    if (!matches.length) return;
    k = (next + matches.length) % matches.length;
    count.textContent = `${k + 1} of ${matches.length}`;
    onPick(matches[k]);
  }

  input.addEventListener("input", () => {
    matches = findTokens(tokens, input.value);
    k = -1;
    if (!input.value) count.textContent = "";
    else if (!matches.length) count.textContent = "no match";
    else {
      const at = matches.findIndex((i) => i >= current());
      go(at < 0 ? 0 : at);
    }
  });
  keepKeys(
    input,
    (key, ev) => {
      if (key === "Enter" || key === "ArrowDown") go(k + 1);
      else if (key === "ArrowUp") go(k - 1);
      else {
        // typing and editing keys belong to the box: neither the grid nor the notebook sees them
        if (key !== "Escape" && key !== "Tab") ev.stopPropagation();
        return false;
      }
      return true;
    },
    { aliases: false },
  );
  const el = h("div", { class: "rw-bar rw-search-bar" }, input, count);
  return { el, input };
}
