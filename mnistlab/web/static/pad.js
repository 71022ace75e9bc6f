// The drawing pad of both pages: the served one (static/app.js) and the exported one
// (standalone/app.js, which `mnistlab export-web` ships with a copy of this file).
// Strokes are kept as points, so undo redraws exactly what was left; pointer events with
// coalesced points, so a fast pen still draws a smooth line. Plain JS, no build step.
"use strict";

// createPad(canvas, options) -> {ctx, strokes, redraw(), undo(), clear()}
//   ink, bg: CSS colours of the pen and the paper
//   width(): the pen width in canvas pixels for a new stroke (the page's slider)
//   onStart(), onMove(), onEnd(): pen down, pen moved (the drawing grew), pen lifted
//   contextOptions: passed to getContext("2d"), e.g. {willReadFrequently: true} for a page that
//   reads the pixels back with getImageData
function createPad(canvas, { ink, bg, width, onStart = () => {}, onMove = () => {}, onEnd = () => {}, contextOptions }) {
  const ctx = canvas.getContext("2d", contextOptions);
  let strokes = []; // [{width, points: [[x, y], ...]}] in canvas pixels
  let drawing = null; // the stroke under the pointer

  function point(ev) {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height];
  }

  // Draw `stroke` from its point `from` on (the points a pointermove added), or whole.
  function path(stroke, from = 0) {
    const pts = stroke.points;
    ctx.strokeStyle = ink;
    ctx.fillStyle = ink;
    ctx.lineWidth = stroke.width;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    const start = Math.max(0, from - 1);
    ctx.moveTo(pts[start][0], pts[start][1]);
    for (let i = start + 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }

  function redraw() {
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (const s of strokes) path(s);
  }

  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== undefined && ev.button > 0) return;
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    drawing = { width: width(), points: [point(ev)] };
    strokes.push(drawing);
    path(drawing);
    onStart();
  });

  canvas.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    ev.preventDefault();
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
    const before = drawing.points.length;
    for (const e of events.length ? events : [ev]) drawing.points.push(point(e));
    path(drawing, before);
    onMove();
  });

  function end(ev) {
    if (!drawing) return;
    drawing = null;
    if (canvas.hasPointerCapture && canvas.hasPointerCapture(ev.pointerId)) canvas.releasePointerCapture(ev.pointerId);
    onEnd();
  }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  return {
    ctx,
    get strokes() {
      return strokes;
    },
    redraw,
    undo() {
      strokes.pop();
      redraw();
    },
    clear() {
      strokes = [];
      redraw();
    },
  };
}
