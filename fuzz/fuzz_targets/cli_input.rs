//! `conr compute` / `conr weights` input parsing on arbitrary bytes: an error,
//! never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conr_tests::fuzzing::cli_input(data));
