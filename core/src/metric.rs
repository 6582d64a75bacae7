//! Label distances `d(y_j, y_k)`, used for labels and for predictions alike.

use crate::math::{atan2, sqrt};
use crate::{LabelMetric, Scalar};

/// The distance between two label vectors of equal length under `metric`.
///
/// Every metric is computed without overflow for finite input: the Euclidean
/// length is scaled by the largest component first, and the angle uses
/// `2·atan2(|â − b̂|, |â + b̂|)`, which stays accurate near 0 and π where `acos`
/// of a dot product does not.
///
/// The `angular` distance of a zero vector is 0; [`crate::Batch::check`]
/// rejects such labels before any engine gets here. A distance too large for
/// `T` (labels near ±`T::MAX` of opposite signs) saturates at `T::MAX`.
///
/// ```
/// use conr_core::{LabelMetric, metric::distance};
/// assert_eq!(distance(LabelMetric::L1, &[1.0, 2.0], &[4.0, 6.0]), 7.0);
/// assert_eq!(distance(LabelMetric::L2, &[1.0, 2.0], &[4.0, 6.0]), 5.0);
/// assert_eq!(distance(LabelMetric::Linf, &[1.0, 2.0], &[4.0, 6.0]), 4.0);
/// let right_angle = distance(LabelMetric::Angular, &[1.0, 0.0], &[0.0, 3.0]);
/// assert!((right_angle - core::f64::consts::FRAC_PI_2).abs() < 1e-15);
/// ```
#[inline]
pub fn distance<T: Scalar>(metric: LabelMetric, a: &[T], b: &[T]) -> T {
    if a.len() == 1 && metric != LabelMetric::Angular {
        // Scalar labels, the common case: every norm is |a − b|.
        return (a[0] - b[0]).abs().min(T::max_value());
    }
    match metric {
        LabelMetric::L1 => a
            .iter()
            .zip(b)
            .fold(T::zero(), |acc, (&x, &y)| acc + (x - y).abs()),
        LabelMetric::Linf => linf(a, b),
        LabelMetric::L2 => {
            let big = linf(a, b);
            if big.is_zero() {
                return big;
            }
            let sum = a.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| {
                let r = (x - y) / big;
                acc + r * r
            });
            (big * sqrt(sum)).min(T::max_value())
        }
        LabelMetric::Angular => angle(a, b),
    }
}

fn linf<T: Scalar>(a: &[T], b: &[T]) -> T {
    a.iter()
        .zip(b)
        .fold(T::zero(), |acc, (&x, &y)| acc.max((x - y).abs()))
}

/// The Euclidean length of `v`, scaled so that it cannot overflow.
#[inline]
pub fn norm<T: Scalar>(v: &[T]) -> T {
    let big = fold_lanes(v, |acc, x| acc.max(x.abs()), |a, b| a.max(b));
    if big.is_zero() {
        return big;
    }
    // A division per component, not one reciprocal: the largest component
    // then scales to exactly ±1, so a one-wide row's length is exactly |f|,
    // its normalised feature exactly ±1 and its gradient exactly zero. With
    // a reciprocal, x · (1/x) can fall one unit short of 1, and the f32
    // gradient of a short row came out 8.8e-6 rather than 0.
    let sum = fold_lanes(v, |acc, x| acc + (x / big) * (x / big), |a, b| a + b);
    big * sqrt(sum)
}

/// `a · b` over the common length.
///
/// Summed in eight interleaved lanes, then the lanes in order, as [`norm`]
/// is: eight independent chains of additions vectorise where one chain
/// waits on each addition, and a row of 2.2 million features is summed in a
/// fraction of the time. The order is fixed, so the bits do not depend on the
/// machine or the thread count.
#[inline]
pub fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [T::zero(); LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .fold(T::zero(), |acc, (&x, &y)| acc + x * y);
    for (x, y) in a8.zip(b8) {
        for i in 0..LANES {
            lanes[i] = lanes[i] + x[i] * y[i];
        }
    }
    lanes.iter().fold(tail, |acc, &l| acc + l)
}

/// The lanes of [`dot`] and [`norm`].
const LANES: usize = 8;

/// Folds `v` with `step` in [`LANES`] interleaved lanes, the tail first,
/// then merges the lanes in order with `merge`.
#[inline]
fn fold_lanes<T: Scalar>(v: &[T], step: impl Fn(T, T) -> T, merge: impl Fn(T, T) -> T) -> T {
    let mut lanes = [T::zero(); LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(T::zero(), |acc, &x| step(acc, x));
    for chunk in chunks {
        for i in 0..LANES {
            lanes[i] = step(lanes[i], chunk[i]);
        }
    }
    lanes.iter().fold(tail, |acc, &l| merge(acc, l))
}

fn angle<T: Scalar>(a: &[T], b: &[T]) -> T {
    let (na, nb) = (norm(a), norm(b));
    if na.is_zero() || nb.is_zero() {
        return T::zero();
    }
    let (mut diff, mut sum) = (T::zero(), T::zero());
    for (&x, &y) in a.iter().zip(b) {
        let (u, v) = (x / na, y / nb);
        diff = diff + (u - v) * (u - v);
        sum = sum + (u + v) * (u + v);
    }
    let two = T::one() + T::one();
    two * atan2(sqrt(diff), sqrt(sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::f64::consts::PI;

    /// A one-wide row's length is its magnitude, exactly, in f32 and f64.
    #[test]
    fn norm_of_one_component_is_exact() {
        for i in 1..20_000u32 {
            let x = i as f32 * 0.000_271_3 - 2.7;
            assert_eq!(norm(&[x]), x.abs(), "{x}");
            assert_eq!(norm(&[f64::from(x)]), f64::from(x).abs(), "{x}");
        }
        assert_eq!(norm(&[0.054_236_825f32]), 0.054_236_825);
    }

    #[test]
    fn scalar_labels_agree_across_norms() {
        for m in [LabelMetric::L1, LabelMetric::L2, LabelMetric::Linf] {
            assert_eq!(distance(m, &[3.0f32], &[-1.5]), 4.5);
        }
    }

    #[test]
    fn angular_is_accurate_at_the_extremes() {
        assert_eq!(
            distance(LabelMetric::Angular, &[2.0, 0.0], &[5.0, 0.0]),
            0.0
        );
        let opposite: f64 = distance(LabelMetric::Angular, &[1.0, 1.0], &[-2.0, -2.0]);
        assert!((opposite - PI).abs() < 1e-15);
        // A tiny angle that acos(dot) would round to 0.
        let tiny: f64 = distance(LabelMetric::Angular, &[1.0, 0.0], &[1.0, 1e-9]);
        assert!((tiny - 1e-9).abs() < 1e-22);
        // Scalar "directions": same sign is 0, opposite sign is π.
        assert!((distance(LabelMetric::Angular, &[2.0], &[-3.0]) - PI).abs() < 1e-15);
    }

    #[test]
    fn huge_labels_do_not_overflow() {
        let d = distance(LabelMetric::L2, &[1e30f32, 1e30], &[-1e30, -1e30]);
        assert!(d.is_finite() && (d / 2.828_427e30 - 1.0).abs() < 1e-6);
        assert!(norm(&[3e20f32, 4e20]).is_finite());
    }
}
