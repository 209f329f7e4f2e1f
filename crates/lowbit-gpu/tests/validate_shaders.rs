//! Every kernel module in shaders/ preprocesses and validates with naga (what wgpu and Deno run
//! before creating a pipeline) in each variant a host can ask for: no defines, each define
//! alone, and each define together with DOT4 (the packed-dot language feature). Runs without a
//! GPU.
use lowbit_gpu::{defines_used, kernel_files, load, validate};

#[test]
fn every_kernel_module_validates_in_every_variant() {
    let files = kernel_files().unwrap();
    assert!(files.len() >= 8, "expected the kernel families in shaders/, found {files:?}");
    let mut checked = 0;
    for f in &files {
        let defines: Vec<String> = defines_used(f).unwrap().into_iter().collect();
        let mut variants: Vec<Vec<&str>> = vec![vec![]];
        for d in &defines {
            variants.push(vec![d.as_str()]);
            if d != "DOT4" && defines.iter().any(|x| x == "DOT4") {
                variants.push(vec![d.as_str(), "DOT4"]);
            }
        }
        for v in variants {
            let src = load(f, &v).unwrap_or_else(|e| panic!("{f} {v:?}: {e}"));
            let module = validate(&src).unwrap_or_else(|e| panic!("{f} with defines {v:?} does not validate:\n{e}"));
            assert!(!module.entry_points.is_empty(), "{f} {v:?}: no entry points");
            checked += 1;
        }
    }
    assert!(checked >= files.len());
}

#[test]
fn preprocessor_rejects_malformed_directives() {
    // load() reports unknown directives and unbalanced blocks instead of emitting bad WGSL;
    // exercised through a temporary copy so that the real shaders stay untouched.
    let dir = std::env::temp_dir().join(format!("lowbit-gpu-pp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("#ifdef A\nfn f() {}\n", "without #endif"),
        ("#endif\n", "without #ifdef"),
        ("#ifdef A\n#else\n#else\n#endif\n", "second #else"),
        ("#pragma once\n", "unknown preprocessor line"),
        ("#include \"../x.wgsl\"\n", "bad #include"),
    ];
    for (text, want) in cases {
        let e = lowbit_gpu::preprocess::expand_text("t.wgsl", text, &[], &|_| Err("no includes here".into())).unwrap_err();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    let ok = lowbit_gpu::preprocess::expand_text("t.wgsl", "#ifdef A\na\n#else\nb\n#endif\n#ifndef A\nc\n#endif\n", &["A"], &|_| Err(String::new())).unwrap();
    assert_eq!(ok, "a\n");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn matmul4_validates_in_every_combination_of_its_defines() {
    // its defines are independent switches that hosts combine (gemv4 with GATE_UP, SUBGROUPS and
    // NESTED_ABSMAX at once), so every subset is a variant a host can ask for
    let defines: Vec<String> = defines_used("matmul4.wgsl").unwrap().into_iter().collect();
    assert!(defines.iter().any(|d| d == "NESTED_ABSMAX"), "{defines:?}");
    for mask in 0u32..(1 << defines.len()) {
        let v: Vec<&str> = defines.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, d)| d.as_str()).collect();
        let src = load("matmul4.wgsl", &v).unwrap_or_else(|e| panic!("matmul4.wgsl {v:?}: {e}"));
        validate(&src).unwrap_or_else(|e| panic!("matmul4.wgsl with defines {v:?} does not validate:\n{e}"));
    }
}
