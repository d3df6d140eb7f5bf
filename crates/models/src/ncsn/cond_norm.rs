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
        let (b, c, _, _) = x.dims4()?;
        let pick = |t: &Tensor| -> Result<Tensor> { level.0.matmul(t)?.reshape((b, c, 1, 1)) };
        let means = x.flatten_from(2)?.mean(D::Minus1)?; // [B, C]
        let centred = means.broadcast_sub(&means.mean_keepdim(1)?)?;
        let var = (centred.sqr()?.sum_keepdim(1)? / (c as f64 - 1.0))?;
        let spread = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        let h = layers::instance_norm(x, 1e-5)?;
        let h = h.broadcast_add(
            &spread
                .reshape((b, c, 1, 1))?
                .broadcast_mul(&pick(&self.alpha)?)?,
        )?;
        h.broadcast_mul(&pick(&self.gamma)?)?
            .broadcast_add(&pick(&self.beta)?)
    }
}
