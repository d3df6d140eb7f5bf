//! Adam's update on the path a GPU takes (`layers::portable`: Candle's elementwise ops) equals
//! the fused CPU pass bit for bit over several steps, in f32 and f64; the same for RMSProp.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use layers::portable::with_portable_ops;
use train::optim::{Adam, AdamConfig, RmsPropConfig};

/// The parameters after `steps` Adam (or RMSProp) steps on `sum((p - target)^4)` from a fixed
/// start.
fn train_with(dtype: DType, steps: usize, rmsprop: bool) -> Result<Vec<f64>> {
    let n = 3000; // more than one chunk of the fused pass
    let start: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.37).sin()).collect();
    let target: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.11).cos() * 0.5).collect();
    let p = Var::from_tensor(&Tensor::from_vec(start, n, &Device::Cpu)?.to_dtype(dtype)?)?;
    let target = Tensor::from_vec(target, n, &Device::Cpu)?.to_dtype(dtype)?;
    let mut adam = if rmsprop {
        Adam::rmsprop(vec![p.clone()], RmsPropConfig::default())?
    } else {
        Adam::new(vec![p.clone()], AdamConfig::default())?
    };
    for step in 0..steps {
        let loss = (p.as_tensor() - &target)?.sqr()?.sqr()?.sum_all()?;
        adam.step_with_lr(&loss.backward()?, 1e-2 / (1 + step) as f64)?;
    }
    Ok(p.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

fn train(dtype: DType, steps: usize) -> Result<Vec<f64>> {
    train_with(dtype, steps, false)
}

#[test]
fn rmsprop_is_the_same_on_both_paths() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let fused = train_with(dtype, 6, true)?;
        let portable = with_portable_ops(|| train_with(dtype, 6, true))?;
        let differing = fused.iter().zip(&portable).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{dtype:?}: {differing} parameters differ");
    }
    Ok(())
}

#[test]
fn adam_is_the_same_on_both_paths() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let fused = train(dtype, 6)?;
        let portable = with_portable_ops(|| train(dtype, 6))?;
        let start = with_portable_ops(|| train(dtype, 0))?;
        assert!(
            fused.iter().zip(&start).any(|(a, b)| a != b),
            "{dtype:?}: the parameters moved"
        );
        let differing = fused.iter().zip(&portable).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{dtype:?}: {differing} parameters differ");
    }
    Ok(())
}
