//! Data-parallel ConR: one global batch split across workers, exactly.
//!
//! The loss of row `j` needs only `z_j` and every feature; `∂L/∂z_j` also
//! needs every row's finished statistics (for the `G_kj` terms). So with W
//! workers, each owning a run of rows:
//!
//! 1. every worker holds all features (an all-gather, as data-parallel
//!    contrastive training already does);
//! 2. each computes its own rows' [`RowOutcome`]s against all rows, writes them
//!    into a flat message ([`write_message`]), and the workers exchange
//!    messages (an all-gather of a few scalars a row);
//! 3. each reads every message back ([`read_message`]), finds the global
//!    anchor count and reduction factor ([`reduction`]), and computes the
//!    gradient of its own rows and its part of the loss.
//!
//! A message is `[`[`Header`]`, first row, row count, records...]`, all in the
//! batch's scalar type, so that any collective can carry it. The header names
//! the config and the global shape: a message from a worker with another
//! config or shape is refused, never merged into a wrong loss.
//!
//! ```
//! use conr_core::shard::{Header, message_len, read_message, write_message};
//! use conr_core::stats::{RowOutcome, RowStats};
//! use conr_core::{Config, Shape};
//!
//! let config = Config::paper();
//! let shape = Shape { rows: 3, dim: 2, label_dim: 1 };
//! let header = Header::new(&config, shape);
//! let params = config.params::<f64>()?;
//! let mine = [RowStats::default().finish(&params, 3, 1.0)];
//! let mut message = vec![0.0f64; message_len(1)];
//! write_message(&header, 2, &mine, &mut message)?;
//! let mut all = [RowOutcome::<f64>::default(); 3];
//! let rows = read_message(&header, &message, &mut all)?;
//! assert_eq!(rows, 2..3);
//! // Another config is refused.
//! let other = Header::new(&Config::official_agedb(), shape);
//! assert!(read_message(&other, &message, &mut all).is_err());
//! # Ok::<(), conr_core::Error>(())
//! ```

use core::ops::Range;

use crate::config::Aggregation;
use crate::knob::{Knobs, Value};
use crate::stats::{RowOutcome, reduction_factor};
use crate::{Config, Error, Scalar, Shape, cast};

#[cfg(feature = "alloc")]
mod sequential;
#[cfg(feature = "alloc")]
pub use sequential::{compute_sharded, even_slices};

/// Values in a [`Header`].
pub const HEADER_LEN: usize = 8;
/// Values per row in a message.
pub const RECORD_LEN: usize = 10;
/// The first value of every header: "ConR" as a number.
const MAGIC: f64 = 0x436f_6e52 as f64;
/// The largest integer every scalar type holds exactly (f32: 2^24).
const EXACT: f64 = 16_777_216.0;

/// What a message must agree on: the config (as a 64-bit fingerprint) and
/// the global shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    fingerprint: u64,
    shape: Shape,
}

impl Header {
    /// The header of a computation with `config` on a global batch of `shape`.
    pub fn new(config: &Config, shape: Shape) -> Self {
        Self {
            fingerprint: fingerprint(config),
            shape,
        }
    }

    /// The global shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    fn write<T: Scalar>(&self, out: &mut [T]) -> Result<(), Error> {
        let shape = [self.shape.rows, self.shape.dim, self.shape.label_dim];
        if shape.iter().any(|&n| n as f64 > EXACT) {
            return Err(Error::InvalidConfig {
                field: "shape",
                why: "a sharded batch needs M, D and L of at most 2^24 (exact in f32)",
            });
        }
        out[0] = cast(MAGIC);
        for (slot, n) in out[1..4].iter_mut().zip(shape) {
            *slot = cast(n as f64);
        }
        // Four 16-bit pieces: exact in every scalar type.
        for (i, slot) in out[4..8].iter_mut().enumerate() {
            *slot = cast(((self.fingerprint >> (16 * i)) & 0xffff) as f64);
        }
        Ok(())
    }

    fn matches<T: Scalar>(&self, values: &[T]) -> bool {
        let mut expected = [T::zero(); HEADER_LEN];
        self.write(&mut expected).is_ok() && values == expected
    }
}

/// FNV-1a over every knob of the config, by name, with floats by their
/// bits. The knobs come from the core's table, so that a new knob cannot be
/// left out.
fn fingerprint(config: &Config) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |x: u64| {
        for byte in x.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    // Names are stable across builds; discriminants need not be.
    let name = |text: &str, eat: &mut dyn FnMut(u64)| {
        text.bytes().for_each(|b| eat(u64::from(b)));
        eat(u64::MAX);
    };
    // ω̂ in effect: `None` and `Some(ω)` compute the same loss.
    let config = Config {
        pred_threshold: Some(config.effective_pred_threshold()),
        ..*config
    };
    for &knob in Config::NAMES {
        name(knob, &mut eat);
        match config.get(knob) {
            Some(Value::Number(x)) => eat(x.to_bits()),
            Some(Value::Count(n)) => eat(n),
            Some(Value::Flag(b)) => eat(u64::from(b)),
            Some(Value::Name(n)) => name(n, &mut eat),
            Some(Value::Pushing { kind, scale }) => {
                name(kind, &mut eat);
                eat(scale.to_bits());
            }
            Some(Value::Unset) | None => eat(u64::MAX - 1),
        }
    }
    hash
}

/// The length of a message that carries `rows` rows.
pub fn message_len(rows: usize) -> usize {
    HEADER_LEN + 2 + rows * RECORD_LEN
}

/// Writes the outcomes of the rows `first..first + outcomes.len()` into
/// `out`, which must be [`message_len`]`(outcomes.len())` long.
pub fn write_message<T: Scalar>(
    header: &Header,
    first: usize,
    outcomes: &[RowOutcome<T>],
    out: &mut [T],
) -> Result<(), Error> {
    if out.len() != message_len(outcomes.len()) {
        return Err(Error::ShapeMismatch {
            what: "message",
            expected: message_len(outcomes.len()),
            got: out.len(),
        });
    }
    if first + outcomes.len() > header.shape.rows {
        return Err(Error::InvalidConfig {
            field: "rows",
            why: "the rows of a message must lie inside the global batch",
        });
    }
    header.write(&mut out[..HEADER_LEN])?;
    out[HEADER_LEN] = cast(first as f64);
    out[HEADER_LEN + 1] = cast(outcomes.len() as f64);
    for (record, outcome) in out[HEADER_LEN + 2..]
        .chunks_exact_mut(RECORD_LEN)
        .zip(outcomes)
    {
        outcome.write_record(record);
    }
    Ok(())
}

fn bad(why: &'static str) -> Error {
    Error::InvalidConfig {
        field: "message",
        why,
    }
}

/// Reads a message into `all` (one slot per global row) and returns the rows
/// it held. Refuses a message from another config or shape, of the wrong
/// length, naming rows outside the batch, or holding values no engine writes.
pub fn read_message<T: Scalar>(
    header: &Header,
    message: &[T],
    all: &mut [RowOutcome<T>],
) -> Result<Range<usize>, Error> {
    if all.len() != header.shape.rows {
        return Err(Error::ShapeMismatch {
            what: "outcomes",
            expected: header.shape.rows,
            got: all.len(),
        });
    }
    if message.len() < HEADER_LEN + 2 || !header.matches(&message[..HEADER_LEN]) {
        return Err(bad("its header names another config or shape"));
    }
    let (Some(first), Some(rows)) = (
        as_count(message[HEADER_LEN]),
        as_count(message[HEADER_LEN + 1]),
    ) else {
        return Err(bad("its first row or row count is not a count"));
    };
    if first + rows > all.len() {
        return Err(bad("it names rows outside the batch"));
    }
    if message.len() != message_len(rows) {
        return Err(Error::ShapeMismatch {
            what: "message",
            expected: message_len(rows),
            got: message.len(),
        });
    }
    for (slot, record) in all[first..first + rows]
        .iter_mut()
        .zip(message[HEADER_LEN + 2..].chunks_exact(RECORD_LEN))
    {
        *slot = RowOutcome::read_record(record).ok_or(bad("a record holds impossible values"))?;
    }
    Ok(first..first + rows)
}

/// Reads every worker's message (the all-gather's result) into one outcome
/// per row, refusing messages from another config or shape, rows sent twice,
/// and rows no worker sent (a missing worker).
#[cfg(feature = "alloc")]
pub fn gather<T: Scalar>(
    header: &Header,
    messages: &[&[T]],
) -> Result<alloc::vec::Vec<RowOutcome<T>>, Error> {
    use alloc::vec;
    let rows = header.shape.rows;
    let mut outcomes = vec![RowOutcome::default(); rows];
    let mut seen = vec![false; rows];
    let mut scratch = vec![RowOutcome::default(); rows];
    for message in messages {
        let got = read_message(header, message, &mut scratch)?;
        for j in got {
            if core::mem::replace(&mut seen[j], true) {
                return Err(bad("two workers sent the same row"));
            }
            outcomes[j] = scratch[j];
        }
    }
    if seen.iter().any(|&s| !s) {
        return Err(bad("no worker sent some rows: a worker is missing"));
    }
    Ok(outcomes)
}

/// A whole number in `[0, 2^24]`, or `None`.
fn as_count<T: Scalar>(x: T) -> Option<usize> {
    let x = x.to_f64()?;
    ((0.0..=EXACT).contains(&x) && libm::trunc(x) == x).then_some(x as usize)
}

/// The reduction factor of the whole batch, from every row's outcome: the
/// loss is the sum over workers of `factor · Σ_{j in own rows} l_j`.
pub fn reduction<T: Scalar>(config: &Config, outcomes: &[RowOutcome<T>]) -> T {
    let anchors = outcomes.iter().filter(|o| o.anchor).count();
    reduction_factor(config.reduction, outcomes.len(), anchors)
}

/// The checks of a worker's phase on a batch of `rows` rows: its own rows a
/// run inside the batch, and (phase 2) one outcome per row.
///
/// ```
/// use conr_core::shard::check_phase;
/// assert!(check_phase(4, &(1..3), None).is_ok());
/// assert!(check_phase(4, &(3..5), None).is_err());
/// assert!(check_phase(4, &(0..4), Some(3)).is_err());
/// ```
pub fn check_phase(rows: usize, own: &Range<usize>, outcomes: Option<usize>) -> Result<(), Error> {
    if own.start > own.end || own.end > rows {
        return Err(Error::InvalidConfig {
            field: "rows",
            why: "a worker's rows must be a run inside the batch",
        });
    }
    match outcomes {
        Some(got) if got != rows => Err(Error::ShapeMismatch {
            what: "outcomes",
            expected: rows,
            got,
        }),
        _ => Ok(()),
    }
}

/// A worker's part of the loss: `factor · Σ_{j in rows} l_j`, with the
/// factor of the whole batch (`outcomes` holds every row).
pub fn part_loss<T: Scalar>(config: &Config, outcomes: &[RowOutcome<T>], rows: Range<usize>) -> T {
    let factor = reduction::<T>(config, outcomes);
    factor * outcomes[rows].iter().fold(T::zero(), |acc, o| acc + o.loss)
}

impl<T: Scalar> RowOutcome<T> {
    /// The row as [`RECORD_LEN`] scalars, the unit of a message: loss,
    /// anchor (0 or 1), |P|, |Q|, the outer factor, ln D, ln Σ_P e^s, |P|/n, 1/n,
    /// aggregation (0 mean of logs, 1 log of mean).
    ///
    /// ```
    /// use conr_core::stats::RowOutcome;
    /// let outcome = RowOutcome::<f32>::default();
    /// let record = outcome.to_record();
    /// assert_eq!(RowOutcome::from_record(&record), Some(outcome));
    /// assert_eq!(RowOutcome::<f32>::from_record(&record[..9]), None);
    /// ```
    pub fn to_record(&self) -> [T; RECORD_LEN] {
        let mut record = [T::zero(); RECORD_LEN];
        self.write_record(&mut record);
        record
    }

    /// The inverse of [`RowOutcome::to_record`]; `None` for a slice of
    /// another length or values no engine writes (non-finite values, flags
    /// other than 0 or 1, counts that are not whole).
    pub fn from_record(record: &[T]) -> Option<Self> {
        if record.len() != RECORD_LEN {
            return None;
        }
        Self::read_record(record)
    }

    fn write_record(&self, out: &mut [T]) {
        let flag = |b: bool| if b { T::one() } else { T::zero() };
        out[0] = self.loss;
        out[1] = flag(self.anchor);
        out[2] = cast(f64::from(self.positives));
        out[3] = cast(f64::from(self.negatives));
        let [
            outer,
            log_denominator,
            log_positive_sum,
            positive_share,
            inv_count,
        ] = self.parts();
        out[4] = outer;
        out[5] = log_denominator;
        out[6] = log_positive_sum;
        out[7] = positive_share;
        out[8] = inv_count;
        out[9] = flag(self.aggregation() == Aggregation::LogOfMean);
    }

    /// The inverse of `write_record`; `None` for values no engine writes.
    fn read_record(record: &[T]) -> Option<Self> {
        if record.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let flag = |x: T| -> Option<bool> {
            if x == T::one() {
                Some(true)
            } else if x.is_zero() {
                Some(false)
            } else {
                None
            }
        };
        let aggregation = if flag(record[9])? {
            Aggregation::LogOfMean
        } else {
            Aggregation::MeanOfLogs
        };
        Some(Self::from_parts(
            record[0],
            flag(record[1])?,
            as_count(record[2])? as u32,
            as_count(record[3])? as u32,
            [record[4], record[5], record[6], record[7], record[8]],
            aggregation,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs::Pair;
    use crate::stats::RowStats;

    #[test]
    fn records_round_trip_exactly() {
        let params = Config::official_agedb().params::<f32>().unwrap();
        let mut stats = RowStats::default();
        stats.push(Pair::Positive, 2.5);
        stats.push(Pair::Negative { log_weight: 0.3 }, 1.0);
        let outcome = stats.finish(&params, 8, 1.5);
        let header = Header::new(
            &params.config,
            Shape {
                rows: 8,
                dim: 3,
                label_dim: 1,
            },
        );
        let mut message = [0.0f32; HEADER_LEN + 2 + RECORD_LEN];
        write_message(&header, 5, &[outcome], &mut message).unwrap();
        let mut all = [RowOutcome::default(); 8];
        assert_eq!(read_message(&header, &message, &mut all).unwrap(), 5..6);
        assert_eq!(all[5], outcome);
    }

    #[test]
    fn bad_messages_are_refused() {
        let config = Config::paper();
        let shape = Shape {
            rows: 4,
            dim: 2,
            label_dim: 1,
        };
        let header = Header::new(&config, shape);
        let outcome = RowOutcome::<f64>::default();
        let mut message = [0.0; HEADER_LEN + 2 + 2 * RECORD_LEN];
        write_message(&header, 2, &[outcome, outcome], &mut message).unwrap();
        let mut all = [outcome; 4];
        // Another shape, another config, a short message, rows outside the batch.
        let wider = Header::new(&config, Shape { dim: 3, ..shape });
        assert!(read_message(&wider, &message, &mut all).is_err());
        let hotter = Header::new(
            &Config {
                temperature: 0.2,
                ..config
            },
            shape,
        );
        assert!(read_message(&hotter, &message, &mut all).is_err());
        assert!(read_message(&header, &message[..message.len() - 1], &mut all).is_err());
        let mut outside = message;
        outside[HEADER_LEN] = 3.0;
        assert!(read_message(&header, &outside, &mut all).is_err());
        let mut impossible = message;
        impossible[HEADER_LEN + 2 + 1] = 0.5; // an anchor flag of 0.5
        assert!(read_message(&header, &impossible, &mut all).is_err());
        assert!(write_message(&header, 3, &[outcome, outcome], &mut message).is_err());
    }
}
