//! The fast engine's companion losses: blocks of rows in parallel, each
//! output row's sums taken in a fixed order, so that results are
//! bit-identical across thread counts. No n×n buffer exists: a block of 64
//! rows holds its rows' similarities or pair weights (64×n), and RankSim's
//! products are GEMMs of fixed shapes.

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Scale};
use conr_core::dir::ranksim::{self, RankSim, RankSimBatch, RowScratch};
use conr_core::dir::rnc::{self, RankNContrast, RncBatch};
use conr_core::dir::{BalancedMseOutput, RankSimOutput, RncOutput};
use conr_core::normalize::normalize_backward;
use conr_core::{Error, Scalar, metric};
use rayon::prelude::*;

use super::{cast, normalized_rows};
use crate::matmul::{Mat, Rows, gram_into, matmul};

/// Rows per block: the unit of the two-step passes below.
const BLOCK: usize = 64;
/// Rows per GEMM call inside a block: a fixed shape, whatever the threads.
const STRIP: usize = 16;
/// Rows per task where each row's work is small (Balanced MSE).
const ROWS_PER_TASK: usize = 32;

/// RankSim over the subset in blocks of rows: the block's similarities
/// `S_I = Ẑ_I Ẑᵀ` (GEMM), each row's ranks and blackbox gradient `G_I`, then
/// `∂Ẑ_I += G_I Ẑ` and `∂Ẑ += G_Iᵀ Ẑ_I` (GEMMs). Memory O(b·D + 64·b).
pub(crate) fn rank_sim<T: Scalar>(
    batch: &RankSimBatch<'_, T>,
    config: &RankSim,
) -> Result<RankSimOutput<T>, Error> {
    let shape = batch.shape();
    let mut rows = vec![0; batch.rows().map_or(shape.rows, <[usize]>::len)];
    let b = batch.select(config, &mut rows)?;
    rows.truncate(b);
    let d = shape.dim;
    let (z, lengths) = normalized_rows(batch.features(), d, &rows);
    let lambda: T = cast(config.lambda);
    let mut dz = vec![T::zero(); b * d];
    let mut sims = vec![T::zero(); BLOCK * b];
    // The similarities' k-major operand, written once for every strip.
    let mut z_t = Vec::new();
    Rows::plain(&z, d).k_major(0..d, &mut z_t);
    let mut loss = T::zero();
    for start in (0..b).step_by(BLOCK) {
        let block = start..(start + BLOCK).min(b);
        let height = block.len();
        let sims = &mut sims[..height * b];
        sims.par_chunks_mut(STRIP * b)
            .enumerate()
            .for_each(|(s, out)| {
                let first = (start + s * STRIP) * d;
                let strip = out.len() / b;
                gram_into(&z[first..first + strip * d], &z_t, strip, b, d, out, 1);
            });
        // Each row's similarities become its blackbox gradient, in place.
        let losses: Vec<T> = sims
            .par_chunks_mut(b)
            .enumerate()
            .map_init(
                || {
                    (
                        vec![T::zero(); b],
                        vec![0; b],
                        vec![T::zero(); b],
                        vec![T::zero(); b],
                        vec![T::zero(); b],
                    )
                },
                |(label_sims, order, ranks, other, grad), (k, row)| {
                    let i = start + k;
                    for (j, s) in label_sims.iter_mut().enumerate() {
                        let (a, c) = (batch.label(rows[i]), batch.label(rows[j]));
                        *s = -metric::distance(config.label_metric, a, c);
                    }
                    let scratch = RowScratch {
                        order,
                        ranks,
                        other,
                    };
                    let part = ranksim::row_terms(lambda, &*row, label_sims, scratch, grad);
                    row.copy_from_slice(grad);
                    part
                },
            )
            .collect();
        loss = losses.into_iter().fold(loss, |acc, x| acc + x);
        let g = &*sims;
        // ∂Ẑ_j += Σ_{i∈I} G_ij ẑ_i for every row j, then ∂Ẑ_I += G_I Ẑ.
        let z_block = &z[start * d..block.end * d];
        dz.par_chunks_mut(STRIP * d)
            .enumerate()
            .for_each(|(s, out)| {
                let (j0, strip) = (s * STRIP, out.len() / d);
                let g_t = Mat {
                    data: &g[j0..],
                    rows: strip,
                    cols: height,
                    row_stride: 1,
                    col_stride: b,
                };
                matmul(out, d, g_t, Mat::row_major(z_block, height, d), true, 1);
            });
        dz[start * d..block.end * d]
            .par_chunks_mut(STRIP * d)
            .enumerate()
            .for_each(|(s, out)| {
                let strip = out.len() / d;
                let g_rows = &g[s * STRIP * b..(s * STRIP + strip) * b];
                let lhs = Mat::row_major(g_rows, strip, b);
                matmul(out, d, lhs, Mat::row_major(&z, b, d), true, 1);
            });
    }
    let grad_features = scatter_normalized(shape.rows, d, &rows, &z, &lengths, &dz);
    RankSimOutput {
        loss,
        grad_features,
        rows,
    }
    .checked()
}

/// `∂L/∂f` of the batch from `∂L/∂ẑ` of the subset's rows (zero elsewhere;
/// a row given twice gets both parts, in subset order).
fn scatter_normalized<T: Scalar>(
    total: usize,
    d: usize,
    rows: &[usize],
    z: &[T],
    lengths: &[T],
    dz: &[T],
) -> Vec<T> {
    let mut parts = vec![T::zero(); rows.len() * d];
    parts.par_chunks_mut(d).enumerate().for_each(|(i, out)| {
        normalize_backward(
            lengths[i],
            &z[i * d..(i + 1) * d],
            &dz[i * d..(i + 1) * d],
            out,
        )
    });
    let mut grad = vec![T::zero(); total * d];
    for (i, &r) in rows.iter().enumerate() {
        let out = &mut grad[r * d..(r + 1) * d];
        out.iter_mut()
            .zip(&parts[i * d..(i + 1) * d])
            .for_each(|(o, &x)| *o = *o + x);
    }
    grad
}

/// Rank-N-Contrast in blocks of anchors: each anchor's distances, its sort
/// and its running sums ([`rnc::anchor_terms`], O(n log n)), and its pair
/// weights; then every row's gradient from the block's weights, in a fixed
/// order. O(n²·(D + log n)) time, O(n·D + 64·n) memory.
pub(crate) fn rank_n_contrast<T: Scalar>(
    batch: &RncBatch<'_, T>,
    config: &RankNContrast,
) -> Result<RncOutput<T>, Error> {
    config.validate()?;
    batch.check_logits(config)?;
    let shape = batch.shape();
    let (n, d) = (shape.rows, shape.dim);
    let tau: T = cast(config.temperature);
    let pairs = rnc::pair_count::<T>(n);
    let metric = config.label_metric;
    let mut grad_features = vec![T::zero(); n * d];
    let mut weights = vec![T::zero(); BLOCK * n];
    let mut loss = T::zero();
    for start in (0..n).step_by(BLOCK) {
        let block = start..(start + BLOCK).min(n);
        let weights = &mut weights[..block.len() * n];
        let losses: Vec<T> = weights
            .par_chunks_mut(n)
            .enumerate()
            .map_init(
                || {
                    (
                        vec![T::zero(); n],
                        vec![T::zero(); n],
                        vec![T::zero(); n],
                        vec![0; n],
                    )
                },
                |(distances, logits, label_d, order), (k, w)| {
                    let i = start + k;
                    for j in 0..n {
                        distances[j] = batch.feature_distance(i, j);
                        logits[j] = -distances[j] / tau;
                        label_d[j] = batch.label_distance(metric, i, j);
                    }
                    let part = rnc::anchor_terms(i, logits, label_d, order, w);
                    for (wj, &r) in w.iter_mut().zip(distances.iter()) {
                        *wj = rnc::pair_weight(*wj, r, tau, pairs);
                    }
                    part
                },
            )
            .collect();
        loss = losses.into_iter().fold(loss, |acc, x| acc + x);
        let w = &*weights;
        // Row a: its own anchor's pairs (if in the block), then every
        // anchor's pair with a; each a sum of w·(f_a − f_x).
        grad_features
            .par_chunks_mut(d)
            .enumerate()
            .for_each(|(a, out)| {
                let fa = batch.feature_row(a);
                let mut add = |weight: T, x: usize| {
                    if weight != T::zero() {
                        let fx = batch.feature_row(x);
                        for ((o, &p), &q) in out.iter_mut().zip(fa).zip(fx) {
                            *o = *o + weight * (p - q);
                        }
                    }
                };
                if block.contains(&a) {
                    let own = &w[(a - start) * n..(a - start + 1) * n];
                    for (x, &weight) in own.iter().enumerate() {
                        add(weight, x);
                    }
                }
                for i in block.clone() {
                    add(w[(i - start) * n + a], i);
                }
            });
    }
    RncOutput {
        loss: loss / pairs,
        grad_features,
    }
    .checked()
}

/// Balanced MSE, rows in parallel: each row's term streams over the batch's
/// labels (BMC) or the prior's components (GAI, BNI) with a running
/// log-sum-exp; the sums over rows are taken in row order.
pub(crate) fn balanced_mse<T: Scalar>(
    batch: &BmseBatch<'_, T>,
    config: &BalancedMse<'_>,
) -> Result<BalancedMseOutput<T>, Error> {
    let scale = Scale::new(config, batch)?;
    let l = batch.label_dim();
    let mut grad_preds = vec![T::zero(); batch.rows() * l];
    let terms: Vec<(T, T)> = grad_preds
        .par_chunks_mut(l)
        .with_min_len(ROWS_PER_TASK)
        .enumerate()
        .map(|(i, grad)| scale.row(batch, &config.prior, i, grad))
        .collect();
    let (loss, d_variance) = terms
        .into_iter()
        .fold((T::zero(), T::zero()), |(a, b), (t, v)| (a + t, b + v));
    BalancedMseOutput::from_sums(&scale, loss, d_variance, grad_preds)
}
