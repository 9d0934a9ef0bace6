// Times the models of a built page (web/build.mjs) in headless Chromium, per backend: the median
// and best of REPEATS runs on IMAGE after the page's warm-up, and the time to load and warm up.
//
//   node web/time_models.mjs DIST IMAGE [--backends wasm,webgl] [--models a,b] [--repeats 5]
//                            [--out times.json]
//
// wasm runs with the GPU disabled (as the tests); webgl runs on SwiftShader, Chromium's software
// WebGL (--use-angle=swiftshader --enable-unsafe-swiftshader), when there is no GPU. DIST is
// served as scripts/serve_web.py serves it (no cross-origin isolation, hence no WASM threads).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromiumFlags, launchChromium, openPage } from './chromium.mjs';

const usage = 'usage: node time_models.mjs DIST IMAGE [--backends wasm,webgl] [--models a,b] [--repeats 5] [--out FILE]';
const positional = [];
const options = { backends: 'wasm,webgl', models: null, repeats: '5', out: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (!argv[i].startsWith('--')) { positional.push(argv[i]); continue; }
  const key = argv[i].slice(2);
  if (!(key in options) || argv[i + 1] === undefined) { console.error(`${usage} (got ${argv[i]})`); process.exit(2); }
  options[key] = argv[++i];
}
const [dist, image] = positional;
if (!image || !fs.existsSync(path.join(dist, 'build.json')) || !fs.existsSync(image)) {
  console.error(`${usage}\n(DIST must hold a built page, build.json included, and IMAGE must exist)`);
  process.exit(2);
}
const build = JSON.parse(fs.readFileSync(path.join(dist, 'build.json'), 'utf8'));
const models = options.models ? options.models.split(',') : build.models.map((m) => m.name);
const repeats = Number(options.repeats);

const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png' };
const server = http.createServer((request, response) => {
  const file = path.join(dist, decodeURIComponent(new URL(request.url, 'http://x').pathname));
  const target = file.endsWith('/') ? path.join(file, 'index.html') : file;
  if (!target.startsWith(path.resolve(dist)) || !fs.existsSync(target)) { response.writeHead(404); response.end(); return; }
  response.writeHead(200, { 'Content-Type': types[path.extname(target)] || 'application/octet-stream' });
  fs.createReadStream(target).pipe(response);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}/`;

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const rows = [];
try {
  for (const backend of options.backends.split(',')) {
    const webgl = backend === 'webgl';
    const browser = await launchChromium({ webgl });
    const flags = chromiumFlags({ webgl });
    try {
      for (const model of models) {
        const row = { model, backend, flags, chromium: browser.version() };
        const messages = [];
        try {
          const page = await openPage(browser, `${base}?backend=${backend}&model=${model}`, messages);
          Object.assign(row, await page.evaluate(async () => {
            const gl = document.createElement('canvas').getContext('webgl2');
            const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
            return {
              page_backend: window.cornernet.backend,
              load_ms: window.cornernet.loadMs,
              webgl_renderer: info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : null,
              wasm_simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
              wasm_threads: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
            };
          }));
          await page.setInputFiles('#file', image);
          await page.waitForFunction(() => window.cornernet.result !== null, null, { timeout: 600000 });
          const times = await page.evaluate((n) => window.cornernet.time(n), repeats);
          Object.assign(row, { times_ms: times, median_ms: median(times), best_ms: Math.min(...times) });
          await page.close();
        } catch (error) {
          row.error = String(error.message).split('\n')[0];
        }
        rows.push(row);
        console.log(row.error ? `${model} ${backend}: error: ${row.error}`
          : `${model} ${backend}: median ${row.median_ms.toFixed(0)} ms, best ${row.best_ms.toFixed(0)} ms `
            + `of ${repeats}; load and warm-up ${row.load_ms.toFixed(0)} ms`
            + (webgl ? ` (WebGL renderer: ${row.webgl_renderer})` : ''));
      }
    } finally {
      await browser.close();
    }
  }
} finally {
  server.close();
}
if (options.out) fs.writeFileSync(options.out, JSON.stringify(rows, null, 1));
