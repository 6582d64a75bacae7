//! # conr-candle
//!
//! ConR in candle: [`conr_loss`] is a custom op whose forward pass runs a conr
//! engine and whose backward pass returns the core's analytic gradient, so
//! `loss.backward()` fills the encoder's gradient like any other loss.
//!
//! [`demo`] trains a small regressor on the red wine quality data with and
//! without ConR; `conr demo` runs it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;
mod op;

pub use conr_core::Config;
pub use op::{ConrEngine, conr_loss, conr_loss_with};
