//! `spd_solve` against independent oracles in f64: the residual `A X - B`; first derivatives in
//! `A` (along symmetric directions) and `B` against central differences of the solve; second
//! derivatives (the gradient's derivative) against central differences of the autodiff
//! gradient; f32 against f64; bad input named.

use candle_core::{DType, Device, Tensor, Var};
use layers::spd_solve;

/// A deterministic pseudo-random matrix (a fixed linear congruential sequence in [-1, 1]).
fn pseudo(rows: usize, cols: usize, seed: u64) -> Tensor {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f64> = (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

/// `Q Q^T + I`: symmetric positive definite.
fn spd(m: usize, seed: u64) -> Tensor {
    let q = pseudo(m, m, seed);
    (q.matmul(&q.t().unwrap()).unwrap() + Tensor::eye(m, DType::F64, &Device::Cpu).unwrap())
        .unwrap()
}

fn symmetric(m: usize, seed: u64) -> Tensor {
    let e = pseudo(m, m, seed);
    ((&e + e.t().unwrap()).unwrap() * 0.5).unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn solves_the_system() {
    let a = spd(7, 1);
    let b = pseudo(7, 3, 2);
    let x = spd_solve(&a, &b).unwrap();
    assert!(max_abs(&(a.matmul(&x).unwrap() - &b).unwrap()) < 1e-12);
    let v = pseudo(7, 1, 3).squeeze(1).unwrap();
    let xv = spd_solve(&a, &v).unwrap();
    assert_eq!(xv.dims(), [7]);
    let back = a
        .matmul(&xv.unsqueeze(1).unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap();
    assert!(max_abs(&(back - v).unwrap()) < 1e-12);
    // f32 operands give the f64 answer to f32 precision.
    let x32 = spd_solve(
        &a.to_dtype(DType::F32).unwrap(),
        &b.to_dtype(DType::F32).unwrap(),
    )
    .unwrap();
    assert_eq!(x32.dtype(), DType::F32);
    let diff = (x32.to_dtype(DType::F64).unwrap() - &x).unwrap();
    assert!(max_abs(&diff) < 1e-4 * (1.0 + max_abs(&x)));
}

#[test]
fn first_derivatives_match_central_differences() {
    let (m, k) = (6, 2);
    let a0 = spd(m, 4);
    let b0 = pseudo(m, k, 5);
    let w = pseudo(m, k, 6);
    let loss = |a: &Tensor, b: &Tensor| dot(&spd_solve(a, b).unwrap(), &w);
    let a = Var::from_tensor(&a0).unwrap();
    let b = Var::from_tensor(&b0).unwrap();
    let l = (spd_solve(a.as_tensor(), b.as_tensor()).unwrap() * &w)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = l.backward().unwrap();
    let (ga, gb) = (
        grads.get(a.as_tensor()).unwrap().clone(),
        grads.get(b.as_tensor()).unwrap().clone(),
    );
    let h = 1e-6;
    for seed in 10..13 {
        let e = symmetric(m, seed);
        let fd = (loss(&(&a0 + (&e * h).unwrap()).unwrap(), &b0)
            - loss(&(&a0 - (&e * h).unwrap()).unwrap(), &b0))
            / (2.0 * h);
        let ad = dot(&ga, &e);
        assert!((fd - ad).abs() < 1e-7 * (1.0 + ad.abs()), "A: {fd} vs {ad}");
        let d = pseudo(m, k, seed + 100);
        let fd = (loss(&a0, &(&b0 + (&d * h).unwrap()).unwrap())
            - loss(&a0, &(&b0 - (&d * h).unwrap()).unwrap()))
            / (2.0 * h);
        let ad = dot(&gb, &d);
        assert!((fd - ad).abs() < 1e-7 * (1.0 + ad.abs()), "B: {fd} vs {ad}");
    }
}

#[test]
fn second_derivatives_match_central_differences_of_the_gradient() {
    layers::grad_mode::enable_higher_order().expect("Candle's higher-order mode");
    let (m, k) = (5, 2);
    let a0 = spd(m, 20);
    let b0 = pseudo(m, k, 21);
    let w = pseudo(m, k, 22);
    let u = pseudo(m, k, 23);
    let e = symmetric(m, 24);
    // f(A) = <dL/dB (A), U> with L = <X, W>: its derivative along E by autodiff ...
    let grad_b = |a: &Tensor, keep: bool| -> (Tensor, Option<Var>) {
        let av = Var::from_tensor(a).unwrap();
        let b = Var::from_tensor(&b0).unwrap();
        let l = (spd_solve(av.as_tensor(), b.as_tensor()).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = l.backward().unwrap().remove(b.as_tensor()).unwrap();
        (g, keep.then_some(av))
    };
    let (g, av) = grad_b(&a0, true);
    let av = av.unwrap();
    let f = (g * &u).unwrap().sum_all().unwrap();
    let second = f.backward().unwrap().remove(av.as_tensor()).unwrap();
    let ad = dot(&second, &e);
    // ... and by central differences of the gradient.
    let h = 1e-5;
    let at = |t: f64| dot(&grad_b(&(&a0 + (&e * t).unwrap()).unwrap(), false).0, &u);
    let fd = (at(h) - at(-h)) / (2.0 * h);
    assert!(ad.abs() > 1e-6, "a trivial second derivative");
    assert!((fd - ad).abs() < 1e-6 * (1.0 + ad.abs()), "{fd} vs {ad}");
}

#[test]
fn bad_input_is_named() {
    let msg = |a: &Tensor, b: &Tensor| spd_solve(a, b).unwrap_err().to_string();
    let b = pseudo(3, 1, 30);
    let neg = (Tensor::eye(3, DType::F64, &Device::Cpu).unwrap() * -1.0).unwrap();
    assert!(msg(&neg, &b).contains("not positive definite"));
    let asym = (spd(3, 31)
        + Tensor::new(
            &[[0.0f64, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            &Device::Cpu,
        )
        .unwrap())
    .unwrap();
    assert!(msg(&asym, &b).contains("symmetric"));
    let nan = (spd(3, 32) * f64::NAN).unwrap();
    assert!(msg(&nan, &b).contains("NaN"));
    assert!(msg(&spd(3, 33), &pseudo(4, 1, 34)).contains("rows"));
    assert!(msg(&pseudo(3, 4, 35), &b).contains("square"));
    let b_nan = (pseudo(3, 1, 36) * f64::NAN).unwrap();
    assert!(msg(&spd(3, 37), &b_nan).contains("NaN"));
}
