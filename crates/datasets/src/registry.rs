//! What every dataset consists of on disk and where it comes from: file paths inside the data
//! directory, the canonical URL and mirrors, and the published SHA-256 of each file.

use std::path::{Path, PathBuf};

use crate::dirs::DATA_DIR_ENV;
use crate::error::{DataError, Result};

/// A dataset that can be downloaded and loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// MNIST (LeCun et al. 1998).
    Mnist,
    /// Fashion-MNIST (Xiao et al. 2017).
    FashionMnist,
    /// CIFAR-10, binary version (Krizhevsky 2009).
    Cifar10,
    /// SVHN, cropped digits (Netzer et al. 2011).
    Svhn,
    /// UCI Wine Quality, red and white (Cortez et al. 2009).
    WineQuality,
    /// UCI Parkinsons telemonitoring (Tsanas et al. 2010).
    Parkinsons,
    /// Frey face (Roweis' data page).
    FreyFace,
    /// Not a data set: the InceptionV3 weights of FID (pytorch-fid's
    /// `pt_inception-2015-12-05`), kept in the data directory like one.
    FidInception,
}

impl Dataset {
    /// Every dataset.
    pub const ALL: [Dataset; 8] = [
        Dataset::Mnist,
        Dataset::FashionMnist,
        Dataset::Cifar10,
        Dataset::Svhn,
        Dataset::WineQuality,
        Dataset::Parkinsons,
        Dataset::FreyFace,
        Dataset::FidInception,
    ];

    /// The name used on the command line and as the folder in the data directory.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
            Dataset::Cifar10 => "cifar-10",
            Dataset::Svhn => "svhn",
            Dataset::WineQuality => "wine-quality",
            Dataset::Parkinsons => "parkinsons-telemonitoring",
            Dataset::FreyFace => "frey-face",
            Dataset::FidInception => "fid-inception",
        }
    }

    /// Parses a command-line name (also accepts `fmnist`, `cifar10`, `wine`, `parkinsons`, `frey`).
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] listing the known names.
    pub fn from_name(name: &str) -> Result<Self> {
        let n = name.to_ascii_lowercase();
        let alias = match n.as_str() {
            "fmnist" => "fashion-mnist",
            "cifar10" => "cifar-10",
            "wine" => "wine-quality",
            "parkinsons" => "parkinsons-telemonitoring",
            "frey" | "freyface" => "frey-face",
            "inception" => "fid-inception",
            other => other,
        };
        Dataset::ALL
            .into_iter()
            .find(|d| d.name() == alias)
            .ok_or_else(|| {
                let known: Vec<&str> = Dataset::ALL.iter().map(|d| d.name()).collect();
                DataError::InvalidArgument(format!(
                    "unknown dataset {name:?}; known: {}",
                    known.join(", ")
                ))
            })
    }

    /// The files to download for this dataset.
    pub fn files(self) -> Vec<&'static RemoteFile> {
        FILES.iter().filter(|f| f.dataset == self).collect()
    }
}

/// One downloadable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// The dataset it belongs to.
    pub dataset: Dataset,
    /// Path inside the data directory.
    pub path: &'static str,
    /// The canonical URL first, then mirrors.
    pub urls: &'static [&'static str],
    /// Published SHA-256, lowercase hex.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Files to extract from this archive (CIFAR-10), empty for plain files.
    pub extract: &'static [&'static str],
}

macro_rules! mnist_file {
    ($ds:expr, $dir:literal, $name:literal, $sha:literal, $size:literal, [$($url:literal),+]) => {
        RemoteFile {
            dataset: $ds,
            path: concat!($dir, "/", $name),
            urls: &[$(concat!($url, $name)),+],
            sha256: $sha,
            size: $size,
            extract: &[],
        }
    };
}

/// Every downloadable file. Checksums: MNIST and Fashion-MNIST verified against the published
/// md5 sums and pinned by sha256; wine by TensorFlow Datasets' pinned list; CIFAR-10 and SVHN by
/// TensorFlow Datasets' and torchvision's pinned lists; Parkinsons and Frey face by the copies
/// described in `docs/datasets.md`.
pub static FILES: &[RemoteFile] = &[
    mnist_file!(Dataset::Mnist, "mnist", "train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422,
        ["http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]),
    mnist_file!(Dataset::Mnist, "mnist", "train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881,
        ["http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]),
    mnist_file!(Dataset::Mnist, "mnist", "t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877,
        ["http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]),
    mnist_file!(Dataset::Mnist, "mnist", "t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542,
        ["http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]),
    mnist_file!(Dataset::FashionMnist, "fashion-mnist", "train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880,
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"]),
    mnist_file!(Dataset::FashionMnist, "fashion-mnist", "train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515,
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"]),
    mnist_file!(Dataset::FashionMnist, "fashion-mnist", "t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102,
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"]),
    mnist_file!(Dataset::FashionMnist, "fashion-mnist", "t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148,
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"]),
    RemoteFile {
        dataset: Dataset::WineQuality,
        path: "wine-quality/winequality-red.csv",
        urls: &["https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/winequality-red.csv"],
        sha256: "4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e",
        size: 84199,
        extract: &[],
    },
    RemoteFile {
        dataset: Dataset::WineQuality,
        path: "wine-quality/winequality-white.csv",
        urls: &["https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/winequality-white.csv"],
        sha256: "76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836",
        size: 264426,
        extract: &[],
    },
    RemoteFile {
        dataset: Dataset::Parkinsons,
        path: "parkinsons-telemonitoring/parkinsons_updrs.data",
        urls: &["https://archive.ics.uci.edu/ml/machine-learning-databases/parkinsons/telemonitoring/parkinsons_updrs.data"],
        sha256: "f2c7d5025dec4e92e7feae367a5f7ccf58789a10ac6b54bdf15976c599f9dd39",
        size: 911261,
        extract: &[],
    },
    RemoteFile {
        dataset: Dataset::FreyFace,
        path: "frey-face/frey_rawface.mat",
        urls: &["https://cs.nyu.edu/~roweis/data/frey_rawface.mat"],
        sha256: "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
        size: 1100584,
        extract: &[],
    },
    // pytorch-fid's release; its name carries the start of the SHA-256, pinned here in full
    // as independent projects pin it (95 628 359 bytes).
    RemoteFile {
        dataset: Dataset::FidInception,
        path: "fid-inception/pt_inception-2015-12-05-6726825d.pth",
        urls: &["https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"],
        sha256: "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        size: 95_628_359,
        extract: &[],
    },
    RemoteFile {
        dataset: Dataset::Cifar10,
        path: "cifar-10/cifar-10-binary.tar.gz",
        urls: &["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"],
        sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        size: 170052171,
        extract: &[
            "cifar-10-batches-bin/data_batch_1.bin",
            "cifar-10-batches-bin/data_batch_2.bin",
            "cifar-10-batches-bin/data_batch_3.bin",
            "cifar-10-batches-bin/data_batch_4.bin",
            "cifar-10-batches-bin/data_batch_5.bin",
            "cifar-10-batches-bin/test_batch.bin",
        ],
    },
    RemoteFile {
        dataset: Dataset::Svhn,
        path: "svhn/train_32x32.mat",
        urls: &["http://ufldl.stanford.edu/housenumbers/train_32x32.mat"],
        sha256: "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
        size: 182040794,
        extract: &[],
    },
    RemoteFile {
        dataset: Dataset::Svhn,
        path: "svhn/test_32x32.mat",
        urls: &["http://ufldl.stanford.edu/housenumbers/test_32x32.mat"],
        sha256: "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
        size: 64275384,
        extract: &[],
    },
];

/// The path of `name` in `dataset`'s folder, or a [`DataError::Missing`] that says how to get it.
pub(crate) fn require(data_dir: &Path, dataset: Dataset, name: &str) -> Result<PathBuf> {
    let path = data_dir.join(dataset.name()).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(data_dir, dataset, &path))
    }
}

pub(crate) fn missing(data_dir: &Path, dataset: Dataset, path: &Path) -> DataError {
    DataError::Missing {
        dataset: dataset.name(),
        path: path.to_path_buf(),
        hint: format!(
            "Run `cargo xtask download {}` (with network), or put the published files in {} yourself. \
             The data directory is {} (set it with --data-dir or {DATA_DIR_ENV}).",
            dataset.name(),
            data_dir.join(dataset.name()).display(),
            data_dir.display()
        ),
    }
}

/// SHA-256 of a file, lowercase hex.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks a file against its published SHA-256.
///
/// # Errors
/// [`DataError::Checksum`] on a mismatch, [`DataError::Io`] when unreadable.
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.into(),
            actual,
        })
    }
}
