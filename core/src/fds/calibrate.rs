//! Smoothing a batch: each row re-coloured from its bucket's statistics to
//! the smoothed ones, per dimension, and the scale that is its gradient.
//!
//! For a row in bucket `b`, with `μ, σ²` the bucket's last-epoch statistics
//! and `μ̃, σ̃²` the smoothed ones: when `Σ_d σ²_d < 10⁻¹⁰` the row is left
//! as it is; otherwise, on every dimension with `σ²_d ≠ 0`,
//! `x_d ← (x_d − μ_d)·s_d + μ̃_d` with `s_d = √clamp(σ̃²_d / σ²_d, 0.1, 10)`,
//! and the other dimensions are left alone. `∂out_d/∂x_d = s_d` (1 where the
//! row or dimension is left alone, and for rows in no group). A ratio the
//! reference would make NaN (∞/∞) is taken as 1.

use super::Fds;
use super::groups::{NO_GROUP, bucket_of};
use crate::math::sqrt;
use crate::{Error, Scalar, cast};

/// The reference's floor on a bucket's total variance: below it, no smoothing.
pub const MIN_TOTAL_VARIANCE: f64 = 1e-10;
/// The bounds of the variance ratio.
pub const RATIO_BOUNDS: (f64, f64) = (0.1, 10.0);

/// The statistics a batch is smoothed with, each `buckets × dim`.
#[derive(Debug, Clone, Copy)]
pub struct Calibration<'a, T> {
    /// The last-epoch means μ.
    pub mean: &'a [T],
    /// The last-epoch variances σ².
    pub var: &'a [T],
    /// The smoothed means μ̃.
    pub smoothed_mean: &'a [T],
    /// The smoothed variances σ̃².
    pub smoothed_var: &'a [T],
}

/// Smooths `features` (`rows × dim`) whose rows are in the groups `of_row`
/// of `keys` ([`super::groups`]): writes the smoothed features into `out` and
/// `∂out/∂features` (elementwise) into `scale`. Features must be finite.
pub fn smooth<T: Scalar, K: Scalar>(
    config: &Fds,
    stats: &Calibration<'_, T>,
    keys: &[K],
    of_row: &[u32],
    features: &[T],
    out: &mut [T],
    scale: &mut [T],
) -> Result<(), Error> {
    config.validate()?;
    let buckets = config.buckets();
    let rows = of_row.len();
    let dim = stats.mean.len() / buckets;
    let want = rows * dim;
    for (what, len, expected) in [
        ("mean", stats.mean.len(), buckets * dim),
        ("var", stats.var.len(), buckets * dim),
        ("smoothed_mean", stats.smoothed_mean.len(), buckets * dim),
        ("smoothed_var", stats.smoothed_var.len(), buckets * dim),
        ("features", features.len(), want),
        ("out", out.len(), want),
        ("scale", scale.len(), want),
    ] {
        if len != expected || dim == 0 {
            return Err(Error::ShapeMismatch {
                what,
                expected,
                got: len,
            });
        }
    }
    crate::dir::check_rows(
        "features",
        features,
        rows,
        dim,
        crate::rules::Rule::FeaturesFinite,
    )?;
    let (lo, hi) = (cast::<T>(RATIO_BOUNDS.0), cast::<T>(RATIO_BOUNDS.1));
    let floor = cast::<T>(MIN_TOTAL_VARIANCE);
    for (r, &g) in of_row.iter().enumerate() {
        let at = r * dim..(r + 1) * dim;
        let (x, o, s) = (&features[at.clone()], &mut out[at.clone()], &mut scale[at]);
        o.copy_from_slice(x);
        s.fill(T::one());
        let Some(&key) = keys.get(g as usize).filter(|_| g != NO_GROUP) else {
            continue;
        };
        let bucket = bucket_of(config, key) * dim..(bucket_of(config, key) + 1) * dim;
        let (m1, v1) = (&stats.mean[bucket.clone()], &stats.var[bucket.clone()]);
        let (m2, v2) = (
            &stats.smoothed_mean[bucket.clone()],
            &stats.smoothed_var[bucket],
        );
        if v1.iter().fold(T::zero(), |a, &v| a + v) < floor {
            continue;
        }
        for d in 0..dim {
            if v1[d] == T::zero() {
                continue;
            }
            let ratio = v2[d] / v1[d];
            let ratio = if ratio.is_nan() {
                T::one()
            } else {
                ratio.max(lo).min(hi)
            };
            s[d] = sqrt(ratio);
            o[d] = (x[d] - m1[d]) * s[d] + m2[d];
        }
    }
    Ok(())
}
