use std::ops::Range;

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::dir::{BalancedMseOutput, RankSimOutput, RncOutput};
use conr_core::math::ln;
use conr_core::normalize::{normalize, normalize_backward};
use conr_core::pairs::Pair;
use conr_core::shard;
use conr_core::stats::{RowGrad, RowOutcome, RowStats};
use conr_core::{Batch, Config, Engine, Error, Params, Part, Scalar, Worker};

/// The reference engine: plain loops over the core, one row at a time.
///
/// Memory is O(M·D): the normalised features, their gradient, and a few values
/// per row. Logits are recomputed in the backward pass instead of stored.
/// Simplicity beats speed here; it is the oracle for every other engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference;

impl<T: Scalar> Engine<T> for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn rank_sim(
        &self,
        batch: &RankSimBatch<'_, T>,
        config: &RankSim,
    ) -> Result<RankSimOutput<T>, Error> {
        crate::dir::reference::rank_sim(batch, config)
    }

    fn rank_n_contrast(
        &self,
        batch: &RncBatch<'_, T>,
        config: &RankNContrast,
    ) -> Result<RncOutput<T>, Error> {
        crate::dir::reference::rank_n_contrast(batch, config)
    }

    fn balanced_mse(
        &self,
        batch: &BmseBatch<'_, T>,
        config: &BalancedMse<'_>,
    ) -> Result<BalancedMseOutput<T>, Error> {
        crate::dir::reference::balanced_mse(batch, config)
    }

    fn worker<'a>(
        &'a self,
        batch: Batch<'a, T>,
        config: &Config,
    ) -> Result<Box<dyn Worker<T> + 'a>, Error> {
        let params = batch.check(config)?;
        let (z, lengths) = normalized(&batch);
        Ok(Box::new(ReferenceWorker {
            params,
            batch,
            z,
            lengths,
        }))
    }
}

/// The reference engine's worker: the normalised features, kept for both phases.
struct ReferenceWorker<'a, T> {
    params: Params<T>,
    batch: Batch<'a, T>,
    z: Vec<T>,
    lengths: Vec<T>,
}

impl<T: Scalar> Worker<T> for ReferenceWorker<'_, T> {
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>, Error> {
        let batch = &self.batch;
        shard::check_phase(batch.rows(), &rows, None)?;
        // One pass over k per row, statistics only.
        Ok(rows
            .map(|j| {
                let mut stats = RowStats::default();
                self.for_each_pair(j, |_, pair, _, s| stats.push(pair, s));
                stats.finish(&self.params, batch.rows(), batch.eta(j))
            })
            .collect())
    }

    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error> {
        shard::check_phase(self.batch.rows(), &rows, Some(outcomes.len()))?;
        let (params, z, dim) = (&self.params, &self.z, self.batch.shape().dim);
        let factor = shard::reduction::<T>(&params.config, outcomes);
        let grads: Vec<RowGrad<T>> = outcomes.iter().map(|o| o.gradient(factor)).collect();
        // ∂L/∂z_j = (1/τ) Σ_k (G_jk + G_kj) z_k, recomputing each logit.
        let mut grad_features = vec![T::zero(); rows.len() * dim];
        for (j, df) in rows.clone().zip(grad_features.chunks_exact_mut(dim)) {
            let mut dz = vec![T::zero(); dim];
            self.for_each_pair(j, |k, jk, kj, s| {
                let g = (grads[j].coefficient(jk, s) + grads[k].coefficient(kj, s))
                    * params.inv_temperature;
                for (acc, &x) in dz.iter_mut().zip(&z[k * dim..(k + 1) * dim]) {
                    *acc = *acc + g * x;
                }
            });
            normalize_backward(self.lengths[j], &z[j * dim..(j + 1) * dim], &dz, df);
        }
        let loss = shard::part_loss(&params.config, outcomes, rows);
        Ok(Part {
            loss,
            grad_features,
        })
    }
}

impl<T: Scalar> ReferenceWorker<'_, T> {
    /// Calls `visit(k, jk, kj, s_jk)` for every `k` that is a positive or a
    /// negative of `j`, with what `k` is to `j` and what `j` is to `k`.
    fn for_each_pair(&self, j: usize, mut visit: impl FnMut(usize, Pair<T>, Pair<T>, T)) {
        let (batch, dim) = (&self.batch, self.batch.shape().dim);
        let log_eta = ln(batch.eta(j));
        let zj = &self.z[j * dim..(j + 1) * dim];
        for k in 0..batch.rows() {
            let (pair, kj) = Pair::classify_both(
                &self.params,
                batch.row(j),
                batch.row(k),
                log_eta,
                ln(batch.eta(k)),
            );
            if pair == Pair::Neither {
                continue;
            }
            let zk = &self.z[k * dim..(k + 1) * dim];
            let dot = zj
                .iter()
                .zip(zk)
                .fold(T::zero(), |acc, (&a, &b)| acc + a * b);
            visit(k, pair, kj, dot * self.params.inv_temperature);
        }
    }
}

/// The normalised features and the feature lengths.
fn normalized<T: Scalar>(batch: &Batch<'_, T>) -> (Vec<T>, Vec<T>) {
    let dim = batch.shape().dim;
    let mut z = vec![T::zero(); batch.rows() * dim];
    let lengths = z
        .chunks_exact_mut(dim)
        .enumerate()
        .map(|(j, zj)| normalize(batch.feature_row(j), zj))
        .collect();
    (z, lengths)
}
