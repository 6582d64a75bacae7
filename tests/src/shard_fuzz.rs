//! The fuzz target of the one parser that reads other machines' bytes: the
//! data-parallel protocol's messages (`conr_core::shard::read_message` and
//! `gather`). It uses only `conr-core` and `conr-cpu`, so that the fuzz
//! target `shard_message` builds without the rest of the workspace
//! (`fuzz/fuzz_targets/shard_message.rs` includes this file).
//!
//! Promises checked, on arbitrary bytes and on real messages with bytes
//! flipped:
//! - reading never panics, and refuses what it cannot place;
//! - an accepted message names rows inside the batch, and writing its
//!   outcomes back gives the same values: nothing is read that was not there;
//! - `gather` accepts a set of messages only when they cover every row once;
//! - the second phase runs (without a panic) on whatever `gather` accepted.

use conr_core::shard::{HEADER_LEN, Header, gather, message_len, read_message, write_message};
use conr_core::stats::RowOutcome;
use conr_core::{Batch, Config, Engine, Inputs, Scalar, Shape};
use conr_cpu::Reference;

/// What one input did: how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Every message was refused.
    Refused,
    /// Some message was read; `gather` refused the set.
    Read,
    /// `gather` accepted the set and the second phase ran on it.
    Gathered,
}

/// Reads fuzz bytes as values; past the end it yields zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn f64(&mut self) -> f64 {
        let mut bits = [0u8; 8];
        bits.iter_mut().for_each(|b| *b = self.u8());
        f64::from_le_bytes(bits)
    }
}

/// A small batch the messages claim to describe: 1 to 8 rows.
fn batch_data(rows: usize) -> (Shape, Vec<f64>, Vec<f64>, Vec<f64>) {
    let shape = Shape {
        rows,
        dim: 2,
        label_dim: 1,
    };
    let features = (0..rows * 2).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
    let labels = (0..rows).map(|j| (j % 3) as f64 * 10.0).collect();
    let preds = (0..rows).map(|j| 5.0 + (j % 2) as f64).collect();
    (shape, features, labels, preds)
}

/// The messages of `workers` real workers, in `T`.
fn real_messages<T: Scalar>(
    batch: &Batch<'_, T>,
    config: &Config,
    header: &Header,
    workers: usize,
) -> Vec<Vec<T>> {
    conr_core::shard::even_slices(batch.rows(), workers)
        .into_iter()
        .map(|slice| {
            let outcomes = Engine::<T>::forward_rows(&Reference, batch, config, slice.clone())
                .expect("a valid batch");
            let mut message = vec![T::zero(); message_len(outcomes.len())];
            write_message(header, slice.start, &outcomes, &mut message).expect("it fits");
            message
        })
        .collect()
}

/// The fuzz target's body.
pub fn shard_message(data: &[u8]) -> Reached {
    let mut bytes = Bytes(data);
    let mode = bytes.u8();
    let rows = usize::from(bytes.u8() % 8) + 1;
    let workers = usize::from(bytes.u8() % 4) + 1;
    let config = [
        Config::paper(),
        Config::official_agedb(),
        Config::official_nyud2(),
    ][usize::from(mode / 4) % 3];
    if mode % 2 == 0 {
        run::<f64>(&mut bytes, mode, rows, workers, &config)
    } else {
        run::<f32>(&mut bytes, mode, rows, workers, &config)
    }
}

fn run<T: Scalar>(
    bytes: &mut Bytes<'_>,
    mode: u8,
    rows: usize,
    workers: usize,
    config: &Config,
) -> Reached {
    let (shape, f, y, p) = batch_data(rows);
    let narrow = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from(x).unwrap()).collect() };
    let (f, y, p) = (narrow(&f), narrow(&y), narrow(&p));
    let inputs = Inputs {
        features: &f,
        labels: &y,
        preds: &p,
        eta: None,
    };
    let batch = Batch::new(shape, inputs).expect("a valid batch");
    let header = Header::new(config, shape);
    let mut messages = if mode % 4 < 2 {
        // Arbitrary values, in messages of arbitrary lengths.
        (0..workers)
            .map(|_| {
                let len = usize::from(bytes.u8()) % (HEADER_LEN + 2 + 10 * rows + 3);
                (0..len)
                    .map(|_| T::from(bytes.f64()).unwrap_or_else(T::nan))
                    .collect()
            })
            .collect()
    } else {
        real_messages(&batch, config, &header, workers)
    };
    // Change values where the bytes say (a header, a row range, a record),
    // until a zero byte (the end of the input reads as zeros).
    loop {
        let at = usize::from(bytes.u8());
        if at == 0 || messages.is_empty() {
            break;
        }
        let which = at % messages.len();
        let value = T::from(bytes.f64()).unwrap_or_else(T::nan);
        let target = &mut messages[which];
        if !target.is_empty() {
            let i = usize::from(bytes.u8()) % target.len();
            target[i] = value;
        }
    }

    let mut reached = Reached::Refused;
    let mut all = vec![RowOutcome::<T>::default(); rows];
    for message in &messages {
        let Ok(got) = read_message(&header, message, &mut all) else {
            continue;
        };
        reached = Reached::Read;
        assert!(got.end <= rows, "rows {got:?} outside the batch");
        let mut again = vec![T::zero(); message.len()];
        write_message(&header, got.start, &all[got.clone()], &mut again)
            .expect("an accepted message writes back");
        assert!(
            again == *message,
            "an accepted message does not write back to itself"
        );
    }
    let views: Vec<&[T]> = messages.iter().map(Vec::as_slice).collect();
    let Ok(outcomes) = gather(&header, &views) else {
        return reached;
    };
    // Every row once: the messages' row counts add up to the batch.
    let covered: usize = messages
        .iter()
        .map(|m| (m.len() - HEADER_LEN - 2) / conr_core::shard::RECORD_LEN)
        .sum();
    assert_eq!(
        covered, rows,
        "gather accepted messages that do not cover the batch once"
    );
    // Whatever was accepted, phase 2 runs: an error or a part, never a panic.
    let _ = Engine::<T>::backward_rows(&Reference, &batch, config, 0..rows, &outcomes);
    Reached::Gathered
}
