//! Errors of the experiment library: each says what failed and, where it matters, what was
//! kept (the last good checkpoint) and what to do.

use std::path::PathBuf;

/// Everything that can stop an experiment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExpError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] datasets::DataError),
    /// Training, sampling or evaluation failed (divergence, a checkpoint of another run, ...).
    #[error(transparent)]
    Train(#[from] train::TrainError),
    /// A sample-quality measure failed (feature network, statistics, bad samples).
    #[error(transparent)]
    Quality(#[from] sample_quality::QualityError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint is unreadable or belongs to another model.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A child process failed.
    #[error("{0}")]
    Child(String),
    /// Drawing a figure failed.
    #[error("plotting {path}: {problem}")]
    Plot {
        /// The figure file.
        path: PathBuf,
        /// What failed.
        problem: String,
    },
}

/// Result alias of the experiment library.
pub type Result<T> = std::result::Result<T, ExpError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ExpError + '_ {
    move |source| ExpError::Io {
        path: path.to_path_buf(),
        source,
    }
}
