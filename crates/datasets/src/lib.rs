//! `datasets`: the data of the fdsm experiments as Candle tensors, loaded the way the papers'
//! reference code prepared it, and the checksummed downloads that fetch it.
//!
//! | dataset | loader | tensors |
//! | --- | --- | --- |
//! | MNIST, Fashion-MNIST | [`load_idx_dataset`] | `[N, 1, 28, 28]` `f32` in `[0, 1]`, labels `[N]` `u8` |
//! | CIFAR-10 (binary) | [`load_cifar10`] | `[N, 3, 32, 32]` `f32` in `[0, 1]` |
//! | SVHN (cropped) | [`load_svhn`] | `[N, 3, 32, 32]` `f32` in `[0, 1]` |
//! | ImageNet 32 x 32 (user-supplied) | [`load_imagenet32`] | `[N, 3, 32, 32]` `u8` |
//! | CelebA, aligned JPEGs (user-supplied) | [`load_celeba`] | `[N, 3, 64, 64]` `u8`, crop 140 |
//! | Frey face | [`load_frey_face`] | `[N, 560]` `f32` in `[0, 1]` (28 x 20 images), 1400 / 300 / 265 |
//! | Red / White Wine, Parkinsons | [`load_uci`] | whitened `[N, D]` `f64`, DKEF preprocessing |
//! | checkerboard, Gaussian mixtures | [`Checkerboard`], [`GaussianMixture`] | `[n, D]` `f64` |
//!
//! Files live in one data directory ([`resolve_data_dir`]: a `--data-dir` flag, else
//! `FDSM_DATA_DIR`, else the user cache directory), one folder per dataset. A missing file is a
//! [`DataError::Missing`] that says how to get it; corrupt files give [`DataError::Gzip`],
//! [`DataError::Format`], [`DataError::Csv`] or [`DataError::Checksum`], never a panic.
//! [`download::ensure_dataset`] (feature `download`, on by default) fetches from the canonical
//! URLs and mirrors, verifies SHA-256, resumes interrupted transfers and writes atomically.
//! [`Batcher`] gives seeded minibatches that are a pure function of the step, for exact resume.

mod batch;
mod celeba;
mod dirs;
#[cfg(feature = "download")]
pub mod download;
mod error;
pub mod gzip;
pub mod idx;
mod imagenet32;
mod images;
pub mod mat;
pub mod registry;
mod synthetic;
pub mod uci;

pub use batch::Batcher;
pub use celeba::{
    celeba_dir, celeba_files, celeba_split, check_celeba, crop_and_resize, load_celeba,
    CelebaOptions, CelebaSplits,
};
pub use dirs::{data_for_tests, data_required, resolve_data_dir, DATA_DIR_ENV, REQUIRE_DATA_ENV};
pub use error::{DataError, Result};
pub use imagenet32::{
    check_imagenet32, imagenet32_files, load_imagenet32, read_npz_array, NpyArray,
    IMAGENET32_TRAIN_ARCHIVES,
};
pub use images::{
    cifar10_files, load_cifar10, load_frey_face, load_idx_dataset, load_svhn, parse_cifar_batch,
    parse_frey, parse_svhn, FreyFace, IdxDataset, ImageSplits, LabeledImages, CIFAR_RECORD,
    FREY_SHAPE,
};
pub use registry::Dataset;
pub use synthetic::{Checkerboard, GaussianMixture, Toy2d};
pub use uci::{load_uci, TabularSplits, UciDataset, UciOptions};

/// Reads a whole file, mapping errors to [`DataError::Io`].
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
