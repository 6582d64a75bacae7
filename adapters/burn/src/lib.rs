//! # conr-burn
//!
//! ConR in [burn](https://burn.dev): [`conr_loss`] (or a configured
//! [`ConrLoss`]) returns the loss as a tensor whose `backward()` fills the
//! features' gradient with conr's analytic gradient.
//!
//! Two paths ([`Route`]):
//! - **Host**, on every backend burn offers (it uses burn's tensor API
//!   alone; tested on flex, ndarray and wgpu), in f32 and f64 (other float
//!   types are computed in f32): the batch is read into host memory,
//!   a conr engine (the fast CPU engine by default, any engine of the core's
//!   interface with [`ConrLoss::with_engine`]) computes the loss and the
//!   gradient, and both come back as tensors.
//! - **In place** (feature `wgpu`, on by default), for f32 features on
//!   burn's wgpu backend: conr-wgpu records its passes on burn's own
//!   device, queue and tensor buffers, with no copy through the host.
//!   Create a `SharedWgpu` once, build the model and the batches on
//!   `SharedWgpu::device`, and hand it to `ConrLoss::in_place_on`.
//!
//! The loss tensor is `loss + Σ (f − f̄) ⊙ g`, where `g` is conr's gradient
//! and `f̄` the features detached: its value is the loss exactly, and
//! burn's autodiff of it gives the features `g` times the upstream gradient.
//! No backend extension is needed for that, so every backend has it.
//!
//! FDS, the feature smoothing of LDS + FDS, is a layer, [`FdsLayer`], with
//! the reference module's steps and a differentiable `smooth`, on the host
//! path.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use conr_burn::{Config, conr_loss};
//!
//! let device = Device::flex().autodiff();
//! let features = Tensor::<2>::from_floats(
//!     [[1.0, 0.1], [0.9, 0.2], [0.1, 1.0], [0.2, 0.8]],
//!     &device,
//! )
//! .require_grad();
//! let labels = Tensor::<1>::from_floats([20.0, 20.5, 60.0, 60.5], &device);
//! let preds = Tensor::<1>::from_floats([40.0, 40.2, 40.4, 40.1], &device);
//! let loss = conr_loss(features.clone(), labels, preds, None, &Config::official_agedb())?;
//! let grads = loss.backward();
//! let grad = features.grad(&grads).expect("a gradient");
//! assert_eq!(grad.dims(), [4, 2]);
//! # Ok::<(), conr_burn::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod companions;
mod error;
mod fds;
mod host;
#[cfg(feature = "wgpu")]
mod in_place;
mod loss;

pub use companions::{balanced_mse_loss, rank_sim_loss, rnc_loss};
pub use conr_core::{Config, FloatEngine};
pub use error::Error;
pub use fds::FdsLayer;
#[cfg(feature = "wgpu")]
pub use in_place::SharedWgpu;
pub use loss::{ConrLoss, Route, conr_loss, conr_loss_with};
