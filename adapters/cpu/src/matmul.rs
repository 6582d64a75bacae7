//! The one place that calls the GEMM micro-kernels of the `gemm` crate (the
//! kernels behind faer and candle), behind a safe, bounds-checked wrapper.
#![allow(unsafe_code)]

use std::ops::Range;

use conr_core::Scalar;
use conr_core::normalize::divided;

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

    /// The same elements, transposed.
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
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
/// Both operands hold D along their rows, and the GEMM kernels run at a
/// third of their rate or less when the operand they pack along M comes so
/// (128×128×2048: 47 against 107 GFLOPS on one thread): Z is read from a
/// k-major copy, written once, which makes the product a plain `A · Zᵀ` of
/// two row-major matrices.
///
/// A deep product, whose `threads` partial R×M results take less memory than
/// its inputs (AgeDB's 128×128×2048), is split along D into one chunk per
/// thread (at most 32,768 columns wide), each a one-thread GEMM, added in chunk
/// order: the `gemm` crate's own threads share such a product out poorly (on
/// two threads, 128×128×2048 ran at the rate of one). Others run on the
/// crate's threads.
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
    let deep = threads > 1 && threads * r * m <= d * (r + m);
    if deep {
        // One chunk per thread, a whole number of 16-lane vectors wide, and
        // no wider than the engine's: each chunk writes its columns of Z
        // k-major, which at NYUD2's 32×2.2M would otherwise be half the
        // features per chunk, paid for in page faults.
        let width = d.div_ceil(threads).next_multiple_of(16).min(K_CHUNK);
        gram_split_k(Rows::plain(a, d), Rows::plain(z, d), r, m, out, width);
    } else {
        let mut z_t = Vec::new();
        Rows::plain(z, d).k_major(0..d, &mut z_t);
        gram_into(a, &z_t, r, m, d, out, threads);
    }
    Ok(())
}

/// Rows of a row-major matrix, each divided by its own divisor as it is
/// read where `divisors` is given: the normalised features of a batch of
/// wide rows, read from the features themselves rather than from a copy
/// (the quotients are those [`conr_core::normalize::normalize`] writes).
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a, T> {
    /// `rows × dim`, row-major.
    pub data: &'a [T],
    pub dim: usize,
    /// One per row, or `None` to read the rows as they are.
    pub divisors: Option<&'a [T]>,
}

impl<'a, T: Scalar> Rows<'a, T> {
    /// The rows of `data` as they are.
    pub fn plain(data: &'a [T], dim: usize) -> Self {
        Self {
            data,
            dim,
            divisors: None,
        }
    }

    /// Whether both are the same rows of the same matrix.
    fn same_as(&self, other: &Self) -> bool {
        let divisors = |r: &Self| r.divisors.map(<[T]>::as_ptr);
        std::ptr::eq(self.data, other.data)
            && self.dim == other.dim
            && divisors(self) == divisors(other)
    }

    fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Columns `cols` of every row, as a `rows × cols.len()` matrix: a view
    /// of `data` where the rows are read as they are, else their quotients
    /// written into `buffer`.
    fn columns<'b>(&'b self, cols: Range<usize>, buffer: &'b mut Vec<T>) -> Mat<'b, T> {
        let (rows, width) = (self.rows(), cols.len());
        let (data, row_stride) = match self.divisors {
            None => (&self.data[cols.start..], self.dim),
            Some(divisors) => {
                buffer.clear();
                for (row, &divisor) in self.data.chunks_exact(self.dim).zip(divisors) {
                    buffer.extend(divided(&row[cols.clone()], divisor));
                }
                (&buffer[..], width)
            }
        };
        Mat {
            data,
            rows,
            cols: width,
            row_stride,
            col_stride: 1,
        }
    }

    /// Columns `cols` of every row (their quotients where divided), written
    /// into `buffer` k-major: the `cols.len() × rows` transpose, row-major.
    pub fn k_major<'b>(&self, cols: Range<usize>, buffer: &'b mut Vec<T>) -> Mat<'b, T> {
        let rows: Vec<&[T]> = self.data.chunks_exact(self.dim).collect();
        transpose_into(&rows, self.divisors, cols.clone(), buffer);
        Mat::row_major(buffer, cols.len(), rows.len())
    }
}

/// Writes columns `cols` of `rows` into `out` as their transpose, a
/// `cols.len() × rows.len()` row-major matrix, each row divided by its
/// divisor where `divisors` holds one per row (the quotients of
/// [`divided`]): the k-major operand of a Gram product.
///
/// Eight rows go through an 8×8 tile at a time: eight short runs read from
/// eight rows and eight written, rather than a store per element eight
/// rows apart, whose strides of a power of two bytes fall in one cache set.
pub(crate) fn transpose_into<T: Scalar>(
    rows: &[&[T]],
    divisors: Option<&[T]>,
    cols: Range<usize>,
    out: &mut Vec<T>,
) {
    const TILE: usize = 8;
    let n = rows.len();
    out.clear();
    out.resize(n * cols.len(), T::zero());
    for (g, group) in rows.chunks(TILE).enumerate() {
        let first = g * TILE;
        for start in cols.clone().step_by(TILE) {
            let end = (start + TILE).min(cols.end);
            let mut tile = [[T::zero(); TILE]; TILE];
            for (i, row) in group.iter().enumerate() {
                let run = &row[start..end];
                match divisors {
                    Some(divisors) => {
                        for (k, x) in divided(run, divisors[first + i]).enumerate() {
                            tile[k][i] = x;
                        }
                    }
                    None => {
                        for (k, &x) in run.iter().enumerate() {
                            tile[k][i] = x;
                        }
                    }
                }
            }
            for (k, column) in tile[..end - start].iter().enumerate() {
                let at = (start - cols.start + k) * n + first;
                out[at..at + group.len()].copy_from_slice(&column[..group.len()]);
            }
        }
    }
}

/// `out = A Zᵀ` (R×M, row-major) for row-major `a` (R×D) and `z_t`, Z's
/// k-major copy (D×M, as [`transpose_into`] writes it): the logit tiles of
/// the fast engine and the yardstick of [`gram`]. Lengths are the caller's
/// invariant.
pub(crate) fn gram_into<T: Scalar>(
    a: &[T],
    z_t: &[T],
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
        Mat::row_major(z_t, d, m),
        false,
        threads,
    );
}

/// The width of one chunk of the feature dimension for rows wider than it.
/// Below it a tile's GEMM is one task; above it, as at NYUD2's 2.2-million-wide
/// rows, the sum over D is what there is to share between threads.
pub(crate) const K_CHUNK: usize = 1 << 15;

/// `out = A Zᵀ` as [`gram_into`] (`a` R×D, `z` M×D), with the sum over D
/// split into chunks `width` wide taken in parallel and added in chunk order.
/// The chunks do not depend on the thread count, so neither do the bits of
/// `out`. Each chunk holds its part of `out`, its columns of Z k-major, and
/// its columns of A where they are divided as they are read: so `z` is
/// better the operand with fewer rows.
pub(crate) fn gram_split_k<T: Scalar>(
    a: Rows<'_, T>,
    z: Rows<'_, T>,
    r: usize,
    m: usize,
    out: &mut [T],
    width: usize,
) {
    use rayon::prelude::*;
    let d = a.dim;
    assert!(z.dim == d && a.rows() == r && z.rows() == m && width > 0);
    let starts: Vec<usize> = (0..d).step_by(width).collect();
    let partials: Vec<Vec<T>> = starts
        .par_iter()
        .map(|&start| {
            let cols = start..(start + width).min(d);
            let (mut lhs_buffer, mut rhs_buffer) = (Vec::new(), Vec::new());
            let rhs = z.k_major(cols.clone(), &mut rhs_buffer);
            // A block against its own rows (a batch of few, wide rows is one
            // such block): their columns are read and divided once.
            let lhs = if a.same_as(&z) {
                rhs.t()
            } else {
                a.columns(cols, &mut lhs_buffer)
            };
            let mut part = vec![T::zero(); r * m];
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

/// `dst += lhs · rhs` (or `dst = lhs · rhs` without `accumulate`) as
/// [`matmul`], `rhs` the rows of `rows`, with the
/// columns of `dst` and `rows` split into chunks of [`K_CHUNK`] taken in
/// parallel: `H Z` for a tile of few, wide rows, whose one GEMM would
/// otherwise run on one thread. Each element comes from one chunk's GEMM
/// over all of `lhs`'s columns, and the chunks do not depend on the thread
/// count, so neither do the bits.
pub(crate) fn matmul_split_n<T: Scalar>(
    dst: &mut [T],
    dst_stride: usize,
    lhs: Mat<'_, T>,
    rows: Rows<'_, T>,
    accumulate: bool,
) {
    use rayon::prelude::*;
    let n = rows.dim;
    let whole = Mat::row_major(rows.data, rows.rows(), n);
    check_views(dst.len(), dst_stride, &lhs, &whole);
    // Each chunk writes its own columns of `dst`, which are not a slice of
    // it: the chunks share its address, never a `&mut`.
    let base = dst.as_mut_ptr() as usize;
    let starts: Vec<usize> = (0..n).step_by(K_CHUNK).collect();
    starts.par_iter().for_each(|&start| {
        let cols = start..(start + K_CHUNK).min(n);
        let mut buffer = Vec::new();
        let rhs = rows.columns(cols, &mut buffer);
        // SAFETY: the checks above keep every element of the whole product
        // inside its slice, so columns start..start + cols are too; `dst` is
        // borrowed mutably for this call, does not alias `lhs` or `rows`, and
        // the chunks write disjoint columns of it.
        unsafe {
            gemm_raw(
                (base as *mut T).add(start),
                dst_stride,
                lhs,
                rhs,
                accumulate,
                1,
            )
        };
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

/// The widest GEMM micro-kernels this CPU runs: `"avx512"`, `"avx2+fma"`, or
/// the architecture's name where neither is there. The `gemm` crate picks
/// them at run time, and kernels of another width sum in another order, so
/// a long f32 computation built on GEMMs (a training run, as in `conr
/// demo`) repeats its bits only on CPUs that run the same kernels.
pub fn gemm_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
    }
    std::env::consts::ARCH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 997) as f32 / 498.5 - 1.0)
            .collect()
    }

    /// `gram` against sums in f64, split along D (deep: 40×24×1000 on 2 and
    /// 3 threads) or not (one thread, and 300×300×40 on two).
    #[test]
    fn gram_agrees_with_sums_in_f64_split_or_not() {
        for (r, m, d, threads) in [
            (40, 24, 1000, 2),
            (40, 24, 1000, 3),
            (40, 24, 1000, 1),
            (300, 300, 40, 2),
        ] {
            let (a, z) = (pattern(r * d, 1), pattern(m * d, 2));
            let mut out = vec![0.0f32; r * m];
            gram(&a, &z, r, m, d, &mut out, threads).unwrap();
            for i in 0..r {
                for k in 0..m {
                    let want: f64 = (0..d)
                        .map(|c| f64::from(a[i * d + c]) * f64::from(z[k * d + c]))
                        .sum();
                    let got = f64::from(out[i * m + k]);
                    assert!(
                        (got - want).abs() <= 1e-5 * d as f64,
                        "{r}×{m}×{d}: {got} vs {want}"
                    );
                }
            }
        }
        let mut out = vec![0.0f32; 4];
        assert!(gram(&[0.0; 6], &[0.0; 6], 2, 2, 2, &mut out, 2).is_err());
    }

    /// The k-major copy holds every element of the chosen columns at its
    /// transposed place, divided where divisors are given, for row and column
    /// counts that are not multiples of the tile.
    #[test]
    fn transposes_hold_every_element_in_its_place() {
        let (n, dim) = (13, 37);
        let f = pattern(n * dim, 5);
        let rows: Vec<&[f32]> = f.chunks_exact(dim).collect();
        let divisors: Vec<f32> = (0..n).map(|j| 0.25 + j as f32).collect();
        let cols = 3..29;
        let mut out = vec![7.0; 3];
        for divided in [None, Some(&divisors[..])] {
            transpose_into(&rows, divided, cols.clone(), &mut out);
            assert_eq!(out.len(), n * cols.len());
            for (i, row) in rows.iter().enumerate() {
                for k in cols.clone() {
                    let want = divided.map_or(row[k], |v| row[k] / v[i]);
                    assert_eq!(out[(k - cols.start) * n + i].to_bits(), want.to_bits());
                }
            }
        }
    }

    /// Rows divided as they are read give the bits of a GEMM on the
    /// normalised copy, in `gram_split_k` and in `matmul_split_n`, chunk
    /// against chunk.
    #[test]
    fn rows_divided_as_read_give_the_bits_of_a_copy() {
        let (rows, dim) = (5, 2 * K_CHUNK + 9);
        let f = pattern(rows * dim, 3);
        let divisors: Vec<f32> = (0..rows).map(|j| 0.5 + j as f32).collect();
        let z: Vec<f32> = f
            .chunks_exact(dim)
            .zip(&divisors)
            .flat_map(|(row, &v)| row.iter().map(move |&x| x / v))
            .collect();
        let divided = Rows {
            data: &f,
            dim,
            divisors: Some(&divisors),
        };
        let copy = Rows::plain(&z, dim);
        let (mut got, mut want) = (vec![0.0f32; rows * rows], vec![0.0f32; rows * rows]);
        gram_split_k(divided, divided, rows, rows, &mut got, K_CHUNK);
        gram_split_k(copy, copy, rows, rows, &mut want, K_CHUNK);
        assert_eq!(got, want);
        let h = pattern(2 * rows, 4);
        let lhs = Mat::row_major(&h, 2, rows);
        let (mut got, mut want) = (vec![1.0f32; 2 * dim], vec![1.0f32; 2 * dim]);
        matmul_split_n(&mut got, dim, lhs, divided, true);
        matmul_split_n(&mut want, dim, lhs, copy, true);
        assert_eq!(got, want);
        assert_ne!(got, vec![1.0f32; 2 * dim]);
    }
}
