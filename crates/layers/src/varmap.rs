//! The variables of a candle-nn `VarMap` in a fixed order (sorted by name), for code that must
//! visit them reproducibly: seeding, optimiser state, checkpoints.

use candle_core::Var;
use candle_nn::VarMap;

/// The variables of `varmap` with their names, sorted by name. A lock poisoned by a thread that
/// panicked while holding it is read all the same: listing the variables cannot leave them
/// half-changed.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap
        .data()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}
