// Builds the static page: web/src + the vendored TF.js files + the converted model -> web/dist.
//
//   node web/build.mjs [--model exported/cornernet_tfjs] [--out web/dist] [--sample IMAGE.png]
//
// Everything the page loads is copied into the output folder: no CDN at run time.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const options = { model: path.join(here, '..', 'exported', 'cornernet_tfjs'), out: path.join(here, 'dist') };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!['model', 'out', 'sample'].includes(key) || argv[i + 1] === undefined) {
    console.error(`usage: node build.mjs [--model DIR] [--out DIR] [--sample IMAGE.png] (got ${argv[i]})`);
    process.exit(2);
  }
  options[key] = path.resolve(argv[i + 1]);
}
for (const file of ['model.json', 'cornernet.json']) {
  if (!fs.existsSync(path.join(options.model, file))) {
    console.error(`error: ${path.join(options.model, file)} is missing: export a TF.js model first `
      + '(make demo, or python scripts/export.py ... --tfjs DIR)');
    process.exit(1);
  }
}
const modules = path.join(here, 'node_modules', '@tensorflow');
const vendor = [
  path.join(modules, 'tfjs', 'dist', 'tf.min.js'),
  path.join(modules, 'tfjs-backend-wasm', 'dist', 'tf-backend-wasm.min.js'),
  ...['', '-simd', '-threaded-simd'].map((kind) => path.join(modules, 'tfjs-backend-wasm', 'dist', `tfjs-backend-wasm${kind}.wasm`)),
];
fs.rmSync(options.out, { recursive: true, force: true });
fs.mkdirSync(path.join(options.out, 'vendor'), { recursive: true });
fs.cpSync(path.join(here, 'src'), options.out, { recursive: true });
for (const file of vendor) fs.copyFileSync(file, path.join(options.out, 'vendor', path.basename(file)));
fs.cpSync(options.model, path.join(options.out, 'model'), { recursive: true });
if (options.sample) fs.copyFileSync(options.sample, path.join(options.out, 'sample.png'));
fs.writeFileSync(path.join(options.out, 'build.json'), JSON.stringify({ sample: options.sample ? 'sample.png' : null }));
let bytes = 0;
for (const entry of fs.readdirSync(options.out, { recursive: true })) {
  const stat = fs.statSync(path.join(options.out, entry));
  if (stat.isFile()) bytes += stat.size;
}
console.log(`built ${options.out} (${(bytes / 1e6).toFixed(1)} MB, model from ${options.model})`);
