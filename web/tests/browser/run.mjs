// Browser tests of the highlighter page, in headless Chromium (Debian's,
// driven by playwright-core; nothing is downloaded). `cargo xtask test`
// builds the page, serves it and runs this script with:
//   BASE_URL   the page, e.g. http://127.0.0.1:PORT/ (fixtures under /fixtures/)
//   ROOT       the workspace root (fixture files for the file pickers)
//   FISAO_BIN  the native `fisao` binary: expected reports come from `fisao score --json`
//   CHROMIUM   the browser binary (default /usr/bin/chromium)
//   BACKENDS   comma list of wasm,webgpu (default both)
//   SCREENSHOT where to save a screenshot of the scored page (optional)
// Each backend: error paths, loading from a URL and from files, scoring
// against the native CLI within 1e-4, the label rule under other margins,
// highlights and hover, a calibrated baseline.json (all three labels, against
// `fisao score --baseline`), the demo's verifier, and no request leaving 127.0.0.1.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BASE = process.env.BASE_URL;
const ROOT = process.env.ROOT;
const FISAO = process.env.FISAO_BIN;
if (!BASE || !ROOT || !FISAO) throw new Error('BASE_URL, ROOT and FISAO_BIN must be set');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BACKENDS = (process.env.BACKENDS || 'wasm,webgpu').split(',');
const TOL = 1e-4;

const MODEL = 'tests/fixtures/clip/tiny-quickgelu';
const IMAGE = 'tests/fixtures/images/chelsea.png';
const NOT_AN_IMAGE = 'tests/fixtures/clip/pixels_inputs/not_an_image.png';
// A verifier written by the demo's own code (gpu-train/src/demo/verifier.rs,
// HF CLIP layout, its own BPE tokenizer) and one image of its world.
const DEMO_VERIFIER = 'tests/fixtures/demo/verifier';
const DEMO_IMAGE = `${DEMO_VERIFIER}/val_0.png`;
// Captions with repeats, multi-word entities, non-ASCII text (UTF-16 offsets
// differ from character offsets after the emoji) and a caption with no mentions.
const CASES = [
  { text: 'A cat lies on a sofa next to a laptop, a cup and a teddy bear; the cat looks at a dog.', template: '{}' },
  { text: '😺 Un chat: a tabby cat, two remote controls, a pizza and an umbrella near the window.', template: 'a photo of a {}.' },
  { text: 'Nothing here names an object.', template: '{}' },
];

const p = (rel) => path.join(ROOT, rel);
let failures = 0;
let checks = 0;
function check(cond, what) {
  checks++;
  if (!cond) { failures++; console.error(`  FAIL: ${what}`); }
}
const near = (a, b) => Math.abs(a - b) <= TOL;

// The native report: the `fisao` CLI on the same model, image, caption, template and baselines.
function nativeReport(text, template, model = p(MODEL), baseline = null, image = p(IMAGE)) {
  const args = ['score', '--json', '--model', model, '--image', image, '--text', text, '--template', template];
  if (baseline) args.push('--baseline', baseline);
  return JSON.parse(execFileSync(FISAO, args, { encoding: 'utf8' }));
}

// The tiny model with exp(logit_scale) set to `scale`: its cosines are all
// below the default baselines' band, so a larger scale and a calibrated
// baseline.json spread its mentions over all three labels.
function scaledModel(dir, scale) {
  const w = Buffer.from(readFileSync(p(`${MODEL}/model.safetensors`)));
  const len = Number(w.readBigUInt64LE(0));
  const entry = JSON.parse(w.subarray(8, 8 + len).toString()).logit_scale;
  if (!entry || entry.dtype !== 'F32') throw new Error('tiny model: no f32 logit_scale');
  w.writeFloatLE(Math.log(scale), 8 + len + entry.data_offsets[0]);
  writeFileSync(path.join(dir, 'model.safetensors'), w);
  for (const f of ['config.json', 'tokenizer.json']) writeFileSync(path.join(dir, f), readFileSync(p(`${MODEL}/${f}`)));
  return ['config.json', 'tokenizer.json', 'model.safetensors'].map((f) => path.join(dir, f));
}

// Object-level baselines centred on `tau` (the CLI's default margin 10 then
// puts hi = tau + 5 and lo = tau - 5), for the model with hash `hash`.
function baselineJson(hash, tau) {
  const stats = (mean, min, max) => ({ count: 10, mean, m2: 1, min, max });
  return JSON.stringify({
    version: 1, level: 'object',
    verifier: { model: 'tiny-quickgelu, logit scale 1000 (test)', model_hash: hash, score: 'cosine100', template: '{}' },
    correct: stats(tau + 10, tau, 200), hallucinated: stats(tau - 10, -100, tau),
  });
}

// The model hash of `files` as the WASM backend computes it (a helper page).
async function hashOnWasm(context, files) {
  const page = await context.newPage();
  await page.goto(`${BASE}?backend=wasm`);
  await waitPhase(page, ['idle'], 'helper page start-up');
  await page.setInputFiles('#model-files', files);
  await waitPhase(page, ['ready', 'error'], 'helper page: loading the model');
  const hash = await page.evaluate(() => window.fisao.model && window.fisao.model.info.hash);
  await page.close();
  if (!hash) throw new Error('the WASM backend gave no model hash');
  return hash;
}

// Runs `action` and waits for the page to finish scoring again.
async function rescored(page, action, what) {
  await page.evaluate(() => { document.body.dataset.phase = 'waiting'; });
  await action();
  await waitPhase(page, ['scored'], what);
  return page.evaluate(() => window.fisao.report);
}

async function waitPhase(page, phases, what) {
  await page.waitForFunction((ps) => ps.includes(document.body.dataset.phase), phases, { timeout: 120_000 })
    .catch(async (e) => { throw new Error(`${what}: phase stayed ${await page.evaluate(() => document.body.dataset.phase)} (${e.message})`); });
}
const errorText = (page) => page.evaluate(() => { const e = document.getElementById('error'); return e.hidden ? '' : e.textContent; });

// A readable message names the problem and is not a raw wasm trap.
function readable(msg, mustContain, what) {
  check(msg.includes(mustContain), `${what}: message ${JSON.stringify(msg)} should contain ${JSON.stringify(mustContain)}`);
  check(!/unreachable|RuntimeError|panicked|undefined/.test(msg), `${what}: message ${JSON.stringify(msg)} looks like a crash`);
}

async function scoreCase(page, c) {
  await page.fill('#template', c.template);
  await page.$eval('#caption', (e, v) => { e.value = v; }, c.text);
  return rescored(page, () => page.click('#score'), `scoring ${JSON.stringify(c.text)}`);
}

// Scores are compared within 1e-4 on CLIP's own scale (exp(logit_scale) =
// 100 for the OpenAI checkpoints; the tiny model's is about 10, so 1e-4
// there too): a model with a larger scale gets 1e-4 * scale / 100, the same
// agreement in cosine units. Rewards live in [-1, 1]: 1e-4.
function compareWithNative(report, native, what, logitScale = 10) {
  const tol = TOL * Math.max(1, logitScale / 100);
  const close = (a, b) => Math.abs(a - b) <= tol;
  check(report.mentions.length === native.mentions.length, `${what}: ${report.mentions.length} mentions, native ${native.mentions.length}`);
  native.mentions.forEach((n, i) => {
    const m = report.mentions[i] || {};
    const id = `${what} mention ${i} (${n.text})`;
    check(m.text === n.text && m.entity === n.entity && m.start === n.start && m.end === n.end, `${id}: span/entity ${JSON.stringify([m.text, m.entity, m.start, m.end])} vs ${JSON.stringify([n.text, n.entity, n.start, n.end])}`);
    check(close(m.score, n.score), `${id}: score ${m.score} vs native ${n.score} (tolerance ${tol})`);
    check(near(m.reward, n.reward), `${id}: reward ${m.reward} vs native ${n.reward}`);
    check(m.label === n.label, `${id}: label ${m.label} vs native ${n.label}`);
    check(m.repeat === n.repeat, `${id}: repeat ${m.repeat} vs native ${n.repeat}`);
  });
  check(close(report.sentence_score, native.sentence_score), `${what}: sentence score ${report.sentence_score} vs native ${native.sentence_score}`);
  check(report.template === native.template && report.score_kind === native.score_kind, `${what}: template/score kind`);
}

// The drawn caption: each highlight is exactly its mention, coloured by its label.
async function checkHighlights(page, text, report, what) {
  const spans = await page.$$eval('#output .m', (els) => els.map((e) => ({ text: e.textContent, cls: e.className, ...e.dataset })));
  check(spans.length === report.mentions.length, `${what}: ${spans.length} highlights for ${report.mentions.length} mentions`);
  const cls = { grounded: 'grounded', uncertain: 'uncertain', 'likely hallucinated': 'hallucinated' };
  report.mentions.forEach((m, i) => {
    const s = spans[i] || {};
    check(s.text === text.slice(m.js_start, m.js_end) && s.text === m.text, `${what}: highlight ${i} is ${JSON.stringify(s.text)}, mention ${JSON.stringify(m.text)}`);
    check(s.cls === `m ${cls[m.label]}` && s.label === m.label, `${what}: highlight ${i} class ${s.cls} for label ${m.label}`);
  });
  const shown = await page.$eval('#output', (e) => e.textContent);
  check(shown.startsWith(text), `${what}: the caption is drawn unchanged`);
}

// Labels follow the bounds the report states (eq. 8: hi and lo around the margin).
function checkLabelRule(report, what) {
  const { hi, lo } = report.bounds;
  for (const m of report.mentions) {
    const want = m.score >= hi ? 'grounded' : m.score <= lo ? 'likely hallucinated' : 'uncertain';
    check(m.label === want, `${what}: ${m.text} score ${m.score} with hi ${hi}, lo ${lo} is ${m.label}, want ${want}`);
  }
}

async function testBackend(browser, backend, tmp) {
  console.log(`backend ${backend}`);
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) foreign.push(r.url()); });
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const t0 = Date.now();
  await page.goto(`${BASE}?backend=${backend}`);
  await waitPhase(page, ['idle'], 'start-up');
  const gpu = await page.evaluate(() => window.fisao.webgpu);
  if (backend === 'webgpu' && !gpu.available) throw new Error(`no WebGPU adapter in this Chromium: ${gpu.reason}`);

  // Error paths before anything is loaded.
  await page.click('#score');
  readable(await errorText(page), 'No model loaded', 'score without a model');
  await page.setInputFiles('#model-files', p(IMAGE));
  await waitPhase(page, ['error', 'ready'], 'wrong file');
  readable(await errorText(page), 'lack config.json', 'an image given as the model');
  const model = (f) => readFileSync(p(`${MODEL}/${f}`));
  const weights = model('model.safetensors');
  await page.setInputFiles('#model-files', [
    { name: 'config.json', mimeType: 'application/json', buffer: model('config.json') },
    { name: 'tokenizer.json', mimeType: 'application/json', buffer: model('tokenizer.json') },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: weights.subarray(0, Math.floor(weights.length / 2)) },
  ]);
  await waitPhase(page, ['error', 'ready'], 'corrupt weights');
  readable(await errorText(page), 'safetensors', 'truncated weights');
  await page.setInputFiles('#model-files', [
    { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from('{"model_type": "clip", "text_config": 3}') },
    { name: 'tokenizer.json', mimeType: 'application/json', buffer: model('tokenizer.json') },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: weights },
  ]);
  await waitPhase(page, ['error', 'ready'], 'bad config');
  readable(await errorText(page), 'config', 'a malformed config.json');
  await page.fill('#model-url', `${BASE}fixtures/clip/no-such-model/`);
  await page.click('#load-url');
  await waitPhase(page, ['error', 'ready'], 'missing URL');
  readable(await errorText(page), 'HTTP 404', 'a URL with no model');

  // Load from a URL; the page names the backend.
  await page.fill('#model-url', `${BASE}fixtures/clip/tiny-quickgelu/`);
  await page.click('#load-url');
  await waitPhase(page, ['ready'], 'loading the tiny model');
  check(await errorText(page) === '', `loading from a URL: no error (${await errorText(page)})`);
  const shown = await page.$eval('#backend', (e) => e.dataset.backend);
  const want = backend === 'wasm' ? 'wasm-cpu' : 'webgpu-';
  check(shown.startsWith(want), `the page says backend ${shown}, want ${want}*`);
  const readyMs = Date.now() - t0;

  // No image yet, then not an image, then the photo.
  await page.fill('#caption', CASES[0].text);
  await page.click('#score');
  await page.waitForFunction(() => !document.getElementById('error').hidden);
  readable(await errorText(page), 'No image', 'score without an image');
  await page.setInputFiles('#image-file', p(NOT_AN_IMAGE));
  await page.waitForFunction(() => !document.getElementById('error').hidden);
  readable(await errorText(page), 'not a PNG, JPEG or WebP', 'a file that is not an image');
  await page.setInputFiles('#image-file', p(IMAGE));
  await waitPhase(page, ['scored'], 'embedding the photo (it scores the caption already typed)');
  check(await errorText(page) === '', `the photo: no error (${await errorText(page)})`);

  // Two images chosen in the same instant: both embeddings are in flight in
  // the worker at once, and neither may break the model for the calls after
  // it (a workspace held across the GPU readback's await used to).
  await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const input = document.getElementById('image-file');
    for (const name of ['first.png', 'second.png']) {
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type: 'image/png' }));
      input.files = dt.files;
      input.dispatchEvent(new Event('change', { bubbles: true }));
    }
  }, readFileSync(p(IMAGE)).toString('base64'));
  await page.waitForFunction(() => /second\.png: embedded|Could not use/.test(
    document.getElementById('image-status').textContent + (document.getElementById('error').hidden ? '' : 'Could not use')));
  check(await errorText(page) === '', `two photos at once: no error (${await errorText(page)})`);
  await page.fill('#caption', CASES[0].text);
  await page.click('#score');
  await waitPhase(page, ['scored'], 'scoring after two photos back to back');
  check(await errorText(page) === '', `two photos back to back: no error (${await errorText(page)})`);

  // Scores equal the native CLI's within 1e-4; highlights match the labels.
  for (const c of CASES) {
    const report = await scoreCase(page, c);
    const what = `${backend} ${JSON.stringify(c.text.slice(0, 24))}`;
    compareWithNative(report, nativeReport(c.text, c.template), what);
    await checkHighlights(page, c.text, report, what);
    checkLabelRule(report, what);
  }

  // Other margins (score units): the same scores, bounds moved, labels by the rule.
  const base = await scoreCase(page, CASES[0]);
  for (const factor of [0, 2]) {
    const r = await rescored(page, async () => {
      await page.$eval('#margin', (e, v) => { e.value = String(v); e.dispatchEvent(new Event('input')); }, base.margin * factor);
      await page.click('#score');
    }, `margin x${factor}`);
    const slider = Number(await page.$eval('#margin', (e) => e.value));
    check(Math.abs(r.margin - slider) < 1e-12, `margin x${factor}: the slider's ${slider} reaches the report (${r.margin})`);
    check(r.mentions.every((m, i) => m.score === base.mentions[i].score), `margin x${factor}: scores unchanged`);
    check((r.bounds.hi - r.bounds.lo > base.bounds.hi - base.bounds.lo) === (factor > 1), `margin x${factor}: the band follows the margin`);
    checkLabelRule(r, `margin x${factor}`);
  }
  const final = await rescored(page, () => page.click('#margin-default'), 'margin back to the default');
  check(final.margin === base.margin, `the default margin comes back (${final.margin} vs ${base.margin})`);

  // Hover shows entity, score and reward.
  await page.hover('#output .m >> nth=0');
  const tip = await page.$eval('#tooltip', (e) => (e.hidden ? '' : e.textContent));
  check(tip.includes(final.mentions[0].entity) && tip.includes(final.mentions[0].score.toFixed(4)), `hover tooltip ${JSON.stringify(tip)}`);

  // Loading the same model from picked files gives the same scores.
  await rescored(page, () => page.setInputFiles('#model-files', ['config.json', 'tokenizer.json', 'model.safetensors'].map((f) => p(`${MODEL}/${f}`))),
    'reloading from files (re-embeds the image and rescores)');
  const fromFiles = await scoreCase(page, CASES[0]);
  check(fromFiles.mentions.every((m, i) => m.score === final.mentions[i].score), 'files and URL give the same scores');

  // A calibrated baseline.json on a model whose scores spread out: all
  // three labels, equal to `fisao score --baseline` within 1e-4.
  const scaledFiles = scaledModel(tmp, 1000);
  await rescored(page, () => page.setInputFiles('#model-files', scaledFiles), 'loading the rescaled model');
  await page.fill('#template', '{}');
  const spread = await scoreCase(page, CASES[0]);
  const sorted = spread.mentions.map((m) => m.score).sort((a, b) => a - b);
  const tau = sorted[Math.floor(sorted.length / 2)];
  // The WebGPU loader computes no model hash; the WASM one does, and the CLI checks it.
  const hash = (await page.evaluate(() => window.fisao.model.info.hash)) || await hashOnWasm(page.context(), scaledFiles);
  const baselinePath = path.join(tmp, 'baseline.json');
  writeFileSync(baselinePath, baselineJson(hash, tau));
  const calibrated = await rescored(page, () => page.setInputFiles('#baselines-file', baselinePath), 'loading baseline.json');
  check(calibrated.baseline === 'baseline.json', `the report names the baselines (${calibrated.baseline})`);
  compareWithNative(calibrated, nativeReport(CASES[0].text, '{}', tmp, baselinePath), `${backend} with baseline.json`, 1000);
  await checkHighlights(page, CASES[0].text, calibrated, `${backend} with baseline.json`);
  const labels = new Set(calibrated.mentions.map((m) => m.label));
  check(labels.size === 3, `baseline.json: all three labels occur (got ${[...labels].join(', ')})`);
  if (process.env.SCREENSHOT && backend === BACKENDS[0]) {
    await page.hover('#output .m.hallucinated >> nth=0');
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  }
  // Another template than the baselines' is refused, as the CLI refuses it.
  await page.fill('#template', 'a photo of a {}.');
  await page.click('#score');
  await page.waitForFunction(() => !document.getElementById('error').hidden);
  readable(await errorText(page), 'baselines were computed with template', 'baselines of another template');
  await page.fill('#template', '{}');
  const defaults = await rescored(page, () => page.click('#baselines-default'), 'back to the default baselines');
  check(defaults.baseline === 'default, uncalibrated', `back to the default baselines (${defaults.baseline})`);
  if (await page.evaluate(() => window.fisao.model.info.hash)) {
    const wrongModel = path.join(tmp, 'other-model.json');
    writeFileSync(wrongModel, baselineJson('sha256:0000', tau));
    await page.setInputFiles('#baselines-file', wrongModel);
    await page.waitForFunction(() => !document.getElementById('error').hidden);
    readable(await errorText(page), 'baselines were computed with model sha256:0000', 'baselines of another model');
  } else {
    console.log(`  ${backend}: the model has no hash here, so baselines of another model cannot be refused (not checked)`);
  }

  // The verifier `cargo xtask demo` writes loads from picked files and scores
  // an image of its world as `fisao score` does.
  const demoFiles = ['config.json', 'tokenizer.json', 'model.safetensors'].map((f) => p(`${DEMO_VERIFIER}/${f}`));
  await page.fill('#template', '{}');
  await rescored(page, () => page.setInputFiles('#model-files', demoFiles), 'loading the demo verifier');
  await rescored(page, () => page.setInputFiles('#image-file', p(DEMO_IMAGE)), 'embedding a world image');
  const demoCase = { text: 'a fork and two knives next to a dog, and a cup.', template: '{}' };
  const demo = await scoreCase(page, demoCase);
  check(demo.mentions.length === 4, `demo verifier: ${demo.mentions.length} mentions, want 4`);
  compareWithNative(demo, nativeReport(demoCase.text, '{}', p(DEMO_VERIFIER), null, p(DEMO_IMAGE)), `${backend} demo verifier`);

  const timings = await page.evaluate(() => window.fisao.timings);
  console.log(`  ${backend}: ready (model loaded) ${readyMs} ms after navigation; image ${timings.image_ms?.toFixed(1)} ms; score ${timings.score_ms?.toFixed(1)} ms`);
  check(foreign.length === 0, `no request leaves ${BASE} (got ${foreign.join(', ')})`);
  check(consoleErrors.length === 0, `no uncaught page errors (${consoleErrors.join('; ')})`);
  await page.close();
}

const profile = mkdtempSync(path.join(tmpdir(), 'fisao-chromium-'));
const tmp = mkdtempSync(path.join(tmpdir(), 'fisao-web-test-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
});
try {
  for (const b of BACKENDS) await testBackend(browser, b, tmp);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`${checks - failures} of ${checks} checks passed`);
if (failures) process.exit(1);
