//! `mpirun -n W conr-mpi --input FILE` prints what `conr compute --input
//! FILE` computes in one process, for several W (uneven runs, and ranks with
//! no row), every engine, and input files with weights and wide labels.
//!
//! Needs Open MPI's `mpirun`. Without it the tests skip with a message,
//! unless `CONR_REQUIRE_MPI=1` (as in CI), which makes a missing `mpirun` a
//! failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use conr_core::{Engine, Precision};
use conr_schema::{LossCase, Report, read_json};
use conr_tests::budget::{Budget, F32_FIXTURE, F64_VS_F64};
use serde_json::Value;

/// What one process computes for `case` on the engine called `backend`:
/// the report `conr compute` prints.
fn compute(case: &LossCase, backend: &str, precision: Precision) -> Report {
    let engine = conr_engines::engine(backend).expect("the engine starts");
    let config = case.config.to_config().expect("a valid config");
    let output = match precision {
        Precision::F64 => {
            let batch = case.converted::<f64>().expect("a valid case");
            Engine::<f64>::compute(&*engine, &batch.batch(), &config).unwrap()
        }
        _ => {
            let batch = case.converted::<f32>().expect("a valid case");
            Engine::<f32>::compute(&*engine, &batch.batch(), &config)
                .unwrap()
                .cast()
        }
    };
    // Reports name the engine as it names itself (`cpu` is `fast`).
    Report::new(output, Engine::<f32>::name(&*engine), precision)
}

/// Whether `mpirun` runs here; without it the test skips, or fails under
/// `CONR_REQUIRE_MPI=1`.
fn has_mpirun() -> bool {
    if Command::new("mpirun").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CONR_REQUIRE_MPI").is_ok_and(|v| v == "1") {
        panic!("CONR_REQUIRE_MPI=1 but mpirun is not installed");
    }
    conr_tests::skipped(
        "conr-mpi's mpirun tests",
        "mpirun is not installed (apt-get install openmpi-bin)",
    );
    false
}

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

/// Rank 0's JSON object from `mpirun -n ranks conr-mpi --input input ...`.
fn run_mpi(ranks: usize, input: &Path, extra: &[&str]) -> Result<Value, String> {
    let out = Command::new("mpirun")
        // As root (CI containers) Open MPI needs both; more ranks than cores is fine.
        .args(["--allow-run-as-root", "--oversubscribe", "-n"])
        .arg(ranks.to_string())
        .args(["-x", "WGPU_BACKEND", "-x", "XDG_RUNTIME_DIR"])
        .arg(env!("CARGO_BIN_EXE_conr-mpi"))
        .arg("--input")
        .arg(input)
        .args(extra)
        // Containers without ptrace rights refuse Open MPI's single-copy transfers.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .map_err(|e| format!("mpirun: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mpirun -n {ranks} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "rank 0 printed no JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The MPI run's object equals the single process's, with `workers` added.
fn check(got: &Value, want: &Report, ranks: usize, budget: &Budget) -> Result<(), String> {
    let want_json = serde_json::to_value(want).map_err(|e| e.to_string())?;
    assert_eq!(got["workers"], ranks, "workers");
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.retain(|k| k != "workers");
        k.sort();
        k
    };
    assert_eq!(
        keys(got),
        keys(&want_json),
        "the same fields as conr compute"
    );
    for exact in ["anchors", "positives", "negatives", "backend", "precision"] {
        assert_eq!(got[exact], want_json[exact], "{exact}");
    }
    let grad: Vec<f64> = serde_json::from_value(got["grad_features"].clone())
        .map_err(|e| format!("grad_features: {e}"))?;
    budget
        .loss
        .scalar("loss", got["loss"].as_f64().unwrap_or(f64::NAN), want.loss)?;
    budget.grad.vector("grad", &grad, &want.grad_features)
}

#[test]
fn mpi_runs_equal_one_process() {
    if !has_mpirun() {
        return;
    }
    let cases = [
        // M = 128 from the README: even and uneven runs.
        ("examples/agedb-batch.json", vec![1, 3, 4]),
        // Weights, three-wide labels.
        ("tests/fixtures/general-05.json", vec![2, 7]),
        // M = 6 on 7 ranks: one rank owns no row.
        ("tests/fixtures/official-nyud2-06.json", vec![7]),
    ];
    let mut failures = Vec::new();
    for (name, ranks) in cases {
        let input = file(name);
        let case: LossCase = read_json(&input).expect("the input parses");
        for flag in ["reference", "cpu"] {
            let want = compute(&case, flag, Precision::F64);
            for &w in &ranks {
                let result = run_mpi(w, &input, &["--backend", flag])
                    .and_then(|got| check(&got, &want, w, &F64_VS_F64));
                if let Err(e) = result {
                    failures.push(format!("{name}, {flag}, {w} ranks: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mpi_runs_in_f32_and_on_the_gpu() {
    if !has_mpirun() {
        return;
    }
    let input = file("examples/agedb-batch.json");
    let case: LossCase = read_json(&input).expect("the input parses");
    let want = compute(&case, "reference", Precision::F64);
    let got = run_mpi(3, &input, &["--precision", "f32"]).expect("f32 on 3 ranks");
    let f32_want = Report {
        precision: "f32",
        backend: "fast".into(),
        ..want.clone()
    };
    check(&got, &f32_want, 3, &F32_FIXTURE).expect("f32 within the f32 budget");
    if conr_tests::gpu::gpu().is_none() {
        return;
    }
    let gpu_want = Report {
        precision: "f32",
        backend: "gpu".into(),
        ..want
    };
    let got = run_mpi(2, &input, &["--backend", "gpu"]).expect("the GPU on 2 ranks");
    check(&got, &gpu_want, 2, &F32_FIXTURE).expect("the GPU within the f32 budget");
}

#[test]
fn a_bad_input_fails_on_every_rank_without_hanging() {
    if !has_mpirun() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("conr-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    // Two rows, but one label.
    std::fs::write(
        &bad,
        r#"{"n": 2, "d": 1, "features": [1, 2], "labels": [1], "preds": [1, 2]}"#,
    )
    .unwrap();
    let err = run_mpi(2, &bad, &[]).expect_err("a bad input fails");
    assert!(err.contains("labels has length 1"), "{err}");
    let gpu_f64 = run_mpi(
        2,
        &file("examples/agedb-batch.json"),
        &["--backend", "gpu", "--precision", "f64"],
    );
    assert!(
        gpu_f64
            .expect_err("f64 on the GPU is refused")
            .contains("the gpu engine computes in f32")
    );
    std::fs::remove_dir_all(&dir).ok();
}
