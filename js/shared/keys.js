// Keys of a focused view. A view keeps the keys it handles (preventDefault + stopPropagation, so
// JupyterLab's command-mode shortcuts such as j/k/arrows do not also move the notebook) and lets
// every other key reach the host (Shift+Enter, Ctrl+S, Escape, ...). Every view goes through here.

/** vi-style aliases: in a focused grid h/j/k/l move like the arrows (and so never reach the notebook). */
export const KEY_ALIASES = { h: "ArrowLeft", j: "ArrowDown", k: "ArrowUp", l: "ArrowRight" };

/**
 * Listen for keydown on el; handle(key, ev) returns true when the view handled the key (the key
 * is normalised: KEY_ALIASES applied; with Ctrl/Meta/Alt/Shift the key is never taken, so
 * Shift+Enter still runs the cell). `native` lists
 * keys the element acts on by itself (a slider's arrows): they are kept from the host without
 * preventDefault. Returns a function that removes the listener.
 */
export function keepKeys(el, handle, { native = [], aliases = true } = {}) {
  const onKey = (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.shiftKey || ev.isComposing) return;
    const key = (aliases && KEY_ALIASES[ev.key]) || ev.key;
    if (native.includes(ev.key)) {
      ev.stopPropagation();
      return;
    }
    if (!handle(key, ev)) return;
    ev.preventDefault();
    ev.stopPropagation();
  };
  el.addEventListener("keydown", onKey);
  return () => el.removeEventListener("keydown", onKey);
}

/** The keys a range input moves by itself. */
export const SLIDER_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"];
/** The keys a select element acts on by itself. */
export const SELECT_KEYS = [...SLIDER_KEYS, " ", "Enter"];
