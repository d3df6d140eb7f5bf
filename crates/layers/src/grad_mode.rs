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

use candle_core::{Device, Result, Tensor, Var};

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

thread_local! {
    static INPUT_GRADIENTS_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Restores the previous [`input_gradients_only`] state when dropped (also on unwinding).
struct InputOnlyGuard(bool);

impl Drop for InputOnlyGuard {
    fn drop(&mut self) {
        INPUT_GRADIENTS_ONLY.with(|c| c.set(self.0));
    }
}

/// Runs `f` (a backward pass whose caller keeps only the gradient with respect to an input, such
/// as the score `grad_x log p(x)` of the objectives) with the parameter gradients of this
/// crate's fused ops skipped (the dense layer's weight and bias, the convolutions' kernel and
/// bias on their differentiable path): Candle's backward pass asks every op for the gradients
/// of all its arguments, and the parameter gradients it would compute there are thrown away. The
/// graph of the input gradient does not contain them, so a later backward pass through it (the
/// parameter gradient of a loss built from the score) is unchanged. Nested calls keep the flag
/// set; it is restored afterwards, also when `f` panics.
pub fn input_gradients_only<T>(f: impl FnOnce() -> T) -> T {
    let previous = INPUT_GRADIENTS_ONLY.with(|c| c.replace(true));
    let _guard = InputOnlyGuard(previous);
    f()
}

/// Whether the calling thread is inside [`input_gradients_only`].
pub fn parameter_gradients_skipped() -> bool {
    INPUT_GRADIENTS_ONLY.with(Cell::get)
}

/// The gradient an op returns for a parameter argument inside [`input_gradients_only`]: none for
/// a variable (Candle skips variables when it walks the graph back), zeros for an intermediate
/// tensor (Candle expects every such node on a path to a variable to receive a gradient), which
/// cost one small fill instead of a product.
pub(crate) fn dropped_gradient(arg: &Tensor) -> Result<Option<Tensor>> {
    if arg.is_variable() {
        Ok(None)
    } else {
        Ok(Some(arg.zeros_like()?))
    }
}

/// The gradient `grad()` for `arg`, or none when Candle's backward pass would not use it: only a
/// variable, or a tensor computed from one, needs a gradient. Candle calls an op's backward pass
/// for all of its arguments once any of them needs a gradient, so an op whose input is data (the
/// first layer of a network under a finite-difference or MLE loss) would otherwise compute that
/// input's gradient, a product as large as the layer's forward pass, and have Candle accumulate
/// it, only to be dropped.
pub(crate) fn gradient_if_needed(
    arg: &Tensor,
    grad: impl FnOnce() -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    arg.track_op().then(grad).transpose()
}
