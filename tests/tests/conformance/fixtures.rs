//! Every shared fixture through the library: the reference engine in f64 and
//! f32, and the density weights.

use conr_cpu::{Fast, Reference};
use conr_tests::budget::{F32_FIXTURE, F64_FIXTURE, Tol};
use conr_tests::fixtures::{check_engine, loss_cases, weight_cases};

#[test]
fn there_are_fixtures() {
    assert_eq!(loss_cases().len(), 18);
    assert_eq!(weight_cases().len(), 4);
}

#[test]
fn reference_engine_matches_every_loss_fixture() {
    let failures = check_engine(&Reference, &F64_FIXTURE, &F32_FIXTURE);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fast_engine_matches_every_loss_fixture() {
    for threads in [1, 2, 3] {
        let fast = Fast::with_threads(threads).unwrap();
        let failures = check_engine(&fast, &F64_FIXTURE, &F32_FIXTURE);
        assert!(
            failures.is_empty(),
            "{threads} threads:\n{}",
            failures.join("\n")
        );
    }
}

#[test]
fn density_weights_match_every_fixture() {
    let tol = Tol {
        abs: 0.0,
        rel: 1e-12,
    };
    for (name, case) in weight_cases() {
        let config = case.config.to_config().unwrap();
        let got = conr_cpu::density_weights(&config, case.labels().unwrap()).unwrap();
        let want: Vec<f64> = case.expected.as_ref().unwrap()["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        tol.vector(&name, &got, &want).unwrap();
        let mean = got.iter().sum::<f64>() / got.len() as f64;
        approx::assert_abs_diff_eq!(mean, 1.0, epsilon = 1e-12);
    }
}
