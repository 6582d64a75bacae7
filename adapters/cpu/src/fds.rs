//! FDS's statistics pass on the fast engine ([`conr_core::fds::moments`]):
//! fixed chunks of rows in parallel, each into a per-group partial of its
//! own, and the partials added in chunk order. The chunks depend on the
//! rows and groups alone, so the result is the same on any number of threads.

use conr_core::fds::moments::{Pass, Rows, accumulate};
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
    // The partials together hold at most as many values as the features.
    let chunks = (n / MIN_CHUNK_ROWS)
        .min(MAX_CHUNKS)
        .min(n / rows.groups().max(1));
    if chunks <= 1 {
        return accumulate(rows, pass, out);
    }
    let size = n.div_ceil(chunks);
    let partials = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut part = vec![0.0; rows.out_len()];
            accumulate(
                &rows.slice(c * size..((c + 1) * size).min(n)),
                pass,
                &mut part,
            )?;
            Ok(part)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if out.len() != rows.out_len() {
        return accumulate(rows, pass, out); // reports the mismatch
    }
    const BLOCK: usize = 4096;
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, block)| {
            for part in &partials {
                for (o, p) in block.iter_mut().zip(&part[b * BLOCK..]) {
                    *o += p;
                }
            }
        });
    Ok(())
}
