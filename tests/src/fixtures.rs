//! The conformance fixtures under `tests/fixtures/`, and the one checker that
//! every engine runs through.

use std::path::{Path, PathBuf};

use conr_core::{Engine, FloatEngine, Output, Scalar};
pub use conr_schema::{LossCase, WeightsCase};
use serde_json::Value;

use crate::budget::Budget;

/// The fixture folder inside this crate.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every fixture file whose name starts with one of `prefixes`, sorted.
pub fn files(prefixes: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/fixtures exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && prefixes.iter().any(|pre| name.starts_with(pre))
        })
        .collect();
    out.sort();
    out
}

/// The loss fixtures (official and general).
pub fn loss_cases() -> Vec<(String, LossCase)> {
    files(&["official-", "general-"])
        .into_iter()
        .map(|p| {
            let case = conr_schema::read_json(&p).unwrap_or_else(|e| panic!("{e}"));
            (p.file_name().unwrap().to_string_lossy().into_owned(), case)
        })
        .collect()
}

/// The density-weight fixtures.
pub fn weight_cases() -> Vec<(String, WeightsCase)> {
    files(&["lds-weights-"])
        .into_iter()
        .map(|p| {
            let case = conr_schema::read_json(&p).unwrap_or_else(|e| panic!("{e}"));
            (p.file_name().unwrap().to_string_lossy().into_owned(), case)
        })
        .collect()
}

/// The `expected` object of a loss fixture.
pub struct Expected {
    /// The loss.
    pub loss: f64,
    /// ∂loss/∂features.
    pub grad: Vec<f64>,
    /// Anchors per row.
    pub anchors: Vec<bool>,
    /// |P_j|.
    pub positives: Vec<u32>,
    /// |Q_j|.
    pub negatives: Vec<u32>,
}

impl Expected {
    /// Reads the `expected` field of a case.
    pub fn of(case: &LossCase) -> Expected {
        let e = case.expected.as_ref().expect("fixture has `expected`");
        let floats = |v: &Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let counts = |v: &Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        Expected {
            loss: e["loss"].as_f64().unwrap(),
            grad: floats(&e["grad_features"]),
            anchors: e["anchors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_bool().unwrap())
                .collect(),
            positives: counts(&e["positives"]),
            negatives: counts(&e["negatives"]),
        }
    }
}

/// Widens an output to f64.
pub fn widen<T: Scalar>(out: Output<T>) -> Output<f64> {
    out.cast()
}

/// Runs `engine` on a fixture in precision `T`, widened to f64.
pub fn run<T: Scalar>(engine: &dyn Engine<T>, case: &LossCase) -> Result<Output<f64>, String> {
    let config = case.config.to_config().map_err(|e| e.to_string())?;
    let batch = case.converted::<T>().map_err(|e| e.to_string())?;
    engine
        .compute(&batch.batch(), &config)
        .map(widen)
        .map_err(|e| e.to_string())
}

/// Compares an output with an expected result: the loss and gradient within
/// `budget`, the anchors and counts exactly.
pub fn compare(budget: &Budget, got: &Output<f64>, want: &Expected) -> Result<(), String> {
    budget.loss.scalar("loss", got.loss, want.loss)?;
    budget
        .grad
        .vector("grad_features", &got.grad_features, &want.grad)?;
    if got.anchors != want.anchors {
        return Err(format!(
            "anchors differ: {:?} vs {:?}",
            got.anchors, want.anchors
        ));
    }
    if got.positives != want.positives || got.negatives != want.negatives {
        return Err("positive or negative counts differ".into());
    }
    Ok(())
}

/// The shared checker: runs `run` on every loss fixture and compares it with
/// the expected results within `budget`. Returns one line per failure.
pub fn check_runner(
    name: &str,
    budget: &Budget,
    run: impl Fn(&LossCase) -> Result<Output<f64>, String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (file, case) in loss_cases() {
        let want = Expected::of(&case);
        if let Err(e) = run(&case).and_then(|got| compare(budget, &got, &want)) {
            failures.push(format!("{name} {file}: {e}"));
        }
    }
    failures
}

/// [`check_runner`] for an engine, in f64 and in f32.
pub fn check_engine(
    engine: &dyn FloatEngine,
    f64_budget: &Budget,
    f32_budget: &Budget,
) -> Vec<String> {
    let name = Engine::<f64>::name(engine);
    let mut failures = check_runner(&format!("{name} f64"), f64_budget, |c| {
        run::<f64>(engine, c)
    });
    failures.extend(check_runner(&format!("{name} f32"), f32_budget, |c| {
        run::<f32>(engine, c)
    }));
    failures
}

/// A fixture's batch in f64 with its config, owned.
pub fn owned_batch(case: &LossCase) -> crate::random::RandomBatch {
    crate::random::RandomBatch {
        shape: case.shape(),
        features: case.features.clone(),
        labels: case.labels.clone(),
        preds: case.preds.clone(),
        eta: case.weights.clone(),
        config: case.config.to_config().expect("a valid fixture config"),
    }
}

/// A fixture's batch in f32, owned.
pub fn f32_batch(case: &LossCase) -> conr_core::OwnedBatch<f32> {
    case.converted().expect("a valid fixture")
}
