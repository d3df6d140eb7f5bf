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
