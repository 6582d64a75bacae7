//! Shared test support: tolerance budgets, fixture loading, random batches,
//! the bad-input table, and one checker that every engine runs through.

pub mod bad;
pub mod budget;
pub mod dir;
pub mod fixtures;
pub mod fuzzing;
pub mod gpu;
pub mod random;
pub mod shard_fuzz;

pub use budget::Tol;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
