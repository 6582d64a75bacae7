use std::fmt;

/// Everything `conr-burn` can refuse or fail at.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The batch or the config is invalid: conr's own checks (non-finite
    /// values, no rows, a bad temperature, ...).
    Input(conr_core::Error),
    /// The tensors do not form a batch: their ranks or sizes disagree.
    Shape(String),
    /// The tensors live on devices or backends this op cannot use.
    Device(String),
    /// burn failed to read a tensor or to bring up its wgpu runtime.
    Burn(String),
    /// conr's GPU engine refused the batch or failed on the device.
    Gpu(conr_wgpu::GpuError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(e) => write!(f, "conr: {e}"),
            Error::Shape(why) => write!(f, "conr: {why}"),
            Error::Device(why) => write!(f, "conr: {why}"),
            Error::Burn(why) => write!(f, "conr: burn: {why}"),
            Error::Gpu(e) => write!(f, "conr: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Input(e) => Some(e),
            Error::Gpu(e) => Some(e),
            _ => None,
        }
    }
}

impl From<conr_core::Error> for Error {
    fn from(e: conr_core::Error) -> Self {
        Error::Input(e)
    }
}

impl From<conr_wgpu::GpuError> for Error {
    fn from(e: conr_wgpu::GpuError) -> Self {
        match e {
            conr_wgpu::GpuError::Input(e) => Error::Input(e),
            other => Error::Gpu(other),
        }
    }
}
