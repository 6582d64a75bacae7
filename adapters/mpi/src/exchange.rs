//! The protocol of `conr_core::shard` over an MPI communicator: an
//! all-gather of the features, phase 1, an all-gather of the outcome
//! messages, phase 2, and the gradient rows and the loss brought to rank 0.

use std::ops::Range;

use conr_core::shard::{self, Header, even_slices, message_len, write_message};
use conr_core::{Batch, Config, Engine, Inputs, Output, Part, Scalar, Shape};
use mpi::Count;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence, Root};

use crate::Error;

/// One rank's own rows of the global batch, row-major, as a data loader
/// would hand them over.
#[derive(Debug, Clone)]
pub struct LocalRows<T> {
    /// Its rows' features (rows × D).
    pub features: Vec<T>,
    /// Its rows' labels (rows × L).
    pub labels: Vec<T>,
    /// Its rows' predictions (rows × L).
    pub preds: Vec<T>,
    /// Its rows' pushing powers eta (the weights), or `None` on every rank for all ones.
    pub weights: Option<Vec<T>>,
}

/// The rows rank `rank` of `ranks` owns in a global batch of `rows` rows:
/// even runs, the first ones one longer.
pub fn rank_rows(rows: usize, ranks: usize, rank: usize) -> Range<usize> {
    even_slices(rows, ranks)
        .get(rank)
        .cloned()
        .unwrap_or(rows..rows)
}

/// ConR on the global batch of `shape` whose rows the ranks of `world`
/// hold in even runs ([`rank_rows`]), on any engine. Every rank calls it with
/// its own rows; rank 0 gets the whole [`Output`] (the loss, every row's
/// gradient, anchors and counts) and the others `None`.
///
/// Beyond the feature gather each rank sends one message of outcomes (10
/// values a row plus 10) and its gradient rows to rank 0. An error on any
/// rank leaves the others waiting in a collective: the caller must abort the
/// communicator (as `conr-mpi` does).
pub fn run_rank<T, C>(
    world: &C,
    engine: &dyn Engine<T>,
    config: &Config,
    shape: Shape,
    local: &LocalRows<T>,
) -> Result<Option<Output<T>>, Error>
where
    T: Scalar + Equivalence,
    C: Communicator + CommunicatorCollectives,
{
    let (ranks, rank) = (world.size() as usize, world.rank() as usize);
    let slices = even_slices(shape.rows, ranks);
    let mine = slices[rank].clone();
    let lengths = |width: usize| -> Vec<usize> { slices.iter().map(|s| s.len() * width).collect() };
    let (d, l) = (shape.dim, shape.label_dim);
    for (what, got, width) in [
        ("features", local.features.len(), d),
        ("labels", local.labels.len(), l),
        ("predictions", local.preds.len(), l),
    ] {
        if got != mine.len() * width {
            return Err(Error::LocalRows {
                rank,
                what,
                got,
                expected: mine.len() * width,
            });
        }
    }
    // 1. Every rank gets every row.
    let features = all_gather(world, &local.features, &lengths(d))?;
    let labels = all_gather(world, &local.labels, &lengths(l))?;
    let preds = all_gather(world, &local.preds, &lengths(l))?;
    let weights = match &local.weights {
        Some(w) => Some(all_gather(world, w, &lengths(1))?),
        None => None,
    };
    let inputs = Inputs {
        features: &features,
        labels: &labels,
        preds: &preds,
        eta: weights.as_deref(),
    };
    let batch = Batch::new(shape, inputs)?;
    let mut worker = engine.worker(batch, config)?;

    // 2. Phase 1, and the exchange of outcomes.
    let header = Header::new(config, shape);
    let outcomes = worker.forward(mine.clone())?;
    let mut message = vec![T::zero(); message_len(outcomes.len())];
    write_message(&header, mine.start, &outcomes, &mut message)?;
    let message_lengths: Vec<usize> = slices.iter().map(|s| message_len(s.len())).collect();
    let all = all_gather(world, &message, &message_lengths)?;
    let mut messages = Vec::with_capacity(ranks);
    let mut rest = all.as_slice();
    for &n in &message_lengths {
        let (one, tail) = rest.split_at(n);
        messages.push(one);
        rest = tail;
    }
    let outcomes = shard::gather(&header, &messages)?;

    // 3. Phase 2: this rank's gradient rows and part of the loss, to rank 0.
    let part = worker.backward(mine, &outcomes)?;
    let root = world.process_at_rank(0);
    if rank != 0 {
        root.reduce_into(&part.loss, SystemOperation::sum());
        root.gather_varcount_into(&part.grad_features[..]);
        return Ok(None);
    }
    let mut loss = T::zero();
    root.reduce_into_root(&part.loss, &mut loss, SystemOperation::sum());
    let (counts, displs) = partition(&lengths(d))?;
    let mut grad_features = vec![T::zero(); shape.rows * d];
    root.gather_varcount_into_root(
        &part.grad_features[..],
        &mut PartitionMut::new(&mut grad_features[..], counts, displs),
    );
    Ok(Some(Output::from_part(
        Part {
            loss,
            grad_features,
        },
        &outcomes,
    )))
}

/// MPI's counts and displacements for runs of these lengths.
fn partition(lengths: &[usize]) -> Result<(Vec<Count>, Vec<Count>), Error> {
    let mut start = 0usize;
    let mut counts = Vec::with_capacity(lengths.len());
    let mut displs = Vec::with_capacity(lengths.len());
    let count = |n: usize| Count::try_from(n).map_err(|_| Error::TooManyValues(n));
    for &n in lengths {
        counts.push(count(n)?);
        displs.push(count(start)?);
        start += n;
    }
    count(start)?;
    Ok((counts, displs))
}

/// Every rank's run, in rank order: rank r contributes `lengths[r]` values.
fn all_gather<T, C>(world: &C, mine: &[T], lengths: &[usize]) -> Result<Vec<T>, Error>
where
    T: Scalar + Equivalence,
    C: CommunicatorCollectives,
{
    let (counts, displs) = partition(lengths)?;
    let mut all = vec![T::zero(); lengths.iter().sum()];
    world.all_gather_varcount_into(mine, &mut PartitionMut::new(&mut all[..], counts, displs));
    Ok(all)
}
