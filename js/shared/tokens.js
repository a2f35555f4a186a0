// Token text as people read it. Token text is data: always put it in the DOM with textContent.

/** " Paris" -> "·Paris", "\n" -> "↵", "\t" -> "⇥"; byte-level BPE markers (Ġ, Ċ, ▁) mapped too. */
export function displayToken(s) {
  if (s == null) return "∅";
  let t = String(s).replace(/Ġ/g, " ").replace(/Ċ/g, "\n").replace(/▁/g, " ");
  t = t.replace(/\r/g, "␍").replace(/\n/g, "↵").replace(/\t/g, "⇥");
  const m = t.match(/^ +/);
  if (m) t = "·".repeat(m[0].length) + t.slice(m[0].length);
  if (t.length && t.trim() === "") t = t.replace(/ /g, "·");
  return t.length ? t : "∅";
}

/** Shorten to at most n characters with an ellipsis. */
export function clip(s, n) {
  const a = Array.from(s);
  return a.length <= n ? s : a.slice(0, Math.max(1, n - 1)).join("") + "…";
}
