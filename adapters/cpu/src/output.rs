/// What every engine returns for one batch.
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
