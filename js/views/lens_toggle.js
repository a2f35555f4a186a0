// Logit lens | tuned lens: the data a lens heatmap reads for the current `lens` trait, and the toggle
// that switches it. Both lenses travel in the synced `_lenses` (resid_widgets/views/lens_switch.py),
// so the toggle works without a kernel (HTML snapshots included).
import { decodeArray } from "../shared/decode.js";
import { h, segmented } from "../shared/dom.js";
import { fmt } from "../shared/format.js";

const NAMES = { logit: "Logit lens", tuned: "Tuned lens" };

function meanOf(a) {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k];
  return a.length ? s / a.length : NaN;
}

/**
 * What the lens heatmap shows for the current lens: {lens, name, K, ids, probs, nextProb, kl,
 * logp(target) -> Float32Array [C*T] or null}. Without a tuned lens: the logit lens (kl null).
 */
export function lensData(store) {
  const { C, T } = store.meta();
  const lenses = store.get("_lenses") || {};
  const lens = store.get("lens") === "tuned" && lenses.tuned ? "tuned" : "logit";
  const own = lens === "tuned" ? lenses.tuned : null;
  const arr = (name, expect) => (own ? decodeArray(own[name], `tuned lens ${name}`) : store.array(name, expect));
  const idsA = arr("lens_ids", [C, T, null]);
  let nextProb = null;
  try {
    nextProb = arr("next_prob", [C, T]).data;
  } catch (e) {
    nextProb = null;
  }
  const kl = lenses[lens] ? decodeArray(lenses[lens].kl, `${lens} lens kl`).data : null;
  const logps = new Map();
  return {
    lens,
    name: NAMES[lens],
    K: idsA.shape[2],
    ids: idsA.data,
    probs: arr("lens_probs", [C, T, idsA.shape[2]]).data,
    nextProb,
    kl,
    logp(t) {
      if (!t) return null;
      if (!own) return t.logp;
      if (!logps.has(t.id)) {
        const p = (own.logp || {})[String(t.id)];
        logps.set(t.id, p ? decodeArray(p, `tuned lens logp ${t.text}`).data : null);
      }
      return logps.get(t.id);
    },
  };
}

/**
 * The toggle (null without a tuned lens): two buttons bound to `lens` and a note with each lens's
 * mean KL to the model's own next-token distribution.
 */
export function lensToggle(store) {
  const lenses = store.get("_lenses") || {};
  if (!lenses.tuned) return null;
  const toggle = segmented(
    [
      ["logit", "logit lens", "read each state through the final norm and unembedding"],
      ["tuned", "tuned lens", "translate each state with its trained affine map first (Belrose et al. 2023)"],
    ],
    ...store.bind("lens", "logit"),
    "which lens reads the states",
    "lens",
  );
  const kl = (name) => fmt(meanOf(decodeArray(lenses[name].kl, `${name} lens kl`).data), 2);
  const note = h("span", {
    class: "rw-sub",
    "data-rw-part": "lens-kl",
    text: `mean KL to the output: logit ${kl("logit")} · tuned ${kl("tuned")} nats`,
    title: "KL(p_final ‖ p_lens) averaged over every state and position",
  });
  const el = h("span", { class: "rw-lens-toggle" }, toggle, note);
  el.setValue = toggle.setValue;
  return el;
}
