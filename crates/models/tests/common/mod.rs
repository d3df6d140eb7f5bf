//! Helpers shared by the model tests.
#![allow(dead_code)]

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

/// The largest absolute difference between two tensors of one shape (as f64).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The variables of `vm` with their names, sorted by name (a fixed order to seed them in).
pub fn sorted_vars(vm: &VarMap) -> Vec<(String, Var)> {
    let mut vars: Vec<(String, Var)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}
