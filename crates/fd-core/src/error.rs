//! Typed errors of `fd-core`: every way a stencil request or an estimate can be malformed.

use std::error::Error as StdError;

/// Everything that can go wrong when building a finite-difference stencil or applying it.
///
/// The variants name the offending input so that a caller can report it verbatim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FdError {
    /// A derivative of order 0 was requested; a stencil for it would just be `L(x)`.
    #[error("derivative order must be at least 1, got 0")]
    ZeroOrder,

    /// The order exceeds [`crate::MAX_ORDER`]; beyond it `T!` and the Vandermonde systems lose
    /// all precision in `f64`.
    #[error("derivative order {order} exceeds the supported maximum {max}")]
    OrderTooLarge {
        /// Requested order.
        order: u32,
        /// Largest supported order.
        max: u32,
    },

    /// Fewer evaluation points than the order needs (Lemma 1 needs `T + 1` offsets,
    /// Theorem 1 needs `ceil(T / 2)` positive alphas).
    #[error("order {order} needs at least {needed} {what}, got {got}")]
    TooFewPoints {
        /// Requested order.
        order: u32,
        /// What was counted ("offsets" or "alphas").
        what: &'static str,
        /// Minimum count.
        needed: usize,
        /// Count supplied.
        got: usize,
    },

    /// Two offsets (or two alphas) coincide, which makes the Vandermonde matrix singular.
    #[error("{what} {first} and {second} are both {value}; they must be distinct")]
    DuplicatePoint {
        /// What was duplicated ("offsets" or "alphas").
        what: &'static str,
        /// Index of the first occurrence.
        first: usize,
        /// Index of the second occurrence.
        second: usize,
        /// The repeated value.
        value: f64,
    },

    /// An offset or alpha is NaN or infinite.
    #[error("{what} {index} is not finite ({value})")]
    NonFinitePoint {
        /// What was non-finite ("offset" or "alpha").
        what: &'static str,
        /// Its index.
        index: usize,
        /// Its value.
        value: f64,
    },

    /// Theorem 1 takes strictly positive alphas.
    #[error("alpha {index} is {value}; Theorem 1 needs strictly positive alphas")]
    NonPositiveAlpha {
        /// Its index.
        index: usize,
        /// Its value.
        value: f64,
    },

    /// The Vandermonde solve produced a non-finite coefficient (nodes too close together or
    /// spread over too many orders of magnitude for `f64`).
    #[error("the Vandermonde system is numerically singular: coefficient {index} is {value}")]
    IllConditioned {
        /// Index of the first non-finite coefficient.
        index: usize,
        /// The coefficient.
        value: f64,
    },

    /// Two inputs that must agree in length do not.
    #[error("{what}: expected length {expected}, got {got}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },

    /// An input point or direction holds NaN or infinity.
    #[error("{what} has a non-finite entry at index {index}")]
    NonFiniteInput {
        /// Which input ("x" or "v").
        what: &'static str,
        /// Flat index of the first bad entry.
        index: usize,
    },

    /// The evaluated function returned NaN or infinity at a shifted point.
    #[error("the function returned a non-finite value at evaluation {index} (offset {offset})")]
    NonFiniteEvaluation {
        /// Flat index of the evaluation (offset-major, see [`crate::Stencil::shifted_batch`]).
        index: usize,
        /// The stencil offset of that evaluation.
        offset: f64,
    },

    /// A batched evaluator failed.
    #[error("the batch evaluator failed: {0}")]
    Evaluator(#[source] Box<dyn StdError + Send + Sync>),
}
