/**
 * The error bound of a 4-bit GEMV on integer activations (matmul4.wgsl INT_ACT, the CPU's
 * matmul4_int.rs) against the exact f32 product, derived as matmul4_int.rs derives it:
 *
 *   |Σ x·w − Σ d·q·(t / T)·absmax| <= Σ_k (d_c / 2)·|w_k| + Σ_k |d_c q_k|·absmax_b / (2T) + F
 *
 * with d_c = max|x| / 8191 over k's block of 32 activations (|x − d q| <= d / 2), the table
 * rounded to the nearest 1 / T (T = 8191, or 7168 for INT4, whose levels are then exact), and
 * F the f32 roundings of both sides: the exact kernel's k-term sum and the integer kernel's
 * per-32 conversion, scaling and sum, each term through at most k + 8 roundings of 2^-24, so
 * F <= (k + 8)·2^-23·S with S = Σ_k (|x_k| + d_c / 2)·(|w_k| + absmax_b / (2T)) (+ |bias|).
 */
const LEVELS = 8191;

/** One bound per output: x [k] (one row), deq the dequantized weight [n, k], absmax per block. */
export function intActivationBound(x: Float32Array, deq: Float32Array, absmax: Float32Array, blocksize: number, n: number, k: number, int4: boolean, bias?: Float32Array): Float64Array {
  const T = int4 ? 7168 : 8191;
  const d = new Float64Array(k / 32);
  for (let c = 0; c < k / 32; c++) {
    let m = 0;
    for (let i = 0; i < 32; i++) m = Math.max(m, Math.abs(x[c * 32 + i]!));
    d[c] = m / LEVELS;
  }
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let rounding = 0;
    let mag = bias ? Math.abs(bias[j]!) : 0;
    for (let t = 0; t < k; t++) {
      const w = Math.abs(deq[j * k + t]!);
      const dc = d[t >> 5]!;
      const table = absmax[Math.floor((j * k + t) / blocksize)]! / (2 * T);
      const xq = Math.abs(x[t]!) + dc / 2;
      rounding += (dc / 2) * w + xq * table;
      mag += xq * (w + table);
    }
    out[j] = rounding + (k + 8) * 2 ** -23 * mag;
  }
  return out;
}
