use core::fmt;

/// Everything that can go wrong in conr. One type for the whole workspace.
///
/// Each variant names the offending input, so a message points at the row or
/// the config field to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The batch has no rows.
    EmptyBatch,
    /// A width (feature dimension or label dimension) is zero.
    ZeroWidth {
        /// `"features"` or `"labels"`.
        what: &'static str,
    },
    /// A slice has the wrong length for the declared shape.
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// The length the shape requires.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A value is NaN or infinite.
    NonFinite {
        /// Which input.
        what: &'static str,
        /// The row that holds it.
        row: usize,
    },
    /// A per-sample weight is zero or negative. Weights scale the pushing power
    /// and must be positive.
    NonPositiveWeight {
        /// The row that holds it.
        row: usize,
    },
    /// A per-sample weight exceeds [`crate::MAX_WEIGHT`] (1e6).
    WeightTooLarge {
        /// The row that holds it.
        row: usize,
    },
    /// The `angular` metric needs label (and prediction) vectors of non-zero length.
    ZeroLengthLabel {
        /// `"labels"` or `"preds"`.
        what: &'static str,
        /// The row that holds it.
        row: usize,
    },
    /// A config value is out of its domain.
    InvalidConfig {
        /// The config field.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A caller-provided buffer is too small.
    BufferTooSmall {
        /// Which buffer.
        what: &'static str,
        /// The length needed.
        needed: usize,
        /// The length given.
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::EmptyBatch => f.write_str("the batch is empty: it needs at least one row"),
            Error::ZeroWidth { what } => write!(f, "{what} have width 0: it must be at least 1"),
            Error::ShapeMismatch {
                what,
                expected,
                got,
            } => write!(f, "{what} has length {got}, but the shape needs {expected}"),
            Error::NonFinite { what, row } => {
                write!(f, "{what} row {row} holds a NaN or infinite value")
            }
            Error::NonPositiveWeight { row } => {
                write!(
                    f,
                    "weights row {row} is zero or negative: weights must be > 0"
                )
            }
            Error::WeightTooLarge { row } => {
                write!(
                    f,
                    "weights row {row} exceeds 1e6: weights must be in (0, 1e6]"
                )
            }
            Error::ZeroLengthLabel { what, row } => write!(
                f,
                "{what} row {row} is the zero vector, which has no angle (angular metric)"
            ),
            Error::InvalidConfig { field, why } => write!(f, "invalid config `{field}`: {why}"),
            Error::BufferTooSmall { what, needed, got } => {
                write!(
                    f,
                    "buffer `{what}` has length {got}, but {needed} are needed"
                )
            }
        }
    }
}

impl core::error::Error for Error {}
