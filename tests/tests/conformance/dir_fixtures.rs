//! Every companion-loss fixture (RankSim, Rank-N-Contrast, Balanced MSE)
//! through the reference and fast engines, in f64 and f32.

use conr_cpu::{Fast, Reference};
use conr_tests::budget::{F32_FIXTURE, F64_FIXTURE};
use conr_tests::dir::{F32_FLOOR, F64_FLOOR, check};

fn pass(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reference_matches_every_fixture_in_f64() {
    pass(check::<f64>(&Reference, &F64_FIXTURE, F64_FLOOR));
}

#[test]
fn fast_matches_every_fixture_in_f64() {
    pass(check::<f64>(
        &Fast::with_threads(2).unwrap(),
        &F64_FIXTURE,
        F64_FLOOR,
    ));
}

#[test]
fn reference_matches_every_fixture_in_f32() {
    pass(check::<f32>(&Reference, &F32_FIXTURE, F32_FLOOR));
}

#[test]
fn fast_matches_every_fixture_in_f32() {
    pass(check::<f32>(
        &Fast::with_threads(2).unwrap(),
        &F32_FIXTURE,
        F32_FLOOR,
    ));
}
