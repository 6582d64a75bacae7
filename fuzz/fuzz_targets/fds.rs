//! FDS on arbitrary configs, shapes, labels and features: no panic, the
//! fast engine's passes equal to the core's, finite where the values are tame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    conr_tests::fuzzing::fds(data);
});
