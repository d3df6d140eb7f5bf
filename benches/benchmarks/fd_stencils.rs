//! Criterion benchmarks of `fd-core`: building Theorem 1 stencils and estimating the T-th
//! directional derivative (T = 1..6) of a pure-Rust MLP log-density on MNIST-sized inputs,
//! with the evaluations run sequentially, on rayon threads, or as one batch (Sec. 3.3).

#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fd_core::{BatchMode, Execution, Stencil};
use std::hint::black_box;

const DIM: usize = 784;
const HIDDEN: usize = 256;

/// A fixed two-layer `tanh` network `L(x) = w2 . tanh(W1 x)`, a stand-in log-density whose
/// cost per evaluation (about 0.2 MFLOP) dominates the stencil arithmetic.
struct Mlp {
    w1: Vec<f64>,
    w2: Vec<f64>,
}

impl Mlp {
    fn new() -> Self {
        // Deterministic pseudo-random weights (a linear congruential sequence).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.1
        };
        Self {
            w1: (0..DIM * HIDDEN).map(|_| next()).collect(),
            w2: (0..HIDDEN).map(|_| next()).collect(),
        }
    }

    fn eval(&self, x: &[f64]) -> f64 {
        self.w1
            .chunks_exact(DIM)
            .zip(&self.w2)
            .map(|(row, w)| w * row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>().tanh())
            .sum()
    }
}

fn stencil_construction(c: &mut Criterion) {
    // Criterion draws its HTML report with plotters; give it a font on machines without any.
    experiments::plot::register_font();
    let mut group = c.benchmark_group("stencil_construction");
    for order in 1..=6u32 {
        group.bench_with_input(BenchmarkId::from_parameter(order), &order, |b, &t| {
            b.iter(|| Stencil::central(black_box(t), 1).unwrap())
        });
    }
    group.finish();
}

fn directional_derivative(c: &mut Criterion) {
    let mlp = Mlp::new();
    let x: Vec<f64> = (0..DIM)
        .map(|i| (i as f64 * 0.37).sin() * 0.5 + 0.5)
        .collect();
    let v: Vec<f64> = (0..DIM)
        .map(|i| (i as f64 * 1.3).cos() * 0.05 / (DIM as f64).sqrt())
        .collect();
    let mut group = c.benchmark_group("directional_derivative");
    for order in 1..=6u32 {
        let stencil = Stencil::central(order, 0).unwrap();
        for (name, exec) in [
            ("sequential", Execution::Sequential),
            ("rayon", Execution::Parallel),
        ] {
            group.bench_with_input(BenchmarkId::new(name, order), &stencil, |b, s| {
                b.iter(|| {
                    s.directional_derivative(|p| mlp.eval(p), &x, &v, exec)
                        .unwrap()
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("batched", order), &stencil, |b, s| {
            b.iter(|| {
                s.directional_derivative_batched(&x, &v, DIM, BatchMode::Concatenated, |pts, _| {
                    Ok::<_, std::convert::Infallible>(
                        pts.chunks_exact(DIM).map(|p| mlp.eval(p)).collect(),
                    )
                })
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stencil_construction, directional_derivative);
criterion_main!(benches);
