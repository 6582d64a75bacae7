use std::ops::Range;
use std::sync::Arc;

use conr_core::normalize::{normalize, normalize_backward};
use conr_core::pairs::Pair;
use conr_core::stats::{RowGrad, RowOutcome, RowStats, reduction_factor};
use conr_core::{Batch, Config, Error, Params, Scalar};
use rayon::prelude::*;

use crate::matmul::{Mat, gram_into, matmul};
use crate::{Engine, Output};

/// Rows per block: each block is one parallel task and owns its rows' results.
const ROW_BLOCK: usize = 64;
/// Columns per tile.
const COL_BLOCK: usize = 256;
/// Above this share of positive-or-negative pairs, a tile's logits come from
/// one GEMM; below it, from a dot product per pair that needs one. Only those
/// pairs enter the loss, and in AgeDB-like batches they are about one in ten.
const DENSE_SHARE: f64 = 0.25;

/// The fast engine: the streaming forward and backward passes of DESIGN §2 in
/// tiles, multi-threaded with rayon, with the tile products done by the `gemm`
/// crate's micro-kernels.
///
/// - Forward: for each block of rows, classify the pairs of a column tile,
///   form the logits `S = Z_J Z_Kᵀ`, and push them into the core's [`RowStats`].
/// - Backward: recompute `S`, form `H_jk = (G_jk + G_kj)/τ` from both rows'
///   [`RowGrad`]s, and accumulate `∂z_J += H Z_K`.
///
/// A tile where at least a quarter of the pairs are positives or negatives
/// gets its logits and its `H Z_K` from GEMMs: three M×M×D GEMMs in all. A
/// sparser tile computes a dot product (and an update) only for the pairs that
/// enter the loss, which is cheaper below that share. A block of rows owns its rows' results,
/// so there are no atomics, and results are bit-identical across thread counts.
/// Extra memory is O(M·D + threads · tile²); no M×M buffer exists.
///
/// ```
/// use conr_cpu::{Batch, Config, Engine, Fast, Reference, Shape};
/// let shape = Shape { rows: 3, dim: 2, label_dim: 1 };
/// let (f, y, p): ([f64; 6], _, _) = ([1.0, 0.0, 0.8, 0.6, 0.0, 1.0], [10.0, 10.5, 40.0], [20.0, 20.0, 20.5]);
/// let batch = Batch::new(shape, &f, &y, &p, None)?;
/// let fast = Fast::with_threads(2)?.compute(&batch, &Config::paper())?;
/// let reference = Reference.compute(&batch, &Config::paper())?;
/// assert!((fast.loss - reference.loss).abs() < 1e-12);
/// # Ok::<(), conr_cpu::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Fast {
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Fast {
    /// An engine on rayon's global thread pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine with its own pool of `threads` threads (0 means one per core).
    pub fn with_threads(threads: usize) -> Result<Self, Error> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("conr-{i}"))
            .build()
            .map_err(|_| Error::InvalidConfig {
                field: "threads",
                why: "the thread pool could not be started",
            })?;
        Ok(Self {
            pool: Some(Arc::new(pool)),
        })
    }

    /// The number of threads this engine computes on.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }
}

impl Engine for Fast {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn compute<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
    ) -> Result<Output<T>, Error> {
        let params = batch.check(config)?;
        match &self.pool {
            Some(pool) => Ok(pool.install(|| run(batch, &params))),
            None => Ok(run(batch, &params)),
        }
    }
}

/// Everything the tiles read.
struct Tiles<'a, 'b, T> {
    params: &'a Params<T>,
    batch: &'a Batch<'b, T>,
    z: &'a [T],
    log_eta: &'a [T],
    rows: usize,
    dim: usize,
}

fn run<T: Scalar>(batch: &Batch<'_, T>, params: &Params<T>) -> Output<T> {
    let (rows, dim) = (batch.rows(), batch.shape().dim);
    let mut z = vec![T::zero(); rows * dim];
    let mut lengths = vec![T::zero(); rows];
    z.par_chunks_mut(dim)
        .zip(lengths.par_iter_mut())
        .enumerate()
        .for_each(|(j, (zj, length))| *length = normalize(batch.feature_row(j), zj));
    let log_eta: Vec<T> = (0..rows).map(|j| batch.weight(j).ln()).collect();
    let tiles = Tiles {
        params,
        batch,
        z: &z,
        log_eta: &log_eta,
        rows,
        dim,
    };

    let blocks: Vec<Range<usize>> = (0..rows)
        .step_by(ROW_BLOCK)
        .map(|r| r..(r + ROW_BLOCK).min(rows))
        .collect();
    let outcomes: Vec<RowOutcome<T>> = blocks
        .par_iter()
        .map(|block| tiles.forward(block.clone()))
        .collect::<Vec<_>>()
        .concat();
    let anchors = outcomes.iter().filter(|o| o.anchor).count();
    let factor = reduction_factor::<T>(params.config.reduction, rows, anchors);
    let loss = factor * outcomes.iter().fold(T::zero(), |acc, o| acc + o.loss);

    let grads: Vec<RowGrad<T>> = outcomes.iter().map(|o| o.gradient(factor)).collect();
    let mut grad_features = vec![T::zero(); rows * dim];
    grad_features
        .par_chunks_mut(ROW_BLOCK * dim)
        .zip(blocks.par_iter())
        .for_each(|(df, block)| tiles.backward(block.clone(), &grads, &lengths, df));

    Output {
        loss,
        grad_features,
        anchors: outcomes.iter().map(|o| o.anchor).collect(),
        positives: outcomes.iter().map(|o| o.positives).collect(),
        negatives: outcomes.iter().map(|o| o.negatives).collect(),
    }
}

impl<T: Scalar> Tiles<'_, '_, T> {
    fn column_blocks(&self) -> impl Iterator<Item = Range<usize>> + use<'_, T> {
        (0..self.rows)
            .step_by(COL_BLOCK)
            .map(|c| c..(c + COL_BLOCK).min(self.rows))
    }

    /// `gram[(j − rows.start)·cols.len() + (k − cols.start)] = z_j · z_k`.
    fn gram(&self, rows: &Range<usize>, cols: &Range<usize>, gram: &mut [T]) {
        let d = self.dim;
        let (a, z) = (
            &self.z[rows.start * d..rows.end * d],
            &self.z[cols.start * d..cols.end * d],
        );
        gram_into(a, z, rows.len(), cols.len(), d, gram, 1);
    }

    /// The forward pass of one block of rows: their statistics over every column tile.
    fn forward(&self, rows: Range<usize>) -> Vec<RowOutcome<T>> {
        let (params, batch) = (self.params, self.batch);
        let mut stats = vec![RowStats::default(); rows.len()];
        let mut gram = vec![T::zero(); rows.len() * COL_BLOCK];
        // The tile's positives and negatives: (row in block, column, pair).
        let mut hits: Vec<(usize, usize, Pair<T>)> = Vec::new();
        for cols in self.column_blocks() {
            hits.clear();
            for (i, j) in rows.clone().enumerate() {
                let (anchor, log_eta) = (batch.row(j), self.log_eta[j]);
                for k in cols.clone() {
                    let pair = Pair::classify(params, anchor, batch.row(k), log_eta);
                    if pair != Pair::Neither {
                        hits.push((i, k, pair));
                    }
                }
            }
            let dense = self.logits(&rows, &cols, hits.len(), &mut gram);
            for &(i, k, pair) in &hits {
                let dot = if dense {
                    gram[i * cols.len() + k - cols.start]
                } else {
                    self.dot(rows.start + i, k)
                };
                stats[i].push(pair, dot * params.inv_temperature);
            }
        }
        stats
            .iter()
            .zip(rows)
            .map(|(s, j)| s.finish(params, self.rows, batch.weight(j)))
            .collect()
    }

    /// Fills `gram` with the tile's dot products by one GEMM when at least
    /// [`DENSE_SHARE`] of its pairs are used, and returns whether it did.
    fn logits(
        &self,
        rows: &Range<usize>,
        cols: &Range<usize>,
        used: usize,
        gram: &mut [T],
    ) -> bool {
        let dense = used as f64 > DENSE_SHARE * (rows.len() * cols.len()) as f64;
        if dense {
            self.gram(rows, cols, gram);
        }
        dense
    }

    /// `z_j · z_k`, with eight independent sums so that the compiler vectorises it.
    #[inline]
    fn dot(&self, j: usize, k: usize) -> T {
        let d = self.dim;
        let (a, b) = (&self.z[j * d..(j + 1) * d], &self.z[k * d..(k + 1) * d]);
        let mut lanes = [T::zero(); 8];
        let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail = a8
            .remainder()
            .iter()
            .zip(b8.remainder())
            .fold(T::zero(), |acc, (&x, &y)| acc + x * y);
        for (x, y) in a8.zip(b8) {
            for i in 0..8 {
                lanes[i] = lanes[i] + x[i] * y[i];
            }
        }
        lanes.iter().fold(tail, |acc, &l| acc + l)
    }

    /// The backward pass of one block of rows, written into its rows of `∂L/∂f`.
    fn backward(&self, rows: Range<usize>, grads: &[RowGrad<T>], lengths: &[T], df: &mut [T]) {
        let (params, batch, d) = (self.params, self.batch, self.dim);
        let inv_t = params.inv_temperature;
        let mut dz = vec![T::zero(); rows.len() * d];
        let mut gram = vec![T::zero(); rows.len() * COL_BLOCK];
        let mut h = vec![T::zero(); rows.len() * COL_BLOCK];
        let mut hits: Vec<(usize, usize, Pair<T>, Pair<T>)> = Vec::new();
        for cols in self.column_blocks() {
            let width = cols.len();
            hits.clear();
            for (i, j) in rows.clone().enumerate() {
                let anchor = batch.row(j);
                for k in cols.clone() {
                    let (jk, kj) = Pair::classify_both(
                        params,
                        anchor,
                        batch.row(k),
                        self.log_eta[j],
                        self.log_eta[k],
                    );
                    if jk != Pair::Neither {
                        hits.push((i, k, jk, kj));
                    }
                }
            }
            let dense = self.logits(&rows, &cols, hits.len(), &mut gram);
            if dense {
                h[..rows.len() * width].fill(T::zero());
            }
            for &(i, k, jk, kj) in &hits {
                let j = rows.start + i;
                let dot = if dense {
                    gram[i * width + k - cols.start]
                } else {
                    self.dot(j, k)
                };
                let s = dot * inv_t;
                // H_jk = (G_jk + G_kj)/τ: both rows' coefficients from one logit.
                let h_jk = (grads[j].coefficient(jk, s) + grads[k].coefficient(kj, s)) * inv_t;
                if dense {
                    h[i * width + k - cols.start] = h_jk;
                } else if !h_jk.is_zero() {
                    let zk = &self.z[k * d..(k + 1) * d];
                    let dz_j = &mut dz[i * d..(i + 1) * d];
                    dz_j.iter_mut()
                        .zip(zk)
                        .for_each(|(acc, &x)| *acc = *acc + h_jk * x);
                }
            }
            if dense {
                let lhs = Mat::row_major(&h[..rows.len() * width], rows.len(), width);
                let rhs = Mat::row_major(&self.z[cols.start * d..cols.end * d], width, d);
                matmul(&mut dz, d, lhs, rhs, true, 1);
            }
        }
        for (i, j) in rows.enumerate() {
            let span = i * d..(i + 1) * d;
            normalize_backward(
                lengths[j],
                &self.z[j * d..(j + 1) * d],
                &dz[span.clone()],
                &mut df[span],
            );
        }
    }
}
