//! wasm32 SIMD128 versions of the hot loops. Each function here has a scalar reference in the
//! module that calls it, and the wasm test suite checks the two against each other.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod wasm128;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod panel;
