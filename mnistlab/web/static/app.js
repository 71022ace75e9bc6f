// mnistlab serve: the page. Plain JS, no build, nothing loaded from elsewhere.
// Every digit is handled as the 28x28 `input` the server returns (white ink on black, 0..1);
// feature maps and attacks send that picture back, so they see exactly what the model saw.
"use strict";

const $ = (id) => document.getElementById(id);
const PAD_BG = "#ffffff";
const PAD_INK = "#111111";
const PAD_SEND = 140; // the pad is sent at half size: as good for a 28x28 model, and 4x fewer pixels to clean up

const state = {
  model: null, // a name from /api/models
  source: "pad", // "pad" or "photo": what the last prediction read
  photo: null, // {file, image (HTMLImageElement)}
  reading: null, // the last /api/predict answer
  selected: 0, // index of the digit shown in panels 2-4
  target: null, // the digit "fool it" aims for
  models: [], // the last /api/models list
  compare: null, // after teaching: the original model, read beside the taught one
  teach: null, // {shots, samples: [{label, image}]} while a lesson is being written
  seq: 0, // request counter: a late answer to an old request is dropped
  mapsSeq: 0,
};

// ------------------------------------------------------------------------------------ helpers

async function api(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try {
    body = await res.json();
  } catch (e) {
    body = { detail: res.statusText };
  }
  if (!res.ok) throw new Error(body && body.detail ? body.detail : `HTTP ${res.status}`);
  return body;
}

function postJSON(path, obj) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(obj) });
}

function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.style.color = isError ? "var(--bad)" : "";
}

function bump(key) {
  document.body.dataset[key] = String(Number(document.body.dataset[key] || 0) + 1);
}

const pct = (p) => `${(100 * p).toFixed(1)} %`;

// A 28x28 array of 0..1 onto a 28x28 canvas (CSS scales it up, pixelated).
function drawPixels(canvas, pixels) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(28, 28);
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const v = Math.round(255 * Math.min(1, Math.max(0, pixels[y][x])));
      const i = 4 * (28 * y + x);
      img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
      img.data[i + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

// A signed perturbation, magnified so its largest change is full colour: red adds ink, blue removes it.
function drawSigned(canvas, delta) {
  let peak = 0;
  for (const row of delta) for (const v of row) peak = Math.max(peak, Math.abs(v));
  const gain = peak > 0 ? 1 / peak : 1;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(28, 28);
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const v = Math.max(-1, Math.min(1, delta[y][x] * gain));
      const i = 4 * (28 * y + x);
      // white at 0, towards red (+) or blue (-)
      img.data[i] = v < 0 ? Math.round(255 * (1 + v)) : 255;
      img.data[i + 1] = Math.round(255 * (1 - Math.abs(v)));
      img.data[i + 2] = v > 0 ? Math.round(255 * (1 - v)) : 255;
      img.data[i + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return gain;
}

function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

// Probability bars 0-9. `ghost` (optional) marks where each bar was before (the attack).
function drawBars(el, probs, { ghost = null, target = null } = {}) {
  el.textContent = "";
  if (!probs) return;
  const top = probs.indexOf(Math.max(...probs));
  probs.forEach((p, d) => {
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = d;
    const track = document.createElement("div");
    track.className = "track" + (d === top ? " top" : "") + (d === target ? " target" : "");
    track.dataset.digit = d;
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    track.appendChild(fill);
    if (ghost) {
      const g = document.createElement("div");
      g.className = "ghost";
      g.style.width = `${(100 * ghost[d]).toFixed(2)}%`;
      g.title = `before: ${pct(ghost[d])}`;
      track.appendChild(g);
    }
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = pct(p);
    el.append(label, track, value);
  });
}

// ------------------------------------------------------------------------------------ models

async function loadModels() {
  const { default: fallback, models } = await api("/api/models");
  const select = $("model");
  select.textContent = "";
  for (const m of models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    const acc = typeof m.test_acc === "number" ? ` · ${(100 * m.test_acc).toFixed(1)} %` : "";
    const arch = m.model && m.model !== m.name ? ` (${m.model})` : "";
    const note = m.builtin && m.trained === false ? " · trained on first use (~1 min)" : m.complete ? "" : " · incomplete";
    opt.textContent = `${m.name}${arch}${acc}${note}`;
    select.appendChild(opt);
  }
  state.models = models;
  state.model = fallback;
  select.value = fallback;
  describeModel(models.find((m) => m.name === fallback));
  select.onchange = () => {
    state.model = select.value;
    describeModel(state.models.find((m) => m.name === select.value));
    $("layer").textContent = ""; // another network, other layers
    rerun();
  };
}

function describeModel(m) {
  if (!m) return;
  const parts = [];
  if (m.builtin) parts.push("the handwriting default");
  if (typeof m.test_acc === "number") parts.push(`MNIST test ${(100 * m.test_acc).toFixed(2)} %`);
  $("model-info").textContent = parts.join(" · ");
}

// ------------------------------------------------------------------------------------ drawing

const pad = $("pad");
// pad.js: strokes, undo, pointer handling (shared with the exported page)
const drawPad = createPad(pad, {
  ink: PAD_INK,
  bg: PAD_BG,
  width: () => Number($("stroke").value),
  onStart: () => {
    state.source = "pad";
  },
  onMove: () => predictSoon(), // predictions follow the pen, at most every ~120 ms of pause
  onEnd: () => {
    predictSoon.cancel();
    predictPad();
  },
});

$("undo").onclick = () => {
  drawPad.undo();
  state.source = "pad";
  predictPad();
};
$("clear").onclick = () => {
  drawPad.clear();
  state.source = "pad";
  predictPad();
};
$("stroke").oninput = () => {
  $("stroke-out").textContent = $("stroke").value;
};

function padImage() {
  const small = document.createElement("canvas");
  small.width = small.height = PAD_SEND;
  const ctx = small.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(pad, 0, 0, PAD_SEND, PAD_SEND);
  return small.toDataURL("image/png");
}

async function predictPad() {
  const seq = ++state.seq;
  if (drawPad.strokes.length === 0) {
    $("compare").textContent = "";
    showReading(null);
    return;
  }
  try {
    const image = padImage();
    const reading = await postJSON("/api/predict", { image, model: state.model, file: "canvas" });
    if (seq !== state.seq) return; // the drawing moved on
    $("photo-panel").classList.add("hidden");
    await showComparison(image, seq);
    showReading(reading);
  } catch (e) {
    if (seq === state.seq) setStatus(e.message, true);
  }
}
const predictSoon = debounce(predictPad, 120);

// ------------------------------------------------------------------------------------ photos

$("photo").onchange = () => {
  const file = $("photo").files[0];
  if (!file) return;
  const image = new Image();
  image.onload = () => {
    state.photo = { file, image };
    state.source = "photo";
    predictPhoto();
  };
  image.onerror = () => {
    // the browser cannot show it; the server may still read it (e.g. TIFF)
    state.photo = { file, image: null };
    state.source = "photo";
    predictPhoto();
  };
  image.src = URL.createObjectURL(file);
};

async function predictPhoto() {
  const seq = ++state.seq;
  const form = new FormData();
  form.append("file", state.photo.file, state.photo.file.name);
  setStatus("reading the photo…");
  try {
    const model = state.model ? `?model=${encodeURIComponent(state.model)}` : "";
    const reading = await api(`/api/predict${model}`, { method: "POST", body: form });
    if (seq !== state.seq) return;
    showPhoto(reading);
    showReading(reading);
  } catch (e) {
    if (seq === state.seq) {
      $("photo-panel").classList.add("hidden");
      showReading(null, e.message);
      setStatus(e.message, true);
    }
  }
}

function showPhoto(reading) {
  const panel = $("photo-panel");
  panel.classList.remove("hidden");
  const canvas = $("photo-view");
  const image = state.photo.image;
  const width = Math.min(640, panel.clientWidth - 32 || 560);
  const scale = width / reading.width;
  canvas.width = Math.round(width);
  canvas.height = Math.round(reading.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#eee";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (image) ctx.drawImage(image, 0, 0, canvas.width, canvas.height); // browsers apply EXIF orientation here
  ctx.lineWidth = 2;
  ctx.font = `bold ${Math.max(14, Math.round(18 * Math.min(1.5, canvas.width / 500)))}px system-ui, sans-serif`;
  reading.digits.forEach((d, i) => {
    const [x, y, w, h] = d.box.map((v) => v * scale);
    const unsure = isUnsure(d);
    ctx.strokeStyle = unsure ? "#c2410c" : "#2f6fde";
    ctx.strokeRect(x, y, w, h);
    const label = `${d.digit}`;
    const tw = ctx.measureText(label).width + 8;
    ctx.fillStyle = unsure ? "#c2410c" : "#2f6fde";
    ctx.fillRect(x, Math.max(0, y - 22), tw, 22);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + 4, Math.max(16, y - 5));
    if (i === state.selected) {
      ctx.strokeStyle = "#111";
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(x - 3, y - 3, w + 6, h + 6);
      ctx.setLineDash([]);
    }
  });
  $("photo-text").textContent = reading.text || reading.message || "no digit found";
}

// ------------------------------------------------------------------------------------ results

function showReading(reading, errorText = null) {
  state.reading = reading;
  state.selected = 0;
  const digits = reading ? reading.digits : [];
  const crops = $("crops");
  crops.textContent = "";
  if (digits.length > 1) {
    digits.forEach((d, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.title = `digit ${i + 1}: ${d.digit} (${pct(d.confidence)})`;
      const c = document.createElement("canvas");
      c.width = c.height = 28;
      drawPixels(c, d.input);
      const s = document.createElement("span");
      s.textContent = d.digit;
      b.append(c, s);
      b.onclick = () => selectDigit(i);
      crops.appendChild(b);
    });
  }
  $("read-text").textContent = digits.length > 1 ? `reads “${reading.text.replace(/\n/g, " / ")}”` : "";
  const onPad = state.source === "pad";
  $("pad-verdict").textContent = !onPad ? "" : digits.length ? `→ ${reading.text.replace(/\n/g, " ")}` : reading ? "→ no digit" : "";
  if (!digits.length) {
    const v = $("verdict");
    v.textContent = errorText ? "?" : "no digit";
    v.className = "verdict empty";
    $("confidence").textContent = reading ? "nothing that looks like ink" : "";
    clearCanvas($("seen"));
    drawBars($("bars"), null);
    $("fool").disabled = true;
    setStatus(reading ? `${reading.elapsed_ms} ms on the server` : errorText ? errorText : "draw a digit");
    bump("predictions");
    return;
  }
  selectDigit(0);
  setStatus(`read in ${reading.elapsed_ms} ms on the server · ${reading.model}`);
  bump("predictions");
}

function selectDigit(i) {
  const reading = state.reading;
  const d = reading.digits[i];
  state.selected = i;
  const v = $("verdict");
  v.textContent = d.digit;
  v.className = "verdict" + (isUnsure(d) ? " unsure" : "");
  $("confidence").textContent = `${pct(d.confidence)} sure` + (isUnsure(d) ? " · low confidence" : "");
  drawPixels($("seen"), d.input);
  drawBars($("bars"), d.probs);
  [...$("crops").children].forEach((b, k) => b.classList.toggle("selected", k === i));
  if (state.source === "photo" && reading.width) showPhoto(reading);
  resetAttack(d);
  mapsSoon();
}

// the reading pipeline flags low confidence itself; 0.7 is its threshold
const isUnsure = (d) => (typeof d.low_confidence === "boolean" ? d.low_confidence : d.confidence < 0.7);

function current() {
  return state.reading && state.reading.digits.length ? state.reading.digits[state.selected] : null;
}

function rerun() {
  if (state.source === "photo" && state.photo) predictPhoto();
  else predictPad();
}

// ------------------------------------------------------------------------------------ look inside

async function refreshMaps() {
  const d = current();
  if (!d) return;
  const seq = ++state.mapsSeq;
  const layer = $("layer").value || null;
  try {
    const res = await postJSON("/api/feature-maps", { model: state.model, input: d.input, layer });
    if (seq !== state.mapsSeq) return;
    const select = $("layer");
    if (select.options.length !== res.layers.length) {
      select.textContent = "";
      for (const name of res.layers) {
        const opt = document.createElement("option");
        opt.value = opt.textContent = name;
        select.appendChild(opt);
      }
    }
    select.value = res.layer;
    $("maps").src = res.image;
    document.body.dataset.mapsFor = document.body.dataset.predictions; // lets a test wait for the maps of the digit shown
    const size = res.height === 1 && res.width === 1 ? "" : ` of ${res.height}×${res.width}`;
    const shown = res.shown < res.channels ? ` (the first ${res.shown} shown)` : "";
    $("maps-info").textContent = `${res.layer}: ${res.channels} ${res.height === 1 && res.width === 1 ? "units" : "channels"}${size}${shown}; each scaled to its own range, bright = strong`;
    bump("maps");
  } catch (e) {
    if (seq === state.mapsSeq) $("maps-info").textContent = e.message;
  }
}
const mapsSoon = debounce(refreshMaps, 200);
$("layer").onchange = refreshMaps;

// ------------------------------------------------------------------------------------ fool it

function buildTargets() {
  const box = $("targets");
  for (let d = 0; d <= 9; d++) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = d;
    b.setAttribute("role", "radio");
    b.setAttribute("aria-checked", "false");
    b.dataset.digit = d;
    b.onclick = () => chooseTarget(d);
    box.appendChild(b);
  }
}

function chooseTarget(d) {
  state.target = d;
  for (const b of $("targets").children) b.setAttribute("aria-checked", String(Number(b.dataset.digit) === d));
  $("fool").disabled = !current();
}

function resetAttack(d) {
  drawPixels($("adv-orig"), d.input);
  clearCanvas($("adv-delta"));
  clearCanvas($("adv-image"));
  $("delta-caption").textContent = "perturbation";
  $("adv-bars").textContent = "";
  if (state.target === null || state.target === d.digit) {
    chooseTarget(d.digit === 8 ? 3 : 8); // a target other than what it reads now
  }
  $("fool").disabled = false;
  describeAttack();
}

function describeAttack() {
  const auto = $("eps-auto").checked;
  $("adv-verdict").textContent = auto
    ? "PGD, L∞: searches the smallest ε (largest change of any pixel) that makes it say the target"
    : "PGD, L∞: every pixel may move by at most ε";
  $("adv-verdict").className = "adv-verdict muted";
}

$("eps-auto").onchange = () => {
  $("eps").disabled = $("eps-auto").checked;
  describeAttack();
};

$("eps").oninput = () => {
  $("eps-out").textContent = Number($("eps").value).toFixed(2);
};

$("fool").onclick = async () => {
  const d = current();
  if (!d || state.target === null) return;
  const button = $("fool");
  button.disabled = true;
  $("adv-verdict").textContent = "searching for the smallest change…";
  try {
    const res = await postJSON("/api/attack", {
      model: state.model,
      input: d.input,
      target: state.target,
      eps: $("eps-auto").checked ? null : Number($("eps").value),
      steps: $("eps-auto").checked ? 20 : 50, // the search runs ~10 attacks: fewer steps each
    });
    drawPixels($("adv-image"), res.adversarial);
    const gain = drawSigned($("adv-delta"), res.perturbation);
    $("delta-caption").textContent = `perturbation ×${gain.toFixed(1)}`;
    drawBars($("adv-bars"), res.probs_after, { ghost: res.probs_before, target: res.target });
    const said = res.predicted_after;
    const conf = pct(res.probs_after[said]);
    const verdict = $("adv-verdict");
    verdict.className = "adv-verdict";
    verdict.textContent = "";
    const strong = document.createElement("strong");
    strong.className = res.success ? "fooled" : "held";
    strong.textContent = res.success ? `Fooled: it now says ${said}` : `Not fooled: it says ${said}`;
    verdict.append(
      strong,
      ` (${conf}) · largest pixel change ${res.linf.toFixed(3)} (L∞), L2 ${res.l2.toFixed(2)} · ${Math.round(res.elapsed_ms)} ms` +
        (res.success ? "" : " · try a larger ε"),
    );
    document.body.dataset.attacksFor = document.body.dataset.predictions;
    bump("attacks");
  } catch (e) {
    $("adv-verdict").textContent = e.message;
  } finally {
    button.disabled = false;
  }
};

// ------------------------------------------------------------------------------------ teach

// After teaching, the original model reads the same drawing: its answer is shown beside.
async function showComparison(image, seq) {
  const el = $("compare");
  if (!state.compare || state.compare === state.model) {
    el.textContent = "";
    return;
  }
  try {
    const other = await postJSON("/api/predict", { image, model: state.compare, file: "canvas" });
    if (seq !== state.seq) return;
    el.textContent = `original (${state.compare}): `;
    const b = document.createElement("strong");
    b.textContent = other.text ? other.text.replace(/\n/g, " ") : "no digit";
    el.append(b);
    if (other.digits.length === 1) el.append(` ${pct(other.digits[0].confidence)}`);
  } catch (e) {
    el.textContent = `original (${state.compare}): ${e.message}`;
  }
}

const teachLabel = () => Math.floor(state.teach.samples.length / state.teach.shots);

function teachPrompt() {
  const t = state.teach;
  const n = t.samples.length;
  const done = n >= 10 * t.shots;
  $("teach-add").disabled = done;
  $("teach-go").disabled = !done;
  $("teach-prompt").textContent = done
    ? `all ${n} digits written: press Teach`
    : `write a ${teachLabel()} (${(n % t.shots) + 1} of ${t.shots}), then “Add this digit”`;
  $("teach-panel").dataset.next = done ? "" : String(teachLabel());
}

$("teach-start").onclick = () => {
  state.teach = { shots: Number($("teach-shots").value), samples: [] };
  drawPad.clear();
  predictPad();
  $("teach-status").textContent = "";
  teachPrompt();
};

$("teach-add").onclick = () => {
  if (!state.teach) return;
  if (!drawPad.strokes.length) {
    $("teach-status").textContent = "draw the digit on the pad first";
    return;
  }
  state.teach.samples.push({ label: teachLabel(), image: padImage() });
  drawPad.clear();
  predictPad();
  $("teach-status").textContent = "";
  teachPrompt();
};

$("teach-go").onclick = () => teach({ digits: state.teach ? state.teach.samples : [] });

$("teach-sheet").onchange = () => {
  const file = $("teach-sheet").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => teach({ sheet: reader.result });
  reader.readAsDataURL(file);
};

async function teach(lesson) {
  const base = state.model;
  const status = $("teach-status");
  status.style.color = "";
  status.textContent = `adapting ${base} to your digits… (seconds)`;
  $("teach-go").disabled = $("teach-add").disabled = true;
  try {
    const r = await postJSON("/api/teach", { ...lesson, model: base });
    await loadModels(); // the picker lists the new model (it is a run on disk: it stays)
    state.model = r.model;
    state.compare = base;
    $("model").value = r.model;
    describeModel(state.models.find((m) => m.name === r.model));
    state.teach = null;
    $("teach-prompt").textContent = "";
    status.textContent =
      `taught with ${r.digits} digits in ${r.seconds} s · MNIST test ${pct(r.mnist_before)} → ${pct(r.mnist_after)} · ` +
      `now reading with ${r.model}, the original ${r.base} beside it`;
    bump("teaches");
    rerun();
  } catch (e) {
    status.textContent = e.message;
    status.style.color = "var(--bad)";
    if (state.teach) teachPrompt();
  }
}

// ------------------------------------------------------------------------------------ start

buildTargets();
drawPad.redraw();
drawBars($("bars"), null);
setStatus("draw a digit");
describeAttack();
loadModels().catch((e) => setStatus(`cannot list models: ${e.message}`, true));
