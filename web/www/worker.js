// The page's worker: owns the WebAssembly module and the loaded model, so
// weight parsing, image embedding and the text tower never block the page.
// Messages: {id, op, ...} in; {id, ok, result | error, ms} out.
import init, * as fisao from './pkg/fisao_web.js';

const ready = init();
let highlighter = null;

// Whether the browser offers a WebGPU adapter, and which features it has.
async function probeWebGpu() {
  if (!('gpu' in navigator)) return { available: false, reason: 'navigator.gpu is missing' };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: 'requestAdapter() returned null' };
    const info = adapter.info || {};
    return {
      available: true,
      f16: adapter.features.has('shader-f16'),
      adapter: [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown',
    };
  } catch (e) {
    return { available: false, reason: String(e && e.message || e) };
  }
}

// Which towers to build: the page's choice, what the browser offers, and
// whether this build has the WebGPU towers at all.
async function chooseBackend(choice) {
  const gpu = await probeWebGpu();
  const built = typeof fisao.Highlighter.loadGpu === 'function';
  if (choice === 'wasm') return { kind: 'wasm', note: '' };
  if (gpu.available && built) return { kind: 'webgpu', note: '' };
  const why = !gpu.available ? `no WebGPU adapter (${gpu.reason})` : 'this build has no WebGPU towers';
  if (choice === 'webgpu') throw new Error(`WebGPU was asked for, but ${why}`);
  return { kind: 'wasm', note: `${why}; using WASM on the CPU` };
}

async function load(msg) {
  const { kind, note } = await chooseBackend(msg.backend);
  const weights = msg.weights.map((b) => new Uint8Array(b));
  const config = new Uint8Array(msg.config);
  const tokenizer = new Uint8Array(msg.tokenizer);
  const pre = msg.preprocessor ?? undefined;
  // Build the new model before dropping the old one: a bad file keeps the old model usable.
  const next = kind === 'webgpu'
    ? await fisao.Highlighter.loadGpu(config, weights, tokenizer, pre)
    : fisao.Highlighter.loadCpu(config, weights, tokenizer, pre);
  if (highlighter) highlighter.free();
  highlighter = next;
  let vocab = null;
  if (msg.vocabCache) {
    // A cache that does not fit is reported, and the model is used without it.
    try { vocab = highlighter.setVocabCache(new Uint8Array(msg.vocabCache), msg.vocabCacheName); }
    catch (e) { vocab = `not used: ${e.message}`; }
  }
  return { backend: highlighter.backend(), info: JSON.parse(highlighter.modelInfo()), note, vocab };
}

function need() {
  if (!highlighter) throw new Error('no model loaded: choose the model files or a URL first');
  return highlighter;
}

const ops = {
  async hello() { return { webgpu: await probeWebGpu(), gpuBuilt: typeof fisao.Highlighter.loadGpu === 'function' }; },
  load,
  async image(msg) { await need().setImage(new Uint8Array(msg.bytes), msg.name); return {}; },
  async vocab(msg) { return need().setVocabCache(new Uint8Array(msg.bytes), msg.name); },
  async baselines(msg) { return need().setBaselines(msg.json, msg.name); },
  async clearBaselines() { need().clearBaselines(); return null; },
  async score(msg) { return JSON.parse(await need().score(msg.text, JSON.stringify(msg.settings))); },
  async mentions(msg) { return JSON.parse(fisao.find_mentions(msg.text)); },
};

self.onmessage = async (ev) => {
  const msg = ev.data;
  const t0 = performance.now();
  try {
    await ready;
    const op = ops[msg.op];
    if (!op) throw new Error(`unknown operation ${msg.op}`);
    const result = await op(msg);
    self.postMessage({ id: msg.id, ok: true, result, ms: performance.now() - t0 });
  } catch (e) {
    self.postMessage({ id: msg.id, ok: false, error: String((e && e.message) || e), ms: performance.now() - t0 });
  }
};
