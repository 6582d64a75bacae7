//! The statistics pass: per group, the count, the mean and the variance of
//! the features (unbiased, except a group of one sample, whose variance is
//! 0, as the reference's `var`), accumulated in f64.
//!
//! Each pass *adds* into its output, so that the pass over chunks of rows
//! (the fast engine's threads) or over workers (ranks, whose outputs are then
//! summed) adds up to the pass over the whole batch. Two ways:
//! - [`Pass::Shifted`], one pass: per group, `Σ (x − c)` and `Σ (x − c)²`
//!   about a shift `c`, the group's first row ([`shifts`]), from which
//!   [`shifted_moments`] gives the mean and variance. With `c` a sample of the
//!   group the two sums cancel no more than the group's spread makes them;
//! - [`Pass::Sums`] then [`Pass::Squares`] about the means, two passes whose
//!   sums workers can add up without agreeing on a shift first (the path
//!   across ranks).

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
    /// [`NO_GROUP`]) and that the features of the rows in no group are
    /// finite. The rows in a group are read by the pass, which checks them
    /// as it goes ([`check_sums`]): a second read of every feature would
    /// cost as much as the pass.
    pub fn new(
        features: &'a [T],
        dim: usize,
        of_row: &'a [u32],
        groups: usize,
    ) -> Result<Self, Error> {
        if dim == 0 {
            return Err(Error::ZeroWidth { what: "features" });
        }
        let expected = of_row.len().checked_mul(dim).ok_or(Error::InvalidConfig {
            field: "shape",
            why: "N·D must fit in a usize",
        })?;
        if features.len() != expected {
            return Err(Error::ShapeMismatch {
                what: "features",
                expected,
                got: features.len(),
            });
        }
        let finite = |x: &[T]| x.iter().all(|v| v.is_finite());
        let loose = (of_row.iter().zip(features.chunks_exact(dim)))
            .position(|(&g, x)| g == NO_GROUP && !finite(x));
        if let Some(row) = loose {
            return Err(crate::rules::Rule::FeaturesFinite.error(row));
        }
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

    /// The features, `rows × dim`, row-major.
    pub fn features(&self) -> &'a [T] {
        self.features
    }

    /// Row `r`'s group ([`NO_GROUP`] for none) and features.
    #[inline(always)]
    pub fn row(&self, r: usize) -> (u32, &'a [T]) {
        (
            self.of_row[r],
            &self.features[r * self.dim..(r + 1) * self.dim],
        )
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
    /// Per group, `Σ (x − c)` then `Σ (x − c)²` (`groups × 2·dim`: each
    /// group's row holds both), given each group's shift `c` (`groups × dim`).
    Shifted {
        /// The shifts, from [`shifts`].
        shifts: &'a [f64],
    },
}

impl Pass<'_> {
    /// The values a pass keeps per group: `dim`, or `2·dim` for [`Pass::Shifted`].
    pub fn width(&self, dim: usize) -> usize {
        match self {
            Pass::Shifted { .. } => 2 * dim,
            _ => dim,
        }
    }

    /// The length of the pass's output over `rows`: [`Pass::width`] per group.
    pub fn out_len<T: Scalar>(&self, rows: &Rows<'_, T>) -> usize {
        rows.groups * self.width(rows.dim)
    }

    /// Checks the means or shifts against `rows`.
    pub fn check<T: Scalar>(&self, rows: &Rows<'_, T>) -> Result<(), Error> {
        match self {
            Pass::Sums => Ok(()),
            Pass::Squares { means } => check_len("means", rows.out_len(), means.len()),
            Pass::Shifted { shifts } => check_len("shifts", rows.out_len(), shifts.len()),
        }
    }

    /// Adds one row `x` of group `g` into that group's output `acc`
    /// ([`Pass::width`] values), the pass checked against its rows. Always
    /// inlined: an engine compiles its loop again for wider registers.
    #[inline(always)]
    pub fn add_row<T: Scalar>(&self, g: usize, x: &[T], acc: &mut [f64]) {
        let (first, second) = acc.split_at_mut(x.len());
        self.add_block(g * x.len(), x, first, second);
    }

    /// Adds `x`, some columns of one row, into `first` (`Σ x`, `Σ (x − mean)²`
    /// or `Σ (x − c)`, one value per column) and, for [`Pass::Shifted`],
    /// `second` (`Σ (x − c)²`; the other passes leave it alone). `at` is the
    /// index of `x`'s first column in the per-group means or shifts: `g·dim`
    /// plus its column. An engine that sums a block of columns over several
    /// rows in registers before adding it to the group's output calls this
    /// with the registers as `first` and `second`.
    #[inline(always)]
    pub fn add_block<T: Scalar>(&self, at: usize, x: &[T], first: &mut [f64], second: &mut [f64]) {
        match self {
            Pass::Sums => {
                for (a, &v) in first.iter_mut().zip(x) {
                    *a += widen(v);
                }
            }
            Pass::Squares { means } => {
                let m = &means[at..at + x.len()];
                for ((a, &v), &m) in first.iter_mut().zip(x).zip(m) {
                    let d = widen(v) - m;
                    *a += d * d;
                }
            }
            Pass::Shifted { shifts } => {
                let c = &shifts[at..at + x.len()];
                for (((s, q), &v), &c) in first.iter_mut().zip(second.iter_mut()).zip(x).zip(c) {
                    let d = widen(v) - c;
                    *s += d;
                    *q += d * d;
                }
            }
        }
    }
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

/// Adds the pass `pass` over `rows` into `out` ([`Pass::out_len`]).
#[inline(always)]
pub fn accumulate<T: Scalar>(
    rows: &Rows<'_, T>,
    pass: Pass<'_>,
    out: &mut [f64],
) -> Result<(), Error> {
    check_len("moments", pass.out_len(rows), out.len())?;
    pass.check(rows)?;
    let width = pass.width(rows.dim);
    for (g, x) in rows.iter().filter(|(g, _)| *g != NO_GROUP) {
        let g = g as usize;
        pass.add_row(g, x, &mut out[g * width..(g + 1) * width]);
    }
    check_sums(rows, out)
}

/// After a pass: where a sum is not finite, the first row of `rows` whose
/// features are not is the error ([`crate::rules::Rule::FeaturesFinite`]).
/// Sums of finite features that overflow are no error: the statistics
/// saturate at the type's largest value.
pub fn check_sums<T: Scalar>(rows: &Rows<'_, T>, out: &[f64]) -> Result<(), Error> {
    if out.iter().all(|s| s.is_finite()) {
        return Ok(());
    }
    match rows
        .features
        .chunks_exact(rows.dim)
        .position(|x| x.iter().any(|v| !v.is_finite()))
    {
        Some(row) => Err(crate::rules::Rule::FeaturesFinite.error(row)),
        None => Ok(()),
    }
}

/// Each group's shift for [`Pass::Shifted`]: its first row, widened to f64
/// (zeros for an empty group), into `shifts` (`groups × dim`).
pub fn shifts<T: Scalar>(rows: &Rows<'_, T>, shifts: &mut [f64]) -> Result<(), Error> {
    check_len("shifts", rows.out_len(), shifts.len())?;
    let dim = rows.dim;
    // NaN marks a group not seen yet: features are finite.
    shifts.fill(f64::NAN);
    for (g, x) in rows.iter().filter(|(g, _)| *g != NO_GROUP) {
        let c = &mut shifts[g as usize * dim..][..dim];
        if c[0].is_nan() {
            c.iter_mut().zip(x).for_each(|(c, &v)| *c = widen(v));
        }
    }
    shifts
        .iter_mut()
        .filter(|c| c.is_nan())
        .for_each(|c| *c = 0.0);
    Ok(())
}

/// The means and variances (each `groups × dim`) from a [`Pass::Shifted`]
/// output, the shifts and the counts: `mean = c + S₁/k`, `variance =
/// (S₂ − S₁²/k)` over `k − 1` (over 1 for a group of one), never below 0.
pub fn shifted_moments(
    shifted: &[f64],
    shifts: &[f64],
    counts: &[f64],
    means: &mut [f64],
    variances: &mut [f64],
) {
    let dim = shifts.len() / counts.len().max(1);
    for (g, &k) in counts.iter().enumerate() {
        let (sums, squares) = shifted[2 * g * dim..2 * (g + 1) * dim].split_at(dim);
        let at = g * dim..(g + 1) * dim;
        let (m, v, c) = (
            &mut means[at.clone()],
            &mut variances[at.clone()],
            &shifts[at],
        );
        let (n, d) = (mean_divisor(k), variance_divisor(k));
        for j in 0..dim {
            m[j] = c[j] + sums[j] / n;
            v[j] = ((squares[j] - sums[j] * sums[j] / n) / d).max(0.0);
        }
    }
}

/// Each group's mean from its sums and count (0 for an empty group), in place.
pub fn means(sums: &mut [f64], counts: &[f64]) {
    let dim = sums.len() / counts.len().max(1);
    for (row, &k) in sums.chunks_exact_mut(dim.max(1)).zip(counts) {
        row.iter_mut().for_each(|s| *s /= mean_divisor(k));
    }
}

/// Each group's variance from its squares about the mean and its count, in
/// place, over `k − 1` (over 1 for a group of one).
pub fn variances(squares: &mut [f64], counts: &[f64]) {
    let dim = squares.len() / counts.len().max(1);
    for (row, &k) in squares.chunks_exact_mut(dim.max(1)).zip(counts) {
        row.iter_mut().for_each(|s| *s /= variance_divisor(k));
    }
}

/// Each group's count, mean and variance (`groups × dim`), from one read
/// of the features ([`Pass::Shifted`]).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    /// The rows in each group.
    pub counts: alloc::vec::Vec<f64>,
    /// Each group's mean.
    pub means: alloc::vec::Vec<f64>,
    /// Each group's variance.
    pub variances: alloc::vec::Vec<f64>,
}

#[cfg(feature = "alloc")]
impl GroupStats {
    /// The statistics of `rows`, the pass on `engine` ([`crate::Engine::fds_pass`])
    /// or, without one, on the core's loop.
    pub fn of<T: Scalar>(
        rows: &Rows<'_, T>,
        engine: Option<&dyn crate::Engine<T>>,
    ) -> Result<Self, Error> {
        use alloc::vec;
        let mut counts = vec![0.0; rows.groups];
        count(rows, &mut counts)?;
        let mut c = vec![0.0; rows.out_len()];
        shifts(rows, &mut c)?;
        let pass = Pass::Shifted { shifts: &c };
        let mut sums = vec![0.0; pass.out_len(rows)];
        match engine {
            Some(engine) => engine.fds_pass(rows, pass, &mut sums)?,
            None => accumulate(rows, pass, &mut sums)?,
        }
        let (mut means, mut variances) = (vec![0.0; c.len()], vec![0.0; c.len()]);
        shifted_moments(&sums, &c, &counts, &mut means, &mut variances);
        Ok(Self {
            counts,
            means,
            variances,
        })
    }
}

/// A group of `k` samples' mean divides by `k` (1 for an empty group).
fn mean_divisor(k: f64) -> f64 {
    if k > 0.0 { k } else { 1.0 }
}

/// A group of `k` samples' variance divides by `k − 1`, or by `k` for a
/// group of one: the reference's `var(unbiased = k != 1)`.
fn variance_divisor(k: f64) -> f64 {
    if k > 1.0 { k - 1.0 } else { 1.0 }
}

/// `v` in f64.
#[inline(always)]
fn widen<T: Scalar>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
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
