use bytemuck::{Pod, Zeroable};
use conr_core::{Aggregation, LabelMetric, Params as CoreParams, PushingKind, Reduction};

/// The uniform block of every dispatch; mirrors `struct Params` in `shaders/conr.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub(crate) struct Params {
    pub rows: u32,
    pub dim: u32,
    pub label_dim: u32,
    pub metric: u32,
    pub row_offset: u32,
    pub row_count: u32,
    pub col_offset: u32,
    pub col_count: u32,
    pub threshold: f32,
    pub pred_threshold: f32,
    pub inv_temperature: f32,
    pub scale: f32,
    pub log_scale: f32,
    pub pushing: u32,
    pub aggregation: u32,
    pub flags: u32,
    pub reduction: u32,
    /// The padded row length of the f16 features (mixed precision only).
    pub stride: u32,
    /// The column ranges of the mixed kernels.
    pub splits: u32,
    /// The rows the tile kernels own, local to the row chunk:
    /// `row_begin..min(row_end, row_count)` (a worker's rows, or all).
    pub row_begin: u32,
    pub row_end: u32,
    pub _pad: [u32; 2],
}

pub(crate) const FLAG_PADDING: u32 = 1;
pub(crate) const FLAG_OUTER_WEIGHT: u32 = 2;
pub(crate) const FLAG_SELF_COUNT: u32 = 4;
pub(crate) const FLAG_ACCUMULATE: u32 = 8;
pub(crate) const FLAG_WEIGHTS: u32 = 16;
pub(crate) const FLAG_BAND_POSITIVES: u32 = 32;
pub(crate) const FLAG_BAND_NEGATIVES: u32 = 64;

/// The size of [`Params`] in bytes.
pub(crate) const PARAMS_SIZE: u64 = std::mem::size_of::<Params>() as u64;

impl Params {
    /// The config part, for a batch of `rows × dim` with `label_dim`-wide labels.
    pub fn new(p: &CoreParams<f32>, rows: u32, dim: u32, label_dim: u32, weights: bool) -> Self {
        let c = &p.config;
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        Self {
            rows,
            dim,
            label_dim,
            metric: match c.label_metric {
                LabelMetric::L1 => 0,
                LabelMetric::L2 => 1,
                LabelMetric::Linf => 2,
                LabelMetric::Angular => 3,
            },
            row_offset: 0,
            row_count: rows,
            col_offset: 0,
            col_count: rows,
            threshold: p.threshold,
            pred_threshold: p.pred_threshold,
            inv_temperature: p.inv_temperature,
            scale: p.scale,
            // The shader tests e <= 0 itself for linear pushing; keep the value finite.
            log_scale: if p.log_scale.is_finite() {
                p.log_scale
            } else {
                0.0
            },
            pushing: match c.pushing.kind {
                PushingKind::Exp => 0,
                PushingKind::Linear => 1,
                PushingKind::Constant => 2,
            },
            aggregation: match c.aggregation {
                Aggregation::MeanOfLogs => 0,
                Aggregation::LogOfMean => 1,
            },
            flags: flag(c.denominator_padding, FLAG_PADDING)
                | flag(c.outer_weight, FLAG_OUTER_WEIGHT)
                | flag(c.self_in_positive_count, FLAG_SELF_COUNT)
                | flag(weights, FLAG_WEIGHTS),
            reduction: match c.reduction {
                Reduction::Mean => 0,
                Reduction::MeanAnchors => 1,
                Reduction::Sum => 2,
            },
            stride: 0,
            splits: 1,
            row_begin: 0,
            row_end: u32::MAX,
            _pad: [0; 2],
        }
    }
}
