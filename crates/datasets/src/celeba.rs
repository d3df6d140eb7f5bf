//! CelebA's aligned and cropped faces (Liu et al. 2015), the CelebA half of FD-SM Table 6, read
//! from the folder of JPEGs the data set is distributed as (`img_align_celeba/000001.jpg` ..
//! `202599.jpg`, 178 x 218 pixels) and prepared as Song et al.'s sliced-score-matching code
//! does: a centred 140 x 140 crop, resized to 64 x 64 with a triangle (bilinear, antialiased)
//! filter.
//!
//! CelebA's files sit behind a click-through licence on Google Drive, so they are read from a
//! folder the user supplies (by default `<data dir>/celeba/img_align_celeba`). The reference
//! splits the images 70 / 10 (train / test) by a seeded permutation of the sorted file names;
//! this loader does the same with its own generator (the permutation differs from numpy's,
//! the proportions do not). Images stay `u8`, `[N, 3, S, S]`: as `f32` the 141 819 training
//! faces at 64 x 64 would take 7 GB.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::error::{DataError, Result};

/// The folder of the JPEGs inside the data directory: `celeba/img_align_celeba`.
pub fn celeba_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("celeba").join("img_align_celeba")
}

/// How CelebA is cut and split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelebaOptions {
    /// Side of the centred square crop (reference 140).
    pub crop: u32,
    /// Side after resizing (reference 64).
    pub size: u32,
    /// Seed of the permutation that splits the files.
    pub split_seed: u64,
    /// Fraction of the files in the training split, in percent (reference 70).
    pub train_percent: u32,
    /// Fraction of the files in the test split, in percent, after the training ones
    /// (reference 10).
    pub test_percent: u32,
    /// Read at most this many training images (the first of the permuted training split; 0
    /// reads none).
    pub max_train: Option<usize>,
    /// Read at most this many test images (0 reads none).
    pub max_test: Option<usize>,
}

impl Default for CelebaOptions {
    /// The reference's preparation: crop 140, size 64, 70 / 10 split with seed 2019, every
    /// image.
    fn default() -> Self {
        Self {
            crop: 140,
            size: 64,
            split_seed: 2019,
            train_percent: 70,
            test_percent: 10,
            max_train: None,
            max_test: None,
        }
    }
}

/// The two splits, `[N, 3, size, size]` `u8` (divide by 255 per batch).
#[derive(Debug, Clone)]
pub struct CelebaSplits {
    /// Training faces.
    pub train: Tensor,
    /// Test faces.
    pub test: Tensor,
}

fn missing(path: PathBuf) -> DataError {
    DataError::Missing {
        dataset: "celeba",
        path,
        hint: "CelebA cannot be downloaded here without accepting its licence: download \
               img_align_celeba.zip (the 'Align&Cropped Images' of the CelebA page, \
               mmlab.ie.cuhk.edu.hk/projects/CelebA.html) and unzip it into <data dir>/celeba, \
               so that the JPEGs are in <data dir>/celeba/img_align_celeba/"
            .into(),
    }
}

/// The JPEG files in `dir`, sorted by name.
///
/// # Errors
/// [`DataError::Missing`] when the folder does not exist or holds no `.jpg` file, with how to
/// obtain the data set; [`DataError::Io`] when it cannot be read.
pub fn celeba_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(missing(dir.to_path_buf()));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| DataError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let is_jpeg = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
        if is_jpeg {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(missing(dir.join("000001.jpg")));
    }
    files.sort();
    Ok(files)
}

/// Checks that `dir` holds CelebA's JPEGs (without decoding them), so that a run can stop
/// before it starts when the data set has not been supplied.
///
/// # Errors
/// As [`celeba_files`].
pub fn check_celeba(dir: &Path) -> Result<()> {
    celeba_files(dir).map(|_| ())
}

/// The centred `crop x crop` square of an RGB image resized to `size x size` with a triangle
/// filter, as channel planes (`[3, size, size]`, row-major). The crop's corner is
/// `round((H - crop) / 2)`, `round((W - crop) / 2)`, as torchvision's `CenterCrop`.
///
/// # Errors
/// [`DataError::Format`] for an image smaller than the crop, or zero sizes.
pub fn crop_and_resize(
    img: &image::RgbImage,
    crop: u32,
    size: u32,
    path: &Path,
) -> Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    if crop == 0 || size == 0 || w < crop || h < crop {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            problem: format!(
                "a {w} x {h} image cannot give a {crop} x {crop} centre crop resized to {size}"
            ),
        });
    }
    let centre = |n: u32| ((f64::from(n - crop)) / 2.0).round() as u32;
    let square = image::imageops::crop_imm(img, centre(w), centre(h), crop, crop).to_image();
    let small = if crop == size {
        square
    } else {
        image::imageops::resize(&square, size, size, FilterType::Triangle)
    };
    let plane = (size * size) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, p) in small.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p.0[c];
        }
    }
    Ok(out)
}

/// Decodes one face.
fn read_face(path: &Path, crop: u32, size: u32) -> Result<Vec<u8>> {
    let bytes = crate::read_file(path)?;
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            problem: format!("not a readable JPEG ({e}); the file is truncated or corrupt"),
        })?
        .to_rgb8();
    crop_and_resize(&img, crop, size, path)
}

/// The file indices of the two splits: a permutation of `0..n` seeded by `seed`, its first
/// `train_percent` percent for training and the next `test_percent` percent for testing.
pub fn celeba_split(n: usize, opts: &CelebaOptions) -> (Vec<usize>, Vec<usize>) {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(opts.split_seed));
    let n_train = n * opts.train_percent as usize / 100;
    let n_test = n * opts.test_percent as usize / 100;
    let test = perm[n_train..n_train + n_test].to_vec();
    perm.truncate(n_train);
    (perm, test)
}

/// Loads CelebA from `dir` (see the module documentation), decoding the images in parallel;
/// `on_image` is called once per decoded image (for a progress bar).
///
/// # Errors
/// [`DataError::Missing`] when the folder is absent or empty, [`DataError::InvalidArgument`]
/// for percentages that do not fit or a split left empty, [`DataError::Format`] naming a file
/// that is not a readable JPEG or is smaller than the crop.
pub fn load_celeba(
    dir: &Path,
    opts: &CelebaOptions,
    device: &Device,
    on_image: &(dyn Fn() + Sync),
) -> Result<CelebaSplits> {
    if opts.train_percent + opts.test_percent > 100 {
        return Err(DataError::InvalidArgument(format!(
            "CelebA's train ({}%) and test ({}%) splits add up to more than 100%",
            opts.train_percent, opts.test_percent
        )));
    }
    let files = celeba_files(dir)?;
    let (mut train, mut test) = celeba_split(files.len(), opts);
    if train.is_empty() || test.is_empty() {
        return Err(DataError::InvalidArgument(format!(
            "{} CelebA images in {} leave the training ({}) or test ({}) split empty",
            files.len(),
            dir.display(),
            train.len(),
            test.len()
        )));
    }
    // A cap of 0 reads no image of that split (e.g. an evaluation that needs only the test
    // faces).
    train.truncate(opts.max_train.unwrap_or(usize::MAX));
    test.truncate(opts.max_test.unwrap_or(usize::MAX));
    let s = opts.size as usize;
    let read = |indices: &[usize]| -> Result<Tensor> {
        let faces: Vec<Vec<u8>> = indices
            .par_iter()
            .map(|&i| {
                let face = read_face(&files[i], opts.crop, opts.size);
                on_image();
                face
            })
            .collect::<Result<_>>()?;
        let n = faces.len();
        Ok(Tensor::from_vec(faces.concat(), (n, 3, s, s), device)?)
    };
    Ok(CelebaSplits {
        train: read(&train)?,
        test: read(&test)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_centred_and_a_flat_colour_survives_resizing() {
        // A 10 x 12 image whose pixel (x, y) is (x, y, 7): the centred 6 x 6 crop starts at
        // round(2) = 2 across and round(3) = 3 down; without resizing it is copied as planes.
        let img = image::RgbImage::from_fn(10, 12, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let out = crop_and_resize(&img, 6, 6, Path::new("t.jpg")).unwrap();
        assert_eq!(out.len(), 3 * 36);
        assert_eq!(&out[..6], &[2, 3, 4, 5, 6, 7]);
        assert_eq!(out[36], 3);
        assert_eq!(out[36 + 35], 8);
        assert!(out[72..].iter().all(|&v| v == 7));
        // A flat colour stays that colour through the resize.
        let flat = image::RgbImage::from_pixel(178, 218, image::Rgb([200, 10, 90]));
        let out = crop_and_resize(&flat, 140, 64, Path::new("t.jpg")).unwrap();
        assert!(out[..4096].iter().all(|&v| v == 200));
        assert!(out[4096..8192].iter().all(|&v| v == 10));
        assert!(out[8192..].iter().all(|&v| v == 90));
        let err = crop_and_resize(&flat, 300, 64, Path::new("small.jpg")).unwrap_err();
        assert!(err.to_string().contains("small.jpg"), "{err}");
    }

    #[test]
    fn the_split_is_a_seeded_partition() {
        let opts = CelebaOptions::default();
        let (train, test) = celeba_split(1000, &opts);
        assert_eq!((train.len(), test.len()), (700, 100));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 800);
        assert_eq!(celeba_split(1000, &opts), (train, test));
        let other = CelebaOptions {
            split_seed: 7,
            ..opts
        };
        assert_ne!(celeba_split(1000, &other).0, celeba_split(1000, &opts).0);
    }
}
