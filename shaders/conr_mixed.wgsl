// ConR's tiles on tensor cores: f16 tile inputs, f32 accumulation, f32 statistics.
//
// This file is appended to conr.wgsl (after `enable f16; enable
// wgpu_cooperative_matrix;`), so it reuses every function there: classify,
// stats_push, finish, coefficient. Only the two logit-tile kernels and the
// last step of the backward pass change:
//
//   normalize → to_half → row_stats_mixed → finish_rows → reduce_loss
//             → backward_mixed → normalize_backward_mixed
//
// The cooperative matrices are 16×16×16 (f16 A and B, f32 C), owned by one
// subgroup each. A workgroup of 128 threads is four subgroups of 32 (NVIDIA's
// width; the host refuses other widths) and covers 64 rows: subgroup s owns
// rows 16s..16s+16 of every 64×64 tile. A shader cannot read one element of a
// cooperative matrix, so each logit tile goes through workgroup memory, where
// the scalar code classifies pairs and runs the online log-sum-exp as the f32
// kernels do. Every statistic and accumulator stays in f32.
//
// Padding makes every tile whole: `z16` has ceil(M/64)·64 rows of `stride`
// halves (D rounded up to 16), zero beyond the batch, so tiles never read past
// the end. Cooperative operations sit in loops whose bounds are uniform.

// Threads of the mixed tile kernels: four subgroups of 32.
const MIXED: u32 = 128u;
// The side of a cooperative matrix.
const COOP: u32 = 16u;
// The largest finite f16: H saturates there before it is rounded to f16.
const F16_MAX: f32 = 65504.0;

// Normalised features in f16, padded: ceil(M/64)·64 rows of `stride`.
@group(0) @binding(16) var<storage, read_write> z16: array<f16>;
// ∂L/∂z, unscaled (without the reduction factor and 1/τ), in the padded layout.
@group(0) @binding(17) var<storage, read_write> dz32: array<f32>;

// The 64×64 logit tile (z_j·z_k, before 1/τ) in f32: 16 KiB.
var<workgroup> tile_s: array<f32, 4096>;
// The 64×64 tile of H in f16: 8 KiB.
var<workgroup> tile_h16: array<f16, 4096>;
// Each row's statistics from its first half of the columns.
var<workgroup> half_stats: array<RowStats, 64>;

// The f32 normalised features of the (single) chunk in f16, zero-padded.
@compute @workgroup_size(64)
fn to_half(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let padded_rows = arrayLength(&z16) / params.stride;
    if (row >= padded_rows) {
        return;
    }
    for (var i = 0u; i < params.stride; i++) {
        var v = 0.0;
        if (row < params.rows && i < params.dim) {
            v = z_rows[row * params.dim + i];
        }
        z16[row * params.stride + i] = f16(v);
    }
}

// z_J·z_K for the 64×64 tile at (row_base, col_base) into tile_s. Subgroup
// `group` computes rows 16·group..+16 against all 64 columns: one A fragment
// per step, reused for four B fragments. Every thread must call it.
fn logit_tile(row_base: u32, col_base: u32, group: u32) {
    let stride = params.stride;
    var acc0 = coop_mat16x16<f32, C>();
    var acc1 = coop_mat16x16<f32, C>();
    var acc2 = coop_mat16x16<f32, C>();
    var acc3 = coop_mat16x16<f32, C>();
    let a_base = (row_base + group * COOP) * stride;
    let b_base = col_base * stride;
    let b_step = COOP * stride;
    for (var k = 0u; k < stride; k += COOP) {
        // A: 16 rows of z_J, row-major. B: z_Kᵀ, read column-major from row-major z.
        let ia = a_base + k;
        let a = coopLoadT<coop_mat16x16<f16, A>>(&z16[ia], stride);
        let ib0 = b_base + k;
        let ib1 = ib0 + b_step;
        let ib2 = ib1 + b_step;
        let ib3 = ib2 + b_step;
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&z16[ib0], stride);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&z16[ib1], stride);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&z16[ib2], stride);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&z16[ib3], stride);
        acc0 = coopMultiplyAdd(a, b0, acc0);
        acc1 = coopMultiplyAdd(a, b1, acc1);
        acc2 = coopMultiplyAdd(a, b2, acc2);
        acc3 = coopMultiplyAdd(a, b3, acc3);
    }
    let out = group * COOP * TILE;
    let ld = TILE;
    let o0 = out;
    let o1 = out + COOP;
    let o2 = out + 2u * COOP;
    let o3 = out + 3u * COOP;
    coopStoreT(acc0, &tile_s[o0], ld);
    coopStoreT(acc1, &tile_s[o1], ld);
    coopStoreT(acc2, &tile_s[o2], ld);
    coopStoreT(acc3, &tile_s[o3], ld);
}

// The forward pass for 64 rows over every column: two threads per row, each
// over its half of every tile's columns, merged in a fixed order at the end.
@compute @workgroup_size(128)
fn row_stats_mixed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row_base = wid.x * TILE;
    let group = t / 32u;
    let r = t / 2u;
    let half = t % 2u;
    let j = row_base + r;
    let inv_t = params.inv_temperature;
    var mine = empty_stats();
    for (var col_base = 0u; col_base < params.col_count; col_base += TILE) {
        logit_tile(row_base, col_base, group);
        workgroupBarrier();
        if (j < params.row_count) {
            for (var c = 0u; c < 32u; c++) {
                let col = half * 32u + c;
                let k = col_base + col;
                if (k < params.col_count) {
                    let pair = classify(j, k);
                    if (pair.kind != NEITHER) {
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
    if (half == 1u && j < params.row_count) {
        stats[j] = stats_merge(half_stats[r], mine);
    }
}

// The backward pass for 64 rows over every column: recompute the logit tile,
// form u_jk = (G_jk + G_kj) without the reduction factor (so that it keeps its
// digits in f16), and accumulate dz32_J += U Z_K on the tensor cores, the
// accumulator going through dz32 (this workgroup owns those rows: no atomics).
@compute @workgroup_size(128)
fn backward_mixed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row_base = wid.x * TILE;
    let group = t / 32u;
    let r = t / 2u;
    let half = t % 2u;
    let j = row_base + r;
    let inv_t = params.inv_temperature;
    let stride = params.stride;
    for (var col_base = 0u; col_base < params.col_count; col_base += TILE) {
        logit_tile(row_base, col_base, group);
        workgroupBarrier();
        for (var c = 0u; c < 32u; c++) {
            let col = half * 32u + c;
            let k = col_base + col;
            var u = 0.0;
            if (j < params.row_count && k < params.col_count) {
                var kj: Pair;
                let jk = classify_both(j, k, &kj);
                if (jk.kind != NEITHER) {
                    let logit = tile_s[r * TILE + col] * inv_t;
                    u = coefficient(outcomes[j], 1.0, jk, logit) + coefficient(outcomes[k], 1.0, kj, logit);
                }
            }
            tile_h16[r * TILE + col] = f16(clamp(u, -F16_MAX, F16_MAX));
        }
        workgroupBarrier();
        // Subgroup `group` owns rows 16·group..+16: four A fragments of U for the
        // whole tile, then every 16 features of the row block.
        let h_base = group * COOP * TILE;
        let h0 = h_base;
        let h1 = h_base + COOP;
        let h2 = h_base + 2u * COOP;
        let h3 = h_base + 3u * COOP;
        let ld = TILE;
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h0], ld);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h1], ld);
        let a2 = coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h2], ld);
        let a3 = coopLoadT<coop_mat16x16<f16, A>>(&tile_h16[h3], ld);
        let out_base = (row_base + group * COOP) * stride;
        let z_base = col_base * stride;
        let z_step = COOP * stride;
        for (var d = 0u; d < stride; d += COOP) {
            let io = out_base + d;
            var acc = coopLoadT<coop_mat16x16<f32, C>>(&dz32[io], stride);
            let iz0 = z_base + d;
            let iz1 = iz0 + z_step;
            let iz2 = iz1 + z_step;
            let iz3 = iz2 + z_step;
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz0], stride);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz1], stride);
            let b2 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz2], stride);
            let b3 = coopLoadT<coop_mat16x16<f16, B>>(&z16[iz3], stride);
            acc = coopMultiplyAdd(a0, b0, acc);
            acc = coopMultiplyAdd(a1, b1, acc);
            acc = coopMultiplyAdd(a2, b2, acc);
            acc = coopMultiplyAdd(a3, b3, acc);
            coopStoreT(acc, &dz32[io], stride);
        }
        workgroupBarrier();
    }
}

// ∂L/∂z = factor/τ · dz32, then conr_core::normalize::normalize_backward into
// the caller's gradient (M×D, unpadded).
@compute @workgroup_size(64)
fn normalize_backward_mixed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= params.rows) {
        return;
    }
    let scale = totals.factor * params.inv_temperature;
    let base = row * params.dim;
    let padded = row * params.stride;
    let length = lengths[row];
    if (length > EPSILON) {
        var radial = 0.0;
        for (var i = 0u; i < params.dim; i++) {
            radial += z_rows[base + i] * (scale * dz32[padded + i]);
        }
        let inv = 1.0 / length;
        for (var i = 0u; i < params.dim; i++) {
            dz[base + i] = (scale * dz32[padded + i] - z_rows[base + i] * radial) * inv;
        }
    } else {
        for (var i = 0u; i < params.dim; i++) {
            dz[base + i] = scale * dz32[padded + i] / EPSILON;
        }
    }
}
