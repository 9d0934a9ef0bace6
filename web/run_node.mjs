// Runs the TF.js graph model in Node with the pure-JS backend of @tensorflow/tfjs (no native
// bindings), loading the model files from disk; used by the tests and the benchmark.
//
//   node web/run_node.mjs MODEL_DIR IMAGES.json OUT.json [REPEATS] [cpu|wasm]
//
// IMAGES.json: a list of {"height": H, "width": W, "rgb": base64 of H*W*3 uint8}. OUT.json: a
// list, per image, of every output by its signature name ({"shape", "data"}) and the time of
// each of the REPEATS runs (default 1) in ms; and the backend (default cpu, the pure-JS one).
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import fixWasmKernels from './src/wasm_fixes.js';

const [modelDir, imagePath, outPath, repeats = '1', backend = 'cpu'] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node run_node.mjs MODEL_DIR IMAGES.json OUT.json [REPEATS] [cpu|wasm]');
  process.exit(2);
}

// An IOHandler that reads model.json and its weight shards from disk.
function fileHandler(dir) {
  return {
    async load() {
      const model = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of model.weightsManifest) {
        specs.push(...group.weights);
        for (const file of group.paths) buffers.push(fs.readFileSync(path.join(dir, file)));
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: model.modelTopology,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        userDefinedMetadata: model.userDefinedMetadata,
        weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
}

fixWasmKernels(tf);
await tf.setBackend(backend);
const model = await tf.loadGraphModel(fileHandler(modelDir));
const names = Object.keys(model.signature.outputs);
const nodes = names.map((name) => model.signature.outputs[name].name);
const images = [];
for (const image of JSON.parse(fs.readFileSync(imagePath, 'utf8'))) {
  const pixels = new Uint8Array(Buffer.from(image.rgb, 'base64'));
  const input = tf.tensor(pixels, [1, image.height, image.width, 3], 'int32');
  const times = [];
  let outputs;
  for (let i = 0; i < Number(repeats); i++) {
    if (outputs) tf.dispose(outputs);
    const start = performance.now();
    outputs = await model.executeAsync({ images: input }, nodes);
    await Promise.all(outputs.map((t) => t.data()));
    times.push(performance.now() - start);
  }
  const result = { times_ms: times, outputs: {} };
  for (let i = 0; i < names.length; i++) {
    result.outputs[names[i]] = { shape: outputs[i].shape, data: Array.from(await outputs[i].data()) };
  }
  tf.dispose([input, ...outputs]);
  images.push(result);
}
fs.writeFileSync(outPath, JSON.stringify({ backend: tf.getBackend(), images }));
