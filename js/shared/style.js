// All CSS, scoped under .rw-root (styles must not leak into the notebook). Colours come from the
// palette (colors.js) as custom properties; views set only data-driven values (a cell's colour, a
// bar's length) on elements, everything else is a class here.
import { PAIR_COLORS, PART_COLORS, SIGN_COLORS, THEMES } from "./colors.js";

const vars = (theme) =>
  Object.entries(theme)
    .map(([name, value]) => `--rw-${name}: ${value};`)
    .join(" ");
const partVars = [
  ...Object.entries(PART_COLORS).map(([kind, value]) => `--rw-part-${kind}: ${value};`),
  ...Object.entries(PAIR_COLORS).map(([side, value]) => `--rw-pair-${side}: ${value};`),
].join(" ");

/** Font families, also for text drawn on canvases. */
export const SANS = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
export const MONO = "ui-monospace, SFMono-Regular, Menlo, monospace";

export const CSS = `
.rw-root { ${vars(THEMES.light)} ${partVars} --rw-up: ${SIGN_COLORS.up}; --rw-down: ${SIGN_COLORS.down};
  position: relative; box-sizing: border-box; color: var(--rw-fg); background: transparent;
  font: 12px/1.35 ${SANS}; max-width: 100%; min-width: 0; }
.rw-root.rw-dark { ${vars(THEMES.dark)} }
.rw-root *, .rw-root *::before, .rw-root *::after { box-sizing: border-box; }
.rw-root .rw-title { font-weight: 600; font-size: 13px; margin: 0 0 4px 0; }
.rw-root .rw-sub { color: var(--rw-muted); font-size: 11px; }
.rw-root .rw-bar { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin: 2px 0 6px 0; }
.rw-root .rw-select, .rw-root input[type=text] { font: inherit; color: var(--rw-fg); background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 4px; padding: 1px 4px; }
.rw-root input[type=text] { width: 9em; }
.rw-root .rw-check { display: inline-flex; gap: 4px; align-items: center; cursor: pointer; }
.rw-root .rw-btn { font: inherit; color: var(--rw-fg); background: var(--rw-panel); border: 1px solid var(--rw-border);
  border-radius: 4px; padding: 1px 7px; cursor: pointer; }
.rw-root .rw-btn[aria-pressed=true] { background: var(--rw-fg); color: var(--rw-bg); }
.rw-root .rw-seg { display: inline-flex; }
.rw-root .rw-seg .rw-btn { border-radius: 0; margin-left: -1px; }
.rw-root .rw-seg .rw-btn:first-child { border-radius: 4px 0 0 4px; margin-left: 0; }
.rw-root .rw-seg .rw-btn:last-child { border-radius: 0 4px 4px 0; }
.rw-root .rw-gridwrap { display: flex; align-items: flex-start; max-width: 100%; }
.rw-root .rw-scroll { overflow-x: auto; overflow-y: hidden; flex: 1 1 auto; min-width: 0; outline: none; }
.rw-root .rw-scroll:focus-visible, .rw-root canvas.rw-cells:focus-visible {
  outline: 2px solid var(--rw-sel); outline-offset: 1px; }
.rw-root canvas { display: block; }
.rw-root .rw-inner { position: relative; width: max-content; }
.rw-root .rw-hits { position: absolute; left: 0; cursor: crosshair; }
.rw-root .rw-hits > div { position: absolute; }
.rw-root canvas.rw-cells { cursor: crosshair; position: sticky; left: 0; }
.rw-root canvas.rw-rowlabels { flex: 0 0 auto; cursor: default; }
.rw-root .rw-search-bar { margin: 0; flex-wrap: nowrap; }
.rw-root input.rw-token-search { width: 12em; }
.rw-root .rw-legend { display: inline-flex; align-items: center; gap: 4px; color: var(--rw-muted); font-size: 11px; }
.rw-root .rw-legend canvas { border: 1px solid var(--rw-border); }
.rw-root canvas.rw-legend-ramp { width: 120px; height: 10px; }
.rw-root .rw-tooltip { position: absolute; z-index: 1000; pointer-events: none; background: var(--rw-bg);
  color: var(--rw-fg); border: 1px solid var(--rw-border); border-radius: 4px; padding: 4px 6px;
  box-shadow: 0 2px 8px var(--rw-shadow); font-size: 11px; max-width: 340px; white-space: pre; }
.rw-root .rw-tooltip[hidden] { display: none; }
.rw-root .rw-tip-row { display: flex; justify-content: space-between; gap: 12px; }
.rw-root .rw-tip-k { font-family: ${MONO}; unicode-bidi: isolate; }
.rw-root .rw-tip-v { font-variant-numeric: tabular-nums; color: var(--rw-muted); }
.rw-root .rw-msg { padding: 8px 10px; border-radius: 4px; margin: 4px 0; border: 1px solid var(--rw-border);
  background: var(--rw-panel); }
.rw-root .rw-msg-error { border-color: var(--rw-error); }
.rw-root .rw-msg-info { color: var(--rw-muted); }
.rw-root .rw-pane { margin-top: 8px; padding: 6px 8px; border: 1px solid var(--rw-border); border-radius: 6px;
  background: var(--rw-panel); }
.rw-root .rw-pane-body { margin-top: 4px; }
.rw-root .rw-tok { font-family: ${MONO}; background: var(--rw-bg); border: 1px solid var(--rw-border);
  border-radius: 3px; padding: 0 3px; white-space: pre; unicode-bidi: isolate; }
.rw-root .rw-chips { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; align-items: center; }
.rw-root .rw-chip { font: 11px ${MONO}; color: var(--rw-fg); background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 10px; padding: 0 6px; cursor: pointer; white-space: pre;
  unicode-bidi: isolate; }
.rw-root .rw-chip:hover, .rw-root .rw-chip:focus-visible { border-color: var(--rw-sel); }
.rw-root .rw-chip[aria-pressed=true] { border-color: var(--rw-sel); box-shadow: 0 0 0 1px var(--rw-sel) inset; }
.rw-root .rw-summary { margin-top: 4px; font-variant-numeric: tabular-nums; }
.rw-root .rw-summary b { font-weight: 600; }
.rw-root .rw-num { font-variant-numeric: tabular-nums; }
.rw-root svg text { fill: var(--rw-fg); font-size: 11px; font-family: ${SANS}; }
.rw-root svg .rw-muted { fill: var(--rw-muted); }
.rw-root svg .rw-axis { stroke: var(--rw-muted); stroke-width: 1; }
.rw-root svg .rw-cut { fill: var(--rw-fg); }
.rw-root svg .rw-break { fill: none; stroke: var(--rw-bg); stroke-width: 3; }
.rw-root > .rw-pending { position: absolute; top: 0; right: 30px; z-index: 19; padding: 1px 6px; font-size: 11px;
  color: var(--rw-muted); background: var(--rw-bg); border: 1px solid var(--rw-border); border-radius: 4px; }
.rw-root > .rw-download { position: absolute; top: 0; right: 0; z-index: 20; display: flex; flex-direction: column;
  align-items: flex-end; gap: 2px; }
.rw-root > .rw-download .rw-download-toggle { padding: 0 5px; line-height: 16px; opacity: 0.55; }
.rw-root > .rw-download:hover .rw-download-toggle, .rw-root > .rw-download .rw-download-toggle:focus-visible,
.rw-root > .rw-download .rw-download-toggle[aria-expanded=true] { opacity: 1; }
.rw-root .rw-download-menu { display: flex; gap: 2px; padding: 3px; background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 4px; box-shadow: 0 2px 8px var(--rw-shadow); }
.rw-root .rw-download-menu[hidden], .rw-root .rw-download-msg[hidden] { display: none; }
.rw-root .rw-download-msg { max-width: 300px; padding: 4px 6px; font-size: 11px; background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 4px; white-space: normal; }
.rw-root .rw-download-msg.rw-download-error { border-color: var(--rw-error); }
.rw-root .rw-download-msg img { display: block; max-width: 100%; max-height: 160px; margin-top: 4px;
  border: 1px solid var(--rw-border); }
.rw-root .rw-dash { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 12px 16px; }
.rw-root .rw-dash > .rw-dash-side { grid-column: 1 / -1; display: flex; flex-direction: column; gap: 8px; }
.rw-root.rw-wide .rw-dash { grid-template-columns: minmax(0, 4fr) minmax(0, 5fr) minmax(0, 4fr); }
.rw-root.rw-wide .rw-dash > .rw-dash-side { grid-column: auto; }
.rw-root .rw-dash-pane .rw-pane { margin-top: 0; }
/* the row under the grid has one height (the dashboard stays under ~900 px): each column scrolls
   on its own past it, the lens and the vector pane inside boxes that fit the column */
.rw-root .rw-dash > .rw-view:not(.rw-full), .rw-root .rw-dash > .rw-dash-side { max-height: 500px;
  overflow-y: auto; overflow-x: hidden; }
.rw-root .rw-dash .rw-view[data-rw="logit-lens"] .rw-gridwrap { max-height: 330px; overflow-y: auto; }
.rw-root .rw-dash-pane .rw-pane-body { max-height: 250px; overflow-y: auto; }
.rw-root .rw-pane[data-rw-folded="true"] .rw-pane-body,
.rw-root .rw-pane[data-rw-folded="true"] .rw-pane-tools { display: none; }
.rw-root .rw-dash > .rw-full { grid-column: 1 / -1; }
.rw-root.rw-narrow .rw-dash { grid-template-columns: minmax(0, 1fr); }
.rw-root .rw-dash-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; margin-bottom: 6px; }
.rw-root .rw-prompt { display: flex; flex-wrap: wrap; gap: 2px; max-height: 3.4em; overflow-y: auto; }
.rw-root .rw-prompt .rw-tok { cursor: pointer; }
.rw-root .rw-prompt .rw-tok[aria-current=true] { border-color: var(--rw-sel);
  box-shadow: 0 0 0 1px var(--rw-sel) inset; }
.rw-root .rw-prompt .rw-tok[aria-disabled=true] { cursor: default; opacity: 0.45; }
.rw-root .rw-note { color: var(--rw-muted); font-size: 11px; margin-top: 2px; }
.rw-root .rw-lens-toggle { display: inline-flex; flex-wrap: wrap; gap: 4px 8px; align-items: center; }

.rw-root .rw-up { background: var(--rw-up); }
.rw-root .rw-down { background: var(--rw-down); }
.rw-root .rw-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; }
.rw-root .rw-part-embed { background: var(--rw-part-embed); }
.rw-root .rw-part-attn { background: var(--rw-part-attn); }
.rw-root .rw-part-mlp { background: var(--rw-part-mlp); }
.rw-root .rw-part-other { background: var(--rw-part-other); }
.rw-root .rw-pair-clean { background: var(--rw-pair-clean); }
.rw-root .rw-pair-corrupt { background: var(--rw-pair-corrupt); }
.rw-root svg .rw-pair-clean { fill: var(--rw-pair-clean); }
.rw-root svg .rw-pair-corrupt { fill: var(--rw-pair-corrupt); }
.rw-root svg .rw-pair-row { cursor: pointer; }
.rw-root svg .rw-pair-row[aria-current=true] .rw-pair-band { fill: var(--rw-sel); fill-opacity: 0.12; }
.rw-root svg .rw-pair-band { fill: transparent; }
.rw-root svg .rw-ghost { fill: none; stroke: var(--rw-fg); stroke-width: 1; stroke-dasharray: 3 2;
  pointer-events: none; }
.rw-root .rw-edit .rw-edit-neuron { width: 6em; }
.rw-root .rw-edit .rw-chip { cursor: pointer; }

.rw-root .rw-compare { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 12px 16px; }
.rw-root .rw-compare > .rw-full { grid-column: 1 / -1; }
.rw-root.rw-narrow .rw-compare { grid-template-columns: minmax(0, 1fr); }

.rw-root .rw-cellstrip { display: flex; gap: 1px; flex-wrap: wrap; }
.rw-root .rw-strip-cell { width: 16px; height: 14px; border-radius: 2px; }
.rw-root .rw-strip-cell.rw-clickable { cursor: pointer; }
.rw-root .rw-strip-cell[aria-current=true] { outline: 2px solid var(--rw-sel); }
.rw-root .rw-strip-cell.rw-inactive { opacity: 0.35; }
.rw-root .rw-strip-row { display: flex; align-items: center; gap: 6px; margin: 2px 0; }
.rw-root .rw-strip-label { width: 150px; flex: 0 0 150px; }

.rw-root .rw-mlp-bar { cursor: pointer; }
.rw-root .rw-neurons:not(:empty) { margin-top: 6px; padding: 6px 8px; border: 1px solid var(--rw-border);
  border-radius: 6px; background: var(--rw-bg); }
.rw-root .rw-neuron-table { display: grid; grid-template-columns: auto minmax(40px, 120px) auto auto minmax(0, 1fr);
  gap: 2px 8px; align-items: center; }
.rw-root .rw-neuron-table > .rw-neuron-head { white-space: nowrap; }
.rw-root .rw-neuron-track { position: relative; height: 10px; background: var(--rw-panel); border-radius: 2px; }
.rw-root .rw-neuron-fill { position: absolute; top: 0; height: 100%; border-radius: 2px; }
.rw-root .rw-neuron-toks { margin-top: 0; flex-wrap: nowrap; overflow: hidden; min-width: 0; }
.rw-root .rw-feature-table { display: grid; gap: 2px 8px; align-items: center;
  grid-template-columns: auto auto minmax(40px, 120px) auto auto minmax(0, 1fr) minmax(0, 1fr); }
.rw-root .rw-feature-table > .rw-tok { justify-self: start; }

.rw-root .rw-budget-slider { width: min(420px, 60%); }
.rw-root .rw-budget-row { display: flex; align-items: center; gap: 6px; height: 18px; }
.rw-root .rw-budget-rank { width: 24px; text-align: right; }
.rw-root .rw-budget-tok { width: 120px; overflow: hidden; text-overflow: ellipsis; }
.rw-root .rw-budget-row[data-rw-target] .rw-budget-tok { border-color: var(--rw-sel); }
.rw-root .rw-budget-track { flex: 1 1 auto; max-width: 460px; height: 12px; background: var(--rw-panel);
  border-radius: 2px; }
.rw-root .rw-budget-fill { height: 100%; border-radius: 2px; background: var(--rw-down); }
.rw-root .rw-budget-row[data-rw-target] .rw-budget-fill { background: var(--rw-up); }
.rw-root .rw-budget-p { width: 56px; font-variant-numeric: tabular-nums; }

.rw-root .rw-src-layers .rw-strip-cell { width: 14px; }
.rw-root .rw-src-grid { display: grid; gap: 1px; align-items: end; overflow-x: auto; max-width: 100%; }
.rw-root .rw-src-tok { font-size: 10px; overflow: hidden; text-overflow: ellipsis; max-height: 80px;
  max-width: var(--rw-src-cw); justify-self: center; }
.rw-root .rw-src-grid.rw-vertical .rw-src-tok { writing-mode: vertical-rl; padding: 3px 0; line-height: 1; }
.rw-root .rw-src-head { text-align: right; padding-right: 4px; }
.rw-root .rw-src-sumhead { text-align: right; }
.rw-root .rw-src-cell { height: 18px; font-size: 10px; text-align: center; line-height: 18px; }
.rw-root .rw-src-sum { text-align: right; font-variant-numeric: tabular-nums; font-size: 11px; }

.rw-root .rw-att-body { display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: flex-start; }
.rw-root .rw-att-main { flex: 1 1 420px; min-width: 0; }
.rw-root .rw-att-side { flex: 0 0 auto; max-width: 100%; }
.rw-root .rw-att-thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
.rw-root .rw-att-thumb { display: flex; flex-direction: column; align-items: center; gap: 2px; padding: 3px;
  cursor: pointer; background: transparent; color: inherit; font: inherit; border: 1px solid var(--rw-border);
  border-radius: 4px; }
.rw-root .rw-att-thumb[aria-pressed=true] { box-shadow: 0 0 0 2px var(--rw-sel); }
.rw-root .rw-att-full { margin-top: 8px; }
.rw-root .rw-att-scroll { overflow-x: auto; max-width: 100%; }
.rw-root .rw-att-scores { display: grid; gap: 1px; font-size: 10px; align-items: center; }
.rw-root .rw-att-colhead { text-align: center; font-size: 9px; }
.rw-root .rw-att-rowhead { text-align: right; padding-right: 3px; }
.rw-root .rw-att-rowhead[aria-current=true] { font-weight: 600; }
.rw-root .rw-att-score { height: 14px; cursor: pointer; }
.rw-root .rw-att-score[aria-selected=true] { outline: 2px solid var(--rw-sel); }
`;
