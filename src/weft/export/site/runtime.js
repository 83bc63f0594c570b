/* weft web runtime: a trained weft language model, run in plain JavaScript.
 *
 * Loaded by worker.js (importScripts). Defines `weftRuntime`: load a model from model.json and
 * weights.bin, step its LSTM/GRU/RNN layers one token at a time, score the next token (full
 * or adaptive softmax), sample it the way weft does (generation/sampling.py), and grow the
 * text with stop strings held back until they cannot match. Tokenizers: tokenizers.js.
 * Weights are decoded once to Float32Array; sums run in float64 (JavaScript numbers).
 */
"use strict";

const weftRuntime = (() => {
  // ---------------------------------------------------------------- weights
  const HALF = (() => {  // float16 bit pattern -> value, all 65536 of them
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
      table[h] = exp === 0 ? sign * frac * 2 ** -24
        : exp === 31 ? (frac ? NaN : sign * Infinity)
        : sign * (1 + frac / 1024) * 2 ** (exp - 15);
    }
    return table;
  })();

  function decodeTensor(buffer, entry) {
    const n = entry.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (entry.dtype === "float32") {
      out.set(new Float32Array(buffer, entry.offset, n));
    } else if (entry.dtype === "float16") {
      const bits = new Uint16Array(buffer, entry.offset, n);
      for (let i = 0; i < n; i++) out[i] = HALF[bits[i]];
    } else if (entry.dtype === "int8") {
      const q = new Int8Array(buffer, entry.offset, n);
      const rows = entry.shape[0], cols = n / rows;
      const scales = new Float32Array(buffer, entry.scales, rows);
      for (let r = 0; r < rows; r++) {
        const s = scales[r];
        for (let c = 0; c < cols; c++) out[r * cols + c] = q[r * cols + c] * s;
      }
    } else {
      throw new Error(`unknown weight type ${entry.dtype}`);
    }
    return out;
  }

  // out[r] = bias[r] + sum_c W[r, c] x[c], for rows [r0, r1) of a row-major (rows x cols) W
  function matvec(out, W, cols, x, r0, r1, outOffset) {
    for (let r = r0; r < r1; r++) {
      const base = r * cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, c = 0;
      for (; c + 3 < cols; c += 4) {
        s0 += W[base + c] * x[c]; s1 += W[base + c + 1] * x[c + 1];
        s2 += W[base + c + 2] * x[c + 2]; s3 += W[base + c + 3] * x[c + 3];
      }
      for (; c < cols; c++) s0 += W[base + c] * x[c];
      out[outOffset + r - r0] += s0 + s1 + s2 + s3;
    }
  }

  /* Matrix-vector products, `pack(W, rows, cols)` -> `(out, x) => out += W x`: WebAssembly
     SIMD (kernel.js) where the browser has it and `scalar` is not asked for, else the loop
     above. `shapes` lists every matrix to be packed, so the kernel sizes its memory once. */
  function products(shapes, scalar) {
    const kernel = !scalar && typeof weftKernel === "object" ? weftKernel.create(shapes) : null;
    return {
      kind: kernel ? "wasm-simd" : "js",
      pack: (W, rows, cols) => (kernel ? kernel.pack(W, rows, cols)
        : (out, x) => matvec(out, W, cols, x, 0, rows, 0)),
    };
  }

  const sigmoid = (v) => 1 / (1 + Math.exp(-v));

  // ---------------------------------------------------------------- the model
  class Model {
    constructor(manifest, buffer, scalar = false) {
      const m = manifest.model;
      this.cell = m.cell; this.layers = m.layers; this.hidden = m.hidden_size;
      this.vocab = m.vocab_size; this.embDim = m.embedding_dim;
      const t = {};
      for (const entry of manifest.weights.tensors) t[entry.name] = decodeTensor(buffer, entry);
      this.embedding = t["embedding.weight"] || null;
      this.gates = { lstm: 4, gru: 3, rnn: 1 }[this.cell];
      this.layer = [];
      for (let k = 0; k < this.layers; k++) {
        this.layer.push({
          wih: t[`rnn.weight_ih_l${k}`], whh: t[`rnn.weight_hh_l${k}`],
          bih: t[`rnn.bias_ih_l${k}`], bhh: t[`rnn.bias_hh_l${k}`],
          inSize: k === 0 ? (this.embDim || this.vocab) : this.hidden,
        });
      }
      this.headW = m.tie_weights ? this.embedding : t["head.weight"];
      this.headB = t["head.bias"];
      this.adaptive = m.adaptive_cutoffs && m.adaptive_cutoffs.length
        ? new AdaptiveSoftmax(t, m.adaptive_cutoffs, this.vocab, this.hidden) : null;
      const G = this.gates * this.hidden;
      // Every product of a step: [weights, rows, columns, where its function goes]
      const mats = this.adaptive ? this.adaptive.matrices()
        : [[this.headW, this.vocab, this.hidden, (f) => { this.headProduct = f; }]];
      this.layer.forEach((L, k) => {
        if (k > 0 || this.embedding) mats.push([L.wih, G, L.inSize, (f) => { L.ih = f; }]);
        mats.push([L.whh, G, this.hidden, (f) => { L.hh = f; }]);
      });
      const made = products(mats.map(([, rows, cols]) => [rows, cols]), scalar);
      for (const [W, rows, cols, assign] of mats) assign(made.pack(W, rows, cols));
      this.kernel = made.kind;
      this.gi = new Float64Array(G); this.gh = new Float64Array(G);
      this.logits = new Float64Array(this.vocab);
    }

    initialState() {
      const zeros = () => Array.from({ length: this.layers }, () => new Float32Array(this.hidden));
      return { h: zeros(), c: this.cell === "lstm" ? zeros() : null };
    }

    /* Feed one token; the state is updated in place and the next-token logits returned
       (a Float64Array owned by the model: copy it to keep it past the next step). */
    step(token, state) {
      const H = this.hidden, G = this.gates * H, gi = this.gi, gh = this.gh;
      let x = this.embedding ? this.embedding.subarray(token * this.embDim,
                                                       (token + 1) * this.embDim) : null;
      for (let k = 0; k < this.layers; k++) {
        const L = this.layer[k], h = state.h[k];
        for (let r = 0; r < G; r++) { gi[r] = L.bih[r]; gh[r] = L.bhh[r]; }
        if (x === null) {  // one-hot input: one column of the input weights
          for (let r = 0; r < G; r++) gi[r] += L.wih[r * L.inSize + token];
        } else {
          L.ih(gi, x);
        }
        L.hh(gh, h);
        if (this.cell === "lstm") {  // gates i, f, g, o (PyTorch's order)
          const c = state.c[k];
          for (let j = 0; j < H; j++) {
            const i = sigmoid(gi[j] + gh[j]), f = sigmoid(gi[H + j] + gh[H + j]);
            const g = Math.tanh(gi[2 * H + j] + gh[2 * H + j]);
            const o = sigmoid(gi[3 * H + j] + gh[3 * H + j]);
            const cj = f * c[j] + i * g;
            c[j] = cj; h[j] = o * Math.tanh(cj);
          }
        } else if (this.cell === "gru") {  // gates r, z, n
          for (let j = 0; j < H; j++) {
            const r = sigmoid(gi[j] + gh[j]), z = sigmoid(gi[H + j] + gh[H + j]);
            const n = Math.tanh(gi[2 * H + j] + r * gh[2 * H + j]);
            h[j] = (1 - z) * n + z * h[j];
          }
        } else {
          for (let j = 0; j < H; j++) h[j] = Math.tanh(gi[j] + gh[j]);
        }
        x = h;
      }
      const logits = this.logits;
      if (this.adaptive) return this.adaptive.logProb(x, logits);
      for (let v = 0; v < this.vocab; v++) logits[v] = this.headB[v];
      this.headProduct(logits, x);
      return logits;
    }
  }

  /* PyTorch's AdaptiveLogSoftmaxWithLoss.log_prob: the head scores the shortlist and one
     entry per cluster; a token of cluster i scores log p(cluster i) + log p(token | cluster),
     the cluster's own two bias-free projections. Exact log-probabilities of every token. */
  class AdaptiveSoftmax {
    constructor(t, cutoffs, vocab, hidden) {
      this.bounds = [...cutoffs, vocab];
      this.hidden = hidden;
      this.head = t["adaptive.head.weight"];
      this.headOut = new Float64Array(cutoffs[0] + cutoffs.length);
      this.tails = cutoffs.map((_, i) => {
        const proj = t[`adaptive.tail.${i}.0.weight`], out = t[`adaptive.tail.${i}.1.weight`];
        const size = proj.length / hidden;
        return { proj, out, size, mid: new Float32Array(size), tmp: new Float64Array(size) };
      });
    }

    matrices() {  // for Model: its products, packed where they run
      const H = this.hidden;
      const mats = [[this.head, this.headOut.length, H, (f) => { this.headProduct = f; }]];
      this.tails.forEach((tail, i) => {
        const rows = this.bounds[i + 1] - this.bounds[i];
        mats.push([tail.proj, tail.size, H, (f) => { tail.projProduct = f; }]);
        mats.push([tail.out, rows, tail.size, (f) => { tail.outProduct = f; }]);
      });
      return mats;
    }

    logProb(x, result) {
      const shortlist = this.bounds[0], headOut = this.headOut;
      headOut.fill(0);
      this.headProduct(headOut, x);
      const head = logSoftmax(headOut);
      for (let v = 0; v < shortlist; v++) result[v] = head[v];
      this.tails.forEach((tail, i) => {
        const start = this.bounds[i], stop = this.bounds[i + 1];
        tail.tmp.fill(0);
        tail.projProduct(tail.tmp, x);
        tail.mid.set(tail.tmp);  // PyTorch rounds the projection to float32 too
        const scores = new Float64Array(stop - start);
        tail.outProduct(scores, tail.mid);
        const cluster = logSoftmax(scores), prior = head[shortlist + i];
        for (let v = start; v < stop; v++) result[v] = cluster[v - start] + prior;
      });
      return result;
    }
  }

  function logSoftmax(values) {
    let max = -Infinity;
    for (const v of values) if (v > max) max = v;
    let sum = 0;
    for (const v of values) sum += Math.exp(v - max);
    const lse = max + Math.log(sum);
    return Array.from(values, (v) => v - lse);
  }

  // ---------------------------------------------------------------- sampling (sampling.py)
  const MIN_TEMPERATURE = 1e-4;

  // mulberry32: a small seeded generator of uniforms in [0, 1), so a seed repeats a text
  function rng(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function argmax(values) {
    let best = 0, top = -Infinity;
    for (let i = 0; i < values.length; i++) if (values[i] > top) { top = values[i]; best = i; }
    return best;
  }

  /* One token from logits: banned ids never, the repetition penalty on seen ids, then greedy
     (temperature below 1e-4) or temperature, top-k, top-p and one uniform draw. */
  function sample(logits, cfg, banned, seen, random) {
    const V = logits.length, l = new Float64Array(V);
    for (let i = 0; i < V; i++) {
      let v = Number.isNaN(logits[i]) || banned[i] ? -Infinity : logits[i];
      if (seen && seen[i] && cfg.repetition_penalty !== 1) {
        v = v > 0 ? v / cfg.repetition_penalty : v * cfg.repetition_penalty;
      }
      l[i] = v;
    }
    if (cfg.temperature < MIN_TEMPERATURE) return argmax(l);
    const greedy = argmax(l);
    for (let i = 0; i < V; i++) l[i] /= cfg.temperature;
    if (cfg.top_k > 0 && cfg.top_k < V) {
      const kth = Float64Array.from(l).sort()[V - cfg.top_k];  // k-th largest
      for (let i = 0; i < V; i++) if (l[i] < kth) l[i] = -Infinity;
    }
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (l[i] > max) max = l[i];
    const p = new Float64Array(V);
    let total = 0;
    for (let i = 0; i < V; i++) { p[i] = Math.exp(l[i] - max); total += p[i]; }
    if (cfg.top_p < 1) {  // drop a token when the mass before it already reaches top_p
      const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a]);
      let before = 0;
      for (const i of order) {
        const share = p[i] / total;
        if (before >= cfg.top_p) p[i] = 0;
        before += share;
      }
      total = p.reduce((a, b) => a + b, 0);
    }
    if (!(total > 0) || !Number.isFinite(total)) return greedy;
    const target = random() * total;
    let running = 0;
    for (let i = 0; i < V; i++) {
      running += p[i];
      if (running > target) return i;
    }
    return V - 1;
  }

  // ---------------------------------------------------------------- text
  /* One text's growth with stop strings (generate.py's TextState): text that may be the start
     of a stop string is held back from flush() until it cannot be. */
  class TextState {
    constructor(decoder, stops) {
      this.decoder = decoder; this.stops = stops;
      this.hold = Math.max(1, ...stops.map((s) => s.length)) - 1;
      this.text = ""; this.emitted = 0; this.done = false; this.stopped = false;
    }

    push(token, eos) {
      if (token === eos) { this.stopped = true; this.finish(); return; }
      this.add(this.decoder.push(token));
    }

    finish() {
      if (!this.done) this.add(this.decoder.finish());
      this.done = true;
    }

    add(delta) {
      if (!delta) return;
      const from = Math.max(0, this.text.length - this.hold);
      this.text += delta;
      for (const stop of this.stops) {
        const at = this.text.indexOf(stop, from);
        if (at >= 0) { this.text = this.text.slice(0, at); this.done = this.stopped = true; }
      }
    }

    flush(final) {
      const end = final || this.done ? this.text.length
        : Math.max(this.emitted, this.text.length - this.hold);
      const chunk = this.text.slice(this.emitted, end);
      this.emitted = end;
      return chunk;
    }
  }

  return { Model, TextState, sample, rng, logSoftmax, argmax };
})();
