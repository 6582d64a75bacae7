use conr_core::normalize::{normalize, normalize_backward};
use conr_core::pairs::Pair;
use conr_core::stats::{RowOutcome, RowStats, reduction_factor};
use conr_core::{Batch, Config, Error, Params, Scalar};

use crate::{Engine, Output};

/// The reference engine: plain loops over the core, one row at a time.
///
/// Memory is O(M·D): the normalised features, their gradient, and a few values
/// per row. Logits are recomputed in the backward pass instead of stored.
/// Simplicity beats speed here; it is the oracle for every other engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference;

impl Engine for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn compute<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
    ) -> Result<Output<T>, Error> {
        let params = batch.check(config)?;
        let (rows, dim) = (batch.rows(), batch.shape().dim);

        let mut z = vec![T::zero(); rows * dim];
        let lengths: Vec<T> = z
            .chunks_exact_mut(dim)
            .enumerate()
            .map(|(j, zj)| normalize(batch.feature_row(j), zj))
            .collect();
        let problem = Problem {
            params: &params,
            batch,
            z: &z,
            dim,
        };

        // Forward: one pass over k per row, statistics only.
        let outcomes: Vec<RowOutcome<T>> = (0..rows)
            .map(|j| {
                let mut stats = RowStats::default();
                problem.for_each_pair(j, |_, pair, s| stats.push(pair, s));
                stats.finish(&params, rows, batch.weight(j))
            })
            .collect();
        let anchors = outcomes.iter().filter(|o| o.anchor).count();
        let factor = reduction_factor::<T>(config.reduction, rows, anchors);
        let loss = factor * outcomes.iter().fold(T::zero(), |acc, o| acc + o.loss);

        // Backward: recompute each logit; G_jk feeds both ∂z_j (via z_k) and ∂z_k (via z_j).
        let mut dz = vec![T::zero(); rows * dim];
        for (j, outcome) in outcomes.iter().enumerate() {
            if !outcome.contributes() {
                continue;
            }
            let grad = outcome.gradient(factor);
            problem.for_each_pair(j, |k, pair, s| {
                let g = grad.coefficient(pair, s) * params.inv_temperature;
                for i in 0..dim {
                    dz[j * dim + i] = dz[j * dim + i] + g * z[k * dim + i];
                    dz[k * dim + i] = dz[k * dim + i] + g * z[j * dim + i];
                }
            });
        }
        let mut grad_features = vec![T::zero(); rows * dim];
        for (j, df) in grad_features.chunks_exact_mut(dim).enumerate() {
            let span = j * dim..(j + 1) * dim;
            normalize_backward(lengths[j], &z[span.clone()], &dz[span], df);
        }

        Ok(Output {
            loss,
            grad_features,
            anchors: outcomes.iter().map(|o| o.anchor).collect(),
            positives: outcomes.iter().map(|o| o.positives).collect(),
            negatives: outcomes.iter().map(|o| o.negatives).collect(),
        })
    }
}

/// The inputs of one computation, for visiting the pairs of a row.
struct Problem<'a, 'b, T> {
    params: &'a Params<T>,
    batch: &'a Batch<'b, T>,
    z: &'a [T],
    dim: usize,
}

impl<T: Scalar> Problem<'_, '_, T> {
    /// Calls `visit(k, pair, s_jk)` for every `k` that is a positive or a negative of `j`.
    fn for_each_pair(&self, j: usize, mut visit: impl FnMut(usize, Pair<T>, T)) {
        let log_eta = self.batch.weight(j).ln();
        let zj = &self.z[j * self.dim..(j + 1) * self.dim];
        for k in 0..self.batch.rows() {
            let pair = Pair::classify(self.params, self.batch.row(j), self.batch.row(k), log_eta);
            if pair == Pair::Neither {
                continue;
            }
            let zk = &self.z[k * self.dim..(k + 1) * self.dim];
            let dot = zj
                .iter()
                .zip(zk)
                .fold(T::zero(), |acc, (&a, &b)| acc + a * b);
            visit(k, pair, dot * self.params.inv_temperature);
        }
    }
}
