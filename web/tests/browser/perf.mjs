// Timings of the highlighter page against the same work done natively, in
// one run (docs/perf.md, section "In-browser highlighter"). Not a test.
//   BASE_URL    the page (cargo xtask web --models DIR serves DIR under /models/)
//   MODELS      comma list of name=folder: the page loads BASE_URL/models/<name>/,
//               the native run reads <folder>
//   IMAGE       the photo to embed
//   NATIVE_PERF the native_perf example binary (web/examples/native_perf.rs; unset: page only)
//   BACKENDS    comma list of wasm,webgpu (default wasm)
//   CHROMIUM    the browser (default /usr/bin/chromium)
// Page-ready: navigation start to the model loaded and ready to score
// (?model=<url>, so it includes fetching the files and building the model).
// Image: the worker's time to decode, preprocess and embed. Score: the
// worker's time per caption (text tower for its new forms and the whole
// caption, then the report); the captions share no object, so the page's
// memo does not help and the native run uses a fresh session per caption.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BASE = process.env.BASE_URL;
const MODELS = (process.env.MODELS || '').split(',').filter(Boolean).map((s) => s.split('='));
const IMAGE = process.env.IMAGE;
const NATIVE = process.env.NATIVE_PERF;
const BACKENDS = (process.env.BACKENDS || 'wasm').split(',');
const CAPTIONS = [
  'A cat sleeps on a sofa beside a laptop and a cup.',
  'A dog runs past a bicycle, a bench and a fire hydrant.',
  'Two zebras and a giraffe stand near a truck under an umbrella.',
  'A pizza, a knife and a bottle sit on the dining table.',
  'A man with a surfboard walks toward a boat and a kite.',
];
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

async function pageRun(browser, backend, url) {
  const page = await browser.newPage();
  await page.goto(`${BASE}?backend=${backend}&model=${encodeURIComponent(url)}`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.phase) && window.fisao.model, null, { timeout: 600_000 });
  const err = await page.evaluate(() => document.body.dataset.error);
  if (err) throw new Error(`${url} on ${backend}: ${err}`);
  const ready = await page.evaluate(() => window.fisao.timings.ready_at_ms);
  const shownBackend = await page.evaluate(() => window.fisao.model.backend);
  await page.setInputFiles('#image-file', IMAGE);
  await page.waitForFunction(() => window.fisao.image || document.body.dataset.error, null, { timeout: 600_000 });
  const image = await page.evaluate(() => window.fisao.timings.image_ms);
  const scores = [];
  for (const c of CAPTIONS) {
    await page.$eval('#caption', (e, v) => { e.value = v; }, c);
    await page.evaluate(() => { window.fisao.phase = ''; document.body.dataset.phase = ''; });
    await page.click('#score');
    await page.waitForFunction(() => document.body.dataset.phase === 'scored' || document.body.dataset.error, null, { timeout: 600_000 });
    scores.push(await page.evaluate(() => window.fisao.timings.score_ms));
  }
  const longest = await page.evaluate(() => window.fisao.timings.longest_task_ms || 0);
  await page.close();
  return { backend: shownBackend, ready, image, score: mean(scores), longest };
}

const profile = mkdtempSync(path.join(tmpdir(), 'fisao-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
});
const rows = [];
const show = (r) => console.error(`row: ${JSON.stringify(r)}`);
try {
  for (const [name, dir] of MODELS) {
    if (NATIVE) {
      const native = JSON.parse(execFileSync(NATIVE, [dir, IMAGE, ...CAPTIONS], { encoding: 'utf8', maxBuffer: 1 << 20 }));
      rows.push({ model: name, backend: 'native (same crate, 1 thread)', ready: native.load_ms, image: native.image_ms, score: mean(native.score_ms), longest: null });
      show(rows.at(-1));
    }
    for (const b of BACKENDS) {
      rows.push({ model: name, ...(await pageRun(browser, b, `${BASE}models/${name}/`)) });
      show(rows.at(-1));
    }
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log('| model | backend | ready (ms) | image embedding (ms) | score per caption (ms) | longest main-thread task (ms) |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.model} | ${r.backend} | ${fmt(r.ready)} | ${fmt(r.image)} | ${fmt(r.score)} | ${r.longest == null ? '-' : fmt(r.longest)} |`);
