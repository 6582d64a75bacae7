//! # conr-schema
//!
//! The `conr-fixture/1` JSON schema of ConR's inputs, the `dir-fixture/1`
//! schema of the losses ConR is combined with, the `fds-fixture/1` schema of
//! FDS's calls over a training run, and the objects
//! `conr compute` prints: what the command line, the data-parallel runner,
//! the conformance fixtures and the fuzz targets read and write. Unknown
//! keys are errors, so a typo in a config key never silently falls back to
//! a default. Every name in it comes from `conr-core`'s name tables
//! ([`conr_core::Named`]).
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// The crate README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod case;
mod config;
mod dir;
mod error;
mod fds;
mod metrics;
mod report;

pub use case::{LossCase, WeightsCase, read_json};
pub use config::{ConfigJson, DensityJson};
pub use dir::{
    BmseCase, BmseJson, DIR_SCHEMA, DirCase, DirReport, GmmJson, Input, LOSSES, RankSimCase,
    RankSimJson, RncCase, RncJson, convert,
};
pub use error::Error;
pub use fds::{
    FDS_SCHEMA, FdsCase, FdsReport, FdsStep, FdsStepReport, FdsSteps, SmoothCall, SmoothReport,
    UpdateCall, state_buffers,
};
pub use metrics::{LabelJson, MetricsCase, MetricsJson, MetricsReport};
pub use report::Report;
