//! # conr-candle
//!
//! ConR in candle: [`conr_loss`] is a custom op whose forward pass runs a conr
//! engine and whose backward pass returns the core's analytic gradient, so
//! `loss.backward()` fills the encoder's gradient like any other loss.
//!
//! The op runs on the fast CPU engine by default. With the `wgpu` feature,
//! [`ConrEngine::Gpu`] runs it on a GPU through `conr-wgpu` (the tensors stay
//! candle CPU tensors; the batch crosses to the GPU and back).
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod op;

pub use conr_core::Config;
pub use op::{ConrEngine, conr_loss, conr_loss_with};
