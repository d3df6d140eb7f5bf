//! Test helpers: the data directory holding a needed file, or a printed reason to skip.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$FDSM_DATA_DIR` (else `../shared/data` beside the checkout) when it holds `needed`;
/// otherwise prints why the calling test is skipped and returns `None`.
pub fn data_dir_with(needed: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(datasets::DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join(needed).is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {needed} is not in {} (set {})",
            dir.display(),
            datasets::DATA_DIR_ENV
        );
        None
    }
}
