//! L2 normalisation of feature rows, `z = f / max(|f|, ε)`, and its backward pass.
//!
//! ε = 1e-12, as in `torch.nn.functional.normalize`. A zero row normalises to
//! the zero vector (every logit with it is 0), and its gradient is `dz / ε`.

use crate::metric::{dot, norm};
use crate::{Scalar, cast};

/// ε, the floor on a row's length.
pub const EPSILON: f64 = 1e-12;

/// Writes `z = f / max(|f|, ε)` and returns `|f|`. `f` and `z` have equal length.
///
/// ```
/// use conr_core::normalize::normalize;
/// let mut z = [0.0f64; 2];
/// assert_eq!(normalize(&[3.0, 4.0], &mut z), 5.0);
/// assert!((z[0] - 0.6).abs() < 1e-15 && (z[1] - 0.8).abs() < 1e-15);
/// ```
#[inline]
pub fn normalize<T: Scalar>(f: &[T], z: &mut [T]) -> T {
    let length = norm(f);
    // Divide rather than multiply by a reciprocal: a one-wide row then gives exactly ±1.
    for (zi, x) in z.iter_mut().zip(divided(f, divisor(length))) {
        *zi = x;
    }
    length
}

/// `f`'s components divided by `divisor` (a row's [`divisor`]): its
/// normalised features as [`normalize`] writes them, for a consumer that
/// reads a chunk of them at a time rather than writing them all down.
#[inline]
pub fn divided<T: Scalar>(f: &[T], divisor: T) -> impl Iterator<Item = T> + '_ {
    f.iter().map(move |&x| x / divisor)
}

/// What [`normalize`] divides a row of length `|f|` by: `max(|f|, ε)`.
/// Dividing each `f_i` by it gives [`normalize`]'s bits, for a consumer that
/// reads a row's normalised features without writing them all down.
#[inline]
pub fn divisor<T: Scalar>(length: T) -> T {
    length.max(cast(EPSILON))
}

/// Whether the backward pass of a row of length (or [`divisor`]) `|f|` takes
/// out its radial part: a row at most ε long normalises as `f / ε`, a linear
/// map, whose backward pass is `dz / ε` alone.
#[inline]
pub fn has_radial_part<T: Scalar>(length: T) -> bool {
    length > cast(EPSILON)
}

/// The backward pass of [`normalize`]: given `|f|` (its return value), `z` and
/// `∂L/∂z`, writes `∂L/∂f = (dz − z (z·dz)) / |f|`, or `dz / ε` when `|f| <= ε`.
#[inline]
pub fn normalize_backward<T: Scalar>(length: T, z: &[T], dz: &[T], df: &mut [T]) {
    df.copy_from_slice(dz);
    normalize_backward_in_place(length, z, df);
}

/// [`normalize_backward`] in place: `grad` holds `∂L/∂z` on entry and
/// `∂L/∂f` on return, so that a row's gradient needs no second buffer (a
/// batch of 2.2-million-wide rows would otherwise hold two).
#[inline]
pub fn normalize_backward_in_place<T: Scalar>(length: T, z: &[T], grad: &mut [T]) {
    let eps = cast(EPSILON);
    if has_radial_part(length) {
        let radial = dot(z, grad);
        let inv = T::one() / length;
        for (g, &zi) in grad.iter_mut().zip(z) {
            *g = (*g - zi * radial) * inv;
        }
    } else {
        let inv = T::one() / eps;
        for g in grad.iter_mut() {
            *g = *g * inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rows_stay_zero_and_finite() {
        let mut z = [1.0f32; 3];
        assert_eq!(normalize(&[0.0; 3], &mut z), 0.0);
        assert_eq!(z, [0.0; 3]);
        let mut df = [0.0f32; 3];
        normalize_backward(0.0, &z, &[1e-13, 0.0, -2e-13], &mut df);
        assert!(df.iter().all(|x| x.is_finite()));
        assert!((df[0] - 0.1).abs() < 1e-6);
    }

    #[test]
    fn backward_is_orthogonal_to_the_row() {
        let f = [1.0, -2.0, 2.0];
        let mut z = [0.0; 3];
        let length = normalize(&f, &mut z);
        let mut df = [0.0; 3];
        normalize_backward(length, &z, &[0.3, 0.1, -0.7], &mut df);
        let radial: f64 = df.iter().zip(&f).map(|(a, b)| a * b).sum();
        assert!(radial.abs() < 1e-15);
        let mut grad = [0.3, 0.1, -0.7];
        normalize_backward_in_place(length, &z, &mut grad);
        assert_eq!(grad, df);
    }
}
