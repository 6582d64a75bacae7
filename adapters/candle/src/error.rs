//! conr's errors inside candle's, with their structure kept.

use std::fmt;

/// The core's error as a candle error carries it: inside
/// [`candle_core::Error::WrappedContext`], which is candle's one variant that
/// holds a `std::error::Error` a caller can downcast. [`core_error`] finds it
/// again in any candle error.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use conr_candle::{Config, conr_loss, core_error};
///
/// let device = Device::Cpu;
/// let features = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0]], &device)?;
/// let labels = Tensor::new(&[20.0f32, 60.0], &device)?;
/// let preds = Tensor::new(&[30.0f32, f32::NAN], &device)?;
/// let err = conr_loss(&features, &labels, &preds, None, &Config::paper()).unwrap_err();
/// assert_eq!(
///     core_error(&err),
///     Some(&conr_core::Error::NonFinite { what: "preds", row: 1 })
/// );
/// # Ok::<(), candle_core::Error>(())
/// ```
pub struct CoreError(pub conr_core::Error);

// candle prints the wrapped error with `{:?}`: it reads as the message.
impl fmt::Debug for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conr: {}", self.0)
    }
}

impl std::error::Error for CoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The core's error `e` as a candle error, raised by the op `op`.
pub(crate) fn core(op: &'static str) -> impl Fn(conr_core::Error) -> candle_core::Error {
    move |e| {
        candle_core::Error::WrappedContext {
            wrapped: Box::new(CoreError(e)),
            context: format!("in {op}"),
        }
        .bt()
    }
}

/// An error of this crate's own (a tensor conr cannot take), as a message.
pub(crate) fn msg(e: impl fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("conr: {e}")).bt()
}

/// The core's error inside `err`, if it holds one: through candle's context,
/// path and backtrace wrappers.
pub fn core_error(err: &candle_core::Error) -> Option<&conr_core::Error> {
    use candle_core::Error;
    match err {
        Error::WrappedContext { wrapped, .. } => wrapped.downcast_ref::<CoreError>().map(|e| &e.0),
        Error::Context { inner, .. }
        | Error::WithPath { inner, .. }
        | Error::WithBacktrace { inner, .. } => core_error(inner),
        _ => None,
    }
}
