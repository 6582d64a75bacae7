//! # conr-candle
//!
//! ConR in candle: [`conr_loss`] is a custom op whose forward pass runs a conr
//! engine and whose backward pass returns the core's analytic gradient, so
//! `loss.backward()` fills the encoder's gradient like any other loss.
//!
//! The op runs on the fast CPU engine by default, and on any engine of the
//! core's interface with [`conr_loss_with`]: a shared `Arc<dyn FloatEngine>`
//! (`conr_wgpu::GpuConr` runs it on a GPU; the tensors stay candle CPU
//! tensors, and the batch crosses to the GPU and back).
//!
//! The losses ConR is combined with are ops too: [`rank_sim_loss`] and
//! [`rnc_loss`] (Rank-N-Contrast) differentiable in the features, and
//! [`balanced_mse_loss`] in the predictions and the noise scale σ.
//!
//! FDS, the feature smoothing of LDS + FDS, is a layer, [`FdsLayer`], with
//! the reference module's steps and a differentiable `smooth`.
//!
//! A batch conr refuses is a `candle_core::Error` that holds the core's
//! error: [`core_error`] gives it back, to match on.
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod companions;
mod error;
mod fds;
mod host_op;
mod op;

pub use companions::{balanced_mse_loss, rank_sim_loss, rnc_loss};
pub use conr_core::{Config, FloatEngine};
pub use error::{CoreError, core_error};
pub use fds::FdsLayer;
pub use op::{conr_loss, conr_loss_with};
