//! Feature distribution smoothing (FDS; Yang et al., "Delving into Deep
//! Imbalanced Regression", ICML 2021), the feature-space half of LDS + FDS,
//! the baseline the ConR paper combines ConR with.
//!
//! FDS keeps, per label bucket, a running mean and variance of the features.
//! At each epoch's end it smooths them across neighbouring buckets with a
//! symmetric [`window`] (reflect padding), and during training it re-colours
//! each sample's features from its bucket's statistics to the smoothed ones:
//!
//! ```text
//! x ← (x − μ_b)·√clamp(σ̃²_b / σ²_b, 0.1, 10) + μ̃_b      (per dimension)
//! ```
//!
//! The statistics are constants for the gradient, so `∂out/∂x` is that
//! per-dimension scale.
//!
//! The pieces, each over caller-owned slices:
//! - [`Fds`]: the knobs (the reference's constructor arguments, plus the
//!   [`Behaviour`] and, for the clean one, the bin width);
//! - [`window`]: the smoothing window, summing to 1;
//! - [`groups`]: which rows update (and are smoothed by) which bucket;
//! - [`moments`]: the statistics pass, per group counts, sums and centred
//!   squares, in pieces that add up across chunks of rows and across workers;
//! - [`update`]: the running and last-epoch statistics ([`Statistics`]);
//! - [`calibrate`]: the smoothing of a batch and its gradient;
//! - with `alloc`, [`FdsState`]: all of it with buffers of its own, the way
//!   a layer holds it.
//!
//! # Two behaviours
//!
//! [`Behaviour::Official`] is the reference code's, exactly (its fixtures
//! hold it to 1e-12), quirks included: labels are compared as exact values
//! (each distinct value is a group, walked in ascending order); rows below
//! the start bucket join it only when a row with the start label itself is in
//! the batch (and rows above the last bucket join it only when its label is
//! there); and after the first last-epoch update the last-epoch statistics
//! *are* the running ones, so later updates move both (smoothing re-centres
//! with the current running statistics but re-colours with the smoothed ones
//! of the epoch before).
//!
//! [`Behaviour::Clean`] is for real-valued labels: a label `y` falls in bin
//! `⌊y / bin_width⌋`, the bins `bucket_start..bucket_num` are the buckets, and
//! labels outside them join the first or last bucket, always. The last-epoch
//! statistics are a copy of the running ones taken at the epoch's end, so a
//! batch is re-centred and re-coloured with statistics of the same epoch.
//!
//! Where the reference divides 0 by 0 (a zero variance whose smoothed one is
//! zero too) or ∞ by ∞, the ratio is taken as 1, so finite features give
//! finite outputs as long as their sums stay finite.
//!
//! ```
//! use conr_core::fds::{Fds, FdsState};
//! use conr_core::density::Kernel;
//!
//! let config = Fds { bucket_num: 10, bucket_start: 0, ks: 3, ..Fds::default() };
//! let mut fds = FdsState::<f64>::new(config, 2)?;
//! let features = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
//! let labels = [1.0, 1.0, 2.0];
//! fds.update_last_epoch_stats(0);
//! fds.update_running_stats(&features, &labels, 0)?;
//! fds.update_last_epoch_stats(1);
//! let smoothed = fds.smooth(&features, &labels, 1)?;
//! assert_eq!(smoothed.out.len(), 6);
//! assert!(smoothed.scale.iter().all(|s| (0.3..=3.2).contains(s)));
//! # Ok::<(), conr_core::Error>(())
//! ```

pub mod calibrate;
mod config;
pub mod groups;
pub mod moments;
#[cfg(feature = "alloc")]
mod state;
pub mod update;
pub mod window;

pub use config::{Behaviour, Fds, MAX_BUCKETS, MAX_KERNEL_SIZE};
#[cfg(feature = "alloc")]
pub use state::{BUFFER_NAMES, FdsState, Smoothed};
pub use update::Statistics;
