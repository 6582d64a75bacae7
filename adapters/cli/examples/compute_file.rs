//! The library half of `conr compute`: read a `conr-fixture/1` file and run it
//! on each CPU engine in both precisions, without spawning the binary.
//!
//! ```sh
//! cargo run -p conr-cli --release --example compute_file -- examples/agedb-batch.json
//! ```

use std::path::PathBuf;

use conr_cli::compute::{Run, compute};
use conr_core::Precision;
use conr_schema::{LossCase, read_json};

fn main() -> anyhow::Result<()> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: compute_file FILE.json"))?;
    let case: LossCase = read_json(&path)?;
    println!(
        "{}: M = {}, D = {}, L = {}",
        path.display(),
        case.n,
        case.d,
        case.label_dim
    );
    for backend in ["reference", "cpu"] {
        for precision in [Precision::F64, Precision::F32] {
            let how = Run {
                precision: Some(precision),
                ..Run::default()
            };
            let report = compute(&case, backend, how)?;
            let anchors = report.anchors.iter().filter(|&&a| a).count();
            println!(
                "{backend} {}: loss {:.10}, {anchors} anchors",
                report.precision, report.loss
            );
        }
    }
    Ok(())
}
