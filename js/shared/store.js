// The data and state a view reads, built once over the anywidget model (or a snapshot shim).
// - decodes the binary payloads lazily (and again when Python sends new data),
// - get/set/on for user state: set() writes the model and tells local listeners at once (so views
//   inside one Dashboard stay linked even where the host model does not echo changes),
// - request(): custom messages to the kernel; they wait as long as the kernel is busy (saying so)
//   and answer "needs the kernel" at once when there is none (static snapshot).
import { decodeArray } from "./decode.js";

const DATA_TRAITS = ["_meta", "_arrays", "_targets", "_vocab", "_panes", "_rw_static", "_error"];

function same(a, b) {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return false;
}

export class NeedsKernel extends Error {}

/** What a view shows while a request waits for a kernel that is still running other cells. */
export const KERNEL_BUSY = "kernel busy: waiting for Python (the answer shows when it comes)";
const WAIT_NOTE_MS = 700;

export function createStore(model) {
  const listeners = new Map(); // name -> Set(cb)
  const modelHandlers = [];
  const cache = new Map();
  const pending = new Map();
  let nextId = 1;
  const paneCache = new Map();
  const local = {}; // last value set locally (for hosts whose get() lags)

  const get = (name) => {
    const v = model.get(name);
    return v === undefined ? local[name] : v;
  };

  const emit = (name, value) => {
    const set = listeners.get(name);
    if (set)
      for (const cb of Array.from(set)) {
        try {
          cb(value);
        } catch (e) {
          console.error("resid_widgets:", e);
        }
      }
  };

  const lastSeen = {};
  const onModelChange = (name) => () => {
    if (DATA_TRAITS.includes(name)) cache.clear();
    const v = model.get(name);
    if (same(v, lastSeen[name])) return;
    lastSeen[name] = v;
    emit(name, v);
  };

  function on(name, cb) {
    if (!listeners.has(name)) {
      listeners.set(name, new Set());
      const handler = onModelChange(name);
      model.on(`change:${name}`, handler);
      modelHandlers.push([`change:${name}`, handler]);
      lastSeen[name] = get(name);
    }
    listeners.get(name).add(cb);
    return () => listeners.get(name).delete(cb);
  }

  /** [value of name (or fallback), a setter]: the two arguments of a control bound to a trait. */
  function bind(name, fallback) {
    const value = get(name);
    return [value == null || value === "" ? fallback : value, (v) => set(name, v)];
  }

  function set(name, value) {
    const old = get(name);
    local[name] = value;
    if (same(old, value)) return;
    lastSeen[name] = value;
    try {
      model.set(name, value);
      model.save_changes();
    } catch (e) {
      console.warn("resid_widgets: could not save", name, e);
    }
    emit(name, value);
  }

  const onMsg = (content, buffers) => {
    if (!content || content.id == null || !pending.has(content.id)) return;
    const { resolve, reject, timer } = pending.get(content.id);
    pending.delete(content.id);
    clearTimeout(timer);
    if (content.ok === false) reject(new Error(content.error || "the kernel could not answer"));
    else resolve({ content, buffers: buffers || [] });
  };
  // any new data from Python invalidates the decoded caches
  for (const n of DATA_TRAITS)
    on(n, () => {
      paneCache.clear();
    });
  model.on("msg:custom", onMsg);
  modelHandlers.push(["msg:custom", onMsg]);

  const isStatic = () => !!get("_rw_static") || model.__rw_offline === true;

  /**
   * Ask the kernel; resolves to {content, buffers}. No time limit: under Run All the kernel answers
   * only after the queued cells, so a request waits (opts.onWait(KERNEL_BUSY) after WAIT_NOTE_MS
   * says so) and a late answer still arrives. A static snapshot rejects at once (NeedsKernel).
   */
  function request(msg, opts = {}) {
    if (isStatic()) return Promise.reject(new NeedsKernel("needs the kernel: this is a static snapshot"));
    const id = `rw${nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = opts.onWait ? setTimeout(() => opts.onWait(KERNEL_BUSY), WAIT_NOTE_MS) : null;
      pending.set(id, { resolve, reject, timer });
      try {
        model.send({ ...msg, id });
      } catch (e) {
        clearTimeout(timer);
        pending.delete(id);
        reject(new NeedsKernel(`needs the kernel: ${e.message || e}`));
      }
    });
  }

  function memo(key, f) {
    if (!cache.has(key)) cache.set(key, f());
    return cache.get(key);
  }

  /** Metadata, checked against the arrays; throws a readable Error on bad input. */
  function meta() {
    return memo("meta", () => {
      const err = get("_error");
      if (err) throw new Error(err);
      const m = get("_meta");
      if (!m || !m.tokens || !m.labels) throw new Error("no decomposition to show (empty payload)");
      const T = m.tokens.length,
        C = m.labels.length;
      if (!T || !C) throw new Error(`empty decomposition: ${C} components x ${T} tokens`);
      if ((m.T ?? T) !== T || (m.C ?? C) !== C)
        throw new Error(`mismatched payload: meta says ${m.C}x${m.T}, labels/tokens give ${C}x${T}`);
      return { ...m, T, C };
    });
  }

  function array(name, expect) {
    return memo(`a:${name}`, () => {
      const arrays = get("_arrays") || {};
      const a = decodeArray(arrays[name], name);
      if (expect && (a.shape.length !== expect.length || expect.some((n, i) => n != null && a.shape[i] !== n))) {
        throw new Error(`${name}: shape [${a.shape}] does not match [${expect.map((x) => x ?? "?")}]`);
      }
      return a;
    });
  }

  function targets() {
    return get("_targets") || [];
  }

  function findTarget(text) {
    const ts = targets();
    return ts.find((t) => t.text === text) || ts.find((t) => String(t.id) === String(text)) || null;
  }

  /** Decoded arrays of a precomputed target, or null. */
  function target(text) {
    const t = text === undefined || text === "" ? targets()[0] : findTarget(text);
    if (!t) return null;
    return memo(`t:${t.id}:${Object.keys(t.heads || {}).join(",")}`, () => {
      const { C, T } = meta();
      const out = {
        text: t.text,
        id: t.id,
        source: t.source,
        heads: {},
        dla_constant: Number.isFinite(t.dla_constant) ? t.dla_constant : null,
      };
      out.logp = decodeArray(t.logp, `target ${t.text} logp`).data;
      out.dla = decodeArray(t.dla, `target ${t.text} dla`).data;
      out.logit = decodeArray(t.logit, `target ${t.text} logit`).data;
      out.logprob = decodeArray(t.logprob, `target ${t.text} logprob`).data;
      if (out.logp.length !== C * T || out.dla.length !== C * T)
        throw new Error(`target ${t.text}: arrays do not match ${C}x${T}`);
      for (const [pos, entry] of Object.entries(t.heads || {})) {
        const e = {};
        for (const m of ["dla", "logprob"]) if (entry && entry[m]) e[m] = decodeArray(entry[m], `heads ${m}`);
        if (entry && entry.error) e.error = entry.error;
        out.heads[pos] = e;
      }
      return out;
    });
  }

  /** Ask Python to precompute a target; resolves to its text. */
  async function ensureTarget(text, opts) {
    if (findTarget(text)) return findTarget(text).text;
    const { content } = await request({ type: "target", target: text }, opts);
    // the data arrives as a trait update, maybe just after the reply
    for (let i = 0; i < 50 && !findTarget(content.text); i++) await new Promise((r) => setTimeout(r, 20));
    return content.text;
  }

  async function ensureHeads(text, position, opts) {
    const t = target(text);
    if (t && t.heads[String(position)]) return t.heads[String(position)];
    await request({ type: "heads", target: text, position }, opts);
    for (let i = 0; i < 50; i++) {
      const t2 = target(text);
      if (t2 && t2.heads[String(position)]) return t2.heads[String(position)];
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error("per-head data did not arrive");
  }

  /** Embedded pane (Float32Array [C*d]) for a position, or null. */
  function embeddedPane(position) {
    const p = get("_panes");
    if (!p || !p.positions || !p.data) return null;
    const j = p.positions.indexOf(position);
    if (j < 0) return null;
    const all = memo("panes", () => decodeArray(p, "_panes"));
    const [C, P, d] = all.shape;
    const out = new Float32Array(C * d);
    for (let c = 0; c < C; c++) out.set(all.data.subarray((c * P + j) * d, (c * P + j + 1) * d), c * d);
    return { data: out, C, d };
  }

  /** Deltas of every component at one position: embedded first, then the kernel. */
  async function pane(state, position, opts) {
    const hit = paneCache.get(position) || embeddedPane(position);
    if (hit) {
      paneCache.set(position, hit);
      return hit;
    }
    const { content, buffers } = await request({ type: "pane", state, position }, opts);
    const a = decodeArray({ ...content, data: buffers[0] }, "pane");
    const out = { data: a.data, C: a.shape[0], d: a.shape[1] };
    paneCache.set(position, out);
    return out;
  }

  function vocab(id) {
    const v = get("_vocab") || {};
    const s = v[String(id)];
    return s === undefined ? `#${id}` : s;
  }

  function destroy() {
    for (const [ev, f] of modelHandlers) {
      try {
        model.off(ev, f);
      } catch (e) {
        /* ignore */
      }
    }
    for (const { timer } of pending.values()) clearTimeout(timer);
    pending.clear();
    listeners.clear();
  }

  return {
    model,
    get,
    set,
    bind,
    on,
    request,
    meta,
    array,
    targets,
    findTarget,
    target,
    ensureTarget,
    ensureHeads,
    pane,
    embeddedPane,
    vocab,
    isStatic,
    destroy,
  };
}

/**
 * A model-like view of part of a widget's state, for a view mounted inside another (Compare's two
 * stream grids and its patching grid): get(name) reads `part()[name]` where the part has it
 * (its data), else the widget's trait, renamed through `rename` ({selected: "patch_selected"});
 * set / on / off / send go to the widget under the renamed names. createStore() takes it as a model.
 */
export function scopedModel(model, part, rename = {}) {
  const name = (n) => rename[n] || n;
  const event = (ev) => String(ev).replace(/^change:(.+)$/, (_, n) => `change:${name(n)}`);
  return {
    get(n) {
      const p = part() || {};
      return n in p ? p[n] : model.get(name(n));
    },
    set: (n, v) => model.set(name(n), v),
    save_changes: () => model.save_changes(),
    on: (ev, f) => model.on(event(ev), f),
    off: (ev, f) => model.off(ev == null ? ev : event(ev), f),
    send: (...args) => model.send(...args),
    get __rw_offline() {
      return model.__rw_offline;
    },
  };
}
