//! safetensors header parsing (in progress).
