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
  strokes: [], // [{width, points: [[x, y], ...]}] on the 280x280 pad
  drawing: null,
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
const padCtx = pad.getContext("2d", { willReadFrequently: true });

function padPoint(ev) {
  const r = pad.getBoundingClientRect();
  return [((ev.clientX - r.left) * pad.width) / r.width, ((ev.clientY - r.top) * pad.height) / r.height];
}

function strokePath(stroke, from = 0) {
  const pts = stroke.points;
  padCtx.strokeStyle = PAD_INK;
  padCtx.fillStyle = PAD_INK;
  padCtx.lineWidth = stroke.width;
  padCtx.lineCap = "round";
  padCtx.lineJoin = "round";
  if (pts.length === 1) {
    padCtx.beginPath();
    padCtx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, 2 * Math.PI);
    padCtx.fill();
    return;
  }
  padCtx.beginPath();
  const start = Math.max(0, from - 1);
  padCtx.moveTo(pts[start][0], pts[start][1]);
  for (let i = start + 1; i < pts.length; i++) padCtx.lineTo(pts[i][0], pts[i][1]);
  padCtx.stroke();
}

function redrawPad() {
  padCtx.fillStyle = PAD_BG;
  padCtx.fillRect(0, 0, pad.width, pad.height);
  for (const s of state.strokes) strokePath(s);
}

pad.addEventListener("pointerdown", (ev) => {
  if (ev.button !== undefined && ev.button > 0) return;
  ev.preventDefault();
  pad.setPointerCapture(ev.pointerId);
  state.drawing = { width: Number($("stroke").value), points: [padPoint(ev)] };
  state.strokes.push(state.drawing);
  strokePath(state.drawing);
});

pad.addEventListener("pointermove", (ev) => {
  if (!state.drawing) return;
  ev.preventDefault();
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
  const before = state.drawing.points.length;
  for (const e of events.length ? events : [ev]) state.drawing.points.push(padPoint(e));
  strokePath(state.drawing, before);
  predictSoon();
});

function endStroke(ev) {
  if (!state.drawing) return;
  state.drawing = null;
  if (pad.hasPointerCapture && pad.hasPointerCapture(ev.pointerId)) pad.releasePointerCapture(ev.pointerId);
  clearTimeout(predictSoon.timer);
  predict();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("undo").onclick = () => {
  state.strokes.pop();
  redrawPad();
  predict();
};
$("clear").onclick = () => {
  state.strokes = [];
  redrawPad();
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

redrawPad();
loadModel().catch((e) => setStatus(`cannot load the model: ${e.message}`, true));
