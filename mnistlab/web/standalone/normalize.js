// MNIST normalisation of one digit, in the browser: a port of the single-digit path of
// mnistlab/handwriting/normalize.py (single_digit: working size, Otsu threshold, polarity_score,
// the uniform-paper test and the paper level or _paper_estimate, _robust_std, the blank checks,
// digit_mask + segment.grow_mask, _edge_sharpness; then normalize_digit and match_stroke), with
// the same constants and the same arithmetic: float32 where numpy keeps float32 (a Python float
// meeting a float32 array is rounded to float32 first, NEP 50), numpy's percentile and median
// formulas, PIL's resampling coefficients, scipy's filters and boundaries, Python's rounding.
// tests/test_export_web.py runs both on the same grey pixels and asks for the same 28x28 to 1e-5.
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
  const SINGLE_MAX_SIDE = 160; // px: the working size's longer side at most (normalize.SINGLE_MAX_SIDE)
  const SINGLE_MIN_SIDE = 64; // px: smaller inputs are enlarged to this first
  const MIN_EDGE = 0.05; // ink units per working pixel: the slowest edge a pen stroke has
  const f32 = Math.fround;

  // Python's round(): halves go to the even neighbour (round(2.5) == 2), unlike Math.round.
  function pyRound(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  // ------------------------------------------------------------------ numpy's statistics

  // The values of `a` where `mask` is `want` (a new array: the statistics below reorder it).
  function where(a, mask, want) {
    let n = 0;
    for (let i = 0; i < a.length; i++) if (!mask[i] === !want) n++;
    const out = new Float32Array(n);
    let j = 0;
    for (let i = 0; i < a.length; i++) if (!mask[i] === !want) out[j++] = a[i];
    return out;
  }

  // The k-th smallest of `v` (0-based), by quickselect with a three-way partition (paper is
  // mostly one value: equal keys must not make it quadratic). Reorders `v`; a value is a value,
  // so the answer is the sorted array's v[k], as numpy's partition gives it.
  function kth(v, k) {
    let lo = 0;
    let hi = v.length - 1;
    while (lo < hi) {
      const a = v[lo];
      const b = v[(lo + hi) >> 1];
      const c = v[hi];
      const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b; // median of 3
      let lt = lo;
      let i = lo;
      let gt = hi;
      while (i <= gt) {
        const x = v[i];
        if (x < pivot) {
          v[i++] = v[lt];
          v[lt++] = x;
        } else if (x > pivot) {
          v[i] = v[gt];
          v[gt--] = x;
        } else i++;
      }
      if (k < lt) hi = lt - 1;
      else if (k > gt) lo = gt + 1;
      else return pivot;
    }
    return v[k];
  }

  // np.median of a float32 array (not empty): the middle value, or the float32 mean of the two
  // middle ones (np.mean sums in float32). Reorders `v`.
  function median32(v) {
    const n = v.length;
    const m = n >> 1;
    if (n % 2) return kth(v, m);
    const a = kth(v, m - 1);
    return f32(f32(a + kth(v, m)) / 2);
  }

  // np.percentile(v, q) with its default 'linear' method on a float32 array (not empty), q in
  // [0, 100]. numpy interpolates from the far end when the fraction is >= 0.5 and, for a
  // Python-number q (`weak`), keeps float32: the fraction is rounded to float32 and each step is
  // a float32 operation. For a list of q (not weak) the interpolation is float64. Reorders `v`.
  function percentile(v, q, weak) {
    const n = v.length;
    const virtual = (n - 1) * (q / 100);
    let lo = Math.floor(virtual);
    if (virtual >= n - 1) lo = -1; // numpy's index -1: the largest value
    const a = kth(v, lo < 0 ? n - 1 : lo);
    const b = lo < 0 ? a : kth(v, lo + 1);
    const t = virtual - lo;
    const d = f32(b - a);
    if (weak) return t >= 0.5 ? f32(b - f32(d * f32(1 - t))) : f32(a + f32(d * f32(t)));
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
  }

  // numpy's pairwise sum (np.add.reduce) of a float64 array of up to 128 values.
  function pairwiseSum(a) {
    if (a.length < 8) {
      let s = 0;
      for (const v of a) s += v;
      return s;
    }
    const r = Array.from(a.slice(0, 8));
    let i = 8;
    for (; i < a.length - (a.length % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[i + j];
    let s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < a.length; i++) s += a[i];
    return s;
  }

  // ------------------------------------------------------------------ PIL's resampling

  // Image.resize on a mode "F" image (Pillow 13's libImaging/Resample.c): each filter widened by
  // the shrink factor, coefficients in float64 normalised to sum 1, one pass per axis into a
  // float32 image, sums in float64. The horizontal pass comes first unless the height shrinks by
  // more than twice as many pixels as the width (then the vertical one does, to save work); the
  // order changes the float32 rounding in between, so it is Pillow's rule to the letter.
  const BOX = { support: 0.5, filter: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) };
  const BILINEAR = {
    support: 1,
    filter: (x) => {
      x = Math.abs(x);
      return x < 1 ? 1 - x : 0;
    },
  };
  const BICUBIC = {
    support: 2,
    filter: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  };

  function resampleCoeffs(inSize, outSize, kind) {
    const scale = inSize / outSize;
    const filterscale = Math.max(scale, 1);
    const support = kind.support * filterscale;
    const ss = 1.0 / filterscale;
    const bounds = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = new Float64Array(Math.max(xmax, 0));
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        k[x] = kind.filter((x + xmin - center + 0.5) * ss);
        ww += k[x];
      }
      if (ww !== 0) for (let x = 0; x < xmax; x++) k[x] /= ww;
      bounds.push([xmin, k]);
    }
    return bounds;
  }

  const FILTERS = { BOX, BILINEAR, BICUBIC };

  function horizontalPass(src, w, h, outW, kind) {
    const cx = resampleCoeffs(w, outW, kind);
    const out = new Float32Array(outW * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < outW; xx++) {
        const [xmin, k] = cx[xx];
        let s = 0;
        for (let x = 0; x < k.length; x++) s += src[y * w + xmin + x] * k[x];
        out[y * outW + xx] = s;
      }
    }
    return out;
  }

  function verticalPass(src, w, h, outH, kind) {
    const cy = resampleCoeffs(h, outH, kind);
    const out = new Float32Array(w * outH);
    for (let yy = 0; yy < outH; yy++) {
      const [ymin, k] = cy[yy];
      for (let x = 0; x < w; x++) {
        let s = 0;
        for (let y = 0; y < k.length; y++) s += src[(ymin + y) * w + x] * k[y];
        out[yy * w + x] = s;
      }
    }
    return out;
  }

  // _resample(a, outW, outH, Image.Resampling[filter]) of a float32 image (h x w).
  function resample(a, w, h, outW, outH, filter) {
    const kind = FILTERS[filter];
    if (outW === w && outH === h) return Float32Array.from(a); // PIL: a copy
    if (outW === w) return verticalPass(a, w, h, outH, kind);
    if (outH === h) return horizontalPass(a, w, h, outW, kind);
    if (h - outH > 0 && h - outH > (w - outW) * 2) {
      return horizontalPass(verticalPass(a, w, h, outH, kind), w, outH, outW, kind);
    }
    return verticalPass(horizontalPass(a, w, h, outW, kind), outW, h, outH, kind);
  }

  // ------------------------------------------------------------------ scipy.ndimage

  // Boundaries of scipy's filters: 'reflect' (d c b a | a b c d | d c b a) and 'nearest'.
  function reflect(i, n) {
    if (n === 1) return 0;
    const period = 2 * n;
    i = ((i % period) + period) % period;
    return i < n ? i : period - 1 - i;
  }
  const nearest = (i, n) => (i < 0 ? 0 : i >= n ? n - 1 : i);

  // ndimage.gaussian_filter (order 0, truncate 4.0) of a float32 image: scipy's kernel
  // (exp(-x^2 / 2 sigma^2) over a radius of int(4 sigma + 0.5), divided by numpy's sum), one
  // pass down each column (axis 0), then one along each row (axis 1), each line summed in
  // float64 as ni_filters.c's symmetric loop does (the centre, then the outermost pair inwards)
  // and stored as float32 between the passes.
  function gaussianKernel(sigma) {
    const radius = Math.trunc(4 * sigma + 0.5);
    const c = -0.5 / (sigma * sigma);
    const phi = [];
    for (let x = -radius; x <= radius; x++) phi.push(Math.exp(c * (x * x)));
    const total = pairwiseSum(phi);
    return phi.slice(radius).map((v) => v / total); // [centre, 1 px away, ...]
  }

  const BOUNDARIES = { reflect, nearest };

  function gaussian(a, w, h, sigma, mode) {
    const boundary = BOUNDARIES[mode];
    const k = gaussianKernel(sigma);
    const r = k.length - 1;
    // one pass: `lines` lines of n values, value i of line l at l * across + i * along
    const pass = (src, n, lines, across, along) => {
      const out = new Float32Array(src.length);
      const line = new Float64Array(n + 2 * r);
      for (let l = 0; l < lines; l++) {
        const o = l * across;
        for (let i = 0; i < n; i++) line[i + r] = src[o + i * along];
        for (let i = 1; i <= r; i++) {
          line[r - i] = src[o + boundary(-i, n) * along];
          line[n + r - 1 + i] = src[o + boundary(n - 1 + i, n) * along];
        }
        for (let i = 0; i < n; i++) {
          let s = line[i + r] * k[0];
          for (let j = r; j >= 1; j--) s += (line[i + r - j] + line[i + r + j]) * k[j];
          out[o + i * along] = s;
        }
      }
      return out;
    };
    return pass(pass(a, h, w, 1, w), w, h, w, 1); // axis 0 (each column), then axis 1 (each row)
  }

  // ------------------------------------------------------------------ shapes

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
    let big = resample(box, iw, ih, ow, oh, "BILINEAR");
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

  // normalize.digit_mask + segment.grow_mask: all the ink less dust (components under 8 px or 2 %
  // of the largest), plus the faint ink connected to it (above max(WEAK_INK, 3 x the paper's
  // noise in ink units)) beyond the 1-pixel anti-aliased rim.
  function digitMask(ink, mask, w, h, noise = 0) {
    const { labels, n } = label(mask, w, h);
    const keepMask = new Uint8Array(w * h);
    if (n === 0) return keepMask;
    const areas = new Float64Array(n + 1);
    for (let i = 0; i < labels.length; i++) areas[labels[i]] += 1;
    let largest = 0;
    for (let k = 1; k <= n; k++) largest = Math.max(largest, areas[k]);
    const floor = Math.max(8, 0.02 * largest);
    for (let i = 0; i < labels.length; i++) keepMask[i] = labels[i] && areas[labels[i]] >= floor ? 1 : 0;
    const weakAbove = f32(Math.max(WEAK_INK, 3 * noise));
    const weak = new Uint8Array(w * h);
    for (let i = 0; i < weak.length; i++) weak[i] = ink[i] > weakAbove || keepMask[i] ? 1 : 0;
    const grown = label(weak, w, h);
    const touches = new Uint8Array(grown.n + 1);
    for (let i = 0; i < weak.length; i++) if (keepMask[i]) touches[grown.labels[i]] = 1;
    const rim = dilate3x3(keepMask, w, h);
    const out = new Uint8Array(w * h);
    for (let i = 0; i < out.length; i++) out[i] = keepMask[i] || (touches[grown.labels[i]] && !rim[i]) ? 1 : 0;
    return out;
  }

  // normalize._otsu: the threshold that best splits values in [0, 1] into two classes, on a
  // 64-bin histogram (np.histogram's bins: floor(64 v), 1.0 in the last; float64 sums).
  function otsu(grey) {
    const bins = 64;
    const hist = new Float64Array(bins);
    let total = 0;
    for (let i = 0; i < grey.length; i++) {
      const v = grey[i];
      if (!(v >= 0 && v <= 1)) continue; // outside the range (or NaN): not counted, as numpy
      hist[Math.min(Math.floor(v * bins), bins - 1)] += 1;
      total += 1;
    }
    let w0 = 0;
    let m0 = 0;
    const ws = new Float64Array(bins);
    const ms = new Float64Array(bins);
    for (let i = 0; i < bins; i++) {
      const p = hist[i] / Math.max(1, total);
      w0 += p;
      m0 += p * ((2 * i + 1) / (2 * bins)); // the bin's centre
      ws[i] = w0;
      ms[i] = m0;
    }
    const mean = ms[bins - 1];
    let best = 0;
    let bestBetween = -Infinity;
    for (let i = 0; i < bins - 1; i++) {
      const between = (mean * ws[i] - ms[i]) ** 2 / Math.max(ws[i] * (1 - ws[i]), 1e-12);
      if (between > bestBetween) {
        bestBetween = between;
        best = i;
      }
    }
    return (best + 1) / bins;
  }

  // normalize.polarity_score: > 0 when the ink is darker than the paper (the border is mostly
  // paper; ink is the smaller class; a small prior for dark ink).
  function polarityScore(grey, w, h, threshold) {
    const t = f32(threshold);
    let border = 0;
    let darkBorder = 0;
    const count = (i) => {
      border += 1;
      darkBorder += grey[i] < t ? 1 : 0;
    };
    for (let x = 0; x < w; x++) count(x); // grey[0]
    for (let x = 0; x < w; x++) count((h - 1) * w + x); // grey[-1] (the same row when h == 1)
    for (let y = 1; y < h - 1; y++) count(y * w); // grey[1:-1, 0]
    for (let y = 1; y < h - 1; y++) count(y * w + w - 1); // grey[1:-1, -1]
    let dark = 0;
    for (let i = 0; i < grey.length; i++) dark += grey[i] < t ? 1 : 0;
    return (0.5 - darkBorder / border) * 2 + (0.5 - dark / grey.length) + 0.05;
  }

  // normalize._robust_std: 1.4826 x the median absolute deviation (float32, as numpy's).
  function robustStd(v) {
    if (v.length === 0) return 0;
    const med = median32(v);
    const dev = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) dev[i] = Math.abs(f32(v[i] - med));
    return f32(f32(1.4826) * median32(dev));
  }

  // normalize._paper_estimate: a smooth picture of the paper from its pixels only (normalised
  // convolution on a grid of 24 cells on the longer side, then bilinear back up).
  function paperEstimate(x, paper, w, h) {
    const f = Math.max(h, w) / 24;
    const gh = Math.max(1, pyRound(h / f));
    const gw = Math.max(1, pyRound(w / f));
    const onPaper = new Float32Array(w * h);
    const share = new Float32Array(w * h);
    for (let i = 0; i < onPaper.length; i++) {
      onPaper[i] = paper[i] ? x[i] : 0;
      share[i] = paper[i] ? 1 : 0;
    }
    const num = gaussian(resample(onPaper, w, h, gw, gh, "BOX"), gw, gh, 3.0, "nearest");
    const den = gaussian(resample(share, w, h, gw, gh, "BOX"), gw, gh, 3.0, "nearest");
    const fallback = median32(where(x, paper, true));
    const floor = f32(1e-3);
    const coarse = new Float32Array(gw * gh);
    for (let i = 0; i < coarse.length; i++) coarse[i] = den[i] > floor ? num[i] / Math.max(den[i], floor) : fallback;
    return resample(coarse, gw, gh, w, h, "BILINEAR");
  }

  // normalize._edge_sharpness: the median gradient of the smoothed ink on the mask's edge (ink
  // units per pixel; np.gradient: central differences inside, one-sided at the ends, float32).
  function edgeSharpness(ink, mask, w, h) {
    if (w < 2 || h < 2) return 0; // a strip one pixel across holds no pen strokes
    const inner = erodeCross(mask, w, h);
    let edges = 0;
    for (let i = 0; i < mask.length; i++) edges += mask[i] && !inner[i] ? 1 : 0;
    if (edges === 0) return 0;
    const g = gaussian(ink, w, h, 1.0, "reflect");
    const slope = (a, b, two) => (two ? f32(f32(a - b) / 2) : f32(a - b));
    const steep = new Float32Array(edges);
    let j = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!mask[i] || inner[i]) continue;
        const gy =
          y === 0 ? slope(g[i + w], g[i]) : y === h - 1 ? slope(g[i], g[i - w]) : slope(g[i + w], g[i - w], true);
        const gx = x === 0 ? slope(g[i + 1], g[i]) : x === w - 1 ? slope(g[i], g[i - 1]) : slope(g[i + 1], g[i - 1], true);
        steep[j++] = Math.sqrt(gy * gy + gx * gx); // np.hypot in float32: the float64 root, rounded
      }
    }
    return median32(steep);
  }

  const NOTHING = (scale, polarity, reason, w, h) => ({
    pixels: new Float32Array(SIZE * SIZE),
    found: false,
    reason,
    polarity,
    dark: null,
    uniform: true,
    scale,
    box: [0, 0, 0, 0],
    width: w,
    height: h,
    ink: new Float32Array(w * h),
    mask: new Uint8Array(w * h),
    noise: 0,
  });

  // normalize.single_digit: a grey image (h x w, 0 black .. 1 white) holding one digit -> that
  // digit, MNIST-normalised: {pixels: Float32Array(784), found, polarity, dark, uniform, box
  // (x0, y0, x1, y1 at working size), scale, width/height (working size), ink and mask (at
  // working size: SingleDigit.ink's, the mask before digitMask), noise (the paper's, in ink units), reason}. `reason`
  // says which step decided: "digit", or why there is none: "one level" (no paper/ink split),
  // "faint" (no ink clearly above the paper's noise), "dust" (nothing but specks), "smooth" (a
  // shadow or a lighting ramp, not pen strokes). darkInk: true/false forces the polarity.
  function singleDigit(grey, w0, h0, darkInk = null) {
    let scale = Math.min(1.0, SINGLE_MAX_SIDE / Math.max(h0, w0));
    if (Math.max(h0, w0) < SINGLE_MIN_SIDE) scale = SINGLE_MIN_SIDE / Math.max(h0, w0);
    let w = w0;
    let h = h0;
    if (scale !== 1.0) {
      w = Math.max(1, pyRound(w0 * scale));
      h = Math.max(1, pyRound(h0 * scale));
      grey = resample(grey, w0, h0, w, h, scale < 1 ? "BOX" : "BICUBIC");
      for (let i = 0; i < grey.length; i++) grey[i] = Math.min(1, Math.max(0, grey[i]));
    }
    const threshold = otsu(grey);
    const polarity = polarityScore(grey, w, h, threshold);
    const dark = darkInk === null ? polarity >= 0 : Boolean(darkInk);
    const n = w * h;
    const x = new Float32Array(n); // ink bright from here on
    for (let i = 0; i < n; i++) x[i] = dark ? 1 - grey[i] : grey[i];
    const paperAt = f32(dark ? 1.0 - threshold : threshold);
    const paper = new Uint8Array(n);
    let papers = 0;
    for (let i = 0; i < n; i++) papers += paper[i] = x[i] <= paperAt ? 1 : 0;
    if (papers === n || papers === 0) return NOTHING(scale, polarity, "one level", w, h);
    // Is the paper one level? Judged away from the strokes' rims; a tight crop with hardly any
    // paper away from the ink counts as uniform.
    const far = erodeCross(erodeCross(paper, w, h), w, h);
    let fars = 0;
    for (let i = 0; i < n; i++) fars += far[i];
    let uniform = fars < 0.05 * n;
    if (!uniform) {
      const farValues = where(x, far, true);
      const lo = percentile(farValues, 10, false); // np.percentile(x[far], [10, 90]): float64
      const hi = percentile(farValues, 90, false);
      uniform = hi - lo < 0.25 * (median32(where(x, paper, false)) - median32(farValues));
    }
    const resid = new Float32Array(n);
    if (uniform) {
      const bg = median32(where(x, paper, true));
      for (let i = 0; i < n; i++) resid[i] = Math.max(0, f32(x[i] - bg));
    } else {
      const bg = paperEstimate(x, paper, w, h);
      for (let i = 0; i < n; i++) resid[i] = Math.max(0, f32(x[i] - bg[i]));
    }
    const level = percentile(where(resid, paper, false), 90, true);
    const noise = robustStd(where(resid, paper, true));
    if (level < Math.max(MIN_CONTRAST, 6 * noise)) return NOTHING(scale, polarity, "faint", w, h);
    const ink = new Float32Array(n);
    const strong = new Uint8Array(n);
    const strongAbove = f32(Math.max(0.35, (4 * noise) / level));
    for (let i = 0; i < n; i++) {
      ink[i] = Math.min(1, Math.max(0, f32(resid[i] / level)));
      strong[i] = ink[i] > strongAbove ? 1 : 0;
    }
    const mask = digitMask(ink, strong, w, h, noise / level);
    let x0 = w;
    let y0 = h;
    let x1 = -1;
    let y1 = -1;
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        if (!mask[y * w + xx]) continue;
        x0 = Math.min(x0, xx);
        x1 = Math.max(x1, xx);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
    if (x1 < 0) return NOTHING(scale, polarity, "dust", w, h);
    if (edgeSharpness(ink, mask, w, h) < MIN_EDGE) return NOTHING(scale, polarity, "smooth", w, h);
    const pixels = normalizeDigit(ink, mask, w, h);
    let found = false;
    for (let i = 0; i < pixels.length && !found; i++) found = pixels[i] > 0;
    return {
      pixels,
      found,
      reason: "digit",
      polarity,
      dark,
      uniform,
      scale,
      box: [x0, y0, x1 + 1, y1 + 1],
      width: w,
      height: h,
      ink,
      mask: strong,
      noise: noise / level,
    };
  }

  // PIL's convert("L") of an RGBA pixel as images._to_grey makes it: transparency composited on
  // white first (Image.alpha_composite's integer arithmetic), then L = (19595 R + 38470 G +
  // 7471 B + 0x8000) >> 16; grey = L / 255 in float32.
  function rgbaToGrey(rgba, w, h) {
    const grey = new Float32Array(w * h);
    const div255 = (v) => (((v >> 8) + v) >> 8) >> 7; // SHIFTFORDIV255, then the 7 precision bits
    for (let i = 0; i < w * h; i++) {
      let r = rgba[4 * i];
      let g = rgba[4 * i + 1];
      let b = rgba[4 * i + 2];
      const a = rgba[4 * i + 3];
      if (a === 0) {
        r = g = b = 255;
      } else if (a !== 255) {
        const coef1 = a * 128; // a * 255 * 255 * 128 / (255 * 255): over opaque white
        const coef2 = 255 * 128 - coef1;
        r = div255(r * coef1 + 255 * coef2 + (0x80 << 7));
        g = div255(g * coef1 + 255 * coef2 + (0x80 << 7));
        b = div255(b * coef1 + 255 * coef2 + (0x80 << 7));
      }
      grey[i] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) / 255;
    }
    return grey;
  }

  // normalize.preprocess_digit for a canvas: RGBA pixels -> singleDigit's answer (pixels: the
  // 28x28 canonical digit, white on black; found: false when there is no digit).
  function preprocessRGBA(rgba, w, h, darkInk = null) {
    return singleDigit(rgbaToGrey(rgba, w, h), w, h, darkInk);
  }

  // normalize.preprocess_digit for grey pixels (0 black .. 1 white), clipped to [0, 1] first.
  function preprocessGrey(grey, w, h, darkInk = null) {
    const g = new Float32Array(w * h);
    for (let i = 0; i < g.length; i++) g[i] = Math.min(1, Math.max(0, grey[i]));
    return singleDigit(g, w, h, darkInk);
  }

  const api = {
    preprocessRGBA,
    preprocessGrey,
    singleDigit,
    normalizeDigit,
    digitMask,
    matchStroke,
    strokeWidth,
    resample,
    gaussian,
    percentile,
    median32,
    robustStd,
    otsu,
    pyRound,
  };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.MnistNormalize = api;
})(typeof window !== "undefined" ? window : globalThis);
