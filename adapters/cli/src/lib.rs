//! The library half of the `conr` command: the JSON input schema (shared with
//! the conformance tests) and the subcommands' logic, so they can be tested
//! without spawning a process.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod input;
pub mod output;
