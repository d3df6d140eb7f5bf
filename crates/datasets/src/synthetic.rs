//! Synthetic 2-D (and D-dimensional) densities: the checkerboard of BiSM Sec. 5.1 / VaGES App. F
//! (60000 training and 10000 test points) and Gaussian mixtures, with their exact log-densities
//! for likelihood evaluation and density plots.

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::{DataError, Result};

/// Uniform density on the "black" cells (row + column even) of a `cells x cells` checkerboard
/// covering `[0, 1]^2`. `cells = 2` is the 2 x 2 board of the GRBM experiments: the squares
/// `[0, 1/2]^2` and `[1/2, 1]^2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkerboard {
    /// Cells per side (at least 2).
    pub cells: usize,
}

impl Default for Checkerboard {
    fn default() -> Self {
        Self { cells: 2 }
    }
}

impl Checkerboard {
    fn black_cells(&self) -> Vec<(usize, usize)> {
        (0..self.cells)
            .flat_map(|r| (0..self.cells).map(move |c| (r, c)))
            .filter(|(r, c)| (r + c) % 2 == 0)
            .collect()
    }

    /// `n` points `[n, 2]` (`f64`), deterministic given `seed`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] for `cells < 2`.
    pub fn sample(&self, n: usize, seed: u64, device: &Device) -> Result<Tensor> {
        if self.cells < 2 {
            return Err(DataError::InvalidArgument(format!(
                "a checkerboard needs at least 2 cells per side, got {}",
                self.cells
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let black = self.black_cells();
        let w = 1.0 / self.cells as f64;
        let mut data = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let (r, c) = black[rng.random_range(0..black.len())];
            data.push((c as f64 + rng.random::<f64>()) * w);
            data.push((r as f64 + rng.random::<f64>()) * w);
        }
        Ok(Tensor::from_vec(data, (n, 2), device)?)
    }

    /// The exact log-density at a point: `-ln(area of the black cells)` on them, `-inf` off.
    pub fn log_density(&self, x: f64, y: f64) -> f64 {
        let area = self.black_cells().len() as f64 / (self.cells * self.cells) as f64;
        let inside = (0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y);
        let cell = |t: f64| ((t * self.cells as f64) as usize).min(self.cells - 1);
        if inside && (cell(x) + cell(y)) % 2 == 0 {
            -area.ln()
        } else {
            f64::NEG_INFINITY
        }
    }
}

/// An isotropic Gaussian mixture `sum_k w_k N(mu_k, std^2 I)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    /// Component means, all of one dimension.
    pub means: Vec<Vec<f64>>,
    /// Component weights (normalised internally).
    pub weights: Vec<f64>,
    /// Common standard deviation.
    pub std: f64,
}

impl GaussianMixture {
    /// `k` equally weighted components evenly spaced on a circle of `radius` (the "ring" toy).
    pub fn ring(k: usize, radius: f64, std: f64) -> Self {
        let means = (0..k)
            .map(|i| {
                let a = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
                vec![radius * a.cos(), radius * a.sin()]
            })
            .collect();
        Self {
            means,
            weights: vec![1.0; k],
            std,
        }
    }

    fn validate(&self) -> Result<usize> {
        let d = self.means.first().map_or(0, Vec::len);
        let ok = d > 0
            && self
                .means
                .iter()
                .all(|m| m.len() == d && m.iter().all(|v| v.is_finite()))
            && self.weights.len() == self.means.len()
            && self.weights.iter().all(|w| w.is_finite() && *w >= 0.0)
            && self.weights.iter().sum::<f64>() > 0.0
            && self.std.is_finite()
            && self.std > 0.0;
        if !ok {
            return Err(DataError::InvalidArgument(
                "a Gaussian mixture needs means of one dimension >= 1, one non-negative weight per mean (not all zero) and std > 0".into(),
            ));
        }
        Ok(d)
    }

    /// `n` points `[n, D]` (`f64`), deterministic given `seed`.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] for inconsistent parameters.
    pub fn sample(&self, n: usize, seed: u64, device: &Device) -> Result<Tensor> {
        let d = self.validate()?;
        let total: f64 = self.weights.iter().sum();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mut u = rng.random::<f64>() * total;
            let k = self.weights.iter().position(|&w| {
                u -= w;
                u < 0.0
            });
            let mean = &self.means[k.unwrap_or(self.means.len() - 1)];
            data.extend(
                mean.iter()
                    .map(|m| m + self.std * rng.sample::<f64, _>(StandardNormal)),
            );
        }
        Ok(Tensor::from_vec(data, (n, d), device)?)
    }

    /// The exact log-density at a point.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] for inconsistent parameters or a point of the wrong length.
    pub fn log_density(&self, x: &[f64]) -> Result<f64> {
        let d = self.validate()?;
        if x.len() != d {
            return Err(DataError::InvalidArgument(format!(
                "point of dimension {} for a mixture in dimension {d}",
                x.len()
            )));
        }
        let total: f64 = self.weights.iter().sum();
        let norm = -0.5 * d as f64 * (2.0 * std::f64::consts::PI * self.std * self.std).ln();
        let logs: Vec<f64> = self
            .means
            .iter()
            .zip(&self.weights)
            .map(|(m, w)| {
                (w / total).ln() + norm
                    - m.iter().zip(x).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
                        / (2.0 * self.std * self.std)
            })
            .collect();
        let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        Ok(max + logs.iter().map(|l| (l - max).exp()).sum::<f64>().ln())
    }
}

/// The 2-D densities of the training-method gallery, each inside `[-4.5, 4.5]^2`: a 4 x 4
/// checkerboard on `[-4, 4]^2`, three concentric rings (radii 1, 2, 3, points in proportion to
/// the radius, radial noise 0.08), two interleaved moons (noise 0.1, scaled by 2), eight
/// Gaussians on a circle of radius 3 (std 0.3) and one spiral arm (radius growing to 4, noise
/// 0.1). Samples come from a generator seeded by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Toy2d {
    /// 8 of 16 squares of side 2, alternating.
    Checkerboard,
    /// Concentric rings.
    Rings,
    /// Two interleaved half circles.
    TwoMoons,
    /// A mixture of eight Gaussians.
    EightGaussians,
    /// One spiral arm.
    Spiral,
}

impl Toy2d {
    /// Every density, in the gallery's order.
    pub const ALL: [Toy2d; 5] = [
        Toy2d::Checkerboard,
        Toy2d::Rings,
        Toy2d::TwoMoons,
        Toy2d::EightGaussians,
        Toy2d::Spiral,
    ];

    /// Command-line name.
    pub fn key(self) -> &'static str {
        match self {
            Toy2d::Checkerboard => "checkerboard",
            Toy2d::Rings => "rings",
            Toy2d::TwoMoons => "two-moons",
            Toy2d::EightGaussians => "8-gaussians",
            Toy2d::Spiral => "spiral",
        }
    }

    /// Parses [`Toy2d::key`].
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.key() == s.trim())
            .ok_or_else(|| {
                DataError::InvalidArgument(format!(
                    "unknown 2-D density `{s}`; expected one of checkerboard, rings, two-moons, 8-gaussians, spiral"
                ))
            })
    }

    /// `n` points, `[n, 2]` f64.
    ///
    /// # Errors
    /// Tensor errors only.
    pub fn sample(self, n: usize, seed: u64, device: &Device) -> Result<Tensor> {
        use std::f64::consts::PI;
        if let Toy2d::Checkerboard = self {
            let unit = Checkerboard { cells: 4 }.sample(n, seed, &Device::Cpu)?;
            return Ok(((unit * 8.0)? - 4.0)?.to_device(device)?);
        }
        if let Toy2d::EightGaussians = self {
            return GaussianMixture::ring(8, 3.0, 0.3).sample(n, seed, device);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut gauss = move || -> f64 { rng.sample(StandardNormal) };
        let mut data = Vec::with_capacity(2 * n);
        let mut uniform = StdRng::seed_from_u64(seed ^ 0x005e_ed2d);
        for _ in 0..n {
            let (x, y) = match self {
                Toy2d::Rings => {
                    // Radius 1, 2 or 3 with probability 1/6, 2/6, 3/6.
                    let u = uniform.random::<f64>() * 6.0;
                    let r = if u < 1.0 {
                        1.0
                    } else if u < 3.0 {
                        2.0
                    } else {
                        3.0
                    } + 0.08 * gauss();
                    let a = uniform.random::<f64>() * 2.0 * PI;
                    (r * a.cos(), r * a.sin())
                }
                Toy2d::TwoMoons => {
                    let t = uniform.random::<f64>() * PI;
                    let (mx, my) = if uniform.random::<bool>() {
                        (t.cos(), t.sin())
                    } else {
                        (1.0 - t.cos(), 0.5 - t.sin())
                    };
                    (
                        2.0 * (mx - 0.5 + 0.1 * gauss()),
                        2.0 * (my - 0.25 + 0.1 * gauss()),
                    )
                }
                Toy2d::Spiral => {
                    let s = uniform.random::<f64>().sqrt();
                    let a = 3.0 * PI * s;
                    let r = 0.3 + 3.7 * s;
                    (r * a.cos() + 0.1 * gauss(), r * a.sin() + 0.1 * gauss())
                }
                Toy2d::Checkerboard | Toy2d::EightGaussians => unreachable!("handled above"),
            };
            data.push(x);
            data.push(y);
        }
        Ok(Tensor::from_vec(data, (n, 2), device)?)
    }
}
