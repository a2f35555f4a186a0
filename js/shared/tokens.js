// Token text as people read it. Token text is data: it goes into the DOM with textContent only,
// in an element of its own that is isolated from the text around it (<bdi>), and its invisible and
// control characters are shown as visible escapes, so a token such as U+202E (RIGHT-TO-LEFT
// OVERRIDE) can neither blank its chip nor reverse the labels after it.
// resid_widgets/views/payload.py (display_token) applies the same rule to figures: keep them in step.
import { h } from "./dom.js";

// Characters shown as escapes: they are invisible or reorder / hide the text around them.
const INVISIBLE_RANGES = [
  "\\u0000-\\u001f\\u007f-\\u009f", // C0 controls, DEL, C1 controls
  "\\u00ad\\u061c\\u180e", // soft hyphen, Arabic letter mark, Mongolian vowel separator
  "\\u200b-\\u200f", // zero-width space / non-joiner / joiner, left-to-right and right-to-left marks
  "\\u2028-\\u202e", // line and paragraph separators, bidi embeddings and overrides (U+202E)
  "\\u2060-\\u206f", // word joiner, invisible operators, bidi isolates, deprecated format controls
  "\\ufeff\\ufff9-\\ufffb", // zero-width no-break space (BOM), interlinear annotation marks
  "\\u{e0000}-\\u{e007f}", // tag characters
].join("");
const INVISIBLE = new RegExp(`[${INVISIBLE_RANGES}]`, "gu");
// Blank characters a token may consist of entirely (then each is shown).
const BLANK = /[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/gu;
const ONLY_BLANK = /^[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+$/u;
const NAMED = { "\n": "↵", "\t": "⇥" };

/**
 * A visible stand-in for one invisible or control character: "↵", "⇥", else "⟨U+202E⟩" (control
 * pictures such as "␇" are missing from common fonts and would show as empty boxes).
 */
export function visibleChar(ch) {
  return NAMED[ch] || `⟨U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`;
}

/**
 * " Paris" -> "·Paris", "\n" -> "↵", "\t" -> "⇥", "\u0007" -> "⟨U+0007⟩", "\u202e" -> "⟨U+202E⟩"; byte-level
 * BPE markers (Ġ, Ċ, ▁) mapped too; a token of blanks only shows each of them.
 */
export function displayToken(s) {
  if (s == null) return "∅";
  let t = String(s).replace(/Ġ/g, " ").replace(/Ċ/g, "\n").replace(/▁/g, " ");
  t = t.replace(INVISIBLE, visibleChar);
  if (ONLY_BLANK.test(t)) t = t.replace(BLANK, (ch) => (ch === " " ? "·" : visibleChar(ch)));
  else t = t.replace(/^ +/, (spaces) => "·".repeat(spaces.length));
  return t.length ? t : "∅";
}

/** What a person typed as a token ("·Paris", "⟨U+202E⟩", "↵") back to its text (inverse of displayToken). */
export function tokenFromDisplay(text) {
  return text
    .replace(/⟨U\+([0-9A-Fa-f]{4,6})⟩/g, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/·/g, " ")
    .replace(/↵/g, "\n")
    .replace(/⇥/g, "\t");
}

/** Text between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE: the plain-text <bdi>. */
export function isolateText(text) {
  return `\u2068${text}\u2069`;
}

/** A token shown inside a longer string (a title, a tooltip line, an option): isolated display form. */
export function tokenLabel(s) {
  return isolateText(displayToken(s));
}

/** A token drawn on a canvas, clipped to at most n characters (each fillText isolates it too). */
export function canvasToken(s, n) {
  return isolateText(clip(displayToken(s), n));
}

/** A token in the DOM: <bdi class="rw-tok"> (a boxed token) holding its display form; attrs as for h(). */
export function tokenEl(s, attrs = {}) {
  return h("bdi", { ...attrs, class: attrs.class ? `rw-tok ${attrs.class}` : "rw-tok", text: displayToken(s) });
}

/** A token inside a larger element (a chip with a number): a plain <bdi> holding its display form. */
export function bareToken(s) {
  return h("bdi", { text: displayToken(s) });
}

/** Shorten to at most n characters with an ellipsis. */
export function clip(s, n) {
  const a = Array.from(s);
  return a.length <= n ? s : a.slice(0, Math.max(1, n - 1)).join("") + "…";
}
