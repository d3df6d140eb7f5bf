//! `experiments`: the library behind the experiment binaries that reproduce the tables and
//! figures of the FD score-matching papers (shared trainer, evaluation, reports).
//!
//! The crate is part of the workspace layout (fd-core <- sm-objectives <- models <- latent <-
//! experiments); the experiments land with the issues that build them.
