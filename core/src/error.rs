use core::fmt;

#[cfg(feature = "alloc")]
use alloc::string::String;

/// Everything that can go wrong in conr: one type for every engine and entry point.
///
/// The first variants are *input* errors ([`Error::is_input`]): the batch, the
/// config or a caller's buffer is wrong, and each names the offending input,
/// so a message points at the row or the config field to fix. The others are
/// *engine* errors: the engine could not do the work (a device refused, ran
/// out of memory or was lost, or the engine cannot do what was asked).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A pushing power `eta_j` (the inputs' weights) is zero or negative.
    /// It scales the pushing weights and must be positive.
    NonPositiveEta {
        /// The row that holds it.
        row: usize,
    },
    /// A pushing power `eta_j` exceeds [`crate::MAX_ETA`] (1e6).
    EtaTooLarge {
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
    /// A name (of a preset, a metric, an engine, ...) is not one of the known ones.
    UnknownName {
        /// What the name was for (`"label_metric"`, `"engine"`, ...).
        field: &'static str,
        /// The names it may be.
        expected: &'static [&'static str],
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
    /// The batch needs more than the engine's device allows.
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// How much is needed.
        needed: u64,
        /// The device's limit.
        limit: u64,
    },
    /// A caller-owned device buffer is too small, lacks a usage or is misaligned.
    #[cfg(feature = "alloc")]
    BadBuffer {
        /// Which buffer.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The engine cannot do what was asked on this machine (a GPU without
    /// tensor cores asked for mixed precision, an engine this build left
    /// out). Nothing falls back silently.
    #[cfg(feature = "alloc")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// Why it cannot be done here.
        why: String,
    },
    /// The engine's device is missing or refused to start (no adapter, no device).
    #[cfg(feature = "alloc")]
    Unavailable(String),
    /// The device ran out of memory.
    #[cfg(feature = "alloc")]
    OutOfMemory(String),
    /// The device was lost; build a new engine.
    #[cfg(feature = "alloc")]
    DeviceLost(String),
    /// Any other device failure: a validation or internal error caught on the
    /// device, or reading results back failed.
    #[cfg(feature = "alloc")]
    Device(String),
}

impl Error {
    /// Whether the input is at fault (the batch, the config, a name or a
    /// caller's buffer), as opposed to the engine or its device.
    ///
    /// ```
    /// use conr_core::Error;
    /// assert!(Error::EmptyBatch.is_input());
    /// assert!(!Error::TooLarge { what: "rows", needed: 2, limit: 1 }.is_input());
    /// ```
    pub fn is_input(&self) -> bool {
        match self {
            Error::EmptyBatch
            | Error::ZeroWidth { .. }
            | Error::ShapeMismatch { .. }
            | Error::NonFinite { .. }
            | Error::NonPositiveEta { .. }
            | Error::EtaTooLarge { .. }
            | Error::ZeroLengthLabel { .. }
            | Error::InvalidConfig { .. }
            | Error::UnknownName { .. }
            | Error::BufferTooSmall { .. } => true,
            #[cfg(feature = "alloc")]
            Error::BadBuffer { .. } => true,
            Error::TooLarge { .. } => false,
            #[cfg(feature = "alloc")]
            Error::Unsupported { .. }
            | Error::Unavailable(_)
            | Error::OutOfMemory(_)
            | Error::DeviceLost(_)
            | Error::Device(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            Error::NonPositiveEta { row } => write!(
                f,
                "weights row {row} is zero or negative: each eta must be > 0 (conr works with ln eta, \
                 which a zero weight does not have; where the official code weights a row 0, \
                 give it a tiny positive weight)"
            ),
            Error::EtaTooLarge { row } => write!(
                f,
                "weights row {row} exceeds 1e6: each eta must be in (0, 1e6]"
            ),
            Error::ZeroLengthLabel { what, row } => write!(
                f,
                "{what} row {row} is the zero vector, which has no angle (angular metric)"
            ),
            Error::InvalidConfig { field, why } => write!(f, "invalid config `{field}`: {why}"),
            Error::UnknownName { field, expected } => {
                write!(f, "unknown `{field}`: expected one of ")?;
                for (i, name) in expected.iter().enumerate() {
                    let comma = if i == 0 { "" } else { ", " };
                    write!(f, "{comma}{name}")?;
                }
                Ok(())
            }
            Error::BufferTooSmall { what, needed, got } => write!(
                f,
                "buffer `{what}` has length {got}, but {needed} are needed"
            ),
            Error::TooLarge {
                what,
                needed,
                limit,
            } => write!(f, "{what} needs {needed}, but the device allows {limit}"),
            #[cfg(feature = "alloc")]
            Error::BadBuffer { what, why } => write!(f, "buffer `{what}`: {why}"),
            #[cfg(feature = "alloc")]
            Error::Unsupported { what, why } => write!(f, "{what} is not supported here: {why}"),
            #[cfg(feature = "alloc")]
            Error::Unavailable(why) => write!(f, "the engine's device is unavailable: {why}"),
            #[cfg(feature = "alloc")]
            Error::OutOfMemory(why) => write!(f, "the device ran out of memory: {why}"),
            #[cfg(feature = "alloc")]
            Error::DeviceLost(why) => write!(f, "the device was lost: {why}"),
            #[cfg(feature = "alloc")]
            Error::Device(why) => write!(f, "device error: {why}"),
        }
    }
}

impl core::error::Error for Error {}
