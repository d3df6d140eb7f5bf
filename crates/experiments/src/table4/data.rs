//! The images of Table 4: each image set's splits in its stored layout, the detector's input
//! layout (the MNIST family padded to 32 x 32), random subsets, and the synthetic
//! out-of-distribution sets (uniform noise, permuted pixels, inverted images) made from a seed.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use sm_objectives::NoiseSource;

use crate::error::{ExpError, Result};

use super::{ImageSet, Table4Config};

/// The training and test images of an image set on the CPU, unpadded (`[N, C, H, W]`, `f32` in
/// `[0, 1]`, or `u8` for ImageNet 32 x 32).
#[derive(Debug, Clone)]
pub struct RawSplits {
    /// Training split.
    pub train: Tensor,
    /// Test split (ImageNet's validation split).
    pub test: Tensor,
}

/// Loads an image set from the data directory (ImageNet 32 x 32 from
/// [`Table4Config::imagenet32_dir`], else `<data dir>/imagenet32`). `imagenet_train` caps the
/// ImageNet training images read, below [`Table4Config::imagenet32_train_images`] (the other
/// sets are small and always load whole): evaluation reads none for a test column and a pool for
/// the typicality reference instead of all 1.28 million.
///
/// # Errors
/// Missing or corrupt files, with the error saying where they were expected and how to get them.
pub fn load(
    cfg: &Table4Config,
    data_dir: &Path,
    set: ImageSet,
    imagenet_train: Option<usize>,
) -> Result<RawSplits> {
    let cpu = Device::Cpu;
    let splits = match set {
        ImageSet::Mnist => {
            datasets::load_idx_dataset(data_dir, datasets::IdxDataset::Mnist, &cpu)?.into()
        }
        ImageSet::FashionMnist => {
            datasets::load_idx_dataset(data_dir, datasets::IdxDataset::FashionMnist, &cpu)?.into()
        }
        ImageSet::Svhn => datasets::load_svhn(data_dir, &cpu)?.into(),
        ImageSet::Cifar10 => datasets::load_cifar10(data_dir, &cpu)?.into(),
        ImageSet::Imagenet32 => datasets::load_imagenet32(
            &imagenet32_dir(cfg, data_dir),
            match (imagenet_train, cfg.imagenet32_train_images) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            &cpu,
        )?
        .into(),
    };
    Ok(splits)
}

/// Where ImageNet 32 x 32's archives are: [`Table4Config::imagenet32_dir`], else
/// `<data dir>/imagenet32`.
pub fn imagenet32_dir(cfg: &Table4Config, data_dir: &Path) -> std::path::PathBuf {
    cfg.imagenet32_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("imagenet32"))
}

impl From<datasets::ImageSplits> for RawSplits {
    fn from(s: datasets::ImageSplits) -> Self {
        Self {
            train: s.train.images,
            test: s.test.images,
        }
    }
}

/// Images of `set` in the detector's input layout on `device`: padded with zeros for the MNIST
/// family; `u8` images stay `u8` (the trainer converts each batch), others are `f32`.
///
/// # Errors
/// Tensor errors only.
pub fn to_model(images: &Tensor, set: ImageSet, device: &Device) -> Result<Tensor> {
    let (_, _, pad) = set.layout();
    let padded = if pad > 0 {
        images
            .pad_with_zeros(2, pad, pad)?
            .pad_with_zeros(3, pad, pad)?
    } else {
        images.clone()
    };
    Ok(padded.to_device(device)?)
}

/// `count` distinct images of `images` drawn at random with `seed`, as `f32` in `[0, 1]`.
///
/// # Errors
/// [`ExpError::Config`] when the set has fewer than `count` images.
pub fn pick(images: &Tensor, count: usize, seed: u64, what: &str) -> Result<Tensor> {
    let n = images.dim(0)?;
    if count > n {
        return Err(ExpError::Config(format!(
            "{what} needs {count} images but the split has {n}; lower test_batches, m or \
             reference_images"
        )));
    }
    let picked = datasets::Batcher::new(n, count, seed)?.batch(images, 0)?;
    Ok(crate::deep_ebm::unit_interval(&picked)?)
}

/// `n` images of the given `(channels, size)` with pixels uniform in `[0, 1]`.
///
/// # Errors
/// Tensor errors only.
pub fn uniform_noise(n: usize, channels: usize, size: usize, seed: u64) -> Result<Tensor> {
    let mut noise = NoiseSource::new(seed);
    let shape = Tensor::zeros((n, channels, size, size), DType::F32, &Device::Cpu)?;
    Ok(noise.uniform_like(&shape)?)
}

/// The images with their `H x W` pixel positions shuffled by one permutation drawn with `seed`
/// (the same for every image and channel).
///
/// # Errors
/// Tensor errors only.
pub fn permute_pixels(images: &Tensor, seed: u64) -> Result<Tensor> {
    let (n, c, h, w) = images.dims4()?;
    let mut noise = NoiseSource::new(seed);
    let keys: Vec<f32> = noise
        .uniform_like(&Tensor::zeros(h * w, DType::F32, &Device::Cpu)?)?
        .to_vec1()?;
    let mut order: Vec<u32> = (0..(h * w) as u32).collect();
    order.sort_by(|&a, &b| keys[a as usize].total_cmp(&keys[b as usize]));
    let index = Tensor::new(order.as_slice(), images.device())?;
    Ok(images
        .reshape((n, c, h * w))?
        .index_select(&index, 2)?
        .reshape((n, c, h, w))?)
}

/// The images with every pixel `p` replaced by `1 - p`.
///
/// # Errors
/// Tensor errors only.
pub fn invert(images: &Tensor) -> Result<Tensor> {
    Ok(images.affine(-1.0, 1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_moves_pixels_and_keeps_their_values() -> anyhow::Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 2.0 * 16.0, &Device::Cpu)?.reshape((2, 2, 4, 4))?;
        let p = permute_pixels(&x, 5)?;
        let (a, b): (Vec<f32>, Vec<f32>) =
            (x.flatten_all()?.to_vec1()?, p.flatten_all()?.to_vec1()?);
        assert_ne!(a, b);
        // Every (image, channel) plane holds the same values in another order, and every plane
        // is moved by the same permutation.
        let mut order = None;
        for plane in 0..4 {
            let (src, dst) = (
                &a[16 * plane..16 * plane + 16],
                &b[16 * plane..16 * plane + 16],
            );
            let mut sorted = dst.to_vec();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, src);
            let moves: Vec<usize> = dst.iter().map(|v| (*v as usize) % 16).collect();
            assert_eq!(*order.get_or_insert(moves.clone()), moves);
        }
        assert_eq!(
            permute_pixels(&x, 5)?.flatten_all()?.to_vec1::<f32>()?,
            p.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn inversion_noise_and_padding() -> anyhow::Result<()> {
        let x = Tensor::new(&[[[[0.0f32, 0.25], [1.0, 0.5]]]], &Device::Cpu)?;
        assert_eq!(
            invert(&x)?.flatten_all()?.to_vec1::<f32>()?,
            vec![1.0, 0.75, 0.0, 0.5]
        );
        let u = uniform_noise(50, 1, 28, 3)?;
        let v: Vec<f32> = u.flatten_all()?.to_vec1()?;
        assert!(v.iter().all(|p| (0.0..=1.0).contains(p)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let padded = to_model(&u, ImageSet::Mnist, &Device::Cpu)?;
        assert_eq!(padded.dims(), &[50, 1, 32, 32]);
        assert_eq!(
            padded
                .narrow(2, 0, 2)?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?,
            0.0
        );
        assert_eq!(
            padded
                .narrow(2, 2, 28)?
                .narrow(3, 2, 28)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            u.flatten_all()?.to_vec1::<f32>()?
        );
        assert!(pick(&u, 51, 0, "the test").is_err());
        Ok(())
    }
}
