use std::fmt;

/// Everything `conr-burn` can refuse or fail at.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The batch or the config is invalid: conr's own checks (non-finite
    /// values, no rows, a bad temperature, ...), the same on every path.
    Input(conr_core::Error),
    /// conr's engine failed (on the device, say).
    Engine(conr_core::Error),
    /// The tensors do not form a batch: their ranks or sizes disagree.
    Shape(String),
    /// The tensors live on devices this op cannot use together.
    Device(String),
    /// burn failed to read a tensor or to bring up its wgpu runtime.
    Burn(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(e) | Error::Engine(e) => write!(f, "conr: {e}"),
            Error::Shape(why) | Error::Device(why) => write!(f, "conr: {why}"),
            Error::Burn(why) => write!(f, "conr: burn: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Input(e) | Error::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl From<conr_core::Error> for Error {
    fn from(e: conr_core::Error) -> Self {
        if e.is_input() {
            Error::Input(e)
        } else {
            Error::Engine(e)
        }
    }
}
