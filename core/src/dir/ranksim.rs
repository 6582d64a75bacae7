//! RankSim: the rank-similarity regularizer (Gong, Mori and Tung, ICML 2022).
//!
//! For a subset of b rows of the batch, each row i compares two rankings of
//! the subset: of its feature similarities `s_ij = ẑ_i·ẑ_j` (ẑ the
//! L2-normalised features, j running over the subset, i included) and of its
//! label similarities `−d(y_i, y_j)`. The loss is
//!
//! ```text
//! L = Σ_i (1/b) Σ_j (rank(s_i)_j − rank(−d_i)_j)²
//! ```
//!
//! a **sum** over the subset's rows of each row's mean squared difference of
//! [normalised ranks](super::rank), as in the reference. Ranks are piecewise
//! constant, so the gradient is the blackbox one of Vlastelica et al. (ICLR
//! 2020): with `g = ∂L_i/∂rank(s_i)` and `s' = s_i + λ·g`,
//! `∂L_i/∂s_i = −(rank(s_i) − rank(s'))/(λ + 10⁻⁸)`, the 10⁻⁸ as in the
//! reference. It flows back through `s = ẑẑᵀ` (to both rows of each pair)
//! and the normalisation into the features; rows outside the subset get a
//! zero gradient.
//!
//! The reference keeps one row per distinct label, chosen at random, with the
//! subset in ascending label order, and every row in batch order when the
//! labels are already distinct: [`Subsample::OnePerLabel`] does that with a
//! seeded, deterministic choice. [`Subsample::Every`] takes every row, and
//! [`RankSimBatch::new`] also takes the rows themselves.

use crate::config::named;
use crate::{Error, LabelMetric, Named, Scalar, Shape, cast};

use super::rank::normalised_ranks;
use super::{LabelledFeatures, check_positive, check_rank_metric};

/// The 10⁻⁸ the reference adds to λ in the blackbox gradient's denominator.
pub const BLACKBOX_EPSILON: f64 = 1e-8;

/// Which rows form the subset the ranks are taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subsample {
    /// One row per distinct label, as the reference does it (the row chosen
    /// by [`RankSim::seed`]), in ascending label order; every row in batch
    /// order where the labels are already distinct.
    #[default]
    OnePerLabel,
    /// Every row, in batch order.
    Every,
}

named!(
    Subsample,
    "subsample",
    [
        ("one_per_label", Subsample::OnePerLabel),
        ("every", Subsample::Every),
    ]
);

/// RankSim's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSim {
    /// λ, the interpolation strength of the blackbox rank gradient (> 0).
    pub lambda: f64,
    /// The label distance; the label similarity is its negative.
    pub label_metric: LabelMetric,
    /// Which rows form the subset.
    pub subsample: Subsample,
    /// The seed of [`Subsample::OnePerLabel`]'s choice.
    pub seed: u64,
}

impl Default for RankSim {
    /// λ = 2, the `l1` label distance, one row per label with seed 0.
    fn default() -> Self {
        Self {
            lambda: 2.0,
            label_metric: LabelMetric::L1,
            subsample: Subsample::OnePerLabel,
            seed: 0,
        }
    }
}

// RankSim's knobs: the one list the schema, Python and the docs read.
crate::knob::knobs!(
    RankSim,
    "RankSim knob",
    [
        (
            lambda: f64,
            "(0, 1e6]",
            "λ, the interpolation strength of the blackbox rank gradient (Python: `interpolation_lambda`)"
        ),
        (label_metric: LabelMetric, "l1, l2, linf", "the label distance; the label similarity is its negative"),
        (subsample: Subsample, "", "which rows form the subset: one per distinct label, or every row"),
        (seed: u64, "", "the seed of `one_per_label`'s choice"),
    ]
);

impl RankSim {
    /// The config's own domain: λ in (0, 1e6], the label metric one of
    /// `l1`, `l2`, `linf`.
    pub fn validate(&self) -> Result<(), Error> {
        let Self {
            lambda,
            label_metric,
            subsample: _,
            seed: _,
        } = *self;
        check_positive("lambda", lambda)?;
        if lambda > 1e6 {
            return Err(Error::InvalidConfig {
                field: "lambda",
                why: "must be at most 1e6",
            });
        }
        check_rank_metric(label_metric)
    }
}

/// A validated batch for RankSim: row-major features (M×D) and labels
/// (M×L), and optionally the subset's rows, given rather than chosen. It
/// reads as the [`LabelledFeatures`] it holds.
#[derive(Debug, Clone, Copy)]
pub struct RankSimBatch<'a, T> {
    batch: LabelledFeatures<'a, T>,
    rows: Option<&'a [usize]>,
}

impl<'a, T> core::ops::Deref for RankSimBatch<'a, T> {
    type Target = LabelledFeatures<'a, T>;

    fn deref(&self) -> &LabelledFeatures<'a, T> {
        &self.batch
    }
}

impl<'a, T: Scalar> RankSimBatch<'a, T> {
    /// Validates the batch as [`LabelledFeatures::new`] does, and that
    /// `rows` (where given) is non-empty and names rows of the batch.
    pub fn new(
        shape: Shape,
        features: &'a [T],
        labels: &'a [T],
        rows: Option<&'a [usize]>,
    ) -> Result<Self, Error> {
        let batch = LabelledFeatures::new(shape, features, labels)?;
        if let Some(rows) = rows {
            if rows.is_empty() {
                return Err(Error::InvalidConfig {
                    field: "rows",
                    why: "the subset needs at least one row",
                });
            }
            if rows.iter().any(|&r| r >= shape.rows) {
                return Err(Error::InvalidConfig {
                    field: "rows",
                    why: "every row must be below the batch's row count",
                });
            }
        }
        Ok(Self { batch, rows })
    }

    /// The subset's rows, where the caller gave them.
    pub fn rows(&self) -> Option<&'a [usize]> {
        self.rows
    }

    /// Writes the subset's rows into `out[..b]` and returns b: the given
    /// rows, or those `config` chooses. `out` holds at least M entries (or
    /// as many as the given rows).
    pub fn select(&self, config: &RankSim, out: &mut [usize]) -> Result<usize, Error> {
        config.validate()?;
        let needed = self.rows.map_or(self.shape().rows, <[usize]>::len);
        if out.len() < needed {
            return Err(Error::BufferTooSmall {
                what: "rows",
                needed,
                got: out.len(),
            });
        }
        let out = &mut out[..needed];
        match (self.rows, config.subsample) {
            (Some(rows), _) => out.copy_from_slice(rows),
            (None, Subsample::Every) => out.iter_mut().enumerate().for_each(|(k, r)| *r = k),
            (None, Subsample::OnePerLabel) => {
                return Ok(one_per_label(
                    self.labels(),
                    self.shape().label_dim,
                    config.seed,
                    out,
                ));
            }
        }
        Ok(needed)
    }
}

/// One row per distinct label vector: writes the subset into `out[..b]` and
/// returns b. Labels are grouped by exact equality (−0 = +0), the groups in
/// ascending lexicographic order, and the row of each group chosen by a hash
/// of `seed` and the group's position. Where every label is distinct, the
/// subset is every row in batch order, as in the reference. `out` has one
/// entry per row.
pub fn one_per_label<T: Scalar>(
    labels: &[T],
    label_dim: usize,
    seed: u64,
    out: &mut [usize],
) -> usize {
    let rows = out.len();
    let label = |j: usize| &labels[j * label_dim..(j + 1) * label_dim];
    for (k, slot) in out.iter_mut().enumerate() {
        *slot = k;
    }
    out.sort_unstable_by(|&a, &b| compare_labels(label(a), label(b)).then(a.cmp(&b)));
    let mut groups = 0;
    let mut start = 0;
    while start < rows {
        let mut end = start + 1;
        while end < rows && compare_labels(label(out[start]), label(out[end])).is_eq() {
            end += 1;
        }
        let pick = mix(seed ^ mix(groups as u64)) % (end - start) as u64;
        // A group starts at or after its own position, so this never
        // overwrites a group still to be read.
        out[groups] = out[start + pick as usize];
        groups += 1;
        start = end;
    }
    if groups == rows {
        for (k, slot) in out.iter_mut().enumerate() {
            *slot = k;
        }
    }
    groups
}

fn compare_labels<T: Scalar>(a: &[T], b: &[T]) -> core::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.partial_cmp(y).unwrap_or(core::cmp::Ordering::Equal))
        .find(|o| o.is_ne())
        .unwrap_or(core::cmp::Ordering::Equal)
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash, the same on every platform.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Scratch for one subset row's terms: three buffers of b values.
#[derive(Debug)]
pub struct RowScratch<'s, T> {
    /// The sort's permutation.
    pub order: &'s mut [usize],
    /// The ranks of the feature similarities.
    pub ranks: &'s mut [T],
    /// The ranks of the label similarities, then of the perturbed similarities.
    pub other: &'s mut [T],
}

/// One subset row's part of the loss, `(1/b) Σ_j (rank(s)_j − rank(−d)_j)²`,
/// with its blackbox gradient `∂/∂s_j` written into `grad`. `sims` holds the
/// row's feature similarities and `label_sims` its label similarities, both
/// over the subset (b values each, as `grad` and the scratch).
pub fn row_terms<T: Scalar>(
    lambda: T,
    sims: &[T],
    label_sims: &[T],
    scratch: RowScratch<'_, T>,
    grad: &mut [T],
) -> T {
    let RowScratch {
        order,
        ranks,
        other,
    } = scratch;
    let b: T = cast(sims.len() as f64);
    normalised_ranks(label_sims, order, other);
    normalised_ranks(sims, order, ranks);
    let two = cast::<T>(2.0);
    let mut loss = T::zero();
    for (j, g) in grad.iter_mut().enumerate() {
        let diff = ranks[j] - other[j];
        loss = loss + diff * diff;
        // The perturbed similarity s + λ·∂L/∂rank, ranked next.
        *g = sims[j] + lambda * (two * diff / b);
    }
    normalised_ranks(grad, order, other);
    let denominator = lambda + cast(BLACKBOX_EPSILON);
    for (j, g) in grad.iter_mut().enumerate() {
        *g = -(ranks[j] - other[j]) / denominator;
    }
    loss / b
}
