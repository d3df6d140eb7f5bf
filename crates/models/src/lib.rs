//! `models`: energy models and score networks for fdsm, each a plain struct built by
//! `new(cfg, vb)` from a Candle `VarBuilder` with meaningful weight names, implementing the
//! `LogDensity` / `ScoreModel` traits of `sm-objectives`.
//!
//! * [`ResNetEbm`]: the deep-EBM ResNet with a generalised quadratic head (FD-SM Sec. 6.1,
//!   App. C.2).
//!
//! Models use only ops whose higher-order backward is correct in Candle; `tests/forbidden_ops.rs`
//! fails if one of `sm_objectives::safe_ops::FORBIDDEN_OPS` appears in this crate.

mod resnet_ebm;

pub use resnet_ebm::{Activation, ResNetEbm, ResNetEbmConfig};
