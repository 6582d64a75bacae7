// requires: nothing
//
// What every conr kernel shares: the constants, the structs and the bindings
// of group 0, whose sizes, offsets, numbers and values the host mirrors in
// adapters/wgpu/src/layout.rs, kernels.rs and status.rs (naga tests there
// hold each to the host's).
//
// WGSL has no imports: each file of this folder names on its first line the
// files it requires, and conr_wgpu::shaders::module puts them before it, each
// once. naga validates every file with its requirements alone.


// Rows and columns of a logit tile; must equal conr_wgpu::TILE.
const TILE: u32 = 64u;
// Threads per side of a workgroup (16×16, each owning a 4×4 block of the tile).
const SIDE: u32 = 16u;
// Features per staged slice of a tile.
const DEPTH: u32 = 16u;
// Threads of the one-dimensional kernels; must equal conr_wgpu::LINEAR_WORKGROUP.
const LINEAR: u32 = 64u;
// Threads of the loss reduction; must equal conr_wgpu::REDUCE_WORKGROUP.
const REDUCE: u32 = 256u;
// ε of the normalisation, as in conr_core::normalize::EPSILON.
const EPSILON: f32 = 1e-12;
// The cap on a log pushing weight: conr_core::pairs::LOG_WEIGHT_CEILING.
const LOG_WEIGHT_CEILING: f32 = 1e4;
// The largest f32: distances saturate there, as in conr_core::metric::distance.
const F32_MAX: f32 = 3.4028235e38;

// conr_core::MAX_ETA.
const MAX_ETA: f32 = 1e6;
// The codes of conr_core::rules::Rule, in the order of the checks.
const RULE_FEATURES_FINITE: u32 = 0u;
const RULE_LABELS_FINITE: u32 = 1u;
const RULE_PREDS_FINITE: u32 = 2u;
const RULE_ETA_FINITE: u32 = 3u;
const RULE_ETA_POSITIVE: u32 = 4u;
const RULE_ETA_AT_MOST: u32 = 5u;
const RULE_LABELS_NON_ZERO: u32 = 6u;
const RULE_PREDS_NON_ZERO: u32 = 7u;
// No rule is broken.
const RULES: u32 = 8u;
// A status word holds a row in its low 29 bits and a rule above them.
const ROW_BITS: u32 = 29u;

const FLAG_PADDING: u32 = 1u;
const FLAG_OUTER_WEIGHT: u32 = 2u;
const FLAG_SELF_COUNT: u32 = 4u;
const FLAG_ACCUMULATE: u32 = 8u;
const FLAG_ETA: u32 = 16u;
// A band pass (conr_core::band) over the positives or over the negatives.
const FLAG_BAND_POSITIVES: u32 = 32u;
const FLAG_BAND_NEGATIVES: u32 = 64u;
// Every dispatch of a call that takes the band (the mixed kernels' sides).
const FLAG_BANDED: u32 = 128u;
// The tile kernels write per-range partial statistics (stats_part) and ∂z
// blocks, which finish_rows and the last kernel merge: mixed precision
// always, f32 with more than one column range.
const FLAG_PARTS: u32 = 256u;

const METRIC_L1: u32 = 0u;
const METRIC_L2: u32 = 1u;
const METRIC_LINF: u32 = 2u;
const METRIC_ANGULAR: u32 = 3u;

const PUSH_EXP: u32 = 0u;
const PUSH_LINEAR: u32 = 1u;

const AGG_MEAN_OF_LOGS: u32 = 0u;

const REDUCTION_MEAN: u32 = 0u;
const REDUCTION_MEAN_ANCHORS: u32 = 1u;

const NEITHER: u32 = 0u;
const POSITIVE: u32 = 1u;
const NEGATIVE: u32 = 2u;

// Mirrors conr_wgpu's `Uniforms` (#[repr(C)]; a naga test checks the layout).
struct Uniforms {
    rows: u32,
    dim: u32,
    label_dim: u32,
    metric: u32,
    row_offset: u32,
    row_count: u32,
    col_offset: u32,
    col_count: u32,
    threshold: f32,
    pred_threshold: f32,
    inv_temperature: f32,
    scale: f32,
    log_scale: f32,
    pushing: u32,
    aggregation: u32,
    flags: u32,
    reduction: u32,
    // The padded row length of the f16 features (a multiple of 16): the mixed kernels only.
    stride: u32,
    // Column ranges of the tile kernels: each row tile's columns are cut into
    // this many ranges of whole tiles, one workgroup each.
    splits: u32,
    // The rows the tile kernels own, local to the row chunk: [row_begin,
    // min(row_end, row_count)). One worker's rows (conr_core::shard), or all.
    row_begin: u32,
    row_end: u32,
    // With more than 1, the f32 logit tiles are summed in this many ranges
    // of features by row_stats_depth and kept (conr.wgsl's stored logits).
    depth_splits: u32,
    _pad1: u32,
}

// A running log-sum-exp: conr_core::stats::LogSumExp. Empty when sum == 0.
struct Lse {
    max: f32,
    sum: f32,
}

// conr_core::stats::RowStats (mirrored by conr_wgpu's `DeviceStats`).
struct RowStats {
    pos_max: f32,
    pos_sum: f32,
    neg_max: f32,
    neg_sum: f32,
    positive_logit_sum: f32,
    positives: u32,
    negatives: u32,
    _pad: u32,
}

// conr_core::stats::RowOutcome (mirrored by conr_wgpu's `DeviceOutcome`).
struct RowOutcome {
    loss: f32,
    anchor: u32,
    contributes: u32,
    log_denominator: f32,
    log_positive_sum: f32,
    positive_share: f32,
    inv_count: f32,
    // The outer factor of l_j: eta_j with outer_weight, else 1.
    outer: f32,
}

// The loss, the reduction factor and the anchor count (conr_wgpu's `Totals`).
struct Totals {
    loss: f32,
    factor: f32,
    anchors: u32,
    _pad: u32,
}

// What row k is to row j: conr_core::pairs::Pair.
struct Pair {
    kind: u32,
    // ln S_jk; meaningful for NEGATIVE with has_weight.
    log_weight: f32,
    // False for a zero weight (linear pushing with e = 0).
    has_weight: bool,
}

@group(0) @binding(0) var<uniform> uniforms: Uniforms;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read_write> z_out: array<f32>;
@group(0) @binding(3) var<storage, read> z_rows: array<f32>;
@group(0) @binding(4) var<storage, read> z_cols: array<f32>;
@group(0) @binding(5) var<storage, read> labels: array<f32>;
@group(0) @binding(6) var<storage, read> preds: array<f32>;
@group(0) @binding(7) var<storage, read> eta: array<f32>;
@group(0) @binding(8) var<storage, read_write> lengths: array<f32>;
@group(0) @binding(10) var<storage, read_write> stats: array<RowStats>;
@group(0) @binding(11) var<storage, read_write> outcomes: array<RowOutcome>;
@group(0) @binding(13) var<storage, read_write> totals: Totals;
@group(0) @binding(15) var<storage, read_write> dz: array<f32>;
// With the tile kernels' columns cut into `uniforms.splits` ranges, each
// range's statistics of every row: `splits` blocks of M rows (per band side,
// the positives' first).
@group(0) @binding(18) var<storage, read_write> stats_part: array<RowStats>;
// Whether the values obey conr_core::rules: 0 while they do; else the bitwise
// complement of (rule << ROW_BITS | row) for the first rule broken, at its
// first row (an atomicMax of complements keeps the smallest pair).
@group(0) @binding(21) var<storage, read_write> status: atomic<u32>;
// A band pass's rows in its sorted order, and for each block of 64 sorted
// rows the run of sorted columns [x, y) that can pair with them.
@group(0) @binding(19) var<storage, read> band_order: array<u32>;
@group(0) @binding(20) var<storage, read> band_ranges: array<vec2<u32>>;
// Each row's positive and negative counts, for a recorded call's caller.
@group(0) @binding(27) var<storage, read_write> counts_out: array<vec2<u32>>;

fn has_flag(flag: u32) -> bool {
    return (uniforms.flags & flag) != 0u;
}
