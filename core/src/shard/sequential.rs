//! The protocol with W workers run one after another in one process: what a
//! distributed run does, the exchange included, without the network.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::{Header, gather, message_len, write_message};
use crate::{Batch, Config, Engine, Error, Output, Part, Scalar};

/// `rows` split into `workers` runs whose lengths differ by at most one (the
/// first ones longer); a worker may get no row when there are more workers
/// than rows.
///
/// ```
/// use conr_core::shard::even_slices;
/// assert_eq!(even_slices(7, 3), [0..3, 3..5, 5..7]);
/// assert_eq!(even_slices(2, 3), [0..1, 1..2, 2..2]);
/// ```
pub fn even_slices(rows: usize, workers: usize) -> Vec<Range<usize>> {
    let workers = workers.max(1);
    let (base, extra) = (rows / workers, rows % workers);
    let mut start = 0;
    (0..workers)
        .map(|w| {
            let len = base + usize::from(w < extra);
            let slice = start..start + len;
            start += len;
            slice
        })
        .collect()
}

/// ConR on `batch` split across workers that own the runs `slices` (which
/// must cover the rows exactly once, in any lengths), on any engine, run one
/// after another:
///
/// 1. each worker computes its rows' outcomes and writes them into a message;
/// 2. every worker reads every message (the all-gather), checking that each
///    comes from the same config and shape and that together they cover
///    every row once;
/// 3. each worker computes its part of the loss and its rows' gradient.
///
/// The result equals [`Engine::compute`] up to summation order. Each worker
/// prepares anew for each phase ([`Engine::forward_rows`],
/// [`Engine::backward_rows`]), so that memory stays that of one worker; a
/// real worker keeps one [`crate::Worker`] for both.
pub fn compute_sharded<T: Scalar>(
    engine: &dyn Engine<T>,
    batch: &Batch<'_, T>,
    config: &Config,
    slices: &[Range<usize>],
) -> Result<Output<T>, Error> {
    let header = Header::new(config, batch.shape());
    // Phase 1, and each worker's message.
    let mut messages = Vec::with_capacity(slices.len());
    for slice in slices {
        let outcomes = engine.forward_rows(batch, config, slice.clone())?;
        let mut message = vec![T::zero(); message_len(outcomes.len())];
        write_message(&header, slice.start, &outcomes, &mut message)?;
        messages.push(message);
    }
    // The exchange: every worker would read every message; one read serves all here.
    let messages: Vec<&[T]> = messages.iter().map(Vec::as_slice).collect();
    let outcomes = gather(&header, &messages)?;
    // Phase 2.
    let mut loss = T::zero();
    let dim = batch.shape().dim;
    let mut grad_features = vec![T::zero(); batch.rows() * dim];
    for slice in slices {
        let part = engine.backward_rows(batch, config, slice.clone(), &outcomes)?;
        if part.grad_features.len() != slice.len() * dim {
            return Err(Error::ShapeMismatch {
                what: "a worker's gradient",
                expected: slice.len() * dim,
                got: part.grad_features.len(),
            });
        }
        loss = loss + part.loss;
        grad_features[slice.start * dim..slice.end * dim].copy_from_slice(&part.grad_features);
    }
    Ok(Output::from_part(
        Part {
            loss,
            grad_features,
        },
        &outcomes,
    ))
}
