//! The data-parallel protocol of [`conr_core::shard`], with W workers run one
//! after another in one process: what a distributed run does, exchange
//! included, without the network.

use std::ops::Range;

use conr_core::shard::{Header, gather, message_len, write_message};
use conr_core::{Batch, Config, Error, Output, Part, Scalar};

use crate::Engine;

/// `rows` split into `workers` runs whose lengths differ by at most one (the
/// first ones longer); a worker may get no row when there are more workers
/// than rows.
///
/// ```
/// assert_eq!(conr_cpu::even_slices(7, 3), [0..3, 3..5, 5..7]);
/// assert_eq!(conr_cpu::even_slices(2, 3), [0..1, 1..2, 2..2]);
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
/// must cover the rows exactly once, in any lengths), run one after another:
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
///
/// ```
/// use conr_cpu::{Batch, Config, Engine, Reference, Shape, compute_sharded, even_slices};
/// let shape = Shape { rows: 4, dim: 2, label_dim: 1 };
/// let f: [f64; 8] = [1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
/// let batch = Batch::new(shape, &f, &[20.0, 20.5, 60.0, 60.5], &[40.0, 40.2, 40.4, 40.1], None)?;
/// let config = Config::official_agedb();
/// let sharded = compute_sharded(&Reference, &batch, &config, &even_slices(4, 3))?;
/// let whole = Reference.compute(&batch, &config)?;
/// assert!((sharded.loss - whole.loss).abs() < 1e-12);
/// assert_eq!(sharded.anchors, whole.anchors);
/// # Ok::<(), conr_cpu::Error>(())
/// ```
pub fn compute_sharded<E: Engine, T: Scalar>(
    engine: &E,
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
    let mut grad_features = vec![T::zero(); batch.rows() * batch.shape().dim];
    let dim = batch.shape().dim;
    for slice in slices {
        let part = engine.backward_rows(batch, config, slice.clone(), &outcomes)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reference;
    use conr_core::Shape;

    #[test]
    fn missing_or_repeated_rows_and_foreign_configs_are_errors() {
        let shape = Shape {
            rows: 4,
            dim: 2,
            label_dim: 1,
        };
        let f = [1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
        let (y, p) = ([20.0, 20.5, 60.0, 60.5], [40.0, 40.2, 40.4, 40.1]);
        let batch = Batch::new(shape, &f, &y, &p, None).unwrap();
        let config = Config::official_agedb();
        let header = Header::new(&config, shape);
        let message = |rows: Range<usize>, config: &Config| {
            let outcomes = Reference
                .forward_rows(&batch, config, rows.clone())
                .unwrap();
            let mut m = vec![0.0f64; message_len(outcomes.len())];
            write_message(&Header::new(config, shape), rows.start, &outcomes, &mut m).unwrap();
            m
        };
        let (a, b) = (message(0..2, &config), message(2..4, &config));
        let (a, b) = (a.as_slice(), b.as_slice());
        assert!(gather(&header, &[a, b]).is_ok());
        assert!(gather(&header, &[a]).is_err(), "rows 2..4 missing");
        assert!(gather(&header, &[a, a, b]).is_err(), "rows 0..2 twice");
        let paper = message(2..4, &Config::paper());
        assert!(gather(&header, &[a, &paper]).is_err(), "another config");
        assert!(
            gather(&header, &[a, &b[..b.len() - 1]]).is_err(),
            "a record cut short"
        );
        // Slices that do not cover the batch are refused too.
        let short = std::slice::from_ref(&(0..3));
        assert!(compute_sharded(&Reference, &batch, &config, short).is_err());
        assert!(compute_sharded(&Reference, &batch, &config, &[0..3, 2..4]).is_err());
        let long = std::slice::from_ref(&(0..5));
        assert!(compute_sharded(&Reference, &batch, &config, long).is_err());
    }
}
