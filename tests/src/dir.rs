//! The companion losses' fixtures (`tests/fixtures/dir/`), and the one
//! runner every engine goes through for them.

use std::path::{Path, PathBuf};

use conr_core::{Engine, Scalar};
use conr_schema::{DirCase, DirReport};
use serde_json::Value;

use crate::budget::Budget;

/// The companion fixtures' folder.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("dir")
}

/// Every companion fixture, by file name, sorted.
pub fn cases() -> Vec<(String, DirCase)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/fixtures/dir exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let case = DirCase::read(&p).unwrap_or_else(|e| panic!("{e}"));
            (p.file_name().unwrap().to_string_lossy().into_owned(), case)
        })
        .collect()
}

/// Runs `engine` on a companion case in precision `T`, as `conr compute`
/// reports it.
pub fn run<T: Scalar>(engine: &dyn Engine<T>, case: &DirCase) -> Result<DirReport, String> {
    case.run(engine).map_err(|e| e.to_string())
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// The share of a gradient's largest expected element added to every
/// element's absolute tolerance: softmax-weighted gradients hold elements
/// of 1e-66 beside elements of 1, whose tails no precision resolves.
pub const F64_FLOOR: f64 = 1e-12;
/// As [`F64_FLOOR`], for f32 engines (the fixture README's f32 bound is
/// 2e-3 of the largest element; this is 200 times tighter).
pub const F32_FLOOR: f64 = 1e-5;

/// `budget`'s gradient tolerance with `floor · max|want|` added to its absolute part.
pub fn floored(budget: &Budget, floor: f64, want: &[f64]) -> crate::Tol {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    crate::Tol {
        abs: budget.grad.abs + floor * scale,
        ..budget.grad
    }
}

/// Compares a report with a case's `expected` object: the loss and every
/// gradient within `budget`, element by element (with `floor`, see
/// [`F64_FLOOR`]), and RankSim's subset exactly where the case gives it.
pub fn compare(budget: &Budget, floor: f64, case: &DirCase, got: &DirReport) -> Result<(), String> {
    let want = case.expected().ok_or("the case has no `expected`")?;
    budget
        .loss
        .scalar("loss", got.loss, want["loss"].as_f64().ok_or("no loss")?)?;
    for (what, value) in [
        ("grad_features", &got.grad_features),
        ("grad_preds", &got.grad_preds),
    ] {
        if let Some(got) = value {
            let want = floats(&want[what]);
            floored(budget, floor, &want).vector(what, got, &want)?;
        }
    }
    if let Some(got) = got.grad_noise_sigma {
        let w = want["grad_noise_sigma"]
            .as_f64()
            .ok_or("no grad_noise_sigma")?;
        budget.grad.scalar("grad_noise_sigma", got, w)?;
    }
    if let (DirCase::RankSim(c), Some(rows)) = (case, &got.sampled_rows)
        && let Some(given) = &c.sampled_rows
        && given != rows
    {
        return Err(format!("subset {rows:?}, want {given:?}"));
    }
    Ok(())
}

/// Runs `engine` on every companion fixture in `T` and returns one line per
/// failure, after checking that every case ran.
pub fn check<T: Scalar>(engine: &dyn Engine<T>, budget: &Budget, floor: f64) -> Vec<String> {
    let cases = cases();
    assert_eq!(cases.len(), 26, "every companion fixture is here");
    cases
        .iter()
        .filter_map(|(name, case)| {
            let result = run(engine, case).and_then(|got| compare(budget, floor, case, &got));
            result
                .err()
                .map(|e| format!("{} on {name}: {e}", engine.name()))
        })
        .collect()
}
