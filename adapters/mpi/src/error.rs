use std::fmt;

/// What can go wrong on a rank.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The input file could not be read or holds a bad case.
    Input(conr_schema::Error),
    /// conr refused the batch or the config, or its engine failed.
    Conr(conr_core::Error),
    /// This rank's rows do not have the lengths the global shape needs.
    LocalRows {
        /// The rank.
        rank: usize,
        /// Which input.
        what: &'static str,
        /// The values it holds.
        got: usize,
        /// The values its rows need.
        expected: usize,
    },
    /// A run of values is too long for MPI's 32-bit counts.
    TooManyValues(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(e) => write!(f, "{e}"),
            Error::Conr(e) => write!(f, "{e}"),
            Error::LocalRows {
                rank,
                what,
                got,
                expected,
            } => write!(
                f,
                "rank {rank} holds {got} {what} values, but its rows need {expected}"
            ),
            Error::TooManyValues(n) => write!(f, "{n} values exceed MPI's 32-bit counts"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Input(e) => Some(e),
            Error::Conr(e) => Some(e),
            _ => None,
        }
    }
}

impl From<conr_core::Error> for Error {
    fn from(e: conr_core::Error) -> Self {
        Error::Conr(e)
    }
}

impl From<conr_schema::Error> for Error {
    fn from(e: conr_schema::Error) -> Self {
        Error::Input(e)
    }
}
