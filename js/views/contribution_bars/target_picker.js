// Choosing the target of ContributionBars: a text field (a token typed as it is shown: "·Paris")
// and one chip per precomputed target; a target that is not precomputed is asked of the kernel.
import { h } from "../../shared/dom.js";
import { keepKeys } from "../../shared/keys.js";
import { displayToken, tokenFromDisplay, tokenLabel } from "../../shared/tokens.js";

const SOURCES = { top: "top prediction", next: "an actual next token", alt: "runner-up prediction" };

/** {bar (the field and its status), chips, choose(text), update() (redraws the chips)}. */
export function createTargetPicker(store) {
  const input = h("input", {
    type: "text",
    placeholder: "target token…",
    title: "type a token (a leading space as ' ' or '·') and press Enter",
    "aria-label": "target token",
  });
  const status = h("span", { class: "rw-sub" });
  const bar = h("div", { class: "rw-bar" }, h("span", { class: "rw-sub", text: "target" }), input, status);
  const chips = h("div", { class: "rw-chips" });

  keepKeys(
    input,
    (key) => {
      if (key !== "Enter") return false;
      const text = tokenFromDisplay(input.value);
      if (text) choose(text);
      return true;
    },
    { aliases: false },
  );

  function choose(text) {
    const shown = displayToken(text);
    const hit = store.findTarget(text) || store.targets().find((t) => displayToken(t.text) === shown);
    if (hit) {
      store.set("target", hit.text);
      status.textContent = "";
      return;
    }
    status.textContent = "asking the kernel…";
    store.ensureTarget(text, { onWait: (note) => (status.textContent = note) }).then(
      (t) => {
        status.textContent = "";
        store.set("target", t);
      },
      (e) => {
        const msg = String(e.message || e);
        status.textContent = msg.startsWith("needs the kernel")
          ? `${tokenLabel(text)} is not precomputed: ${msg}`
          : msg;
      },
    );
  }

  function update() {
    const current = store.get("target");
    chips.replaceChildren(h("span", { class: "rw-sub", text: "precomputed:" }));
    for (const t of store.targets()) {
      const chip = h("button", {
        class: "rw-chip",
        type: "button",
        text: displayToken(t.text),
        title: `${SOURCES[t.source] || "asked for"} (id ${t.id})`,
        "aria-pressed": String(t.text === current),
      });
      chip.addEventListener("click", () => store.set("target", t.text));
      chips.appendChild(chip);
    }
  }

  return { bar, chips, choose, update };
}
