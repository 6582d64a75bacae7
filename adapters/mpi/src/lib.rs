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

mod exchange;
mod phases;

pub use exchange::{LocalRows, rank_rows, run_rank};
pub use phases::{Phases, RankEngine};

use std::path::Path;

use anyhow::{Context, Result};
use conr_cli::input::{LossCase, read_json};
use conr_cli::output::{Backend, ComputeReport, Precision};
use conr_core::Scalar;
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence};
use serde::Serialize;

/// What rank 0 prints: `conr compute`'s object and the number of ranks.
#[derive(Debug, Clone, Serialize)]
pub struct MpiReport {
    /// The same fields as `conr compute`.
    #[serde(flatten)]
    pub report: ComputeReport,
    /// The ranks that computed it.
    pub workers: usize,
}

/// Every rank reads the case at `input`, keeps its own rows, and runs
/// [`run_rank`] in `precision` (default f64, f32 on the GPU). Rank 0 gets
/// the report.
pub fn run_file<C>(
    world: &C,
    input: &Path,
    backend: Backend,
    precision: Option<Precision>,
) -> Result<Option<MpiReport>>
where
    C: Communicator + CommunicatorCollectives,
{
    let case: LossCase = read_json(input)?;
    let precision = Precision::resolve(backend, precision)?;
    let engine = RankEngine::new(backend)?;
    let output = match precision {
        Precision::F64 => run_case::<f64, C>(world, &engine, &case)?.map(|o| o.cast()),
        Precision::F32 => run_case::<f32, C>(world, &engine, &case)?.map(|o| o.cast()),
    };
    Ok(output.map(|o| MpiReport {
        report: ComputeReport::new(o, backend, precision),
        workers: world.size() as usize,
    }))
}

/// This rank's rows of `case` in `T`, then the protocol.
fn run_case<T, C>(
    world: &C,
    engine: &RankEngine,
    case: &LossCase,
) -> Result<Option<conr_core::Output<T>>>
where
    T: Scalar + Equivalence,
    C: Communicator + CommunicatorCollectives,
{
    let config = case.config.to_config()?;
    let shape = case.shape();
    // The core's checks of the whole file, before this rank takes its rows.
    conr_core::Batch::new(
        shape,
        &case.features,
        &case.labels,
        &case.preds,
        case.weights.as_deref(),
    )
    .context("the input's arrays do not have the lengths n, d and label_dim give")?;
    let rows = rank_rows(shape.rows, world.size() as usize, world.rank() as usize);
    let take = |v: &[f64], width: usize| -> Vec<T> {
        v[rows.start * width..rows.end * width]
            .iter()
            .map(|&x| T::from(x).unwrap_or_else(T::nan))
            .collect()
    };
    let local = LocalRows {
        features: take(&case.features, shape.dim),
        labels: take(&case.labels, shape.label_dim),
        preds: take(&case.preds, shape.label_dim),
        weights: case.weights.as_deref().map(|w| take(w, 1)),
    };
    run_rank(world, engine, &config, shape, &local)
}
