//! Seeded, reproducible randomness for the objectives: Gaussian noise, random projections
//! (Gaussian, Rademacher, uniform on a sphere of radius eps, FD-SM Sec. 4) and the noise-level
//! schedules of MDSM (App. C.2) and NCSN.
//!
//! Candle's CPU device cannot be seeded, so every draw comes from a seeded [`StdRng`] of ours
//! and is copied into a tensor on the requested device.

use candle_core::{bail, DType, Device, Result, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A random projection `v` together with `C_v = E|v|^2`, the normalising constant of the sliced
/// objectives (FD-SM Eq. 3): dividing by it makes them estimate the per-dimension score-matching
/// loss whatever the scale of `v` (App. B.2).
#[derive(Debug, Clone)]
pub struct Projection {
    /// The directions, same shape as the data `[B, ...]`.
    pub v: Tensor,
    /// `C_v = E|v|^2` of the distribution `v` was drawn from.
    pub c_v: f64,
}

/// The distribution of random projections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Directions {
    /// `v ~ N(0, I)`, `C_v = D` (the deep-EBM SSM code).
    Gaussian,
    /// Independent `+-1` entries, `C_v = D` (the sliced-score-matching code's default).
    Rademacher,
    /// Uniform on the sphere `|v| = radius`, `C_v = radius^2` (FD-SM Sec. 4, radius `eps`).
    Sphere {
        /// The radius `eps`.
        radius: f64,
    },
}

/// A seeded source of the random tensors the objectives need.
#[derive(Debug, Clone)]
pub struct NoiseSource {
    rng: StdRng,
}

impl NoiseSource {
    /// A source whose draws are a deterministic function of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The underlying generator (e.g. to draw batch indices from the same stream).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Standard normal entries of the given shape.
    pub fn gaussian<S: Into<Shape>>(
        &mut self,
        shape: S,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.elem_count();
        let rng = &mut self.rng;
        tensor_of(
            (0..n).map(|_| rng.sample(StandardNormal)),
            shape,
            dtype,
            device,
        )
    }

    /// Standard normal entries shaped like `x`.
    pub fn gaussian_like(&mut self, x: &Tensor) -> Result<Tensor> {
        self.gaussian(x.shape().clone(), x.dtype(), x.device())
    }

    /// Uniform entries on `[0, 1)` shaped like `x`.
    pub fn uniform_like(&mut self, x: &Tensor) -> Result<Tensor> {
        let rng = &mut self.rng;
        tensor_of(
            (0..x.elem_count()).map(|_| rng.random::<f64>()),
            x.shape().clone(),
            x.dtype(),
            x.device(),
        )
    }

    /// One projection per sample, shaped like `x` (`[B, ...]`).
    ///
    /// # Errors
    /// A sphere radius that is not finite and positive, or an `x` without data dimensions.
    pub fn projection(&mut self, x: &Tensor, kind: Directions) -> Result<Projection> {
        let (batch, dim) = crate::validate::batch_and_dim(x, "x")?;
        let (shape, dtype, device) = (x.shape().clone(), x.dtype(), x.device());
        let rng = &mut self.rng;
        let (v, c_v) = match kind {
            Directions::Gaussian => (
                tensor_of(
                    (0..batch * dim).map(|_| rng.sample(StandardNormal)),
                    shape,
                    dtype,
                    device,
                )?,
                dim as f64,
            ),
            Directions::Rademacher => (
                tensor_of(
                    (0..batch * dim).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }),
                    shape,
                    dtype,
                    device,
                )?,
                dim as f64,
            ),
            Directions::Sphere { radius } => {
                crate::validate::positive(radius, "sphere radius eps")?;
                let mut data = Vec::with_capacity(batch * dim);
                for _ in 0..batch {
                    let row: Vec<f64> = loop {
                        let row: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
                        if row.iter().any(|a: &f64| *a != 0.0) {
                            break row;
                        }
                    };
                    let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt();
                    data.extend(row.iter().map(|a| a * radius / norm));
                }
                (
                    tensor_of(data.into_iter(), shape, dtype, device)?,
                    radius * radius,
                )
            }
        };
        Ok(Projection { v, c_v })
    }

    /// Uniformly random noise-level indices in `0..levels`, shape `[batch]`, `u32` (NCSN).
    pub fn levels(&mut self, batch: usize, levels: usize, device: &Device) -> Result<Tensor> {
        if levels == 0 {
            bail!("the number of noise levels must be at least 1")
        }
        let idx: Vec<u32> = (0..batch)
            .map(|_| self.rng.random_range(0..levels as u32))
            .collect();
        Tensor::from_vec(idx, batch, device)
    }
}

/// A tensor of `dtype` on `device` holding `values` (f64 draws) rounded to the dtype as
/// Candle's `to_dtype` rounds them. For f32 and f64 the values go straight into a buffer of the
/// dtype: no f64 tensor and conversion pass in between (one pass and one buffer instead of
/// three for the usual f32 noise).
fn tensor_of(
    values: impl Iterator<Item = f64>,
    shape: Shape,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    match dtype {
        DType::F32 => Tensor::from_vec(
            values.map(|x| x as f32).collect::<Vec<f32>>(),
            shape,
            device,
        ),
        DType::F64 => Tensor::from_vec(values.collect::<Vec<f64>>(), shape, device),
        _ => Tensor::from_vec(values.collect::<Vec<f64>>(), shape, device)?.to_dtype(dtype),
    }
}

/// `n` noise levels evenly spaced from `low` to `high` (MDSM: `linspace(0.05, 1.2, B)`, one per
/// batch position, FD-SM App. C.2).
///
/// # Errors
/// Non-positive or non-finite ends, `low > high`, or `n == 0`.
pub fn linear_sigmas(low: f64, high: f64, n: usize) -> Result<Vec<f64>> {
    check_schedule(low, high, n)?;
    Ok(match n {
        1 => vec![low],
        _ => (0..n)
            .map(|i| low + (high - low) * i as f64 / (n - 1) as f64)
            .collect(),
    })
}

/// `n` noise levels in geometric progression from `high` down to `low` (NCSN: 1 to 0.01, L = 10).
///
/// # Errors
/// As [`linear_sigmas`].
pub fn geometric_sigmas(high: f64, low: f64, n: usize) -> Result<Vec<f64>> {
    check_schedule(low, high, n)?;
    Ok(match n {
        1 => vec![high],
        _ => {
            let ratio = (low / high).ln() / (n - 1) as f64;
            (0..n).map(|i| high * (ratio * i as f64).exp()).collect()
        }
    })
}

fn check_schedule(low: f64, high: f64, n: usize) -> Result<()> {
    crate::validate::positive(low, "lowest noise level")?;
    crate::validate::positive(high, "highest noise level")?;
    if low > high || n == 0 {
        bail!("a noise schedule needs low <= high and n >= 1, got low {low}, high {high}, n {n}")
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{tensor_of, NoiseSource};
    use candle_core::{DType, Device, Tensor};

    /// Draws written straight into an f32 buffer equal, bit for bit, the f64 tensor converted
    /// by Candle (the path they replace), for values that round up, round down, overflow,
    /// underflow and tie; and the noise source's draws match the same oracle.
    #[test]
    fn direct_f32_values_round_as_candles_conversion() -> candle_core::Result<()> {
        let cpu = Device::Cpu;
        let tie = 1.0 + f64::from(f32::EPSILON) / 2.0;
        let values = [
            0.1,
            -2.5e-40,
            1e-50,
            3.5e38,
            -1e300,
            tie,
            -tie,
            1.0 + 3.0 * f64::from(f32::EPSILON) / 2.0,
            f64::NAN,
        ];
        let direct = tensor_of(values.into_iter(), values.len().into(), DType::F32, &cpu)?;
        let converted = Tensor::new(&values[..], &cpu)?.to_dtype(DType::F32)?;
        let bits = |t: &Tensor| -> candle_core::Result<Vec<u32>> {
            Ok(t.to_vec1::<f32>()?.iter().map(|x| x.to_bits()).collect())
        };
        assert_eq!(bits(&direct)?, bits(&converted)?);
        let (mut a, mut b) = (NoiseSource::new(7), NoiseSource::new(7));
        let noise = a.gaussian(1000, DType::F32, &cpu)?;
        let oracle = b.gaussian(1000, DType::F64, &cpu)?.to_dtype(DType::F32)?;
        assert_eq!(bits(&noise)?, bits(&oracle)?);
        Ok(())
    }
}
