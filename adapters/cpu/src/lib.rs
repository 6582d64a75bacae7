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

pub use conr_core::{self as core, Batch, Config, Error, Output, Scalar, Shape};
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
/// [`conr_core::shard`]): [`Engine::forward_rows`] gives their outcomes,
/// and, once every row's outcome is known, [`Engine::backward_rows`] gives
/// their part of the loss and their gradient. [`Engine::compute`] is the same
/// two phases with one worker owning every row; [`compute_sharded`] runs W
/// workers one after another in one process.
pub trait Engine {
    /// A short name for reports (`"reference"`, `"cpu"`, ...).
    fn name(&self) -> &'static str;

    /// Phase 1: the outcomes of the rows in `rows`, against every row.
    ///
    /// Validates `config` against `batch` first; see [`Batch::check`].
    fn forward_rows<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
        rows: Range<usize>,
    ) -> Result<Vec<RowOutcome<T>>, Error>;

    /// Phase 2: given every row's outcome (`outcomes.len() == M`), the part
    /// of the loss and `∂L/∂features` of the rows in `rows`.
    fn backward_rows<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error>;

    /// The loss, `∂loss/∂features`, the anchors and the pair counts: both
    /// phases with one worker.
    fn compute<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
    ) -> Result<Output<T>, Error> {
        let all = 0..batch.rows();
        let outcomes = self.forward_rows(batch, config, all.clone())?;
        let part = self.backward_rows(batch, config, all, &outcomes)?;
        Ok(output(part, &outcomes))
    }
}

/// Phase 2's result of every row, with every row's outcome, as an [`Output`].
pub(crate) fn output<T: Scalar>(part: Part<T>, outcomes: &[RowOutcome<T>]) -> Output<T> {
    Output {
        loss: part.loss,
        grad_features: part.grad_features,
        anchors: outcomes.iter().map(|o| o.anchor).collect(),
        positives: outcomes.iter().map(|o| o.positives).collect(),
        negatives: outcomes.iter().map(|o| o.negatives).collect(),
    }
}

/// One worker's result of phase 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Part<T> {
    /// Its part of the loss: `factor · Σ_{j in its rows} l_j`. The loss is the
    /// sum of every worker's part.
    pub loss: T,
    /// `∂L/∂features` of its rows, row-major (rows × D).
    pub grad_features: Vec<T>,
}

/// The checks of both phases: the config against the batch, a worker's
/// rows inside it, and (phase 2) one outcome per row.
pub(crate) fn check_phase<T: Scalar>(
    batch: &Batch<'_, T>,
    config: &Config,
    rows: &Range<usize>,
    outcomes: Option<&[RowOutcome<T>]>,
) -> Result<conr_core::Params<T>, Error> {
    let params = batch.check(config)?;
    if rows.start > rows.end || rows.end > batch.rows() {
        return Err(Error::InvalidConfig {
            field: "rows",
            why: "a worker's rows must be a run inside the batch",
        });
    }
    if let Some(outcomes) = outcomes
        && outcomes.len() != batch.rows()
    {
        return Err(Error::ShapeMismatch {
            what: "outcomes",
            expected: batch.rows(),
            got: outcomes.len(),
        });
    }
    Ok(params)
}
