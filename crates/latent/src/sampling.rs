//! Langevin sampling of an energy-based latent-variable model (BiSM Sec. 5.2 and App. B.2;
//! the reference's `sample_joint` and `csample_v`): adapters that present the joint density
//! `p~(v, h)` over one concatenated state, or the conditional `p~(v | h)` at a fixed `h`, as a
//! [`LogDensity`], for the annealed Langevin sampler of the `train` crate.

use candle_core::{bail, Result, Tensor};
use sm_objectives::{JointLogDensity, LogDensity};

/// `log p~(v, h)` over the state `x = [flatten(v); h]`, `[B, D + H]`.
#[derive(Debug)]
pub struct JointState<'a, M: ?Sized> {
    model: &'a M,
    visible: Vec<usize>,
    latent: usize,
}

impl<'a, M: JointLogDensity + ?Sized> JointState<'a, M> {
    /// The joint density of `model` for visible values of per-sample shape `visible` (e.g.
    /// `[1, 32, 32]`) and `latent`-sized `h`.
    ///
    /// # Errors
    /// An empty visible shape or a zero size.
    pub fn new(model: &'a M, visible: &[usize], latent: usize) -> Result<Self> {
        if visible.is_empty() || visible.contains(&0) || latent == 0 {
            bail!(
                "the joint state needs nonzero sizes, got visible {visible:?} and latent {latent}"
            )
        }
        Ok(Self {
            model,
            visible: visible.to_vec(),
            latent,
        })
    }

    fn visible_size(&self) -> usize {
        self.visible.iter().product()
    }

    /// `[flatten(v); h]`.
    ///
    /// # Errors
    /// Shapes that do not fit.
    pub fn join(&self, v: &Tensor, h: &Tensor) -> Result<Tensor> {
        let b = v.dim(0)?;
        if v.dims()[1..] != self.visible[..] || h.dims() != [b, self.latent] {
            bail!(
                "v {:?} and h {:?} do not fit the visible shape {:?} and latent size {}",
                v.dims(),
                h.dims(),
                self.visible,
                self.latent
            )
        }
        Tensor::cat(&[v.flatten_from(1)?, h.clone()], 1)
    }

    /// `(v, h)` from a joint state.
    ///
    /// # Errors
    /// A state of another width.
    pub fn split(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, width) = x.dims2()?;
        let d = self.visible_size();
        if width != d + self.latent {
            bail!(
                "a joint state has {} values per sample, got {width}",
                d + self.latent
            )
        }
        let mut shape = vec![b];
        shape.extend(&self.visible);
        Ok((
            x.narrow(1, 0, d)?.reshape(shape)?,
            x.narrow(1, d, self.latent)?,
        ))
    }
}

impl<M: JointLogDensity + ?Sized> LogDensity for JointState<'_, M> {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        let (v, h) = self.split(x)?;
        self.model.joint_log_density(&v, &h)
    }
}

/// `log p~(v, h)` as a function of `v` at a fixed `h`: `p(v | h)` up to a constant.
#[derive(Debug)]
pub struct Conditional<'a, M: ?Sized> {
    model: &'a M,
    h: Tensor,
}

impl<'a, M: JointLogDensity + ?Sized> Conditional<'a, M> {
    /// The conditional of `model` at `h` (`[B, H]`, detached).
    pub fn new(model: &'a M, h: &Tensor) -> Self {
        Self {
            model,
            h: h.detach(),
        }
    }
}

impl<M: JointLogDensity + ?Sized> LogDensity for Conditional<'_, M> {
    fn log_density(&self, v: &Tensor) -> Result<Tensor> {
        self.model.joint_log_density(v, &self.h)
    }
}
