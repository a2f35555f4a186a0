// The top neurons of one MLP layer under the bars (opened by clicking its bar): name, DLA bar,
// activation and the tokens each neuron's contribution at this activation promotes (↑) and
// suppresses (↓). Snapshots embed them for the precomputed targets; a live view asks the kernel.
import { decodeArray } from "../../shared/decode.js";
import { h, messageBox } from "../../shared/dom.js";
import { fmt, fmtSigned } from "../../shared/format.js";
import { maxAbs } from "../../shared/scale.js";
import { NeedsKernel } from "../../shared/store.js";
import { tokenEl, tokenLabel } from "../../shared/tokens.js";

const COLUMNS = ["neuron", "DLA", "", "act", "promotes ↑ / suppresses ↓ here"];

/**
 * The panel (el) and show(layer, target, position): layer null closes it. onClose() is the close
 * button; onArrive() runs when the kernel's answer has arrived (the view redraws).
 */
export function createNeuronPanel(store, meta, { onClose, onArrive }) {
  const el = h("div", { class: "rw-neurons" });
  let token = 0;

  function show(layer, t, p) {
    const my = ++token;
    if (layer == null || !t) {
      el.replaceChildren();
      return;
    }
    const key = `${t.id}:${p}`;
    const entry = (store.get("_neurons") || {})[key];
    const close = h("button", { class: "rw-btn", type: "button", text: "×", title: "close the neuron breakdown" });
    close.setAttribute("aria-label", "close");
    close.addEventListener("click", onClose);
    const head = h(
      "div",
      { class: "rw-bar" },
      h("b", { text: `MLP layer ${layer}: top neurons` }),
      h("span", { text: " for " }),
      tokenEl(t.text),
      h("span", { text: ` at position ${p}` }),
      close,
    );
    if (entry && entry.error) {
      el.replaceChildren(head, messageBox(`neuron breakdown not available: ${entry.error}`, "info"));
    } else if (entry) {
      el.replaceChildren(head, ...table(entry, layer, t, p));
    } else {
      el.replaceChildren(head, h("div", { class: "rw-note", text: "top neurons: asking the kernel…" }));
      const onWait = (note) =>
        my === token && el.replaceChildren(head, h("div", { class: "rw-note", text: `top neurons: ${note}` }));
      store.request({ type: "neurons", target: t.text, position: p }, { onWait }).then(
        async () => {
          for (let i = 0; i < 50 && !(store.get("_neurons") || {})[key]; i++)
            await new Promise((r) => setTimeout(r, 20));
          if (my === token) onArrive();
        },
        (e) => {
          if (my !== token) return;
          const needsKernel = e instanceof NeedsKernel || String(e.message || e).startsWith("needs the kernel");
          const msg = needsKernel
            ? `top neurons for ${tokenLabel(t.text)} at position ${p} were not precomputed: ${e.message || e}`
            : `top neurons: ${e.message || e}`;
          el.replaceChildren(head, messageBox(msg, "info"));
        },
      );
    }
  }

  /**
   * The table of an entry ({index, dla, act: [L, n], bs_top, bs_bottom: [L][n][tokens]}) and its
   * note.
   */
  function table(entry, layer, t, p) {
    const index = decodeArray(entry.index, "neurons index");
    const dla = decodeArray(entry.dla, "neurons dla");
    const act = decodeArray(entry.act, "neurons act");
    const n = index.shape[1];
    if (layer < 0 || layer >= index.shape[0]) return [messageBox(`no neurons for layer ${layer}`, "info")];
    const values = dla.data.subarray(layer * n, (layer + 1) * n);
    const m = maxAbs(values);
    const shown = values.reduce((a, v) => a + v, 0);
    const c = meta.labels.indexOf(`mlp.${layer}`);
    const total = c >= 0 ? t.dla[c * meta.T + p] : NaN;
    const grid = h("div", {
      class: "rw-neuron-table",
      role: "table",
      "aria-label": `top neurons of MLP layer ${layer}`,
    });
    for (const x of COLUMNS) grid.appendChild(h("span", { class: "rw-sub rw-neuron-head", text: x }));
    values.forEach((v, j) => {
      const w = (50 * Math.abs(v)) / m;
      const fill = h("div", { class: `rw-neuron-fill ${v >= 0 ? "rw-up" : "rw-down"}` });
      fill.style.left = v >= 0 ? "50%" : `${50 - w}%`;
      fill.style.width = `${w}%`;
      const tops = entry.bs_top[layer][j] || [];
      // older payloads have no suppressed tokens
      const bottoms = ((entry.bs_bottom || [])[layer] || [])[j] || [];
      grid.append(
        h("span", { class: "rw-tok rw-neuron-name", text: `L${layer}N${index.data[layer * n + j]}` }),
        h("div", { class: "rw-neuron-track" }, fill),
        h("span", { class: "rw-num", text: fmtSigned(v) }),
        h("span", { class: "rw-sub", text: fmt(act.data[layer * n + j]) }),
        h(
          "span",
          {
            class: "rw-chips rw-neuron-toks",
            title: `promotes ${tops.map(tokenLabel).join("  ")}; suppresses ${bottoms.map(tokenLabel).join("  ")}`,
          },
          tokenList("promotes", "↑", tops),
          tokenList("suppresses", "↓", bottoms),
        ),
      );
    });
    const note =
      `the ${n} neurons with the largest |DLA| (logit units, frozen final norm), sum ${fmtSigned(shown)} of the ` +
      `layer's DLA ${fmtSigned(total)}; act = activation; ↑ / ↓ = the tokens the neuron's contribution ` +
      "(act × its output weights, through the frozen final norm) promotes / suppresses most at this activation";
    return [grid, h("div", { class: "rw-note", text: note })];
  }

  return { el, show };
}

/** "↑ tok tok tok" (part: "promotes" | "suppresses", for tests and styling). */
function tokenList(part, arrow, list) {
  return h(
    "span",
    { "data-rw-part": part },
    h("span", { class: "rw-sub", text: `${arrow} ` }),
    ...list.map((x) => tokenEl(x)),
  );
}
