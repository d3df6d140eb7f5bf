//! Downsampled ImageNet 32 x 32 (Chrabaszcz, Loshchilov and Hutter 2017), the ImageNet column of
//! FD-SM Table 4, read from the `.npz` archives it is distributed as: `train_data_batch_1.npz`
//! .. `train_data_batch_10.npz` and `val_data.npz`, each holding `data` (`[N, 3072]` uint8, one
//! image per row as its red, green and blue 32 x 32 planes) and `labels` (`1..=1000`).
//!
//! It cannot be downloaded without an image-net.org account, so it is read from a directory the
//! user supplies. The images stay `u8` (`[N, 3, 32, 32]`): as `f32` the 1.28 million training
//! images would take 15.7 GB.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{DataError, Result};
use crate::images::{ImageSplits, LabeledImages};

/// How many training archives the distribution has.
pub const IMAGENET32_TRAIN_ARCHIVES: usize = 10;

/// The archives of ImageNet 32 x 32 in `dir`: the training ones in order, then the validation
/// one (the test split).
pub fn imagenet32_files(dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    (
        (1..=IMAGENET32_TRAIN_ARCHIVES)
            .map(|k| dir.join(format!("train_data_batch_{k}.npz")))
            .collect(),
        dir.join("val_data.npz"),
    )
}

/// One array of a `.npy` member: its shape and its elements widened to `i64` (integers) or
/// kept as bytes (`u8`).
#[derive(Debug, Clone, PartialEq)]
pub enum NpyArray {
    /// `|u1` elements.
    U8 {
        /// The shape.
        shape: Vec<usize>,
        /// Elements in C order.
        data: Vec<u8>,
    },
    /// Little-endian signed or unsigned integers of 1 to 8 bytes, widened.
    Int {
        /// The shape.
        shape: Vec<usize>,
        /// Elements in C order.
        data: Vec<i64>,
    },
}

/// Reads the array `name` (member `<name>.npy`) of the `.npz` archive at `path`; members may be
/// stored or deflated (`numpy.savez` and `numpy.savez_compressed`).
///
/// # Errors
/// [`DataError::Io`] when the file cannot be read, [`DataError::Format`] when it is not a zip
/// archive, lacks the member, or the member is not a C-order `.npy` array of `u8` or integers.
pub fn read_npz_array(path: &Path, name: &str) -> Result<NpyArray> {
    let bad = |problem: String| DataError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a readable .npz (zip) archive: {e}")))?;
    let mut member = archive
        .by_name(&format!("{name}.npy"))
        .map_err(|e| bad(format!("no array `{name}` in the archive: {e}")))?;
    let mut bytes = Vec::new();
    member
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("array `{name}` is truncated or corrupt: {e}")))?;
    parse_npy(&bytes).map_err(|p| bad(format!("array `{name}`: {p}")))
}

/// Parses the bytes of a `.npy` file (format versions 1 to 3).
fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic bytes)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text header")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let at = header
            .find(&format!("'{key}':"))
            .ok_or(format!("header lacks `{key}`"))?;
        Ok(header[at + key.len() + 3..].trim_start())
    };
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-order arrays are not supported".into());
    }
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("unreadable dtype")?;
    let shape_text = field("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("unreadable shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| format!("shape {s}: {e}")))
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    let width = match descr {
        "|u1" | "<u1" | "|b1" => {
            return match body.get(..count) {
                Some(data) => Ok(NpyArray::U8 {
                    shape,
                    data: data.to_vec(),
                }),
                None => Err(format!("{} bytes for {count} elements", body.len())),
            };
        }
        "|i1" => 1,
        "<i2" | "<u2" => 2,
        "<i4" | "<u4" => 4,
        "<i8" | "<u8" => 8,
        other => return Err(format!("unsupported dtype {other}")),
    };
    let body = body.get(..count * width).ok_or(format!(
        "{} bytes for {count} elements of {width} bytes",
        body.len()
    ))?;
    let signed = descr.contains('i');
    let data = body
        .chunks_exact(width)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(c);
            if signed && c[width - 1] & 0x80 != 0 {
                b[width..].fill(0xff);
            }
            i64::from_le_bytes(b)
        })
        .collect();
    Ok(NpyArray::Int { shape, data })
}

/// Reads one archive: `(pixels [N, 3, 32, 32] in C order, labels)`.
fn read_archive(path: &Path) -> Result<(Vec<u8>, Vec<u32>)> {
    let bad = |problem: String| DataError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let (pixels, n) = match read_npz_array(path, "data")? {
        NpyArray::U8 { shape, data } if shape.len() == 2 && shape[1] == 3 * 32 * 32 => {
            (data, shape[0])
        }
        NpyArray::U8 { shape, .. } | NpyArray::Int { shape, .. } => {
            return Err(bad(format!(
                "`data` should be uint8 of shape [N, 3072] (32 x 32 RGB), found {shape:?} \
                 (is this the 32 x 32 version?)"
            )))
        }
    };
    let labels = match read_npz_array(path, "labels")? {
        NpyArray::Int { data, .. } if data.len() == n => data,
        NpyArray::U8 { data, .. } if data.len() == n => data.into_iter().map(i64::from).collect(),
        _ => return Err(bad(format!("`labels` should hold {n} integers"))),
    };
    let labels = labels
        .into_iter()
        .map(|l| {
            u32::try_from(l)
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| bad(format!("label {l} outside 1..=1000")))
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok((pixels, labels))
}

/// Checks that every archive of ImageNet 32 x 32 is in `dir` (without reading them), so that a
/// run can stop before it starts when the data set has not been supplied.
///
/// # Errors
/// [`DataError::Missing`] naming the first absent archive and how to obtain the data set.
pub fn check_imagenet32(dir: &Path) -> Result<()> {
    let (train_files, val_file) = imagenet32_files(dir);
    match train_files
        .iter()
        .chain(std::iter::once(&val_file))
        .find(|f| !f.is_file())
    {
        Some(f) => Err(DataError::Missing {
            dataset: "imagenet32",
            path: f.clone(),
            hint: "ImageNet 32x32 cannot be downloaded without an image-net.org account: \
                   download Imagenet32_train_npz.zip and Imagenet32_val_npz.zip from the \
                   'Downsampled ImageNet' page of image-net.org and unzip both into this \
                   directory (train_data_batch_1.npz .. train_data_batch_10.npz and \
                   val_data.npz)"
                .into(),
        }),
        None => Ok(()),
    }
}

/// Loads ImageNet 32 x 32 from `dir` (see the module documentation): training images from the
/// ten training archives, test images from the validation archive, `[N, 3, 32, 32]` **`u8`**
/// (divide by 255 per batch), labels `[N]` `u32` in `1..=1000`. With `max_train`, only the
/// first that many training images are read (whole archives in order, the last one cut).
///
/// # Errors
/// [`DataError::Missing`] naming the first absent archive and how to obtain the data set,
/// [`DataError::Format`] for a damaged or different archive.
pub fn load_imagenet32(
    dir: &Path,
    max_train: Option<usize>,
    device: &Device,
) -> Result<ImageSplits> {
    check_imagenet32(dir)?;
    let (train_files, val_file) = imagenet32_files(dir);
    let limit = max_train.unwrap_or(usize::MAX);
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in &train_files {
        if labels.len() >= limit {
            break;
        }
        let (p, l) = read_archive(f)?;
        let take = l.len().min(limit - labels.len());
        pixels.extend_from_slice(&p[..take * 3072]);
        labels.extend_from_slice(&l[..take]);
    }
    let (val_pixels, val_labels) = read_archive(&val_file)?;
    let split = |pixels: Vec<u8>, labels: Vec<u32>| -> Result<LabeledImages> {
        let n = labels.len();
        Ok(LabeledImages {
            images: Tensor::from_vec(pixels, (n, 3, 32, 32), device)?,
            labels: Tensor::from_vec(labels, n, device)?,
        })
    };
    Ok(ImageSplits {
        train: split(pixels, labels)?,
        test: split(val_pixels, val_labels)?,
    })
}
