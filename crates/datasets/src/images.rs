//! Image datasets as Candle tensors: MNIST and Fashion-MNIST (IDX, gzip), CIFAR-10 (binary
//! batches) and SVHN (cropped digits, MAT-files). Images are `[N, C, H, W]` `f32` in `[0, 1]`
//! (pixel / 255), labels `[N]` `u8` in `0..10`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{format_err, Result};
use crate::mat::{parse_mat, MatData};
use crate::{gzip::gunzip_idx, idx::parse_idx, read_file, registry};

/// Images and their labels.
#[derive(Debug, Clone)]
pub struct LabeledImages {
    /// `[N, C, H, W]`, `f32` in `[0, 1]`.
    pub images: Tensor,
    /// `[N]`, `u8` class labels in `0..10`.
    pub labels: Tensor,
}

/// The standard train / test split of an image dataset.
#[derive(Debug, Clone)]
pub struct ImageSplits {
    /// Training split.
    pub train: LabeledImages,
    /// Test split.
    pub test: LabeledImages,
}

/// Which IDX-format dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxDataset {
    /// MNIST digits (60000 / 10000, 28 x 28).
    Mnist,
    /// Fashion-MNIST (60000 / 10000, 28 x 28).
    FashionMnist,
}

impl IdxDataset {
    fn dataset(self) -> registry::Dataset {
        match self {
            IdxDataset::Mnist => registry::Dataset::Mnist,
            IdxDataset::FashionMnist => registry::Dataset::FashionMnist,
        }
    }
}

/// Loads MNIST or Fashion-MNIST from `<data_dir>/mnist/` or `<data_dir>/fashion-mnist/` (the
/// four published `*-ubyte.gz` files), checking the IDX headers, image size, counts and labels.
///
/// # Errors
/// [`DataError::Missing`](crate::DataError::Missing) with instructions when a file is absent;
/// [`DataError::Gzip`](crate::DataError::Gzip) / [`DataError::Format`](crate::DataError::Format)
/// for corrupt files.
pub fn load_idx_dataset(
    data_dir: &Path,
    which: IdxDataset,
    device: &Device,
) -> Result<ImageSplits> {
    let ds = which.dataset();
    let file = |name: &str| registry::require(data_dir, ds, name);
    let train = idx_split(
        &file("train-images-idx3-ubyte.gz")?,
        &file("train-labels-idx1-ubyte.gz")?,
        60_000,
        device,
    )?;
    let test = idx_split(
        &file("t10k-images-idx3-ubyte.gz")?,
        &file("t10k-labels-idx1-ubyte.gz")?,
        10_000,
        device,
    )?;
    Ok(ImageSplits { train, test })
}

fn idx_split(images: &Path, labels: &Path, n: usize, device: &Device) -> Result<LabeledImages> {
    let img = parse_idx(&gunzip_idx(&read_file(images)?, images)?, images)?;
    if img.dims != [n, 28, 28] {
        return Err(format_err(
            images,
            format!(
                "expected {n} images of 28 x 28, the IDX header says {:?}",
                img.dims
            ),
        ));
    }
    let lab = parse_idx(&gunzip_idx(&read_file(labels)?, labels)?, labels)?;
    if lab.dims != [n] {
        return Err(format_err(
            labels,
            format!("expected {n} labels, the IDX header says {:?}", lab.dims),
        ));
    }
    check_labels(&lab.data, labels)?;
    Ok(LabeledImages {
        images: images_tensor(img.data, (n, 1, 28, 28), device)?,
        labels: Tensor::from_vec(lab.data, n, device)?,
    })
}

fn check_labels(labels: &[u8], path: &Path) -> Result<()> {
    match labels.iter().position(|&l| l > 9) {
        Some(i) => Err(format_err(
            path,
            format!("label {} of record {i} is outside 0..10", labels[i]),
        )),
        None => Ok(()),
    }
}

fn images_tensor(
    pixels: Vec<u8>,
    shape: (usize, usize, usize, usize),
    device: &Device,
) -> Result<Tensor> {
    let data: Vec<f32> = pixels.into_iter().map(|p| f32::from(p) / 255.0).collect();
    Ok(Tensor::from_vec(data, shape, device)?)
}

/// Size of one CIFAR-10 binary record: a label byte and 3 x 32 x 32 pixel bytes (red plane,
/// green plane, blue plane, each row-major).
pub const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// Parses one CIFAR-10 binary batch file into `(pixels, labels)`, pixels in `[N, 3, 32, 32]`
/// order.
///
/// # Errors
/// [`DataError::Format`](crate::DataError::Format) when the length is not a positive multiple of
/// the record size or a label is outside `0..10`.
pub fn parse_cifar_batch(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
        return Err(format_err(
            path,
            format!(
                "{} bytes is not a whole number of CIFAR-10 records of {CIFAR_RECORD} bytes",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / CIFAR_RECORD;
    let mut pixels = Vec::with_capacity(n * (CIFAR_RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for rec in bytes.chunks_exact(CIFAR_RECORD) {
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    check_labels(&labels, path)?;
    Ok((pixels, labels))
}

/// The CIFAR-10 binary batch files, relative to the data directory.
pub fn cifar10_files() -> (Vec<PathBuf>, PathBuf) {
    let base = Path::new("cifar-10").join("cifar-10-batches-bin");
    (
        (1..=5)
            .map(|i| base.join(format!("data_batch_{i}.bin")))
            .collect(),
        base.join("test_batch.bin"),
    )
}

/// Loads CIFAR-10 from `<data_dir>/cifar-10/cifar-10-batches-bin/` (`data_batch_1..5.bin`,
/// `test_batch.bin`, as extracted from `cifar-10-binary.tar.gz`): 50000 / 10000 images
/// `[N, 3, 32, 32]`.
///
/// # Errors
/// As [`load_idx_dataset`].
pub fn load_cifar10(data_dir: &Path, device: &Device) -> Result<ImageSplits> {
    let (train_files, test_file) = cifar10_files();
    let load = |files: &[PathBuf]| -> Result<LabeledImages> {
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for f in files {
            let path = data_dir.join(f);
            if !path.exists() {
                return Err(registry::missing(
                    data_dir,
                    registry::Dataset::Cifar10,
                    &path,
                ));
            }
            let (p, l) = parse_cifar_batch(&read_file(&path)?, &path)?;
            pixels.extend(p);
            labels.extend(l);
        }
        let n = labels.len();
        Ok(LabeledImages {
            images: images_tensor(pixels, (n, 3, 32, 32), device)?,
            labels: Tensor::from_vec(labels, n, device)?,
        })
    };
    Ok(ImageSplits {
        train: load(&train_files)?,
        test: load(std::slice::from_ref(&test_file))?,
    })
}

/// Converts SVHN's MAT arrays (`X`: `32 x 32 x 3 x N` `uint8`, column-major; `y`: `N x 1`, labels
/// `1..=10` with `10` meaning the digit 0) into `(pixels [N, 3, 32, 32], labels 0..10)`.
///
/// # Errors
/// [`DataError::Format`](crate::DataError::Format) when `X` or `y` is missing, has the wrong
/// shape or type, or a label is outside `1..=10`.
pub fn parse_svhn(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let arrays = parse_mat(bytes, path)?;
    let get = |name: &str| {
        arrays
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| format_err(path, format!("SVHN MAT-file has no variable {name:?}")))
    };
    let x = get("X")?;
    let y = get("y")?;
    let n = match x.dims.as_slice() {
        [32, 32, 3, n] => *n,
        other => {
            return Err(format_err(
                path,
                format!("SVHN variable X has dimensions {other:?}, expected [32, 32, 3, N]"),
            ))
        }
    };
    if y.data.len() != n {
        return Err(format_err(
            path,
            format!("SVHN has {n} images but {} labels", y.data.len()),
        ));
    }
    let MatData::U8(raw) = &x.data else {
        return Err(format_err(path, "SVHN variable X is not stored as uint8"));
    };
    let mut pixels = vec![0u8; raw.len()];
    // Column-major X(h, w, c, i) sits at h + 32 w + 1024 c + 3072 i; we want [i][c][h][w].
    for i in 0..n {
        for c in 0..3 {
            for h in 0..32 {
                for w in 0..32 {
                    pixels[i * 3072 + c * 1024 + h * 32 + w] =
                        raw[i * 3072 + c * 1024 + w * 32 + h];
                }
            }
        }
    }
    let mut labels = Vec::with_capacity(n);
    for (i, v) in y.data.to_f64().into_iter().enumerate() {
        if !(1.0..=10.0).contains(&v) || v.fract() != 0.0 {
            return Err(format_err(
                path,
                format!("SVHN label {v} of record {i} is outside 1..=10"),
            ));
        }
        labels.push((v as u8) % 10);
    }
    Ok((pixels, labels))
}

/// Loads SVHN (cropped digits) from `<data_dir>/svhn/train_32x32.mat` and `test_32x32.mat`:
/// 73257 / 26032 images `[N, 3, 32, 32]`.
///
/// # Errors
/// As [`load_idx_dataset`].
pub fn load_svhn(data_dir: &Path, device: &Device) -> Result<ImageSplits> {
    let load = |name: &str| -> Result<LabeledImages> {
        let path = registry::require(data_dir, registry::Dataset::Svhn, name)?;
        let (pixels, labels) = parse_svhn(&read_file(&path)?, &path)?;
        let n = labels.len();
        Ok(LabeledImages {
            images: images_tensor(pixels, (n, 3, 32, 32), device)?,
            labels: Tensor::from_vec(labels, n, device)?,
        })
    };
    Ok(ImageSplits {
        train: load("train_32x32.mat")?,
        test: load("test_32x32.mat")?,
    })
}

/// Frey face: 1965 grey images of 28 x 20 pixels, split 1400 / 300 / 265 in file order.
#[derive(Debug, Clone)]
pub struct FreyFace {
    /// `[1400, 560]`, `f32` pixel / 255 (row-major 28 x 20 images).
    pub train: Tensor,
    /// `[300, 560]`.
    pub validation: Tensor,
    /// `[265, 560]`.
    pub test: Tensor,
}

/// Height and width of a Frey face image.
pub const FREY_SHAPE: (usize, usize) = (28, 20);

/// Parses `frey_rawface.mat` (variable `ff`, `uint8`, `560 x 1965`) into 1965 row-major images.
///
/// # Errors
/// [`DataError::Format`](crate::DataError::Format) when `ff` is missing or has the wrong shape
/// or type.
pub fn parse_frey(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let arrays = parse_mat(bytes, path)?;
    let ff = arrays
        .iter()
        .find(|a| a.name == "ff")
        .ok_or_else(|| format_err(path, "Frey face MAT-file has no variable \"ff\""))?;
    if ff.dims != [560, 1965] {
        return Err(format_err(
            path,
            format!(
                "Frey face variable ff has dimensions {:?}, expected [560, 1965]",
                ff.dims
            ),
        ));
    }
    match &ff.data {
        // Column j of the column-major 560 x 1965 matrix is image j, already row-major 28 x 20.
        MatData::U8(v) => Ok(v.clone()),
        MatData::F64(_) => Err(format_err(
            path,
            "Frey face variable ff is not stored as uint8",
        )),
    }
}

/// Loads Frey face from `<data_dir>/frey-face/frey_rawface.mat`.
///
/// # Errors
/// As [`load_idx_dataset`].
pub fn load_frey_face(data_dir: &Path, device: &Device) -> Result<FreyFace> {
    let path = registry::require(data_dir, registry::Dataset::FreyFace, "frey_rawface.mat")?;
    let pixels = parse_frey(&read_file(&path)?, &path)?;
    let all: Vec<f32> = pixels.into_iter().map(|p| f32::from(p) / 255.0).collect();
    let all = Tensor::from_vec(all, (1965, 560), device)?;
    Ok(FreyFace {
        train: all.narrow(0, 0, 1400)?,
        validation: all.narrow(0, 1400, 300)?,
        test: all.narrow(0, 1700, 265)?,
    })
}
