//! The companion losses on the CPU ([`conr_core::dir`]): plain loops for the
//! reference engine ([`reference`]), and blocked, multi-threaded passes for
//! the fast engine ([`fast`]). Both are reached through the one engine
//! interface, [`conr_core::Engine`].

pub(crate) mod fast;
pub(crate) mod reference;

use conr_core::Scalar;
use conr_core::normalize::normalize;

/// The normalised rows `rows` of `features` (b×D) and their lengths.
pub(crate) fn normalized_rows<T: Scalar>(
    features: &[T],
    dim: usize,
    rows: &[usize],
) -> (Vec<T>, Vec<T>) {
    let mut z = vec![T::zero(); rows.len() * dim];
    let lengths = rows
        .iter()
        .zip(z.chunks_exact_mut(dim))
        .map(|(&r, out)| normalize(&features[r * dim..(r + 1) * dim], out))
        .collect();
    (z, lengths)
}

/// `Σ a_k b_k`.
#[inline]
pub(crate) fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| acc + x * y)
}

/// A validated config value in `T` (every domain keeps it finite there).
#[inline]
pub(crate) fn cast<T: Scalar>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::nan)
}
