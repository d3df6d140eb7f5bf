//! Test helpers: small GRBMs with fixed, trainable f64 parameters, and their variables in a
//! stable order.
#![allow(dead_code)]

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::{Grbm, GrbmConfig};

/// `scale * sin((i + phase) 1.37)`: deterministic, irregular parameter values.
pub fn wave(n: usize, phase: f64, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 + phase) * 1.37).sin() * scale)
        .collect()
}

/// A `visible x hidden` GRBM whose parameters live in a `VarMap` (so gradients reach them),
/// set to fixed `wave` values.
pub fn grbm(visible: usize, hidden: usize) -> Result<(VarMap, Grbm)> {
    let vm = VarMap::new();
    let m = Grbm::new(
        GrbmConfig { visible, hidden },
        VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
    )?;
    for (name, values) in [
        ("w", wave(visible * hidden, 0.3, 0.8)),
        ("b", wave(visible, 1.1, 0.5)),
        ("c", wave(hidden, 2.3, 0.5)),
        ("log_sigma", wave(visible, 0.7, 0.3)),
    ] {
        let data = vm.data().lock().unwrap();
        data[name].set(&Tensor::from_vec(values, data[name].shape(), &Device::Cpu)?)?;
    }
    Ok((vm, m))
}
