//! The fully connected layer `y = x W^T + b`: the product by Candle's matrix multiplication
//! (the `gemm` crate, no copy of the transposed weight), the bias by [`crate::bias_add`], whose
//! forward pass and gradient (a column sum) are single passes, so that a small dense network's
//! step does not go through Candle's general broadcasting kernels.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::kernels::dense_act;

/// The activations a dense layer applies in the same op as its product
/// ([`Linear::forward_activated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// ELU with `alpha = 1`.
    Elu,
    /// `log(1 + e^z)`.
    Softplus,
    /// `tanh(z)` (the implicit-encoder autoencoders of FD-SM Table 6), computed as the fused
    /// kernel's `tanh_value` (within 4e-7 relative of `tanh` in f32).
    Tanh,
}

/// A fully connected layer: weight `[out, in]`, optional bias `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer from its weight `[out, in]` and bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `act(x W^T + b)` for `x` of shape `[N, in]`, as one op on the CPU (the same values as
    /// the forward pass followed by [`crate::elu`], [`crate::softplus`] or Candle's `tanh`, to
    /// a few ulp, and derivatives of every order); other shapes, devices or a layer without
    /// bias go through those ops.
    ///
    /// # Errors
    /// Shapes that do not fit the layer.
    pub fn forward_activated(&self, x: &Tensor, act: DenseActivation) -> Result<Tensor> {
        if let Some(b) = &self.bias {
            if let Some(y) = dense_act::dense_act(x, &self.weight, b, act)? {
                return Ok(y);
            }
        }
        let z = self.forward(x)?;
        match act {
            DenseActivation::Elu => crate::elu(&z),
            DenseActivation::Softplus => crate::softplus(&z),
            DenseActivation::Tanh => z.tanh(),
        }
    }
}

impl Module for Linear {
    /// `x W^T + b` for `x` of shape `[..., in]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (rows, inner) = match dims {
            [] => candle_core::bail!("linear: a scalar input has no feature axis"),
            [.., last] => (x.elem_count() / (*last).max(1), *last),
        };
        let flat = if dims.len() == 2 {
            x.clone()
        } else {
            x.reshape((rows, inner))?
        };
        let mut y = flat.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = crate::bias_add(&y, b)?;
        }
        if dims.len() == 2 {
            Ok(y)
        } else {
            let mut shape = dims.to_vec();
            *shape.last_mut().unwrap_or(&mut 0) = self.weight.dim(0)?;
            y.reshape(shape)
        }
    }
}

/// A layer of `in_dim` inputs and `out_dim` outputs with weights `weight` and `bias` under `vb`,
/// initialised as PyTorch does (`U(+-1/sqrt(in_dim))` for both).
///
/// # Errors
/// A `VarBuilder` lacking the weights or holding ones of the wrong shape.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    Ok(Linear::new(
        vb.get_with_hints((out_dim, in_dim), "weight", init)?,
        Some(vb.get_with_hints(out_dim, "bias", init)?),
    ))
}
