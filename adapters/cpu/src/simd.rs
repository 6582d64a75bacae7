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

/// Asks the CPU to bring `x`'s cache lines into its caches: a hint, with
/// no effect on any value.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let line = (64 / core::mem::size_of::<T>().max(1)).max(1);
        for i in (0..x.len()).step_by(line) {
            // SAFETY: a prefetch reads nothing the program sees and never
            // faults; the address is inside `x`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().add(i).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
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

/// FDS's statistics pass window by window ([`crate::fds::windows`]), on
/// AVX-512 or AVX2 where the CPU has them: the same operations in the same
/// order, eight or four f64 lanes to a register instead of two, and blocks
/// of 32 columns where 32 registers hold them (16 otherwise).
pub(crate) fn fds_windows<T: Scalar>(
    rows: &conr_core::fds::moments::Rows<'_, T>,
    pass: conr_core::fds::moments::Pass<'_>,
    out: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { fds_windows_avx512(rows, pass, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { fds_windows_avx2(rows, pass, out) };
    }
    crate::fds::windows::<T, 16>(rows, pass, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fds_windows_avx512<T: Scalar>(
    rows: &conr_core::fds::moments::Rows<'_, T>,
    pass: conr_core::fds::moments::Pass<'_>,
    out: &mut [f64],
) {
    crate::fds::windows::<T, 32>(rows, pass, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fds_windows_avx2<T: Scalar>(
    rows: &conr_core::fds::moments::Rows<'_, T>,
    pass: conr_core::fds::moments::Pass<'_>,
    out: &mut [f64],
) {
    crate::fds::windows::<T, 16>(rows, pass, out)
}
