//! The per-pair kernels of the fast engine's sparse tiles, compiled a second
//! time for AVX2 and chosen at run time. The crate builds for the baseline
//! x86-64 (SSE2), where eight f32 lanes take two registers; with AVX2 they
//! take one, and the same operations in the same order give the same bits.
#![allow(unsafe_code)]

use conr_core::Scalar;

/// `a · b`: [`conr_core::metric::dot`], on AVX2 where the CPU has it.
#[inline]
pub(crate) fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    conr_core::metric::dot(a, b)
}

/// `acc += h x`, element by element.
#[inline]
pub(crate) fn axpy<T: Scalar>(acc: &mut [T], h: T, x: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { axpy_avx2(acc, h, x) };
    }
    axpy_any(acc, h, x);
}

#[inline(always)]
fn axpy_any<T: Scalar>(acc: &mut [T], h: T, x: &[T]) {
    acc.iter_mut().zip(x).for_each(|(a, &x)| *a = *a + h * x);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2<T: Scalar>(a: &[T], b: &[T]) -> T {
    conr_core::metric::dot(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_avx2<T: Scalar>(acc: &mut [T], h: T, x: &[T]) {
    axpy_any(acc, h, x);
}

/// FDS's statistics pass ([`conr_core::fds::moments::accumulate`]), on AVX2
/// where the CPU has it: the same operations in the same order, four f64
/// lanes to a register instead of two.
pub(crate) fn fds_accumulate<T: Scalar>(
    rows: &conr_core::fds::moments::Rows<'_, T>,
    pass: conr_core::fds::moments::Pass<'_>,
    out: &mut [f64],
) -> Result<(), conr_core::Error> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { fds_accumulate_avx2(rows, pass, out) };
    }
    conr_core::fds::moments::accumulate(rows, pass, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fds_accumulate_avx2<T: Scalar>(
    rows: &conr_core::fds::moments::Rows<'_, T>,
    pass: conr_core::fds::moments::Pass<'_>,
    out: &mut [f64],
) -> Result<(), conr_core::Error> {
    conr_core::fds::moments::accumulate(rows, pass, out)
}
