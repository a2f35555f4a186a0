// Number formats for labels, tooltips and heat-map cells (with a real minus sign).

/** Compact number format for labels: "0.421", "123.4", "1.23e+6", "–" for a missing value. */
export function fmt(v, digits = 3) {
  if (v == null || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2).replace("-", "−");
  return v.toFixed(a >= 100 ? 1 : digits).replace("-", "−");
}

/** fmt with an explicit "+" on positive values. */
export function fmtSigned(v, digits = 3) {
  if (v == null || !Number.isFinite(v)) return "–";
  return (v > 0 ? "+" : "") + fmt(v, digits);
}

/** A number short enough for a heat-map cell: "0", "0.42", "−3.1", "13". */
export function cellNumber(v) {
  if (!Number.isFinite(v)) return "";
  const a = Math.abs(v);
  const s = a < 0.005 ? "0" : a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s.replace("-", "−");
}
