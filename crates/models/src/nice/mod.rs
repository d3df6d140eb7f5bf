//! NICE (Dinh et al. 2015, "NICE: Non-linear Independent Components Estimation") as the
//! sliced-score-matching and FD-SM experiments build it (FD-SM Sec. 6.2, App. C.2): pixels split
//! into even and odd positions, additive coupling layers that alternately update the odd and the
//! even half by a softplus network of the other, and a final diagonal scale `exp(s)`:
//! `log p(x) = log N(y; 0, I) + sum_i s_i`, exact and normalised (additive couplings have unit
//! Jacobian determinant).
//!
//! [`Nice::approx_bp`] and [`Nice::curvature_propagation`] (in `curvature.rs`) estimate the
//! Hessian diagonal of `log p` by propagating second-order quantities backwards by hand, the
//! Approx-BP and CP baselines of Table 3.

mod curvature;

pub use curvature::ScoreAndDiagonal;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use layers::{DenseActivation, Linear};
use serde::{Deserialize, Serialize};
use sm_objectives::LogDensity;

/// `log(2 pi) / 2`, the per-dimension constant of the standard normal log-density.
const HALF_LOG_TWO_PI: f64 = 0.918_938_533_204_672_7;

/// Architecture of a [`Nice`] flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NiceConfig {
    /// Data dimension `D` (even): 784 for MNIST.
    pub dim: usize,
    /// Width of every hidden layer of a coupling network (reference 1000).
    pub hidden: usize,
    /// Hidden layers per coupling network (reference 4: `D/2 - 1000 - 1000 - 1000 - 1000 - D/2`,
    /// five linear layers); 0 makes each network one linear map `D/2 -> D/2`.
    pub hidden_layers: usize,
    /// Additive coupling layers (reference 4), alternately updating the odd and the even half.
    pub couplings: usize,
}

impl NiceConfig {
    /// The reference network for MNIST: `D = 784`, four couplings of
    /// `392-1000-1000-1000-1000-392` softplus networks.
    pub fn mnist() -> Self {
        Self {
            dim: 784,
            hidden: 1000,
            hidden_layers: 4,
            couplings: 4,
        }
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A message naming the bad size.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.dim < 2 || self.dim % 2 != 0 {
            return Err(format!(
                "NICE splits the data into two equal halves: dim must be even and >= 2, got {}",
                self.dim
            ));
        }
        if self.couplings == 0 {
            return Err("NICE needs at least one coupling layer".into());
        }
        if self.hidden_layers > 0 && self.hidden == 0 {
            return Err("the coupling networks' hidden width must be >= 1".into());
        }
        Ok(())
    }

    /// The widths of one coupling network, from its input (`D/2`) to its output (`D/2`).
    pub fn net_sizes(&self) -> Vec<usize> {
        let half = self.dim / 2;
        let mut sizes = vec![half];
        sizes.extend(std::iter::repeat_n(self.hidden, self.hidden_layers));
        sizes.push(half);
        sizes
    }

    /// Multiply-accumulates of one forward pass of one sample: the coupling networks' products.
    pub fn forward_macs_per_sample(&self) -> u64 {
        let net: u64 = self
            .net_sizes()
            .windows(2)
            .map(|w| (w[0] * w[1]) as u64)
            .sum();
        net * self.couplings as u64
    }

    /// Trainable parameters: the coupling networks' weights and biases and the `D` scales.
    pub fn parameter_count(&self) -> u64 {
        let net: u64 = self
            .net_sizes()
            .windows(2)
            .map(|w| (w[0] as u64 + 1) * w[1] as u64)
            .sum();
        net * self.couplings as u64 + self.dim as u64
    }
}

/// Which half a coupling layer reads and which it updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Half {
    /// Pixels `0, 2, 4, ...`.
    Even,
    /// Pixels `1, 3, 5, ...`.
    Odd,
}

/// One coupling network `m`: linear layers with softplus between them.
#[derive(Debug, Clone)]
pub(crate) struct CouplingNet {
    pub(crate) layers: Vec<Linear>,
}

impl CouplingNet {
    fn new(sizes: &[usize], vb: VarBuilder) -> Result<Self> {
        // PyTorch's default initialisation of nn.Linear, as the reference uses.
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| layers::linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// `m(on)`, `[B, D/2]`.
    fn forward(&self, on: &Tensor) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut h = on.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = if i < last {
                layer.forward_activated(&h, DenseActivation::Softplus)?
            } else {
                layer.forward(&h)?
            };
        }
        Ok(h)
    }
}

/// The NICE flow. Weights `coupling<k>.layers.<i>.weight` `[out, in]` and `.bias` `[out]`, and
/// `scale` `[D]` (the log-scales `s`, initialised to 0).
#[derive(Debug, Clone)]
pub struct Nice {
    pub(crate) couplings: Vec<CouplingNet>,
    pub(crate) scale: Tensor,
    config: NiceConfig,
}

impl Nice {
    /// Builds the flow, creating or loading its weights through `vb`.
    ///
    /// # Errors
    /// A bad configuration ([`NiceConfig::check`]), or a `VarBuilder` lacking a weight or holding
    /// one of the wrong shape (e.g. a checkpoint of another architecture).
    pub fn new(config: &NiceConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let sizes = config.net_sizes();
        let couplings = (0..config.couplings)
            .map(|k| CouplingNet::new(&sizes, vb.pp(format!("coupling{k}"))))
            .collect::<Result<_>>()?;
        let scale = vb.get_with_hints(config.dim, "scale", Init::Const(0.0))?;
        Ok(Self {
            couplings,
            scale,
            config: config.clone(),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &NiceConfig {
        &self.config
    }

    /// Which half coupling `k` updates: the odd pixels (from the even ones) for even `k`, the even
    /// pixels for odd `k`.
    pub(crate) fn updated_half(k: usize) -> Half {
        if k % 2 == 0 {
            Half::Odd
        } else {
            Half::Even
        }
    }

    /// `x` as `[B, D]`, checking its size.
    pub(crate) fn flat(&self, x: &Tensor, what: &str) -> Result<Tensor> {
        let dims = x.dims();
        let b = *dims.first().ok_or_else(|| {
            candle_core::Error::Msg(format!("NICE: {what} is a scalar, expected [B, D]"))
        })?;
        let d = x.elem_count() / b.max(1);
        if b == 0 || d != self.config.dim {
            candle_core::bail!(
                "NICE: {what} must hold {} values per sample (shape [B, {}] or an image shape of \
                 that size), got shape {dims:?}",
                self.config.dim,
                self.config.dim
            )
        }
        x.reshape((b, d))
    }

    /// Splits `[B, D]` into its even and odd pixels, each `[B, D/2]`.
    pub(crate) fn split(x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, d) = x.dims2()?;
        let pairs = x.reshape((b, d / 2, 2))?;
        let even = pairs.narrow(2, 0, 1)?.reshape((b, d / 2))?;
        let odd = pairs.narrow(2, 1, 1)?.reshape((b, d / 2))?;
        Ok((even, odd))
    }

    /// Interleaves even and odd pixels back into `[B, D]`.
    pub(crate) fn merge(even: &Tensor, odd: &Tensor) -> Result<Tensor> {
        let (b, half) = even.dims2()?;
        Tensor::stack(&[even, odd], 2)?.reshape((b, 2 * half))
    }

    /// The latent code `y = exp(s) * f(x)`, `[B, D]`.
    ///
    /// # Errors
    /// An input whose samples do not hold `D` values.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.flat(x, "the input")?;
        let (mut even, mut odd) = Self::split(&x)?;
        for (k, net) in self.couplings.iter().enumerate() {
            match Self::updated_half(k) {
                Half::Odd => odd = (&odd + net.forward(&even)?)?,
                Half::Even => even = (&even + net.forward(&odd)?)?,
            }
        }
        Self::merge(&even, &odd)?.broadcast_mul(&self.scale.exp()?)
    }

    /// The inverse map: the data point whose latent code is `y` (`[B, D]`), used to sample with
    /// `y ~ N(0, I)`.
    ///
    /// # Errors
    /// An input whose samples do not hold `D` values.
    pub fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        let y = self.flat(y, "the latent code")?;
        let h = y.broadcast_mul(&self.scale.neg()?.exp()?)?;
        let (mut even, mut odd) = Self::split(&h)?;
        for (k, net) in self.couplings.iter().enumerate().rev() {
            match Self::updated_half(k) {
                Half::Odd => odd = (&odd - net.forward(&even)?)?,
                Half::Even => even = (&even - net.forward(&odd)?)?,
            }
        }
        Self::merge(&even, &odd)
    }

    /// The exact, normalised `log p(x) = log N(y; 0, I) + sum_i s_i`, `[B]`.
    ///
    /// # Errors
    /// An input whose samples do not hold `D` values.
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward(x)?;
        let d = self.config.dim as f64;
        let log_det = self.scale.sum_all()?;
        ((y.sqr()?.sum(1)? * -0.5)? - d * HALF_LOG_TWO_PI)?.broadcast_add(&log_det)
    }
}

impl LogDensity for Nice {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        self.log_prob(x)
    }
}
