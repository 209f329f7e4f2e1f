//! Host-side drivers for the kernels in shaders/ (filled in with the shaders).
use crate::Gpu;

pub fn bench(_gpu: &Gpu, _quick: bool, _copy_bw: f64) -> Result<(), String> {
    Ok(())
}
