//! RankSim, Rank-N-Contrast and Balanced MSE on arbitrary shapes, configs
//! and values: the engines refuse alike, or give finite results.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conr_tests::fuzzing::companions(data));
