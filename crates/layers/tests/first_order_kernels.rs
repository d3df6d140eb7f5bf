//! Without Candle's higher-order mode the fused convolutions compute their backward passes
//! directly; their values and first derivatives must equal the unfused ops' exactly. This
//! binary never enables the mode.

mod common;

use candle_core::Result;
use common::*;
use layers::grad_mode::{higher_order_enabled, higher_order_requested, HIGHER_ORDER_ENV};

/// `None` when the mode is off as this binary needs; otherwise the reason to skip.
fn mode_is_off() -> Option<()> {
    if higher_order_requested() {
        eprintln!("skipped: {HIGHER_ORDER_ENV} is set in the environment, so first-order mode cannot be tested");
        return None;
    }
    assert!(
        !higher_order_enabled(),
        "higher-order mode is on although {HIGHER_ORDER_ENV} is unset"
    );
    Some(())
}

/// Without the higher-order mode `elu_conv2d` takes its direct backward pass: values and
/// first derivatives equal those of `conv2d(&elu(x))` exactly, on every convolution path
/// (Winograd F(4x4, 3x3) and F(2x2, 3x3), the small-map path, the direct one, 1x1 kernels).
#[test]
fn elu_conv_direct_backward_equals_the_unfused_ops() -> Result<()> {
    if mode_is_off().is_none() {
        return Ok(());
    }
    elu_conv_equals_unfused(3, 16, 20, (9, 10), 3)?; // F(4x4, 3x3)
    elu_conv_equals_unfused(2, 16, 16, (8, 8), 3)?; // F(2x2, 3x3) at padding 0
    elu_conv_equals_unfused(10, 16, 16, (33, 34), 3)?; // several kernel-gradient groups
    elu_conv_equals_unfused(4, 6, 5, (3, 3), 3)?; // small maps
    elu_conv_equals_unfused(3, 3, 4, (7, 6), 3)?; // direct
    elu_conv_equals_unfused(3, 5, 6, (9, 10), 1)?; // pointwise

    // With the residual sum: Winograd (sum in the output transform) and small maps.
    elu_conv_residual_equals_separate_ops(3, 16, 20, (9, 10), 3, None)?;
    elu_conv_residual_equals_separate_ops(4, 6, 5, (3, 3), 3, None)?;
    // Pooled: Winograd (odd 7x7 output at padding 0) and the direct path.
    elu_conv_residual_equals_separate_ops(3, 16, 20, (9, 9), 3, Some(2))?;
    elu_conv_residual_equals_separate_ops(2, 3, 4, (8, 6), 3, Some(2))
}
