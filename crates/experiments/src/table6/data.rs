//! MNIST as Song et al.'s implicit-encoder VAE / WAE code prepares it: pixels in `[0, 1]`,
//! flattened to 784 values, dynamically binarised (`x_j = 1` with probability the pixel's
//! intensity) afresh at every training step; the test images binarised once with a fixed seed.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use sm_objectives::NoiseSource;

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
}
