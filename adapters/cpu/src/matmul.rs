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

/// The width of one chunk of the feature dimension in [`gram_split_k`].
/// Below it a tile's GEMM is one task; above it, as at NYUD2's 2.2-million-wide
/// rows, the sum over D is what there is to share between threads.
pub(crate) const K_CHUNK: usize = 1 << 15;

/// `out = A Zᵀ` as [`gram_into`], with the sum over D split into chunks of
/// [`K_CHUNK`] taken in parallel and added in chunk order. The chunks do not
/// depend on the thread count, so neither do the bits of `out`.
pub(crate) fn gram_split_k<T: Scalar>(
    a: &[T],
    z: &[T],
    r: usize,
    m: usize,
    d: usize,
    out: &mut [T],
) {
    use rayon::prelude::*;
    let starts: Vec<usize> = (0..d).step_by(K_CHUNK).collect();
    let partials: Vec<Vec<T>> = starts
        .par_iter()
        .map(|&start| {
            let width = K_CHUNK.min(d - start);
            let mut part = vec![T::zero(); r * m];
            // Columns start..start + width of the row-major a (r×D) and z (m×D).
            let lhs = Mat {
                data: &a[start..],
                rows: r,
                cols: width,
                row_stride: d,
                col_stride: 1,
            };
            let rhs = Mat {
                data: &z[start..],
                rows: width,
                cols: m,
                row_stride: 1,
                col_stride: d,
            };
            matmul(&mut part, m, lhs, rhs, false, 1);
            part
        })
        .collect();
    let out = &mut out[..r * m];
    out.fill(T::zero());
    for part in partials {
        out.iter_mut().zip(part).for_each(|(o, p)| *o = *o + p);
    }
}

/// `dst += lhs · rhs` as [`matmul`], with the columns of `dst` and `rhs`
/// split into chunks of [`K_CHUNK`] taken in parallel: `H Z` for a tile of
/// few, wide rows, whose one GEMM would otherwise run on one thread. Each
/// element comes from one chunk's GEMM over all of `lhs`'s columns, and the
/// chunks do not depend on the thread count, so neither do the bits.
pub(crate) fn matmul_split_n<T: Scalar>(
    dst: &mut [T],
    dst_stride: usize,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
) {
    use rayon::prelude::*;
    let n = rhs.cols;
    check_views(dst.len(), dst_stride, &lhs, &rhs);
    // Each chunk writes its own columns of `dst`, which are not a slice of
    // it: the chunks share its address, never a `&mut`.
    let base = dst.as_mut_ptr() as usize;
    let starts: Vec<usize> = (0..n).step_by(K_CHUNK).collect();
    starts.par_iter().for_each(|&start| {
        let cols = K_CHUNK.min(n - start);
        let rhs = Mat {
            data: &rhs.data[start * rhs.col_stride..],
            cols,
            ..rhs
        };
        // SAFETY: the checks above keep every element of the whole product
        // inside its slice, so columns start..start + cols are too; `dst` is
        // borrowed mutably for this call, does not alias `lhs` or `rhs`, and
        // the chunks write disjoint columns of it.
        unsafe { gemm_raw((base as *mut T).add(start), dst_stride, lhs, rhs, true, 1) };
    });
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
    check_views(dst.len(), dst_stride, &lhs, &rhs);
    // SAFETY: the checks above keep every accessed element inside its slice;
    // `dst` is borrowed mutably and does not alias `lhs` or `rhs`.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst_stride, lhs, rhs, accumulate, threads) };
}

/// Internal invariants of every product: the inner dimensions agree and
/// every view stays inside its slice, so the raw calls on them are sound.
fn check_views<T>(dst_len: usize, dst_stride: usize, lhs: &Mat<'_, T>, rhs: &Mat<'_, T>) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(Mat::<T>::span(m, k, lhs.row_stride, lhs.col_stride) <= lhs.data.len());
    assert!(Mat::<T>::span(k, n, rhs.row_stride, rhs.col_stride) <= rhs.data.len());
    assert!(Mat::<T>::span(m, n, dst_stride, 1) <= dst_len);
}

/// The `gemm` crate's call behind [`matmul`] and [`matmul_split_n`].
///
/// # Safety
/// The `lhs.rows × rhs.cols` elements at `dst` with row stride `dst_stride`
/// must be writable and alias neither `lhs` nor `rhs` nor any other thread's
/// writes, and `lhs` and `rhs` must stay inside their slices.
unsafe fn gemm_raw<T: Scalar>(
    dst: *mut T,
    dst_stride: usize,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
    threads: usize,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
