//! CPU kernels behind the ops of this crate: custom Candle ops with their own forward passes and
//! backward passes built again from such ops (so derivatives of every order exist), the
//! convolution's matrix-product, Winograd and small-map paths, fused elementwise passes and
//! the buffers they fill. Every `unsafe` block of the workspace is in this folder.

use candle_core::{DType, Tensor};

#[macro_use]
pub(crate) mod storage;
pub(crate) mod buffers;
pub(crate) mod cholesky;
pub(crate) mod conv_cpu;
pub(crate) mod conv_ops;
pub(crate) mod dense;
pub(crate) mod dense_act;
pub(crate) mod elu_conv;
mod fast_math;
pub(crate) mod fused;
pub(crate) mod simd;
mod small_map;
mod winograd;

/// Whether the fused CPU kernels of `kernels/fused.rs` handle `x`; elsewhere (other devices,
/// half-precision types, inside [`crate::portable::with_portable_ops`]) the same values come
/// from Candle's own ops.
pub(crate) fn fused_path(x: &Tensor) -> bool {
    on_cpu_kernels(x) && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Whether `x` is on the CPU and the CPU kernels are enabled on this thread.
pub(crate) fn on_cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && crate::portable::cpu_kernels_enabled()
}
