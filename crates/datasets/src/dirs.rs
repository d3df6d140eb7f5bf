//! The one data-directory rule used by every binary, test and task: an explicit path (a
//! `--data-dir` flag), else the `FDSM_DATA_DIR` environment variable, else the user cache
//! directory (`$XDG_CACHE_HOME/fdsm`, `~/.cache/fdsm`, `~/Library/Caches/fdsm` on macOS,
//! `%LOCALAPPDATA%\fdsm` on Windows).

use std::path::{Path, PathBuf};

/// The environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "FDSM_DATA_DIR";

/// Resolves the data directory: `flag`, else [`DATA_DIR_ENV`], else the user cache directory,
/// else `./data` when no home directory is known.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    user_cache_dir()
        .map(|d| d.join("fdsm"))
        .unwrap_or_else(|| PathBuf::from("data"))
}

fn user_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(target_os = "windows") {
        return env("LOCALAPPDATA");
    }
    if cfg!(target_os = "macos") {
        return env("HOME").map(|h| h.join("Library").join("Caches"));
    }
    env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
}

/// The environment variable that turns a missing dataset file into a test failure: when it is
/// set to a non-empty value other than `0`, [`data_for_tests`] refuses to let a test skip.
/// CI sets it wherever the genuine data is present.
pub const REQUIRE_DATA_ENV: &str = "FDSM_REQUIRE_DATA";

/// Whether [`REQUIRE_DATA_ENV`] is set (to a non-empty value other than `0`).
pub fn data_required() -> bool {
    std::env::var_os(REQUIRE_DATA_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The data directory a test should read `needed` (a path relative to it) from:
/// [`DATA_DIR_ENV`], else `fallback`. `Ok(None)` (after printing why on stderr) when the file
/// is absent and [`REQUIRE_DATA_ENV`] is unset, so the test can skip; an error naming the file,
/// the directory and the variable when it is absent although [`REQUIRE_DATA_ENV`] is set.
///
/// # Errors
/// [`crate::DataError::Missing`] when the file is required and absent.
pub fn data_for_tests(needed: &str, fallback: &Path) -> Result<Option<PathBuf>, crate::DataError> {
    let dir = std::env::var_os(DATA_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| fallback.to_path_buf());
    if dir.join(needed).exists() {
        return Ok(Some(dir));
    }
    if data_required() {
        return Err(crate::DataError::Missing {
            dataset: "test data",
            path: dir.join(needed),
            hint: format!(
                "{REQUIRE_DATA_ENV} is set, so tests that need it fail instead of skipping: \
                 point {DATA_DIR_ENV} at a directory that holds it (`cargo xtask download all`)"
            ),
        });
    }
    eprintln!(
        "skipped: {needed} is not in {} (set {DATA_DIR_ENV}; {REQUIRE_DATA_ENV}=1 makes this a failure)",
        dir.display()
    );
    Ok(None)
}
