//! The geometry beyond stride-1 convolutions that score networks such as NCSN's RefineNet need:
//! strided and dilated convolutions, padded stride-1 average pooling and bilinear upsampling.
//! Values against Candle's own forward ops (or a direct formula), second derivatives
//! (Hessian-vector products by nested autodiff) against central differences of the gradient.

mod common;

use candle_core::{DType, Module, Result, Tensor};
use common::*;
use layers::grad_mode::enable_higher_order;
use layers::{
    avg_pool2d_padded, conv2d, conv_transpose2d, softplus, upsample_bilinear2d, AvgPool2d, Conv2d,
    Conv2dConfig, ConvTranspose2dConfig,
};

fn close(a: &Tensor, b: &Tensor, tol: f64) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    let err = max_abs_of(&(a - b)?)?;
    assert!(err < tol * (1.0 + max_abs_of(b)?), "error {err}");
    Ok(err)
}

#[test]
fn strided_and_dilated_convolutions_equal_candles() -> Result<()> {
    let x = pattern(2, 3 * 11 * 10, 0.3).reshape((2, 3, 11, 10))?;
    let w = (pattern(1, 4 * 3 * 9, 1.7).reshape((4, 3, 3, 3))? * 0.4)?;
    let b = pattern(1, 4, 2.2).reshape(4)?;
    for (padding, stride, dilation) in [(1, 2, 1), (0, 3, 1), (2, 1, 2), (3, 2, 2), (1, 1, 1)] {
        let cfg = Conv2dConfig {
            padding,
            stride,
            dilation,
            ..Conv2dConfig::default()
        };
        let ours = conv2d(&x, &w, Some(&b), &cfg)?;
        let theirs = x
            .conv2d(&w, padding, stride, dilation, 1)?
            .broadcast_add(&b.reshape((1, 4, 1, 1))?)?;
        let (h, wd) = cfg.output_size((11, 10), 3);
        assert_eq!(ours.dims(), [2, 4, h, wd], "{cfg:?}");
        close(&ours, &theirs, 1e-12)?;
        // The layer is the same op.
        let layer = Conv2d::new(w.clone(), Some(b.clone()), cfg);
        assert!(same_values(&layer.forward(&x)?, &ours)?);
    }
    // The 5 x 5 stride-2 layers of the Table 6 CelebA networks, in f32 with enough channels
    // that the polyphase components' 3 x 3 convolution takes the Winograd kernels.
    let x = pattern(2, 8 * 13 * 12, 0.5)
        .reshape((2, 8, 13, 12))?
        .to_dtype(DType::F32)?;
    let w5 = (pattern(1, 16 * 8 * 25, 1.1).reshape((16, 8, 5, 5))? * 0.2)?.to_dtype(DType::F32)?;
    for (padding, stride) in [(2, 2), (0, 2), (1, 3), (2, 4)] {
        let cfg = Conv2dConfig {
            padding,
            stride,
            ..Conv2dConfig::default()
        };
        let ours = conv2d(&x, &w5, None, &cfg)?;
        let theirs = x.conv2d(&w5, padding, stride, 1, 1)?;
        close(
            &ours.to_dtype(DType::F64)?,
            &theirs.to_dtype(DType::F64)?,
            1e-5,
        )?;
    }
    let x = pattern(2, 3 * 11 * 10, 0.3).reshape((2, 3, 11, 10))?;
    let zero_stride = Conv2dConfig {
        stride: 0,
        ..Conv2dConfig::default()
    };
    let err = conv2d(&x, &w, None, &zero_stride).unwrap_err().to_string();
    assert!(err.contains("stride"), "{err}");
    Ok(())
}

#[test]
fn strided_and_dilated_convolutions_have_correct_second_derivatives() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let x = pattern(2, 2 * 9 * 9, 0.3).reshape((2, 2, 9, 9))?;
    let v = pattern(2, 2 * 9 * 9, 4.1).reshape((2, 2, 9, 9))?;
    let w = (pattern(1, 3 * 2 * 9, 1.7).reshape((3, 2, 3, 3))? * 0.5)?;
    for (padding, stride, dilation) in [(1, 2, 1), (2, 1, 2), (2, 2, 2), (0, 3, 1)] {
        let cfg = Conv2dConfig {
            padding,
            stride,
            dilation,
            ..Conv2dConfig::default()
        };
        let name = format!("conv2d {cfg:?}");
        check_hvp(
            &name,
            |x| softplus(&conv2d(x, &w, None, &cfg)?)?.powf(3.0),
            &x,
            &v,
        )?;
    }
    Ok(())
}

#[test]
fn transposed_convolutions_equal_candles_and_a_direct_scatter() -> Result<()> {
    let x = pattern(2, 3 * 4 * 5, 0.3).reshape((2, 3, 4, 5))?;
    let w = (pattern(1, 3 * 2 * 25, 1.7).reshape((3, 2, 5, 5))? * 0.4)?;
    let b = pattern(1, 2, 2.2).reshape(2)?;
    for (padding, stride, output_padding) in [(2, 2, 1), (0, 1, 0), (1, 3, 2), (4, 2, 0)] {
        let cfg = ConvTranspose2dConfig {
            padding,
            stride,
            output_padding,
        };
        let ours = conv_transpose2d(&x, &w, Some(&b), &cfg)?;
        let (h, wd) = cfg.output_size((4, 5), 5);
        assert_eq!(ours.dims(), [2, 2, h, wd], "{cfg:?}");
        let theirs = x
            .conv_transpose2d(&w, padding, output_padding, stride, 1)?
            .broadcast_add(&b.reshape((1, 2, 1, 1))?)?;
        close(&ours, &theirs, 1e-12)?;
    }
    // A 4 x 4 kernel without padding: the output padding reaches past every phase's output.
    let w4 = (pattern(1, 3 * 2 * 16, 0.9).reshape((3, 2, 4, 4))? * 0.4)?;
    for (padding, stride, output_padding) in [(0, 2, 1), (1, 3, 2), (3, 1, 0)] {
        let cfg = ConvTranspose2dConfig {
            padding,
            stride,
            output_padding,
        };
        let ours = conv_transpose2d(&x, &w4, None, &cfg)?;
        let theirs = x.conv_transpose2d(&w4, padding, output_padding, stride, 1)?;
        close(&ours, &theirs, 1e-12)?;
    }
    // The decoder's geometry (kernel 5, stride 2, padding 2, output padding 1) doubles the
    // side; each input pixel scatters its kernel to output (2i - 2 + a, 2j - 2 + b).
    let cfg = ConvTranspose2dConfig {
        padding: 2,
        stride: 2,
        output_padding: 1,
    };
    let ours = conv_transpose2d(&x, &w, None, &cfg)?;
    assert_eq!(ours.dims(), [2, 2, 8, 10]);
    let (px, pw) = (
        x.flatten_all()?.to_vec1::<f64>()?,
        w.flatten_all()?.to_vec1::<f64>()?,
    );
    let mut expect = vec![0.0; 2 * 2 * 8 * 10];
    for n in 0..2 {
        for ci in 0..3 {
            for i in 0..4 {
                for j in 0..5 {
                    let v = px[((n * 3 + ci) * 4 + i) * 5 + j];
                    for co in 0..2 {
                        for a in 0..5 {
                            for bb in 0..5 {
                                let (oi, oj) = ((2 * i + a) as i64 - 2, (2 * j + bb) as i64 - 2);
                                if (0..8).contains(&oi) && (0..10).contains(&oj) {
                                    let at = ((n * 2 + co) * 8 + oi as usize) * 10 + oj as usize;
                                    expect[at] += v * pw[((ci * 2 + co) * 5 + a) * 5 + bb];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    close(
        &ours,
        &Tensor::from_vec(expect, (2, 2, 8, 10), &DEV)?,
        1e-12,
    )?;
    let bad = ConvTranspose2dConfig {
        output_padding: 2,
        ..cfg
    };
    let err = conv_transpose2d(&x, &w, None, &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("output_padding"), "{err}");
    Ok(())
}

#[test]
fn transposed_convolutions_are_the_adjoint_and_have_correct_second_derivatives() -> Result<()> {
    // <T x, y> = <x, conv2d(y)> with the same kernel, stride and padding: the input gradient of
    // the transposed convolution is the strided convolution (Candle's own backward pass gets
    // the shape wrong when output_padding > 0).
    enable_higher_order().expect("Candle's higher-order mode");
    let cfg = ConvTranspose2dConfig {
        padding: 2,
        stride: 2,
        output_padding: 1,
    };
    let x = candle_core::Var::from_tensor(&pattern(2, 3 * 4 * 4, 0.3).reshape((2, 3, 4, 4))?)?;
    let w = (pattern(1, 3 * 2 * 25, 1.7).reshape((3, 2, 5, 5))? * 0.4)?;
    let y = pattern(2, 2 * 8 * 8, 0.8).reshape((2, 2, 8, 8))?;
    let wv = candle_core::Var::from_tensor(&w)?;
    let t = conv_transpose2d(x.as_tensor(), wv.as_tensor(), None, &cfg)?;
    let grads = (t * &y)?.sum_all()?.backward()?;
    let gx = grads.get(x.as_tensor()).expect("input gradient");
    // The loss is linear in the kernel: its gradient along dw is <T_dw x, y> exactly.
    let dw = pattern(1, 3 * 2 * 25, 0.6).reshape((3, 2, 5, 5))?;
    let gw = grads.get(wv.as_tensor()).expect("kernel gradient");
    let along = (gw * &dw)?.sum_all()?.to_scalar::<f64>()?;
    let direct = (conv_transpose2d(x.as_tensor(), &dw, None, &cfg)? * &y)?
        .sum_all()?
        .to_scalar::<f64>()?;
    assert!(
        (along - direct).abs() < 1e-10 * (1.0 + direct.abs()),
        "{along} vs {direct}"
    );
    let strided = Conv2dConfig {
        padding: 2,
        stride: 2,
        ..Conv2dConfig::default()
    };
    close(gx, &conv2d(&y, &w, None, &strided)?, 1e-12)?;
    let xv = pattern(2, 3 * 4 * 4, 0.3).reshape((2, 3, 4, 4))?;
    let v = pattern(2, 3 * 4 * 4, 4.1).reshape((2, 3, 4, 4))?;
    check_hvp(
        "conv_transpose2d",
        |x| softplus(&conv_transpose2d(x, &w, None, &cfg)?)?.powf(3.0),
        &xv,
        &v,
    )?;
    Ok(())
}

#[test]
fn padded_average_pooling_equals_window_means() -> Result<()> {
    // NCSN's RefineNet pools 5x5 with stride 1 and padding 2; zeros count in the mean.
    let x = pattern(1, 2 * 6 * 7, 0.9).reshape((1, 2, 6, 7))?;
    let y = avg_pool2d_padded(&x, 5, 1, 2)?;
    assert_eq!(y.dims(), [1, 2, 6, 7]);
    let px = x.flatten_all()?.to_vec1::<f64>()?;
    let got = y.flatten_all()?.to_vec1::<f64>()?;
    for c in 0..2 {
        for i in 0..6i64 {
            for j in 0..7i64 {
                let mut sum = 0.0;
                for a in i - 2..=i + 2 {
                    for b in j - 2..=j + 2 {
                        if (0..6).contains(&a) && (0..7).contains(&b) {
                            sum += px[c * 42 + (a * 7 + b) as usize];
                        }
                    }
                }
                let at = c * 42 + (i * 7 + j) as usize;
                assert!((got[at] - sum / 25.0).abs() < 1e-14, "({c}, {i}, {j})");
            }
        }
    }
    // Without padding, kernel 3 and stride 2, against Candle's forward pooling.
    let theirs = x.avg_pool2d_with_stride(3, 2)?;
    close(&avg_pool2d_padded(&x, 3, 2, 0)?, &theirs, 1e-14)?;
    close(
        &AvgPool2d {
            kernel: 3,
            stride: 2,
            padding: 0,
        }
        .forward(&x)?,
        &theirs,
        1e-14,
    )?;
    assert!(
        avg_pool2d_padded(&x, 3, 1, 2).is_err(),
        "padding > kernel / 2"
    );
    Ok(())
}

#[test]
fn bilinear_upsampling_equals_candles_and_known_values() -> Result<()> {
    // align_corners: [0, 1] to 3 points is [0, 1/2, 1] along each axis.
    let x = Tensor::new(&[[[[0f64, 1.0], [2.0, 3.0]]]], &DEV)?;
    let y = upsample_bilinear2d(&x, (3, 3), true)?;
    let expect = [0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0];
    assert_eq!(y.flatten_all()?.to_vec1::<f64>()?, expect);
    let x = pattern(2, 3 * 5 * 4, 0.2).reshape((2, 3, 5, 4))?;
    for align in [true, false] {
        for size in [(10, 8), (7, 9), (5, 4), (3, 2)] {
            let ours = upsample_bilinear2d(&x, size, align)?;
            let theirs = x.upsample_bilinear2d(size.0, size.1, align)?;
            close(&ours, &theirs, 1e-12)?;
        }
    }
    let x32 = x.to_dtype(DType::F32)?;
    assert_eq!(upsample_bilinear2d(&x32, (8, 8), true)?.dtype(), DType::F32);
    assert!(upsample_bilinear2d(&x, (0, 3), true).is_err());
    Ok(())
}

#[test]
fn pooling_and_upsampling_have_correct_second_derivatives() -> Result<()> {
    enable_higher_order().expect("Candle's higher-order mode");
    let x = pattern(2, 2 * 7 * 6, 0.3).reshape((2, 2, 7, 6))?;
    let v = pattern(2, 2 * 7 * 6, 4.1).reshape((2, 2, 7, 6))?;
    check_hvp(
        "avg_pool2d 5x5 stride 1",
        |x| avg_pool2d_padded(x, 5, 1, 2)?.powf(3.0),
        &x,
        &v,
    )?;
    check_hvp(
        "avg_pool2d 3x3 stride 2",
        |x| avg_pool2d_padded(x, 3, 2, 1)?.powf(3.0),
        &x,
        &v,
    )?;
    for align in [true, false] {
        check_hvp(
            "upsample_bilinear2d",
            |x| upsample_bilinear2d(x, (11, 9), align)?.powf(3.0),
            &x,
            &v,
        )?;
    }
    Ok(())
}
