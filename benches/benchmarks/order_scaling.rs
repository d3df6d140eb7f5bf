//! Criterion benchmarks of FD-SM Fig. 2 (Sec. 3.3): the T-th directional derivative
//! `(v . grad)^T log p(x)` of the deep-EBM ResNet for T = 1..6, exactly by T nested reverse
//! passes against the FD decomposition of Theorem 1 evaluated sequentially or as one batch.
//!
//! Each benchmark also prints how far one call raised this process's resident high-water mark.
//! Memory freed by earlier benchmarks is reused, so this understates a cell's need (often 0 for
//! the FD paths); `cargo xtask bench order-scaling` measures every cell in a fresh process,
//! which is the memory figure to quote.
//!
//! Environment: `FDSM_BENCH_WIDTH` (ResNet width, default 8), `FDSM_BENCH_BATCH` (images per
//! call, default 8), `FDSM_BENCH_EXACT_MAX_ORDER` (highest exact order, default 3: each order
//! multiplies its time and memory several times), `FDSM_DATA_DIR` (MNIST test images; without
//! them seeded uniform images of the same shape are used and a line says so). Built with
//! `--features cuda` (or `metal`) it runs on the GPU.

#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use experiments::memory;
use experiments::order_scaling::{build, derivative, parameters, Method, OrderScalingConfig};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid number")),
        Err(_) => default,
    }
}

/// MNIST test images on the process's device (the GPU of a `cuda` or `metal` build).
fn images(batch: usize) -> Tensor {
    let device = experiments::setup::open_device().expect("the device");
    images_on_cpu(batch)
        .to_device(&device)
        .expect("images on the device")
}

fn images_on_cpu(batch: usize) -> Tensor {
    let dir = datasets::resolve_data_dir(None);
    match experiments::setup::mnist32(&dir, false, &Device::Cpu) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "MNIST test images unavailable ({e}); timing on seeded uniform images of the same \
                 shape instead (the cost does not depend on the pixel values)"
            );
            let mut noise = sm_objectives::NoiseSource::new(1);
            let shape = Tensor::zeros((batch, 1, 32, 32), DType::F32, &Device::Cpu).expect("zeros");
            noise.uniform_like(&shape).expect("uniform images")
        }
    }
}

fn order_scaling(c: &mut Criterion) {
    // Criterion draws its HTML report with plotters; give it a font on machines without any.
    experiments::plot::register_font();
    experiments::allocator::tune_for_training();
    // Nested reverse passes need Candle's higher-order mode, set before any backward pass. The
    // FD paths run forward passes only and are unaffected by it.
    sm_objectives::autodiff::enable_higher_order()
        .expect("Candle's higher-order mode could not be enabled");
    let mut cfg = OrderScalingConfig::quick();
    cfg.model.width = env_or("FDSM_BENCH_WIDTH", 8);
    cfg.batch = env_or("FDSM_BENCH_BATCH", 8);
    let max_exact: u32 = env_or("FDSM_BENCH_EXACT_MAX_ORDER", 3);
    cfg.validate().expect("benchmark configuration");
    let params = parameters(&cfg).expect("seeded parameters");
    let setup = build(
        &cfg,
        &params,
        &images(cfg.batch),
        cfg.batch,
        cfg.eps,
        DType::F32,
    )
    .expect("network and inputs");
    // FD first: the exact path's large allocations stay mapped in this process afterwards and
    // would hide the FD paths' memory rise.
    for method in [Method::FdParallel, Method::FdSequential, Method::Exact] {
        let mut group = c.benchmark_group(format!("order_scaling/{}", method.key()));
        group.sample_size(10);
        for order in 1..=cfg.max_order {
            if method == Method::Exact && order > max_exact {
                eprintln!(
                    "order_scaling/exact/{order}: skipped (FDSM_BENCH_EXACT_MAX_ORDER = {max_exact})"
                );
                continue;
            }
            let base = memory::rss_bytes();
            let reset = memory::reset_peak();
            derivative(&setup, method, order).expect("derivative");
            if let (Some(b), Some(p), true) = (base, memory::peak_rss_bytes(), reset) {
                eprintln!(
                    "order_scaling/{}/{order}: high-water mark rose {:.1} MB in one call",
                    method.key(),
                    p.saturating_sub(b) as f64 / 1e6
                );
            }
            group.bench_with_input(BenchmarkId::from_parameter(order), &order, |b, &t| {
                b.iter(|| derivative(&setup, method, t).expect("derivative"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, order_scaling);
criterion_main!(benches);
