//! Shared test support: tolerance budgets, fixture loading, random batches,
//! the bad-input table, and one checker that every engine runs through.

pub mod bad;
pub mod budget;
pub mod dir;
pub mod fds;
pub mod fixtures;
pub mod fuzzing;
pub mod gpu;
pub mod knobs;
pub mod random;
pub mod shard_fuzz;

pub use budget::Tol;

use std::io::Write;
use std::sync::Mutex;

/// Says, once per process and family, that the tests of `family` did not
/// run here, and why: on the process's stderr, which libtest does not
/// capture, so the line shows in a passing run's output.
pub fn skipped(family: &'static str, reason: &str) {
    static SAID: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&family) {
        said.push(family);
        let _ = writeln!(std::io::stderr(), "SKIPPED {family}: {reason}");
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The Rust examples of the guides in docs/, compiled and run as doctests.
#[cfg(doctest)]
mod docs {
    #[doc = include_str!("../../docs/rust.md")]
    struct Rust;
    #[doc = include_str!("../../docs/distributed.md")]
    struct Distributed;
    #[doc = include_str!("../../docs/companions.md")]
    struct Companions;
    #[doc = include_str!("../../docs/gpu.md")]
    struct Gpu;
}

#[cfg(test)]
mod readme {
    /// The fenced blocks of a Markdown text whose info string is `info`.
    fn blocks<'a>(text: &'a str, info: &str) -> Vec<&'a str> {
        let open = format!("```{info}\n");
        text.split(open.as_str())
            .skip(1)
            .filter_map(|rest| rest.split("```\n").next())
            .collect()
    }

    /// The Rust guide's candle training loop is not compiled here
    /// (conr-tests does not depend on candle): it must be, word for word,
    /// the one conr-candle's README carries and runs as a doctest.
    #[test]
    fn the_candle_loop_is_the_one_conr_candle_runs() {
        let read =
            |path| std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")));
        let guide = read("docs/rust.md").unwrap();
        let candle = read("adapters/candle/README.md").unwrap();
        let ignored: Vec<_> = blocks(&guide, "rust,ignore")
            .into_iter()
            .filter(|b| b.contains("use candle_core::"))
            .collect();
        assert_eq!(ignored.len(), 1, "one candle block in docs/rust.md");
        assert!(
            blocks(&candle, "rust").contains(&ignored[0]),
            "docs/rust.md's candle block differs from adapters/candle/README.md's"
        );
    }
}

#[cfg(test)]
mod unit_tests {
    use std::path::Path;

    /// The Rust files under `dir`, recursively.
    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// A crate whose library or binary says `test = false` builds no
    /// unit-test binary, so a unit test written in its src/ would never
    /// run: none may be there.
    #[test]
    fn crates_without_unit_test_binaries_have_no_unit_tests() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut checked = 0;
        for entry in std::fs::read_dir(root.join("adapters")).unwrap().flatten() {
            let manifest =
                std::fs::read_to_string(entry.path().join("Cargo.toml")).unwrap_or_default();
            if !manifest.contains("\ntest = false")
                || manifest.contains("crate-type = [\"cdylib\"]")
            {
                continue;
            }
            let mut files = Vec::new();
            rust_files(&entry.path().join("src"), &mut files);
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(
                    !text.contains("#[test]") && !text.contains("#[cfg(test)]"),
                    "{} has a unit test, but its crate builds no unit-test binary (test = false)",
                    file.display()
                );
            }
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} crates checked");
    }
}
