//! The bad-input matrix: one case per row, through the library (CPU engines in
//! f64 and f32, and the GPU when there is one) and through the CLI, each with
//! its exact error or its finite result.

use std::process::{Command, Output as ProcessOutput};

use conr_core::{Batch, Config, Error, LabelMetric, Shape};
use conr_cpu::{Engine, Fast, Output, Reference};
use serde_json::{Value, json};

const M: usize = 4;
const D: usize = 3;

/// A valid base batch: M = 4 rows of D = 3 features, scalar labels.
fn base() -> Value {
    json!({
        "n": M, "d": D, "label_dim": 1,
        "config": {"preset": "official_agedb"},
        "features": [1.0, 0.2, 0.0, 0.9, 0.3, 0.1, 0.1, 1.0, 0.2, 0.2, 0.8, 0.1],
        "labels": [20.0, 20.5, 60.0, 60.5],
        "preds": [40.0, 40.2, 40.4, 40.1],
        "weights": [1.0, 0.5, 2.0, 1.5]
    })
}

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
        .unwrap_or_default()
}

/// Runs the library on a case with the values of `edit` (which JSON cannot
/// always express: NaN, infinity), in f64 and f32, on both CPU engines.
fn library(
    case: &Value,
    edit: impl Fn(&mut Vec<f64>, &mut Vec<f64>, &mut Vec<f64>, &mut Vec<f64>),
    config: Config,
) -> [Result<Output<f64>, Error>; 4] {
    let shape = Shape {
        rows: case["n"].as_u64().unwrap() as usize,
        dim: case["d"].as_u64().unwrap() as usize,
        label_dim: case["label_dim"].as_u64().unwrap_or(1) as usize,
    };
    let (mut f, mut y, mut p, mut w) = (
        floats(case, "features"),
        floats(case, "labels"),
        floats(case, "preds"),
        floats(case, "weights"),
    );
    edit(&mut f, &mut y, &mut p, &mut w);
    let widen = |o: Output<f32>| o.cast::<f64>();
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (f32s, y32, p32, w32) = (narrow(&f), narrow(&y), narrow(&p), narrow(&w));
    let b64 = Batch::new(shape, &f, &y, &p, Some(&w));
    let b32 = Batch::new(shape, &f32s, &y32, &p32, Some(&w32));
    [
        b64.and_then(|b| Reference.compute(&b, &config)),
        b64.and_then(|b| Fast::new().compute(&b, &config)),
        b32.and_then(|b| Reference.compute(&b, &config)).map(widen),
        b32.and_then(|b| Fast::new().compute(&b, &config))
            .map(widen),
    ]
}

fn assert_error(results: [Result<Output<f64>, Error>; 4], expected: Error) {
    for r in results {
        assert_eq!(r.err(), Some(expected));
    }
}

fn assert_finite(results: [Result<Output<f64>, Error>; 4]) -> f64 {
    let mut loss = 0.0;
    for r in results {
        let out = r.expect("a valid batch");
        assert!(out.loss.is_finite(), "loss {}", out.loss);
        assert!(out.grad_features.iter().all(|g| g.is_finite()));
        loss = out.loss;
    }
    loss
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

fn with(key: &str, value: Value) -> Value {
    let mut c = base();
    c[key] = value;
    c
}

fn with_config(key: &str, value: Value) -> Value {
    let mut c = base();
    c["config"][key] = value;
    c
}

fn agedb() -> Config {
    Config::official_agedb()
}

#[test]
fn mismatched_lengths() {
    let expected = Error::ShapeMismatch {
        what: "labels",
        expected: M,
        got: M - 1,
    };
    assert_error(
        library(
            &base(),
            |_, y, _, _| {
                y.pop();
            },
            agedb(),
        ),
        expected,
    );
    cli_error(
        &with("labels", json!([20.0, 20.5, 60.0])).to_string(),
        "labels has length 3, but the shape needs 4",
    );
}

#[test]
fn empty_batch() {
    let empty = json!({"n": 0, "d": 3, "features": [], "labels": [], "preds": []});
    assert_error(library(&empty, |_, _, _, _| {}, agedb()), Error::EmptyBatch);
    cli_error(&empty.to_string(), "the batch is empty");
}

#[test]
fn one_row_gives_zero() {
    let one = json!({"n": 1, "d": 3, "features": [1.0, 2.0, 3.0], "labels": [5.0], "preds": [5.0], "weights": [1.0]});
    assert_eq!(assert_finite(library(&one, |_, _, _, _| {}, agedb())), 0.0);
    assert_eq!(cli_finite(&one), 0.0);
}

#[test]
fn zero_width_features() {
    let flat = json!({"n": 2, "d": 0, "features": [], "labels": [1.0, 2.0], "preds": [1.0, 2.0], "weights": [1.0, 1.0]});
    assert_error(
        library(&flat, |_, _, _, _| {}, agedb()),
        Error::ZeroWidth { what: "features" },
    );
    cli_error(&flat.to_string(), "features have width 0");
}

#[test]
fn nan_and_infinite_values() {
    let nan_feature = Error::NonFinite {
        what: "features",
        row: 1,
    };
    assert_error(
        library(&base(), |f, _, _, _| f[4] = f64::NAN, agedb()),
        nan_feature,
    );
    let inf_label = Error::NonFinite {
        what: "labels",
        row: 2,
    };
    assert_error(
        library(&base(), |_, y, _, _| y[2] = f64::INFINITY, agedb()),
        inf_label,
    );
    let nan_pred = Error::NonFinite {
        what: "preds",
        row: 0,
    };
    assert_error(
        library(&base(), |_, _, p, _| p[0] = f64::NAN, agedb()),
        nan_pred,
    );
    let inf_weight = Error::NonFinite {
        what: "weights",
        row: 3,
    };
    assert_error(
        library(&base(), |_, _, _, w| w[3] = f64::NEG_INFINITY, agedb()),
        inf_weight,
    );
    // JSON has no NaN or infinity: the parser refuses them.
    let text = base().to_string().replace("[1.0,0.2,", "[NaN,0.2,");
    cli_error(&text, "expected value");
    let text = base().to_string().replace("[1.0,0.2,", "[1e999,0.2,");
    cli_error(&text, "number out of range");
}

#[test]
fn non_positive_and_huge_weights() {
    assert_error(
        library(&base(), |_, _, _, w| w[1] = 0.0, agedb()),
        Error::NonPositiveWeight { row: 1 },
    );
    assert_error(
        library(&base(), |_, _, _, w| w[2] = -1.0, agedb()),
        Error::NonPositiveWeight { row: 2 },
    );
    assert_error(
        library(&base(), |_, _, _, w| w[0] = 1e7, agedb()),
        Error::WeightTooLarge { row: 0 },
    );
    cli_error(
        &with("weights", json!([1.0, -0.5, 1.0, 1.0])).to_string(),
        "weights row 1 is zero or negative",
    );
    cli_error(
        &with("weights", json!([1.0, 1.0, 1e9, 1.0])).to_string(),
        "weights row 2 exceeds 1e6",
    );
}

#[test]
fn temperatures() {
    let bad = Error::InvalidConfig {
        field: "temperature",
        why: "must be finite and > 0",
    };
    for t in [0.0, -0.07] {
        assert_error(
            library(
                &base(),
                |_, _, _, _| {},
                Config {
                    temperature: t,
                    ..agedb()
                },
            ),
            bad,
        );
        cli_error(
            &with_config("temperature", json!(t)).to_string(),
            "invalid config `temperature`: must be finite and > 0",
        );
    }
    for t in [1e-6, 1e6] {
        assert_finite(library(
            &base(),
            |_, _, _, _| {},
            Config {
                temperature: t,
                ..agedb()
            },
        ));
        cli_finite(&with_config("temperature", json!(t)));
    }
    let out_of_range = Error::InvalidConfig {
        field: "temperature",
        why: "must lie in [1e-6, 1e6]",
    };
    assert_error(
        library(
            &base(),
            |_, _, _, _| {},
            Config {
                temperature: 1e-9,
                ..agedb()
            },
        ),
        out_of_range,
    );
}

#[test]
fn nan_threshold() {
    let bad = Error::InvalidConfig {
        field: "threshold",
        why: "must be >= 0 (NaN is not allowed)",
    };
    assert_error(
        library(
            &base(),
            |_, _, _, _| {},
            Config {
                threshold: f64::NAN,
                ..agedb()
            },
        ),
        bad,
    );
    cli_error(
        &with_config("threshold", json!("NaN")).to_string(),
        "invalid type: string",
    );
    cli_error(
        &with_config("threshold", json!(-1.0)).to_string(),
        "invalid config `threshold`",
    );
}

#[test]
fn huge_labels_stay_finite() {
    let huge = with("labels", json!([1e30, -1e30, 1e30, 3.0]));
    let loss = assert_finite(library(&huge, |_, _, _, _| {}, agedb()));
    assert!(loss >= 0.0);
    cli_finite(&huge);
    let preds = with("preds", json!([1e30, 1e30, -1e30, 0.0]));
    assert_finite(library(&preds, |_, _, _, _| {}, agedb()));
}

#[test]
fn all_zero_feature_rows_stay_finite() {
    let zeros = with("features", json!(vec![0.0; M * D]));
    assert_finite(library(&zeros, |_, _, _, _| {}, agedb()));
    cli_finite(&zeros);
    let one_zero = with(
        "features",
        json!([0.0, 0.0, 0.0, 0.9, 0.3, 0.1, 0.1, 1.0, 0.2, 0.2, 0.8, 0.1]),
    );
    assert_finite(library(&one_zero, |_, _, _, _| {}, agedb()));
}

#[test]
fn angular_metric_with_zero_labels() {
    let mut case = base();
    case["labels"] = json!([1.0, 0.0, 2.0, 3.0]);
    let angular = Config {
        label_metric: LabelMetric::Angular,
        ..agedb()
    };
    assert_error(
        library(&case, |_, _, _, _| {}, angular),
        Error::ZeroLengthLabel {
            what: "labels",
            row: 1,
        },
    );
    case["config"]["label_metric"] = json!("angular");
    cli_error(&case.to_string(), "labels row 1 is the zero vector");
}

#[test]
fn unknown_config_keys() {
    cli_error(
        &with_config("temprature", json!(0.1)).to_string(),
        "unknown field `temprature`",
    );
    cli_error(
        &with("extra", json!(1)).to_string(),
        "unknown field `extra`",
    );
}

#[test]
fn truncated_json() {
    let text = base().to_string();
    cli_error(&text[..text.len() - 20], "EOF while parsing");
}

/// The GPU refuses the same inputs with the same core error.
#[test]
fn gpu_refuses_the_same_inputs() {
    let Ok(gpu) = conr_wgpu::GpuConr::new() else {
        if std::env::var("CONR_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("CONR_REQUIRE_GPU=1 but there is no GPU");
        }
        eprintln!("skipping: no GPU adapter");
        return;
    };
    let shape = Shape {
        rows: M,
        dim: D,
        label_dim: 1,
    };
    let f = [
        1.0f32, 0.2, 0.0, 0.9, 0.3, 0.1, 0.1, 1.0, 0.2, 0.2, 0.8, 0.1,
    ];
    let (y, p) = ([20.0f32, 20.5, 60.0, 60.5], [40.0f32, 40.2, 40.4, 40.1]);
    let batch = Batch::new(shape, &f, &y, &p, None).unwrap();
    let cold = Config {
        temperature: -1.0,
        ..agedb()
    };
    let err = gpu.compute(&batch, &cold).unwrap_err();
    assert_eq!(
        err,
        conr_wgpu::GpuError::Input(Error::InvalidConfig {
            field: "temperature",
            why: "must be finite and > 0"
        })
    );
    let huge_labels = [1e30f32, -1e30, 1e30, 3.0];
    let out = gpu
        .compute(
            &Batch::new(shape, &f, &huge_labels, &p, None).unwrap(),
            &agedb(),
        )
        .unwrap();
    assert!(out.loss.is_finite() && out.grad_features.iter().all(|g| g.is_finite()));
    let zeros = [0.0f32; M * D];
    let out = gpu
        .compute(&Batch::new(shape, &zeros, &y, &p, None).unwrap(), &agedb())
        .unwrap();
    assert!(out.loss.is_finite() && out.grad_features.iter().all(|g| g.is_finite()));
}
