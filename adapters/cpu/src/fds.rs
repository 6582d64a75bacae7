//! FDS's statistics pass on the fast engine ([`conr_core::fds::moments`]):
//! one read of the features, fixed chunks of rows in parallel, each into a
//! per-group partial of its own, and the partials added in chunk order. The
//! chunks depend on the rows and groups alone, so the result is the same on
//! any number of threads.

use conr_core::fds::moments::{Pass, Rows, check_sums};
use conr_core::{Error, Scalar};
use rayon::prelude::*;

/// Rows below which one chunk does the pass alone.
const MIN_CHUNK_ROWS: usize = 2048;
/// The most chunks.
const MAX_CHUNKS: usize = 16;

/// The pass over `rows`, added into `out`.
pub(crate) fn pass<T: Scalar>(
    rows: &Rows<'_, T>,
    pass: Pass<'_>,
    out: &mut [f64],
) -> Result<(), Error> {
    let n = rows.len();
    // The partials together hold at most twice as many values as the
    // features (the shifted pass keeps two sums per value).
    let chunks = (n / MIN_CHUNK_ROWS)
        .min(MAX_CHUNKS)
        .min(n / rows.groups().max(1));
    if chunks <= 1 || out.len() != pass.out_len(rows) {
        // One chunk, or a mismatch for the core to report.
        return crate::simd::fds_accumulate(rows, pass, out);
    }
    let size = n.div_ceil(chunks);
    let partials = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut part = vec![0.0; out.len()];
            let chunk = rows.slice(c * size..((c + 1) * size).min(n));
            crate::simd::fds_accumulate(&chunk, pass, &mut part)?;
            Ok(part)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    const SPAN: usize = 4096;
    out.par_chunks_mut(SPAN).enumerate().for_each(|(b, span)| {
        for part in &partials {
            for (o, p) in span.iter_mut().zip(&part[b * SPAN..]) {
                *o += p;
            }
        }
    });
    check_sums(rows, out)
}
