// The line under the bars: the contributions' sum and what it adds up to (the logit with the DLA
// constant, or the log-prob difference), next to the model's own logit / log-prob.
import { h } from "../../shared/dom.js";
import { fmt, fmtSigned } from "../../shared/format.js";
import { tokenLabel } from "../../shared/tokens.js";

/** Fill el for target t (decoded) at position p; values: the contributions [C] shown. */
export function drawSummary(el, meta, t, p, method, values) {
  const { C, T } = meta;
  let sum = 0;
  for (const v of values) sum += v;
  const logprob = `${fmt(t.logprob[p])}  (p = ${fmt(Math.exp(t.logprob[p]))})`;
  const of = `of ${tokenLabel(t.text)} at position ${p}`;
  let equation, notes;
  if (method === "dla") {
    const logit = t.logit[p];
    const constant = t.dla_constant == null ? logit - sum : t.dla_constant;
    const recon = sum + constant;
    const off = Math.abs(recon - logit) > 1e-3 * Math.max(1, Math.abs(logit));
    equation = [
      h("span", { text: `  + constant ${fmtSigned(constant)} (final-norm and unembedding biases)  = ` }),
      h("b", { text: fmt(recon) }),
    ];
    notes = [
      off ? "(differs from the model's logit: final soft-cap or numerical error)" : "",
      `model's logit ${of}: ${fmt(logit)};  model's log p: ${logprob}`,
    ];
  } else {
    const lpFinal = t.logp[(C - 1) * T + p],
      lp0 = t.logp[p];
    equation = [h("span", { text: ` = log p(final) ${fmt(lpFinal)} − log p(embedding) ${fmt(lp0)}` })];
    notes = [`model's log p ${of}: ${logprob}`];
  }
  el.replaceChildren(
    h("div", {}, h("b", { text: "Σ contributions " }), h("span", { text: fmtSigned(sum) }), ...equation),
    ...notes.map((text) => h("div", { class: "rw-sub", text })),
  );
}
