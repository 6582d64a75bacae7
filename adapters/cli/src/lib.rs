//! The library half of the `conr` command: the subcommands' logic and the
//! wine-quality demo, so they can be tested without spawning a process. The
//! input schema is `conr-schema`'s, and the engines come by name from
//! `conr-engines`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod bench_dir;
pub mod companion;
pub mod compute;
pub mod demo;
pub mod memory;
