//! Criterion benchmarks of `layers::conv2d` against Candle's `conv2d` on the
//! 3x3 layers of the step benchmark's ResNet EBM (width 32, 28 x 28 inputs: the maps are
//! 28, 14, 7 and 3 pixels wide), batch 64: the forward pass alone and forward plus backward
//! (input and kernel gradients), the two things every training step does per layer. The
//! `elu_conv3x3` group times the op the network's residual blocks actually run,
//! `layers::elu_conv2d` with a residual (ELU, convolution and skip connection in one op), whose backward
//! pass is computed directly outside Candle's higher-order mode (first-order training: the FD
//! objectives and MLE).
//!
//! Environment: `FDSM_BENCH_BATCH` (images per call, default 64).

#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use layers::{Conv2dConfig, Residual};

/// `(channels in, channels out, map size)` of the network's distinct 3x3 layers.
const LAYERS: [(usize, usize, usize); 5] = [
    (32, 64, 28),
    (64, 64, 14),
    (128, 128, 7),
    (128, 256, 7),
    (256, 256, 3),
];

fn batch() -> usize {
    match std::env::var("FDSM_BENCH_BATCH") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("FDSM_BENCH_BATCH={v} is not a valid number")),
        Err(_) => 64,
    }
}

fn conv_layers(c: &mut Criterion) {
    experiments::plot::register_font();
    experiments::allocator::tune_for_training();
    let dev = Device::Cpu;
    let n = batch();
    let mut group = c.benchmark_group("conv3x3");
    group.sample_size(10);
    for (cin, cout, size) in LAYERS {
        let id = format!("{cin}to{cout}@{size}");
        let x = Tensor::randn(0f32, 1.0, (n, cin, size, size), &dev).expect("input");
        let w =
            Var::from_tensor(&Tensor::randn(0f32, 0.05, (cout, cin, 3, 3), &dev).expect("kernel"))
                .expect("var");
        let xv = Var::from_tensor(&x).expect("var");
        group.bench_function(BenchmarkId::new("forward/layers", &id), |b| {
            b.iter(|| layers::conv2d(&x, &w, None, &Conv2dConfig::padded(1)).expect("conv"))
        });
        group.bench_function(BenchmarkId::new("forward/candle", &id), |b| {
            b.iter(|| x.conv2d(&w, 1, 1, 1, 1).expect("conv"))
        });
        group.bench_function(BenchmarkId::new("backward/layers", &id), |b| {
            b.iter(|| {
                let y = layers::conv2d(&xv, &w, None, &Conv2dConfig::padded(1)).expect("conv");
                y.sum_all().and_then(|s| s.backward()).expect("backward")
            })
        });
        group.bench_function(BenchmarkId::new("backward/candle", &id), |b| {
            b.iter(|| {
                let y = xv.conv2d(&w, 1, 1, 1, 1).expect("conv");
                y.sum_all().and_then(|s| s.backward()).expect("backward")
            })
        });
    }
    group.finish();
}

fn elu_conv_layers(c: &mut Criterion) {
    experiments::allocator::tune_for_training();
    let dev = Device::Cpu;
    let n = batch();
    let mut group = c.benchmark_group("elu_conv3x3");
    group.sample_size(10);
    for (cin, cout, size) in LAYERS {
        let id = format!("{cin}to{cout}@{size}");
        let x =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, cin, size, size), &dev).expect("input"))
                .expect("var");
        let w =
            Var::from_tensor(&Tensor::randn(0f32, 0.05, (cout, cin, 3, 3), &dev).expect("kernel"))
                .expect("var");
        let r = Tensor::randn(0f32, 1.0, (n, cout, size, size), &dev).expect("residual");
        let cfg = Conv2dConfig::padded(1);
        let op = || {
            let residual = Residual {
                tensor: &r,
                pool: None,
            };
            layers::elu_conv2d(&x, &w, None, Some(residual), &cfg).expect("conv")
        };
        group.bench_function(BenchmarkId::new("forward", &id), |b| b.iter(op));
        group.bench_function(BenchmarkId::new("backward", &id), |b| {
            b.iter(|| op().sum_all().and_then(|s| s.backward()).expect("backward"))
        });
    }
    group.finish();
}

criterion_group!(benches, conv_layers, elu_conv_layers);
criterion_main!(benches);
