//! `models`: energy models and score networks for fdsm (the deep-EBM ResNet of FD-SM App. C.2,
//! NICE, DKEF, NCSN, the GRBM and variational posteriors), each a plain struct built by
//! `new(cfg, vb)` from a Candle `VarBuilder` and implementing the forward traits of
//! `sm-objectives`.
//!
//! The crate is part of the workspace layout (fd-core <- sm-objectives <- models <- latent <-
//! experiments); its models land with the issues that need them.
