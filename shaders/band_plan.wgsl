// requires: layout.wgsl pairs.wgsl
//
// The band plan built on the device, for calls whose labels never reach the
// host (GpuConr::record): conr_core::band::BandPlan::new's order, and
// BandPlan::columns for every 64-row block.
//
// Both sides at once: dispatches are (x, 2), and `wid.y` is the side (0: the
// positives, sorted by the first label coordinate; 1: the negatives, by the
// first prediction coordinate). Each side owns `padded` slots of `plan_keys`
// and `plan_order` (a power of two ≥ PLAN_BLOCK) and `run_stride` slots of
// `runs_out`; the tile kernels then read `plan_order` as `band_order` and
// `runs_out` as `band_ranges`, bound at each side's offset.
//
// Dispatch order (adapters/wgpu/src/record.rs):
//   plan_keys_init → plan_sort_block (whole blocks) → for k = 2·PLAN_BLOCK … padded:
//   plan_sort_step (j = k/2 … PLAN_BLOCK) → plan_sort_block (merge at k) → plan_runs
// and, for the mixed kernels (after the host's plan too), plan_positions.
// A bitonic sort of (key, row) pairs: every pair is distinct (rows are), so
// the order is the host's exactly, ties by row included.

// Threads of the sort kernels; must equal conr_wgpu's SORT_WORKGROUP.
const PLAN_SORT: u32 = 256u;
// Elements one workgroup sorts in workgroup memory: two per thread.
const PLAN_BLOCK: u32 = 512u;
// conr_core::band's SLACK_ULPS × f32's epsilon: 64 · 2⁻²³ = 2⁻¹⁷.
const PLAN_SLACK: f32 = 7.62939453125e-6;
// The device's bounds lie a further 8 · 2⁻²³ outside the host's: more than the
// rounding of the bound formula can differ between host and device (a fused
// multiply-add, another order of operations), so a device run always holds
// the host's, and equals it unless a key lies in that sliver.
const PLAN_WIDEN: f32 = 9.5367431640625e-7;
// The smallest normal f32: a bound nearer zero than this may have been
// flushed, so it is moved out to it.
const PLAN_MIN_NORMAL: f32 = 1.17549435e-38;
// The key and row of a padding slot: after every real row.
const PLAN_PAST: u32 = 0xffffffffu;

// One dispatch's step of the sort, and the layout (conr_wgpu's `PlanStep`).
struct PlanStep {
    // Slots per side in plan_keys and plan_order.
    padded: u32,
    // Slots per side in plan_runs.
    run_stride: u32,
    // The bitonic stage (the size of the sequences being merged); 0 for the
    // first plan_sort_block, which sorts each block from scratch.
    k: u32,
    // The compare distance of a plan_sort_step.
    j: u32,
}

@group(0) @binding(22) var<storage, read_write> plan_keys: array<u32>;
@group(0) @binding(23) var<storage, read_write> plan_order: array<u32>;
@group(0) @binding(24) var<storage, read_write> runs_out: array<vec2<u32>>;
// The tiles both sides' runs span together (a counter the host clears).
@group(0) @binding(25) var<storage, read_write> plan_tiles: atomic<u32>;
@group(0) @binding(26) var<uniform> plan_step: PlanStep;
// Each row's position in each side's order (the mixed kernels' un-permute).
@group(0) @binding(28) var<storage, read_write> positions_out: array<u32>;

var<workgroup> block_keys: array<u32, 512>;
var<workgroup> block_rows: array<u32, 512>;

// An order-preserving u32 for a finite f32: −0 and +0 get the same key.
fn order_key(x: f32) -> u32 {
    var bits = bitcast<u32>(x);
    if (bits == 0x80000000u) {
        bits = 0u;
    }
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

// The f32 whose order_key is `key`.
fn key_value(key: u32) -> f32 {
    if ((key & 0x80000000u) != 0u) {
        return bitcast<f32>(key & 0x7fffffffu);
    }
    return bitcast<f32>(~key);
}

// Whether (key a, row a) sorts before (key b, row b).
fn precedes(key_a: u32, row_a: u32, key_b: u32, row_b: u32) -> bool {
    return key_a < key_b || (key_a == key_b && row_a < row_b);
}

// Slot `i` of each side: the key of row i's first label (or prediction)
// coordinate and the row, or padding past the last row.
@compute @workgroup_size(64)
fn plan_keys_init(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let side = gid.y;
    if (i >= plan_step.padded) {
        return;
    }
    var key = PLAN_PAST;
    var row = PLAN_PAST;
    if (i < uniforms.rows) {
        let first = i * uniforms.label_dim;
        if (side == 0u) {
            key = order_key(labels[first]);
        } else {
            key = order_key(preds[first]);
        }
        row = i;
    }
    plan_keys[side * plan_step.padded + i] = key;
    plan_order[side * plan_step.padded + i] = row;
}

// The positions that thread `t` compares at distance `j` in a run of
// 2·j: the lower one has bit j clear.
fn compared(t: u32, j: u32) -> vec2<u32> {
    let i = (t / j) * 2u * j + t % j;
    return vec2<u32>(i, i + j);
}

// One compare-exchange in workgroup memory; `first` is the block's first
// position in its side, which sets the direction at stage k.
fn exchange_in_block(first: u32, t: u32, k: u32, j: u32) {
    let p = compared(t, j);
    let ascending = ((first + p.x) & k) == 0u;
    let ka = block_keys[p.x];
    let ra = block_rows[p.x];
    let kb = block_keys[p.y];
    let rb = block_rows[p.y];
    if (precedes(kb, rb, ka, ra) == ascending) {
        block_keys[p.x] = kb;
        block_rows[p.x] = rb;
        block_keys[p.y] = ka;
        block_rows[p.y] = ra;
    }
}

// Every compare distance below PLAN_BLOCK, in workgroup memory: all stages
// up to PLAN_BLOCK when plan_step.k is 0 (each block sorted from scratch),
// else the rest of stage plan_step.k.
@compute @workgroup_size(256)
fn plan_sort_block(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let first = wid.x * PLAN_BLOCK;
    let base = wid.y * plan_step.padded + first;
    for (var e = 0u; e < 2u; e++) {
        let i = t + e * PLAN_SORT;
        block_keys[i] = plan_keys[base + i];
        block_rows[i] = plan_order[base + i];
    }
    workgroupBarrier();
    if (plan_step.k == 0u) {
        for (var k = 2u; k <= PLAN_BLOCK; k <<= 1u) {
            for (var j = k >> 1u; j > 0u; j >>= 1u) {
                exchange_in_block(first, t, k, j);
                workgroupBarrier();
            }
        }
    } else {
        for (var j = PLAN_BLOCK >> 1u; j > 0u; j >>= 1u) {
            exchange_in_block(first, t, plan_step.k, j);
            workgroupBarrier();
        }
    }
    for (var e = 0u; e < 2u; e++) {
        let i = t + e * PLAN_SORT;
        plan_keys[base + i] = block_keys[i];
        plan_order[base + i] = block_rows[i];
    }
}

// One compare-exchange at a distance of PLAN_BLOCK or more, across blocks.
@compute @workgroup_size(256)
fn plan_sort_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let padded = plan_step.padded;
    if (t >= padded / 2u) {
        return;
    }
    let p = compared(t, plan_step.j);
    let ascending = (p.x & plan_step.k) == 0u;
    let a = gid.y * padded + p.x;
    let b = gid.y * padded + p.y;
    let ka = plan_keys[a];
    let ra = plan_order[a];
    let kb = plan_keys[b];
    let rb = plan_order[b];
    if (precedes(kb, rb, ka, ra) == ascending) {
        plan_keys[a] = kb;
        plan_order[a] = rb;
        plan_keys[b] = ka;
        plan_order[b] = ra;
    }
}

// The first sorted position of `side_base`'s M rows whose key is at least `key`.
fn first_at_least(side_base: u32, key: u32) -> u32 {
    var low = 0u;
    var high = uniforms.rows;
    while (low < high) {
        let mid = low + (high - low) / 2u;
        if (plan_keys[side_base + mid] < key) {
            low = mid + 1u;
        } else {
            high = mid;
        }
    }
    return low;
}

// conr_core::band::BandPlan::columns for 64-row block `gid.x` of a side, its
// bounds moved out by PLAN_WIDEN (see above), and the tiles the run spans.
@compute @workgroup_size(64)
fn plan_runs(@builtin(global_invocation_id) gid: vec3<u32>) {
    let block = gid.x;
    let side = gid.y;
    let rows = uniforms.rows;
    if (block * TILE >= rows) {
        return;
    }
    let base = side * plan_step.padded;
    let low = key_value(plan_keys[base + block * TILE]);
    let high = key_value(plan_keys[base + min(block * TILE + TILE, rows) - 1u]);
    var threshold = uniforms.threshold;
    if (side == 1u) {
        threshold = uniforms.pred_threshold;
    }
    let reach = threshold + threshold * PLAN_SLACK;
    var below = low - reach - (abs(low) + reach) * PLAN_SLACK;
    below -= (abs(low) + reach) * PLAN_WIDEN;
    var above = high + reach + (abs(high) + reach) * PLAN_SLACK;
    above += (abs(high) + reach) * PLAN_WIDEN;
    if (abs(below) < PLAN_MIN_NORMAL) {
        below = -PLAN_MIN_NORMAL;
    }
    if (abs(above) < PLAN_MIN_NORMAL) {
        above = PLAN_MIN_NORMAL;
    }
    let start = first_at_least(base, order_key(below));
    // Past every key ≤ above: keys of finite values stay below PLAN_PAST.
    let end = max(first_at_least(base, order_key(above) + 1u), start);
    runs_out[side * plan_step.run_stride + block] = vec2<u32>(start, end);
    atomicAdd(&plan_tiles, (end - start + TILE - 1u) / TILE);
}

// The inverse of each side's order: row `plan_order[p]` is at position p.
@compute @workgroup_size(64)
fn plan_positions(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pos = gid.x;
    if (pos >= uniforms.rows) {
        return;
    }
    let base = gid.y * plan_step.padded;
    positions_out[base + plan_order[base + pos]] = pos;
}
