//! Guards the models against Candle ops whose higher-order backward is broken (see
//! `layers::FORBIDDEN_OPS`): scans every source file of this crate and fails
//! on a call to one of them outside comments.

use std::path::{Path, PathBuf};

use layers::FORBIDDEN_OPS;

/// Every `(file, line number, pattern, reason)` where a forbidden op is called.
fn violations(source: &str, file: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (pattern, reason) in FORBIDDEN_OPS {
            if code.contains(pattern) {
                found.push(format!(
                    "{}:{}: `{pattern}` ({reason})",
                    file.display(),
                    n + 1
                ));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
    {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_scanner_detects_forbidden_calls() {
    let sample = "let y = x.max_pool2d(2)?;\nlet z = candle_nn::ops::softmax_last_dim(&y)?; // ok in a comment: conv1d";
    let found = violations(sample, Path::new("sample.rs"));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(violations("// x.max_pool2d(2)", Path::new("c.rs")).is_empty());
    assert!(violations("let y = layers::avg_pool2d(&x, 2)?;", Path::new("ok.rs")).is_empty());
    // The layers crate's own bilinear upsampling is a free function; Candle's is a method.
    assert!(violations(
        "let y = upsample_bilinear2d(&x, (4, 4), true)?;",
        Path::new("ok.rs")
    )
    .is_empty());
    assert_eq!(
        violations(
            "let y = x.upsample_bilinear2d(4, 4, true)?;",
            Path::new("bad.rs")
        )
        .len(),
        1
    );
    assert_eq!(
        violations("let y = x.avg_pool2d(2)?;", Path::new("bad.rs")).len(),
        1
    );
}

#[test]
fn models_use_no_op_with_a_broken_higher_order_backward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        !files.is_empty(),
        "no sources found under {}",
        src.display()
    );
    let found: Vec<String> = files
        .iter()
        .flat_map(|f| violations(&std::fs::read_to_string(f).unwrap(), f))
        .collect();
    assert!(
        found.is_empty(),
        "ops with broken higher-order backward in models:\n{}",
        found.join("\n")
    );
}
