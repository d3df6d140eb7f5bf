//! `latent`: learning energy-based latent-variable models, after Bao et al. "Bi-level Score
//! Matching" (BiSM) and the VaES / VaGES estimators, on top of `models` and `sm-objectives`.
//!
//! The crate is part of the workspace layout (fd-core <- sm-objectives <- models <- latent <-
//! experiments); its methods land with the latent-variable issue.
