//! The data-parallel protocol's messages, the one input read from other
//! machines: no panic, nothing accepted that was not there, and `gather`
//! accepts only sets of messages that cover every row once. Built on
//! conr-core and conr-cpu only (`--no-default-features`).
#![no_main]

#[path = "../../tests/src/shard_fuzz.rs"]
mod shard_fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shard_fuzz::shard_message(data);
});
