//! The one place that calls the GEMM micro-kernels of the `gemm` crate (the
//! kernels behind faer and candle), behind a safe, bounds-checked wrapper.
#![allow(unsafe_code)]

use conr_core::Scalar;

/// A strided view of a matrix stored in a slice.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols × rows` matrix, viewed as `rows × cols`.
    pub fn transposed(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// One past the largest offset the view touches.
    fn span(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * row_stride + (cols - 1) * col_stride + 1
        }
    }
}

/// `out = A Zᵀ` for row-major `a` (R×D) and `z` (M×D), with the GEMM kernels
/// the fast engine uses, on `threads` threads. With `a = z` it is one M×M×D
/// GEMM, the yardstick `conr bench` divides ConR's time by; with `a` a slab of
/// `z`'s rows, it is that slab of the Gram matrix.
///
/// Returns an error when the lengths do not match `r`, `m` and `d`.
pub fn gram(
    a: &[f32],
    z: &[f32],
    r: usize,
    m: usize,
    d: usize,
    out: &mut [f32],
    threads: usize,
) -> Result<(), conr_core::Error> {
    let shape = |what, expected: usize, got| conr_core::Error::ShapeMismatch {
        what,
        expected,
        got,
    };
    if a.len() != r * d {
        return Err(shape("a", r * d, a.len()));
    }
    if z.len() != m * d {
        return Err(shape("z", m * d, z.len()));
    }
    if out.len() != r * m {
        return Err(shape("out", r * m, out.len()));
    }
    gram_into(a, z, r, m, d, out, threads);
    Ok(())
}

/// `out = A Zᵀ` (R×M, row-major) for row-major `a` (R×D) and `z` (M×D): the
/// logit tiles of the fast engine and the yardstick of [`gram`]. Lengths are
/// the caller's invariant.
pub(crate) fn gram_into<T: Scalar>(
    a: &[T],
    z: &[T],
    r: usize,
    m: usize,
    d: usize,
    out: &mut [T],
    threads: usize,
) {
    matmul(
        out,
        m,
        Mat::row_major(a, r, d),
        Mat::transposed(z, d, m),
        false,
        threads,
    );
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), with `dst`
/// row-major `lhs.rows × rhs.cols` with row stride `dst_stride`, single-threaded
/// (callers parallelise over tiles) unless `threads > 1`.
pub(crate) fn matmul<T: Scalar>(
    dst: &mut [T],
    dst_stride: usize,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
    threads: usize,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    // Internal invariants: every view stays inside its slice, so the raw calls below are sound.
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(Mat::<T>::span(m, k, lhs.row_stride, lhs.col_stride) <= lhs.data.len());
    assert!(Mat::<T>::span(k, n, rhs.row_stride, rhs.col_stride) <= rhs.data.len());
    assert!(Mat::<T>::span(m, n, dst_stride, 1) <= dst.len());
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every accessed element inside its slice;
    // `dst` is borrowed mutably and does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}
