//! The data of Table 6 as Song et al.'s implicit-encoder VAE / WAE code prepares it.
//!
//! - MNIST: pixels in `[0, 1]`, flattened to 784 values, dynamically binarised (`x_j = 1` with
//!   probability the pixel's intensity) afresh at every training step; the test images
//!   binarised once with a fixed seed.
//! - CelebA: the aligned faces cropped to 140 and resized to 64 (`datasets::load_celeba`),
//!   mapped to `[-1, 1]` (`2x - 1`) and dequantised with uniform noise of one level's width,
//!   `(u - 1/2) / 128`, afresh at every step; the test images with fixed noise.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use latent::implicit::DecoderLikelihood;
use sm_objectives::NoiseSource;

use super::{Table6Config, Table6Data};
use crate::error::Result;

/// Grey-level pixels in `[0, 1]`, `[N, 784]`, of MNIST's two splits.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The 60000 training images.
    pub train: Tensor,
    /// The 10000 test images.
    pub test: Tensor,
}

/// Loads MNIST onto `device`.
///
/// # Errors
/// Missing or corrupt files; pixels outside `[0, 1]` or not finite.
pub fn load(data_dir: &Path, device: &Device) -> Result<Mnist> {
    let (train, test) = crate::setup::mnist_flat(data_dir)?;
    Ok(Mnist {
        train: train.to_device(device)?,
        test: test.to_device(device)?,
    })
}

/// `1` where a uniform draw is at most the pixel, else `0`: a Bernoulli sample with the pixel's
/// intensity as its probability, in the pixels' dtype.
///
/// # Errors
/// Tensor errors only.
pub fn binarize(pixels: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
    let u = noise.uniform_like(pixels)?;
    Ok(u.le(pixels)?.to_dtype(pixels.dtype())?)
}

/// The first `n` test images, binarised with a generator seeded by `seed`, in f32.
///
/// # Errors
/// Tensor errors only.
pub fn binary_test_images(data: &Mnist, n: usize, seed: u64) -> Result<Tensor> {
    let pixels = data.test.narrow(0, 0, n)?.to_dtype(DType::F32)?;
    binarize(&pixels, &mut NoiseSource::new(seed))
}

/// CelebA's faces, `[N, 3, S, S]` `u8`, on the CPU (7 GB as `f32` at full size).
#[derive(Debug, Clone)]
pub struct Celeba {
    /// Training faces.
    pub train: Tensor,
    /// Test faces.
    pub test: Tensor,
}

/// Where CelebA's JPEGs are: [`super::CelebaSettings::dir`], else
/// `<data dir>/celeba/img_align_celeba`.
pub fn celeba_dir(cfg: &Table6Config, data_dir: &Path) -> PathBuf {
    cfg.celeba
        .dir
        .clone()
        .unwrap_or_else(|| datasets::celeba_dir(data_dir))
}

/// Loads CelebA as the configuration says (the training faces only `with_train`: an
/// evaluation needs the test faces alone), with a progress bar over the decoded images.
///
/// # Errors
/// The folder is missing or empty (with how to get the data set); a file is not a readable
/// JPEG; the test split holds fewer than the images asked for.
pub fn load_celeba(
    cfg: &Table6Config,
    data_dir: &Path,
    with_train: bool,
    progress: bool,
) -> Result<Celeba> {
    let c = &cfg.celeba;
    let dir = celeba_dir(cfg, data_dir);
    let opts = datasets::CelebaOptions {
        crop: c.crop,
        size: c.image_size as u32,
        max_train: if with_train { c.max_train } else { Some(0) },
        max_test: Some(c.test_images),
        ..datasets::CelebaOptions::default()
    };
    let bar = if progress {
        let (train, test) = datasets::celeba_split(datasets::celeba_files(&dir)?.len(), &opts);
        let cap = |len: usize, max: Option<usize>| len.min(max.unwrap_or(usize::MAX));
        let total = cap(train.len(), opts.max_train) + cap(test.len(), opts.max_test);
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("CelebA [{bar:30}] {pos}/{len} faces, {eta} left")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let splits = datasets::load_celeba(&dir, &opts, &Device::Cpu, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let test_n = splits.test.dim(0)?;
    if test_n < c.test_images {
        return Err(crate::ExpError::Config(format!(
            "CelebA's test split in {} holds {test_n} images, fewer than celeba.test_images {}",
            dir.display(),
            c.test_images
        )));
    }
    Ok(Celeba {
        train: splits.train,
        test: splits.test,
    })
}

/// Faces `[B, 3, S, S]` `u8` to `f32` in `[-1, 1]` on `device`, dequantised with
/// `(u - 1/2) / 128`, `u ~ U[0, 1)` from `noise`.
///
/// # Errors
/// Tensor errors only.
pub fn dequantised_faces(
    faces: &Tensor,
    noise: &mut NoiseSource,
    device: &Device,
) -> Result<Tensor> {
    let x = faces
        .to_device(device)?
        .to_dtype(DType::F32)?
        .affine(2.0 / 255.0, -1.0)?;
    let u = noise.uniform_like(&x)?;
    Ok((x + u.affine(1.0 / 128.0, -0.5 / 128.0)?)?)
}

/// The images of one row's data set: binarised MNIST or dequantised CelebA, and how the
/// decoder's output is read.
#[derive(Debug, Clone)]
pub enum Images {
    /// MNIST grey levels (binarised per batch).
    Mnist(Mnist),
    /// CelebA faces (dequantised per batch).
    Celeba(Celeba, f64),
}

impl Images {
    /// Loads the data set of `data` (CelebA's training faces only `with_train`).
    ///
    /// # Errors
    /// As [`load`] and [`load_celeba`].
    pub fn load(
        cfg: &Table6Config,
        data: Table6Data,
        data_dir: &Path,
        device: &Device,
        with_train: bool,
        progress: bool,
    ) -> Result<Self> {
        Ok(match data {
            Table6Data::Mnist => {
                let mut mnist = load(data_dir, device)?;
                mnist.train = mnist.train.to_dtype(DType::F32)?;
                Images::Mnist(mnist)
            }
            Table6Data::Celeba => {
                let faces = load_celeba(cfg, data_dir, with_train, progress)?;
                Images::Celeba(faces, cfg.celeba.log_std)
            }
        })
    }

    /// The decoder's likelihood: Bernoulli (MNIST) or Gaussian with the fixed log-std.
    pub fn likelihood(&self) -> DecoderLikelihood {
        match self {
            Images::Mnist(_) => DecoderLikelihood::Bernoulli,
            Images::Celeba(_, log_std) => DecoderLikelihood::Gaussian { log_std: *log_std },
        }
    }

    /// The training set (grey levels or `u8` faces), whose rows a batcher picks.
    pub fn train(&self) -> &Tensor {
        match self {
            Images::Mnist(m) => &m.train,
            Images::Celeba(c, _) => &c.train,
        }
    }

    /// A training batch from its rows: binarised, or dequantised and in `[-1, 1]`.
    ///
    /// # Errors
    /// Tensor errors only.
    pub fn prepare(
        &self,
        rows: &Tensor,
        noise: &mut NoiseSource,
        device: &Device,
    ) -> Result<Tensor> {
        match self {
            Images::Mnist(_) => binarize(rows, noise),
            Images::Celeba(..) => dequantised_faces(rows, noise, device),
        }
    }

    /// The first `n` test images, prepared with noise seeded by `seed`, in f32 on `device`.
    ///
    /// # Errors
    /// Tensor errors only.
    pub fn test_images(&self, n: usize, seed: u64, device: &Device) -> Result<Tensor> {
        match self {
            Images::Mnist(m) => binary_test_images(m, n, seed),
            Images::Celeba(c, _) => dequantised_faces(
                &c.test.narrow(0, 0, n.min(c.test.dim(0)?))?,
                &mut NoiseSource::new(seed),
                device,
            ),
        }
    }

    /// The decoder's means as displayable images in `[0, 1]`, `[N, C, H, W]`.
    ///
    /// # Errors
    /// Tensor errors only.
    pub fn to_pixels(&self, out: &Tensor) -> Result<Tensor> {
        let n = out.dim(0)?;
        Ok(match self {
            Images::Mnist(_) => layers::sigmoid(out)?.reshape((n, 1, 28, 28))?,
            Images::Celeba(..) => out.affine(0.5, 0.5)?.clamp(0f32, 1f32)?,
        })
    }

    /// Data images (as [`Images::test_images`] gives them) as displayable images in `[0, 1]`.
    ///
    /// # Errors
    /// Tensor errors only.
    pub fn data_to_pixels(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        Ok(match self {
            Images::Mnist(_) => x.reshape((n, 1, 28, 28))?,
            Images::Celeba(..) => x.affine(0.5, 0.5)?.clamp(0f32, 1f32)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binarisation_keeps_the_pixel_as_its_probability() {
        // 0 and 1 stay put; a grey level of 0.3 becomes 1 in about 30% of many draws.
        let mut values = vec![0.0f32, 1.0];
        values.extend(std::iter::repeat_n(0.3f32, 20_000));
        let n = values.len();
        let pixels = Tensor::from_vec(values, (1, n), &Device::Cpu).unwrap();
        let b = binarize(&pixels, &mut NoiseSource::new(5))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!((b[0], b[1]), (0.0, 1.0));
        assert!(b.iter().all(|&v| v == 0.0 || v == 1.0));
        let ones = b[2..].iter().filter(|&&v| v == 1.0).count() as f64 / 20_000.0;
        // Binomial standard error sqrt(0.21 / 20000) = 0.0032.
        assert!((ones - 0.3).abs() < 0.015, "{ones}");
    }

    #[test]
    fn dequantisation_stays_within_half_a_level_of_the_scaled_pixel() {
        let faces = Tensor::from_vec(vec![0u8, 128, 255, 7], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let x = dequantised_faces(&faces, &mut NoiseSource::new(3), &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (v, p) in x.iter().zip([0u8, 128, 255, 7]) {
            let centre = 2.0 * f32::from(p) / 255.0 - 1.0;
            assert!((v - centre).abs() <= 0.5 / 128.0 + 1e-6, "{v} vs {centre}");
        }
    }
}
