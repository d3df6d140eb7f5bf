//! Errors of the training library: each says what failed and, where it matters, which
//! checkpoint is intact and what to do.

use std::path::{Path, PathBuf};

/// Everything that can stop training, sampling or evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Training produced a non-finite or exploding loss or gradient.
    #[error("training diverged at step {step}: {what}. {kept}")]
    Diverged {
        /// The step whose loss or gradient was bad.
        step: u64,
        /// What was bad.
        what: String,
        /// Which checkpoint is intact.
        kept: String,
    },
    /// A checkpoint is unreadable or belongs to another model or run.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A setting is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Result alias of the training library.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Wraps an I/O error with the path it concerns.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
