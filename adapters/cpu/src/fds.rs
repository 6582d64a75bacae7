//! FDS's statistics pass on the fast engine ([`conr_core::fds::moments`]).
//!
//! - Fixed chunks of rows in parallel, each into a per-group partial of its
//!   own, the partials added in chunk order.
//! - Within a chunk, windows of rows sorted by group: each block of columns
//!   of a group is summed over the group's rows of the window in registers,
//!   then added to the group's output once. Row by row, every row would load
//!   and store its group's whole output (two f64 per feature, four times
//!   the bytes of an f32 row) in random group order; that traffic, not the
//!   arithmetic, bounded the pass.
//! - While a window is summed, the next one's rows are fetched into the
//!   cache, a group's worth at a time.
//!
//! The chunks and windows depend on the shape alone, and each value is
//! added in the same order whatever the registers' width, so the result is
//! the same on any number of threads and any x86-64 CPU.

use conr_core::fds::groups::NO_GROUP;
use conr_core::fds::moments::{Pass, Rows, check_sums};
use conr_core::{Error, Scalar};
use rayon::prelude::*;

/// Rows below which one chunk does the pass alone.
const MIN_CHUNK_ROWS: usize = 2048;
/// The most chunks.
const MAX_CHUNKS: usize = 16;
/// The fewest bytes of features a chunk reads per byte of its partial: a
/// fresh partial's first writes and its adding up cost 10 to 20 times as
/// much per byte as the pass's reads. On 100,000 × 512 f32 in 97 groups on
/// 2 threads, 16 chunks (25 MB of partials) took 10.6 ms, 4 chunks 7.6 ms.
const READS_PER_PARTIAL: usize = 64;
/// The fewest bytes of features per window.
const WINDOW_BYTES: usize = 512 << 10;
/// The fewest rows per window, per group: so many rows of a group, on
/// average, share each load and store of its output. On 51,200,000 f32 in
/// 97 groups on 2 threads (release build, one machine), 8 against none:
/// 13.1 against 25.1 ms with rows of 2,048, the same (8–9 ms) with rows of
/// 64 to 512; 32 was slower at every width.
const ROWS_PER_GROUP: usize = 8;
/// The fewest rows per window: below it, too few rows of a group share a
/// load and store of its output.
const MIN_WINDOW: usize = 64;
/// The most rows per window (narrow rows): the window's order is one u32
/// per row.
const MAX_WINDOW: usize = 4096;

/// The pass over `rows`, added into `out`.
pub(crate) fn pass<T: Scalar>(
    rows: &Rows<'_, T>,
    pass: Pass<'_>,
    out: &mut [f64],
) -> Result<(), Error> {
    if out.len() != pass.out_len(rows) || pass.check(rows).is_err() {
        // The core reports the mismatch.
        return conr_core::fds::moments::accumulate(rows, pass, out);
    }
    let n = rows.len();
    let (features, partial) = (
        n * rows.dim() * core::mem::size_of::<T>(),
        core::mem::size_of_val(out),
    );
    let chunks = (n / MIN_CHUNK_ROWS)
        .min(features / (READS_PER_PARTIAL * partial).max(1))
        .min(MAX_CHUNKS);
    if chunks <= 1 {
        crate::simd::fds_windows(rows, pass, out);
        return check_sums(rows, out);
    }
    let (size, len) = (n.div_ceil(chunks), out.len());
    let mut partials = vec![0.0; chunks * len];
    partials
        .par_chunks_mut(len)
        .enumerate()
        .for_each(|(c, part)| {
            let chunk = rows.slice(c * size..((c + 1) * size).min(n));
            crate::simd::fds_windows(&chunk, pass, part);
        });
    const SPAN: usize = 4096;
    out.par_chunks_mut(SPAN).enumerate().for_each(|(b, span)| {
        for part in partials.chunks_exact(len) {
            for (o, p) in span.iter_mut().zip(&part[b * SPAN..]) {
                *o += p;
            }
        }
    });
    check_sums(rows, out)
}

/// The pass over `rows` window by window, added into `out`, whose length
/// the caller has checked. Always inlined: [`crate::simd`] compiles it again
/// for AVX2.
#[inline(always)]
pub(crate) fn windows<T: Scalar, const BLOCK: usize>(
    rows: &Rows<'_, T>,
    pass: Pass<'_>,
    out: &mut [f64],
) {
    // One copy of the loop per kind of pass, each with its kind known: the
    // innermost loop then has no branch on it.
    match pass {
        Pass::Sums => windows_of::<T, BLOCK>(rows, Pass::Sums, out),
        Pass::Squares { means } => windows_of::<T, BLOCK>(rows, Pass::Squares { means }, out),
        Pass::Shifted { shifts } => windows_of::<T, BLOCK>(rows, Pass::Shifted { shifts }, out),
    }
}

#[inline(always)]
fn windows_of<T: Scalar, const BLOCK: usize>(rows: &Rows<'_, T>, pass: Pass<'_>, out: &mut [f64]) {
    let (n, dim, groups) = (rows.len(), rows.dim(), rows.groups());
    let width = pass.width(dim);
    let window_rows = (WINDOW_BYTES / (dim * core::mem::size_of::<T>()))
        .max(ROWS_PER_GROUP * groups)
        .clamp(MIN_WINDOW, MAX_WINDOW);
    // Each window's rows, by group: group g's are order[start[g]..start[g + 1]].
    let mut order = vec![0u32; window_rows.min(n)];
    let mut start = vec![0usize; groups + 1];
    // Where the next row of each group goes in `order`.
    let mut next = vec![0usize; groups];
    for base in (0..n).step_by(window_rows) {
        let window = base..(base + window_rows).min(n);
        let ahead = window.end..(window.end + window_rows).min(n);
        start.fill(0);
        for r in window.clone() {
            let g = rows.row(r).0;
            if g != NO_GROUP {
                start[g as usize + 1] += 1;
            }
        }
        for g in 0..groups {
            start[g + 1] += start[g];
        }
        next.copy_from_slice(&start[..groups]);
        for r in window.clone() {
            let g = rows.row(r).0;
            if g != NO_GROUP {
                order[next[g as usize]] = (r - base) as u32;
                next[g as usize] += 1;
            }
        }
        // The next window's rows come into the cache while this one's are
        // summed: before each group, a share of them as large as the
        // group's share of this window.
        let mut fetched = ahead.start;
        for g in (0..groups).filter(|&g| start[g] < start[g + 1]) {
            let upto = (ahead.start + start[g + 1] * ahead.len() / window.len()).min(ahead.end);
            for r in fetched..upto {
                crate::simd::prefetch(rows.row(r).1);
            }
            fetched = fetched.max(upto);
            let members = &order[start[g]..start[g + 1]];
            let (first, second) = out[g * width..(g + 1) * width].split_at_mut(dim);
            let x = &rows.features()[base * dim..];
            let mut at = 0;
            while at + BLOCK <= dim {
                add_block::<T, BLOCK>(pass, g * dim, x, dim, members, at, first, second);
                at += BLOCK;
            }
            // The last columns, fewer than a block, one at a time.
            while at < dim {
                add_block::<T, 1>(pass, g * dim, x, dim, members, at, first, second);
                at += 1;
            }
        }
    }
}

/// Adds columns `at..at + W` of `members` (rows of `x`, `dim` wide, all of
/// one group) into `first` and `second` (the group's outputs), summed over
/// the rows in registers first. `offset + at` is the columns' index in the
/// means or shifts.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn add_block<T: Scalar, const W: usize>(
    pass: Pass<'_>,
    offset: usize,
    x: &[T],
    dim: usize,
    members: &[u32],
    at: usize,
    first: &mut [f64],
    second: &mut [f64],
) {
    let (mut a, mut b) = ([0.0; W], [0.0; W]);
    for &r in members {
        let x: &[T; W] = x[r as usize * dim + at..][..W]
            .try_into()
            .expect("W columns");
        pass.add_block(offset + at, x, &mut a, &mut b);
    }
    for (o, v) in first[at..at + W].iter_mut().zip(a) {
        *o += v;
    }
    if !second.is_empty() {
        for (o, v) in second[at..at + W].iter_mut().zip(b) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each value's sum is the same whatever the block's width: the claim
    /// that lets each CPU use its widest registers.
    #[test]
    fn the_block_width_leaves_every_bit() {
        let (n, dim, groups) = (3000, 37, 5);
        let features: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 7.0 - 60.0)
            .collect();
        let of_row: Vec<u32> = (0..n as u32)
            .map(|r| {
                if r % 11 == 0 {
                    NO_GROUP
                } else {
                    (r * 7) % groups as u32
                }
            })
            .collect();
        let rows = Rows::new(&features, dim, &of_row, groups).unwrap();
        let mut c = vec![0.0; rows.out_len()];
        conr_core::fds::moments::shifts(&rows, &mut c).unwrap();
        for pass in [Pass::Sums, Pass::Shifted { shifts: &c }] {
            let run = |f: fn(&Rows<'_, f32>, Pass<'_>, &mut [f64])| {
                let mut out = vec![0.0; pass.out_len(&rows)];
                f(&rows, pass, &mut out);
                out
            };
            let narrow = run(windows::<f32, 1>);
            assert_eq!(narrow, run(windows::<f32, 16>));
            assert_eq!(narrow, run(windows::<f32, 32>));
        }
    }
}
