//! The Candle ops whose higher-order backward passes are broken (measured with Candle 0.11.1),
//! listed for the source scans of the model crates' tests.

/// Source patterns of Candle calls whose higher-order backward is broken, with the reason.
/// Model crates scan their sources for these in a test (see `crates/models/tests`).
pub const FORBIDDEN_OPS: &[(&str, &str)] = &[
    ("max_pool2d", "wrong gradient even at first order"),
    (
        ".upsample_nearest",
        "backward overwrites instead of accumulating",
    ),
    (
        ".upsample_bilinear",
        "no usable backward; use the function layers::upsample_bilinear2d",
    ),
    (".gather(", "backward fails at second order"),
    ("softmax_last_dim", "fused kernel without gradient"),
    (
        "LayerNorm",
        "fused kernel without gradient; use group/instance norm from layers",
    ),
    (
        "layer_norm",
        "fused kernel without gradient; use group/instance norm from layers",
    ),
    ("RmsNorm", "fused kernel without gradient"),
    ("rms_norm", "fused kernel without gradient"),
    ("conv1d", "wrong beyond first order"),
    (
        ".conv2d(",
        "the strided backward pass fails when the stride does not divide the padded input; use layers::conv2d",
    ),
    (
        "avg_pool2d_with_stride",
        "kernel != stride has no backward; use layers::avg_pool2d",
    ),
    (
        ".avg_pool2d(",
        "backward goes through upsample_nearest2d; use layers::avg_pool2d",
    ),
];
