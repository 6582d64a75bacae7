// requires: layout.wgsl
//
// Which pairs count, and how: the band passes' view of rows and columns,
// conr_core's label metric, pair classification and pushing weights, and the
// staged column keys of a tile.

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

// The band sides a call has: 2 with the band plan, else 1.
fn sides() -> u32 {
    if (has_flag(FLAG_BANDED)) {
        return 2u;
    }
    return 1u;
}

// The band side of this pass: 1 for the negatives, else 0.
fn side() -> u32 {
    if (has_flag(FLAG_BAND_NEGATIVES)) {
        return 1u;
    }
    return 0u;
}

// The column tiles of range `split` of row tile `block`'s columns (all of
// them, or its band run), cut into `uniforms.splits` ranges of whole tiles:
// [first, end) in (sorted) columns.
fn split_columns(block: u32, split: u32) -> vec2<u32> {
    let run = tile_columns(block);
    let tiles = (run.y - run.x + TILE - 1u) / TILE;
    let per_split = (tiles + uniforms.splits - 1u) / uniforms.splits;
    let first = run.x + min(split * per_split, tiles) * TILE;
    let end = min(run.x + min((split + 1u) * per_split, tiles) * TILE, run.y);
    return vec2<u32>(first, max(first, end));
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
