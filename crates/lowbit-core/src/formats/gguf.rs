//! GGUF v2/v3 parsing and dequantization (in progress).
