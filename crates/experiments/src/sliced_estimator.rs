//! The two score-network objectives that FD-SM's Tables 5 and 6 compare: sliced score matching
//! with variance reduction (SSMVR, Song et al. 2019) and its finite-difference form (FD-SSMVR,
//! FD-SM Sec. 4).

use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};

/// SSMVR or FD-SSMVR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlicedEstimator {
    /// SSMVR: Gaussian directions, `v^T (grad s) v` by a reverse pass, differentiated again for
    /// the parameters (Candle's higher-order mode).
    Ssmvr,
    /// FD-SSMVR: two score evaluations at `x +- v`, `v` on the sphere of radius `eps`, in one
    /// pass; first order only.
    FdSsmvr,
}

/// Both, in the tables' order.
pub const SLICED_ESTIMATORS: [SlicedEstimator; 2] =
    [SlicedEstimator::Ssmvr, SlicedEstimator::FdSsmvr];

impl SlicedEstimator {
    /// The command-line key: `ssmvr`, `fd-ssmvr`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Ssmvr => "ssmvr",
            Self::FdSsmvr => "fd-ssmvr",
        }
    }

    /// The paper's name.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ssmvr => "SSMVR",
            Self::FdSsmvr => "FD-SSMVR",
        }
    }

    /// Whether its step differentiates through a gradient (Candle's higher-order mode).
    pub fn higher_order(self) -> bool {
        self == Self::Ssmvr
    }

    /// Parses a key.
    ///
    /// # Errors
    /// [`ExpError::Config`] listing the keys.
    pub fn parse(s: &str) -> Result<Self> {
        SLICED_ESTIMATORS
            .into_iter()
            .find(|e| e.key() == s)
            .ok_or_else(|| {
                ExpError::Config(format!(
                    "`{s}` is not a score estimator; they are {}",
                    SLICED_ESTIMATORS.map(SlicedEstimator::key).join(", ")
                ))
            })
    }
}
