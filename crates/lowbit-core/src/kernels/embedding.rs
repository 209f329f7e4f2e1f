//! Embedding lookup: rows of an f32 / f16 / bf16 table `[vocab, dim]` widened (exactly) to f32.

use super::{check_len, mul};
use crate::dtype::Float;
use crate::error::{bail, Error, ErrorKind, Result};

/// `out[t, :] = table[ids[t], :]`. An id >= vocab is an `InvalidArgument` error whose index is
/// the position in `ids`.
pub fn embedding<T: Float>(table: &[T], dim: usize, ids: &[u32], out: &mut [f32]) -> Result<()> {
    if dim == 0 || table.is_empty() || !table.len().is_multiple_of(dim) {
        bail!(LengthMismatch, "embedding table has {} elements, not a non-empty multiple of dim {dim}", table.len());
    }
    check_len("output", out.len(), mul(ids.len(), dim, "embedding output")?)?;
    let vocab = table.len() / dim;
    for (t, (&id, o)) in ids.iter().zip(out.chunks_mut(dim)).enumerate() {
        if id as usize >= vocab {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("token id {id} at position {t} is outside the vocabulary of {vocab}")).with_index(t));
        }
        for (o, v) in o.iter_mut().zip(&table[id as usize * dim..(id as usize + 1) * dim]) {
            *o = v.to_f32();
        }
    }
    Ok(())
}
