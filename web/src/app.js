// CornerNet in the browser: loads a TF.js graph model of models/ (build.json lists them; the
// picker or ?model=NAME chooses), runs it on a picked or dropped image, draws the boxes.
// window.cornernet exposes the state for tests and benchmarks.
/* global tf, fixWasmKernels */
'use strict';

const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#0082c8', '#f58230', '#911eb4', '#46f0f0',
  '#f032e6', '#d2f53c', '#fabed4', '#008080', '#dcbeff', '#aa6e28', '#fffac8', '#800000'];
const $ = (id) => document.getElementById(id);
const cornernet = {
  ready: false, error: null, backend: null, models: [], model: null, loading: false, loadMs: null,
  result: null, runs: 0,
};
window.cornernet = cornernet;
let current; // the loaded model: { name, graph, meta, outputNames, outputNodes }
let shown; // the image on the canvas
let work = Promise.resolve(); // model loads and detections run one at a time, in order

function queue(task) {
  const done = work.then(task);
  work = done.catch(() => {});
  return done;
}

function setStatus(text) { $('status').textContent = text; }

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return response.json();
}

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
  fixWasmKernels(tf); // empty tensors (an image without detections) on WASM
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
  const outputs = await current.graph.executeAsync({ images: input }, current.outputNodes);
  const values = await Promise.all(outputs.map((t) => t.data()));
  const ms = performance.now() - start;
  tf.dispose([input, ...outputs]);
  const raw = {};
  current.outputNames.forEach((name, i) => { raw[name] = Array.from(values[i]); });
  return { raw, ms };
}

function toDetections(raw, width, height) {
  const { meta } = current;
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
    const size = current.meta.input_size;
    setStatus(`${kept.length} detection(s) with score ≥ ${threshold.toFixed(2)} · inference `
      + `${result.ms.toFixed(0)} ms · backend ${cornernet.backend} · model ${result.model} · `
      + `${result.width}×${result.height} image, ${size}×${size} input`);
  }
}

async function detect(image, width, height) {
  shown = { image, width, height };
  cornernet.result = null;
  render();
  setStatus('detecting…');
  const { raw, ms } = await run(image);
  cornernet.runs += 1;
  cornernet.result = {
    model: current.name, width, height, ms, raw, detections: toDetections(raw, width, height),
  };
  $('time').textContent = `${ms.toFixed(0)} ms per image (${current.name}, ${cornernet.backend})`;
  render();
}

function detectFile(file) {
  return queue(async () => {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    } catch (error) {
      setStatus(`could not read ${file.name}: ${error.message}`);
      return;
    }
    try {
      await detect(bitmap, bitmap.width, bitmap.height);
    } catch (error) {
      cornernet.error = String(error);
      setStatus(`error: ${current.name} failed on ${file.name}: ${error.message}`);
    }
  });
}

function describe(entry, meta) {
  const weights = meta.quantize && meta.quantize !== 'none' ? `${meta.quantize} weights` : 'float32';
  return `${entry.name} · ${meta.class_names.length} classes · ${meta.input_size}×${meta.input_size} `
    + `input · ${weights} · ${(entry.bytes / 1e6).toFixed(1)} MB`;
}

// Loads model `name` of build.json and compiles its kernels on a blank image; the previous model
// is released once the new one works.
async function loadModel(name) {
  const entry = cornernet.models.find((m) => m.name === name);
  if (!entry) {
    throw new Error(`no model ${name} in this build (models: ${cornernet.models.map((m) => m.name).join(', ')})`);
  }
  cornernet.loading = true;
  $('model').disabled = true;
  setStatus(`loading ${name} (${(entry.bytes / 1e6).toFixed(1)} MB)…`);
  try {
    const start = performance.now();
    const meta = await fetchJson(`${entry.path}cornernet.json`);
    const graph = await tf.loadGraphModel(`${entry.path}model.json`);
    const outputNames = Object.keys(graph.signature.outputs);
    const outputNodes = outputNames.map((output) => graph.signature.outputs[output].name);
    const previous = current;
    current = { name, graph, meta, outputNames, outputNodes };
    const warm = tf.zeros([meta.input_size, meta.input_size, 3], 'int32');
    try {
      await run(warm); // compiles the kernels once
    } catch (error) {
      current = previous;
      graph.dispose();
      throw error;
    } finally {
      warm.dispose();
    }
    if (previous) previous.graph.dispose();
    cornernet.model = name;
    cornernet.loadMs = performance.now() - start;
    $('model').value = name;
    $('model-info').textContent = describe(entry, meta);
    $('classes').textContent = meta.class_names.join(', ');
    return cornernet.loadMs;
  } finally {
    cornernet.loading = false;
    $('model').disabled = false;
  }
}

// The picker: loads the chosen model and runs it on the image shown, if any.
function switchModel(name) {
  return queue(async () => {
    try {
      const ms = await loadModel(name);
      if (shown) await detect(shown.image, shown.width, shown.height);
      else setStatus(`${name} ready (${ms.toFixed(0)} ms to load and warm up) · pick or drop an image`);
    } catch (error) {
      cornernet.error = String(error);
      $('model').value = cornernet.model;
      setStatus(`error: could not run ${name}: ${error.message}`);
    }
  });
}

// Times `repeats` more runs on the shown image (for the benchmark); returns their ms.
cornernet.time = async (repeats) => {
  const times = [];
  for (let i = 0; i < repeats; i++) times.push((await run(shown.image)).ms);
  return times;
};

async function main() {
  let build;
  try {
    build = await fetchJson('build.json');
    cornernet.models = build.models;
    $('model').replaceChildren(...build.models.map((entry) => new Option(entry.name, entry.name)));
    cornernet.backend = await chooseBackend();
    const name = new URLSearchParams(location.search).get('model') || build.models[0].name;
    const ms = await queue(() => loadModel(name));
    setStatus(`${name} ready (${ms.toFixed(0)} ms to load and warm up) · backend `
      + `${cornernet.backend} · pick or drop an image`);
    cornernet.ready = true;
  } catch (error) {
    cornernet.error = String(error);
    setStatus(`error: ${error.message}`);
    return;
  }
  $('model').addEventListener('change', (event) => switchModel(event.target.value));
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
  if (build.sample) {
    $('sample').hidden = false;
    $('sample').addEventListener('click', async () => {
      const blob = await (await fetch(build.sample)).blob();
      detectFile(new File([blob], build.sample));
    });
  }
}

main();
