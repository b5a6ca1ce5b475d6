// The page: reads the model, image and caption the user gives, hands them to
// the worker (worker.js, which runs the WebAssembly), and draws the report.
// Nothing is sent anywhere: files are read locally, URLs are fetched by this tab.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// ---- the worker -----------------------------------------------------------

const worker = new Worker('worker.js', { type: 'module' });
const pending = new Map();
let nextId = 1;
worker.onmessage = (ev) => {
  const { id, ok, result, error, ms } = ev.data;
  const p = pending.get(id);
  pending.delete(id);
  if (ok) p.resolve({ result, ms }); else p.reject(new Error(error));
};
worker.onerror = (ev) => showError(`the worker failed: ${ev.message || 'could not start (is pkg/ built?)'}`);
function call(op, data = {}, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, op, ...data }, transfer);
  });
}

// ---- state the tests and the perf script read -------------------------------

const state = { model: null, image: false, report: null, timings: {}, phase: 'starting' };
window.fisao = state;
// The longest main-thread task (the page must stay responsive while the worker works).
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) state.timings.longest_task_ms = Math.max(state.timings.longest_task_ms || 0, e.duration);
  }).observe({ type: 'longtask', buffered: true });
} catch { /* no Long Tasks API: nothing to record */ }
function phase(p) { state.phase = p; document.body.dataset.phase = p; }

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
  document.body.dataset.error = message;
}
function clearError() { $('error').hidden = true; delete document.body.dataset.error; }

// ---- reading files and URLs with progress ------------------------------------

function progress(done, total, text) {
  const bar = $('progress');
  bar.hidden = false;
  if (total > 0) { bar.max = total; bar.value = done; } else bar.removeAttribute('value');
  $('model-status').textContent = text;
}
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

// Reads a stream into one buffer, reporting bytes as they arrive. With the
// size known up front each chunk is copied into place as it comes, so no
// single long copy blocks the page at the end (600 MB took 1.5 s).
async function readStream(stream, onBytes, size = 0) {
  const reader = stream.getReader();
  let out = new Uint8Array(size);
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n + value.length > out.length) {
      // Size unknown or wrong: grow geometrically.
      const bigger = new Uint8Array(Math.max(out.length * 2, n + value.length));
      bigger.set(out.subarray(0, n));
      out = bigger;
    }
    out.set(value, n);
    n += value.length;
    onBytes(value.length);
  }
  return n === out.length ? out.buffer : out.slice(0, n).buffer;
}

// The safetensors header's `__metadata__.format` (vocabulary caches say fisao-embeddings-v1).
async function safetensorsFormat(blob) {
  try {
    const head = new DataView(await blob.slice(0, 8).arrayBuffer());
    const len = Number(head.getBigUint64(0, true));
    if (len <= 0 || len > 100e6) return null;
    const json = JSON.parse(await blob.slice(8, 8 + len).text());
    return (json.__metadata__ && json.__metadata__.format) || null;
  } catch { return null; }
}

// Sorts picked files into a checkpoint; says what is missing.
async function checkpointFromFiles(files) {
  const byName = new Map([...files].map((f) => [f.name, f]));
  const missing = ['config.json', 'tokenizer.json'].filter((n) => !byName.has(n));
  const weights = [];
  let vocab = null;
  for (const f of files) {
    if (!f.name.endsWith('.safetensors')) continue;
    if ((await safetensorsFormat(f)) === 'fisao-embeddings-v1') vocab = f; else weights.push(f);
  }
  weights.sort((a, b) => a.name.localeCompare(b.name));
  if (weights.length === 0) missing.push('model.safetensors (or its shards)');
  if (missing.length) {
    throw new Error(`the chosen files lack ${missing.join(', ')} (got: ${[...byName.keys()].join(', ') || 'nothing'})`);
  }
  const all = [byName.get('config.json'), byName.get('tokenizer.json'), ...weights, byName.get('preprocessor_config.json'), vocab].filter(Boolean);
  const total = all.reduce((s, f) => s + f.size, 0);
  let done = 0;
  const read = async (f) => readStream(f.stream(), (n) => { done += n; progress(done, total, `reading ${f.name}: ${mb(done)} of ${mb(total)}`); }, f.size);
  return {
    config: await read(byName.get('config.json')),
    tokenizer: await read(byName.get('tokenizer.json')),
    weights: await Promise.all(weights.map(read)),
    preprocessor: byName.has('preprocessor_config.json') ? await byName.get('preprocessor_config.json').text() : null,
    vocabCache: vocab ? await read(vocab) : null,
    vocabCacheName: vocab ? vocab.name : null,
  };
}

async function fetchChecked(url, optional = false) {
  let r;
  try { r = await fetch(url); } catch (e) { throw new Error(`could not fetch ${url}: ${e.message}`); }
  if (!r.ok) {
    if (optional && r.status === 404) return null;
    throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  }
  return r;
}

// Fetches a checkpoint folder: config, tokenizer, weights (single file or an index's shards).
async function checkpointFromUrl(base) {
  if (!base) throw new Error('type the URL of a model folder first');
  if (!base.endsWith('/')) base += '/';
  const text = async (name, optional) => { const r = await fetchChecked(base + name, optional); return r && r.text(); };
  const configText = await text('config.json');
  try { JSON.parse(configText); } catch (e) { throw new Error(`${base}config.json is not JSON: ${e.message}`); }
  let shardNames = ['model.safetensors'];
  const index = await text('model.safetensors.index.json', true);
  if (index) {
    try { shardNames = [...new Set(Object.values(JSON.parse(index).weight_map))].sort(); }
    catch (e) { throw new Error(`${base}model.safetensors.index.json: ${e.message}`); }
  }
  const responses = [await fetchChecked(base + 'tokenizer.json'), ...await Promise.all(shardNames.map((n) => fetchChecked(base + n)))];
  const total = responses.reduce((s, r) => s + Number(r.headers.get('content-length') || 0), 0);
  let done = 0;
  const bufs = [];
  for (const r of responses) {
    const size = Number(r.headers.get('content-length') || 0);
    bufs.push(await readStream(r.body, (n) => { done += n; progress(done, total, `downloading ${r.url.split('/').pop()}: ${mb(done)} of ${mb(total)}`); }, size));
  }
  return {
    config: new TextEncoder().encode(configText).buffer,
    tokenizer: bufs[0],
    weights: bufs.slice(1),
    preprocessor: await text('preprocessor_config.json', true),
    vocabCache: null,
    vocabCacheName: null,
  };
}

// ---- actions ------------------------------------------------------------------

async function loadModel(getCheckpoint) {
  clearError();
  phase('loading');
  const t0 = performance.now();
  try {
    const ck = await getCheckpoint();
    progress(0, 0, 'building the model (parsing and checking the weights)…');
    const transfer = [ck.config, ck.tokenizer, ...ck.weights, ck.vocabCache].filter(Boolean);
    const { result } = await call('load', { ...ck, backend: $('backend-choice').value }, transfer);
    state.model = result;
    state.timings.load_ms = performance.now() - t0;
    state.timings.ready_at_ms = performance.now();
    setBackend(result.backend, result.note);
    const i = result.info;
    $('model-status').textContent = `Loaded in ${(state.timings.load_ms / 1000).toFixed(2)} s: ` +
      `${i.vision_layers}+${i.text_layers} layers, image ${i.image_size}px, embedding ${i.projection_dim}` +
      (result.vocab ? `; vocabulary cache: ${result.vocab}` : '') + `; ${i.device || 'unnamed adapter'}` + (i.hash ? ` (${i.hash.slice(0, 19)}…)` : '');
    state.image = false;
    marginAuto = true;
    $('baselines-status').textContent = 'default, uncalibrated baselines';
    $('image-status').textContent = 'Choose the image (again) for this model.';
    $('progress').hidden = true;
    phase('ready');
    // The image chosen before is embedded again by the new model (and the caption rescored).
    if (imageFile) await setImage(imageFile);
  } catch (e) {
    showError(`Could not load the model: ${e.message}`);
    $('model-status').textContent = state.model ? 'The previous model is still loaded.' : 'No model loaded.';
    phase(state.model ? 'ready' : 'error');
  } finally {
    $('progress').hidden = true;
  }
}

let imageFile = null;
async function setImage(file) {
  imageFile = file;
  const url = URL.createObjectURL(file);
  $('preview').src = url;
  $('preview').hidden = false;
  if (!state.model) { $('image-status').textContent = 'Image chosen; load a model to embed it.'; return; }
  clearError();
  phase('embedding');
  state.image = false;
  try {
    const bytes = await file.arrayBuffer();
    const { ms } = await call('image', { bytes, name: file.name }, [bytes]);
    state.image = true;
    state.timings.image_ms = ms;
    $('image-status').textContent = `${file.name}: embedded in ${ms.toFixed(1)} ms.`;
    phase('ready');
    if ($('caption').value.trim()) await score();
  } catch (e) {
    showError(`Could not use the image: ${e.message}`);
    $('image-status').textContent = 'No usable image.';
    phase('ready');
  }
}

// The margin follows `fisao score`'s default (null) until the user moves it.
let marginAuto = true;
function settings() {
  return {
    template: $('template').value,
    margin: marginAuto ? null : Number($('margin').value),
    score: $('score-kind').value,
    sentence: true,
  };
}

let scoring = Promise.resolve();
function score() {
  // One scoring at a time, in order: a burst of slider moves queues behind the running one.
  scoring = scoring.then(scoreNow, scoreNow);
  return scoring;
}
async function scoreNow() {
  clearError();
  if (!state.model) { showError('No model loaded: choose the model files or a URL first.'); return; }
  if (!state.image) { showError('No image: choose an image before scoring.'); return; }
  const text = $('caption').value;
  phase('scoring');
  try {
    const { result, ms } = await call('score', { text, settings: settings() });
    state.report = result;
    state.timings.score_ms = ms;
    render(text, result);
    $('timing').textContent = `Scored ${result.mentions.length} mentions in ${ms.toFixed(1)} ms on ${result.backend}.`;
    phase('scored');
  } catch (e) {
    showError(`Could not score: ${e.message}`);
    phase('ready');
  }
}

// ---- drawing --------------------------------------------------------------------

const labelClass = { grounded: 'grounded', uncertain: 'uncertain', 'likely hallucinated': 'hallucinated' };

function render(text, report) {
  const out = $('output');
  out.replaceChildren();
  let at = 0;
  for (const m of report.mentions) {
    out.append(document.createTextNode(text.slice(at, m.js_start)));
    const span = document.createElement('span');
    span.className = `m ${labelClass[m.label]}`;
    span.textContent = text.slice(m.js_start, m.js_end);
    Object.assign(span.dataset, {
      label: m.label, entity: m.entity, score: String(m.score), reward: String(m.reward),
      start: String(m.js_start), end: String(m.js_end),
    });
    span.setAttribute('aria-label', `${m.text}: ${m.label}, score ${m.score.toFixed(3)}, reward ${m.reward.toFixed(3)}`);
    out.append(span);
    at = m.js_end;
  }
  out.append(document.createTextNode(text.slice(at)));
  if (marginAuto) {
    // Scale the slider to the default margin, in the score's units.
    const m = $('margin');
    const max = Math.max(report.margin * 3, 1e-3);
    m.max = String(max);
    m.step = String(max / 300);
    m.value = String(report.margin);
  }
  $('margin-value').textContent = `${report.margin.toPrecision(4)}${marginAuto ? ' (default)' : ''}`;
  const b = report.bounds;
  $('bounds').textContent = ` (hi ${b.hi.toFixed(3)}, lo ${b.lo.toFixed(3)}; ${report.score_kind}, template ${JSON.stringify(report.template)}, baselines ${report.baseline})`;
  $('sentence').textContent = report.sentence_score == null ? '' :
    `Whole caption: score ${report.sentence_score.toFixed(3)}${report.sentence_truncated ? ' (cut to CLIP\'s 77 tokens)' : ''}.`;
  const body = $('mentions').tBodies[0];
  body.replaceChildren(...report.mentions.map((m) => {
    const tr = document.createElement('tr');
    const cells = [m.text + (m.repeat ? ' (repeat)' : ''), m.entity, m.score.toFixed(4), m.reward.toFixed(4), m.label];
    cells.forEach((c, i) => { const td = document.createElement('td'); td.textContent = c; if (i === 2 || i === 3) td.className = 'num'; tr.append(td); });
    return tr;
  }));
  $('mentions').hidden = report.mentions.length === 0;
  if (report.mentions.length === 0) out.append(document.createTextNode(text ? '  (no object mentions found)' : ''));
}

function setBackend(backend, note) {
  const el = $('backend');
  el.dataset.backend = backend;
  el.textContent = `backend: ${backend}${note ? ` (${note})` : ''}`;
}

// Hover: entity, score, reward, label.
const tip = $('tooltip');
$('output').addEventListener('mousemove', (ev) => {
  const s = ev.target.closest('.m');
  if (!s) { tip.hidden = true; return; }
  const d = s.dataset;
  tip.textContent = `${d.entity}\n${d.label}\nscore  ${Number(d.score).toFixed(4)}\nreward ${Number(d.reward).toFixed(4)}`;
  tip.style.left = `${ev.clientX + 12}px`;
  tip.style.top = `${ev.clientY + 12}px`;
  tip.hidden = false;
});
$('output').addEventListener('mouseleave', () => { tip.hidden = true; });

// ---- wiring -------------------------------------------------------------------------

$('model-files').addEventListener('change', (ev) => {
  const files = [...ev.target.files];
  if (files.length) loadModel(() => checkpointFromFiles(files));
});
$('load-url').addEventListener('click', () => loadModel(() => checkpointFromUrl($('model-url').value.trim())));
$('image-file').addEventListener('change', (ev) => { if (ev.target.files[0]) setImage(ev.target.files[0]); });
let debounce = 0;
// An explicit click supersedes a pending automatic rescore (same settings):
// without this, the page scored twice and the first report was stale.
$('score').addEventListener('click', () => { clearTimeout(debounce); score(); });
const rescore = () => { clearTimeout(debounce); debounce = setTimeout(() => { if (state.model && state.image && $('caption').value.trim()) score(); }, 300); };
$('caption').addEventListener('input', rescore);
$('template').addEventListener('change', rescore);
$('score-kind').addEventListener('change', rescore);
$('margin').addEventListener('input', () => { marginAuto = false; $('margin-value').textContent = Number($('margin').value).toPrecision(4); rescore(); });
$('margin-default').addEventListener('click', () => { marginAuto = true; rescore(); });
$('baselines-file').addEventListener('change', async (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  clearError();
  try {
    const { result } = await call('baselines', { json: await f.text(), name: f.name });
    $('baselines-status').textContent = result;
    marginAuto = true;
    rescore();
  } catch (e) {
    showError(`Could not use the baselines: ${e.message}`);
  }
  ev.target.value = '';
});
$('baselines-default').addEventListener('click', async () => {
  if (!state.model) return;
  await call('clearBaselines');
  $('baselines-status').textContent = 'default, uncalibrated baselines';
  marginAuto = true;
  rescore();
});

// Start-up: say which backend will run, then honour ?backend= and ?model= (for links and benchmarks).
(async () => {
  if (params.get('backend')) $('backend-choice').value = params.get('backend');
  try {
    const { result } = await call('hello');
    const g = result.webgpu;
    const gpuNote = g.available ? `WebGPU adapter: ${g.adapter}${g.f16 ? ', f16' : ', f32 only'}` : `no WebGPU (${g.reason})`;
    setBackend(g.available && result.gpuBuilt ? 'webgpu (after loading)' : 'wasm-cpu (after loading)', gpuNote);
    state.webgpu = g;
    state.timings.wasm_ready_ms = performance.now();
    phase('idle');
  } catch (e) {
    showError(`The WebAssembly module did not start: ${e.message}`);
    phase('error');
    return;
  }
  if (params.get('model')) {
    $('model-url').value = params.get('model');
    await loadModel(() => checkpointFromUrl(params.get('model')));
  }
})();
