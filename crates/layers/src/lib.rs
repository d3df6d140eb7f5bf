//! `layers`: Candle ops and layers whose derivatives are correct at every order, for models
//! trained by score matching (FD-SM, Pang et al. 2020; the objectives differentiate through
//! the model's input gradient, and the exact ones through its Hessian).
//!
//! Measured with Candle 0.11.1, the backward passes of `max_pool2d` (wrong even at first
//! order), `upsample_nearest2d` (overwrites instead of accumulating when its input has another
//! consumer), `gather` (fails at second order), `avg_pool2d` with kernel != stride,
//! `upsample_bilinear2d`, the fused `softmax_last_dim` / `LayerNorm` / `RmsNorm` kernels (no
//! gradient at all, silently), `conv1d` beyond first order and `conv2d` with a stride that does
//! not divide the padded input (the input gradient comes out short) are unusable here
//! ([`FORBIDDEN_OPS`]). Everything in this crate is either composed of reshapes, slices,
//! reductions, matrix products and elementwise ops whose derivatives Candle builds from
//! differentiable ops, or a custom op with its own CPU kernel whose backward pass is again
//! built from such ops (see `kernels/`), tested to the third derivative.
//!
//! | what | functional op | layer |
//! | --- | --- | --- |
//! | convolution (padding, stride, dilation) | [`conv2d`] | [`Conv2d`], [`conv2d_layer`] |
//! | convolution of `elu(x)`, skip connection and pooling fused in | [`elu_conv2d`] | [`Conv2d::forward_elu`] |
//! | transposed convolution (PyTorch's geometry and layout) | [`conv_transpose2d`] | [`ConvTranspose2d`], [`conv_transpose2d_layer`] |
//! | average pooling | [`avg_pool2d`], [`avg_pool2d_padded`] | [`AvgPool2d`] |
//! | bilinear upsampling | [`upsample_bilinear2d`] | |
//! | activations | [`elu`], [`softplus`], [`shifted_softplus`], [`sigmoid`] | |
//! | normalisation | [`group_norm`], [`instance_norm`] | |
//! | per-channel bias | [`bias_add`] | |
//! | fully connected | matrix product and [`bias_add`] | [`Linear`], [`linear()`] |
//! | linear solve, symmetric positive-definite | [`spd_solve`] (Cholesky) | |
//!
//! On the CPU (f32, f64) the convolutions, activations, bias and pooling run on kernels of
//! their own (`kernels/`: matrix products over patches, Winograd F(4x4, 3x3) / F(2x2, 3x3),
//! fused multithreaded passes); the convolution's algorithm is a field of its
//! [`Conv2dConfig`] ([`ConvAlgorithm`]). Elsewhere the same values come from Candle's own ops.
//! [`grad_mode`] tells whether Candle keeps gradients differentiable on this thread;
//! [`portable::with_portable_ops`] runs the other devices' path on the CPU, for tests.

mod activation;
mod bias;
mod conv;
mod conv_transpose;
pub mod cpu;
mod forbidden;
pub mod grad_mode;
mod kernels;
mod linear;
mod norm;
mod pool;
pub mod portable;
mod solve;
mod upsample;
mod varmap;

pub use activation::{elu, shifted_softplus, sigmoid, softplus};
pub use bias::bias_add;
pub use conv::{
    conv2d, conv2d_layer, conv2d_no_bias, elu_conv2d, Conv2d, Conv2dConfig, ConvAlgorithm, Residual,
};
pub use conv_transpose::{
    conv_transpose2d, conv_transpose2d_layer, ConvTranspose2d, ConvTranspose2dConfig,
};
pub use forbidden::FORBIDDEN_OPS;
pub use linear::{linear, DenseActivation, Linear};
pub use norm::{group_norm, instance_norm};
pub use pool::{avg_pool2d, avg_pool2d_padded, AvgPool2d};
pub use solve::spd_solve;
pub use upsample::upsample_bilinear2d;
pub use varmap::sorted_vars;
