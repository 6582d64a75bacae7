//! # conr-mpi
//!
//! Exact data-parallel ConR over MPI. Each rank holds a run of the rows of
//! one global batch; together they compute the loss and gradient of the
//! whole batch, as one process would, with the protocol of
//! [`conr_core::shard`]:
//!
//! 1. the ranks all-gather the features (as data-parallel contrastive
//!    training already does);
//! 2. each computes its rows' outcomes against every row (phase 1);
//! 3. they all-gather the outcomes, 10 values a row;
//! 4. each computes its rows' gradient, with both `G_jk` and `G_kj`, and
//!    its part of the loss (phase 2): no gradient all-reduce;
//! 5. the loss is the sum of the parts.
//!
//! [`run_rank`] is the protocol for a program that owns its communicator;
//! the `conr-mpi` command runs it on a `conr compute` input file:
//!
//! ```sh
//! mpirun -n 4 conr-mpi --input batch.json [--backend reference|cpu|gpu] [--precision f32|f64]
//! ```
//!
//! Rank 0 prints what `conr compute --input batch.json` prints, plus
//! `"workers"`. Building needs an MPI installation and libclang (Debian:
//! `openmpi-bin libopenmpi-dev libclang-dev`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod exchange;

pub use error::Error;
pub use exchange::{LocalRows, rank_rows, run_rank};

use std::path::Path;

use conr_core::{Engine, Precision, Scalar};
use conr_schema::{LossCase, Report, read_json};
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence};
use serde::Serialize;

/// What rank 0 prints: `conr compute`'s object and the number of ranks.
#[derive(Debug, Clone, Serialize)]
pub struct MpiReport {
    /// The same fields as `conr compute`.
    #[serde(flatten)]
    pub report: Report,
    /// The ranks that computed it.
    pub workers: usize,
}

/// Every rank reads the case at `input`, keeps its own rows, and runs
/// [`run_rank`] on the engine called `backend` (`conr_engines`) in
/// `precision` (default f64 where the engine computes in f64, else f32).
/// Rank 0 gets the report.
pub fn run_file<C>(
    world: &C,
    input: &Path,
    backend: &str,
    precision: Option<Precision>,
) -> Result<Option<MpiReport>, Error>
where
    C: Communicator + CommunicatorCollectives,
{
    let case: LossCase = read_json(input)?;
    let engine = conr_engines::engine(backend)?;
    let (output, computed_in) = match conr_engines::batch_precision(&*engine, precision)? {
        Precision::F64 => (
            run_case::<f64, C>(world, &*engine, &case)?.map(|o| o.cast()),
            Engine::<f64>::precision(&*engine),
        ),
        _ => (
            run_case::<f32, C>(world, &*engine, &case)?.map(|o| o.cast()),
            Engine::<f32>::precision(&*engine),
        ),
    };
    Ok(output.map(|o| MpiReport {
        report: Report::new(o, Engine::<f32>::name(&*engine), computed_in),
        workers: world.size() as usize,
    }))
}

/// This rank's rows of `case` in `T`, then the protocol.
fn run_case<T, C>(
    world: &C,
    engine: &dyn Engine<T>,
    case: &LossCase,
) -> Result<Option<conr_core::Output<T>>, Error>
where
    T: Scalar + Equivalence,
    C: Communicator + CommunicatorCollectives,
{
    let config = case.config.to_config()?;
    let shape = case.shape();
    // The core's checks of the whole file, in `T`, before this rank takes its rows.
    let whole = case.converted::<T>()?;
    let whole = whole.batch();
    let rows = rank_rows(shape.rows, world.size() as usize, world.rank() as usize);
    let take = |v: &[T], width: usize| v[rows.start * width..rows.end * width].to_vec();
    let local = LocalRows {
        features: take(whole.features(), shape.dim),
        labels: take(whole.labels(), shape.label_dim),
        preds: take(whole.preds(), shape.label_dim),
        weights: whole.etas().map(|w| take(w, 1)),
    };
    run_rank(world, engine, &config, shape, &local)
}
