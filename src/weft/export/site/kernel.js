/* weft web kernel: the matrix-vector products of a step in WebAssembly SIMD (f32x4).
 *
 * The products are nearly all of a step's work (a 2 x 512 LSTM: 3.4 million multiply-adds per
 * token). Scalar JavaScript runs them one multiply-add at a time; this kernel runs four lanes
 * with four accumulators. The module is assembled here from its opcodes (below, readable), so
 * the page needs no build step and no binary file; where a browser lacks WebAssembly SIMD,
 * `weftKernel.create` returns null and runtime.js keeps its JavaScript products.
 *
 * Memory layout: each matrix row is padded with zeros to a multiple of 16 floats, so the inner
 * loop needs no tail. Sums are float32, as PyTorch's are.
 */
"use strict";

const weftKernel = (() => {
  const LANES = 16;  // floats per inner-loop iteration: 4 accumulators x f32x4

  // matvec(W, x, out, rows, stride): out[r] = sum_c W[r * stride + c] * x[c] (byte addresses)
  function moduleBytes() {
    const W = 0, X = 1, OUT = 2, ROWS = 3, STRIDE = 4;  // parameters (i32)
    const R = 5, C = 6, WP = 7, XP = 8;                  // locals (i32)
    const ACC = [9, 10, 11, 12];                          // locals (v128)
    const get = (i) => [0x20, i], set = (i) => [0x21, i];
    const i32 = (v) => [0x41, ...sleb(v)];
    const simd = (op) => [0xfd, ...uleb(op)];
    const V128_LOAD = 0x00, F32X4_SPLAT = 0x13, F32X4_EXTRACT = 0x1f;
    const F32X4_ADD = 0xe4, F32X4_MUL = 0xe6;
    const mac = (k) => [  // ACC[k] += W[wp + 16k] * X[xp + 16k]
      ...get(ACC[k]), ...get(WP), ...simd(V128_LOAD), 4, 16 * k,
      ...get(XP), ...simd(V128_LOAD), 4, 16 * k, ...simd(F32X4_MUL), ...simd(F32X4_ADD),
      ...set(ACC[k])];
    const body = [
      ...get(W), ...set(WP), ...i32(0), ...set(R),
      0x02, 0x40, 0x03, 0x40,                                     // block, loop (rows)
      ...get(R), ...get(ROWS), 0x4f, 0x0d, 1,                     // r >= rows: done
      ...ACC.flatMap((a) => [0x43, 0, 0, 0, 0, ...simd(F32X4_SPLAT), ...set(a)]),
      ...get(X), ...set(XP), ...i32(0), ...set(C),
      0x02, 0x40, 0x03, 0x40,                                     // block, loop (columns)
      ...get(C), ...get(STRIDE), 0x4f, 0x0d, 1,                   // c >= stride: row done
      ...mac(0), ...mac(1), ...mac(2), ...mac(3),
      ...get(WP), ...i32(64), 0x6a, ...set(WP),
      ...get(XP), ...i32(64), 0x6a, ...set(XP),
      ...get(C), ...i32(LANES), 0x6a, ...set(C),
      0x0c, 0, 0x0b, 0x0b,                                        // br loop; end, end
      ...get(ACC[0]), ...get(ACC[1]), ...simd(F32X4_ADD),
      ...get(ACC[2]), ...get(ACC[3]), ...simd(F32X4_ADD), ...simd(F32X4_ADD), ...set(ACC[0]),
      ...get(OUT), ...get(R), ...i32(2), 0x74, 0x6a,              // &out[r]
      ...[0, 1, 2, 3].flatMap((lane) => [...get(ACC[0]), ...simd(F32X4_EXTRACT), lane]),
      0x92, 0x92, 0x92,                                           // the four lanes' sum
      0x38, 2, 0,                                                 // f32.store
      ...get(R), ...i32(1), 0x6a, ...set(R),
      0x0c, 0, 0x0b, 0x0b,                                        // br loop; end, end
      0x0b,                                                       // end of function
    ];
    const locals = [2, 4, 0x7f, 4, 0x7b];  // 4 i32, 4 v128
    const code = [...locals, ...body];
    const section = (id, bytes) => [id, ...uleb(bytes.length), ...bytes];
    const name = (s) => [s.length, ...Array.from(s, (ch) => ch.charCodeAt(0))];
    return new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      ...section(1, [1, 0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0]),     // type: 5 i32 -> ()
      ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x00, 1]),  // memory import
      ...section(3, [1, 0]),                                             // one function
      ...section(7, [1, ...name("matvec"), 0x00, 0]),                    // exported
      ...section(10, [1, ...uleb(code.length), ...code]),
    ]);
  }

  function uleb(v) {
    const out = [];
    do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; out.push(b); } while (v);
    return out;
  }

  function sleb(v) {
    const out = [];
    for (;;) {
      const b = v & 0x7f; v >>= 7;
      if ((v === 0 && !(b & 0x40)) || (v === -1 && (b & 0x40))) { out.push(b); return out; }
      out.push(b | 0x80);
    }
  }

  const padded = (cols) => Math.ceil(cols / LANES) * LANES;

  /* A kernel for matrices of the given shapes ([rows, cols] each), or null without SIMD.
     `pack(W, rows, cols)` copies a row-major Float32Array in and returns `(out, x) => void`,
     which adds W x to `out` (any array of `rows` numbers). */
  function create(shapes) {
    const bytes = moduleBytes();
    if (typeof WebAssembly !== "object" || !WebAssembly.validate(bytes)) return null;
    const floats = shapes.reduce((n, [rows, cols]) => n + (rows + 1) * padded(cols) + rows, 0);
    const memory = new WebAssembly.Memory({ initial: Math.ceil((floats * 4 + 64) / 65536) });
    const { matvec } = new WebAssembly.Instance(new WebAssembly.Module(bytes),
                                                { env: { memory } }).exports;
    const heap = new Float32Array(memory.buffer);
    let next = 0;  // in floats; every block starts 16-byte aligned (strides are multiples of 16)
    const take = (n) => { const at = next; next += padded(n); return at; };
    return {
      pack(W, rows, cols) {
        const stride = padded(cols), w = take(rows * stride), x = take(stride), out = take(rows);
        for (let r = 0; r < rows; r++) {
          heap.set(W.subarray(r * cols, (r + 1) * cols), w + r * stride);
        }
        const xs = heap.subarray(x, x + cols), outs = heap.subarray(out, out + rows);
        return (result, input) => {
          xs.set(input);
          matvec(w * 4, x * 4, out * 4, rows, stride);
          for (let r = 0; r < rows; r++) result[r] += outs[r];
        };
      },
    };
  }

  return { create };
})();
