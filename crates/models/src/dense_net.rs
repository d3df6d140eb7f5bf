//! A fully connected network with a vector output, `f(x) = W_L s(... s(W_1 x + b_1) ...) + b_L`:
//! the body of the energy [`crate::Mlp`] and of the implicit-encoder autoencoder's encoder,
//! decoder and score networks (FD-SM Sec. 6.3, after Song et al. 2019, Sec. 5.2.2).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use layers::Linear;

use crate::MlpActivation;

/// Dense layers `layers.<i>.weight` `[out, in]` and `layers.<i>.bias` `[out]` (PyTorch's
/// initialisation `U(+-1/sqrt(in))`) with an activation after every layer but the last.
#[derive(Debug, Clone)]
pub struct DenseNet {
    layers: Vec<Linear>,
    sizes: Vec<usize>,
    activation: MlpActivation,
}

impl DenseNet {
    /// Builds the network of widths `sizes` (input first), creating or loading its weights
    /// through `vb`.
    ///
    /// # Errors
    /// Fewer than two sizes, a zero size, or a `VarBuilder` lacking a weight or holding one of
    /// the wrong shape.
    pub fn new(sizes: &[usize], activation: MlpActivation, vb: VarBuilder) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            candle_core::bail!(
                "a dense network needs at least an input and an output size, all >= 1, got \
                 {sizes:?}"
            )
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| layers::linear(w[0], w[1], vb.pp(format!("layers.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            sizes: sizes.to_vec(),
            activation,
        })
    }

    /// The widths, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Values per sample of the input.
    pub fn input_size(&self) -> usize {
        self.sizes[0]
    }

    /// Values per sample of the output.
    pub fn output_size(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
}

impl Module for DenseNet {
    /// `[B, out]` for `x` of shape `[B, in]` (or `[B, ...]` with `in` values per sample,
    /// flattened).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let d = x.elem_count() / b.max(1);
        if d != self.sizes[0] {
            candle_core::bail!(
                "the dense network takes {} values per sample, got shape {:?}",
                self.sizes[0],
                x.dims()
            )
        }
        let mut h = if x.rank() == 2 {
            x.clone()
        } else {
            x.reshape((b, d))?
        };
        let last = self.layers.len() - 1;
        let act = self.activation.dense();
        for (i, layer) in self.layers.iter().enumerate() {
            // Hidden layers: product, bias and activation as one op where the kernels fuse it.
            h = if i < last {
                layer.forward_activated(&h, act)?
            } else {
                layer.forward(&h)?
            };
        }
        Ok(h)
    }
}
