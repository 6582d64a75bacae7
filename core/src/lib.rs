//! # conr-core
//!
//! The numeric core of ConR, the contrastive regularizer for deep imbalanced
//! regression (Keramati, Meng and Evans, ICLR 2024).
//!
//! ConR adds a term to a regression loss. It picks *anchors*, samples whose
//! prediction is close to a sample with a far-away label, pulls samples with
//! similar labels together, and pushes each anchor's confusing negatives away,
//! weighted by label distance and by how rare the anchor's label is.
//!
//! This crate is `#![no_std]`, never allocates in its math, and never panics on
//! bad input: every entry point validates and returns [`Error`]. It holds the
//! math as small pure functions over slices, generic over a [`Scalar`] (`f32`
//! or `f64`):
//!
//! - [`Config`] with the presets of the official code ([`Config::official_agedb`],
//!   [`Config::official_nyud2`]) and of the paper ([`Config::paper`], the default),
//!   and the name of every value ([`Named`]);
//! - [`Batch`], a validated view of [`Inputs`] (features, labels, predictions
//!   and eta, each by name);
//! - [`rules`]: every rule a batch's values obey, in the order they are checked;
//! - [`metric`]: the label distances; [`pairs`]: positives, negatives and pushing weights;
//! - [`band`]: the band plan, which tiles of pairs can hold a positive or a negative;
//! - [`stats`]: the streaming per-row statistics (log-sum-exp) and gradient coefficients;
//! - [`normalize`]: L2 normalisation and its backward pass;
//! - [`math`]: exp, ln, sqrt and atan2, from the `libm` crate in every build;
//! - [`shard`]: one global batch across workers, exactly (the messages they exchange);
//! - [`density`]: label-density weights (inverse, square-root inverse, LDS smoothing);
//! - with `alloc`, [`evaluation`]: the DIR evaluation (MSE, MAE and geometric
//!   mean over all samples and the many-, medium- and few-shot regions);
//! - [`fds`]: feature distribution smoothing (FDS), the statistics LDS + FDS
//!   keeps per label bucket, and the calibration it smooths features with;
//! - [`dir`]: the losses ConR is combined with, RankSim, Rank-N-Contrast and
//!   Balanced MSE, each with its config, batch and row math;
//! - with the `alloc` feature (on by default): `Output`, what every engine
//!   returns; `OwnedBatch`; and `engine`, the one engine interface
//!   (`Engine<T>`, `Worker<T>`, `FloatEngine`) that every engine implements
//!   and every consumer holds, with the data-parallel protocol run over any
//!   engine (`shard::compute_sharded`).
//!
//! # Features
//!
//! - `alloc` (default): the types that own vectors, and the engine
//!   interface. Without it the crate needs neither `std` nor an allocator.
//!
//! Engines (the CPU reference, the fast CPU engine, the GPU kernels) compose these
//! pieces in the same order; see `conr-cpu` for a complete, runnable engine.
//!
//! ```
//! use conr_core::{Batch, Config, Inputs, Shape, pairs::Pair};
//!
//! let config = Config::official_agedb();
//! let shape = Shape { rows: 2, dim: 2, label_dim: 1 };
//! let inputs = Inputs { features: &[1.0, 0.0, 0.0, 1.0], labels: &[20.0, 60.0], preds: &[30.0, 30.5], eta: None };
//! let batch = Batch::<f64>::new(shape, inputs)?;
//! let params = batch.check(&config)?;
//! // Row 0 sees row 1 as a negative: labels 40 apart, predictions 0.5 apart.
//! let pair = Pair::classify(&params, batch.row(0), batch.row(1), batch.eta(0).ln());
//! assert!(pair.is_negative());
//! # Ok::<(), conr_core::Error>(())
//! ```
//!
//! Where the official code divides by zero (a row with no positive), this crate
//! gives that row a loss of exactly 0 and a zero gradient.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod band;
mod batch;
mod config;
pub mod density;
pub mod dir;
#[cfg(feature = "alloc")]
pub mod engine;
mod error;
#[cfg(feature = "alloc")]
pub mod evaluation;
pub mod fds;
pub mod knob;
pub mod math;
pub mod metric;
pub mod normalize;
#[cfg(feature = "alloc")]
mod output;
#[cfg(feature = "alloc")]
mod owned;
pub mod pairs;
pub mod rules;
pub mod shard;
pub mod stats;

pub use batch::{Batch, Inputs, MAX_ETA, Shape};
pub use config::{
    Aggregation, Config, LabelMetric, Named, Params, Preset, Pushing, PushingKind, Reduction,
};
#[cfg(feature = "alloc")]
pub use engine::{Engine, FloatEngine, PlanReport, Precision, Worker};
pub use error::Error;
#[cfg(feature = "alloc")]
pub use output::{Output, Part};
#[cfg(feature = "alloc")]
pub use owned::OwnedBatch;

/// The floating-point types the core computes in: `f32` and `f64`.
///
/// Written once, as a bound with a blanket impl, so every function says `T: Scalar`.
/// Its exp, ln, sqrt and atan2 are [`math`]'s, from `libm` in every build.
pub trait Scalar:
    num_traits::Float + math::Libm + core::fmt::Debug + Send + Sync + 'static
{
}

impl<T: num_traits::Float + math::Libm + core::fmt::Debug + Send + Sync + 'static> Scalar for T {}

/// Converts an `f64` constant into `T`. Every finite `f64` converts into `f32`
/// and `f64` (possibly rounding to infinity, which validation rules out for config values).
#[inline]
pub(crate) fn cast<T: Scalar>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::nan)
}
