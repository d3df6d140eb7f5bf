//! Candle's higher-order mode: whether gradients stay attached to their graph, so that a loss
//! built from a gradient can be differentiated again (score matching's second derivatives).
//!
//! Candle detaches every intermediate gradient during `backward()` unless the environment
//! variable `CANDLE_GRAD_DO_NOT_DETACH` is set to a non-empty value other than `0` **before the
//! first backward pass on a thread** (the value is read once per thread). The fused
//! convolutions of this crate read the mode when they are built: with it off they compute
//! their backward passes directly (first order is all Candle will use), with it on they build
//! them from differentiable ops. `sm_objectives::autodiff` checks it before every objective
//! that differentiates through a gradient.

use std::cell::Cell;

use candle_core::{Device, Result, Var};

/// The environment variable Candle reads to keep gradients attached to their graph.
pub const HIGHER_ORDER_ENV: &str = "CANDLE_GRAD_DO_NOT_DETACH";

thread_local! {
    static HIGHER_ORDER_OK: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether Candle computes correct second derivatives on this thread.
///
/// Runs a one-time self-check per thread: `d^2/dx^2 exp(sin x)` at `x = 0.7` by two nested
/// backward passes must equal `(cos^2 x - sin x) exp(sin x)`. A composition is needed: with a
/// single op, Candle's backward multiplies the detached upstream gradient by a tracked factor and
/// happens to give the right answer even with detaching on. The answer is cached, since Candle
/// fixes the mode per thread.
pub fn higher_order_enabled() -> bool {
    HIGHER_ORDER_OK.with(|cell| {
        if let Some(ok) = cell.get() {
            return ok;
        }
        let ok = second_derivative_self_check().unwrap_or(false);
        cell.set(Some(ok));
        ok
    })
}

fn second_derivative_self_check() -> Result<bool> {
    let x0 = 0.7f64;
    let x = Var::new(&[x0], &Device::Cpu)?;
    let y = x.as_tensor().sin()?.exp()?.sum_all()?;
    let first = match y.backward()?.remove(x.as_tensor()) {
        Some(g) => g.sum_all()?,
        None => return Ok(false),
    };
    let second = match first.backward()?.remove(x.as_tensor()) {
        Some(g) => g.sum_all()?.to_scalar::<f64>()?,
        None => return Ok(false),
    };
    let expected = (x0.cos().powi(2) - x0.sin()) * x0.sin().exp();
    Ok((second - expected).abs() < 1e-12)
}

/// Proof that Candle computes correct second derivatives on the thread that obtained it: the
/// result of [`enable_higher_order`] or [`HigherOrder::current`], held by the code that builds
/// losses from gradients and passed to what needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HigherOrder {
    _checked: (),
}

impl HigherOrder {
    /// The mode as it is on this thread (from the environment the process started with), without
    /// changing anything: `None` when second derivatives would be wrong.
    pub fn current() -> Option<Self> {
        higher_order_enabled().then_some(Self { _checked: () })
    }
}

/// Turns Candle's higher-order mode on for this process by setting [`HIGHER_ORDER_ENV`], and
/// returns the proof that this thread now computes correct second derivatives (`None` if it
/// does not, e.g. because a backward pass already ran on it).
///
/// Call it at the start of `main` (or of a test) before any Candle backward pass has run on the
/// calling thread and before other threads read the environment: Candle reads the variable
/// once per thread, so threads that already ran a backward pass keep their mode. A process
/// that starts others sets the variable on their command instead.
pub fn enable_higher_order() -> Option<HigherOrder> {
    if !higher_order_requested() {
        std::env::set_var(HIGHER_ORDER_ENV, "1");
    }
    HigherOrder::current()
}

/// Whether [`HIGHER_ORDER_ENV`] is set in the environment to turn the mode on (a non-empty
/// value other than `0`), e.g. for a test that must run with the mode off.
pub fn higher_order_requested() -> bool {
    std::env::var(HIGHER_ORDER_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}
