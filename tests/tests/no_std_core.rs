//! Builds `tests/no_std_proof`, a `#![no_std]` static library with its own
//! `#[panic_handler]`, against conr-core. The build fails with "duplicate lang
//! item" if std ever enters the core's dependency graph.

use std::path::Path;
use std::process::Command;

#[test]
fn core_builds_without_std() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("no_std_proof/Cargo.toml");
    // A target folder of its own: the outer cargo holds the workspace's lock.
    let target = root.join("../target/no_std_proof");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--offline", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "the no_std proof failed to build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
