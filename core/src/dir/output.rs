//! What the companion losses' engines return (needs the `alloc` feature).

use alloc::vec::Vec;

/// RankSim's loss and gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct RankSimOutput<T> {
    /// The loss, summed over the subset's rows.
    pub loss: T,
    /// `∂loss/∂features`, M×D (zero for rows outside the subset).
    pub grad_features: Vec<T>,
    /// The subset's rows, in the order the ranks were taken over.
    pub rows: Vec<usize>,
}

/// Rank-N-Contrast's loss and gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct RncOutput<T> {
    /// The loss, the mean over ordered pairs.
    pub loss: T,
    /// `∂loss/∂features`, n×D.
    pub grad_features: Vec<T>,
}

/// Balanced MSE's loss and gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancedMseOutput<T> {
    /// The loss, the mean over rows (times 2σ²).
    pub loss: T,
    /// `∂loss/∂preds`, n×L.
    pub grad_preds: Vec<T>,
    /// `∂loss/∂σ`.
    pub grad_noise_sigma: T,
}
