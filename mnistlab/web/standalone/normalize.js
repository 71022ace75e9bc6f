// MNIST normalisation of a drawn digit, in the browser: a port of mnistlab/handwriting/normalize.py
// (normalize_digit, match_stroke, digit_mask) and segment.py (grow_mask; ink_map as it works out
// on a clean canvas). Same steps, same constants, same rounding, so that a drawing gives the
// 28x28 picture `mnistlab predict` would give (tests/test_export_web.py compares the two).
//
// Arrays are row-major Float32Array/Uint8Array of h*w; ink is 0 = paper .. 1 = full ink.
// Works as a browser script (window.MnistNormalize) and as a Node module (the tests run it there).
"use strict";

(function (root) {
  const FIT = 20; // the digit's longer side in the 28x28 frame
  const SIZE = 28;
  const MNIST_STROKE = 2.6; // median MNIST stroke width, pixels in 28x28
  const MIN_CONTRAST = 0.06; // segment.MIN_CONTRAST
  const WEAK_INK = 0.06; // segment.WEAK_INK

  // Python's round(): halves go to the even neighbour (round(2.5) == 2), unlike Math.round.
  function pyRound(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  // numpy.percentile(values, q) with its default linear interpolation.
  function percentile(values, q) {
    const a = Float64Array.from(values).sort();
    const pos = ((a.length - 1) * q) / 100;
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, a.length - 1);
    return a[lo] + (a[hi] - a[lo]) * (pos - lo);
  }

  // scipy.ndimage's default boundary ('reflect': d c b a | a b c d | d c b a).
  function reflect(i, n) {
    if (n === 1) return 0;
    const period = 2 * n;
    i = ((i % period) + period) % period;
    return i < n ? i : period - 1 - i;
  }

  // Connected components, 8-connected (ndimage.label with a 3x3 structure): labels 1..n, 0 = none.
  function label(mask, w, h) {
    const labels = new Int32Array(w * h);
    const stack = new Int32Array(w * h);
    let n = 0;
    for (let start = 0; start < w * h; start++) {
      if (!mask[start] || labels[start]) continue;
      n += 1;
      let top = 0;
      stack[top++] = start;
      labels[start] = n;
      while (top > 0) {
        const p = stack[--top];
        const py = (p / w) | 0;
        const px = p - py * w;
        for (let dy = -1; dy <= 1; dy++) {
          const y = py + dy;
          if (y < 0 || y >= h) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const x = px + dx;
            if (x < 0 || x >= w) continue;
            const q = y * w + x;
            if (mask[q] && !labels[q]) {
              labels[q] = n;
              stack[top++] = q;
            }
          }
        }
      }
    }
    return { labels, n };
  }

  // ndimage.binary_erosion with its default cross structure; outside the array counts as 0.
  function erodeCross(mask, w, h) {
    const out = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        out[i] =
          mask[i] && x > 0 && x < w - 1 && y > 0 && y < h - 1 && mask[i - 1] && mask[i + 1] && mask[i - w] && mask[i + w]
            ? 1
            : 0;
      }
    }
    return out;
  }

  // ndimage.binary_dilation with a 3x3 structure.
  function dilate3x3(mask, w, h) {
    const out = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let on = 0;
        for (let dy = -1; dy <= 1 && !on; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= h) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            if (xx >= 0 && xx < w && mask[yy * w + xx]) {
              on = 1;
              break;
            }
          }
        }
        out[y * w + x] = on;
      }
    }
    return out;
  }

  // 2 x area / boundary pixels: a band of width t and length L has area tL and 2L boundary pixels.
  function strokeWidth(mask, w, h) {
    let area = 0;
    for (let i = 0; i < mask.length; i++) area += mask[i];
    if (area === 0) return 0;
    const inner = erodeCross(mask, w, h);
    let boundary = 0;
    for (let i = 0; i < mask.length; i++) boundary += mask[i] && !inner[i] ? 1 : 0;
    return (2 * area) / Math.max(1, boundary);
  }

  // normalize._disk, as the half-width of each of its rows: row dy spans |dx| <= halfWidth[dy + radius].
  function diskHalfWidths(radius) {
    const widths = [];
    for (let dy = -radius; dy <= radius; dy++) {
      let hw = 0;
      while (hw + 1 <= radius && dy * dy + (hw + 1) * (hw + 1) <= radius * radius + radius) hw += 1;
      widths.push(hw);
    }
    return widths;
  }

  // ndimage.grey_dilation / grey_erosion with the (symmetric) disk footprint, 'reflect' boundary.
  // Row by row: rows[k] is the max (min) over |dx| <= k, grown one k at a time from the last
  // (rows[k][x] = best(rows[k-1][x], a[x-k], a[x+k])), then each output pixel takes the best of
  // the disk's rows. (2r+1 + r+1) passes instead of ~r^2 lookups per pixel; max/min are exact,
  // so the numbers are scipy's.
  function greyFilter(a, w, h, radius, isMax) {
    const best = isMax ? Math.max : Math.min;
    const pw = w + 2 * radius;
    const ph = h + 2 * radius;
    const padded = new Float32Array(pw * ph);
    for (let y = 0; y < ph; y++) {
      const sy = reflect(y - radius, h) * w;
      for (let x = 0; x < pw; x++) padded[y * pw + x] = a[sy + reflect(x - radius, w)];
    }
    const rows = [padded];
    for (let k = 1; k <= radius; k++) {
      const prev = rows[k - 1];
      const cur = new Float32Array(pw * ph);
      for (let y = 0; y < ph; y++) {
        const o = y * pw;
        for (let x = k; x < pw - k; x++) cur[o + x] = best(prev[o + x], padded[o + x - k], padded[o + x + k]);
      }
      rows.push(cur);
    }
    const widths = diskHalfWidths(radius);
    const out = new Float32Array(w * h);
    out.fill(isMax ? -Infinity : Infinity);
    for (let dy = -radius; dy <= radius; dy++) {
      const src = rows[widths[dy + radius]];
      for (let y = 0; y < h; y++) {
        const o = (y + radius + dy) * pw + radius;
        const t = y * w;
        for (let x = 0; x < w; x++) out[t + x] = best(out[t + x], src[o + x]);
      }
    }
    return out;
  }

  // normalize.match_stroke: thicken or thin the ink so that after scaling by `scale` the strokes
  // are about MNIST's width.
  function matchStroke(ink, mask, w, h, scale) {
    const sw = strokeWidth(mask, w, h);
    if (sw === 0) return ink;
    const target = MNIST_STROKE / scale; // wanted width in source pixels
    if (sw < 0.8 * target) {
      const r = pyRound((target - sw) / 2);
      if (r >= 1) return greyFilter(ink, w, h, r, true);
    } else if (sw > 1.5 * target) {
      // Never thin a stroke below ~2 source pixels: the digit must survive.
      const r = Math.min(pyRound((sw - target) / 2), Math.max(0, Math.floor((sw - 2) / 2)));
      if (r >= 1) {
        const thin = greyFilter(ink, w, h, r, false);
        let after = 0;
        let before = 0;
        for (let i = 0; i < ink.length; i++) {
          after += thin[i] > 0.5 ? 1 : 0;
          before += ink[i] > 0.5 ? 1 : 0;
        }
        if (after >= 0.25 * before) return thin;
      }
    }
    return ink;
  }

  // PIL's Image.resize(BILINEAR) on a mode "F" image: a triangle filter widened by the shrink
  // factor (anti-aliased), horizontal pass then vertical, float32 between the passes.
  function resampleCoeffs(inSize, outSize) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1);
    const support = 1.0 * filterscale;
    const bounds = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = new Float64Array(Math.max(xmax, 0));
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        const t = Math.abs((x + xmin - center + 0.5) * ss);
        k[x] = t < 1 ? 1 - t : 0;
        ww += k[x];
      }
      if (ww !== 0) for (let x = 0; x < xmax; x++) k[x] /= ww;
      bounds.push([xmin, k]);
    }
    return bounds;
  }

  function resize(a, w, h, outW, outH) {
    if (outW === w && outH === h) return Float32Array.from(a);
    let src = a;
    let sw = w;
    if (outW !== w) {
      const cx = resampleCoeffs(w, outW);
      const tmp = new Float32Array(outW * h);
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < outW; xx++) {
          const [xmin, k] = cx[xx];
          let s = 0;
          for (let x = 0; x < k.length; x++) s += src[y * sw + xmin + x] * k[x];
          tmp[y * outW + xx] = s;
        }
      }
      src = tmp;
      sw = outW;
    }
    if (outH === h) return src;
    const cy = resampleCoeffs(h, outH);
    const out = new Float32Array(sw * outH);
    for (let yy = 0; yy < outH; yy++) {
      const [ymin, k] = cy[yy];
      for (let x = 0; x < sw; x++) {
        let s = 0;
        for (let y = 0; y < k.length; y++) s += src[(ymin + y) * sw + x] * k[y];
        out[yy * sw + x] = s;
      }
    }
    return out;
  }

  function pad(a, w, h, p, Type) {
    const pw = w + 2 * p;
    const out = new Type(pw * (h + 2 * p));
    for (let y = 0; y < h; y++) out.set(a.subarray(y * w, y * w + w), (y + p) * pw + p);
    return out;
  }

  function crop(a, w, r0, r1, c0, c1, Type) {
    const cw = c1 - c0;
    const out = new Type(cw * (r1 - r0));
    for (let y = r0; y < r1; y++) out.set(a.subarray(y * w + c0, y * w + c1), (y - r0) * cw);
    return out;
  }

  // normalize.normalize_digit: ink (white on black, any size) -> 28x28 in [0, 1], MNIST-normalised.
  function normalizeDigit(ink, mask, w, h) {
    const out = new Float32Array(SIZE * SIZE);
    let r0 = h;
    let r1 = -1;
    let c0 = w;
    let c1 = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (!mask[y * w + x]) continue;
        r0 = Math.min(r0, y);
        r1 = Math.max(r1, y);
        c0 = Math.min(c0, x);
        c1 = Math.max(c1, x);
      }
    }
    if (r1 < 0) return out;
    r1 += 1;
    c1 += 1;
    const P = 3; // keep the anti-aliased rim and room to thicken
    const bh = r1 - r0;
    const bw = c1 - c0;
    const iw = bw + 2 * P;
    const ih = bh + 2 * P;
    let box = pad(crop(ink, w, r0, r1, c0, c1, Float32Array), bw, bh, P, Float32Array);
    const boxMask = pad(crop(mask, w, r0, r1, c0, c1, Uint8Array), bw, bh, P, Uint8Array);
    const scale = FIT / Math.max(bh, bw);
    box = matchStroke(box, boxMask, iw, ih, scale);
    const ow = Math.max(1, pyRound(iw * scale));
    const oh = Math.max(1, pyRound(ih * scale));
    let big = resize(box, iw, ih, ow, oh);
    let peak = 0;
    for (let i = 0; i < big.length; i++) {
      if (big[i] < 0) big[i] = 0;
      peak = Math.max(peak, big[i]);
    }
    if (peak <= 0) return out;
    for (let i = 0; i < big.length; i++) big[i] = Math.min(1, Math.max(0, big[i] / peak));
    // Trim to the fitted box (the padding may hold a faint rim) but never beyond 28.
    let gh = oh;
    let gw = ow;
    if (gh > SIZE || gw > SIZE) {
      const t = gh > SIZE ? Math.floor((gh - SIZE) / 2) : 0;
      const l = gw > SIZE ? Math.floor((gw - SIZE) / 2) : 0;
      const nh = Math.min(gh - t, SIZE);
      const nw = Math.min(gw - l, SIZE);
      big = crop(big, gw, t, t + nh, l, l + nw, Float32Array);
      gh = nh;
      gw = nw;
    }
    // ndimage.center_of_mass, then the box placed so that it lands at (14, 14).
    let total = 0;
    let sy = 0;
    let sx = 0;
    for (let y = 0; y < gh; y++) {
      for (let x = 0; x < gw; x++) {
        const v = big[y * gw + x];
        total += v;
        sy += y * v;
        sx += x * v;
      }
    }
    const top = Math.min(Math.max(pyRound(14 - sy / total), 0), SIZE - gh);
    const left = Math.min(Math.max(pyRound(14 - sx / total), 0), SIZE - gw);
    for (let y = 0; y < gh; y++) out.set(big.subarray(y * gw, y * gw + gw), (top + y) * SIZE + left);
    return out;
  }

  // segment.ink_map on a clean canvas (white paper, dark ink, no shading): the paper estimates
  // are 0 and its noise is 0, which leaves the ink's level (90th percentile of the ink above
  // MIN_CONTRAST) and the threshold at 35 % of it. grey: 0 black .. 1 white.
  function inkMap(grey, w, h) {
    const raw = new Float32Array(w * h);
    const strong = [];
    for (let i = 0; i < raw.length; i++) {
      raw[i] = Math.max(0, 1 - grey[i]);
      if (raw[i] > MIN_CONTRAST) strong.push(raw[i]);
    }
    const ink = new Float32Array(w * h);
    const mask = new Uint8Array(w * h);
    if (strong.length < 8) return { ink, mask };
    const level = percentile(strong, 90);
    const thresh = Math.max(0.35 * level, MIN_CONTRAST);
    for (let i = 0; i < raw.length; i++) {
      ink[i] = Math.min(1, raw[i] / level);
      mask[i] = raw[i] > thresh ? 1 : 0;
    }
    return { ink, mask };
  }

  // normalize.digit_mask + segment.grow_mask: all the ink less dust (components under 2 % of
  // the largest), plus the faint ink connected to it beyond the 1-pixel anti-aliased rim.
  function digitMask(ink, mask, w, h) {
    const { labels, n } = label(mask, w, h);
    const keepMask = new Uint8Array(w * h);
    if (n === 0) return keepMask;
    const areas = new Float64Array(n + 1);
    for (let i = 0; i < labels.length; i++) areas[labels[i]] += 1;
    let largest = 0;
    for (let k = 1; k <= n; k++) largest = Math.max(largest, areas[k]);
    const floor = Math.max(8, 0.02 * largest);
    for (let i = 0; i < labels.length; i++) keepMask[i] = labels[i] && areas[labels[i]] >= floor ? 1 : 0;
    // grow_mask with the paper's noise at 0: weak ink is anything above WEAK_INK
    const weak = new Uint8Array(w * h);
    for (let i = 0; i < weak.length; i++) weak[i] = ink[i] > WEAK_INK || keepMask[i] ? 1 : 0;
    const grown = label(weak, w, h);
    const touches = new Uint8Array(grown.n + 1);
    for (let i = 0; i < weak.length; i++) if (keepMask[i]) touches[grown.labels[i]] = 1;
    const rim = dilate3x3(keepMask, w, h);
    const out = new Uint8Array(w * h);
    for (let i = 0; i < out.length; i++) out[i] = keepMask[i] || (touches[grown.labels[i]] && !rim[i]) ? 1 : 0;
    return out;
  }

  // normalize.preprocess_digit for a canvas: RGBA pixels (composited on white, as load_grey does)
  // -> {pixels: Float32Array(784), found: bool}.
  function preprocessRGBA(rgba, w, h) {
    const grey = new Float32Array(w * h);
    for (let i = 0; i < w * h; i++) {
      // over white by alpha (the pad is opaque; a transparent PNG is not), then PIL's "L"
      const a = rgba[4 * i + 3] / 255;
      const r = Math.round(rgba[4 * i] * a + 255 * (1 - a));
      const g = Math.round(rgba[4 * i + 1] * a + 255 * (1 - a));
      const b = Math.round(rgba[4 * i + 2] * a + 255 * (1 - a));
      grey[i] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) / 255;
    }
    const { ink, mask } = inkMap(grey, w, h);
    const pixels = normalizeDigit(ink, digitMask(ink, mask, w, h), w, h);
    let found = false;
    for (let i = 0; i < pixels.length && !found; i++) found = pixels[i] > 0;
    return { pixels, found };
  }

  const api = { normalizeDigit, digitMask, inkMap, preprocessRGBA, resize, matchStroke, strokeWidth, pyRound };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.MnistNormalize = api;
})(typeof window !== "undefined" ? window : globalThis);
