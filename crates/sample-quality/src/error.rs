//! Typed errors of the sample-quality measures: each names the problem (shapes, too few
//! samples, non-finite features, an unreadable statistics file).

use std::path::PathBuf;

/// Everything that can go wrong when measuring sample quality.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QualityError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Two feature sets or statistics do not have the same dimension, or features are not a
    /// `[N, D]` matrix.
    #[error("shape: {0}")]
    Shape(String),
    /// Too few samples for the estimate.
    #[error("{what} needs at least {needed} samples, got {got}")]
    TooFewSamples {
        /// The estimate.
        what: &'static str,
        /// How many it needs.
        needed: usize,
        /// How many there are.
        got: usize,
    },
    /// A feature or statistic is NaN or infinite.
    #[error("{0} holds a non-finite value")]
    NonFinite(String),
    /// Images a feature network cannot take (shape, range).
    #[error("input: {0}")]
    Input(String),
    /// A data set could not be read.
    #[error(transparent)]
    Data(#[from] datasets::DataError),
    /// Training the feature network failed.
    #[error(transparent)]
    Train(#[from] train::TrainError),
    /// The eigendecomposition of a covariance did not converge.
    #[error("the eigendecomposition of {0} did not converge")]
    Eigen(&'static str),
    /// A statistics file is missing, unreadable or of another kind.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, QualityError>;
