// All CSS is scoped under .rw-root (styles must not leak into the notebook).
export const CSS = `
.rw-root { --rw-fg: #1f2328; --rw-muted: #59636e; --rw-bg: #ffffff; --rw-panel: #f6f8fa; --rw-border: #d0d7de;
  --rw-accent: #000000; --rw-sel: #ff2d95; --rw-grid: rgba(255,255,255,0.55);
  position: relative; box-sizing: border-box; color: var(--rw-fg); background: transparent;
  font: 12px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 100%; min-width: 0; }
.rw-root.rw-dark { --rw-fg: #e6edf3; --rw-muted: #9198a1; --rw-bg: #111418; --rw-panel: #1b1f24; --rw-border: #3d444d;
  --rw-accent: #ffffff; --rw-sel: #ff5fb0; --rw-grid: rgba(0,0,0,0.45); }
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
.rw-root .rw-scroll:focus-visible, .rw-root canvas.rw-cells:focus-visible { outline: 2px solid var(--rw-sel); outline-offset: 1px; }
.rw-root canvas { display: block; }
.rw-root .rw-inner { position: relative; width: max-content; }
.rw-root .rw-hits { position: absolute; left: 0; cursor: crosshair; }
.rw-root .rw-hits > div { position: absolute; }
.rw-root canvas.rw-cells { cursor: crosshair; }
.rw-root .rw-legend { display: inline-flex; align-items: center; gap: 4px; color: var(--rw-muted); font-size: 11px; }
.rw-root .rw-legend canvas { border: 1px solid var(--rw-border); }
.rw-root .rw-tooltip { position: absolute; z-index: 1000; pointer-events: none; background: var(--rw-bg); color: var(--rw-fg);
  border: 1px solid var(--rw-border); border-radius: 4px; padding: 4px 6px; box-shadow: 0 2px 8px rgba(0,0,0,0.25);
  font-size: 11px; max-width: 340px; white-space: pre; }
.rw-root .rw-tip-row { display: flex; justify-content: space-between; gap: 12px; }
.rw-root .rw-tip-k { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.rw-root .rw-tip-v { font-variant-numeric: tabular-nums; color: var(--rw-muted); }
.rw-root .rw-msg { padding: 8px 10px; border-radius: 4px; margin: 4px 0; border: 1px solid var(--rw-border); background: var(--rw-panel); }
.rw-root .rw-msg-error { border-color: #d1242f; }
.rw-root .rw-msg-info { color: var(--rw-muted); }
.rw-root .rw-pane { margin-top: 8px; padding: 6px 8px; border: 1px solid var(--rw-border); border-radius: 6px; background: var(--rw-panel); }
.rw-root .rw-pane-body { margin-top: 4px; }
.rw-root .rw-tok { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--rw-bg); border: 1px solid var(--rw-border);
  border-radius: 3px; padding: 0 3px; white-space: pre; }
.rw-root .rw-chips { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; align-items: center; }
.rw-root .rw-chip { font: 11px ui-monospace, SFMono-Regular, Menlo, monospace; color: var(--rw-fg); background: var(--rw-bg);
  border: 1px solid var(--rw-border); border-radius: 10px; padding: 0 6px; cursor: pointer; white-space: pre; }
.rw-root .rw-chip:hover, .rw-root .rw-chip:focus-visible { border-color: var(--rw-sel); }
.rw-root .rw-chip[aria-pressed=true] { border-color: var(--rw-sel); box-shadow: 0 0 0 1px var(--rw-sel) inset; }
.rw-root .rw-summary { margin-top: 4px; font-variant-numeric: tabular-nums; }
.rw-root .rw-summary b { font-weight: 600; }
.rw-root svg text { fill: var(--rw-fg); font-size: 11px; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.rw-root svg .rw-muted { fill: var(--rw-muted); }
.rw-root svg .rw-axis { stroke: var(--rw-muted); stroke-width: 1; }
.rw-root svg .rw-cut { fill: var(--rw-fg); }
.rw-root .rw-dash { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 12px 16px; }
.rw-root .rw-dash > .rw-full { grid-column: 1 / -1; }
.rw-root.rw-narrow .rw-dash { grid-template-columns: minmax(0, 1fr); }
.rw-root .rw-dash-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; margin-bottom: 6px; }
.rw-root .rw-prompt { display: flex; flex-wrap: wrap; gap: 2px; max-height: 6.2em; overflow-y: auto; }
.rw-root .rw-prompt .rw-tok { cursor: pointer; }
.rw-root .rw-prompt .rw-tok[aria-current=true] { border-color: var(--rw-sel); box-shadow: 0 0 0 1px var(--rw-sel) inset; }
.rw-root .rw-prompt .rw-tok[aria-disabled=true] { cursor: default; opacity: 0.45; }
.rw-root .rw-note { color: var(--rw-muted); font-size: 11px; margin-top: 2px; }
`;
