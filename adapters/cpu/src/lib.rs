//! # conr-cpu
//!
//! CPU engines for ConR. [`Reference`] is plain, obviously correct code over
//! `conr-core`: the oracle every other backend is tested against. [`Fast`] is
//! the same math in tiles, multi-threaded, with GEMM micro-kernels. Every engine
//! returns the same [`Output`]: the loss, its gradient with respect to the
//! (un-normalised) features, the anchors, and the positive and negative counts.
//!
//! ```
//! use conr_cpu::{Batch, Config, Engine, Reference, Shape};
//!
//! // Two views of two samples: ages 20 and 60, both predicted as about 40.
//! let shape = Shape { rows: 4, dim: 3, label_dim: 1 };
//! let features = [1.0, 0.2, 0.0, 0.9, 0.3, 0.1, 0.8, 0.0, 0.6, 0.7, 0.1, 0.7];
//! let labels = [20.0, 20.0, 60.0, 60.0];
//! let preds = [40.0, 40.2, 40.5, 39.9];
//! let batch = Batch::new(shape, &features, &labels, &preds, None)?;
//! let out = Reference.compute(&batch, &Config::official_agedb())?;
//! assert!(out.loss > 0.0);
//! assert_eq!(out.anchors, [true; 4]);
//! assert_eq!((out.positives[0], out.negatives[0]), (1, 2));
//! assert_eq!(out.grad_features.len(), 12);
//! # Ok::<(), conr_cpu::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod density;
mod fast;
mod matmul;
mod reference;
mod sharded;

pub use conr_core::{self as core, Batch, Config, Error, Output, Part, Scalar, Shape};
pub use density::density_weights;
pub use fast::Fast;
pub use matmul::gram;
pub use reference::Reference;
pub use sharded::{compute_sharded, even_slices};

use conr_core::stats::RowOutcome;
use std::ops::Range;

/// A ConR engine: computes the loss and its gradient for one batch.
///
/// The computation is two phases over the rows a worker owns (see
/// [`conr_core::shard`]), run by a [`Worker`] that [`Engine::worker`]
/// prepares once per batch: [`Worker::forward`] gives its rows' outcomes,
/// and, once every row's outcome is known, [`Worker::backward`] gives their
/// part of the loss and their gradient. [`Engine::compute`] is the same two
/// phases with one worker owning every row; [`compute_sharded`] runs W
/// workers one after another in one process.
pub trait Engine {
    /// A short name for reports (`"reference"`, `"cpu"`, ...).
    fn name(&self) -> &'static str;

    /// A worker on `batch`: validates `config` against it (see
    /// [`Batch::check`]) and prepares what both phases read (the normalised
    /// features, and for [`Fast`] the band's sorted views), once.
    fn worker<'a, T: Scalar>(
        &'a self,
        batch: &'a Batch<'a, T>,
        config: &Config,
    ) -> Result<Box<dyn Worker<T> + 'a>, Error>;

    /// Phase 1 alone, on a worker of its own: the outcomes of `rows`.
    fn forward_rows<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
        rows: Range<usize>,
    ) -> Result<Vec<RowOutcome<T>>, Error> {
        self.worker(batch, config)?.forward(rows)
    }

    /// Phase 2 alone, on a worker of its own: given every row's outcome, the
    /// part of the loss and `∂L/∂features` of `rows`.
    fn backward_rows<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error> {
        self.worker(batch, config)?.backward(rows, outcomes)
    }

    /// The loss, `∂loss/∂features`, the anchors and the pair counts: both
    /// phases on one worker that owns every row.
    fn compute<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
    ) -> Result<Output<T>, Error> {
        let all = 0..batch.rows();
        let mut worker = self.worker(batch, config)?;
        let outcomes = worker.forward(all.clone())?;
        let part = worker.backward(all, &outcomes)?;
        Ok(Output::from_part(part, &outcomes))
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
