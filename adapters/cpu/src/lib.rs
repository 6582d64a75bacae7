//! # conr-cpu
//!
//! CPU engines for ConR. [`Reference`] is plain, obviously correct code over
//! `conr-core`: the oracle every other backend is tested against. [`Fast`] is
//! the same math in tiles, multi-threaded, with GEMM micro-kernels. Both
//! implement the core's one engine interface, [`Engine`], for `f32` and
//! `f64`, and return the same [`Output`]: the loss, its gradient with respect
//! to the (un-normalised) features, the anchors, and the positive and
//! negative counts.
//!
//! ```
//! use conr_cpu::{Batch, Config, Engine, Inputs, Reference, Shape};
//!
//! // Two views of two samples: ages 20 and 60, both predicted as about 40.
//! let shape = Shape { rows: 4, dim: 3, label_dim: 1 };
//! let features = [1.0, 0.2, 0.0, 0.9, 0.3, 0.1, 0.8, 0.0, 0.6, 0.7, 0.1, 0.7];
//! let inputs = Inputs {
//!     features: &features,
//!     labels: &[20.0, 20.0, 60.0, 60.0],
//!     preds: &[40.0, 40.2, 40.5, 39.9],
//!     eta: None,
//! };
//! let batch = Batch::new(shape, inputs)?;
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
mod dir;
mod fast;
mod fds;
mod matmul;
mod reference;
mod shared_fds;
mod simd;

pub use conr_core::{
    self as core, Batch, Config, Engine, Error, FloatEngine, Inputs, Output, Part, Scalar, Shape,
    Worker,
};
pub use density::density_weights;
pub use fast::Fast;
pub use matmul::{gemm_kernels, gram};
pub use reference::Reference;
pub use shared_fds::SharedFds;
