// CornerNet in the browser: loads the TF.js graph model from model/, runs it on a picked or
// dropped image, draws the boxes. window.cornernet exposes the state for tests and benchmarks.
/* global tf */
'use strict';

const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#0082c8', '#f58230', '#911eb4', '#46f0f0',
  '#f032e6', '#d2f53c', '#fabed4', '#008080', '#dcbeff', '#aa6e28', '#fffac8', '#800000'];
const $ = (id) => document.getElementById(id);
const cornernet = { ready: false, error: null, backend: null, result: null, runs: 0 };
window.cornernet = cornernet;
let model;
let meta;
let outputNodes;
let outputNames;
let shown; // the image on the canvas

function setStatus(text) { $('status').textContent = text; }

function softwareWebGL() {
  try {
    const gl = document.createElement('canvas').getContext('webgl2')
      || document.createElement('canvas').getContext('webgl');
    if (!gl) return true;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    return /swiftshader|llvmpipe|software/i.test(renderer);
  } catch (error) {
    return true;
  }
}

async function chooseBackend() {
  const wanted = new URLSearchParams(location.search).get('backend');
  tf.wasm.setWasmPaths(new URL('vendor/', location.href).href);
  // WebGL on a software renderer (no GPU: SwiftShader, llvmpipe) is ~10x slower than WASM
  const order = softwareWebGL() ? ['wasm', 'webgl', 'cpu'] : ['webgl', 'wasm', 'cpu'];
  for (const name of wanted ? [wanted] : order) {
    try {
      if (await tf.setBackend(name)) { await tf.ready(); return name; }
    } catch (error) { console.warn(`backend ${name} failed:`, error); }
  }
  throw new Error('no TensorFlow.js backend works in this browser');
}

async function run(image) {
  // image: an int32 (H, W, 3) tensor or anything tf.browser.fromPixels takes (natural size)
  const input = tf.tidy(() => (image instanceof tf.Tensor ? image : tf.browser.fromPixels(image)).expandDims(0));
  const start = performance.now();
  const outputs = await model.executeAsync({ images: input }, outputNodes);
  const values = await Promise.all(outputs.map((t) => t.data()));
  const ms = performance.now() - start;
  tf.dispose([input, ...outputs]);
  const raw = {};
  outputNames.forEach((name, i) => { raw[name] = Array.from(values[i]); });
  return { raw, ms };
}

function toDetections(raw, width, height) {
  const count = raw.num_detections[0];
  const detections = [];
  for (let i = 0; i < count; i++) {
    const [ymin, xmin, ymax, xmax] = raw.detection_boxes.slice(4 * i, 4 * i + 4);
    // detection_classes are the dataset's category ids; cornernet.json maps them to indices
    const id = raw.detection_classes[i];
    const index = meta.category_ids ? meta.category_ids.indexOf(id) : id - 1;
    detections.push({
      box: [xmin * width, ymin * height, xmax * width, ymax * height],
      score: raw.detection_scores[i],
      class: index,
      name: meta.class_names[index] ?? `class ${index}`,
    });
  }
  return detections;
}

function render() {
  const canvas = $('canvas');
  const context = canvas.getContext('2d');
  const threshold = Number($('threshold').value);
  $('threshold-value').textContent = threshold.toFixed(2);
  if (!shown) return;
  // drawn at display resolution: small images enlarged, labels the same size for every image
  const scale = Math.min(Math.max(shown.width, 512), 940) / shown.width;
  canvas.width = Math.round(shown.width * scale);
  canvas.height = Math.round(shown.height * scale);
  context.imageSmoothingEnabled = scale < 1;
  context.drawImage(shown.image, 0, 0, canvas.width, canvas.height);
  const result = cornernet.result;
  const kept = result ? result.detections.filter((d) => d.score >= threshold) : [];
  const font = 14;
  context.font = `${font}px system-ui, sans-serif`;
  context.textBaseline = 'top';
  for (const d of [...kept].reverse()) { // best drawn last, on top
    const [x1, y1, x2, y2] = d.box.map((v) => v * scale);
    const colour = PALETTE[d.class % PALETTE.length];
    context.lineWidth = 2;
    context.strokeStyle = colour;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${d.name} ${d.score.toFixed(2)}`;
    const width = context.measureText(label).width + 6;
    const top = y1 - font - 4 >= 0 ? y1 - font - 4 : y1;
    context.fillStyle = colour;
    context.fillRect(x1, top, width, font + 4);
    context.fillStyle = '#000';
    context.fillText(label, x1 + 3, top + 2);
  }
  const body = $('detections').querySelector('tbody');
  body.replaceChildren(...kept.map((d) => {
    const row = document.createElement('tr');
    const colour = PALETTE[d.class % PALETTE.length];
    row.innerHTML = `<td><span class="swatch" style="background:${colour}"></span>${d.name}</td>`
      + `<td>${d.score.toFixed(3)}</td><td>${d.box.map((v) => v.toFixed(1)).join(', ')}</td>`;
    return row;
  }));
  if (result) {
    setStatus(`${kept.length} detection(s) with score ≥ ${threshold.toFixed(2)} · inference `
      + `${result.ms.toFixed(0)} ms · backend ${cornernet.backend} · `
      + `${result.width}×${result.height} image, ${meta.input_size}×${meta.input_size} input`);
  }
}

async function detect(image, width, height) {
  shown = { image, width, height };
  cornernet.result = null;
  render();
  setStatus('detecting…');
  const { raw, ms } = await run(image);
  cornernet.runs += 1;
  cornernet.result = { width, height, ms, raw, detections: toDetections(raw, width, height) };
  render();
}

async function detectFile(file) {
  try {
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    await detect(bitmap, bitmap.width, bitmap.height);
  } catch (error) {
    setStatus(`could not read ${file.name}: ${error.message}`);
  }
}

// Times `repeats` more runs on the shown image (for the benchmark); returns their ms.
cornernet.time = async (repeats) => {
  const times = [];
  for (let i = 0; i < repeats; i++) times.push((await run(shown.image)).ms);
  return times;
};

async function main() {
  try {
    cornernet.backend = await chooseBackend();
    meta = await (await fetch('model/cornernet.json')).json();
    $('classes').textContent = meta.class_names.join(', ');
    const start = performance.now();
    model = await tf.loadGraphModel('model/model.json');
    outputNames = Object.keys(model.signature.outputs);
    outputNodes = outputNames.map((name) => model.signature.outputs[name].name);
    const warm = tf.zeros([meta.input_size, meta.input_size, 3], 'int32');
    await run(warm); // compiles the kernels once
    warm.dispose();
    const ms = performance.now() - start;
    setStatus(`model ready (${ms.toFixed(0)} ms to load and warm up) · backend ${cornernet.backend}`
      + ' · pick or drop an image');
    cornernet.ready = true;
  } catch (error) {
    cornernet.error = String(error);
    setStatus(`error: ${error.message}`);
    return;
  }
  $('file').addEventListener('change', (event) => {
    if (event.target.files.length) detectFile(event.target.files[0]);
  });
  $('threshold').addEventListener('input', render);
  const drop = $('drop');
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    if (event.dataTransfer.files.length) detectFile(event.dataTransfer.files[0]);
  });
  const build = await (await fetch('build.json')).json();
  if (build.sample) {
    $('sample').hidden = false;
    $('sample').addEventListener('click', async () => {
      const blob = await (await fetch(build.sample)).blob();
      detectFile(new File([blob], build.sample));
    });
  }
}

main();
