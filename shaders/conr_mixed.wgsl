// requires: layout.wgsl pairs.wgsl stats.wgsl rules.wgsl normalize.wgsl
enable f16;
enable wgpu_cooperative_matrix;

// ConR's tiles on tensor cores: f16 tile inputs, f32 accumulation, f32 statistics.
//
// The pair classification, the row statistics and the last step of the
// backward pass are the f32 kernels' own (pairs.wgsl, stats.wgsl,
// normalize.wgsl); normalize, finish_rows and reduce_loss are the f32
// module's kernels. Only the logit tiles and the sum of the column ranges
// change:
//
//   normalize → to_half → row_stats_mixed → finish_rows
//             → reduce_loss → backward_mixed → normalize_backward_mixed
//
// The cooperative matrices are 16×16×16 (f16 A and B, f32 C), owned by one
// subgroup each. A workgroup of 128 threads is four subgroups of 32 (NVIDIA's
// width; the host refuses other widths) and covers 64 rows: the subgroups
// split each 64×64 logit tile 2×2, and each 64 features of the backward
// product four ways. A shader cannot read one element of a
// cooperative matrix, so each logit tile goes through workgroup memory, where
// the scalar code classifies pairs and runs the online log-sum-exp as the f32
// kernels do. Every statistic and accumulator stays in f32.
//
// A batch of few row tiles would leave most of a large GPU idle, so the
// columns are also cut into `uniforms.splits` contiguous ranges of tiles, one
// workgroup per (row tile, range): the forward pass writes one partial
// RowStats per range and row (merged in range order by finish_rows), and the
// backward pass one partial ∂L/∂z per range (summed in range order by
// normalize_backward_mixed). Results do not depend on timing.
//
// Padding makes every tile whole: `z16` has ceil(M/64)·64 rows of `stride`
// halves (D rounded up to 64), zero beyond the batch, so tiles never read past
// the end. Cooperative operations sit in loops whose bounds are uniform.
//
// With the band plan (conr_core::band) each side has its own blocks: to_half
// gathers the rows into the side's sorted order (its `z16` block, bound at the
// side's offset), so that the tile kernels load band tiles as they load dense
// ones; their row tiles and column runs are in sorted positions, and `at`
// names a position's row. The forward pass keeps only the side's own pairs
// (`keeps`) and writes its own partial statistics; the backward pass its own
// ∂L/∂z block, which normalize_backward_mixed reads back at each row's
// position in each side (`band_positions`), the positives' first.

// Threads of the mixed tile kernels: four subgroups of 32.
const MIXED: u32 = 128u;
// The side of a cooperative matrix.
const COOP: u32 = 16u;
// The largest finite f16: H saturates there before it is rounded to f16.
const F16_MAX: f32 = 65504.0;

// Normalised features in f16, padded: ceil(M/64)·64 rows of `stride`.
@group(0) @binding(16) var<storage, read_write> z16: array<f16>;
// ∂L/∂z, unscaled (without the reduction factor and 1/τ), in the padded
// layout: one padded M×D block per column range.
@group(0) @binding(17) var<storage, read_write> dz32: array<f32>;
// With the band: each row's position in each side's sorted order (two blocks
// of `arrayLength / 2` slots, the positives' first).
@group(0) @binding(29) var<storage, read> band_positions: array<u32>;

// The 64×64 logit tile (z_j·z_k, before 1/τ) in f32: 16 KiB.
var<workgroup> tile_s: array<f32, 4096>;
// The 64×64 tile of H in f16: 8 KiB.
var<workgroup> tile_h16: array<f16, 4096>;
// Each row's statistics from its first half of the columns.
var<workgroup> half_stats: array<RowStats, 64>;
// The column of the tile that thread t visits at step c of 32: its half of
// the tile, rotated by t so that the 32 threads of a subgroup touch 32
// different workgroup-memory banks at every step.
fn rotated_column(t: u32, c: u32) -> u32 {
    return (t % 2u) * 32u + (c + t) % 32u;
}

// The row at sorted position `pos` of this pass, or `pos` itself past the
// batch (a padding row: its key is empty and nothing of it is kept).
fn row_at(pos: u32) -> u32 {
    if (pos < uniforms.row_count) {
        return at(pos);
    }
    return pos;
}

// The f32 normalised features of the (single) chunk in f16, zero-padded, in
// this pass's order.
@compute @workgroup_size(64)
fn to_half(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pos = gid.x;
    let padded_rows = arrayLength(&z16) / uniforms.stride;
    if (pos >= padded_rows) {
        return;
    }
    let row = row_at(pos);
    for (var i = 0u; i < uniforms.stride; i++) {
        var v = 0.0;
        if (pos < uniforms.rows && i < uniforms.dim) {
            v = z_rows[row * uniforms.dim + i];
        }
        z16[pos * uniforms.stride + i] = f16(v);
    }
}

// z_J·z_K for the 64×64 tile at (row_base, col_base) into tile_s. The four
// subgroups split the tile 2×2: subgroup `group` computes rows 32·(group/2)
// and columns 32·(group%2), 32×32, as 2×2 fragments, so each k step loads two
// A and two B fragments for four products. Every thread must call it.
fn logit_tile(row_base: u32, col_base: u32, group: u32) {
    let stride = uniforms.stride;
    let rows = group / 2u * 2u * COOP;
    let cols = group % 2u * 2u * COOP;
    var acc00 = coop_mat16x16<f32, C>();
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    let a_base = (row_base + rows) * stride;
    let b_base = (col_base + cols) * stride;
    let step = COOP * stride;
    for (var k = 0u; k < stride; k += COOP) {
        // A: 16 rows of z_J, row-major. B: z_Kᵀ, read column-major from row-major z.
        let ia0 = a_base + k;
        let ia1 = ia0 + step;
        let ib0 = b_base + k;
        let ib1 = ib0 + step;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&z16[ia0], stride);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&z16[ia1], stride);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&z16[ib0], stride);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&z16[ib1], stride);
        acc00 = coopMultiplyAdd(a0, b0, acc00);
        acc01 = coopMultiplyAdd(a0, b1, acc01);
        acc10 = coopMultiplyAdd(a1, b0, acc10);
        acc11 = coopMultiplyAdd(a1, b1, acc11);
    }
    let ld = TILE;
    let o00 = rows * TILE + cols;
    let o01 = o00 + COOP;
    let o10 = o00 + COOP * TILE;
    let o11 = o10 + COOP;
    coopStoreT(acc00, &tile_s[o00], ld);
    coopStoreT(acc01, &tile_s[o01], ld);
    coopStoreT(acc10, &tile_s[o10], ld);
    coopStoreT(acc11, &tile_s[o11], ld);
}

// The forward pass for 64 rows over one range of columns: two threads per
// row, each over its half of every tile's columns, merged in a fixed order.
@compute @workgroup_size(128)
fn row_stats_mixed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row_base = wid.x * TILE;
    let columns = split_columns(wid.x, wid.y);
    let group = t / 32u;
    let r = t / 2u;
    let half = t % 2u;
    let pos = row_base + r;
    let j = row_at(pos);
    let key = row_key(j);
    let inv_t = uniforms.inv_temperature;
    var mine = empty_stats();
    for (var col_base = columns.x; col_base < columns.y; col_base += TILE) {
        stage_keys(col_base, t);
        logit_tile(row_base, col_base, group);
        workgroupBarrier();
        if (pos < uniforms.row_count) {
            for (var c = 0u; c < 32u; c++) {
                let col = rotated_column(t, c);
                if (col_base + col < uniforms.col_count) {
                    var kj: Pair;
                    let pair = classify_staged(j, at(col_base + col), key, col, &kj);
                    if (keeps(pair.kind)) {
                        mine = stats_push(mine, pair, tile_s[r * TILE + col] * inv_t);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (half == 0u) {
        half_stats[r] = mine;
    }
    workgroupBarrier();
    if (half == 1u && pos < uniforms.row_count) {
        let part = side() * uniforms.splits + wid.y;
        stats_part[part * uniforms.rows + j] = stats_merge(half_stats[r], mine);
    }
}

// The backward pass for 64 rows over one range of columns: recompute the logit tile,
// form u_jk = (G_jk + G_kj) without the reduction factor (so that it keeps its
// digits in f16), and accumulate dz32_J += U Z_K on the tensor cores, the
// accumulator going through dz32 (this workgroup owns those rows: no atomics).
@compute @workgroup_size(128)
fn backward_mixed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row_base = wid.x * TILE;
    let group = t / 32u;
    let r = t / 2u;
    let half = t % 2u;
    let pos = row_base + r;
    let j = row_at(pos);
    let inv_t = uniforms.inv_temperature;
    let stride = uniforms.stride;
    let columns = split_columns(wid.x, wid.y);
    // This range's block of dz32 (of this side's blocks, with the band).
    let block = wid.y * (arrayLength(&z16) / stride) * stride;
    let key = row_key(j);
    var outcome = RowOutcome(0.0, 0u, 0u, 0.0, 0.0, 0.0, 0.0, 1.0);
    if (pos < uniforms.row_count) {
        outcome = outcomes[j];
    }
    for (var col_base = columns.x; col_base < columns.y; col_base += TILE) {
        stage_keys(col_base, t);
        stage_outcomes(col_base, t);
        logit_tile(row_base, col_base, group);
        workgroupBarrier();
        for (var c = 0u; c < 32u; c++) {
            let col = rotated_column(t, c);
            var u = 0.0;
            if (pos < uniforms.row_count && col_base + col < uniforms.col_count) {
                var kj: Pair;
                let jk = classify_staged(j, at(col_base + col), key, col, &kj);
                if (keeps(jk.kind)) {
                    let logit = tile_s[r * TILE + col] * inv_t;
                    u = coefficient(outcome, 1.0, jk, logit) + coefficient(col_outcome[col], 1.0, kj, logit);
                }
            }
            tile_h16[r * TILE + col] = f16(clamp(u, -F16_MAX, F16_MAX));
        }
        workgroupBarrier();
        // dz32_J += U Z_K, 64 features at a time: subgroup `group` takes
        // features d..d+16 of each 64 (the stride is a multiple of 64), loads
        // the four B fragments of Z_K there once, and updates all four row
        // blocks with the A fragments of U from workgroup memory.
        let z_base = col_base * stride;
        let z_step = COOP * stride;
        let ld = TILE;
        for (var d0 = 0u; d0 < stride; d0 += TILE) {
            let d = d0 + group * COOP;
            let iz0 = z_base + d;
            let iz1 = iz0 + z_step;
            let iz2 = iz1 + z_step;
            let iz3 = iz2 + z_step;
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz0], stride);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz1], stride);
            let b2 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz2], stride);
            let b3 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz3], stride);
            for (var rb = 0u; rb < TILE; rb += COOP) {
                let io = block + (row_base + rb) * stride + d;
                let h0 = rb * TILE;
                let h1 = h0 + COOP;
                let h2 = h1 + COOP;
                let h3 = h2 + COOP;
                var acc = coopLoadT<coop_mat16x16<f32, C>>(&dz32[io], stride);
                acc = coopMultiplyAdd(coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h0], ld), b0, acc);
                acc = coopMultiplyAdd(coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h1], ld), b1, acc);
                acc = coopMultiplyAdd(coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h2], ld), b2, acc);
                acc = coopMultiplyAdd(coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h3], ld), b3, acc);
                coopStoreT(acc, &dz32[io], stride);
            }
        }
        workgroupBarrier();
    }
}

// Feature i of row `row`'s ∂L/∂z (unscaled): its ranges' blocks of dz32 summed
// in range order, at its own place, or with the band at its position in each
// side (the positives' blocks first).
fn summed_dz(row: u32, i: u32) -> f32 {
    let stride = uniforms.stride;
    let block = (uniforms.rows + TILE - 1u) / TILE * TILE * stride;
    var at_side = array<u32, 2>(row, row);
    if (has_flag(FLAG_BANDED)) {
        let slots = arrayLength(&band_positions) / 2u;
        at_side[0] = band_positions[row];
        at_side[1] = band_positions[slots + row];
    }
    var sum = 0.0;
    for (var side = 0u; side < sides(); side++) {
        for (var s = 0u; s < uniforms.splits; s++) {
            let part = side * uniforms.splits + s;
            sum += dz32[part * block + at_side[side] * stride + i];
        }
    }
    return sum;
}

// ∂L/∂z = factor/τ · summed_dz into the caller's gradient (M×D, unpadded),
// then conr_core::normalize::normalize_backward there.
@compute @workgroup_size(64)
fn normalize_backward_mixed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= uniforms.rows) {
        return;
    }
    let scale = totals.factor * uniforms.inv_temperature;
    let base = row * uniforms.dim;
    for (var i = 0u; i < uniforms.dim; i++) {
        dz[base + i] = scale * summed_dz(row, i);
    }
    normalize_backward_row(base, lengths[row]);
}
