//! The FDS fixtures (`tests/fixtures/fds/`), and the one check every entry
//! point's replay of them goes through.

use std::path::{Path, PathBuf};

use conr_schema::{FdsCase, FdsStepReport};
use serde_json::Value;

/// f64: every buffer, output and gradient within 1e-12 relative.
pub const F64_TOL: f64 = 1e-12;
/// f32: within 1e-5 relative.
pub const F32_TOL: f64 = 1e-5;

/// The FDS fixtures' folder.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("fds")
}

/// Every FDS fixture, by file name, sorted.
pub fn cases() -> Vec<(String, FdsCase)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/fixtures/fds exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 6, "the six FDS fixtures");
    paths
        .into_iter()
        .map(|p| {
            let case = FdsCase::read(&p).unwrap_or_else(|e| panic!("{e}"));
            (p.file_name().unwrap().to_string_lossy().into_owned(), case)
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_f64().expect("a number")).collect(),
        other => vec![other.as_f64().expect("a number")],
    }
}

/// Element by element: `|got − want| <= tol · max(|want|, 1)` (the
/// buffers hold means and variances of order 1, and exact zeros).
pub fn close(what: &str, got: &[f64], want: &[f64], tol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let within = (g - w).abs() <= tol * w.abs().max(1.0);
        if !within {
            return Err(format!("{what}[{i}]: {g} vs {w} (tol {tol})"));
        }
    }
    Ok(())
}

/// Checks a replay (as `conr compute` reports it) against the case's
/// expected buffers, outputs and gradients, step by step.
pub fn check(case: &FdsCase, steps: &[FdsStepReport], tol: f64) -> Result<(), String> {
    if steps.len() != case.steps.len() {
        return Err(format!(
            "{} steps, expected {}",
            steps.len(),
            case.steps.len()
        ));
    }
    for (i, (got, want)) in steps.iter().zip(&case.steps).enumerate() {
        if got.epoch != want.epoch {
            return Err(format!("step {i}: epoch {} vs {}", got.epoch, want.epoch));
        }
        let after = want
            .after
            .as_ref()
            .ok_or(format!("step {i} has no `after`"))?;
        if got.after.len() != after.len() {
            return Err(format!(
                "step {i}: {} buffers, expected {}",
                got.after.len(),
                after.len()
            ));
        }
        for (name, values) in after {
            let mine = got
                .after
                .get(name)
                .ok_or(format!("step {i}: no buffer {name}"))?;
            close(
                &format!("step {i} {name}"),
                &floats(mine),
                &floats(values),
                tol,
            )?;
        }
        match (&got.smooth, &want.smooth) {
            (None, None) => {}
            (Some(mine), Some(call)) => {
                let out = call.out.as_ref().ok_or("a smooth step without `out`")?;
                let grad = call
                    .grad_features
                    .as_ref()
                    .ok_or("a smooth step without a gradient")?;
                close(&format!("step {i} out"), &mine.out, out, tol)?;
                close(
                    &format!("step {i} grad_features"),
                    &mine.grad_features,
                    grad,
                    tol,
                )?;
            }
            _ => return Err(format!("step {i}: smooth present on one side only")),
        }
    }
    Ok(())
}
