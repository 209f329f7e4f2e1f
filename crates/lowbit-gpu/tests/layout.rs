//! Kernel layouts reflected with naga (src/layout.rs): uniform fields by name at the offsets the
//! WGSL declares, bindings by variable name, and an `Err` for a field or binding the WGSL does
//! not have or one the driver leaves out. Runs without a GPU.
use lowbit_gpu::{load, validate_info, Layout, Params};

fn layout(file: &str, defines: &[&str]) -> Layout {
    let (module, info) = validate_info(&load(file, defines).unwrap()).unwrap();
    Layout::reflect(&module, &info).unwrap()
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn uniform_fields_are_filled_by_name_at_the_wgsl_offsets() {
    let norm = layout("norm.wgsl", &[]);
    let b = Params::new(&norm).u("rows", 3).u("hidden", 64).f("eps", 1e-5).flag("has_bias", true).bytes().unwrap();
    assert_eq!(words(&b), vec![3, 64, 1e-5f32.to_bits(), 1]);
    // matmul4: 12 words (a pad among them), the 16 code values, and with QKV four more
    let code: Vec<f32> = (0..16).map(|i| i as f32 / 8.0 - 1.0).collect();
    let fill = |l: &Layout| Params::new(l).u("m", 1).u("k", 64).u("n_total", 8).u("n0", 0).u("n_part", 8).flag("has_bias", false).u("flat_base", 0).u("block_base", 0).u("block_shift", 6).u("g4_lanes", 8).u("q_at", 7).fs("code", &code).bytes();
    let base = layout("matmul4.wgsl", &[]);
    let w = words(&fill(&base).unwrap());
    assert_eq!(w.len(), 28);
    assert_eq!((w[10], w[11], f32::from_bits(w[12]), f32::from_bits(w[27])), (7, 0, -1.0, 0.875));
    let qkv = layout("matmul4.wgsl", &["QKV"]);
    assert!(fill(&qkv).unwrap_err().contains("'n_k' is not set"));
}

#[test]
fn unknown_missing_padding_and_mistyped_fields_are_errors() {
    let norm = layout("norm.wgsl", &[]);
    fn full(p: Params) -> Params {
        p.u("rows", 1).u("hidden", 2).f("eps", 0.1)
    }
    assert!(full(Params::new(&norm)).bytes().unwrap_err().contains("'has_bias' is not set"));
    assert!(full(Params::new(&norm)).flag("has_bias", false).u("cols", 2).bytes().unwrap_err().contains("no field 'cols'"));
    assert!(Params::new(&norm).f("rows", 1.0).bytes().unwrap_err().contains("is U32"));
    assert!(full(Params::new(&norm)).flag("has_bias", false).u("rows", 1).bytes().unwrap_err().contains("set twice"));
    let sample = layout("sample.wgsl", &[]);
    assert!(Params::new(&sample).u("rows", 1).u("cols", 2).u("_pad0", 0).bytes().unwrap_err().contains("padding"));
}

#[test]
fn bindings_go_by_name_to_what_the_entry_point_uses() {
    let norm = layout("norm.wgsl", &[]);
    let mut got = norm.bind("rms_norm", &[("p", 'p'), ("x", 'x'), ("w", 'w'), ("y", 'y')]).unwrap();
    got.sort();
    assert_eq!(got, vec![(0, 'p'), (1, 'x'), (2, 'w'), (4, 'y')]);
    assert!(norm.bind("rms_norm", &[("p", 'p'), ("x", 'x'), ("w", 'w')]).unwrap_err().contains("'y' is not given"));
    assert!(norm.bind("rms_norm", &[("p", 'p'), ("x", 'x'), ("w", 'w'), ("y", 'y'), ("b", 'b')]).unwrap_err().contains("does not use binding 'b'"));
    assert!(norm.bind("rms_norm", &[("bias", 'b')]).unwrap_err().contains("no binding 'bias'"));
    assert!(norm.bind::<char>("rms", &[]).unwrap_err().contains("no entry point"));
    // defines change what an entry point reads: F16_COMPUTE's gemv_rows takes the half weights as wt_h
    let f16 = layout("matmul_dense.wgsl", &["WEIGHT_F16", "F16_COMPUTE"]);
    assert!(f16.entries["gemv_rows"].contains("wt_h") && !f16.entries["gemv_rows"].contains("wt"));
}

#[test]
fn every_kernel_module_has_a_layout_the_hosts_can_fill_in_every_define_set() {
    // the rules shaders/README.md states (one uniform struct of 32-bit fields in group 0, unique
    // binding names, fields stable across defines), for every subset of each file's defines
    use lowbit_gpu::{defines_used, kernel_files};
    use std::collections::BTreeMap;
    let mut modules = 0;
    for f in kernel_files().unwrap() {
        let defines: Vec<String> = defines_used(&f).unwrap().into_iter().collect();
        let mut fields: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        let mut bindings: BTreeMap<String, u32> = BTreeMap::new();
        for mask in 0u32..(1 << defines.len()) {
            let set: Vec<&str> = defines.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, d)| d.as_str()).collect();
            let l = layout(&f, &set);
            let u = l.uniform.as_ref().unwrap_or_else(|| panic!("{f} {set:?}: no uniform"));
            assert_eq!(u.name, "p", "{f}: the uniform's variable");
            for fl in &u.fields {
                let old = *fields.entry(fl.name.clone()).or_insert((fl.offset, fl.words));
                assert_eq!(old, (fl.offset, fl.words), "{f} {set:?}: field {} moves with the defines", fl.name);
            }
            for (name, b) in &l.bindings {
                assert_eq!(*bindings.entry(name.clone()).or_insert(*b), *b, "{f} {set:?}: {name} changes its @binding");
            }
            assert!(!l.entries.is_empty(), "{f} {set:?}: no entry points");
            modules += 1;
        }
    }
    assert!(modules >= 60, "{modules} modules");
}
