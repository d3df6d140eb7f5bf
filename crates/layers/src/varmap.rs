//! The variables of a candle-nn `VarMap` in a fixed order (sorted by name), for code that must
//! visit them reproducibly: seeding, optimiser state, checkpoints.

use candle_core::Var;
use candle_nn::VarMap;

/// The variables of `varmap` with their names, sorted by name.
///
/// # Panics
/// If the `VarMap`'s lock is poisoned (a thread panicked while holding it).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("VarMap lock");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}
