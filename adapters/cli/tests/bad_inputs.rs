//! The bad-input matrix through the command line: every case of the core's
//! table (`conr_tests::bad`) that JSON can write, each refused by `conr
//! compute` with one line that holds the core's own message; the inputs only
//! JSON can get wrong; and extreme but valid inputs, which give finite
//! results on every CPU engine and through the command line.

use std::process::{Command, Output as ProcessOutput};

use conr_core::{Config, Engine, Inputs, LabelMetric, Shape};
use conr_cpu::{Fast, Reference};
use conr_schema::ConfigJson;
use conr_tests::bad::{BadCase, cases, valid};
use serde_json::{Value, json};

/// The case as a `conr compute` input, where JSON can write its numbers.
fn case_json(case: &BadCase) -> Option<Value> {
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
    let numbers = [&case.features, &case.labels, &case.preds];
    let config = &case.config;
    let config_finite = [config.threshold, config.temperature, config.pushing.scale]
        .iter()
        .all(|x| x.is_finite());
    if !numbers.iter().all(|v| finite(v))
        || !case.eta.as_deref().is_none_or(finite)
        || !config_finite
    {
        return None;
    }
    let mut value = json!({
        "n": case.shape.rows, "d": case.shape.dim, "label_dim": case.shape.label_dim,
        "config": Value::Object(ConfigJson::of(config).0),
        "features": case.features, "labels": case.labels, "preds": case.preds,
    });
    if let Some(eta) = &case.eta {
        value["weights"] = json!(eta);
    }
    Some(value)
}

fn cli(text: &str) -> ProcessOutput {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("case.json");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_conr"))
        .args(["compute", "--input", path.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn cli_error(text: &str, message: &str) {
    let out = cli(text);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(message), "{err:?} lacks {message:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

fn cli_finite(case: &Value) -> f64 {
    let out = cli(&case.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!(loss.is_finite());
    assert!(
        v["grad_features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g.as_f64().is_some_and(f64::is_finite))
    );
    loss
}

#[test]
fn every_case_json_can_write_is_refused_with_the_cores_message() {
    let mut written = 0;
    for case in cases() {
        if let Some(value) = case_json(&case) {
            cli_error(&value.to_string(), &case.error.to_string());
            written += 1;
        }
    }
    // The NaN and infinite values are the ones JSON cannot write.
    assert!(written >= 12, "only {written} cases were written as JSON");
}

#[test]
fn what_only_json_gets_wrong() {
    let base = case_json(&valid()).unwrap();
    // JSON has no NaN or infinity: the parser refuses them.
    let text = base.to_string().replace("[1.0,0.2,", "[NaN,0.2,");
    cli_error(&text, "expected value");
    let text = base.to_string().replace("[1.0,0.2,", "[1e999,0.2,");
    cli_error(&text, "number out of range");
    let mut typo = base.clone();
    typo["config"]["temprature"] = json!(0.1);
    cli_error(&typo.to_string(), "unknown field `temprature`");
    let mut extra = base.clone();
    extra["extra"] = json!(1);
    cli_error(&extra.to_string(), "unknown field `extra`");
    let mut string = base.clone();
    string["config"]["threshold"] = json!("NaN");
    cli_error(
        &string.to_string(),
        "config.threshold: takes a number (found \"NaN\")",
    );
    let mut metric = base.clone();
    metric["config"]["label_metric"] = json!("cosine");
    cli_error(
        &metric.to_string(),
        "config.label_metric: unknown value \"cosine\" (expected one of l1, l2, linf, angular)",
    );
    let text = base.to_string();
    cli_error(&text[..text.len() - 20], "EOF while parsing");
}

/// Extreme but valid inputs: a finite loss and gradient on every CPU
/// engine, in f64 and f32, and through the command line.
fn finite_everywhere(case: &BadCase) -> f64 {
    let [f, y, p, w] = case.converted::<f64>();
    let inputs = Inputs {
        features: &f,
        labels: &y,
        preds: &p,
        eta: case.eta.as_ref().map(|_| w.as_slice()),
    };
    let batch = conr_core::Batch::new(case.shape, inputs).unwrap();
    let small = conr_core::OwnedBatch::<f32>::converted(&batch).unwrap();
    let engines: [&dyn conr_core::FloatEngine; 2] = [&Reference, &Fast::new()];
    for engine in engines {
        let wide = Engine::<f64>::compute(engine, &batch, &case.config).unwrap();
        let narrow = Engine::<f32>::compute(engine, &small.batch(), &case.config).unwrap();
        assert!(wide.loss.is_finite() && wide.grad_features.iter().all(|g| g.is_finite()));
        assert!(narrow.loss.is_finite() && narrow.grad_features.iter().all(|g| g.is_finite()));
    }
    cli_finite(&case_json(case).expect("JSON writes it"))
}

#[test]
fn extreme_values_stay_finite() {
    let one_row = BadCase {
        shape: Shape {
            rows: 1,
            ..valid().shape
        },
        features: vec![1.0, 2.0, 3.0],
        labels: vec![5.0],
        preds: vec![5.0],
        eta: Some(vec![1.0]),
        ..valid()
    };
    assert_eq!(finite_everywhere(&one_row), 0.0);
    let huge_labels = BadCase {
        labels: vec![1e30, -1e30, 1e30, 3.0],
        ..valid()
    };
    assert!(finite_everywhere(&huge_labels) >= 0.0);
    let huge_preds = BadCase {
        preds: vec![1e30, 1e30, -1e30, 0.0],
        ..valid()
    };
    finite_everywhere(&huge_preds);
    let zero_rows = BadCase {
        features: vec![0.0; 12],
        ..valid()
    };
    finite_everywhere(&zero_rows);
    for temperature in [1e-6, 1e6] {
        let t = BadCase {
            config: Config {
                temperature,
                ..valid().config
            },
            ..valid()
        };
        finite_everywhere(&t);
    }
    let angular = BadCase {
        shape: Shape {
            label_dim: 2,
            ..valid().shape
        },
        labels: vec![1.0, 0.0, -1.0, 0.0, 0.0, 1e-30, 3.0, 4.0],
        preds: vec![1.0, 1.0, 1.0, -1.0, 2.0, 2.0, 0.5, 0.1],
        config: Config {
            label_metric: LabelMetric::Angular,
            ..valid().config
        },
        ..valid()
    };
    finite_everywhere(&angular);
}
