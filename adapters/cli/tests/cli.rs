//! The `conr` binary end to end: output shape, and one-line errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn conr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conr"))
        .args(args)
        .output()
        .expect("conr runs")
}

/// `conr compute --input PATH --backend BACKEND --precision PRECISION`.
fn compute(path: &str, backend: &str, precision: &str) -> Output {
    conr(&[
        "compute",
        "--input",
        path,
        "--backend",
        backend,
        "--precision",
        precision,
    ])
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// One timed repetition of `conr bench` on one size and two threads, with
/// `extra` arguments: its JSON row.
fn bench_once(size: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "bench",
        "--sizes",
        size,
        "--reps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "2",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&conr(&args))
}

/// Writes `text` to a temporary file and runs `conr <command> --input file`.
fn run_on_text(command: &str, text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.json");
    std::fs::write(&path, text).unwrap();
    conr(&[command, "--input", path.to_str().unwrap()])
}

/// A bad input: exit status 1, one line on stderr naming the problem, no panic.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

fn small_case() -> Value {
    serde_json::json!({
        "n": 2, "d": 2, "label_dim": 1,
        "config": {"preset": "official_agedb"},
        "features": [1.0, 0.0, 0.0, 1.0],
        "labels": [20.0, 60.0],
        "preds": [30.0, 30.5]
    })
}

#[test]
fn compute_prints_the_contract_fields() {
    let path = fixture("official-agedb-04.json");
    for (backend, precision) in [("reference", "f64"), ("cpu", "f64"), ("cpu", "f32")] {
        let out = json(&compute(path.to_str().unwrap(), backend, precision));
        for key in [
            "loss",
            "grad_features",
            "anchors",
            "positives",
            "negatives",
            "backend",
            "precision",
        ] {
            assert!(out.get(key).is_some(), "missing {key}");
        }
        // The engine's own name: `cpu` is an alias of `fast`.
        let name = if backend == "cpu" { "fast" } else { backend };
        assert_eq!(out["backend"], name);
        assert_eq!(out["precision"], precision);
        let loss = out["loss"].as_f64().unwrap();
        approx::assert_relative_eq!(loss, 5.237397181559777, max_relative = 1e-4);
        assert_eq!(out["grad_features"].as_array().unwrap().len(), 64 * 64);
    }
}

#[test]
fn weights_prints_mean_one_weights() {
    let path = fixture("lds-weights-01.json");
    let out = json(&conr(&["weights", "--input", path.to_str().unwrap()]));
    let w: Vec<f64> = out["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(w.len(), 800);
    approx::assert_abs_diff_eq!(w.iter().sum::<f64>() / 800.0, 1.0, epsilon = 1e-12);
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let missing = conr(&["compute", "--input", "/nonexistent/batch.json"]);
    assert_one_line_error(&missing, "cannot read /nonexistent/batch.json");

    let text = small_case().to_string();
    assert_one_line_error(&run_on_text("compute", &text[..text.len() / 2]), "EOF");
    assert_one_line_error(
        &run_on_text("compute", "not json"),
        "not a valid input file",
    );

    let mut no_preds = small_case();
    no_preds.as_object_mut().unwrap().remove("preds");
    assert_one_line_error(
        &run_on_text("compute", &no_preds.to_string()),
        "missing field `preds`",
    );

    let mut short = small_case();
    short["labels"] = serde_json::json!([20.0]);
    assert_one_line_error(
        &run_on_text("compute", &short.to_string()),
        "labels has length 1, but the shape needs 2",
    );

    let mut typo = small_case();
    typo["config"]["temprature"] = serde_json::json!(0.1);
    assert_one_line_error(
        &run_on_text("compute", &typo.to_string()),
        "unknown field `temprature`",
    );

    let mut cold = small_case();
    cold["config"]["temperature"] = serde_json::json!(0.0);
    assert_one_line_error(
        &run_on_text("compute", &cold.to_string()),
        "invalid config `temperature`",
    );

    let mut metric = small_case();
    metric["config"]["label_metric"] = serde_json::json!("l3");
    assert_one_line_error(
        &run_on_text("compute", &metric.to_string()),
        "unknown value \"l3\"",
    );

    let weights =
        serde_json::json!({"labels": [1.0, 2.0], "config": {"kernel": "triang", "kernel_size": 4}});
    assert_one_line_error(&run_on_text("weights", &weights.to_string()), "odd size");
}

/// A fixture's `expected` object changes nothing: the output is the same
/// with it, without it, and with it made up, and it equals what the fixture
/// expects.
#[test]
fn expected_fields_are_ignored() {
    let path = fixture("official-agedb-02.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut case: Value = serde_json::from_str(&text).unwrap();
    let expected = case["expected"].clone();
    let with = json(&conr(&["compute", "--input", path.to_str().unwrap()]));
    case.as_object_mut().unwrap().remove("expected");
    let without = json(&run_on_text("compute", &case.to_string()));
    case["expected"] = serde_json::json!({"loss": 123.0, "anchors": []});
    let made_up = json(&run_on_text("compute", &case.to_string()));
    assert_eq!(with, without);
    assert_eq!(with, made_up);
    let budget = conr_tests::budget::F64_FIXTURE;
    budget
        .loss
        .scalar(
            "loss",
            with["loss"].as_f64().unwrap(),
            expected["loss"].as_f64().unwrap(),
        )
        .unwrap();
    budget
        .grad
        .vector(
            "grad",
            &floats(&with["grad_features"]),
            &floats(&expected["grad_features"]),
        )
        .unwrap();
    for key in ["anchors", "positives", "negatives"] {
        assert_eq!(with[key], expected[key], "{key}");
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `--backend gpu --shards 3` runs the data-parallel protocol on the GPU,
/// and `--record` the record path on device buffers, each within the f32
/// budget of the fixture; f64 on the GPU is refused, since it would be
/// rounded, and so is `--record` off the GPU or with shards.
#[test]
fn the_gpu_runs_the_protocol_too() {
    if conr_tests::gpu::gpu().is_none() {
        return;
    }
    let path = fixture("general-03.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let case: Value = serde_json::from_str(&text).unwrap();
    let expected = &case["expected"];
    let path = path.to_str().unwrap();
    let budget = conr_tests::budget::F32_FIXTURE;
    let runs: [&[&str]; 3] = [&[], &["--shards", "3"], &["--record"]];
    for extra in runs {
        let mut args = vec!["compute", "--input", path, "--backend", "gpu"];
        args.extend(extra);
        let out = json(&conr(&args));
        assert_eq!(out["backend"], "gpu");
        assert_eq!(out["precision"], "f32");
        budget
            .loss
            .scalar(
                "loss",
                out["loss"].as_f64().unwrap(),
                expected["loss"].as_f64().unwrap(),
            )
            .unwrap();
        budget
            .grad
            .vector(
                "grad",
                &floats(&out["grad_features"]),
                &floats(&expected["grad_features"]),
            )
            .unwrap();
        for key in ["anchors", "positives", "negatives"] {
            assert_eq!(out[key], expected[key], "{key}");
        }
    }
    assert_one_line_error(
        &compute(path, "gpu", "f64"),
        "the gpu engine computes in f32",
    );
    let record = |extra: &[&str]| {
        let mut args = vec!["compute", "--input", path, "--record"];
        args.extend(extra);
        conr(&args)
    };
    assert_one_line_error(
        &record(&["--backend", "cpu"]),
        "--record needs --backend gpu",
    );
    assert_one_line_error(
        &record(&["--backend", "gpu", "--shards", "2"]),
        "takes no --shards",
    );
    assert_one_line_error(
        &record(&["--backend", "gpu", "--precision", "f64"]),
        "--record computes in f32",
    );
}

/// `bench --backend gpu` times the record path and reports the plan it took,
/// as the device counted its tiles.
#[test]
fn gpu_bench_reports_the_record_plan() {
    if conr_tests::gpu::gpu().is_none() {
        return;
    }
    let out = conr(&[
        "bench",
        "--backend",
        "gpu",
        "--sizes",
        "256x8",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    let row = json(&out);
    assert!(row["record_s"].as_f64().unwrap() > 0.0);
    assert_eq!(row["record_plan"], "band");
    let share = row["record_tile_share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 2.0, "{share}");
    assert_eq!(row["plan"], "band");
}

/// `bench --backend gpu --profile` reports one call's time per kernel, and
/// `--profile` elsewhere is a one-line error.
#[test]
fn gpu_bench_profiles_one_call_kernel_by_kernel() {
    for (args, needle) in [
        (&["--backend", "cpu"][..], "--backend gpu"),
        (&["--backend", "gpu", "--loss", "rnc"][..], "--profile"),
    ] {
        let mut bench = vec!["bench", "--profile", "--sizes", "64x8"];
        bench.extend_from_slice(args);
        assert_one_line_error(&conr(&bench), needle);
    }
    if conr_tests::gpu::gpu().is_none() {
        return;
    }
    let args = ["--backend", "gpu", "--plan", "dense", "--profile"];
    let row = bench_once("130x8", &args);
    let profile = &row["profile"];
    assert_eq!(profile["calls"], 1, "{profile}");
    let kernels = profile["kernels"].as_array().unwrap();
    let names: Vec<&str> = kernels
        .iter()
        .map(|k| k["kernel"].as_str().unwrap())
        .collect();
    for name in ["check_values", "normalize", "row_stats", "backward"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let row_stats = kernels.iter().find(|k| k["kernel"] == "row_stats").unwrap();
    // ceil(130 / 64) = 3 row tiles, each with one column range per column
    // tile (so few row tiles), in one dispatch.
    assert_eq!(row_stats["workgroups"].as_f64(), Some(9.0));
    assert_eq!(row_stats["dispatches"].as_f64(), Some(1.0));
    let device = profile["device_s"].as_f64().unwrap();
    let summed: f64 = kernels
        .iter()
        .map(|k| k["device_s"].as_f64().unwrap())
        .sum();
    assert!(device > 0.0 && summed <= device * (1.0 + 1e-9), "{profile}");
    assert!(profile["host_wait_s"].as_f64().unwrap() > 0.0, "{profile}");
}

#[test]
fn help_explains_every_option() {
    let out = conr(&["compute", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--input",
        "--backend",
        "--precision",
        "reference",
        "cpu",
        "f32",
        "f64",
    ] {
        assert!(text.contains(option), "compute --help lacks {option}");
    }
    let top = String::from_utf8_lossy(&conr(&["--help"]).stdout).into_owned();
    for command in ["compute", "weights", "metrics"] {
        assert!(top.contains(command), "--help lacks {command}");
    }
}

#[test]
fn bench_json_has_one_line_per_size() {
    let out = conr(&[
        "bench",
        "--sizes",
        "64x16,96x8",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for (row, (m, d)) in rows.iter().zip([(64, 16), (96, 8)]) {
        assert_eq!((row["m"].as_u64(), row["d"].as_u64()), (Some(m), Some(d)));
        for key in ["backend", "threads", "fwd_bwd_s", "gemm_s", "peak_bytes"] {
            assert!(row.get(key).is_some(), "missing {key}");
        }
        assert!(row["fwd_bwd_s"].as_f64().unwrap() > 0.0);
        assert!(
            row["peak_bytes"].as_u64().unwrap() > 0,
            "the counting allocator is installed"
        );
    }
    let bad = conr(&["bench", "--sizes", "64by16"]);
    assert_one_line_error(&bad, "is not MxD");
}

/// Few, wide rows (NYUD2-DIR's shape, narrower) are read from the features
/// themselves, their products divided by their lengths: the engine's peak
/// extra memory is the gradient it returns and a few small buffers, under
/// 1.25 times the features (a normalised copy of them would make it 2).
#[test]
fn bench_of_wide_rows_holds_no_copy_of_the_features() {
    let (m, d) = (32u64, 1u64 << 18);
    let row = bench_once(&format!("{m}x{d}"), &[]);
    let features = (m * d * 4) as f64;
    let peak = row["peak_bytes"].as_u64().unwrap() as f64;
    assert!(
        peak >= features,
        "the gradient alone is {features} bytes, peak {peak}"
    );
    assert!(
        peak < 1.25 * features,
        "peak {peak} bytes, features {features}"
    );
}

#[test]
fn demo_quick_writes_its_report_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = conr(&["demo", "--quick", "--out", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for name in [
        "baseline (L1)",
        "L1 + ConR",
        "L1 + ConR, LDS eta",
        "L1 + RankSim",
        "L1 + ConR + RankSim",
        "BMC",
        "BMC + ConR",
        "many",
        "medium",
        "few",
        "MAE",
        "GM",
    ] {
        assert!(table.contains(name), "the table lacks {name}:\n{table}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    for method in [
        "baseline (L1)",
        "L1 + ConR",
        "L1 + ConR, LDS eta",
        "L1 + RankSim",
        "L1 + ConR + RankSim",
        "BMC",
        "BMC + ConR",
    ] {
        for region in ["all", "many", "medium", "few"] {
            let s = &report["methods"][method][region];
            for key in ["mae_mean", "mae_std", "gm_mean", "gm_std", "count"] {
                assert!(s[key].is_number(), "{method}/{region}/{key} missing");
            }
            assert!(s["mae_mean"].as_f64().unwrap() > 0.0);
        }
    }
    assert_eq!(report["methods"]["baseline (L1)"]["all"]["count"], 144);
    let svg = std::fs::read_to_string(dir.path().join("per_label_mae.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("quality") && svg.contains("<polyline"));
}

#[test]
fn compute_with_shards_prints_the_same_object() {
    let path = fixture("official-agedb-05.json");
    let path = path.to_str().unwrap();
    let whole = json(&conr(&["compute", "--input", path]));
    for shards in ["1", "3", "7"] {
        let sharded = json(&conr(&["compute", "--input", path, "--shards", shards]));
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&sharded), keys(&whole));
        for key in ["anchors", "positives", "negatives", "backend", "precision"] {
            assert_eq!(sharded[key], whole[key], "{key}");
        }
        let (a, b) = (
            sharded["loss"].as_f64().unwrap(),
            whole["loss"].as_f64().unwrap(),
        );
        approx::assert_relative_eq!(a, b, max_relative = 1e-12);
        let grads = |v: &Value| -> Vec<f64> {
            v["grad_features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (ga, gb) = (grads(&sharded), grads(&whole));
        let scale = gb.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (x, y) in ga.iter().zip(&gb) {
            approx::assert_abs_diff_eq!(x, y, epsilon = 1e-12 * scale);
        }
    }
    assert_one_line_error(
        &conr(&["compute", "--input", path, "--shards", "0"]),
        "--shards must be at least 1",
    );
}

#[test]
fn bench_with_shards_reports_each_worker() {
    let out = conr(&[
        "bench",
        "--sizes",
        "100x8",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--shards",
        "3",
        "--plan",
        "band",
        "--json",
    ]);
    let row = json(&out);
    let workers = row["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3);
    let rows: Vec<u64> = workers
        .iter()
        .map(|w| w["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [34, 33, 33]);
    for (w, &r) in workers.iter().zip(&rows) {
        // A header of 10 values, then 10 a row, in f32.
        assert_eq!(w["sent_bytes"].as_u64().unwrap(), 4 * (10 + 10 * r));
        assert!(w["forward_s"].as_f64().unwrap() > 0.0);
        assert!(w["backward_s"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(row["plan"], "band");
}

/// The demo tables of the README and of docs/demo.md are the one the
/// program prints for the committed run (`conr demo --out docs` wrote
/// `docs/report.json`).
#[test]
fn the_docs_show_the_demo_table_of_the_committed_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let report: conr_cli::demo::Report = serde_json::from_str(&read("docs/report.json")).unwrap();
    let (begin, end) = (
        "<!-- conr demo table: begin -->",
        "<!-- conr demo table: end -->",
    );
    for page in ["README.md", "docs/demo.md"] {
        let text = read(page);
        let start = text
            .find(begin)
            .unwrap_or_else(|| panic!("{page} marks the table"))
            + begin.len();
        let stop = text
            .find(end)
            .unwrap_or_else(|| panic!("{page} marks the table's end"));
        assert_eq!(text[start..stop].trim(), report.table().trim(), "{page}");
    }
    assert_eq!(report.seeds.len(), 5, "the committed run is a default run");
}

/// `conr demo --check` compares texts: the committed report reads back to a
/// report that writes the same bytes; a number off by one bit in the last
/// place differs; another CPU's kernels are not compared.
#[test]
fn the_demo_check_is_exact() {
    use conr_cli::demo::{Check, Report};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/report.json")).unwrap();
    let report: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report.to_json().unwrap(),
        text,
        "the committed report is one `write` wrote"
    );
    assert_eq!(report.check(&text), Check::Same);

    let mut nudged = report.clone();
    let summary = nudged
        .methods
        .values_mut()
        .next()
        .unwrap()
        .get_mut("all")
        .unwrap();
    summary.mae_mean = f64::from_bits(summary.mae_mean.to_bits() + 1);
    let Check::Differs(how) = nudged.check(&text) else {
        panic!("one bit went unnoticed");
    };
    assert!(how.contains("line ") && how.contains("committed:"), "{how}");

    // A run on the other kernels than the committed report's.
    let other = if report.gemm_kernels == "avx512" {
        "avx2+fma"
    } else {
        "avx512"
    };
    let mut elsewhere = report.clone();
    elsewhere.gemm_kernels = other.into();
    assert_eq!(
        elsewhere.check(&text),
        Check::OtherKernels {
            committed: report.gemm_kernels.clone(),
            here: other.into()
        }
    );
}

/// Every companion fixture through `conr compute`, in f64 on both CPU
/// engines: the loss and gradients under the fixture's names.
#[test]
fn compute_takes_the_companion_losses() {
    let dir = fixture("dir");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 26);
    let close = |got: f64, want: f64, scale: f64| {
        (got - want).abs() <= 1e-9 * got.abs().max(want.abs()) + 1e-12 * scale
    };
    for name in &names {
        let path = dir.join(name);
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let want = &case["expected"];
        for backend in ["cpu", "reference"] {
            let out = json(&conr(&[
                "compute",
                "--input",
                path.to_str().unwrap(),
                "--backend",
                backend,
            ]));
            assert_eq!(out["precision"], "f64");
            let loss = out["loss"].as_f64().unwrap();
            assert!(
                close(loss, want["loss"].as_f64().unwrap(), 1.0),
                "{name} {backend}: loss {loss}"
            );
            let key = if case["loss"] == "balanced_mse" {
                "grad_preds"
            } else {
                "grad_features"
            };
            let (got, expected) = (floats(&out[key]), floats(&want[key]));
            let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            assert_eq!(got.len(), expected.len(), "{name}");
            for (g, w) in got.iter().zip(&expected) {
                assert!(close(*g, *w, scale), "{name} {backend}: {key} {g} vs {w}");
            }
            if case["loss"] == "balanced_mse" {
                let (g, w) = (
                    out["grad_noise_sigma"].as_f64().unwrap(),
                    want["grad_noise_sigma"].as_f64().unwrap(),
                );
                assert!(close(g, w, w.abs()), "{name}: grad_noise_sigma {g} vs {w}");
            } else {
                assert!(out.get("grad_preds").is_none() && out.get("anchors").is_none());
            }
        }
    }
}

#[test]
fn companion_cases_give_one_line_errors() {
    let case = serde_json::json!({
        "schema": "dir-fixture/1", "loss": "rnc", "n": 2, "d": 1,
        "config": {"temperature": 0.0}, "features": [1.0, 2.0], "labels": [1.0, 2.0]
    });
    assert_one_line_error(&run_on_text("compute", &case.to_string()), "temperature");
    let unknown = serde_json::json!({"schema": "dir-fixture/1", "loss": "ranknet", "n": 1});
    assert_one_line_error(
        &run_on_text("compute", &unknown.to_string()),
        "ranksim, rnc, balanced_mse",
    );
    let typo = serde_json::json!({
        "loss": "balanced_mse", "variant": "bmc", "n": 1, "config": {"noise_sigma": 1.0, "sigma": 2.0},
        "preds": [1.0], "labels": [1.0]
    });
    assert_one_line_error(
        &run_on_text("compute", &typo.to_string()),
        "unknown field `sigma`",
    );
    let path = fixture("dir/rnc-official-00.json");
    let sharded = conr(&[
        "compute",
        "--input",
        path.to_str().unwrap(),
        "--shards",
        "2",
    ]);
    assert_one_line_error(&sharded, "--shards");
}

#[test]
fn bench_times_the_companion_losses() {
    for (loss, name) in [
        ("ranksim", "ranksim"),
        ("rnc", "rnc"),
        ("balanced_mse", "balanced_mse"),
        ("bmc", "balanced_mse"),
    ] {
        let row = bench_once("96x8", &["--loss", loss]);
        assert_eq!(row["loss"], name);
        assert_eq!((row["m"].as_u64(), row["d"].as_u64()), (Some(96), Some(8)));
        for key in [
            "fwd_bwd_s",
            "reference_s",
            "speedup",
            "gemm_s",
            "gemm_equivalents",
        ] {
            assert!(
                row[key].as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
                "{loss}: {key} = {}",
                row[key]
            );
        }
    }
}

#[test]
fn compute_replays_the_fds_fixtures() {
    for (name, case) in conr_tests::fds::cases() {
        let path = conr_tests::fds::dir().join(&name);
        for (backend, precision, tol) in [
            ("cpu", "f64", conr_tests::fds::F64_TOL),
            ("reference", "f64", conr_tests::fds::F64_TOL),
            ("cpu", "f32", conr_tests::fds::F32_TOL),
        ] {
            let out = json(&compute(path.to_str().unwrap(), backend, precision));
            let report: conr_schema::FdsReport = serde_json::from_value(out).unwrap();
            assert_eq!(
                (report.loss.as_str(), report.precision.as_str()),
                ("fds", precision)
            );
            conr_tests::fds::check(&case, &report.steps, tol)
                .unwrap_or_else(|e| panic!("{name} on {backend} in {precision}: {e}"));
        }
    }
}

#[test]
fn fds_cases_give_one_line_errors() {
    let case = serde_json::json!({
        "schema": "fds-fixture/1", "feature_dim": 2, "config": {"ks": 4}, "steps": []
    });
    assert_one_line_error(&run_on_text("compute", &case.to_string()), "ks");
    let ragged = serde_json::json!({
        "schema": "fds-fixture/1", "feature_dim": 2, "config": {"bucket_num": 5, "bucket_start": 0},
        "steps": [{"epoch": 0, "update": {"features": [1.0, 2.0, 3.0], "labels": [1.0, 2.0]}}]
    });
    assert_one_line_error(&run_on_text("compute", &ragged.to_string()), "features");
}

#[test]
fn metrics_reports_every_region_and_label() {
    // Training counts: label 1 × 3 (many, > 2), label 2 × 1 (medium), label 3 × 0 (few, < 1).
    let case = serde_json::json!({
        "preds": [1.5, 0.5, 2.0, 0.0], "labels": [1.0, 1.0, 2.0, 3.0],
        "train_labels": [1.0, 1.9, 1.2, 2.0], "many": 2, "few": 1
    });
    let out = json(&run_on_text("metrics", &case.to_string()));
    assert_eq!(out["many"]["count"], 2);
    assert_eq!(out["many"]["mae"], 0.5);
    assert_eq!(out["many"]["mse"], 0.25);
    assert_eq!(out["many"]["gmean"], 0.5);
    assert_eq!(out["medium"]["count"], 1);
    assert_eq!(out["medium"]["gmean"], 0.0);
    assert_eq!(out["few"]["mse"], 9.0);
    assert_eq!(out["all"]["count"], 4);
    assert_eq!(out["all"]["mae"], (0.5 + 0.5 + 0.0 + 3.0) / 4.0);
    let labels: Vec<f64> = out["per_label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_f64().unwrap())
        .collect();
    assert_eq!(labels, [1.0, 2.0, 3.0]);
    assert_eq!(out["per_label"][2]["region"], "few");
    assert_eq!(out["per_label"][0]["train_count"], 3);

    // One few-shot label (1 training sample < 20): the other regions are
    // empty, with null values.
    let case = serde_json::json!({"preds": [1.0], "labels": [1.0], "train_labels": [1.0]});
    let out = json(&run_on_text("metrics", &case.to_string()));
    assert_eq!(
        (&out["few"]["count"], &out["many"]["count"]),
        (&1.into(), &0.into())
    );
    assert!(out["medium"]["mae"].is_null() && out["many"]["gmean"].is_null());
    let typo = serde_json::json!({"preds": [1.0], "labels": [1.0], "train": [1.0]});
    assert_one_line_error(
        &run_on_text("metrics", &typo.to_string()),
        "unknown field `train`",
    );
}
