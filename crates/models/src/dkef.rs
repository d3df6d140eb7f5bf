//! The deep kernel exponential family (DKEF, Wenliang et al. 2019) as FD-SM Sec. 6.1 trains it
//! on UCI data (after the sliced-score-matching code):
//! `log p~(x) = log q0(x) + f(x)`, `q0 = N(0, s0^2 I)`,
//! `f(x) = sum_m alpha_m k(x, z_m)`, `k(x, z) = sum_j softmax(w)_j exp(-|phi_j(x) - phi_j(z)|^2 /
//! (2 sigma_j^2))`, with feature networks `phi_j` (`Linear(d, h)`-softplus-`Linear(h, h)`-softplus-
//! `Linear(h, h)` plus a bias-free linear skip), learnable bandwidths `sigma_j^2 = 10^l_j`,
//! learnable inducing points `z_m`, and kernel weights `alpha` that are not parameters but the
//! closed-form minimiser of the regularised score-matching loss on a batch:
//! `alpha = -(G + lambda I)^-1 b`, `G_mm' = mean_n sum_c d_c k(x_n, z_m) d_c k(x_n, z_m')`,
//! `b_m = mean_n sum_c [d_c^2 k(x_n, z_m) + d_c k(x_n, z_m) d_c log q0(x_n)]`, over all
//! coordinates `c` (exact), one random direction `v` per point (sliced, unbiased for Rademacher
//! `v`), or that direction by finite differences (FD-SSM's form).
//!
//! The derivatives of `k` with respect to `x` come from derivatives of the feature networks
//! propagated forwards by hand (Jacobian and second derivatives along each coordinate or
//! direction), built from differentiable Candle ops, so the parameters' gradients of the score-
//! matching loss need only first-order autodiff.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use layers::Linear;
use serde::{Deserialize, Serialize};
use sm_objectives::LogDensity;

/// Architecture and initial values of a [`Dkef`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DkefConfig {
    /// Data dimension `d`.
    pub dim: usize,
    /// Width of the feature networks' layers and of the features (reference 30).
    pub hidden: usize,
    /// Inducing points `M` (reference 200).
    pub inducing: usize,
    /// Initial `log10 sigma_j^2` of each kernel (reference 0, 0.5185, 1: three kernels).
    pub log10_bandwidths: Vec<f64>,
    /// Standard deviation of the base density `q0` (reference 2).
    pub q0_std: f64,
    /// Initial `log10 lambda`, the ridge of the kernel-weight solve (reference -2).
    pub log10_lambda: f64,
}

impl DkefConfig {
    /// The reference settings for data of dimension `dim`.
    pub fn reference(dim: usize) -> Self {
        Self {
            dim,
            hidden: 30,
            inducing: 200,
            log10_bandwidths: vec![0.0, 0.5185, 1.0],
            q0_std: 2.0,
            log10_lambda: -2.0,
        }
    }

    /// Checks the sizes and values.
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.dim == 0 || self.hidden == 0 || self.inducing == 0 {
            return Err(format!(
                "DKEF needs dim, hidden and inducing >= 1, got {}, {}, {}",
                self.dim, self.hidden, self.inducing
            ));
        }
        if self.log10_bandwidths.is_empty() {
            return Err("DKEF needs at least one kernel (log10_bandwidths)".into());
        }
        if !(self.q0_std.is_finite() && self.q0_std > 0.0) {
            return Err(format!(
                "q0_std must be finite and > 0, got {}",
                self.q0_std
            ));
        }
        if !self.log10_lambda.is_finite() || self.log10_bandwidths.iter().any(|v| !v.is_finite()) {
            return Err("log10_lambda and log10_bandwidths must be finite".into());
        }
        Ok(())
    }

    /// Trainable parameters: feature networks, bandwidths, mixture logits, inducing points and
    /// `log10 lambda`.
    pub fn parameter_count(&self) -> u64 {
        let (d, h) = (self.dim as u64, self.hidden as u64);
        let net = (d + 1) * h + (h + 1) * h * 2 + d * h;
        let k = self.log10_bandwidths.len() as u64;
        net * k + 2 * k + self.inducing as u64 * d + 1
    }
}

/// Which derivatives of the kernel with respect to `x` to take.
#[derive(Debug, Clone, Copy)]
pub enum KernelDerivatives<'a> {
    /// Along every coordinate (the exact score-matching quantities).
    Coordinates,
    /// Along one direction per point, `[N, d]` (sliced: unbiased for Rademacher directions).
    Direction(&'a Tensor),
    /// Along one direction per point by central finite differences of the kernel with step
    /// `eps` along the unit direction (`v / |v| * eps`), rescaled to `v` (FD-SSM's form).
    FiniteDifference {
        /// The directions, `[N, d]`.
        v: &'a Tensor,
        /// The step.
        eps: f64,
    },
}

/// The score-matching objective whose closed-form kernel weights and loss are computed.
#[derive(Debug, Clone, Copy)]
pub enum DkefObjective<'a> {
    /// Exact SM: every coordinate.
    Exact,
    /// SSM along one direction per point, `[N, d]` (Rademacher in the reference).
    Sliced(&'a Tensor),
    /// SSMVR: the full gradient norm and the second derivative along one direction per point.
    SlicedVr(&'a Tensor),
    /// SSM's quantities by nested reverse-mode autodiff, as the reference computes them (the
    /// directional derivatives of every `k(x, z_m)` by the double-backward trick, four reverse
    /// passes): the same values as [`DkefObjective::Sliced`], at autodiff's cost. Needs Candle's
    /// higher-order mode.
    SlicedAutodiff(&'a Tensor),
    /// FD-SSM: SSM's quantities by central finite differences along the direction.
    FiniteDifference {
        /// The directions, `[N, d]`.
        v: &'a Tensor,
        /// The FD step.
        eps: f64,
    },
}

/// The pieces of a score-matching objective on a set of points ([`Dkef::objective_terms`]):
/// what the closed-form kernel weights and the loss are computed from. They do not depend on
/// `lambda` or `alpha`, so a phase that trains only `lambda` computes them once
/// ([`ObjectiveTerms::detach`]).
#[derive(Debug, Clone)]
pub struct ObjectiveTerms {
    /// First derivatives of the kernel along the objective's coordinates or direction,
    /// `[N, M, C]`.
    pub grad: Tensor,
    /// The same of `log q0`, `[N, C]`.
    pub base_grad: Tensor,
    /// Summed second derivatives of the kernel, `[N, M]`.
    pub second: Tensor,
    /// Summed second derivatives of `log q0`, `[N]`.
    pub base_second: Tensor,
}

impl ObjectiveTerms {
    /// The same terms cut from the parameters' graph.
    pub fn detach(&self) -> Self {
        Self {
            grad: self.grad.detach(),
            base_grad: self.base_grad.detach(),
            second: self.second.detach(),
            base_second: self.base_second.detach(),
        }
    }

    /// The per-point loss with kernel weights `alpha` `[M]`, `[N]`.
    ///
    /// # Errors
    /// An `alpha` of the wrong length.
    pub fn loss(&self, alpha: &Tensor) -> Result<Tensor> {
        let a = alpha.unsqueeze(0)?.unsqueeze(2)?; // [1, M, 1]
        let grad = (self.grad.broadcast_mul(&a)?.sum(1)? + &self.base_grad)?; // [N, C]
        let second =
            (self.second.broadcast_mul(&alpha.unsqueeze(0)?)?.sum(1)? + &self.base_second)?;
        (grad.sqr()?.sum(1)? * 0.5)? + second
    }
}

type Parts = ObjectiveTerms;

/// The kernel between points and inducing points, with its derivatives in `x`.
#[derive(Debug, Clone)]
pub struct KernelTerms {
    /// `k(x_n, z_m)`, `[N, M]`.
    pub k: Tensor,
    /// First derivatives `d_c k(x_n, z_m)`, `[N, M, C]` (C = d, or 1 for a direction).
    pub grad: Tensor,
    /// Second derivatives `d_c^2 k(x_n, z_m)`, `[N, M, C]`.
    pub second: Tensor,
}

/// One feature network `phi_j`.
#[derive(Debug, Clone)]
struct FeatureNet {
    layers: [Linear; 3],
    skip: Linear,
}

impl FeatureNet {
    fn new(d: usize, h: usize, vb: VarBuilder) -> Result<Self> {
        // N(0, 1) / sqrt(fan_out), as the reference initialises them.
        let w = |name: &str, out: usize, inp: usize| -> Result<Tensor> {
            vb.get_with_hints(
                (out, inp),
                name,
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0 / (out as f64).sqrt(),
                },
            )
        };
        let b = |name: &str, out: usize| vb.get_with_hints(out, name, Init::Const(0.0));
        Ok(Self {
            layers: [
                Linear::new(w("layer0.weight", h, d)?, Some(b("layer0.bias", h)?)),
                Linear::new(w("layer1.weight", h, h)?, Some(b("layer1.bias", h)?)),
                Linear::new(w("layer2.weight", h, h)?, Some(b("layer2.bias", h)?)),
            ],
            skip: Linear::new(w("skip.weight", h, d)?, None),
        })
    }

    /// `phi(x)`, `[N, h]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a1 = layers::softplus(&self.layers[0].forward(x)?)?;
        let a2 = layers::softplus(&self.layers[1].forward(&a1)?)?;
        self.layers[2].forward(&a2)? + self.skip.forward(x)?
    }

    /// `phi(x)` `[N, h]` with its first and second derivatives along the columns of `dirs`
    /// (`[N, d, C]`: per point, C directions), each `[N, h, C]`.
    fn forward_with_derivatives(
        &self,
        x: &Tensor,
        dirs: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        // Through a linear map W: first and second directional derivatives multiply by W.
        let lin = |w: &Tensor, t: &Tensor| -> Result<Tensor> {
            let n = t.dim(0)?;
            w.unsqueeze(0)?
                .broadcast_as((n, w.dim(0)?, w.dim(1)?))?
                .matmul(t)
        };
        let mut h = x.clone();
        let mut j = dirs.clone();
        let mut s2 = dirs.zeros_like()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let u = layer.forward(&h)?;
            let ju = lin(layer.weight(), &j)?;
            let su = lin(layer.weight(), &s2)?;
            if i < 2 {
                // a = softplus(u): a' = sigmoid(u), a'' = sigmoid (1 - sigmoid).
                let s = layers::sigmoid(&u)?.unsqueeze(2)?;
                let curv = (&s * (1.0 - &s)?)?;
                h = layers::softplus(&u)?;
                s2 = (ju.sqr()?.broadcast_mul(&curv)? + su.broadcast_mul(&s)?)?;
                j = ju.broadcast_mul(&s)?;
            } else {
                h = u;
                j = ju;
                s2 = su;
            }
        }
        let phi = (h + self.skip.forward(x)?)?;
        let j = (j + lin(self.skip.weight(), dirs)?)?;
        Ok((phi, j, s2))
    }
}

/// The DKEF model. Weights `kernel<j>.layer<i>.{weight,bias}`, `kernel<j>.skip.weight`,
/// `kernel<j>.log10_bandwidth` `[1]`, `kernel<j>.mix_logit` `[1]`, `inducing` `[M, d]`,
/// `log10_lambda` `[1]`.
#[derive(Debug, Clone)]
pub struct Dkef {
    nets: Vec<FeatureNet>,
    log10_bandwidth: Vec<Tensor>,
    mix_logits: Vec<Tensor>,
    inducing: Tensor,
    log10_lambda: Tensor,
    config: DkefConfig,
}

/// The name of the inducing points' variable, to initialise them from data.
pub const INDUCING: &str = "inducing";

/// The name of the `log10 lambda` variable (`[1]`), e.g. to train it alone.
pub const LOG10_LAMBDA: &str = "log10_lambda";

impl Dkef {
    /// Builds the model, creating or loading its weights through `vb`. New inducing points are
    /// zeros: set the variable [`INDUCING`] from data before training (as the reference does).
    ///
    /// # Errors
    /// A bad configuration, or a `VarBuilder` lacking a weight or holding one of the wrong shape.
    pub fn new(config: &DkefConfig, vb: VarBuilder) -> Result<Self> {
        config.check().map_err(candle_core::Error::Msg)?;
        let mut nets = Vec::new();
        let mut log10_bandwidth = Vec::new();
        let mut mix_logits = Vec::new();
        for (j, &l) in config.log10_bandwidths.iter().enumerate() {
            let vbj = vb.pp(format!("kernel{j}"));
            nets.push(FeatureNet::new(config.dim, config.hidden, vbj.clone())?);
            log10_bandwidth.push(vbj.get_with_hints(1, "log10_bandwidth", Init::Const(l))?);
            mix_logits.push(vbj.get_with_hints(1, "mix_logit", Init::Const(0.0))?);
        }
        let inducing =
            vb.get_with_hints((config.inducing, config.dim), INDUCING, Init::Const(0.0))?;
        let log10_lambda = vb.get_with_hints(1, LOG10_LAMBDA, Init::Const(config.log10_lambda))?;
        Ok(Self {
            nets,
            log10_bandwidth,
            mix_logits,
            inducing,
            log10_lambda,
            config: config.clone(),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &DkefConfig {
        &self.config
    }

    /// `lambda = 10^log10_lambda`, a scalar tensor.
    pub fn lambda(&self) -> Result<Tensor> {
        (self.log10_lambda.squeeze(0)? * std::f64::consts::LN_10)?.exp()
    }

    fn check_points(&self, x: &Tensor, what: &str) -> Result<usize> {
        match x.dims() {
            [n, d] if *d == self.config.dim && *n > 0 => Ok(*n),
            dims => candle_core::bail!(
                "DKEF: {what} must be [N, {}] with N >= 1, got {dims:?}",
                self.config.dim
            ),
        }
    }

    /// The mixture weights `softmax(w)`, `[K]`.
    fn mixture(&self) -> Result<Tensor> {
        let w = Tensor::cat(&self.mix_logits, 0)?;
        let e = (w.broadcast_sub(&w.max_keepdim(0)?))?.exp()?;
        e.broadcast_div(&e.sum_keepdim(0)?)
    }

    /// `-1 / (2 sigma_j^2)` for kernel `j`, a `[1]` tensor.
    fn neg_half_precision(&self, j: usize) -> Result<Tensor> {
        (self.log10_bandwidth[j].clone() * -std::f64::consts::LN_10)?.exp()? * -0.5
    }

    /// `k(x_n, z_m)` `[N, M]` between points `x` `[N, d]` and the inducing points.
    ///
    /// # Errors
    /// Points of the wrong shape.
    pub fn kernel(&self, x: &Tensor) -> Result<Tensor> {
        self.check_points(x, "the points")?;
        self.kernel_between(x, &self.inducing)
    }

    fn kernel_between(&self, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let pi = self.mixture()?;
        let mut total: Option<Tensor> = None;
        for (j, net) in self.nets.iter().enumerate() {
            let (fx, fz) = (net.forward(x)?, net.forward(z)?);
            let d2 = squared_distances(&fx, &fz)?;
            let kj = d2.broadcast_mul(&self.neg_half_precision(j)?)?.exp()?;
            let kj = kj.broadcast_mul(&pi.narrow(0, j, 1)?)?;
            total = Some(match total {
                Some(t) => (t + kj)?,
                None => kj,
            });
        }
        total.ok_or_else(|| candle_core::Error::Msg("DKEF without kernels".into()))
    }

    /// The kernel and its first and second derivatives in `x` along coordinates or directions.
    ///
    /// # Errors
    /// Points or directions of the wrong shape, a non-positive `eps`.
    pub fn kernel_terms(&self, x: &Tensor, which: KernelDerivatives) -> Result<KernelTerms> {
        let n = self.check_points(x, "the points")?;

        match which {
            KernelDerivatives::FiniteDifference { v, eps } => {
                self.check_points(v, "the directions")?;
                if !(eps.is_finite() && eps > 0.0) {
                    candle_core::bail!("DKEF: the FD step eps must be finite and > 0, got {eps}")
                }
                // Steps eps along the unit direction; derivatives rescaled to v itself.
                let norm = v.sqr()?.sum_keepdim(1)?.sqrt()?;
                let step = (v.broadcast_div(&norm)? * eps)?;
                let all = Tensor::cat(&[x, &(x + &step)?, &(x - &step)?], 0)?;
                let k = self.kernel_between(&all, &self.inducing)?;
                let (k0, kp, km) = (
                    k.narrow(0, 0, n)?,
                    k.narrow(0, n, n)?,
                    k.narrow(0, 2 * n, n)?,
                );
                let scale = (norm / eps)?; // |v| / eps, [N, 1]
                let grad = ((&kp - &km)? / 2.0)?.broadcast_mul(&scale)?;
                let second = ((&kp + &km)? - (&k0 * 2.0)?)?.broadcast_mul(&scale.sqr()?)?;
                Ok(KernelTerms {
                    k: k0,
                    grad: grad.unsqueeze(2)?,
                    second: second.unsqueeze(2)?,
                })
            }
            KernelDerivatives::Coordinates => self.terms_along(x, &Self::coordinate_dirs(x)?),
            KernelDerivatives::Direction(v) => {
                self.check_points(v, "the directions")?;
                self.terms_along(x, &v.unsqueeze(2)?)
            }
        }
    }

    /// The unit vectors of every coordinate for every point, `[N, d, d]`.
    fn coordinate_dirs(x: &Tensor) -> Result<Tensor> {
        let (n, d) = x.dims2()?;
        Tensor::eye(d, x.dtype(), x.device())?
            .unsqueeze(0)?
            .broadcast_as((n, d, d))?
            .contiguous()
    }

    /// The kernel and its first and second derivatives along the columns of `dirs` (`[N, d, C]`).
    fn terms_along(&self, x: &Tensor, dirs: &Tensor) -> Result<KernelTerms> {
        let pi = self.mixture()?;
        let mut acc: Option<(Tensor, Tensor, Tensor)> = None;
        for (j, net) in self.nets.iter().enumerate() {
            let (fx, jx, sx) = net.forward_with_derivatives(x, dirs)?;
            let fz = net.forward(&self.inducing)?;
            let c = self.neg_half_precision(j)?; // -1 / (2 sigma^2)
            let kj = squared_distances(&fx, &fz)?.broadcast_mul(&c)?.exp()?; // [N, M]
                                                                             // r = phi(x) - phi(z): [N, M, h]; r.J: [N, M, C]; r.S: [N, M, C].
            let r = fx.unsqueeze(1)?.broadcast_sub(&fz.unsqueeze(0)?)?;
            let rj = r.matmul(&jx)?;
            let rs = r.matmul(&sx)?;
            let jj = jx.sqr()?.sum_keepdim(1)?; // [N, 1, C]
                                                // With u = -|r|^2 / (2 sigma^2): d_c k = k d_c u, d_c u = 2c (r.J_c),
                                                // d_c^2 k = k ((d_c u)^2 + d_c^2 u), d_c^2 u = 2c (|J_c|^2 + r.S_c).
            let c2 = (&c * 2.0)?;
            let du = rj.broadcast_mul(&c2)?;
            let d2u = rs.broadcast_add(&jj)?.broadcast_mul(&c2)?;
            let weight = kj.broadcast_mul(&pi.narrow(0, j, 1)?)?.unsqueeze(2)?;
            let g = du.broadcast_mul(&weight)?;
            let s = (du.sqr()? + d2u)?.broadcast_mul(&weight)?;
            let kw = weight.squeeze(2)?;
            acc = Some(match acc {
                Some((a, b, e)) => ((a + kw)?, (b + g)?, (e + s)?),
                None => (kw, g, s),
            });
        }
        let (k, grad, second) =
            acc.ok_or_else(|| candle_core::Error::Msg("DKEF without kernels".into()))?;
        Ok(KernelTerms { k, grad, second })
    }

    /// `d_c log q0(x)` along the coordinates or directions of `which`, `[N, C]`.
    fn base_grad(&self, x: &Tensor, which: KernelDerivatives) -> Result<Tensor> {
        let g = (x * (-1.0 / self.config.q0_std.powi(2)))?;
        match which {
            KernelDerivatives::Coordinates => Ok(g),
            KernelDerivatives::Direction(v) | KernelDerivatives::FiniteDifference { v, .. } => {
                (g * v)?.sum_keepdim(1)
            }
        }
    }

    /// `d_c^2 log q0`, summed over `C` per point: `-C' / s0^2` with `C'` the coordinates, or
    /// `-|v|^2 / s0^2` for a direction; `[N]`.
    fn base_second(&self, x: &Tensor, which: KernelDerivatives) -> Result<Tensor> {
        let inv = -1.0 / self.config.q0_std.powi(2);
        match which {
            KernelDerivatives::Coordinates => {
                Tensor::ones(x.dim(0)?, x.dtype(), x.device())? * (inv * self.config.dim as f64)
            }
            KernelDerivatives::Direction(v) | KernelDerivatives::FiniteDifference { v, .. } => {
                v.sqr()?.sum(1)? * inv
            }
        }
    }

    /// The pieces of a score-matching objective: first derivatives of the kernel and of
    /// `log q0` along the objective's coordinates or direction, and the summed second
    /// derivatives.
    fn parts(&self, x: &Tensor, objective: DkefObjective) -> Result<Parts> {
        self.check_points(x, "the points")?;
        let d = self.config.dim;
        let single = |t: KernelTerms, which: KernelDerivatives| -> Result<Parts> {
            Ok(Parts {
                base_grad: self.base_grad(x, which)?,
                base_second: self.base_second(x, which)?,
                second: t.second.sum(2)?,
                grad: t.grad,
            })
        };
        match objective {
            DkefObjective::Exact => {
                let w = KernelDerivatives::Coordinates;
                single(self.kernel_terms(x, w)?, w)
            }
            DkefObjective::Sliced(v) => {
                let w = KernelDerivatives::Direction(v);
                single(self.kernel_terms(x, w)?, w)
            }
            DkefObjective::FiniteDifference { v, eps } => {
                let w = KernelDerivatives::FiniteDifference { v, eps };
                single(self.kernel_terms(x, w)?, w)
            }
            DkefObjective::SlicedAutodiff(v) => {
                self.check_points(v, "the directions")?;
                single(
                    self.directional_by_autodiff(x, v)?,
                    KernelDerivatives::Direction(v),
                )
            }
            DkefObjective::SlicedVr(v) => {
                self.check_points(v, "the directions")?;
                // One pass along the d coordinates and v: the full gradient, and the second
                // derivative along v.
                let dirs = Tensor::cat(&[&Self::coordinate_dirs(x)?, &v.unsqueeze(2)?], 2)?;
                let t = self.terms_along(x, &dirs)?;
                Ok(Parts {
                    grad: t.grad.narrow(2, 0, d)?,
                    base_grad: self.base_grad(x, KernelDerivatives::Coordinates)?,
                    second: t.second.narrow(2, d, 1)?.squeeze(2)?,
                    base_second: self.base_second(x, KernelDerivatives::Direction(v))?,
                })
            }
        }
    }

    /// The kernel and its first and second derivatives along `v` (`[N, M, 1]` each) by nested
    /// reverse passes: with a dummy `u` `[N, M]`, `g = grad_x sum(u k)` and `grad_u (g . v) = J v`;
    /// the same once more for the second derivative.
    fn directional_by_autodiff(&self, x: &Tensor, v: &Tensor) -> Result<KernelTerms> {
        sm_objectives::autodiff::ensure_higher_order()?;
        let xv = candle_core::Var::from_tensor(&x.detach())?;
        let k = self.kernel_between(xv.as_tensor(), &self.inducing)?;
        let jvp = |t: &Tensor| -> Result<Tensor> {
            let u = candle_core::Var::from_tensor(&t.zeros_like()?.detach())?;
            let g = grad_of(&(t * u.as_tensor())?.sum_all()?, xv.as_tensor())?;
            grad_of(&(g * v)?.sum_all()?, u.as_tensor())
        };
        let jv = jvp(&k)?;
        let jvv = jvp(&jv)?;
        Ok(KernelTerms {
            k,
            grad: jv.unsqueeze(2)?,
            second: jvv.unsqueeze(2)?,
        })
    }

    /// The terms of `objective` on the points `x` (see [`ObjectiveTerms`]).
    ///
    /// # Errors
    /// Shapes; higher-order mode off for [`DkefObjective::SlicedAutodiff`].
    pub fn objective_terms(&self, x: &Tensor, objective: DkefObjective) -> Result<ObjectiveTerms> {
        self.parts(x, objective)
    }

    /// The closed-form kernel weights from the terms on some points:
    /// `alpha = -(G + lambda I)^-1 b` with `G = mean_n D_n D_n^T` (`D_n` the `[M, C]` first
    /// derivatives of point `n`) and `b = mean_n (second_n + D_n base_grad_n)`; `[M]`.
    ///
    /// # Errors
    /// A system the solve refuses (not positive definite, non-finite).
    pub fn alpha_from_terms(&self, t: &ObjectiveTerms) -> Result<Tensor> {
        let (n, m, c) = t.grad.dims3()?;
        let flat = t.grad.transpose(0, 1)?.reshape((m, n * c))?;
        let g = (flat.matmul(&flat.t()?)? / n as f64)?;
        let b = (&t.second + t.grad.broadcast_mul(&t.base_grad.unsqueeze(1)?)?.sum(2)?)?.mean(0)?; // [M]
        let ridge = Tensor::eye(m, g.dtype(), g.device())?.broadcast_mul(&self.lambda()?)?;
        layers::spd_solve(&(g + ridge)?, &b)?.neg()
    }

    /// The closed-form kernel weights on the points `x` for the objective (module docs),
    /// differentiable in every parameter; `[M]`.
    ///
    /// # Errors
    /// Shapes, and a system the solve refuses (not positive definite, non-finite).
    pub fn fit_alpha(&self, x: &Tensor, objective: DkefObjective) -> Result<Tensor> {
        self.alpha_from_terms(&self.parts(x, objective)?)
    }

    /// Per point, the score-matching objective of `log p~` with weights `alpha`: exact `1/2
    /// |grad log p~|^2 + lap log p~`; sliced `1/2 (v.grad)^2 + v^T H v` (exact derivatives, or
    /// by finite differences); SSMVR `1/2 |grad|^2 + v^T H v`; `[N]`.
    ///
    /// # Errors
    /// Shapes.
    pub fn sm_loss(&self, x: &Tensor, alpha: &Tensor, objective: DkefObjective) -> Result<Tensor> {
        self.parts(x, objective)?.loss(alpha)
    }

    /// `f(x) = sum_m alpha_m k(x, z_m)`, `[N]`.
    ///
    /// # Errors
    /// Shapes.
    pub fn f(&self, x: &Tensor, alpha: &Tensor) -> Result<Tensor> {
        self.kernel(x)?.matmul(&alpha.unsqueeze(1)?)?.squeeze(1)
    }

    /// `log p~(x) = log q0(x) + f(x)` with the normalisation of `q0` (so that `log Z` is that
    /// of `exp(f)` under `q0`), `[N]`.
    ///
    /// # Errors
    /// Shapes.
    pub fn log_density(&self, x: &Tensor, alpha: &Tensor) -> Result<Tensor> {
        let d = self.config.dim as f64;
        let s2 = self.config.q0_std.powi(2);
        let log_q0 =
            ((x.sqr()?.sum(1)? * (-0.5 / s2))? - 0.5 * d * (2.0 * std::f64::consts::PI * s2).ln())?;
        log_q0 + self.f(x, alpha)?
    }

    /// `log Z` of `p~ = q0 exp(f)` by importance sampling from `q0`: `log mean exp f(x_s)` over
    /// the `samples` rows of `draws` (standard normal, `[S, d]`, scaled by `s0` here), in batches
    /// of `batch`, with the delta-method standard error. Returns `(log Z, standard error)`.
    ///
    /// # Errors
    /// Shapes; no samples.
    pub fn log_z(&self, alpha: &Tensor, draws: &Tensor, batch: usize) -> Result<(f64, f64)> {
        let s = self.check_points(draws, "the importance samples")?;
        let mut f = Vec::with_capacity(s);
        for start in (0..s).step_by(batch.max(1)) {
            let x = (draws.narrow(0, start, batch.max(1).min(s - start))? * self.config.q0_std)?;
            f.extend(
                self.f(&x, alpha)?
                    .detach()
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?,
            );
        }
        let max = f.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() {
            candle_core::bail!("DKEF: log Z: f is not finite at an importance sample")
        }
        let w: Vec<f64> = f.iter().map(|v| (v - max).exp()).collect();
        let mean = w.iter().sum::<f64>() / s as f64;
        let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (s.max(2) - 1) as f64;
        Ok((max + mean.ln(), (var / s as f64).sqrt() / mean))
    }
}

/// `d(output)/d(wrt)`, zeros where `output` does not depend on `wrt`.
fn grad_of(output: &Tensor, wrt: &Tensor) -> Result<Tensor> {
    match output.backward()?.remove(wrt) {
        Some(g) => Ok(g),
        None => wrt.zeros_like(),
    }
}

/// `|a_n - b_m|^2`, `[N, M]`, for `a` `[N, h]` and `b` `[M, h]` (differentiable, non-negative).
fn squared_distances(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let diff = a.unsqueeze(1)?.broadcast_sub(&b.unsqueeze(0)?)?;
    diff.sqr()?.sum(D::Minus1)
}

/// A DKEF with fixed kernel weights as a [`LogDensity`] (for the objectives and evaluation).
#[derive(Debug, Clone)]
pub struct DkefDensity<'a> {
    /// The model.
    pub model: &'a Dkef,
    /// Its kernel weights, `[M]`.
    pub alpha: Tensor,
}

impl LogDensity for DkefDensity<'_> {
    fn log_density(&self, x: &Tensor) -> Result<Tensor> {
        self.model.log_density(x, &self.alpha)
    }
}
