// The vector pane's "features" mode: the selected state split exactly into sparse-autoencoder
// features (resid_widgets/views/sae_panes.py): the top features (activation, direct logit
// attribution to the target, what each decoder direction promotes / suppresses), then the other
// active features, the decoder bias and the error, which together sum to the state.
// Entries come from `_features` (embedded in snapshots) or from the kernel ({type: "features"}).
import { decodeArray } from "../shared/decode.js";
import { h, messageBox } from "../shared/dom.js";
import { fmt, fmtSigned } from "../shared/format.js";
import { maxAbs } from "../shared/scale.js";
import { NeedsKernel } from "../shared/store.js";
import { tokenEl, tokenLabel } from "../shared/tokens.js";

const COLUMNS = ["row", "act", "DLA → target", "", "‖row‖", "promotes", "suppresses"];

/** The grid rows an SAE is attached to ({"<row>": {label, d_sae}}), empty without one. */
export function featureStates(store) {
  const m = store.get("_features_meta");
  return (m && m.states) || {};
}

/**
 * Fill `body` with the features of cell (c, i) for the current target. `sortByDla` orders the
 * shown features by |DLA|; `stillCurrent()` says whether the pane still shows this cell when the
 * kernel answers, then `redraw()` runs.
 */
export function renderFeatures(store, body, c, i, { sortByDla, stillCurrent, redraw, onSelect }) {
  const { labels } = store.meta();
  const states = featureStates(store);
  if (!states[String(c)]) {
    const jump = Object.entries(states).map(([row, s]) => {
      const b = h("button", { class: "rw-chip", type: "button", text: s.label, title: `select ${s.label} at ${i}` });
      b.addEventListener("click", () => onSelect([Number(row), i]));
      return b;
    });
    body.replaceChildren(
      messageBox(`no sparse autoencoder is attached to ${labels[c]}; it is attached to:`, "info"),
      h("div", { class: "rw-chips" }, ...jump),
    );
    return;
  }
  const t = store.target(store.get("target"));
  if (!t) {
    body.replaceChildren(messageBox("the target is not precomputed", "info"));
    return;
  }
  const key = `${c}:${i}:${t.id}`;
  const entry = (store.get("_features") || {})[key];
  if (entry && entry.error) {
    body.replaceChildren(messageBox(`SAE features not available: ${entry.error}`, "info"));
  } else if (entry) {
    body.replaceChildren(...table(entry, states[String(c)], t, sortByDla));
  } else {
    body.replaceChildren(h("div", { class: "rw-note", text: "SAE features: asking the kernel…" }));
    store.request({ type: "features", state: c, position: i, target: t.text }, 30000).then(
      async () => {
        for (let n = 0; n < 50 && !(store.get("_features") || {})[key]; n++)
          await new Promise((r) => setTimeout(r, 20));
        if (stillCurrent()) redraw();
      },
      (e) => {
        if (!stillCurrent()) return;
        const why = String(e.message || e);
        const msg =
          e instanceof NeedsKernel || why.startsWith("needs the kernel")
            ? `SAE features of ${labels[c]} at position ${i} for ${tokenLabel(t.text)} were not embedded: ${why}`
            : `SAE features: ${why}`;
        body.replaceChildren(messageBox(msg, "info"));
      },
    );
  }
}

/** The table of one features_payload entry and its note. */
function table(entry, state, t, sortByDla) {
  const dla = decodeArray(entry.dla, "features dla").data;
  const act = decodeArray(entry.activation, "features activation").data;
  const vectors = decodeArray(entry.vectors, "features vectors");
  const [R, d] = vectors.shape;
  const order = Array.from({ length: R }, (_, r) => r);
  const nShown = R - 3; // then "other features", "decoder bias", "error"
  if (sortByDla) {
    const shown = order.slice(0, nShown).sort((a, b) => Math.abs(dla[b]) - Math.abs(dla[a]));
    order.splice(0, nShown, ...shown);
  }
  const m = maxAbs(Array.from(dla));
  const grid = h("div", { class: "rw-feature-table", role: "table", "aria-label": `SAE features of ${state.label}` });
  for (const x of COLUMNS) grid.appendChild(h("span", { class: "rw-sub rw-neuron-head", text: x }));
  let total = 0;
  for (const r of order) {
    const v = dla[r];
    total += v;
    let n2 = 0;
    for (let j = 0; j < d; j++) n2 += vectors.data[r * d + j] ** 2;
    const w = (50 * Math.abs(v)) / m;
    const fill = h("div", { class: `rw-neuron-fill ${v >= 0 ? "rw-up" : "rw-down"}` });
    fill.style.left = v >= 0 ? "50%" : `${50 - w}%`;
    fill.style.width = `${w}%`;
    const feature = entry.feature_ids[r];
    const name = h("span", {
      class: feature == null ? "rw-sub" : "rw-tok",
      text: entry.labels[r],
      "data-rw-feature": feature == null ? entry.labels[r] : String(feature),
    });
    grid.append(
      name,
      h("span", { class: "rw-num", text: feature == null ? "" : fmt(act[r]) }),
      h("div", { class: "rw-neuron-track" }, fill),
      h("span", { class: "rw-num", text: fmtSigned(v) }),
      h("span", { class: "rw-sub", text: fmt(Math.sqrt(n2), 2) }),
      tokens(entry.bs_top[r]),
      tokens(entry.bs_bottom[r]),
    );
  }
  const nActive = entry.n_active;
  const note =
    `${state.label} at position ${entry.position} split by its SAE (${nActive} of ${state.d_sae || "?"} features ` +
    `active, reconstruction error ${fmt(100 * entry.reconstruction_error, 1)}%): the rows sum exactly to the ` +
    `state; DLA to ${tokenLabel(t.text)} in logit units (frozen final norm), sum ${fmtSigned(total)}; ` +
    "tokens: what each feature's decoder direction promotes / suppresses";
  return [grid, h("div", { class: "rw-note", "data-rw-part": "features-note", text: note })];
}

function tokens(list) {
  const toks = (list || []).slice(0, 5).map(([s]) => s);
  return h(
    "span",
    {
      class: "rw-chips rw-neuron-toks",
      title: (list || []).map(([s, v]) => `${tokenLabel(s)} ${fmt(v, 2)}`).join("  "),
    },
    ...toks.map((s) => tokenEl(s)),
  );
}
