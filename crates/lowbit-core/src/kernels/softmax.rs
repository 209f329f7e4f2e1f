//! Numerically stable softmax in f32 (scalar): `exp(x - max) / sum`, the sum in index order.
//! A row whose maximum is -inf (everything masked) becomes all zeros rather than torch's NaN;
//! a NaN anywhere in a row makes the row NaN.

use crate::error::{bail, Result};

/// Softmax of one row, in place.
pub fn softmax_inplace(x: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for &v in x.iter() {
        if v > max || v.is_nan() {
            max = v;
        }
    }
    if max == f32::NEG_INFINITY {
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax of each row of `x` (`[rows, cols]`), in place.
pub fn softmax_rows(x: &mut [f32], cols: usize) -> Result<()> {
    if cols == 0 || !x.len().is_multiple_of(cols) {
        bail!(LengthMismatch, "softmax over rows of {cols} but the data has {} elements", x.len());
    }
    x.chunks_mut(cols).for_each(softmax_inplace);
    Ok(())
}
