//! What every engine returns for one batch (needs the `alloc` feature).

use alloc::vec::Vec;

use crate::Scalar;
use crate::stats::RowOutcome;

/// The loss, its gradient, the anchors and the pair counts of one batch: what
/// every engine (the CPU reference, the fast CPU engine, the GPU engine)
/// returns, so results compare field by field across engines.
///
/// ```
/// use conr_core::Output;
///
/// let out = Output { loss: 0.5f32, grad_features: vec![0.25, -0.25], anchors: vec![true],
///                    positives: vec![0], negatives: vec![1] };
/// let wide: Output<f64> = out.cast();
/// assert_eq!(wide.loss, 0.5);
/// assert_eq!(wide.grad_features, [0.25, -0.25]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Output<T> {
    /// The scalar loss `L`.
    pub loss: T,
    /// `∂L/∂features`, row-major M×D like the features.
    pub grad_features: Vec<T>,
    /// Whether each row is an anchor (has at least one negative).
    pub anchors: Vec<bool>,
    /// `|P_j|`: each row's positives, itself excluded.
    pub positives: Vec<u32>,
    /// `|Q_j|`: each row's negatives.
    pub negatives: Vec<u32>,
}

impl<T: Scalar> Output<T> {
    /// The same output in another precision (f32 results widened for
    /// comparison with f64, say). A value that does not fit becomes NaN.
    pub fn cast<U: Scalar>(self) -> Output<U> {
        let convert = |x: T| x.to_f64().and_then(U::from).unwrap_or_else(U::nan);
        Output {
            loss: convert(self.loss),
            grad_features: self.grad_features.into_iter().map(convert).collect(),
            anchors: self.anchors,
            positives: self.positives,
            negatives: self.negatives,
        }
    }
}

/// One worker's result of phase 2 of the data-parallel protocol
/// ([`crate::shard`]): its part of the loss and its rows' gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Part<T> {
    /// Its part of the loss: `factor · Σ_{j in its rows} l_j`
    /// ([`crate::shard::part_loss`]). The loss is the sum of every worker's part.
    pub loss: T,
    /// `∂L/∂features` of its rows, row-major (rows × D).
    pub grad_features: Vec<T>,
}

impl<T: Scalar> Output<T> {
    /// The output of a batch from phase 2's result over every row and every
    /// row's outcome.
    pub fn from_part(part: Part<T>, outcomes: &[RowOutcome<T>]) -> Self {
        Self {
            loss: part.loss,
            grad_features: part.grad_features,
            anchors: outcomes.iter().map(|o| o.anchor).collect(),
            positives: outcomes.iter().map(|o| o.positives).collect(),
            negatives: outcomes.iter().map(|o| o.negatives).collect(),
        }
    }
}
