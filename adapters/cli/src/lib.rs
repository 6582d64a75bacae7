//! The library half of the `conr` command: the JSON input schema (shared with
//! the conformance tests), the subcommands' logic, and the wine-quality demo,
//! so they can be tested without spawning a process.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod demo;
pub mod input;
pub mod memory;
pub mod output;
