// mnistlab export-web: read a drawn digit entirely in this page. Plain JS, no build step.
// The drawing is MNIST-normalised here (normalize.js, a port of the Python pipeline) and read by
// the exported ONNX model (model.onnx) with onnxruntime-web's WebAssembly backend, both served
// from this folder: after the page has loaded, nothing is fetched and nothing is sent anywhere.
"use strict";

const $ = (id) => document.getElementById(id);
const PAD_BG = "#ffffff";
const PAD_INK = "#000000";
const UNSURE = 0.7; // the reading pipeline's low-confidence threshold (handwriting/reader.py)

const state = {
  session: null,
  manifest: null,
  busy: false, // an inference is running; a newer drawing waits for it
  again: false,
};
// What the test (and a curious reader in the console) can look at: the last 28x28 input and probabilities.
window.mnistlab = { input: null, probs: null, ms: null }; // ms: {normalise, infer} of the last reading

function bump(key) {
  document.body.dataset[key] = String(Number(document.body.dataset[key] || 0) + 1);
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.style.color = isError ? "var(--bad)" : "";
}

const pct = (p) => `${(100 * p).toFixed(1)} %`;

// ------------------------------------------------------------------------------------ the model

async function loadModel() {
  const res = await fetch("mnistlab-export.json");
  if (!res.ok) throw new Error(`mnistlab-export.json: HTTP ${res.status}`);
  const manifest = await res.json();
  state.manifest = manifest;
  // onnxruntime-web loads its .mjs/.wasm from this folder; threads would need cross-origin
  // isolation headers that a plain static host does not send, and one digit needs no threads.
  ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  state.session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  const acc = typeof manifest.test_acc === "number" ? ` · MNIST test ${(100 * manifest.test_acc).toFixed(2)} %` : "";
  const arch = manifest.model && manifest.model !== manifest.run ? ` (${manifest.model})` : "";
  $("model-info").textContent = `${manifest.run}${arch}${acc}`;
  $("about").textContent =
    `model.onnx (opset ${manifest.opset}) read by onnxruntime-web ${manifest.onnxruntime_web} (WebAssembly), ` +
    `exported by mnistlab ${manifest.mnistlab}; everything runs in this page, nothing is sent anywhere`;
  document.body.dataset.ready = "true";
  setStatus("draw a digit");
}

async function classify(pixels) {
  const { input, output } = state.manifest;
  const tensor = new ort.Tensor("float32", pixels, [1, 1, 28, 28]);
  const result = await state.session.run({ [input]: tensor });
  return Array.from(result[output].data);
}

// ------------------------------------------------------------------------------------ drawing

const pad = $("pad");
// pad.js: strokes, undo, pointer handling (shared with the served page)
const drawPad = createPad(pad, {
  ink: PAD_INK,
  bg: PAD_BG,
  width: () => Number($("stroke").value),
  onMove: () => predictSoon(),
  onEnd: () => {
    clearTimeout(predictSoon.timer);
    predict();
  },
  contextOptions: { willReadFrequently: true }, // readPad reads the pixels back every time
});
const padCtx = drawPad.ctx;

$("undo").onclick = () => {
  drawPad.undo();
  predict();
};
$("clear").onclick = () => {
  drawPad.clear();
  predict();
};
$("stroke").oninput = () => {
  $("stroke-out").textContent = $("stroke").value;
};

// While the pen moves, read at most every ~80 ms of pause; always read when it lifts.
function predictSoon() {
  clearTimeout(predictSoon.timer);
  predictSoon.timer = setTimeout(predict, 80);
}

// One inference at a time (a session runs one call at a time); a drawing that changed meanwhile
// is read once the running call is done.
async function predict() {
  if (!state.session) return;
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  try {
    do {
      state.again = false;
      await readPad();
    } while (state.again);
  } catch (e) {
    setStatus(`cannot read the drawing: ${e.message}`, true);
  } finally {
    state.busy = false;
  }
}

async function readPad() {
  const start = performance.now();
  const img = padCtx.getImageData(0, 0, pad.width, pad.height);
  const { pixels, found } = MnistNormalize.preprocessRGBA(img.data, img.width, img.height);
  const normalised = performance.now();
  window.mnistlab.input = pixels;
  drawPixels($("seen"), pixels);
  if (!found) {
    window.mnistlab.probs = null;
    showVerdict(null);
    setStatus("draw a digit");
    bump("predictions");
    return;
  }
  const probs = await classify(pixels);
  const end = performance.now();
  window.mnistlab.probs = probs;
  window.mnistlab.ms = { normalise: normalised - start, infer: end - normalised };
  showVerdict(probs);
  setStatus(
    `read in this page: ${(normalised - start).toFixed(1)} ms to normalise, ${(end - normalised).toFixed(1)} ms to infer`,
  );
  bump("predictions");
}

// ------------------------------------------------------------------------------------ results

function drawPixels(canvas, pixels) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, pixels[i])));
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function showVerdict(probs) {
  const v = $("verdict");
  const bars = $("bars");
  bars.textContent = "";
  if (!probs) {
    v.textContent = "no digit";
    v.className = "verdict empty";
    $("confidence").textContent = "";
    return;
  }
  const top = probs.indexOf(Math.max(...probs));
  v.textContent = String(top);
  v.className = "verdict" + (probs[top] < UNSURE ? " unsure" : "");
  $("confidence").textContent = `${pct(probs[top])} sure` + (probs[top] < UNSURE ? " · low confidence" : "");
  probs.forEach((p, d) => {
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = d;
    const track = document.createElement("div");
    track.className = "track" + (d === top ? " top" : "");
    track.dataset.digit = d;
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = pct(p);
    bars.append(label, track, value);
  });
}

// ------------------------------------------------------------------------------------ start

drawPad.redraw();
loadModel().catch((e) => setStatus(`cannot load the model: ${e.message}`, true));
