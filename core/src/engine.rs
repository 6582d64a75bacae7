//! The one engine interface (needs the `alloc` feature).
//!
//! Every engine, the CPU reference, the fast CPU engine and the GPU engine,
//! implements [`Engine<T>`] for the scalar types it takes, and every consumer
//! (the framework ops, the command line, the benchmarks, the data-parallel
//! protocol) holds one as `Arc<dyn Engine<T>>`, or as `Arc<dyn FloatEngine>`
//! where batches come in both precisions:
//!
//! ```
//! use std::sync::Arc;
//! use conr_core::{Batch, Config, Engine, Error, Inputs, Output, Shape};
//!
//! /// Any engine, chosen elsewhere.
//! fn loss(engine: &dyn Engine<f64>, batch: &Batch<'_, f64>) -> Result<f64, Error> {
//!     Ok(engine.compute(batch, &Config::official_agedb())?.loss)
//! }
//! # #[derive(Debug)]
//! # struct Nothing;
//! # impl Engine<f64> for Nothing {
//! #     fn name(&self) -> &'static str { "nothing" }
//! #     fn worker<'a>(&'a self, _: Batch<'a, f64>, _: &Config) -> Result<Box<dyn conr_core::Worker<f64> + 'a>, Error> {
//! #         Err(Error::EmptyBatch)
//! #     }
//! # }
//! # let engine: Arc<dyn Engine<f64>> = Arc::new(Nothing);
//! # let shape = Shape { rows: 1, dim: 1, label_dim: 1 };
//! # let batch = Batch::new(shape, Inputs { features: &[1.0], labels: &[1.0], preds: &[1.0], eta: None })?;
//! # assert!(loss(&*engine, &batch).is_err());
//! # Ok::<(), Error>(())
//! ```
//!
//! The computation is two phases over the rows a worker owns (see
//! [`crate::shard`]), run by a [`Worker`] that [`Engine::worker`] prepares
//! once per batch: [`Worker::forward`] gives its rows' outcomes, and, once
//! every row's outcome is known, [`Worker::backward`] gives their part of the
//! loss and their gradient. [`Engine::compute`] is the same two phases with
//! one worker owning every row (an engine may run them fused), and
//! [`crate::shard::compute_sharded`] runs W workers one after another.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::ops::Range;

use crate::band::TilePlan;
use crate::config::named;
use crate::dir::balanced_mse::{BalancedMse, BmseBatch};
use crate::dir::ranksim::{RankSim, RankSimBatch};
use crate::dir::rnc::{RankNContrast, RncBatch};
use crate::dir::{BalancedMseOutput, RankSimOutput, RncOutput};
use crate::stats::RowOutcome;
use crate::{Batch, Config, Error, Named, Output, Part, Scalar};

/// The precision an engine computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Every value in f64.
    F64,
    /// Every value in f32.
    #[default]
    F32,
    /// f16 inputs to the M×M×D products (on tensor cores), with f32
    /// accumulation and every statistic in f32 (the GPU engine, where the
    /// adapter has cooperative matrices).
    Mixed,
}

named!(
    Precision,
    "precision",
    [
        ("f64", Precision::F64),
        ("f32", Precision::F32),
        ("mixed", Precision::Mixed),
    ]
);

impl Precision {
    /// The precision of the scalar type `T`: [`Precision::F32`] for types of
    /// f32's precision or less, [`Precision::F64`] otherwise.
    pub fn of<T: Scalar>() -> Self {
        if T::epsilon()
            .to_f64()
            .is_some_and(|e| e >= f64::from(f32::EPSILON))
        {
            Precision::F32
        } else {
            Precision::F64
        }
    }
}

/// The tiles an engine visits for one batch: the plan it takes, and the
/// share of the dense plan's tiles it visits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanReport {
    /// [`TilePlan::Band`] where the engine visits only the band's tiles,
    /// [`TilePlan::Dense`] where it visits every tile.
    pub tiles: TilePlan,
    /// The tiles visited over the dense plan's: 1 for the dense plan; for
    /// the band, both sides together, which may overlap (and so exceed 1).
    pub tile_share: f64,
}

impl PlanReport {
    /// Every tile.
    pub const DENSE: Self = Self {
        tiles: TilePlan::Dense,
        tile_share: 1.0,
    };
}

/// [`Engine::compute`]'s steps: both phases on one worker of `engine` that
/// owns every row. An engine that overrides `compute` to run them in one
/// setting (the CPU engine: in one trip to its thread pool, each of which
/// costs microseconds) calls this inside it.
pub fn whole<T: Scalar, E: Engine<T> + ?Sized>(
    engine: &E,
    batch: &Batch<'_, T>,
    config: &Config,
) -> Result<Output<T>, Error> {
    let all = 0..batch.rows();
    let mut worker = engine.worker(*batch, config)?;
    let outcomes = worker.forward(all.clone())?;
    let part = worker.backward(all, &outcomes)?;
    Ok(Output::from_part(part, &outcomes))
}

/// A ConR engine for batches of `T`: the loss and its gradient, whole or in
/// the two row phases of the data-parallel protocol.
///
/// Object-safe: hold one as `Arc<dyn Engine<T>>`. Every method validates its
/// batch and config with the core's checks ([`Batch::check`]). An engine is
/// [`Any`], so that a caller that wants what only one engine offers (the GPU
/// context's recording into an encoder, say) can ask for it by downcasting.
pub trait Engine<T: Scalar>: Send + Sync + Any + core::fmt::Debug {
    /// The engine's name: `"reference"`, `"fast"` or `"gpu"`.
    fn name(&self) -> &'static str;

    /// The precision it computes a batch of `T` in. An engine that computes
    /// in less than `T` rounds the batch once and says so here.
    fn precision(&self) -> Precision {
        Precision::of::<T>()
    }

    /// A worker on `batch`: validates `config` against it and prepares what
    /// both phases read (the normalised features, a plan of the tiles), once.
    fn worker<'a>(
        &'a self,
        batch: Batch<'a, T>,
        config: &Config,
    ) -> Result<Box<dyn Worker<T> + 'a>, Error>;

    /// The loss, `∂loss/∂features`, the anchors and the pair counts: both
    /// phases on one worker that owns every row.
    fn compute(&self, batch: &Batch<'_, T>, config: &Config) -> Result<Output<T>, Error> {
        whole(self, batch, config)
    }

    /// Phase 1 alone, on a worker of its own: the outcomes of `rows`.
    fn forward_rows(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
        rows: Range<usize>,
    ) -> Result<Vec<RowOutcome<T>>, Error> {
        self.worker(*batch, config)?.forward(rows)
    }

    /// Phase 2 alone, on a worker of its own: given every row's outcome, the
    /// part of the loss and `∂L/∂features` of `rows`.
    fn backward_rows(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error> {
        self.worker(*batch, config)?.backward(rows, outcomes)
    }

    /// The tiles [`Engine::compute`] visits for this batch. Engines without a
    /// tile plan visit every pair: [`PlanReport::DENSE`].
    fn plan(&self, batch: &Batch<'_, T>, config: &Config) -> Result<PlanReport, Error> {
        batch.check(config)?;
        Ok(PlanReport::DENSE)
    }

    /// RankSim's loss and its blackbox gradient ([`crate::dir::ranksim`]).
    /// An engine without it returns [`Error::Unsupported`].
    fn rank_sim(
        &self,
        batch: &RankSimBatch<'_, T>,
        config: &RankSim,
    ) -> Result<RankSimOutput<T>, Error> {
        let _ = (batch, config);
        Err(unsupported(self.name(), "RankSim"))
    }

    /// Rank-N-Contrast's loss and gradient ([`crate::dir::rnc`]). An engine
    /// without it returns [`Error::Unsupported`].
    fn rank_n_contrast(
        &self,
        batch: &RncBatch<'_, T>,
        config: &RankNContrast,
    ) -> Result<RncOutput<T>, Error> {
        let _ = (batch, config);
        Err(unsupported(self.name(), "Rank-N-Contrast"))
    }

    /// Balanced MSE's loss and its gradients with respect to the predictions
    /// and σ ([`crate::dir::balanced_mse`]). An engine without it returns
    /// [`Error::Unsupported`].
    fn balanced_mse(
        &self,
        batch: &BmseBatch<'_, T>,
        config: &BalancedMse<'_>,
    ) -> Result<BalancedMseOutput<T>, Error> {
        let _ = (batch, config);
        Err(unsupported(self.name(), "Balanced MSE"))
    }

    /// One statistics pass of FDS ([`crate::fds::moments`]): adds the
    /// pass's per-group values over `rows` into `out`. The core's serial loop
    /// unless the engine has a faster one.
    fn fds_pass(
        &self,
        rows: &crate::fds::moments::Rows<'_, T>,
        pass: crate::fds::moments::Pass<'_>,
        out: &mut [f64],
    ) -> Result<(), Error> {
        crate::fds::moments::accumulate(rows, pass, out)
    }
}

fn unsupported(engine: &str, loss: &'static str) -> Error {
    Error::Unsupported {
        what: loss,
        why: alloc::format!(
            "the {engine} engine does not compute it; the reference and fast engines do"
        ),
    }
}

/// One worker's two phases on one batch (see [`Engine::worker`]), with what
/// the engine prepared kept between them.
pub trait Worker<T: Scalar> {
    /// Phase 1: the outcomes of the rows in `rows`, against every row.
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>, Error>;

    /// Phase 2: given every row's outcome (`outcomes.len() == M`), the part
    /// of the loss and `∂L/∂features` of the rows in `rows`.
    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error>;
}

/// An engine for batches in f32 and in f64, for consumers whose batches
/// come in either (a framework op, the command line): hold it as
/// `Arc<dyn FloatEngine>` and use it as `&dyn Engine<f32>` or
/// `&dyn Engine<f64>`.
pub trait FloatEngine: Engine<f32> + Engine<f64> + Any + core::fmt::Debug {}

impl<E: Engine<f32> + Engine<f64> + Any + core::fmt::Debug + ?Sized> FloatEngine for E {}
