// Builds the static page: web/src + the vendored TF.js files + the converted models -> web/dist.
//
//   node web/build.mjs [--model [NAME=]DIR ...] [--out web/dist] [--sample IMAGE.png]
//
// Each --model is a TF.js model folder of cornernet-export --tfjs (model.json, its shards and
// cornernet.json), copied to dist/models/NAME/ (NAME: the folder's name unless given); the page
// offers them in its model picker and starts with the first (default: exported/cornernet_tfjs).
// Everything the page loads is copied into the output folder: no CDN at run time.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const usage = 'usage: node build.mjs [--model [NAME=]DIR ...] [--out DIR] [--sample IMAGE.png]';
const options = { models: [], out: path.join(here, 'dist') };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  const value = argv[i + 1];
  if (!['model', 'out', 'sample'].includes(key) || value === undefined) {
    console.error(`${usage} (got ${argv[i]})`);
    process.exit(2);
  }
  if (key === 'model') {
    const named = value.match(/^([A-Za-z0-9._-]+)=(.+)$/);
    const dir = path.resolve(named ? named[2] : value);
    options.models.push({ name: named ? named[1] : path.basename(dir), dir });
  } else {
    options[key] = path.resolve(value);
  }
}
if (!options.models.length) {
  const dir = path.join(here, '..', 'exported', 'cornernet_tfjs');
  options.models.push({ name: 'cornernet_tfjs', dir });
}
const names = new Set();
for (const { name, dir } of options.models) {
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) {
    console.error(`error: model name ${JSON.stringify(name)}: use letters, digits, ".", "_", "-" `
      + '(--model NAME=DIR names it)');
    process.exit(2);
  }
  if (names.has(name)) {
    console.error(`error: two models are named ${name}: name them with --model NAME=DIR`);
    process.exit(2);
  }
  names.add(name);
  for (const file of ['model.json', 'cornernet.json']) {
    if (!fs.existsSync(path.join(dir, file))) {
      console.error(`error: ${path.join(dir, file)} is missing: export a TF.js model first `
        + '(make demo, or cornernet-export ... --tfjs DIR)');
      process.exit(1);
    }
  }
}
if (options.sample && !fs.existsSync(options.sample)) {
  console.error(`error: the sample image ${options.sample} does not exist`);
  process.exit(1);
}

function folderBytes(dir) {
  let bytes = 0;
  for (const entry of fs.readdirSync(dir, { recursive: true })) {
    const stat = fs.statSync(path.join(dir, entry));
    if (stat.isFile()) bytes += stat.size;
  }
  return bytes;
}

const modules = path.join(here, 'node_modules', '@tensorflow');
const vendor = [
  path.join(modules, 'tfjs', 'dist', 'tf.min.js'),
  path.join(modules, 'tfjs-backend-wasm', 'dist', 'tf-backend-wasm.min.js'),
  ...['', '-simd', '-threaded-simd'].map((kind) => path.join(modules, 'tfjs-backend-wasm', 'dist', `tfjs-backend-wasm${kind}.wasm`)),
];
const missing = vendor.filter((file) => !fs.existsSync(file));
if (missing.length) {
  console.error(`error: ${missing[0]} is missing: install the npm packages first (cd web && npm ci)`);
  process.exit(1);
}
fs.rmSync(options.out, { recursive: true, force: true });
fs.mkdirSync(path.join(options.out, 'vendor'), { recursive: true });
fs.cpSync(path.join(here, 'src'), options.out, { recursive: true });
for (const file of vendor) fs.copyFileSync(file, path.join(options.out, 'vendor', path.basename(file)));
const models = [];
for (const { name, dir } of options.models) {
  const target = path.join(options.out, 'models', name);
  fs.cpSync(dir, target, { recursive: true });
  models.push({ name, path: `models/${name}/`, bytes: folderBytes(target) });
}
const sample = options.sample ? `sample${path.extname(options.sample).toLowerCase()}` : null;
if (sample) fs.copyFileSync(options.sample, path.join(options.out, sample));
fs.writeFileSync(path.join(options.out, 'build.json'), JSON.stringify({ sample, models }, null, 1));
const list = models.map((m) => `${m.name} ${(m.bytes / 1e6).toFixed(1)} MB`).join(', ');
console.log(`built ${options.out} (${(folderBytes(options.out) / 1e6).toFixed(1)} MB; models: ${list})`);
