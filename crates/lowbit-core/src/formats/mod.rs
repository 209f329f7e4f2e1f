//! Checkpoint formats, one file each. Parsers take bytes a caller has read (a header, a
//! tensor's data) and the file's total length, validate every size and offset against it
//! before allocating anything, and return typed errors (`MalformedFile`, `NeedMoreData`, ...).

pub mod gguf;
pub mod safetensors;
