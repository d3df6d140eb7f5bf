//! Conditional instance normalisation++ of NCSN (Song and Ermon 2019, App. A.1): instance
//! normalisation whose scale `gamma`, shift `beta` and a third vector `alpha` are chosen by the
//! noise level, with the channel means (normalised across channels) added back,
//! `gamma_l (IN(x) + alpha_l mu~) + beta_l`, `mu~ = (mu - mean(mu)) / sqrt(var(mu) + 1e-5)`,
//! `var` the unbiased variance over channels as PyTorch's `torch.var`.
//!
//! The level's rows are picked by a product with the one-hot matrix of the levels (see
//! [`LevelOneHot`]) rather than Candle's `gather`/`embedding`, so every derivative is a matrix
//! product.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// The one-hot matrix `[B, L]` of each sample's noise level, in the network's dtype.
#[derive(Debug, Clone)]
pub struct LevelOneHot(pub(crate) Tensor);

impl LevelOneHot {
    /// From level indices `[B]` (any integer or float dtype) among `levels`.
    ///
    /// # Errors
    /// A tensor that is not 1-D, or an index outside `0..levels`.
    pub fn new(index: &Tensor, levels: usize, like: &Tensor) -> Result<Self> {
        let b = match index.dims() {
            [b] => *b,
            other => candle_core::bail!("noise-level indices must be [B], got {other:?}"),
        };
        let idx = index.to_dtype(candle_core::DType::U32)?;
        let host = idx.to_vec1::<u32>()?;
        if let Some(bad) = host.iter().find(|&&i| i as usize >= levels) {
            candle_core::bail!("noise-level index {bad} is out of range for {levels} levels")
        }
        let range = Tensor::arange(0u32, levels as u32, index.device())?;
        let one_hot = idx
            .reshape((b, 1))?
            .broadcast_eq(&range.reshape((1, levels))?)?
            .to_dtype(like.dtype())?;
        Ok(Self(one_hot))
    }
}

/// One conditional instance normalisation++ layer: `gamma`, `alpha` `[L, C]` (initialised
/// `N(1, 0.02)`) and `beta` `[L, C]` (zeros).
#[derive(Debug, Clone)]
pub struct CondInstanceNormPlus {
    gamma: Tensor,
    alpha: Tensor,
    beta: Tensor,
}

impl CondInstanceNormPlus {
    /// `channels` (at least 2: the spread of the channel means needs two) for `levels` noise
    /// levels.
    ///
    /// # Errors
    /// Fewer than two channels; a `VarBuilder` lacking a weight or holding one of the wrong
    /// shape.
    pub fn new(channels: usize, levels: usize, vb: VarBuilder) -> Result<Self> {
        if channels < 2 {
            candle_core::bail!(
                "conditional instance normalisation++ needs at least 2 channels, got {channels}"
            )
        }
        let near_one = Init::Randn {
            mean: 1.0,
            stdev: 0.02,
        };
        Ok(Self {
            gamma: vb.get_with_hints((levels, channels), "gamma", near_one)?,
            alpha: vb.get_with_hints((levels, channels), "alpha", near_one)?,
            beta: vb.get_with_hints((levels, channels), "beta", Init::Const(0.0))?,
        })
    }

    /// Normalises `x` `[B, C, H, W]` with each sample's level.
    ///
    /// # Errors
    /// Shapes that do not fit.
    pub fn forward(&self, x: &Tensor, level: &LevelOneHot) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let pick = |t: &Tensor| -> Result<Tensor> { level.0.matmul(t) };
        // Per sample and channel: the mean over positions, and the channel means' spread.
        let flat = x.reshape((b, c, h * w))?;
        let mu = flat.mean_keepdim(D::Minus1)?; // [B, C, 1]
        let means = mu.squeeze(D::Minus1)?; // [B, C]
        let across = means.broadcast_sub(&means.mean_keepdim(1)?)?;
        let spread_var = (across.sqr()?.sum_keepdim(1)? / (c as f64 - 1.0))?;
        let spread = across.broadcast_div(&(spread_var + 1e-5)?.sqrt()?)?;
        // gamma (x - mu) / sqrt(var + eps) + gamma alpha spread + beta, the per-channel factors
        // combined first: four passes over the activations instead of six.
        let centred = flat.broadcast_sub(&mu)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let gamma = pick(&self.gamma)?;
        let scale = gamma.unsqueeze(D::Minus1)?.div(&(var + 1e-5)?.sqrt()?)?;
        let shift = ((&gamma * pick(&self.alpha)?)? * spread)?.add(&pick(&self.beta)?)?;
        centred
            .broadcast_mul(&scale)?
            .broadcast_add(&shift.unsqueeze(D::Minus1)?)?
            .reshape((b, c, h, w))
    }
}
