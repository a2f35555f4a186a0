// Choosing the target of ContributionBars: a text field (a token typed as it is shown: "·Paris")
// and one chip per precomputed target; a target that is not precomputed is asked of the kernel.
// Under the field, what Python says about the typed text (`target_hint`): the spaced variant of a
// token typed without its space ("did you mean ·Rome?"), or the tokens a multi-token text splits
// into, each one click away. A successful change of the target (from here or Python) clears it.
import { h } from "../../shared/dom.js";
import { keepKeys } from "../../shared/keys.js";
import { displayToken, tokenEl, tokenFromDisplay, tokenLabel } from "../../shared/tokens.js";

const SOURCES = { top: "top prediction", next: "an actual next token", alt: "runner-up prediction" };

/**
 * {bar (the field, its status and the hint), chips, choose(text), update() (redraws the chips
 * and the hint), destroy()}. onPick(): runs before a target the user picked is set (the dashboard pins it).
 */
export function createTargetPicker(store, { onPick = () => {} } = {}) {
  const input = h("input", {
    type: "text",
    placeholder: "target token…",
    title: "type a token (a leading space as ' ' or '·') and press Enter",
    "aria-label": "target token",
  });
  const status = h("span", { class: "rw-sub", "data-rw-part": "target-status" });
  const hint = h("span", { class: "rw-chips", "data-rw-part": "target-hint" });
  const bar = h("div", { class: "rw-bar" }, h("span", { class: "rw-sub", text: "target" }), input, status, hint);
  const chips = h("div", { class: "rw-chips" });
  let failed = null; // the typed text whose request failed, while its message shows

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

  function pick(text) {
    onPick();
    store.set("target", text);
  }

  function choose(text) {
    failed = null;
    const shown = displayToken(text);
    const hit = store.findTarget(text) || store.targets().find((t) => displayToken(t.text) === shown);
    if (hit) {
      status.textContent = "";
      pick(hit.text);
      return;
    }
    status.textContent = "asking the kernel…";
    store.ensureTarget(text, { onWait: (note) => (status.textContent = note) }).then(
      (t) => {
        status.textContent = "";
        pick(t);
      },
      (e) => {
        const msg = String(e.message || e);
        failed = text;
        status.textContent = msg.startsWith("needs the kernel")
          ? `${tokenLabel(text)} is not precomputed: ${msg}`
          : readable(text, msg);
        drawHint();
      },
    );
  }

  /** The kernel's error for a typed text, as a sentence (the hint's when it has one). */
  function readable(text, msg) {
    const h0 = store.get("target_hint") || {};
    if (h0.typed === text && h0.error) return h0.error;
    return msg.replace(/^[A-Za-z]*Error: /, "");
  }

  function drawHint() {
    const h0 = store.get("target_hint") || {};
    const button = (text, part) => {
      const b = h("button", { class: "rw-chip", type: "button", "data-rw-part": part }, tokenEl(text));
      b.addEventListener("click", () => choose(text));
      return b;
    };
    if (h0.suggestion) {
      hint.replaceChildren(
        h("span", { class: "rw-sub", text: `${tokenLabel(h0.typed)} has no leading space; did you mean` }),
        button(h0.suggestion, "target-suggestion"),
        h("span", { class: "rw-sub", text: "?" }),
      );
    } else if (h0.pieces && h0.pieces.length && failed === h0.typed) {
      status.textContent = h0.error || status.textContent;
      hint.replaceChildren(
        h("span", { class: "rw-sub", text: "pick one:" }),
        ...h0.pieces.map((piece) => button(piece, "target-piece")),
      );
    } else hint.replaceChildren();
  }

  /** The target changed: an earlier failure's message no longer applies. */
  function targetChanged() {
    if (failed === null) return;
    failed = null;
    status.textContent = "";
    drawHint();
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
      chip.addEventListener("click", () => pick(t.text));
      chips.appendChild(chip);
    }
    drawHint();
  }

  const offs = [store.on("target_hint", drawHint), store.on("target", targetChanged)];
  return { bar, chips, choose, update, destroy: () => offs.forEach((off) => off()) };
}
