// requires: layout.wgsl pairs.wgsl stats.wgsl rules.wgsl normalize.wgsl
//
// ConR on the GPU: the streaming forward and backward passes of DESIGN §2 in f32.
//
// Every function here mirrors a function of conr-core with the same name (see
// the comment on each); the property tests hold the two to each other. Memory
// is O(M·D): logits are recomputed tile by tile and never stored.
//
// Dispatch order (adapters/wgpu/src/record.rs):
//   check_values → normalize → row_stats → finish_rows → reduce_loss → backward
//   → normalize_backward (→ export_counts, where a recorded call asks for the counts)
// A batch of few row tiles would leave most of a large GPU idle, so the tile
// kernels also cut the columns into `uniforms.splits` contiguous ranges of
// tiles, one workgroup per (row tile, range) (conr_wgpu's call plan chooses
// how many): row_stats writes one partial RowStats per range and row, which
// finish_rows merges in range order, and backward one partial ∂L/∂z per range,
// which normalize_backward adds in range order. Results do not depend on timing.
// A batch of still fewer row tiles (few rows, many features: AgeDB's 128×2048)
// also cuts the features: row_stats_depth sums each 64×64 logit tile over
// `uniforms.depth_splits` ranges of features, one workgroup each, into
// `logits`; row_stats then adds a tile's ranges in range order instead of
// computing it, backward_h forms each tile's H once from the same sums, and
// backward runs one workgroup per (64 features of ∂L/∂z, row tile). The kept tiles hold
// ceil(M/64)² · depth_splits · 64² values, which the call plan keeps within M·D.
// A recorded call builds its band plan on the device first (band_plan.wgsl).
// Values that break a rule of conr_core::rules make the loss and the gradient NaN.
// The mixed-precision kernels (conr_mixed.wgsl, a module of their own with the
// f16 and cooperative-matrix extensions enabled) replace row_stats, backward
// and normalize_backward.
// Large batches run in row chunks: a dispatch sees rows [row_offset, +row_count)
// through `z_rows` and columns [col_offset, +col_count) through `z_cols`.

// With depth ranges: each (row tile, column tile, range)'s 64×64 partial logit
// tile, row-major, in that order.
@group(0) @binding(32) var<storage, read_write> logits: array<f32>;

// Where backward accumulates: the gradient buffer (dz), or with column ranges
// one block per range of ∂L/∂z (M×D, rows in their own order; per band side,
// the positives' first), which normalize_backward reads as dz_parts.
@group(0) @binding(30) var<storage, read_write> dz_acc: array<f32>;
@group(0) @binding(31) var<storage, read> dz_parts: array<f32>;

// 16 features × 64 rows, four rows per vec4: 4 KiB each.
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 256>;
// The 64×64 tile of H in the backward pass: 16 KiB.
var<workgroup> tile_h: array<f32, 4096>;
var<workgroup> merged: array<RowStats, 64>;
var<workgroup> partial_loss: array<f32, 256>;
var<workgroup> partial_anchors: array<u32, 256>;

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
    if (has_flag(FLAG_PARTS)) {
        // One chunk: the ranges' blocks are M×D, like dz.
        let block = uniforms.rows * uniforms.dim;
        for (var i = 0u; i < uniforms.dim; i++) {
            var sum = 0.0;
            for (var part = 0u; part < uniforms.splits * sides(); part++) {
                sum += dz_parts[part * block + base + i];
            }
            dz[base + i] = sum;
        }
    }
    normalize_backward_row(base, lengths[uniforms.row_offset + row]);
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
    return gram_range(row_base, col_base, local, flat, 0u, uniforms.dim);
}

// gram_tile over the features [first, end) (first a multiple of DEPTH).
fn gram_range(row_base: u32, col_base: u32, local: vec2<u32>, flat: u32, first: u32, end: u32) -> array<vec4<f32>, 4> {
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let dim = uniforms.dim;
    for (var k0 = first; k0 < end; k0 += DEPTH) {
        for (var e = 0u; e < 4u; e++) {
            let index = flat + e * SIDE * SIDE;
            let r = index / DEPTH;
            let kk = index % DEPTH;
            var a = 0.0;
            var b = 0.0;
            if (k0 + kk < end) {
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

// The column tiles of the chunk: ceil(col_count / 64).
fn col_tiles() -> u32 {
    return (uniforms.col_count + TILE - 1u) / TILE;
}

// The features of depth range `k`: [first, end), whole DEPTH slices.
fn depth_range(k: u32) -> vec2<u32> {
    let slices = (uniforms.dim + DEPTH - 1u) / DEPTH;
    let per = (slices + uniforms.depth_splits - 1u) / uniforms.depth_splits;
    let first = min(k * per, slices) * DEPTH;
    return vec2<u32>(first, min(min((k + 1u) * per, slices) * DEPTH, uniforms.dim));
}

// Where the partial tile of depth range `k` of the tile at (row_base,
// col_base) starts in `logits`.
fn kept_tile(row_base: u32, col_base: u32, k: u32) -> u32 {
    let tile = (row_base / TILE) * col_tiles() + col_base / TILE;
    return (tile * uniforms.depth_splits + k) * TILE * TILE;
}

// The thread's 4×4 block of the logit tile at (row_base, col_base): computed,
// or with depth ranges the kept ranges added in range order (the forward
// pass's and backward_h's the same bits). Every thread of the workgroup must
// call it (both ways have barriers; the choice is uniform).
fn tile_logits(row_base: u32, col_base: u32, local: vec2<u32>, flat: u32) -> array<vec4<f32>, 4> {
    if (uniforms.depth_splits <= 1u) {
        return gram_tile(row_base, col_base, local, flat);
    }
    // As gram_tile's, this barrier makes the keys staged before the call
    // visible to every thread.
    workgroupBarrier();
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k = 0u; k < uniforms.depth_splits; k++) {
        let base = kept_tile(row_base, col_base, k);
        for (var i = 0u; i < 4u; i++) {
            let at_row = base + (local.y * 4u + i) * TILE + local.x * 4u;
            acc[i] += vec4<f32>(logits[at_row], logits[at_row + 1u], logits[at_row + 2u], logits[at_row + 3u]);
        }
    }
    return acc;
}

// One depth range of one logit tile: workgroup (column tile · depth_splits +
// range, row tile) sums z_j·z_k over the range's features into `logits`
// (a dense pass over one chunk: the call plan takes depth ranges there only).
@compute @workgroup_size(16, 16)
fn row_stats_depth(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = lid.y * SIDE + lid.x;
    let row_base = wid.y * TILE;
    let col_base = (wid.x / uniforms.depth_splits) * TILE;
    let k = wid.x % uniforms.depth_splits;
    let range = depth_range(k);
    let s = gram_range(row_base, col_base, lid.xy, flat, range.x, range.y);
    let base = kept_tile(row_base, col_base, k);
    for (var i = 0u; i < 4u; i++) {
        let at_row = base + (lid.y * 4u + i) * TILE + lid.x * 4u;
        logits[at_row] = s[i].x;
        logits[at_row + 1u] = s[i].y;
        logits[at_row + 2u] = s[i].z;
        logits[at_row + 3u] = s[i].w;
    }
}

// The forward pass: conr_core::stats::RowStats over the columns of range
// wid.x of the column chunk, for tile wid.y of rows (the ranges of a row
// tile are neighbours in the dispatch, so that they run close in time and
// share its rows in the caches). Each thread keeps partial
// statistics for its four rows; the 16 threads of a row merge them in a fixed
// order.
@compute @workgroup_size(16, 16)
fn row_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = lid.y * SIDE + lid.x;
    let row_base = uniforms.row_begin + wid.y * TILE;
    let cols = split_columns(wid.y, wid.x);
    if (cols.x == cols.y) {
        // A range beyond the row tile's columns (a short band run): its
        // statistics are empty, with no tile to visit or merge.
        if (has_flag(FLAG_PARTS) && flat < TILE && row_base + flat < row_end()) {
            let j = uniforms.row_offset + at(row_base + flat);
            stats_part[(side() * uniforms.splits + wid.x) * uniforms.rows + j] = empty_stats();
        }
        return;
    }
    var mine = array<RowStats, 4>(empty_stats(), empty_stats(), empty_stats(), empty_stats());
    var keys: array<RowKey, 4>;
    for (var i = 0u; i < 4u; i++) {
        let r = row_base + lid.y * 4u + i;
        keys[i] = row_key(uniforms.row_offset + at(min(r, row_end() - 1u)));
    }
    for (var col_base = cols.x; col_base < cols.y; col_base += TILE) {
        stage_keys(col_base, flat);
        let s = tile_logits(row_base, col_base, lid.xy, flat);
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
        if (has_flag(FLAG_PARTS)) {
            stats_part[(side() * uniforms.splits + wid.x) * uniforms.rows + j] = merged[flat];
        } else if (has_flag(FLAG_ACCUMULATE)) {
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
    var row = stats[j];
    if (has_flag(FLAG_PARTS)) {
        // The column ranges' statistics, in range order (the positives'
        // ranges, then the negatives', with the band): the f32 kernels' with
        // more than one range, the mixed kernels' always.
        row = stats_part[j];
        for (var part = 1u; part < uniforms.splits * sides(); part++) {
            row = stats_merge(row, stats_part[part * uniforms.rows + j]);
        }
        stats[j] = row;
    }
    outcomes[j] = finish(row, eta_j);
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

// The rows' keys and outcomes of the thread's four rows of the row tile at
// row_base (the last owned row's past the end).
struct RowsOfThread {
    keys: array<RowKey, 4>,
    outcomes: array<RowOutcome, 4>,
}

fn rows_of_thread(row_base: u32, lid: vec3<u32>) -> RowsOfThread {
    var mine: RowsOfThread;
    for (var i = 0u; i < 4u; i++) {
        let j = uniforms.row_offset + at(min(row_base + lid.y * 4u + i, row_end() - 1u));
        mine.keys[i] = row_key(j);
        mine.outcomes[i] = outcomes[j];
    }
    return mine;
}

// H_jk = (G_jk + G_kj)/τ at the thread's (i, c) of the tile at (row_base,
// col_base), from its logit z_j·z_k (s) and the staged column keys and
// outcomes; 0 for a pair that does not count.
fn h_value(row_base: u32, col_base: u32, lid: vec3<u32>, mine: RowsOfThread, i: u32, c: u32, s: f32) -> f32 {
    let r = lid.y * 4u + i;
    let col = lid.x * 4u + c;
    if (row_base + r >= row_end() || col_base + col >= uniforms.col_count) {
        return 0.0;
    }
    let j = uniforms.row_offset + at(row_base + r);
    let k = uniforms.col_offset + at(col_base + col);
    var kj: Pair;
    let jk = classify_staged(j, k, mine.keys[i], col, &kj);
    if (!keeps(jk.kind)) {
        return 0.0;
    }
    let inv_t = uniforms.inv_temperature;
    let logit = s * inv_t;
    let factor = totals.factor;
    return (coefficient(mine.outcomes[i], factor, jk, logit) + coefficient(col_outcome[col], factor, kj, logit)) * inv_t;
}

// With depth ranges: each tile's H, once, from its kept logits, into the
// tile's first range (which only the backward pass reads after this).
// Workgroup (column tile, row tile).
@compute @workgroup_size(16, 16)
fn backward_h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = lid.y * SIDE + lid.x;
    let row_base = wid.y * TILE;
    let col_base = wid.x * TILE;
    let mine = rows_of_thread(row_base, lid);
    stage_keys(col_base, flat);
    stage_outcomes(col_base, flat);
    // tile_logits' barrier makes the staged keys visible.
    let s = tile_logits(row_base, col_base, lid.xy, flat);
    let base = kept_tile(row_base, col_base, 0u);
    for (var i = 0u; i < 4u; i++) {
        for (var c = 0u; c < 4u; c++) {
            let at_h = base + (lid.y * 4u + i) * TILE + lid.x * 4u + c;
            logits[at_h] = h_value(row_base, col_base, lid, mine, i, c, s[i][c]);
        }
    }
}

// The backward pass for tile wid.y of rows over range wid.x of the column
// chunk: recompute the logits, form H_jk = (G_jk + G_kj)/τ, and accumulate
// dz_J += H Z_K, into dz or, with column ranges, the range's block (dz_acc).
// With depth ranges, wid.x is instead the workgroup's 64 features of dz_J,
// over every column, H read from backward_h's tiles. The workgroup owns its
// block of either, so there are no atomics.
@compute @workgroup_size(16, 16)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = lid.y * SIDE + lid.x;
    let row_base = uniforms.row_begin + wid.y * TILE;
    let kept = uniforms.depth_splits > 1u;
    var cols = split_columns(wid.y, wid.x);
    var features = vec2<u32>(0u, uniforms.dim);
    if (kept) {
        cols = tile_columns(wid.y);
        features = vec2<u32>(wid.x * TILE, min(wid.x * TILE + TILE, uniforms.dim));
    }
    if (cols.x == cols.y) {
        // No column to add: the range's block stays as cleared.
        return;
    }
    let dim = uniforms.dim;
    // The rows' keys and outcomes: only to form H here, not to read it.
    var mine: RowsOfThread;
    if (!kept) {
        mine = rows_of_thread(row_base, lid);
    }
    var part = 0u;
    if (has_flag(FLAG_PARTS)) {
        part = (side() * uniforms.splits + wid.x) * uniforms.rows * dim;
    }
    for (var col_base = cols.x; col_base < cols.y; col_base += TILE) {
        if (kept) {
            let base = kept_tile(row_base, col_base, 0u);
            for (var i = 0u; i < 4u; i++) {
                for (var c = 0u; c < 4u; c++) {
                    let r = lid.y * 4u + i;
                    let col = lid.x * 4u + c;
                    tile_h[r * TILE + col] = logits[base + r * TILE + col];
                }
            }
        } else {
            stage_keys(col_base, flat);
            stage_outcomes(col_base, flat);
            let s = gram_tile(row_base, col_base, lid.xy, flat);
            for (var i = 0u; i < 4u; i++) {
                for (var c = 0u; c < 4u; c++) {
                    let r = lid.y * 4u + i;
                    let col = lid.x * 4u + c;
                    tile_h[r * TILE + col] = h_value(row_base, col_base, lid, mine, i, c, s[i][c]);
                }
            }
        }
        workgroupBarrier();
        for (var d0 = features.x; d0 < features.y; d0 += TILE) {
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
                        dz_acc[part + at(r) * dim + d] += acc[i][c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
