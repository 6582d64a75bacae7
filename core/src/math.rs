//! The transcendental functions the core computes with: the `libm` crate's,
//! in every build.
//!
//! num-traits' `Float::exp`, `ln` and `sqrt` call the platform's math library
//! when any crate in the build graph turns on num-traits' `std` feature, and
//! `libm` otherwise, so the same batch could give other bits in another
//! program. Every exp, ln, sqrt and atan2 of the core and the CPU engines
//! goes through here instead. [`Libm`] names its methods like `Float`'s, so
//! that `x.exp()` on a generic [`Scalar`](crate::Scalar) is ambiguous and does
//! not compile: the free functions below are the only way to call them.

/// The `libm` functions of one floating-point type.
pub trait Libm: Copy {
    /// e^x.
    fn exp(self) -> Self;
    /// The natural logarithm.
    fn ln(self) -> Self;
    /// The square root (correctly rounded, as IEEE 754 requires).
    fn sqrt(self) -> Self;
    /// The angle of (x = other, y = self), in (-π, π].
    fn atan2(self, other: Self) -> Self;
}

/// `Libm` for one type, from the names of its four `libm` functions.
macro_rules! libm_for {
    ($t:ty: $exp:ident, $ln:ident, $sqrt:ident, $atan2:ident) => {
        impl Libm for $t {
            #[inline]
            fn exp(self) -> Self {
                libm::$exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                libm::$ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                libm::$sqrt(self)
            }
            #[inline]
            fn atan2(self, other: Self) -> Self {
                libm::$atan2(self, other)
            }
        }
    };
}

libm_for!(f32: expf, logf, sqrtf, atan2f);
libm_for!(f64: exp, log, sqrt, atan2);

/// e^x, from `libm`.
#[inline]
pub fn exp<T: Libm>(x: T) -> T {
    Libm::exp(x)
}

/// The natural logarithm of x, from `libm`.
#[inline]
pub fn ln<T: Libm>(x: T) -> T {
    Libm::ln(x)
}

/// The square root of x, from `libm`.
#[inline]
pub fn sqrt<T: Libm>(x: T) -> T {
    Libm::sqrt(x)
}

/// The angle of the point (x, y), in (-π, π], from `libm`.
#[inline]
pub fn atan2<T: Libm>(y: T, x: T) -> T {
    Libm::atan2(y, x)
}
