//! Kernel layouts read from the WGSL with naga, as the TypeScript host reads them at build time
//! (scripts/gen-shaders.mjs, ts/backends/webgpu/layout.ts): the uniform struct's fields (offset,
//! scalar type, 32-bit words), every binding's variable name -> @binding, and the bindings each
//! entry point uses. Drivers fill uniforms by field name ([`Params`]) and bind buffers by
//! variable name (`Gpu::step`); a field or binding the WGSL does not have, or one it needs that
//! the driver leaves out, is an `Err` at the call, so the WGSL is the one place a layout is written.
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    U32,
    I32,
    F32,
}

/// One field of the uniform struct.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// Byte offset.
    pub offset: u32,
    pub scalar: Scalar,
    /// 32-bit words (1 for a scalar).
    pub words: u32,
}

/// The uniform block of a module: its variable name, size in bytes and fields in order.
#[derive(Debug, Clone)]
pub struct Uniform {
    pub name: String,
    pub size: u32,
    pub fields: Vec<Field>,
}

/// What one preprocessed module (file + defines) declares.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub uniform: Option<Uniform>,
    /// Variable name -> @binding (group 0).
    pub bindings: BTreeMap<String, u32>,
    /// Entry point -> the bindings it statically uses (what wgpu's derived layout has).
    pub entries: BTreeMap<String, BTreeSet<String>>,
}

fn scalar_of(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Result<Scalar, String> {
    let s = match &module.types[ty].inner {
        naga::TypeInner::Scalar(s) | naga::TypeInner::Vector { scalar: s, .. } => *s,
        naga::TypeInner::Array { base, .. } => return scalar_of(module, *base),
        other => return Err(format!("uniform field of type {other:?}: the hosts fill 32-bit words")),
    };
    match (s.kind, s.width) {
        (naga::ScalarKind::Uint, 4) => Ok(Scalar::U32),
        (naga::ScalarKind::Sint, 4) => Ok(Scalar::I32),
        (naga::ScalarKind::Float, 4) => Ok(Scalar::F32),
        _ => Err(format!("uniform field scalar {s:?}: the hosts fill 32-bit words")),
    }
}

impl Layout {
    /// The layout of a validated module.
    pub fn reflect(module: &naga::Module, info: &naga::valid::ModuleInfo) -> Result<Layout, String> {
        let mut layout = Layout::default();
        for (_, var) in module.global_variables.iter() {
            let (Some(binding), Some(name)) = (&var.binding, &var.name) else { continue };
            if binding.group != 0 {
                return Err(format!("{name} is in group {}; the hosts bind group 0 only", binding.group));
            }
            if layout.bindings.insert(name.clone(), binding.binding).is_some() {
                return Err(format!("two bindings named {name}"));
            }
            if var.space != naga::AddressSpace::Uniform {
                continue;
            }
            if layout.uniform.is_some() {
                return Err(format!("a second uniform {name}: the hosts fill one Params block"));
            }
            let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
                return Err(format!("uniform {name} is not a struct"));
            };
            let mut fields = Vec::new();
            for m in members {
                let fname = m.name.clone().ok_or("a uniform member without a name")?;
                let bytes = module.types[m.ty].inner.size(module.to_ctx());
                fields.push(Field { scalar: scalar_of(module, m.ty).map_err(|e| format!("{name}.{fname}: {e}"))?, name: fname, offset: m.offset, words: bytes / 4 });
            }
            layout.uniform = Some(Uniform { name: name.clone(), size: *span, fields });
        }
        for (i, ep) in module.entry_points.iter().enumerate() {
            let used = info.get_entry_point(i);
            let names = module
                .global_variables
                .iter()
                .filter(|(h, v)| v.binding.is_some() && !used[*h].is_empty())
                .filter_map(|(_, v)| v.name.clone())
                .collect();
            layout.entries.insert(ep.name.clone(), names);
        }
        Ok(layout)
    }

    /// The bindings `entry` uses, or an error naming the entry points there are.
    pub fn entry(&self, entry: &str) -> Result<&BTreeSet<String>, String> {
        self.entries.get(entry).ok_or_else(|| format!("no entry point {entry} (there are {:?})", self.entries.keys().collect::<Vec<_>>()))
    }

    /// `(binding number, buffer)` for `entry` from buffers by variable name: exactly the
    /// bindings the entry point uses.
    pub fn bind<T: Copy>(&self, entry: &str, given: &[(&str, T)]) -> Result<Vec<(u32, T)>, String> {
        let used = self.entry(entry)?;
        let mut out = Vec::new();
        for (name, buf) in given {
            let b = self.bindings.get(*name).ok_or_else(|| format!("no binding '{name}'"))?;
            if !used.contains(*name) {
                return Err(format!("{entry} does not use binding '{name}'"));
            }
            out.push((*b, *buf));
        }
        if let Some(missing) = used.iter().find(|u| !given.iter().any(|(n, _)| n == *u)) {
            return Err(format!("{entry}: binding '{missing}' is not given"));
        }
        Ok(out)
    }
}

/// A uniform block filled by field name: `Params::new(&layout).u("rows", 3).f("eps", 1e-5).bytes()?`.
/// Every field but the pad fields (a leading `_`, zero) must be set; a name the struct does not
/// have, a value that does not fit, or a missing field makes `bytes` an `Err`.
pub struct Params<'a> {
    uniform: Option<&'a Uniform>,
    words: Vec<u32>,
    set: BTreeSet<String>,
    error: Option<String>,
}

impl<'a> Params<'a> {
    pub fn new(layout: &'a Layout) -> Params<'a> {
        let size = layout.uniform.as_ref().map_or(0, |u| u.size as usize / 4);
        Params { uniform: layout.uniform.as_ref(), words: vec![0; size], set: BTreeSet::new(), error: None }
    }

    fn put(mut self, name: &str, scalar: Scalar, values: &[u32]) -> Params<'a> {
        if self.error.is_some() {
            return self;
        }
        let Some(u) = self.uniform else {
            self.error = Some(format!("no uniform (setting '{name}')"));
            return self;
        };
        let Some(f) = u.fields.iter().find(|f| f.name == name) else {
            self.error = Some(format!("uniform {} has no field '{name}'", u.name));
            return self;
        };
        if name.starts_with('_') {
            self.error = Some(format!("'{name}' is padding; leave it out"));
        } else if f.scalar != scalar {
            self.error = Some(format!("field '{name}' is {:?}, set as {scalar:?}", f.scalar));
        } else if f.words as usize != values.len() {
            self.error = Some(format!("field '{name}' has {} words, given {}", f.words, values.len()));
        } else if !self.set.insert(name.to_string()) {
            self.error = Some(format!("field '{name}' set twice"));
        } else {
            let at = f.offset as usize / 4;
            self.words[at..at + values.len()].copy_from_slice(values);
        }
        self
    }

    /// A u32 field (Err later if `v` does not fit).
    pub fn u(self, name: &str, v: usize) -> Params<'a> {
        match u32::try_from(v) {
            Ok(w) => self.put(name, Scalar::U32, &[w]),
            Err(_) => Params { error: Some(format!("field '{name}': {v} does not fit u32")), ..self },
        }
    }

    /// A u32 flag field: 1 or 0.
    pub fn flag(self, name: &str, v: bool) -> Params<'a> {
        self.put(name, Scalar::U32, &[v as u32])
    }

    pub fn f(self, name: &str, v: f32) -> Params<'a> {
        self.put(name, Scalar::F32, &[v.to_bits()])
    }

    /// An f32 array / vector field.
    pub fn fs(self, name: &str, v: &[f32]) -> Params<'a> {
        let w: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        self.put(name, Scalar::F32, &w)
    }

    /// A u32 array / vector field.
    pub fn us(self, name: &str, v: &[u32]) -> Params<'a> {
        self.put(name, Scalar::U32, v)
    }

    /// The block's bytes, or what is wrong with it.
    pub fn bytes(self) -> Result<Vec<u8>, String> {
        if let Some(e) = self.error {
            return Err(format!("uniform: {e}"));
        }
        let u = self.uniform.ok_or("no uniform")?;
        if let Some(missing) = u.fields.iter().find(|f| !f.name.starts_with('_') && !self.set.contains(&f.name)) {
            return Err(format!("uniform {}: field '{}' is not set", u.name, missing.name));
        }
        Ok(self.words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }
}
