//! The shaders' four preprocessor lines (shaders/README.md): `#include "file.wgsl"` (once per
//! module), `#ifdef NAME` / `#ifndef NAME`, `#else`, `#endif`. The TypeScript host
//! (scripts/gen-shaders.mjs) implements the same rules; both must give naga-valid WGSL.
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The folder with the .wgsl files (the repository's shaders/).
pub fn shaders_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders")
}

/// Every kernel module: the shaders/*.wgsl files no other file includes (common.wgsl and the
/// like are pieces, only valid inside the modules that include them).
pub fn kernel_files() -> Result<Vec<String>, String> {
    let dir = shaders_dir();
    let mut all = Vec::new();
    for e in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let name = e.map_err(|e| e.to_string())?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".wgsl") {
            all.push(name);
        }
    }
    let mut included = BTreeSet::new();
    for f in &all {
        for line in read(f)?.lines() {
            if let Some(inc) = line.trim().strip_prefix("#include ") {
                included.insert(include_name(inc, f)?);
            }
        }
    }
    let mut out: Vec<String> = all.into_iter().filter(|f| !included.contains(f)).collect();
    out.sort();
    Ok(out)
}

/// Defines a file's `#ifdef` / `#ifndef` lines test (with its includes), sorted.
pub fn defines_used(file: &str) -> Result<BTreeSet<String>, String> {
    let mut set = BTreeSet::new();
    let mut seen = BTreeSet::new();
    collect_defines(file, &mut set, &mut seen)?;
    Ok(set)
}

fn collect_defines(file: &str, set: &mut BTreeSet<String>, seen: &mut BTreeSet<String>) -> Result<(), String> {
    if !seen.insert(file.to_string()) {
        return Ok(());
    }
    let text = read(file)?;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("#ifdef ").or_else(|| t.strip_prefix("#ifndef ")) {
            set.insert(name.trim().to_string());
        } else if let Some(inc) = t.strip_prefix("#include ") {
            collect_defines(&include_name(inc, file)?, set, seen)?;
        }
    }
    Ok(())
}

fn read(file: &str) -> Result<String, String> {
    let path = shaders_dir().join(file);
    fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn include_name(arg: &str, from: &str) -> Result<String, String> {
    let a = arg.trim();
    if a.len() >= 2 && a.starts_with('"') && a.ends_with('"') && !a[1..a.len() - 1].contains('/') {
        Ok(a[1..a.len() - 1].to_string())
    } else {
        Err(format!("{from}: bad #include {a} (expected \"file.wgsl\" in the same folder)"))
    }
}

/// The WGSL of `file` with `defines` set.
pub fn load(file: &str, defines: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    let mut included = BTreeSet::new();
    expand(file, defines, &mut out, &mut included)?;
    Ok(out)
}

fn expand(file: &str, defines: &[&str], out: &mut String, included: &mut BTreeSet<String>) -> Result<(), String> {
    included.insert(file.to_string());
    // Live #include lines become marker lines, expanded here in order, each file once.
    const MARKER: &str = "\u{0}include:";
    let body = expand_text(file, &read(file)?, defines, &|name| Ok(format!("{MARKER}{name}\n")))?;
    for line in body.lines() {
        match line.strip_prefix(MARKER) {
            Some(name) if included.contains(name) => {}
            Some(name) => expand(name, defines, out, included)?,
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(())
}

/// Resolves the directives of one file's `text`: kept lines, and for each live `#include` the
/// text `include(name)` gives. Errors name the file and line.
pub fn expand_text(file: &str, text: &str, defines: &[&str], include: &dyn Fn(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::new();
    // One entry per open #ifdef: (this branch is kept, its #else was seen); a line is emitted
    // when every enclosing branch is kept.
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let live = |s: &Vec<(bool, bool)>| s.iter().all(|&(keep, _)| keep);
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let at = || format!("{file}:{}", i + 1);
        if let Some(name) = t.strip_prefix("#ifdef ") {
            stack.push((defines.contains(&name.trim()), false));
        } else if let Some(name) = t.strip_prefix("#ifndef ") {
            stack.push((!defines.contains(&name.trim()), false));
        } else if t == "#else" {
            let top = stack.last_mut().ok_or_else(|| format!("{}: #else without #ifdef", at()))?;
            if top.1 {
                return Err(format!("{}: second #else", at()));
            }
            *top = (!top.0, true);
        } else if t == "#endif" {
            stack.pop().ok_or_else(|| format!("{}: #endif without #ifdef", at()))?;
        } else if let Some(inc) = t.strip_prefix("#include ") {
            let name = include_name(inc, file)?;
            if live(&stack) {
                out.push_str(&include(&name)?);
            }
        } else if t.starts_with('#') {
            return Err(format!("{}: unknown preprocessor line '{t}'", at()));
        } else if live(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(format!("{file}: {} #ifdef without #endif", stack.len()));
    }
    Ok(out)
}

/// Parses and validates WGSL with naga (what wgpu runs before creating a pipeline), with every
/// capability a WebGPU adapter may expose, so that optional features still validate.
pub fn validate(source: &str) -> Result<naga::Module, String> {
    Ok(validate_info(source)?.0)
}

/// [`validate`], with naga's analysis of the module (which globals each entry point uses).
pub fn validate_info(source: &str) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
    let info = v.validate(&module).map_err(|e| e.emit_to_string(source))?;
    Ok((module, info))
}
