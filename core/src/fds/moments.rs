//! The statistics pass: per group, the count, the sum and the sum of squares
//! about the group's mean, accumulated in f64.
//!
//! Each pass *adds* into its output, so that the pass over chunks of rows
//! (the fast engine's threads) or over workers (ranks, whose outputs are then
//! summed) adds up to the pass over the whole batch. The mean and variance
//! come from the totals: two passes, as the reference's `mean` and `var`
//! (unbiased, except a group of one sample, whose variance is 0).

use super::groups::NO_GROUP;
use crate::{Error, Scalar};

/// The rows of one pass: features (`rows × dim`, row-major) and the group of
/// each row ([`super::groups::assign`]), among `groups` groups.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T> {
    features: &'a [T],
    dim: usize,
    of_row: &'a [u32],
    groups: usize,
}

impl<'a, T: Scalar> Rows<'a, T> {
    /// Checks the shapes, that every group index is below `groups` (or
    /// [`NO_GROUP`]) and that every feature is finite.
    pub fn new(
        features: &'a [T],
        dim: usize,
        of_row: &'a [u32],
        groups: usize,
    ) -> Result<Self, Error> {
        if dim == 0 {
            return Err(Error::ZeroWidth { what: "features" });
        }
        crate::dir::check_rows(
            "features",
            features,
            of_row.len(),
            dim,
            crate::rules::Rule::FeaturesFinite,
        )?;
        if of_row
            .iter()
            .any(|&g| g != NO_GROUP && g as usize >= groups)
        {
            return Err(Error::InvalidConfig {
                field: "of_row",
                why: "every group must be below the number of groups",
            });
        }
        Ok(Self {
            features,
            dim,
            of_row,
            groups,
        })
    }

    /// The feature width D.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.of_row.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.of_row.is_empty()
    }

    /// The number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The rows `range` alone.
    pub fn slice(&self, range: core::ops::Range<usize>) -> Self {
        Self {
            features: &self.features[range.start * self.dim..range.end * self.dim],
            dim: self.dim,
            of_row: &self.of_row[range],
            groups: self.groups,
        }
    }

    /// Each row's group and features.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &'a [T])> + '_ {
        self.of_row
            .iter()
            .copied()
            .zip(self.features.chunks_exact(self.dim))
    }

    /// The length of a per-group output: `groups × dim`.
    pub fn out_len(&self) -> usize {
        self.groups * self.dim
    }
}

/// What one pass adds up, per group and dimension.
#[derive(Debug, Clone, Copy)]
pub enum Pass<'a> {
    /// `Σ x`.
    Sums,
    /// `Σ (x − mean)²`, given each group's mean (`groups × dim`).
    Squares {
        /// The group means, from [`means`].
        means: &'a [f64],
    },
}

/// Adds each group's row count into `counts` (`groups` values).
pub fn count<T: Scalar>(rows: &Rows<'_, T>, counts: &mut [f64]) -> Result<(), Error> {
    check_len("counts", rows.groups, counts.len())?;
    for &g in rows.of_row {
        if g != NO_GROUP {
            counts[g as usize] += 1.0;
        }
    }
    Ok(())
}

/// Adds the pass `pass` over `rows` into `out` (`groups × dim`).
pub fn accumulate<T: Scalar>(
    rows: &Rows<'_, T>,
    pass: Pass<'_>,
    out: &mut [f64],
) -> Result<(), Error> {
    check_len("moments", rows.out_len(), out.len())?;
    let dim = rows.dim;
    match pass {
        Pass::Sums => {
            for (g, x) in rows.iter().filter(|(g, _)| *g != NO_GROUP) {
                let acc = &mut out[g as usize * dim..][..dim];
                add_sums(acc, x);
            }
        }
        Pass::Squares { means } => {
            check_len("means", rows.out_len(), means.len())?;
            for (g, x) in rows.iter().filter(|(g, _)| *g != NO_GROUP) {
                let at = g as usize * dim;
                add_squares(&mut out[at..at + dim], x, &means[at..at + dim]);
            }
        }
    }
    Ok(())
}

/// `acc += x`, widened to f64.
#[inline]
pub fn add_sums<T: Scalar>(acc: &mut [f64], x: &[T]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += widen(v);
    }
}

/// `acc += (x − mean)²`, widened to f64.
#[inline]
pub fn add_squares<T: Scalar>(acc: &mut [f64], x: &[T], mean: &[f64]) {
    for ((a, &v), &m) in acc.iter_mut().zip(x).zip(mean) {
        let d = widen(v) - m;
        *a += d * d;
    }
}

#[inline(always)]
fn widen<T: Scalar>(v: T) -> f64 {
    v.to_f64().unwrap_or(0.0)
}

/// Each group's mean from its sums and count (0 for an empty group), in place.
pub fn means(sums: &mut [f64], counts: &[f64]) {
    let dim = sums.len() / counts.len().max(1);
    for (row, &k) in sums.chunks_exact_mut(dim.max(1)).zip(counts) {
        let k = if k > 0.0 { k } else { 1.0 };
        row.iter_mut().for_each(|s| *s /= k);
    }
}

/// Each group's variance from its squares about the mean and its count, in
/// place: divided by `k − 1`, or by `k` for a group of one (the reference's
/// `var(unbiased = k != 1)`).
pub fn variances(squares: &mut [f64], counts: &[f64]) {
    let dim = squares.len() / counts.len().max(1);
    for (row, &k) in squares.chunks_exact_mut(dim.max(1)).zip(counts) {
        let d = if k > 1.0 { k - 1.0 } else { 1.0 };
        row.iter_mut().for_each(|s| *s /= d);
    }
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), Error> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}
