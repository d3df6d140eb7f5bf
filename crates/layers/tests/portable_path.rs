//! The path every op takes on a GPU (Candle's own ops, `layers::portable`), run on the CPU and
//! compared with the CPU kernels: values, first derivatives and second derivatives (a
//! Hessian-vector product of a cubic loss) in every input, in f64 and f32. The oracle is the
//! other path: they share no code but Candle's autodiff, so a mistake in either shows.

mod common;

use candle_core::{DType, Result, Tensor, Var};
use common::{max_abs_of, pattern};
use layers::grad_mode::enable_higher_order;
use layers::portable::{cpu_kernels_enabled, with_portable_ops};
use layers::{
    avg_pool2d, avg_pool2d_padded, bias_add, conv2d, elu, elu_conv2d, shifted_softplus, softplus,
    spd_solve, Conv2dConfig, ConvAlgorithm, DenseActivation, Linear, Residual,
};

type Op<'a> = dyn Fn(&[Tensor]) -> Result<Tensor> + 'a;

/// Values, gradients and Hessian-vector products of `sum(c * op(inputs)^3)` in every input.
struct Derivatives {
    value: Tensor,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
}

fn derivatives(op: &Op<'_>, inputs: &[Tensor]) -> Result<Derivatives> {
    let vars = inputs
        .iter()
        .map(Var::from_tensor)
        .collect::<Result<Vec<_>>>()?;
    let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let value = op(&xs)?;
    let c = pattern(1, value.elem_count(), 3.3)
        .reshape(value.shape())?
        .to_dtype(value.dtype())?;
    let loss = ((value.sqr()? * &value)? * c)?.sum_all()?;
    let grads = loss.backward()?;
    let mut first = Vec::new();
    let mut hv = Tensor::zeros((), value.dtype(), value.device())?;
    for (i, x) in xs.iter().enumerate() {
        let g = grads.get(x).expect("every input gets a gradient").clone();
        let v = pattern(1, x.elem_count(), 0.7 + i as f64)
            .reshape(x.shape())?
            .to_dtype(x.dtype())?;
        hv = (hv + (&g * v)?.sum_all()?)?;
        first.push(g.detach());
    }
    let grads2 = hv.backward()?;
    let second = xs
        .iter()
        .map(|x| match grads2.get(x) {
            Some(h) => Ok(h.detach()),
            None => x.zeros_like(),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Derivatives {
        value: value.detach(),
        first,
        second,
    })
}

/// Checks that `op` gives the same values and derivatives through the CPU kernels and through
/// the portable path, for `inputs` converted to f64 and to f32.
fn same_on_both_paths(name: &str, op: &Op<'_>, inputs: &[Tensor]) -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-10 } else { 2e-4 };
        let inputs = inputs
            .iter()
            .map(|t| t.to_dtype(dtype))
            .collect::<Result<Vec<_>>>()?;
        let fast = derivatives(op, &inputs)
            .unwrap_or_else(|e| panic!("{name} {dtype:?}, CPU kernels: {e}"));
        let portable = with_portable_ops(|| {
            assert!(!cpu_kernels_enabled());
            derivatives(op, &inputs)
        })
        .unwrap_or_else(|e| panic!("{name} {dtype:?}, portable path: {e}"));
        assert!(cpu_kernels_enabled(), "the switch is restored");
        let compare = |what: String, a: &Tensor, b: &Tensor| -> Result<f64> {
            assert_eq!(a.dims(), b.dims(), "{name} {dtype:?} {what}: shapes");
            let scale = max_abs_of(b)?;
            let err = max_abs_of(&(a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?)?;
            assert!(
                err <= tol * (1.0 + scale),
                "{name} {dtype:?} {what}: CPU kernels and portable path differ by {err} (scale {scale})"
            );
            Ok(scale)
        };
        compare("values".into(), &fast.value, &portable.value)?;
        let mut second_scale = 0.0f64;
        for i in 0..inputs.len() {
            compare(
                format!("d/d(input {i})"),
                &fast.first[i],
                &portable.first[i],
            )?;
            second_scale = second_scale.max(compare(
                format!("second derivative in input {i}"),
                &fast.second[i],
                &portable.second[i],
            )?);
        }
        assert!(second_scale > 1e-3, "{name}: vacuous second-order check");
    }
    Ok(())
}

/// A `[n, c, h, w]` batch of pattern values of both signs, none near 0 (ELU's kink).
fn batch(n: usize, c: usize, h: usize, w: usize, phase: f64) -> Result<Tensor> {
    let x = pattern(n, c * h * w, phase).reshape((n, c, h, w))?;
    x.clone() + (x.ge(0.0)?.to_dtype(DType::F64)? - 0.5)?.affine(0.1, 0.0)?
}

fn kernel(o: usize, c: usize, k: usize, phase: f64) -> Result<Tensor> {
    pattern(1, o * c * k * k, phase).reshape((o, c, k, k))? * (1.0 / (c * k) as f64)
}

#[test]
fn activations_agree() -> Result<()> {
    let x = batch(2, 3, 5, 7, 0.2)?;
    same_on_both_paths("elu", &|t| elu(&t[0]), std::slice::from_ref(&x))?;
    same_on_both_paths("softplus", &|t| softplus(&t[0]), &[(&x * 3.0)?])?;
    same_on_both_paths(
        "shifted softplus",
        &|t| shifted_softplus(&t[0]),
        std::slice::from_ref(&x),
    )
}

#[test]
fn bias_and_dense_layers_agree() -> Result<()> {
    let x = batch(2, 4, 3, 5, 0.4)?;
    let b = pattern(1, 4, 1.1).reshape(4)?;
    same_on_both_paths(
        "bias_add [N, C, H, W]",
        &|t| bias_add(&t[0], &t[1]),
        &[x, b.clone()],
    )?;
    let rows = pattern(5, 4, 2.0);
    same_on_both_paths(
        "bias_add [N, C]",
        &|t| bias_add(&t[0], &t[1]),
        &[rows.clone(), b],
    )?;
    let w = (pattern(6, 4, 0.5) * 0.6)?;
    let b6 = pattern(1, 6, 1.9).reshape(6)?;
    let inputs = [rows, w, b6];
    let layer = |t: &[Tensor]| Linear::new(t[1].clone(), Some(t[2].clone()));
    same_on_both_paths(
        "Linear",
        &|t| candle_core::Module::forward(&layer(t), &t[0]),
        &inputs,
    )?;
    for act in [DenseActivation::Elu, DenseActivation::Softplus] {
        same_on_both_paths(
            &format!("Linear + {act:?}"),
            &|t| layer(t).forward_activated(&t[0], act),
            &inputs,
        )?;
    }
    Ok(())
}

#[test]
fn pooling_agrees() -> Result<()> {
    let x = batch(2, 3, 7, 8, 0.6)?;
    same_on_both_paths(
        "avg_pool2d k=2",
        &|t| avg_pool2d(&t[0], 2),
        std::slice::from_ref(&x),
    )?;
    same_on_both_paths(
        "avg_pool2d k=3 (floor)",
        &|t| avg_pool2d(&t[0], 3),
        std::slice::from_ref(&x),
    )?;
    same_on_both_paths(
        "avg_pool2d 5x5 stride 1 padding 2",
        &|t| avg_pool2d_padded(&t[0], 5, 1, 2),
        &[x],
    )
}

/// Plain (every algorithm, with and without bias), strided and dilated convolutions.
#[test]
fn convolutions_agree() -> Result<()> {
    let x = batch(2, 3, 9, 8, 0.8)?;
    let w = kernel(4, 3, 3, 1.3)?;
    let b = pattern(1, 4, 2.2).reshape(4)?;
    for algorithm in [
        ConvAlgorithm::Fastest,
        ConvAlgorithm::Accurate,
        ConvAlgorithm::Direct,
    ] {
        let cfg = Conv2dConfig::padded(1).with_algorithm(algorithm);
        same_on_both_paths(
            &format!("conv2d {algorithm:?} + bias"),
            &|t| conv2d(&t[0], &t[1], Some(&t[2]), &cfg),
            &[x.clone(), w.clone(), b.clone()],
        )?;
    }
    same_on_both_paths(
        "conv2d no bias, padding 0",
        &|t| conv2d(&t[0], &t[1], None, &Conv2dConfig::padded(0)),
        &[x.clone(), w.clone()],
    )?;
    let strided = Conv2dConfig {
        stride: 2,
        ..Conv2dConfig::padded(1)
    };
    same_on_both_paths(
        "conv2d stride 2",
        &|t| conv2d(&t[0], &t[1], Some(&t[2]), &strided),
        &[x.clone(), w.clone(), b.clone()],
    )?;
    let dilated = Conv2dConfig {
        dilation: 2,
        ..Conv2dConfig::padded(2)
    };
    same_on_both_paths(
        "conv2d dilation 2",
        &|t| conv2d(&t[0], &t[1], Some(&t[2]), &dilated),
        &[x, w, b],
    )
}

/// `elu_conv2d` alone, with a bias, with a residual and with a residual after pooling.
#[test]
fn fused_elu_convolutions_agree() -> Result<()> {
    let x = batch(2, 3, 8, 8, 1.4)?;
    let w = kernel(3, 3, 3, 0.3)?;
    let b = pattern(1, 3, 0.9).reshape(3)?;
    let cfg = Conv2dConfig::padded(1);
    same_on_both_paths(
        "elu_conv2d",
        &|t| elu_conv2d(&t[0], &t[1], None, None, &cfg),
        &[x.clone(), w.clone()],
    )?;
    same_on_both_paths(
        "elu_conv2d + bias",
        &|t| elu_conv2d(&t[0], &t[1], Some(&t[2]), None, &cfg),
        &[x.clone(), w.clone(), b.clone()],
    )?;
    let r = batch(2, 3, 8, 8, 2.5)?;
    same_on_both_paths(
        "elu_conv2d + bias + residual",
        &|t| {
            let residual = Residual {
                tensor: &t[3],
                pool: None,
            };
            elu_conv2d(&t[0], &t[1], Some(&t[2]), Some(residual), &cfg)
        },
        &[x.clone(), w.clone(), b.clone(), r],
    )?;
    let r_pooled = batch(2, 3, 4, 4, 3.1)?;
    same_on_both_paths(
        "elu_conv2d + residual after 2x2 pooling",
        &|t| {
            let residual = Residual {
                tensor: &t[2],
                pool: Some(2),
            };
            elu_conv2d(&t[0], &t[1], None, Some(residual), &cfg)
        },
        &[x, w, r_pooled],
    )
}

#[test]
fn spd_solve_agrees() -> Result<()> {
    let m = pattern(4, 4, 0.1);
    let a = (m.matmul(&m.t()?)? + (Tensor::eye(4, DType::F64, &common::DEV)? * 2.0)?)?;
    let b = pattern(4, 2, 1.2);
    same_on_both_paths("spd_solve", &|t| spd_solve(&t[0], &t[1]), &[a, b])
}

/// The switch is per thread and undone when the closure panics.
#[test]
fn the_switch_is_scoped() {
    let caught = std::panic::catch_unwind(|| with_portable_ops(|| panic!("inside")));
    assert!(caught.is_err());
    assert!(cpu_kernels_enabled());
    with_portable_ops(|| {
        let other = std::thread::spawn(cpu_kernels_enabled)
            .join()
            .expect("thread");
        assert!(other, "another thread keeps its CPU kernels");
        assert!(!cpu_kernels_enabled());
    });
}
