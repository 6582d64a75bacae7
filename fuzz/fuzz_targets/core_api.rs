//! The core API on arbitrary shapes, configs and values: no panic, and finite
//! outputs whenever the batch and config are valid.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conr_tests::fuzzing::core_api(data));
