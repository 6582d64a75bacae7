//! The fuzz targets on stable Rust: every input of the committed corpus
//! (`fuzz/corpus/`), then a fixed number of seeded random inputs. The
//! coverage-guided runs themselves need nightly (`cargo +nightly fuzz run`).

use std::path::Path;

use conr_tests::fuzzing::{cli_input, companions, core_api, fds};
use conr_tests::shard_fuzz::{Reached, shard_message};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn replay(target: &str, mut run: impl FnMut(&[u8])) -> usize {
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

/// Runs `run` on `inputs` random inputs of up to `max_len` bytes; returns how many ran.
fn random(mut run: impl FnMut(&[u8]), seed: u64, max_len: usize, inputs: usize) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut count = 0;
    for _ in 0..inputs {
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
    let random = random(core_api, 1, 600, 200_000);
    assert_eq!(random, 200_000);
    eprintln!("core_api: {corpus} corpus inputs, {random} random inputs");
}

#[test]
fn companions_corpus_and_random_inputs() {
    let corpus = replay("companions", companions);
    assert!(corpus > 0, "the companions corpus is empty");
    let random = random(companions, 4, 400, 200_000);
    assert_eq!(random, 200_000);
    eprintln!("companions: {corpus} corpus inputs, {random} random inputs");
}

#[test]
fn fds_corpus_and_random_inputs() {
    let mut ran = 0;
    let mut run = |data: &[u8]| ran += usize::from(fds(data));
    let corpus = replay("fds", &mut run);
    assert!(corpus > 0, "the fds corpus is empty");
    let random = random(&mut run, 5, 400, 50_000);
    assert_eq!(random, 50_000);
    // Random configs are mostly refused: the corpus and a share of random
    // inputs reach the steps.
    assert!(ran >= corpus + 1000, "only {ran} inputs had a valid config");
    eprintln!("fds: {corpus} corpus inputs, {random} random inputs, {ran} with a valid config");
}

#[test]
fn cli_input_corpus_and_random_inputs() {
    let corpus = replay("cli_input", cli_input);
    assert!(corpus > 0, "the cli_input corpus is empty");
    // Random bytes are rarely JSON: the corpus carries the parser's coverage.
    let random = random(cli_input, 2, 300, 200_000);
    assert_eq!(random, 200_000);
    eprintln!("cli_input: {corpus} corpus inputs, {random} random inputs");
}

/// The shard messages' parser: random inputs reach every stage (refused,
/// read, gathered and run), so the target really exercises the protocol.
#[test]
fn shard_message_corpus_and_random_inputs() {
    let mut reached = [0usize; 3];
    let mut count = |data: &[u8]| {
        let stage = match shard_message(data) {
            Reached::Refused => 0,
            Reached::Read => 1,
            Reached::Gathered => 2,
        };
        reached[stage] += 1;
    };
    let corpus = replay("shard_message", &mut count);
    assert!(corpus > 0, "the shard_message corpus is empty");
    let random = random(&mut count, 3, 400, 200_000);
    assert_eq!(random, 200_000);
    eprintln!(
        "shard_message: {corpus} corpus inputs, {random} random inputs; refused {}, read {}, gathered {}",
        reached[0], reached[1], reached[2]
    );
    assert!(
        reached.iter().all(|&n| n > 100),
        "every stage is reached: {reached:?}"
    );
}
