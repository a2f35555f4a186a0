// One tooltip per view root; lines are set with textContent.
import { h } from "./dom.js";

export function makeTooltip(root) {
  const tip = h("div", { class: "rw-tooltip", role: "tooltip", hidden: true });
  root.appendChild(tip);
  return {
    el: tip,
    /** lines: array of strings or [key, value] pairs; x, y: client coordinates. */
    show(x, y, lines) {
      tip.replaceChildren(
        ...lines.map((line) =>
          Array.isArray(line)
            ? h(
                "div",
                { class: "rw-tip-row" },
                h("span", { class: "rw-tip-k", text: line[0] }),
                h("span", { class: "rw-tip-v", text: line[1] }),
              )
            : h("div", { class: "rw-tip-line", text: line }),
        ),
      );
      tip.hidden = false;
      // positioned inside the root (fixed positioning breaks under transformed ancestors)
      const pad = 14;
      const rr = root.getBoundingClientRect();
      const r = tip.getBoundingClientRect();
      let left = x + pad,
        top = y + pad;
      if (left + r.width > Math.max(rr.right, window.innerWidth) - 4) left = Math.max(rr.left, x - r.width - pad);
      if (top + r.height > window.innerHeight - 4) top = Math.max(rr.top, y - r.height - pad);
      tip.style.left = `${left - rr.left}px`;
      tip.style.top = `${top - rr.top}px`;
    },
    hide() {
      tip.hidden = true;
    },
  };
}
