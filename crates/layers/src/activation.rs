//! Activations whose derivatives of every order are correct in Candle: ELU, the numerically
//! stable softplus and the shifted softplus of the deep-EBM runs (FD-SM App. C.2), each one
//! fused multithreaded pass on the CPU, and the logistic sigmoid (softplus's slope).

use candle_core::{Result, Tensor};

use crate::kernels::{fused, fused_path};

/// ELU with `alpha = 1` (`x` for `x >= 0`, `e^x - 1` below), as one multithreaded pass on the
/// CPU whose derivatives of every order are single fused passes too; the values and
/// derivatives of `x.elu(1.0)` up to rounding.
///
/// # Shapes
/// * `x`: any; returns the shape of `x`
pub fn elu(x: &Tensor) -> Result<Tensor> {
    if fused_path(x) {
        x.apply_op1(fused::Apply(fused::Activation::Elu))
    } else {
        x.elu(1.0)
    }
}

/// Numerically stable softplus `log(1 + e^z) = relu(z) + log(1 + e^-|z|)`, smooth at every
/// order. On the CPU (f32/f64) one fused multithreaded pass whose derivatives (to order 12) are
/// single fused passes too, polynomials in `sigmoid(z)` and `1 - sigmoid(z)` (see
/// `kernels/fused.rs`); elsewhere composed of Candle ops, whose derivatives are those of the
/// textbook form away from `z = 0`, where both pieces are smooth and agree.
pub fn softplus(z: &Tensor) -> Result<Tensor> {
    if fused_path(z) {
        return z.apply_op1(fused::Apply(fused::Activation::Softplus));
    }
    let tail = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    z.relu()? + tail
}

/// `softplus(z) - log 2`, zero at the origin: the activation of the deep-EBM runs of the
/// reference code.
pub fn shifted_softplus(z: &Tensor) -> Result<Tensor> {
    softplus(z)? - std::f64::consts::LN_2
}

/// The logistic sigmoid `1 / (1 + e^-z)`, softplus's derivative, as `(tanh(z / 2) + 1) / 2`:
/// finite for every `z` and differentiable at every order (`1 / (1 + e^-z)` gives `inf / inf`
/// in its derivative for very negative `z`). Used by the hand-propagated derivatives of NICE
/// and DKEF and to map logits back to pixels.
///
/// # Shapes
/// * `z`: any; returns the shape of `z`
pub fn sigmoid(z: &Tensor) -> Result<Tensor> {
    ((z * 0.5)?.tanh()? * 0.5)? + 0.5
}
