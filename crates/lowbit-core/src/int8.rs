//! LLM.int8() vector-wise quantization (bitsandbytes `int8_vectorwise_quant`, spec §6).
//!
//! Rows are quantized independently: SCB[r] = max |A[r, :]| (f32), and
//! CB[r, j] = round_half_even(A[r, j] * (127 / SCB[r])) computed in f32, as bitsandbytes' CPU
//! backend does. Note that torch evaluates `127.0 / tensor` as `tensor.reciprocal() * 127.0`
//! (`Tensor.__rdiv__`), two roundings: the scale is f32(f32(1 / SCB) * 127), not f32(127 / SCB). With threshold > 0, entries with |a| >= threshold are outliers: they are left
//! out of the row absmax and quantized as 0, and (when there is more than one row) every column
//! that holds an outlier is zeroed in CB and reported, so the matmul can take those columns in
//! floating point. An all-zero row has SCB 0 and codes 0.

use crate::dtype::{numel, Float};
use crate::error::{bail, Error, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Int8Vectorwise {
    pub cb: Vec<i8>,
    pub scb: Vec<f32>,
    /// Column indices with at least one outlier (ascending); None when threshold == 0.
    pub outlier_cols: Option<Vec<u32>>,
}

pub fn vectorwise_quant<T: Float>(a: &[T], shape: &[usize], threshold: f32) -> Result<Int8Vectorwise> {
    if shape.is_empty() {
        bail!(InvalidArgument, "int8 vector-wise quantization needs at least a 1-D shape");
    }
    let n = numel(shape)?;
    if n != a.len() {
        bail!(LengthMismatch, "shape {shape:?} has {n} elements but the data has {}", a.len());
    }
    if n == 0 {
        bail!(EmptyTensor, "cannot quantize an empty tensor");
    }
    if !(threshold >= 0.0) || !threshold.is_finite() {
        bail!(InvalidArgument, "threshold must be a finite number >= 0, got {threshold}");
    }
    if let Some(i) = a.iter().position(|v| !v.to_f32().is_finite()) {
        return Err(Error::new(ErrorKind::NonFinite, format!("input element {i} is not finite")).with_index(i));
    }
    let cols = shape[shape.len() - 1];
    let rows = n / cols;
    let is_outlier = |v: f32| threshold > 0.0 && v.abs() >= threshold;
    let mut outlier_col = vec![false; cols];
    let mut scb = Vec::with_capacity(rows);
    let mut cb = Vec::with_capacity(n);
    for row in a.chunks(cols) {
        let mut m = 0f32;
        for (j, v) in row.iter().enumerate() {
            let v = v.to_f32();
            if is_outlier(v) {
                outlier_col[j] = true;
            } else {
                m = m.max(v.abs());
            }
        }
        scb.push(m);
        let s = (1.0f32 / m) * 127.0; // torch's `127.0 / row_stats` (see the module comment)
        cb.extend(row.iter().map(|v| {
            let v = v.to_f32();
            if is_outlier(v) || m == 0.0 {
                0
            } else {
                // |v * s| <= 127 up to one rounding, so the cast cannot saturate past 127.
                (v * s).round_ties_even() as i8
            }
        }));
    }
    let outlier_cols = (threshold > 0.0).then(|| (0..cols as u32).filter(|&j| outlier_col[j as usize]).collect::<Vec<u32>>());
    if rows > 1 {
        if let Some(oc) = &outlier_cols {
            for r in 0..rows {
                for &j in oc {
                    cb[r * cols + j as usize] = 0;
                }
            }
        }
    }
    Ok(Int8Vectorwise { cb, scb, outlier_cols })
}

/// W ≈ CB * SCB / 127, with bitsandbytes' constant f32(1/127) (spec §6.1).
pub fn vectorwise_dequant<O: Float>(cb: &[i8], scb: &[f32], cols: usize, out: &mut [O]) -> Result<()> {
    if cols == 0 || cb.len() % cols != 0 || scb.len() != cb.len() / cols || out.len() != cb.len() {
        bail!(LengthMismatch, "CB ({}), SCB ({}) and output ({}) disagree for rows of {cols}", cb.len(), scb.len(), out.len());
    }
    const INV127: f32 = 7.874015718698502e-3;
    for ((row, o), &s) in cb.chunks(cols).zip(out.chunks_mut(cols)).zip(scb) {
        for (v, &c) in o.iter_mut().zip(row) {
            *v = O::from_f32(c as f32 * s * INV127);
        }
    }
    Ok(())
}
