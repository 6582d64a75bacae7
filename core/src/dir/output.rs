//! What the companion losses' engines return (needs the `alloc` feature).

use alloc::vec::Vec;

use super::balanced_mse::Scale;
use crate::{Error, Scalar};

/// RankSim's loss and gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct RankSimOutput<T> {
    /// The loss, summed over the subset's rows.
    pub loss: T,
    /// `∂loss/∂features`, M×D (zero for rows outside the subset).
    pub grad_features: Vec<T>,
    /// The subset's rows, in the order the ranks were taken over.
    pub rows: Vec<usize>,
}

/// Rank-N-Contrast's loss and gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct RncOutput<T> {
    /// The loss, the mean over ordered pairs.
    pub loss: T,
    /// `∂loss/∂features`, n×D.
    pub grad_features: Vec<T>,
}

/// Balanced MSE's loss and gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancedMseOutput<T> {
    /// The loss, the mean over rows (times 2σ²).
    pub loss: T,
    /// `∂loss/∂preds`, n×L.
    pub grad_preds: Vec<T>,
    /// `∂loss/∂σ`.
    pub grad_noise_sigma: T,
}

impl<T: Scalar> BalancedMseOutput<T> {
    /// The output from the sums over rows of [`Scale::row`]'s summands and
    /// the scaled `grad_preds`; an error where a value overflows `T` (a
    /// prediction so far from the prior's mass that the loss itself is past
    /// the largest number of the precision), never a non-finite output.
    pub fn from_sums(
        scale: &Scale<T>,
        terms: T,
        d_variance: T,
        grad_preds: Vec<T>,
    ) -> Result<Self, Error> {
        let out = Self {
            loss: terms * scale.scale,
            grad_preds,
            grad_noise_sigma: d_variance * scale.scale * scale.d_sigma,
        };
        let sigma = [out.grad_noise_sigma];
        finite(out.loss, [&out.grad_preds[..], &sigma], || {
            Error::InvalidConfig {
                field: "preds",
                why: "the predictions lie so far from the prior for this σ that the loss overflows the precision",
            }
        })?;
        Ok(out)
    }
}

/// `Ok` where the loss and every gradient value are finite; otherwise
/// `overflow()`: for finite inputs a non-finite result means the loss or its
/// gradient lies past the precision's largest number, which no output can
/// carry.
fn finite<T: Scalar, const N: usize>(
    loss: T,
    grads: [&[T]; N],
    overflow: impl FnOnce() -> Error,
) -> Result<(), Error> {
    let ok = loss.is_finite() && grads.iter().all(|g| g.iter().all(|x| x.is_finite()));
    if ok { Ok(()) } else { Err(overflow()) }
}

impl<T: Scalar> RankSimOutput<T> {
    /// The output, or an error where a value overflows `T` (feature rows so
    /// short that the normalisation's gradient is past the precision).
    pub fn checked(self) -> Result<Self, Error> {
        finite(self.loss, [&self.grad_features[..]], || {
            Error::InvalidConfig {
                field: "features",
                why: "a feature row is so short that RankSim's gradient overflows the precision",
            }
        })?;
        Ok(self)
    }
}

impl<T: Scalar> RncOutput<T> {
    /// The output, or an error where a value overflows `T` (feature
    /// distances so large that `d/τ` is past the precision).
    pub fn checked(self) -> Result<Self, Error> {
        finite(
            self.loss,
            [&self.grad_features[..]],
            super::rnc::logits_overflow,
        )?;
        Ok(self)
    }
}
