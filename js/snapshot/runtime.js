// resid_widgets offline snapshot runtime.
//
// resid_widgets/export.py inlines this file into ONE self-contained HTML page
// together with:
//   <script type="application/json" id="rw-snapshot-data">  {models, roots, notes, ...}
//   <script type="application/json" id="rw-esm-N">          "<text of ESM bundle N>"
// Each distinct ESM bundle is embedded once and imported through a Blob URL; every widget
// that uses it shares the same module instance. Binary buffers are base64 in the JSON and
// are decoded back into DataViews, exactly as the live widget would receive them.
//
// Contract with the views (anywidget render({model, el})):
//   * model.get/set/on/off/save_changes/send/widget_manager behave like anywidget's model;
//     set() fires "change:<name>" (args: model, value) and then "change" synchronously.
//   * model.__rw_offline === true in a snapshot (undefined with a live kernel).
//     send() is a no-op there: nothing will ever answer, so a view should check
//     `model.__rw_offline` before asking the kernel and show "needs the kernel" instead.
//     experimental.invoke() rejects with an Error whose message says so.
//   * document.documentElement has data-rw-snapshot="1"; the page follows
//     prefers-color-scheme (light/dark background on <body>), so views that infer their
//     theme from the computed background colour of their container get it right.
//   * What the exporter left out (budget) is listed in the page footer; a view may also
//     receive its own note in a trait it returns from _snapshot_state().
// Zero network requests: nothing here fetches anything.

const OFFLINE_MESSAGE = "This needs the Python kernel; it is not available in this offline snapshot.";

function readJSON(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`resid_widgets snapshot: missing #${id}`);
  return JSON.parse(node.textContent);
}

function decodeBase64(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}

function putBuffers(state, buffers) {
  for (const { path, data } of buffers || []) {
    let obj = state;
    for (let i = 0; i < path.length - 1; i++) obj = obj[path[i]];
    obj[path[path.length - 1]] = decodeBase64(data);
  }
  return state;
}

function report(error, where) {
  console.error(`resid_widgets snapshot: ${where}:`, error);
}

class SnapshotModel {
  constructor(id, state, manager) {
    this.model_id = id;
    this.widget_manager = manager;
    this.__rw_offline = true;
    this._state = state;
    this._listeners = new Map();
  }

  get(name) {
    return this._state[name];
  }

  set(name, value) {
    const changes = name !== null && typeof name === "object" ? name : { [name]: value };
    const changed = [];
    for (const [key, val] of Object.entries(changes)) {
      if (this._state[key] !== val) {
        this._state[key] = val;
        changed.push(key);
      }
    }
    for (const key of changed) this._emit(`change:${key}`, this, this._state[key]);
    if (changed.length) this._emit("change", this);
  }

  save_changes() {}

  send(_content, _callbacks, _buffers) {
    // Offline: there is no kernel to receive this. Views check model.__rw_offline.
  }

  on(names, callback, context) {
    for (const name of String(names).split(/\s+/).filter(Boolean)) {
      if (!this._listeners.has(name)) this._listeners.set(name, []);
      this._listeners.get(name).push({ callback, context });
    }
  }

  off(names, callback) {
    if (!names) {
      if (!callback) this._listeners.clear();
      else for (const list of this._listeners.values()) this._remove(list, callback);
      return;
    }
    for (const name of String(names).split(/\s+/).filter(Boolean)) {
      if (!callback) this._listeners.delete(name);
      else this._remove(this._listeners.get(name) || [], callback);
    }
  }

  _remove(list, callback) {
    for (let i = list.length - 1; i >= 0; i--) if (list[i].callback === callback) list.splice(i, 1);
  }

  _emit(name, ...args) {
    for (const { callback, context } of [...(this._listeners.get(name) || [])]) {
      try {
        callback.apply(context, args);
      } catch (error) {
        report(error, `listener for "${name}" on ${this.model_id}`);
      }
    }
  }
}

const data = readJSON("rw-snapshot-data");
const modulePromises = new Map();
const models = new Map();
const initialized = new Map();

const experimental = {
  invoke: async () => {
    throw new Error(OFFLINE_MESSAGE);
  },
};

const manager = {
  __rw_offline: true,
  async get_model(id) {
    const model = models.get(String(id).replace(/^IPY_MODEL_/, ""));
    if (!model) throw new Error(`resid_widgets snapshot: model ${id} was not exported`);
    return model;
  },
  async create_view(model) {
    const el = document.createElement("div");
    await renderModel(model.model_id, el);
    return {
      el,
      model,
      remove() {
        el.remove();
      },
    };
  },
};

for (const [id, entry] of Object.entries(data.models)) {
  models.set(id, new SnapshotModel(id, putBuffers(entry.state || {}, entry.buffers), manager));
}

function loadModule(index) {
  if (!modulePromises.has(index)) {
    const text = readJSON(`rw-esm-${index}`);
    const url = URL.createObjectURL(new Blob([text], { type: "text/javascript" }));
    modulePromises.set(index, import(url));
  }
  return modulePromises.get(index);
}

async function widgetDefinition(mod) {
  let def = mod.default ?? mod;
  if (typeof def === "function") def = await def();
  return def;
}

async function renderAnyWidget(id, entry, el) {
  const model = models.get(id);
  const def = await widgetDefinition(await loadModule(entry.esm));
  if (!initialized.has(id)) {
    initialized.set(id, Promise.resolve(def.initialize?.({ model, experimental })));
  }
  await initialized.get(id);
  if (typeof def.render !== "function") throw new Error("the widget's module has no render()");
  await def.render({ model, el, experimental });
}

function applyLayout(entry, el) {
  for (const cls of entry.dom_classes || []) el.classList.add(cls);
  for (const [prop, value] of Object.entries(entry.layout || {})) el.style.setProperty(prop, value);
}

async function renderModel(id, el) {
  const entry = data.models[id];
  el.classList.add("rw-snapshot-view");
  el.dataset.rwModel = id;
  applyLayout(entry, el);
  try {
    if (entry.kind === "anywidget") {
      await renderAnyWidget(id, entry, el);
    } else if (entry.kind === "box") {
      el.classList.add("rw-snapshot-box", `rw-snapshot-${entry.direction || "column"}`);
      for (const child of entry.children) {
        const childEl = document.createElement("div");
        el.appendChild(childEl);
        await renderModel(child, childEl);
      }
    } else if (entry.kind === "html") {
      el.innerHTML = entry.html;
    } else {
      el.classList.add("rw-snapshot-missing");
      el.textContent = `${entry.name}: this widget cannot be shown without the Python kernel.`;
    }
  } catch (error) {
    report(error, `rendering ${entry.name} (${id})`);
    el.classList.add("rw-snapshot-error");
    el.textContent = `Could not render ${entry.name}: ${error && error.message ? error.message : error}`;
  }
}

async function main() {
  document.documentElement.dataset.rwSnapshot = "1";
  const slots = document.querySelectorAll("[data-rw-root]");
  await Promise.all([...slots].map((slot) => renderModel(slot.dataset.rwRoot, slot)));
  document.documentElement.dataset.rwSnapshotReady = "1";
}

main().catch((error) => report(error, "startup"));
