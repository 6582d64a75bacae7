//! Normalised ranks, as RankSim's reference computes them: rank 0 for the
//! largest value, `(rank + 1) / b` for b values, and among equal values the
//! one that comes *later* ranks first (a stable ascending sort, flipped).

use core::cmp::Ordering;

use crate::{Scalar, cast};

/// Writes the normalised rank of each of `values` into `ranks`, using `order`
/// (of the same length) as scratch. The order is total: equal values (−0
/// and +0 included) are ranked by index, the later first.
///
/// ```
/// use conr_core::dir::rank::normalised_ranks;
/// let mut order = [0; 4];
/// let mut ranks = [0.0; 4];
/// normalised_ranks(&[0.5, 2.0, 0.5, -1.0], &mut order, &mut ranks);
/// // 2.0 first, then the later 0.5, then the earlier, then -1.0.
/// assert_eq!(ranks, [0.75, 0.25, 0.5, 1.0]);
/// ```
pub fn normalised_ranks<T: Scalar>(values: &[T], order: &mut [usize], ranks: &mut [T]) {
    let b = values.len();
    debug_assert!(order.len() == b && ranks.len() == b);
    for (k, slot) in order.iter_mut().enumerate() {
        *slot = k;
    }
    order.sort_unstable_by(|&x, &y| descending(values[x], values[y]).then(y.cmp(&x)));
    let size: T = cast(b as f64);
    for (position, &k) in order.iter().enumerate() {
        ranks[k] = cast::<T>((position + 1) as f64) / size;
    }
}

/// Larger values first. Validation has ruled out NaN, which would compare
/// equal to everything here rather than break the sort.
#[inline]
fn descending<T: Scalar>(a: T, b: T) -> Ordering {
    b.partial_cmp(&a).unwrap_or(Ordering::Equal)
}
