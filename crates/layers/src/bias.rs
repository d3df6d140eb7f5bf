//! Per-channel bias addition as one pass on the CPU, its gradient a per-channel sum.

use candle_core::{bail, Result, Tensor};

use crate::kernels::{fused, fused_path, on_cpu_kernels};

/// `x + b` with the bias broadcast over every axis but the channel axis, as one pass on the
/// CPU; the bias gradient is a per-channel sum instead of Candle's strided reduction.
///
/// # Shapes
/// * `x`: `[N, C, ...]`; `b`: `[C]`
/// * returns the shape of `x`
///
/// # Errors
/// A bias whose length is not the channel count, or different dtypes.
pub fn bias_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || b.dims() != [dims[1]] {
        bail!(
            "bias_add: a bias of shape [C] for input [N, C, ...] expected, got bias {:?} for input {dims:?}",
            b.dims()
        )
    }
    if fused_path(x) && on_cpu_kernels(b) && b.dtype() == x.dtype() {
        x.apply_op2(b, fused::BiasAdd)
    } else {
        let mut shape = vec![1; dims.len()];
        shape[1] = dims[1];
        x.broadcast_add(&b.reshape(shape)?)
    }
}
