//! The library half of the `conr` command: the subcommands' logic and the
//! wine-quality demo, so they can be tested without spawning a process. The
//! input schema is `conr-schema`'s, and the engines come by name from
//! `conr-engines`.
//!
//! Two features, both on by default: `gpu` (the GPU engine, the record path,
//! profiles, `conr info`) and `demo` (`conr demo`, which trains with candle).
//! Without them, `conr` computes, weighs and benchmarks on the CPU engines.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod bench_dir;
pub mod companion;
pub mod compute;
#[cfg(feature = "demo")]
pub mod demo;
pub mod gpu;
pub mod memory;
