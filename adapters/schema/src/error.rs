use std::fmt;
use std::path::PathBuf;

/// What can go wrong reading an input: the file, its JSON, or its values.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the schema (a missing or unknown key, a wrong type).
    Json {
        /// The file.
        path: PathBuf,
        /// What serde found.
        source: serde_json::Error,
    },
    /// A name in the config is not one of the known ones.
    Name {
        /// The key, as written in the file (`config.label_metric`).
        key: String,
        /// The name found there.
        value: String,
        /// The core's error, with the names it may be.
        source: conr_core::Error,
    },
    /// A key of a `config` object is not a knob, or its value is not of
    /// the knob's kind.
    Knob {
        /// The key, as written in the file (`config.temprature`).
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// The case's values break one of the core's rules.
    Invalid(conr_core::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Error::Json { path, source } => {
                write!(f, "{} is not a valid input file: {source}", path.display())
            }
            Error::Name { key, value, source } => match source {
                conr_core::Error::UnknownName { expected, .. } => write!(
                    f,
                    "{key}: unknown value {value:?} (expected one of {})",
                    expected.join(", ")
                ),
                other => write!(f, "{key}: {value:?}: {other}"),
            },
            Error::Knob { key, why } => write!(f, "{key}: {why}"),
            Error::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            Error::Json { source, .. } => Some(source),
            Error::Name { source, .. } => Some(source),
            Error::Knob { .. } => None,
            Error::Invalid(e) => Some(e),
        }
    }
}

impl From<conr_core::Error> for Error {
    fn from(e: conr_core::Error) -> Self {
        Error::Invalid(e)
    }
}
