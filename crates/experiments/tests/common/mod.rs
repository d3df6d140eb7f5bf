//! Test helpers: the data directory holding a needed file, or a printed reason to skip (a
//! failure when `FDSM_REQUIRE_DATA` is set, as in CI).
#![allow(dead_code)]

use std::path::PathBuf;

/// `$FDSM_DATA_DIR` (else `../shared/data` beside the checkout) when it holds `needed`;
/// otherwise prints why the calling test is skipped and returns `None`, or panics with the
/// missing path when `FDSM_REQUIRE_DATA` says the data must be there.
pub fn data_dir_with(needed: &str) -> Option<PathBuf> {
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    datasets::data_for_tests(needed, &fallback).unwrap_or_else(|e| panic!("{e}"))
}
