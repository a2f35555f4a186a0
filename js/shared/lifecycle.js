// When view code runs: guarded mounts, redraws that survive an error, work deferred past a paint.
import { messageBox } from "./dom.js";

/** Run f(); on error replace the contents of root by a readable message. */
export function guard(root, f) {
  try {
    return f();
  } catch (e) {
    console.warn("resid_widgets:", e);
    root.replaceChildren(messageBox(`resid_widgets cannot show this view: ${e.message || e}`));
    return null;
  }
}

/**
 * The decoded `_data` of an analysis view (decode: _data -> data, throwing on bad input), or null
 * after putting the view's `_error` (what Python could not compute) in root.
 */
export function analysisData(root, store, decode) {
  const error = store.get("_error");
  if (error) {
    root.appendChild(messageBox(error));
    return null;
  }
  return decode(store.get("_data"));
}

/** f wrapped for a store listener: an error is logged, and the next change redraws again. */
export function safely(f) {
  return (...args) => {
    try {
      f(...args);
    } catch (e) {
      console.warn("resid_widgets:", e);
    }
  };
}

/**
 * The handle ({resize, retheme, destroy}) of a view that draws itself whole: draw() runs again when
 * one of the store's `traits` changes (safely), when the theme changes and when the root's width does.
 */
export function redrawnView(root, store, traits, draw) {
  const offs = traits.map((name) => store.on(name, safely(draw)));
  let lastWidth = root.clientWidth;
  return {
    resize() {
      if (root.clientWidth !== lastWidth) {
        lastWidth = root.clientWidth;
        draw();
      }
    },
    retheme: draw,
    destroy() {
      offs.forEach((off) => off());
    },
  };
}

/**
 * fn, run once after the next frame has been painted (calls in between coalesce). Secondary
 * updates (bars, pane, top-k list) go through this so a click repaints the grid within one frame.
 */
export function afterPaint(fn) {
  let pending = false;
  const run = safely(() => {
    pending = false;
    fn();
  });
  return () => {
    if (pending) return;
    pending = true;
    if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => setTimeout(run, 0));
    else setTimeout(run, 0);
  };
}
