// ConR on the GPU: the streaming forward and backward passes of DESIGN §2 in f32.
//
// Every function here mirrors a function of conr-core with the same name (see
// the comment on each); the property tests hold the two to each other. Memory
// is O(M·D): logits are recomputed tile by tile and never stored.
//
// Dispatch order (adapters/wgpu/src/record.rs):
//   check_values → normalize → row_stats → finish_rows → reduce_loss → backward
//   → normalize_backward (→ export_counts, where a recorded call asks for the counts)
// A recorded call builds its band plan on the device first (band_plan.wgsl).
// Values that break a rule of conr_core::rules make the loss and the gradient NaN.
// The mixed-precision kernels (conr_mixed.wgsl, appended to this file with the
// f16 and cooperative-matrix extensions enabled) replace row_stats, backward
// and normalize_backward.
// Large batches run in row chunks: a dispatch sees rows [row_offset, +row_count)
// through `z_rows` and columns [col_offset, +col_count) through `z_cols`.

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
    // Column ranges of the mixed kernels (conr_mixed.wgsl).
    splits: u32,
    // The rows the tile kernels own, local to the row chunk: [row_begin,
    // min(row_end, row_count)). One worker's rows (conr_core::shard), or all.
    row_begin: u32,
    row_end: u32,
    _pad0: u32,
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

// 16 features × 64 rows, four rows per vec4: 4 KiB each.
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 256>;
// The 64×64 tile of H in the backward pass: 16 KiB.
var<workgroup> tile_h: array<f32, 4096>;
var<workgroup> merged: array<RowStats, 64>;
var<workgroup> partial_loss: array<f32, 256>;
var<workgroup> partial_anchors: array<u32, 256>;

fn has_flag(flag: u32) -> bool {
    return (uniforms.flags & flag) != 0u;
}

// ------------------------------------------------------------- band passes

fn banded() -> bool {
    return has_flag(FLAG_BAND_POSITIVES | FLAG_BAND_NEGATIVES);
}

// The row at position `pos` of this pass: the chunk's own order in a dense
// pass, the band's sorted order in a band pass (one chunk, offsets 0).
fn at(pos: u32) -> u32 {
    if (banded()) {
        return band_order[pos];
    }
    return pos;
}

// The positions of the columns that row tile `block` visits.
fn tile_columns(block: u32) -> vec2<u32> {
    if (banded()) {
        return band_ranges[block];
    }
    return vec2<u32>(0u, uniforms.col_count);
}

// Whether a pair of this kind counts in this pass: a band pass takes only its
// own kind, so that no pair is counted twice.
fn keeps(kind: u32) -> bool {
    if (has_flag(FLAG_BAND_POSITIVES)) {
        return kind == POSITIVE;
    }
    if (has_flag(FLAG_BAND_NEGATIVES)) {
        return kind == NEGATIVE;
    }
    return kind != NEITHER;
}

// ---------------------------------------------------------------- metric.rs

// conr_core::metric::norm over a label vector at `base` of `data`.
fn label_norm(is_pred: bool, base: u32) -> f32 {
    var big = 0.0;
    for (var i = 0u; i < uniforms.label_dim; i++) {
        big = max(big, abs(label_at(is_pred, base + i)));
    }
    if (big == 0.0) {
        return 0.0;
    }
    var sum = 0.0;
    for (var i = 0u; i < uniforms.label_dim; i++) {
        let r = label_at(is_pred, base + i) / big;
        sum += r * r;
    }
    return big * sqrt(sum);
}

fn label_at(is_pred: bool, index: u32) -> f32 {
    if (is_pred) {
        return preds[index];
    }
    return labels[index];
}

// conr_core::metric::distance between rows j and k of labels (or predictions).
fn distance(is_pred: bool, j: u32, k: u32) -> f32 {
    let l = uniforms.label_dim;
    let a = j * l;
    let b = k * l;
    if (l == 1u && uniforms.metric != METRIC_ANGULAR) {
        return min(abs(label_at(is_pred, a) - label_at(is_pred, b)), F32_MAX);
    }
    if (uniforms.metric == METRIC_ANGULAR) {
        let na = label_norm(is_pred, a);
        let nb = label_norm(is_pred, b);
        if (na == 0.0 || nb == 0.0) {
            return 0.0;
        }
        var diff = 0.0;
        var sum = 0.0;
        for (var i = 0u; i < l; i++) {
            let u = label_at(is_pred, a + i) / na;
            let v = label_at(is_pred, b + i) / nb;
            diff += (u - v) * (u - v);
            sum += (u + v) * (u + v);
        }
        return 2.0 * atan2(sqrt(diff), sqrt(sum));
    }
    var big = 0.0;
    var total = 0.0;
    for (var i = 0u; i < l; i++) {
        let d = abs(label_at(is_pred, a + i) - label_at(is_pred, b + i));
        big = max(big, d);
        total += d;
    }
    if (uniforms.metric == METRIC_L1) {
        return min(total, F32_MAX);
    }
    if (uniforms.metric == METRIC_LINF || big == 0.0) {
        return min(big, F32_MAX);
    }
    var sum = 0.0;
    for (var i = 0u; i < l; i++) {
        let r = (label_at(is_pred, a + i) - label_at(is_pred, b + i)) / big;
        sum += r * r;
    }
    return min(big * sqrt(sum), F32_MAX);
}

// ----------------------------------------------------------------- pairs.rs

// ln eta_j (0 without eta).
fn log_eta(j: u32) -> f32 {
    if (has_flag(FLAG_ETA)) {
        return log(eta[j]);
    }
    return 0.0;
}

// conr_core::pairs::log_pushing_weight, with the zero weight of linear pushing
// (e <= 0) reported as has_weight = false instead of −∞.
fn log_pushing_weight(log_eta_j: f32, label_distance: f32) -> Pair {
    var log_g = 0.0;
    if (uniforms.pushing == PUSH_EXP) {
        log_g = uniforms.scale * label_distance;
    } else if (uniforms.pushing == PUSH_LINEAR) {
        if (uniforms.scale <= 0.0) {
            return Pair(NEGATIVE, 0.0, false);
        }
        log_g = uniforms.log_scale + log(label_distance);
    }
    return Pair(NEGATIVE, min(log_eta_j + log_g, LOG_WEIGHT_CEILING), true);
}

// conr_core::pairs::Pair::classify_both's decision for j ≠ k, from the two
// distances and both rows' ln eta. Returns the pair for j; the pair for k
// only differs in its pushing weight, written to `kj`.
fn classify_distances(label_distance: f32, pred_distance: f32, log_eta_j: f32, log_eta_k: f32, kj: ptr<function, Pair>) -> Pair {
    if (label_distance <= uniforms.threshold) {
        *kj = Pair(POSITIVE, 0.0, false);
        return Pair(POSITIVE, 0.0, false);
    }
    if (pred_distance <= uniforms.pred_threshold) {
        *kj = log_pushing_weight(log_eta_k, label_distance);
        return log_pushing_weight(log_eta_j, label_distance);
    }
    *kj = Pair(NEITHER, 0.0, false);
    return Pair(NEITHER, 0.0, false);
}

// conr_core::pairs::Pair::classify_both: what k is to j, and what j is to k.
// Returns the pair for j; the pair for k only differs in its pushing weight, written to `kj`.
fn classify_both(j: u32, k: u32, kj: ptr<function, Pair>) -> Pair {
    if (j == k) {
        *kj = Pair(NEITHER, 0.0, false);
        return Pair(NEITHER, 0.0, false);
    }
    let label_distance = distance(false, j, k);
    // A close label makes a positive whatever the predictions and eta.
    if (label_distance <= uniforms.threshold) {
        return classify_distances(label_distance, F32_MAX, 0.0, 0.0, kj);
    }
    return classify_distances(label_distance, distance(true, j, k), log_eta(j), log_eta(k), kj);
}

// ------------------------------------------------------------ staged keys

// The current tile's columns: labels, predictions and ln eta (one-wide labels
// under l1, l2 or linf: the fast path), and their outcomes (backward pass).
var<workgroup> col_label: array<f32, 64>;
var<workgroup> col_pred: array<f32, 64>;
var<workgroup> col_log_eta: array<f32, 64>;
var<workgroup> col_outcome: array<RowOutcome, 64>;

// What the classification needs of one row, kept in registers (fast path).
struct RowKey {
    label: f32,
    pred: f32,
    log_eta: f32,
}

// One-wide labels under a coordinate metric: every distance is |a − b|
// (conr_core::metric::distance), so the keys of a tile are staged once.
fn fast_keys() -> bool {
    return uniforms.label_dim == 1u && uniforms.metric != METRIC_ANGULAR;
}

fn row_key(j: u32) -> RowKey {
    if (!fast_keys() || j >= uniforms.rows) {
        return RowKey(0.0, 0.0, 0.0);
    }
    return RowKey(labels[j], preds[j], log_eta(j));
}

// Thread t < 64 stages column col_base + t of the tile's column chunk (fast
// path only). A barrier must separate it from the tile's readers.
fn stage_keys(col_base: u32, t: u32) {
    if (fast_keys() && t < TILE && col_base + t < uniforms.col_count) {
        let k = uniforms.col_offset + at(col_base + t);
        col_label[t] = labels[k];
        col_pred[t] = preds[k];
        col_log_eta[t] = log_eta(k);
    }
}

// Thread t < 64 stages the outcome of column col_base + t (backward passes).
fn stage_outcomes(col_base: u32, t: u32) {
    if (t < TILE && col_base + t < uniforms.col_count) {
        col_outcome[t] = outcomes[uniforms.col_offset + at(col_base + t)];
    }
}

// classify_both for row j (key `row`) and column `col` of the staged tile.
fn classify_staged(j: u32, k: u32, row: RowKey, col: u32, kj: ptr<function, Pair>) -> Pair {
    if (!fast_keys()) {
        return classify_both(j, k, kj);
    }
    if (j == k) {
        *kj = Pair(NEITHER, 0.0, false);
        return Pair(NEITHER, 0.0, false);
    }
    let label_distance = min(abs(row.label - col_label[col]), F32_MAX);
    let pred_distance = min(abs(row.pred - col_pred[col]), F32_MAX);
    return classify_distances(label_distance, pred_distance, row.log_eta, col_log_eta[col], kj);
}

// ----------------------------------------------------------------- stats.rs

// conr_core::stats::LogSumExp::push.
fn lse_push(acc: Lse, x: f32) -> Lse {
    if (acc.sum == 0.0) {
        return Lse(x, 1.0);
    }
    if (x > acc.max) {
        return Lse(x, acc.sum * exp(acc.max - x) + 1.0);
    }
    return Lse(acc.max, acc.sum + exp(x - acc.max));
}

// conr_core::stats::LogSumExp::merge.
fn lse_merge(a: Lse, b: Lse) -> Lse {
    if (b.sum == 0.0) {
        return a;
    }
    if (a.sum == 0.0) {
        return b;
    }
    let m = max(a.max, b.max);
    return Lse(m, a.sum * exp(a.max - m) + b.sum * exp(b.max - m));
}

fn empty_stats() -> RowStats {
    return RowStats(0.0, 0.0, 0.0, 0.0, 0.0, 0u, 0u, 0u);
}

// conr_core::stats::RowStats::push.
fn stats_push(s: RowStats, pair: Pair, logit: f32) -> RowStats {
    var out = s;
    if (pair.kind == POSITIVE) {
        let p = lse_push(Lse(s.pos_max, s.pos_sum), logit);
        out.pos_max = p.max;
        out.pos_sum = p.sum;
        out.positive_logit_sum += logit;
        out.positives += 1u;
    } else if (pair.kind == NEGATIVE) {
        out.negatives += 1u;
        if (pair.has_weight) {
            let n = lse_push(Lse(s.neg_max, s.neg_sum), logit + pair.log_weight);
            out.neg_max = n.max;
            out.neg_sum = n.sum;
        }
    }
    return out;
}

// conr_core::stats::RowStats::merge.
fn stats_merge(a: RowStats, b: RowStats) -> RowStats {
    var out = a;
    let p = lse_merge(Lse(a.pos_max, a.pos_sum), Lse(b.pos_max, b.pos_sum));
    let n = lse_merge(Lse(a.neg_max, a.neg_sum), Lse(b.neg_max, b.neg_sum));
    out.pos_max = p.max;
    out.pos_sum = p.sum;
    out.neg_max = n.max;
    out.neg_sum = n.sum;
    out.positive_logit_sum = a.positive_logit_sum + b.positive_logit_sum;
    out.positives = a.positives + b.positives;
    out.negatives = a.negatives + b.negatives;
    return out;
}

// conr_core::stats::RowStats::finish.
fn finish(s: RowStats, eta: f32) -> RowOutcome {
    var o = RowOutcome(0.0, u32(s.negatives > 0u), 0u, 0.0, 0.0, 0.0, 0.0, 1.0);
    if (has_flag(FLAG_OUTER_WEIGHT)) {
        o.outer = eta;
    }
    if (s.negatives == 0u || s.positives == 0u) {
        return o;
    }
    o.contributes = 1u;
    var d = lse_merge(Lse(s.pos_max, s.pos_sum), Lse(s.neg_max, s.neg_sum));
    if (has_flag(FLAG_PADDING)) {
        let padding = max(uniforms.rows - min(s.positives, uniforms.rows), 1u);
        d = lse_merge(d, Lse(log(f32(padding)), 1.0));
    }
    let positives = f32(s.positives);
    var count = positives;
    if (has_flag(FLAG_SELF_COUNT)) {
        count += 1.0;
    }
    o.log_denominator = d.max + log(d.sum);
    o.log_positive_sum = s.pos_max + log(s.pos_sum);
    o.positive_share = positives / count;
    o.inv_count = 1.0 / count;
    var row_loss: f32;
    if (uniforms.aggregation == AGG_MEAN_OF_LOGS) {
        let mean_logit = s.positive_logit_sum / positives;
        row_loss = o.positive_share * ((d.max - mean_logit) + log(d.sum));
    } else {
        row_loss = ((d.max - o.log_positive_sum) + log(d.sum)) + log(count);
    }
    o.loss = o.outer * row_loss;
    return o;
}

// conr_core::stats::RowOutcome::gradient then RowGrad::coefficient: G_jk.
fn coefficient(o: RowOutcome, factor: f32, pair: Pair, logit: f32) -> f32 {
    if (o.contributes == 0u || pair.kind == NEITHER) {
        return 0.0;
    }
    let c = factor * o.outer;
    var push = c;
    var pull = c;
    if (uniforms.aggregation == AGG_MEAN_OF_LOGS) {
        push = c * o.positive_share;
        pull = c * o.inv_count;
    }
    if (pair.kind == POSITIVE) {
        let softmax = push * exp(logit - o.log_denominator);
        if (uniforms.aggregation == AGG_MEAN_OF_LOGS) {
            return softmax - pull;
        }
        return softmax - pull * exp(logit - o.log_positive_sum);
    }
    if (!pair.has_weight) {
        return 0.0;
    }
    return push * exp(logit + pair.log_weight - o.log_denominator);
}

// conr_core::stats::reduction_factor.
fn reduction_factor(anchors: u32) -> f32 {
    if (uniforms.reduction == REDUCTION_MEAN) {
        return 1.0 / f32(max(uniforms.rows, 1u));
    }
    if (uniforms.reduction == REDUCTION_MEAN_ANCHORS) {
        return 1.0 / f32(max(anchors, 1u));
    }
    return 1.0;
}

// ----------------------------------------------------------------- rules.rs

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// A quiet NaN: what every output becomes when the values break a rule.
fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Whether every rule held: the outputs are meaningful.
fn values_obey_rules() -> bool {
    return atomicLoad(&status) == 0u;
}

// The first conr_core::rules::Rule that row j (row `local` of the chunk's
// features) breaks, or RULES.
fn broken_rule(local: u32, j: u32) -> u32 {
    for (var i = 0u; i < uniforms.dim; i++) {
        if (!is_finite(features[local * uniforms.dim + i])) {
            return RULE_FEATURES_FINITE;
        }
    }
    let l = uniforms.label_dim;
    var label_zero = true;
    var pred_zero = true;
    for (var i = 0u; i < l; i++) {
        if (!is_finite(labels[j * l + i])) {
            return RULE_LABELS_FINITE;
        }
        label_zero = label_zero && labels[j * l + i] == 0.0;
    }
    for (var i = 0u; i < l; i++) {
        if (!is_finite(preds[j * l + i])) {
            return RULE_PREDS_FINITE;
        }
        pred_zero = pred_zero && preds[j * l + i] == 0.0;
    }
    if (has_flag(FLAG_ETA)) {
        let eta_j = eta[j];
        if (!is_finite(eta_j)) {
            return RULE_ETA_FINITE;
        }
        if (!(eta_j > 0.0)) {
            return RULE_ETA_POSITIVE;
        }
        if (!(eta_j <= MAX_ETA)) {
            return RULE_ETA_AT_MOST;
        }
    }
    if (uniforms.metric == METRIC_ANGULAR) {
        if (label_zero) {
            return RULE_LABELS_NON_ZERO;
        }
        if (pred_zero) {
            return RULE_PREDS_NON_ZERO;
        }
    }
    return RULES;
}

// conr_core::Batch's checks of the values, one thread per row of the row
// chunk, into `status`. The host clears `status` first.
@compute @workgroup_size(64)
fn check_values(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (local >= uniforms.row_count) {
        return;
    }
    let j = uniforms.row_offset + local;
    let rule = broken_rule(local, j);
    if (rule < RULES) {
        atomicMax(&status, ~((rule << ROW_BITS) | j));
    }
}

// ------------------------------------------------------------- normalize.rs

// conr_core::normalize::normalize, one thread per row of the row chunk.
@compute @workgroup_size(64)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= uniforms.row_count) {
        return;
    }
    let base = row * uniforms.dim;
    var big = 0.0;
    for (var i = 0u; i < uniforms.dim; i++) {
        big = max(big, abs(features[base + i]));
    }
    var length = 0.0;
    if (big > 0.0) {
        var sum = 0.0;
        for (var i = 0u; i < uniforms.dim; i++) {
            let r = features[base + i] / big;
            sum += r * r;
        }
        length = big * sqrt(sum);
    }
    let divisor = max(length, EPSILON);
    for (var i = 0u; i < uniforms.dim; i++) {
        z_out[base + i] = features[base + i] / divisor;
    }
    lengths[uniforms.row_offset + row] = length;
}

// conr_core::normalize::normalize_backward, in place on dz.
@compute @workgroup_size(64)
fn normalize_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= uniforms.row_count) {
        return;
    }
    let base = row * uniforms.dim;
    let length = lengths[uniforms.row_offset + row];
    if (!values_obey_rules()) {
        for (var i = 0u; i < uniforms.dim; i++) {
            dz[base + i] = nan();
        }
    } else if (length > EPSILON) {
        var radial = 0.0;
        for (var i = 0u; i < uniforms.dim; i++) {
            radial += z_rows[base + i] * dz[base + i];
        }
        let inv = 1.0 / length;
        for (var i = 0u; i < uniforms.dim; i++) {
            dz[base + i] = (dz[base + i] - z_rows[base + i] * radial) * inv;
        }
    } else {
        for (var i = 0u; i < uniforms.dim; i++) {
            dz[base + i] = dz[base + i] / EPSILON;
        }
    }
}

// ------------------------------------------------------------- logit tiles

// The end of the rows the tile kernels own, local to the row chunk.
fn row_end() -> u32 {
    return min(uniforms.row_count, uniforms.row_end);
}

// The thread's 4×4 block of z_j·z_k for the tile at (row_base, col_base) of
// the chunks. 16-feature slices of both row sets are staged transposed in
// workgroup memory (tile_a[k][row], tile_b[k][col], four rows per vec4), so
// each step is two vec4 loads and four vec4 multiply-adds. Every thread of the
// workgroup must call it (it has barriers).
fn gram_tile(row_base: u32, col_base: u32, local: vec2<u32>, flat: u32) -> array<vec4<f32>, 4> {
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let dim = uniforms.dim;
    for (var k0 = 0u; k0 < dim; k0 += DEPTH) {
        for (var e = 0u; e < 4u; e++) {
            let index = flat + e * SIDE * SIDE;
            let r = index / DEPTH;
            let kk = index % DEPTH;
            var a = 0.0;
            var b = 0.0;
            if (k0 + kk < dim) {
                if (row_base + r < row_end()) {
                    a = z_rows[at(row_base + r) * dim + k0 + kk];
                }
                if (col_base + r < uniforms.col_count) {
                    b = z_cols[at(col_base + r) * dim + k0 + kk];
                }
            }
            tile_a[kk * SIDE + r / 4u][r % 4u] = a;
            tile_b[kk * SIDE + r / 4u][r % 4u] = b;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            let a = tile_a[kk * SIDE + local.y];
            let b = tile_b[kk * SIDE + local.x];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }
    return acc;
}

// The forward pass: conr_core::stats::RowStats over every column of the
// column chunk, for one tile of rows. Each thread keeps partial statistics for
// its four rows; the 16 threads of a row merge them in a fixed order.
@compute @workgroup_size(16, 16)
fn row_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = lid.y * SIDE + lid.x;
    let row_base = uniforms.row_begin + wid.x * TILE;
    var mine = array<RowStats, 4>(empty_stats(), empty_stats(), empty_stats(), empty_stats());
    var keys: array<RowKey, 4>;
    for (var i = 0u; i < 4u; i++) {
        let r = row_base + lid.y * 4u + i;
        keys[i] = row_key(uniforms.row_offset + at(min(r, row_end() - 1u)));
    }
    let cols = tile_columns(wid.x);
    for (var col_base = cols.x; col_base < cols.y; col_base += TILE) {
        stage_keys(col_base, flat);
        let s = gram_tile(row_base, col_base, lid.xy, flat);
        for (var i = 0u; i < 4u; i++) {
            let r = row_base + lid.y * 4u + i;
            for (var c = 0u; c < 4u; c++) {
                let col = lid.x * 4u + c;
                if (r < row_end() && col_base + col < uniforms.col_count) {
                    var kj: Pair;
                    let j = uniforms.row_offset + at(r);
                    let k = uniforms.col_offset + at(col_base + col);
                    let pair = classify_staged(j, k, keys[i], col, &kj);
                    if (keeps(pair.kind)) {
                        mine[i] = stats_push(mine[i], pair, s[i][c] * uniforms.inv_temperature);
                    }
                }
            }
        }
        // The next tile's keys replace these.
        workgroupBarrier();
    }
    for (var t = 0u; t < SIDE; t++) {
        if (lid.x == t) {
            for (var i = 0u; i < 4u; i++) {
                let r = lid.y * 4u + i;
                if (t == 0u) {
                    merged[r] = mine[i];
                } else {
                    merged[r] = stats_merge(merged[r], mine[i]);
                }
            }
        }
        workgroupBarrier();
    }
    if (flat < TILE && row_base + flat < row_end()) {
        let j = uniforms.row_offset + at(row_base + flat);
        if (has_flag(FLAG_ACCUMULATE)) {
            stats[j] = stats_merge(stats[j], merged[flat]);
        } else {
            stats[j] = merged[flat];
        }
    }
}

// Each row's |P| and |Q| (an anchor has |Q| > 0) into the caller's buffer.
@compute @workgroup_size(64)
fn export_counts(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j < uniforms.rows) {
        counts_out[j] = vec2<u32>(stats[j].positives, stats[j].negatives);
    }
}

// conr_core::stats::RowStats::finish for every row.
@compute @workgroup_size(64)
fn finish_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= uniforms.rows) {
        return;
    }
    var eta_j = 1.0;
    if (has_flag(FLAG_ETA)) {
        eta_j = eta[j];
    }
    outcomes[j] = finish(stats[j], eta_j);
}

// Σ_j l_j and the anchor count in one workgroup, summed in a fixed order; then
// the reduction factor and the loss.
@compute @workgroup_size(256)
fn reduce_loss(@builtin(local_invocation_index) t: u32) {
    var loss = 0.0;
    var anchors = 0u;
    for (var j = t; j < uniforms.rows; j += REDUCE) {
        loss += outcomes[j].loss;
        anchors += outcomes[j].anchor;
    }
    partial_loss[t] = loss;
    partial_anchors[t] = anchors;
    workgroupBarrier();
    for (var width = REDUCE / 2u; width > 0u; width /= 2u) {
        if (t < width) {
            partial_loss[t] += partial_loss[t + width];
            partial_anchors[t] += partial_anchors[t + width];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        let factor = reduction_factor(partial_anchors[0]);
        var loss = factor * partial_loss[0];
        if (!values_obey_rules()) {
            loss = nan();
        }
        totals = Totals(loss, factor, partial_anchors[0], 0u);
    }
}

// The backward pass for one tile of rows over the column chunk: recompute the
// logits, form H_jk = (G_jk + G_kj)/τ, and accumulate dz_J += H Z_K. The
// workgroup owns its rows of dz, so there are no atomics.
@compute @workgroup_size(16, 16)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = lid.y * SIDE + lid.x;
    let row_base = uniforms.row_begin + wid.x * TILE;
    let dim = uniforms.dim;
    let inv_t = uniforms.inv_temperature;
    let factor = totals.factor;
    var keys: array<RowKey, 4>;
    var rows_out: array<RowOutcome, 4>;
    for (var i = 0u; i < 4u; i++) {
        let j = uniforms.row_offset + at(min(row_base + lid.y * 4u + i, row_end() - 1u));
        keys[i] = row_key(j);
        rows_out[i] = outcomes[j];
    }
    let cols = tile_columns(wid.x);
    for (var col_base = cols.x; col_base < cols.y; col_base += TILE) {
        stage_keys(col_base, flat);
        stage_outcomes(col_base, flat);
        let s = gram_tile(row_base, col_base, lid.xy, flat);
        for (var i = 0u; i < 4u; i++) {
            let r = lid.y * 4u + i;
            for (var c = 0u; c < 4u; c++) {
                let col = lid.x * 4u + c;
                var h = 0.0;
                if (row_base + r < row_end() && col_base + col < uniforms.col_count) {
                    let j = uniforms.row_offset + at(row_base + r);
                    let k = uniforms.col_offset + at(col_base + col);
                    var kj: Pair;
                    let jk = classify_staged(j, k, keys[i], col, &kj);
                    if (keeps(jk.kind)) {
                        let logit = s[i][c] * inv_t;
                        h = (coefficient(rows_out[i], factor, jk, logit) + coefficient(col_outcome[col], factor, kj, logit)) * inv_t;
                    }
                }
                tile_h[r * TILE + col] = h;
            }
        }
        workgroupBarrier();
        for (var d0 = 0u; d0 < dim; d0 += TILE) {
            var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
            for (var k0 = 0u; k0 < TILE; k0 += DEPTH) {
                // Stage Z_K[k0..k0+16][d0..d0+64] as tile_b[k][d], four features per vec4.
                for (var e = 0u; e < 4u; e++) {
                    let index = flat + e * SIDE * SIDE;
                    let kk = index / TILE;
                    let dd = index % TILE;
                    var v = 0.0;
                    if (col_base + k0 + kk < uniforms.col_count && d0 + dd < dim) {
                        v = z_cols[at(col_base + k0 + kk) * dim + d0 + dd];
                    }
                    tile_b[kk * SIDE + dd / 4u][dd % 4u] = v;
                }
                workgroupBarrier();
                for (var kk = 0u; kk < DEPTH; kk++) {
                    let b = tile_b[kk * SIDE + lid.x];
                    let r0 = lid.y * 4u;
                    acc[0] += tile_h[r0 * TILE + k0 + kk] * b;
                    acc[1] += tile_h[(r0 + 1u) * TILE + k0 + kk] * b;
                    acc[2] += tile_h[(r0 + 2u) * TILE + k0 + kk] * b;
                    acc[3] += tile_h[(r0 + 3u) * TILE + k0 + kk] * b;
                }
                workgroupBarrier();
            }
            for (var i = 0u; i < 4u; i++) {
                let r = row_base + lid.y * 4u + i;
                for (var c = 0u; c < 4u; c++) {
                    let d = d0 + lid.x * 4u + c;
                    if (r < row_end() && d < dim) {
                        dz[at(r) * dim + d] += acc[i][c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
