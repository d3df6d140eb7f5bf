//! MNIST as the NICE experiments of the sliced-score-matching and FD-SM code prepare it (FD-SM
//! App. C.2): the training split divided 90/10 into training and validation with a fixed seed,
//! pixels dequantised by `x + (u - 1/2) / 256` with `u ~ U[0, 1)`, clamped to `[1e-3, 1 - 1e-3]`
//! and mapped to logit space, where the flow's density (and so its NLL) lives; the logit's own
//! log-determinant is left out, as the reference leaves it out.

use std::path::Path;

use candle_core::{Device, Tensor};
use sm_objectives::NoiseSource;

use crate::error::Result;

/// The seed of the reference's training/validation split.
pub const SPLIT_SEED: u64 = 2019;

/// Raw pixels in `[0, 1]`, `[N, 784]`, of the three splits.
#[derive(Debug, Clone)]
pub struct MnistSplits {
    /// 54000 training images.
    pub train: Tensor,
    /// 6000 validation images.
    pub val: Tensor,
    /// The 10000 test images.
    pub test: Tensor,
}

/// Loads MNIST and splits its training images 90/10 with [`SPLIT_SEED`].
///
/// # Errors
/// Missing or corrupt files; pixels outside `[0, 1]` or not finite.
pub fn load(data_dir: &Path, device: &Device) -> Result<MnistSplits> {
    let (train_all, test) = crate::setup::mnist_flat(data_dir)?;
    let n = train_all.dim(0)?;
    // A fixed permutation seeded by SPLIT_SEED (the batcher's shuffle of epoch 0).
    let idx = datasets::Batcher::new(n, 1, SPLIT_SEED)?.permutation(0);
    let n_val = n / 10;
    let pick = |ids: &[u32]| -> Result<Tensor> {
        let ids = Tensor::from_vec(ids.to_vec(), ids.len(), &Device::Cpu)?;
        Ok(train_all.index_select(&ids, 0)?.to_device(device)?)
    };
    Ok(MnistSplits {
        val: pick(&idx[..n_val])?,
        train: pick(&idx[n_val..])?,
        test: test.to_device(device)?,
    })
}

/// `logit(clamp(x + (u - 1/2) / 256, 1e-3, 1 - 1e-3))` with `u` from `noise`.
///
/// # Errors
/// Tensor errors only.
pub fn to_logit(pixels: &Tensor, noise: &mut NoiseSource) -> Result<Tensor> {
    let u = noise.uniform_like(pixels)?;
    let p = (pixels + ((u - 0.5)? / 256.0)?)?.clamp(1e-3, 1.0 - 1e-3)?;
    Ok((p.log()? - (1.0 - &p)?.log()?)?)
}

/// Pixels in `[0, 1]` from logit space (`sigmoid`), as `[N, 1, 28, 28]` for a sample grid.
///
/// # Errors
/// Tensor errors only.
pub fn to_pixels(logits: &Tensor) -> Result<Tensor> {
    let n = logits.dim(0)?;
    let p = layers::sigmoid(logits)?;
    Ok(p.reshape((n, 1, 28, 28))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_round_trips_through_the_sigmoid() {
        // Pixels k/255 as MNIST stores them; back through the sigmoid, each lies within the
        // dequantisation noise (+-1/512) of its pixel, or at the clamp.
        let values: Vec<f32> = (0..784).map(|i| (i % 256) as f32 / 255.0).collect();
        let pixels = Tensor::from_vec(values.clone(), (1, 784), &Device::Cpu).unwrap();
        let x = to_logit(&pixels, &mut NoiseSource::new(3)).unwrap();
        let back = to_pixels(&x).unwrap();
        assert_eq!(back.dims(), [1, 1, 28, 28]);
        let back = back.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (p, q) in values.iter().zip(&back) {
            let (p, q) = (f64::from(*p), f64::from(*q));
            let clamped = p.clamp(1e-3, 1.0 - 1e-3);
            assert!(
                (q - p).abs() <= 1.0 / 512.0 + 1e-5 || (q - clamped).abs() < 1e-5,
                "pixel {p} -> {q}"
            );
            assert!((1e-3 - 1e-6..=1.0 - 1e-3 + 1e-6).contains(&q));
        }
    }
}
