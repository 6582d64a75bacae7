//! The losses ConR is combined with in deep imbalanced regression, in the
//! same core: [`ranksim`] (RankSim, Gong, Mori and Tung, ICML 2022),
//! [`rnc`] (Rank-N-Contrast, Zha et al., NeurIPS 2023) and [`balanced_mse`]
//! (Balanced MSE, Ren et al., CVPR 2022).
//!
//! Each module holds its config (with its own domain checks), a validated
//! batch, and the per-row math as pure functions over slices that never
//! allocate: an engine composes them (the CPU reference and fast engines in
//! `conr-cpu`), and [`crate::Engine`] is the one interface a consumer holds
//! for ConR and its companions alike.
//!
//! The semantics are those of each method's public reference code, stated in
//! each module, with its edge cases made finite: a zero feature distance, a
//! batch of one row, a prior component of weight 0.

pub mod balanced_mse;
mod labelled;
mod lse;
#[cfg(feature = "alloc")]
mod output;
pub mod rank;
pub mod ranksim;
pub mod rnc;

pub use labelled::LabelledFeatures;
#[cfg(feature = "alloc")]
pub use output::{BalancedMseOutput, RankSimOutput, RncOutput};

use crate::math::sqrt;
use crate::rules::Rule;
use crate::{Error, LabelMetric, Scalar};

/// Checks that `values` has `rows · width` entries and that each row obeys
/// `rule` (one of the finiteness rules).
pub(crate) fn check_rows<T: Scalar>(
    what: &'static str,
    values: &[T],
    rows: usize,
    width: usize,
    rule: Rule,
) -> Result<(), Error> {
    let expected = rows.checked_mul(width).ok_or(Error::InvalidConfig {
        field: "shape",
        why: "M·D and M·L must fit in a usize",
    })?;
    if values.len() != expected {
        return Err(Error::ShapeMismatch {
            what,
            expected,
            got: values.len(),
        });
    }
    match values.chunks_exact(width).position(|v| !rule.holds(v)) {
        Some(row) => Err(rule.error(row)),
        None => Ok(()),
    }
}

/// The label metrics the rank-based losses take: `l1`, `l2` and `linf`. The
/// angle has no use there (and no defined distance for a zero label).
pub(crate) fn check_rank_metric(metric: LabelMetric) -> Result<(), Error> {
    match metric {
        LabelMetric::L1 | LabelMetric::L2 | LabelMetric::Linf => Ok(()),
        LabelMetric::Angular => Err(Error::InvalidConfig {
            field: "label_metric",
            why: "must be l1, l2 or linf for this loss",
        }),
    }
}

/// Checks that a config value is finite and positive.
pub(crate) fn check_positive(field: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            why: "must be finite and > 0",
        })
    }
}

/// The Euclidean distance between two rows: a plain sum of squares, or, where
/// that overflows, the same length scaled by the largest component.
#[inline]
pub(crate) fn euclidean<T: Scalar>(a: &[T], b: &[T]) -> T {
    let squares = a.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| {
        let d = x - y;
        acc + d * d
    });
    if squares.is_finite() {
        return sqrt(squares);
    }
    let big = a
        .iter()
        .zip(b)
        .fold(T::zero(), |acc, (&x, &y)| acc.max((x - y).abs()));
    let scaled = a.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| {
        let r = (x - y) / big;
        acc + r * r
    });
    (big * sqrt(scaled)).min(T::max_value())
}
