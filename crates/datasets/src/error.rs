//! Typed errors of the `datasets` crate: each names the file and the problem, and where it helps
//! says what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong when locating, downloading or parsing a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A dataset file is not in the data directory.
    #[error("{dataset}: {path} is missing. {hint}")]
    Missing {
        /// Dataset name.
        dataset: &'static str,
        /// The expected location.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A gzip stream is truncated or corrupt.
    #[error("{path}: not a valid gzip stream ({source}); the file is truncated or corrupt: delete it and download it again")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// The bytes do not follow the file format (IDX, CIFAR binary, MAT, ...).
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// A row of a delimited text file is malformed.
    #[error("{path}, line {line}: {problem}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },

    /// A file's SHA-256 differs from the published one.
    #[error("{path}: sha256 is {actual}, expected {expected}; the file is corrupt or a different version: delete it and download it again")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The published digest.
        expected: String,
        /// The digest of the file on disk.
        actual: String,
    },

    /// Every source of a download failed.
    #[error("could not download {file}:\n{attempts}\n{hint}")]
    Download {
        /// The file's path inside the data directory.
        file: String,
        /// One line per source tried, with its error.
        attempts: String,
        /// Where to put the file by hand.
        hint: String,
    },

    /// Files of a dataset could not be obtained from any source.
    #[error(
        "{count} file(s) could not be obtained:\n{files}\nWithout network: fetch each from its \
         URL on another machine and put it at the path shown, with that sha256. The data \
         directory is {} (set it with --data-dir or FDSM_DATA_DIR).",
        data_dir.display()
    )]
    Unavailable {
        /// How many.
        count: usize,
        /// One entry per file: path, checksum, URL and what each source answered.
        files: String,
        /// The data directory.
        data_dir: PathBuf,
    },

    /// A caller passed an unusable argument (unknown dataset, bad split sizes, ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// Building a tensor failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn format_err(path: &std::path::Path, problem: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}
