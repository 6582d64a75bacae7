//! The reference engine's companion losses: each formula as written, one
//! row, one pair at a time. RankSim and Rank-N-Contrast here share only the
//! ranking rule and the config with the fast engine's passes, so that each
//! checks the other; Balanced MSE's row terms are the core's own streaming
//! functions, taken one row after another.

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Scale};
use conr_core::dir::ranksim::{self, RankSim, RankSimBatch, RowScratch};
use conr_core::dir::rnc::{self, RankNContrast, RncBatch};
use conr_core::dir::{BalancedMseOutput, RankSimOutput, RncOutput};
use conr_core::math::{exp, ln};
use conr_core::normalize::normalize_backward;
use conr_core::{Error, Scalar, metric};

use super::{cast, dot, normalized_rows};

/// RankSim over the subset, row by row, with the whole b×b similarity
/// matrix never held: each row's similarities are recomputed.
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
    let zrow = |i: usize| &z[i * d..(i + 1) * d];
    let lambda: T = cast(config.lambda);
    let (mut sims, mut label_sims, mut grad) =
        (vec![T::zero(); b], vec![T::zero(); b], vec![T::zero(); b]);
    let (mut order, mut ranks, mut other) = (vec![0; b], vec![T::zero(); b], vec![T::zero(); b]);
    let mut dz = vec![T::zero(); b * d];
    let mut loss = T::zero();
    for i in 0..b {
        for j in 0..b {
            sims[j] = dot(zrow(i), zrow(j));
            label_sims[j] = -metric::distance(
                config.label_metric,
                batch.label(rows[i]),
                batch.label(rows[j]),
            );
        }
        let scratch = RowScratch {
            order: &mut order,
            ranks: &mut ranks,
            other: &mut other,
        };
        loss = loss + ranksim::row_terms(lambda, &sims, &label_sims, scratch, &mut grad);
        // s_ij = ẑ_i·ẑ_j: the gradient reaches both rows.
        for (j, &g) in grad.iter().enumerate() {
            for k in 0..d {
                dz[i * d + k] = dz[i * d + k] + g * z[j * d + k];
                dz[j * d + k] = dz[j * d + k] + g * z[i * d + k];
            }
        }
    }
    let mut grad_features = vec![T::zero(); shape.rows * d];
    let mut df = vec![T::zero(); d];
    for (i, &r) in rows.iter().enumerate() {
        normalize_backward(lengths[i], zrow(i), &dz[i * d..(i + 1) * d], &mut df);
        let out = &mut grad_features[r * d..(r + 1) * d];
        out.iter_mut().zip(&df).for_each(|(o, &x)| *o = *o + x);
    }
    RankSimOutput {
        loss,
        grad_features,
        rows,
    }
    .checked()
}

/// Rank-N-Contrast pair by pair: for each anchor i and each k ≠ i, the
/// log-sum-exp over the rows at least as far from i in label, in O(n³).
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
    let mut loss = T::zero();
    let mut grad_features = vec![T::zero(); n * d];
    let (mut logits, mut distances, mut label_d, mut ds) = (
        vec![T::zero(); n],
        vec![T::zero(); n],
        vec![T::zero(); n],
        vec![T::zero(); n],
    );
    for i in 0..n {
        for j in 0..n {
            distances[j] = batch.feature_distance(i, j);
            logits[j] = -distances[j] / tau;
            label_d[j] = batch.label_distance(metric, i, j);
            ds[j] = T::zero();
        }
        for k in (0..n).filter(|&k| k != i) {
            let far = |j: &usize| *j != i && label_d[*j] >= label_d[k];
            let top = (0..n)
                .filter(far)
                .fold(T::neg_infinity(), |m, j| m.max(logits[j]));
            let sum = (0..n)
                .filter(far)
                .fold(T::zero(), |s, j| s + exp(logits[j] - top));
            let log_s = top + ln(sum);
            loss = loss + (log_s - logits[k]);
            for j in (0..n).filter(far) {
                ds[j] = ds[j] + exp(logits[j] - log_s);
            }
            ds[k] = ds[k] - T::one();
        }
        for j in (0..n).filter(|&j| j != i) {
            let w = rnc::pair_weight(ds[j], distances[j], tau, pairs);
            for c in 0..d {
                let diff = batch.feature_row(i)[c] - batch.feature_row(j)[c];
                grad_features[i * d + c] = grad_features[i * d + c] + w * diff;
                grad_features[j * d + c] = grad_features[j * d + c] - w * diff;
            }
        }
    }
    RncOutput {
        loss: loss / pairs,
        grad_features,
    }
    .checked()
}

/// Balanced MSE, one row after another.
pub(crate) fn balanced_mse<T: Scalar>(
    batch: &BmseBatch<'_, T>,
    config: &BalancedMse<'_>,
) -> Result<BalancedMseOutput<T>, Error> {
    let scale = Scale::new(config, batch)?;
    let l = batch.label_dim();
    let mut grad_preds = vec![T::zero(); batch.rows() * l];
    let (mut loss, mut d_variance) = (T::zero(), T::zero());
    for (i, grad) in grad_preds.chunks_exact_mut(l).enumerate() {
        let (term, dv) = scale.row(batch, &config.prior, i, grad);
        loss = loss + term;
        d_variance = d_variance + dv;
    }
    BalancedMseOutput::from_sums(&scale, loss, d_variance, grad_preds)
}
