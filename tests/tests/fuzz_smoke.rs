//! The fuzz targets on stable Rust: every input of the committed corpus
//! (`fuzz/corpus/`), then seeded random inputs, for a bounded time. The
//! coverage-guided runs themselves need nightly (`cargo +nightly fuzz run`).

use std::path::Path;
use std::time::{Duration, Instant};

use conr_tests::fuzzing::{cli_input, core_api};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seconds of random inputs per target after the corpus.
const RANDOM_BUDGET: Duration = Duration::from_secs(10);

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        count += 1;
    }
    count
}

fn random(run: fn(&[u8]), seed: u64, max_len: usize) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    let mut count = 0;
    while start.elapsed() < RANDOM_BUDGET {
        let mut data = vec![0u8; rng.random_range(0..max_len)];
        rng.fill_bytes(&mut data);
        run(&data);
        count += 1;
    }
    count
}

#[test]
fn core_api_corpus_and_random_inputs() {
    let corpus = replay("core_api", core_api);
    assert!(corpus > 0, "the core_api corpus is empty");
    let random = random(core_api, 1, 600);
    eprintln!("core_api: {corpus} corpus inputs, {random} random inputs");
}

#[test]
fn cli_input_corpus_and_random_inputs() {
    let corpus = replay("cli_input", cli_input);
    assert!(corpus > 0, "the cli_input corpus is empty");
    // Random bytes are rarely JSON: also mutate corpus-like text.
    let random = random(cli_input, 2, 300);
    eprintln!("cli_input: {corpus} corpus inputs, {random} random inputs");
}
