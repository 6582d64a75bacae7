use std::fmt;

/// Everything that can go wrong on the GPU path.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GpuError {
    /// The batch or the config is invalid (the same checks as every engine).
    Input(conr_core::Error),
    /// No adapter was found. `tried` lists the backends that were searched.
    NoAdapter {
        /// The backends searched, e.g. `"VULKAN | GL"`.
        tried: String,
        /// What wgpu reported.
        reason: String,
    },
    /// The adapter refused to give a device.
    RequestDevice(String),
    /// The batch needs more than the device allows, even in chunks.
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// How much is needed.
        needed: u64,
        /// The device's limit.
        limit: u64,
    },
    /// A caller-owned buffer is too small or lacks a usage.
    BadBuffer {
        /// Which buffer.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Out of memory, a validation failure or an internal error, caught by an error scope.
    Device(String),
    /// The device was lost; build a new `GpuConr`.
    Lost(String),
    /// Reading results back failed.
    Readback(String),
    /// The device cannot do what was asked (mixed precision without tensor
    /// cores, say). Nothing falls back silently.
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// Why this device cannot.
        why: String,
    },
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::Input(e) => write!(f, "{e}"),
            GpuError::NoAdapter { tried, reason } => {
                write!(
                    f,
                    "no GPU adapter found (backends tried: {tried}): {reason}"
                )
            }
            GpuError::RequestDevice(e) => write!(f, "the GPU adapter gave no device: {e}"),
            GpuError::TooLarge {
                what,
                needed,
                limit,
            } => {
                write!(f, "{what} needs {needed}, but the device allows {limit}")
            }
            GpuError::BadBuffer { what, why } => write!(f, "buffer `{what}`: {why}"),
            GpuError::Device(e) => write!(f, "GPU error: {e}"),
            GpuError::Lost(e) => write!(f, "the GPU device was lost: {e}"),
            GpuError::Readback(e) => write!(f, "reading results from the GPU failed: {e}"),
            GpuError::Unsupported { what, why } => write!(f, "{what} is not supported here: {why}"),
        }
    }
}

impl std::error::Error for GpuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GpuError::Input(e) => Some(e),
            _ => None,
        }
    }
}

impl From<conr_core::Error> for GpuError {
    fn from(e: conr_core::Error) -> Self {
        GpuError::Input(e)
    }
}
