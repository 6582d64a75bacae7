//! Rank-N-Contrast (Zha et al., NeurIPS 2023).
//!
//! With the logits `s_ij = −‖f_i − f_j‖₂/τ` and the label distances
//! `d_ij = d(y_i, y_j)`, every ordered pair (i, k), k ≠ i, contrasts k
//! against every row at least as far from i in label:
//!
//! ```text
//! L = 1/(n(n−1)) Σ_i Σ_{k≠i} [ −s_ik + log Σ_{j≠i, d_ij ≥ d_ik} e^{s_ij} ]
//! ```
//!
//! (ties included, as in the reference's `>=`). The rows are any rows: the
//! reference's two views are its `2·bs` rows, view 0's then view 1's.
//!
//! For one anchor i, sorting its label distances makes every denominator a
//! suffix sum over the sorted rows, and the gradient a prefix sum:
//!
//! ```text
//! ∂L_i/∂s_ij = −1 + e^{s_ij} Σ_{k: d_ik ≤ d_ij} 1/S_ik,   S_ik = Σ_{j: d_ij ≥ d_ik} e^{s_ij}
//! ```
//!
//! [`anchor_terms`] takes both as running log-sum-exps, in O(n log n) for the
//! anchor and without overflow or underflow: every term it exponentiates is
//! at most log n. A zero distance (duplicated feature rows) has gradient 0
//! with respect to the features, as PyTorch's norm gives it.

use crate::config::named;
use crate::math::{exp, ln};
use crate::{Error, LabelMetric, Named, Scalar, cast, metric};

use super::lse::LogSum;
use super::{LabelledFeatures, check_positive, check_rank_metric};

/// The distance between feature rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FeatureDistance {
    /// The Euclidean distance, as in the reference's `l2`.
    #[default]
    L2,
}

named!(
    FeatureDistance,
    "feature_distance",
    [("l2", FeatureDistance::L2)]
);

/// Rank-N-Contrast's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankNContrast {
    /// τ, the temperature: must lie in [1e-6, 1e6], like ConR's.
    pub temperature: f64,
    /// The label distance (`l1` summed over label dimensions, as in the
    /// reference; `l2` and `linf` for wider labels).
    pub label_metric: LabelMetric,
    /// The feature distance.
    pub feature_distance: FeatureDistance,
}

impl Default for RankNContrast {
    /// τ = 2, `l1` labels, `l2` features: the reference's defaults.
    fn default() -> Self {
        Self {
            temperature: 2.0,
            label_metric: LabelMetric::L1,
            feature_distance: FeatureDistance::L2,
        }
    }
}

// Rank-N-Contrast's knobs: the one list the schema, Python and the docs read.
crate::knob::knobs!(
    RankNContrast,
    "Rank-N-Contrast knob",
    [
        (temperature: f64, "[1e-6, 1e6]", "τ, the temperature"),
        (label_metric: LabelMetric, "l1, l2, linf", "the label distance that ranks the pairs"),
        (feature_distance: FeatureDistance, "", "the feature distance; the similarity is its negative"),
    ]
);

impl RankNContrast {
    /// The config's own domain.
    pub fn validate(&self) -> Result<(), Error> {
        let Self {
            temperature,
            label_metric,
            feature_distance: FeatureDistance::L2,
        } = *self;
        check_positive("temperature", temperature)?;
        if !(1e-6..=1e6).contains(&temperature) {
            return Err(Error::InvalidConfig {
                field: "temperature",
                why: "must lie in [1e-6, 1e6]",
            });
        }
        check_rank_metric(label_metric)
    }
}

/// A validated batch for Rank-N-Contrast: features (n×D) and labels (n×L).
pub type RncBatch<'a, T> = LabelledFeatures<'a, T>;

impl<T: Scalar> RncBatch<'_, T> {
    /// Checks that every logit `−‖f_i − f_j‖/τ` is finite in `T`, through
    /// the bound `‖f_i − f_j‖ ≤ 2·√D·max|f|`: features that far apart for
    /// this τ have no loss in the precision, so they are refused alike by
    /// every engine rather than giving −∞ logits.
    pub fn check_logits(&self, config: &RankNContrast) -> Result<(), Error> {
        let largest = self
            .features()
            .iter()
            .fold(T::zero(), |m, x| m.max(x.abs()));
        let reach: T = cast(2.0 * libm::sqrt(self.shape().dim as f64) / config.temperature);
        if (largest * reach).is_finite() {
            Ok(())
        } else {
            Err(logits_overflow())
        }
    }

    /// The feature distance `‖f_i − f_j‖₂`, without overflow.
    #[inline]
    pub fn feature_distance(&self, i: usize, j: usize) -> T {
        super::euclidean(self.feature_row(i), self.feature_row(j))
    }

    /// The label distance `d(y_i, y_j)` under `metric`.
    #[inline]
    pub fn label_distance(&self, metric: LabelMetric, i: usize, j: usize) -> T {
        metric::distance(metric, self.label(i), self.label(j))
    }
}

/// The mean's divisor, n(n−1), the number of ordered pairs (at least 1, so
/// that a batch of one row has loss 0).
pub fn pair_count<T: Scalar>(rows: usize) -> T {
    cast::<T>(rows as f64) * cast::<T>(rows.saturating_sub(1).max(1) as f64)
}

/// One anchor's terms. `logits[j] = s_ij` and `label_distances[j] = d_ij`
/// over every row j (the anchor's own entries are ignored); `order` (n
/// entries) is scratch. Returns `Σ_{k≠i} (−s_ik + log S_ik)` and writes
/// `coefficients[j] = ∂/∂s_ij` of it (0 for j = i). Nothing is divided by
/// n(n−1) here.
pub fn anchor_terms<T: Scalar>(
    anchor: usize,
    logits: &[T],
    label_distances: &[T],
    order: &mut [usize],
    coefficients: &mut [T],
) -> T {
    let n = logits.len();
    debug_assert!(label_distances.len() == n && order.len() == n && coefficients.len() == n);
    coefficients[anchor] = T::zero();
    if n < 2 {
        return T::zero();
    }
    // The other rows, nearest label first (ties by index: a fixed order).
    let mut count = 0;
    for j in (0..n).filter(|&j| j != anchor) {
        order[count] = j;
        count += 1;
    }
    let others = &mut order[..count];
    others.sort_unstable_by(|&a, &b| {
        label_distances[a]
            .partial_cmp(&label_distances[b])
            .unwrap_or(core::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let tie = |a: usize, b: usize| label_distances[a] == label_distances[b];

    // Far to near: log S for each group of equal distance, kept in the
    // coefficients until the second pass needs it.
    let mut loss = T::zero();
    let mut suffix = LogSum::new();
    let mut end = count;
    while end > 0 {
        let mut start = end - 1;
        while start > 0 && tie(others[start - 1], others[end - 1]) {
            start -= 1;
        }
        for &j in &others[start..end] {
            suffix.add(logits[j]);
        }
        let log_s = suffix.get();
        for &j in &others[start..end] {
            loss = loss + (log_s - logits[j]);
            coefficients[j] = log_s;
        }
        end = start;
    }

    // Near to far: P = log Σ_{k: d_ik ≤ d_ij} 1/S_ik, and the coefficients.
    let mut prefix = LogSum::new();
    let mut start = 0;
    while start < count {
        let mut end = start + 1;
        while end < count && tie(others[start], others[end]) {
            end += 1;
        }
        let log_s = coefficients[others[start]];
        let members: T = cast((end - start) as f64);
        prefix.add(ln(members) - log_s);
        let p = prefix.get();
        for &j in &others[start..end] {
            coefficients[j] = exp(logits[j] + p) - T::one();
        }
        start = end;
    }
    loss
}

/// The gradient weight of one pair's features from anchor i's coefficient:
/// `∂L/∂f_i += w (f_i − f_j)` and `∂L/∂f_j −= w (f_i − f_j)`, with
/// `w = −c_ij / (n(n−1) τ r_ij)`, and 0 where `r_ij = 0`.
#[inline]
pub fn pair_weight<T: Scalar>(coefficient: T, distance: T, temperature: T, pairs: T) -> T {
    if distance > T::zero() {
        -coefficient / (pairs * temperature * distance)
    } else {
        T::zero()
    }
}

/// The error where feature distances over τ are past the precision: refused
/// before the engines run ([`RncBatch::check_logits`]) and, should a
/// result still overflow, after ([`super::RncOutput::checked`]).
pub(crate) fn logits_overflow() -> Error {
    Error::InvalidConfig {
        field: "temperature",
        why: "feature distances over τ overflow the precision",
    }
}
