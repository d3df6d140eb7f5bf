//! The Hessian-diagonal baselines of FD-SM Table 3 for NICE, written out by hand: approximate
//! back-propagation (Approx-BP, Becker and LeCun 1988 as used by Kingma and LeCun 2010) and
//! curvature propagation (CP, Martens, Sutskever and Swersky 2012). Both walk the flow from the
//! Gaussian output back to the input, carrying the gradient `g` of `log p` and a second-order
//! quantity per unit:
//!
//! * Approx-BP carries the diagonal `h` of the Hessian and drops its off-diagonal part at every
//!   layer: through a linear map `z = W a + b`, `g_a = W^T g_z`, `h_a = (W o W)^T h_z`; through
//!   softplus `a = softplus(u)` (with `sigma = sigmoid(u)`), `h_u = h_a sigma^2 + g_a sigma (1 -
//!   sigma)`, `g_u = g_a sigma`. Exact where every Hessian it meets is diagonal (e.g. one
//!   coupling whose network's last layer is diagonal), biased otherwise.
//! * CP carries two random vectors `S_r`, `S_i` with `E[S_r S_r^T - S_i S_i^T] = H` exactly: a
//!   linear map multiplies both by its Jacobian transpose, and softplus adds the curvature of the
//!   unit, `M = g_a sigma (1 - sigma)`, as `S_r <- sigma S_r + sqrt(relu(M)) v` and
//!   `S_i <- sigma S_i + sqrt(relu(-M)) v` with fresh Rademacher `v`. `S_r^2 - S_i^2` is an
//!   unbiased estimate of the Hessian diagonal.
//!
//! An additive coupling `off' = off + m(on)` passes the updated half's quantities through
//! unchanged and adds their propagation through `m` to the read half. The coupling type (which
//! half is read) must be the forward pass's at every layer: the reference implementations pass
//! the wrong one for layers 2 and 4 (Approx-BP) or always the same one (CP).

use candle_core::{Module, Result, Tensor};
use sm_objectives::{Directions, NoiseSource};

use super::{CouplingNet, Half, Nice};

/// The input gradient of `log p` and an estimate of its Hessian diagonal.
#[derive(Debug, Clone)]
pub struct ScoreAndDiagonal {
    /// `grad_x log p(x)`, `[B, D]` (exact for both methods).
    pub score: Tensor,
    /// The estimate of `diag grad_x^2 log p(x)`, `[B, D]`.
    pub hessian_diag: Tensor,
}

/// The second-order quantity each method carries per unit.
#[derive(Clone)]
enum Carried {
    /// Approx-BP: the diagonal of the Hessian.
    Diagonal(Tensor),
    /// CP: the real and imaginary parts of the random factor.
    Factor { real: Tensor, imag: Tensor },
}

impl Carried {
    /// Applies `f` to every tensor it holds.
    fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(match self {
            Carried::Diagonal(h) => Carried::Diagonal(f(h)?),
            Carried::Factor { real, imag } => Carried::Factor {
                real: f(real)?,
                imag: f(imag)?,
            },
        })
    }

    /// Its even and odd pixels.
    fn split(&self) -> Result<(Self, Self)> {
        Ok((
            self.map(|t| Ok(Nice::split(t)?.0))?,
            self.map(|t| Ok(Nice::split(t)?.1))?,
        ))
    }

    /// The sum of the quantities of two paths into the same units.
    fn add(self, other: Self) -> Result<Self> {
        Ok(match (self, other) {
            (Carried::Diagonal(a), Carried::Diagonal(b)) => Carried::Diagonal((a + b)?),
            (Carried::Factor { real, imag }, Carried::Factor { real: r, imag: i }) => {
                Carried::Factor {
                    real: (real + r)?,
                    imag: (imag + i)?,
                }
            }
            _ => candle_core::bail!("mixed second-order quantities (a bug)"),
        })
    }

    /// The estimate of the Hessian diagonal: `h`, or `S_r^2 - S_i^2`.
    fn diagonal(&self) -> Result<Tensor> {
        match self {
            Carried::Diagonal(h) => Ok(h.clone()),
            Carried::Factor { real, imag } => real.sqr()? - imag.sqr()?,
        }
    }
}

/// Per-half state during the backward walk: the gradient and the carried quantity.
struct Walk {
    grad: Tensor,
    carried: Carried,
}

/// The forward pass of a coupling network keeping the hidden pre-activations.
fn net_forward(net: &CouplingNet, on: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
    let last = net.layers.len() - 1;
    let mut pre = Vec::with_capacity(last);
    let mut h = on.clone();
    for (i, layer) in net.layers.iter().enumerate() {
        let u = layer.forward(&h)?;
        h = if i < last {
            let a = layers::softplus(&u)?;
            pre.push(u);
            a
        } else {
            u
        };
    }
    Ok((h, pre))
}

/// Propagates `(g, carried)` from the output of `net` to its input, given its hidden
/// pre-activations.
fn net_backward(
    net: &CouplingNet,
    pre: &[Tensor],
    out: &Walk,
    noise: &mut Option<&mut NoiseSource>,
) -> Result<Walk> {
    let mut grad = out.grad.clone();
    let mut carried = out.carried.clone();
    for (i, layer) in net.layers.iter().enumerate().rev() {
        // Through the linear map: multiply by W (rows of the batch times [out, in]).
        let w = layer.weight();
        grad = grad.matmul(w)?;
        carried = match carried {
            Carried::Diagonal(h) => Carried::Diagonal(h.matmul(&w.sqr()?)?),
            factor => factor.map(|t| t.matmul(w))?,
        };
        if i == 0 {
            break;
        }
        // Through the softplus before this layer.
        let s = layers::sigmoid(&pre[i - 1])?;
        let curvature = (&grad * (&s * (1.0 - &s)?)?)?;
        carried = match carried {
            Carried::Diagonal(h) => Carried::Diagonal(((h * s.sqr()?)? + &curvature)?),
            Carried::Factor { real, imag } => {
                let source = noise.as_deref_mut().ok_or_else(|| {
                    candle_core::Error::Msg("curvature propagation needs a noise source".into())
                })?;
                let v = source.projection(&curvature, Directions::Rademacher)?.v;
                // sqrt(|M|) v, split by the sign of M. The square root's derivative is infinite
                // at 0 (where M vanishes, e.g. a saturated unit), so |M| is floored at 1e-30
                // first: a value error below 1e-15, and finite gradients.
                let root = (curvature.abs()?.maximum(1e-30)?.sqrt()? * &v)?;
                let positive = curvature.gt(0.0)?.to_dtype(curvature.dtype())?;
                let negative = curvature.lt(0.0)?.to_dtype(curvature.dtype())?;
                Carried::Factor {
                    real: ((real * &s)? + (&root * positive)?)?,
                    imag: ((imag * &s)? + (root * negative)?)?,
                }
            }
        };
        grad = (grad * s)?;
    }
    Ok(Walk { grad, carried })
}

/// `a + b` for the two paths into a read half.
fn add(a: Walk, b: Walk) -> Result<Walk> {
    Ok(Walk {
        grad: (a.grad + b.grad)?,
        carried: a.carried.add(b.carried)?,
    })
}

impl Nice {
    /// The score and Approx-BP's estimate of the Hessian diagonal of `log p` (see the module
    /// docs). Differentiable with respect to the parameters by first-order autodiff (no
    /// higher-order mode needed).
    ///
    /// # Shapes
    /// * `x`: `[B, D]` (or `[B, ...]` with `D` values per sample)
    /// * returns `[B, D]` twice
    ///
    /// # Errors
    /// An input whose samples do not hold `D` values.
    pub fn approx_bp(&self, x: &Tensor) -> Result<ScoreAndDiagonal> {
        self.walk(x, None)
    }

    /// The score and curvature propagation's unbiased estimate of the Hessian diagonal of
    /// `log p`, with Rademacher vectors drawn from `noise` (one at the output and one per hidden
    /// layer of every coupling network). Differentiable by first-order autodiff.
    ///
    /// # Shapes
    /// As [`Nice::approx_bp`].
    ///
    /// # Errors
    /// An input whose samples do not hold `D` values.
    pub fn curvature_propagation(
        &self,
        x: &Tensor,
        noise: &mut NoiseSource,
    ) -> Result<ScoreAndDiagonal> {
        self.walk(x, Some(noise))
    }

    fn walk(&self, x: &Tensor, mut noise: Option<&mut NoiseSource>) -> Result<ScoreAndDiagonal> {
        let x = self.flat(x, "the input")?;
        // Forward, keeping each coupling network's pre-activations.
        let (mut even, mut odd) = Self::split(&x)?;
        let mut saved = Vec::with_capacity(self.couplings.len());
        for (k, net) in self.couplings.iter().enumerate() {
            let half = Self::updated_half(k);
            let on = match half {
                Half::Odd => &even,
                Half::Even => &odd,
            };
            let (m, pre) = net_forward(net, on)?;
            match half {
                Half::Odd => odd = (&odd + m)?,
                Half::Even => even = (&even + m)?,
            }
            saved.push(pre);
        }
        // At y = exp(s) h, log p = -|y|^2 / 2 + const: gradient -y, Hessian -I. Through the
        // scale: g_h = -y exp(s), H_h = -exp(2s) (diagonal, exact).
        let scale = self.scale.exp()?;
        let y = Self::merge(&even, &odd)?.broadcast_mul(&scale)?;
        let grad = y.neg()?.broadcast_mul(&scale)?;
        let carried = match noise.as_deref_mut() {
            None => Carried::Diagonal(scale.sqr()?.neg()?.broadcast_as(grad.shape())?),
            Some(source) => {
                // -I = -E[v v^T]: the imaginary part starts at v, the real part at 0.
                let v = source.projection(&grad, Directions::Rademacher)?.v;
                Carried::Factor {
                    real: grad.zeros_like()?,
                    imag: v.broadcast_mul(&scale)?,
                }
            }
        };
        let (g_even, g_odd) = Self::split(&grad)?;
        let (c_even, c_odd) = carried.split()?;
        let mut w_even = Walk {
            grad: g_even,
            carried: c_even,
        };
        let mut w_odd = Walk {
            grad: g_odd,
            carried: c_odd,
        };
        // Backward through the couplings: the updated half's quantities pass unchanged; the read
        // half gains their propagation through the coupling's network.
        for (k, net) in self.couplings.iter().enumerate().rev() {
            let pre = &saved[k];
            match Self::updated_half(k) {
                Half::Odd => {
                    let through = net_backward(net, pre, &w_odd, &mut noise)?;
                    w_even = add(w_even, through)?;
                }
                Half::Even => {
                    let through = net_backward(net, pre, &w_even, &mut noise)?;
                    w_odd = add(w_odd, through)?;
                }
            }
        }
        let score = Self::merge(&w_even.grad, &w_odd.grad)?;
        let hessian_diag = Self::merge(&w_even.carried.diagonal()?, &w_odd.carried.diagonal()?)?;
        Ok(ScoreAndDiagonal {
            score,
            hessian_diag,
        })
    }
}
