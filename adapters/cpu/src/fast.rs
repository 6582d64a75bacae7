use std::ops::Range;
use std::sync::Arc;

use conr_core::band::{BandPlan, Side, TilePlan};
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
/// With the band plan (the default, [`TilePlan::Band`]) it visits only the
/// tiles that can hold a positive, with rows and columns sorted by label, and
/// those that can hold a negative, sorted by prediction (see
/// [`conr_core::band`]): time grows with the pairs that enter the loss, not
/// with M². Each pair is taken on one side only (a pair cannot be both), and
/// each row's statistics and gradient are merged in a fixed order, positives
/// first. [`Fast::with_plan`]`(TilePlan::Dense)` visits every tile.
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
    plan: TilePlan,
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
            plan: TilePlan::default(),
        })
    }

    /// The same engine with another tile plan ([`TilePlan::Band`] by default).
    pub fn with_plan(self, plan: TilePlan) -> Self {
        Self { plan, ..self }
    }

    /// The tile plan this engine uses.
    pub fn plan(&self) -> TilePlan {
        self.plan
    }

    /// The number of this engine's tiles (64 rows by 256 columns) that a
    /// batch makes it visit, over the dense plan's: 1 for the dense plan and
    /// under `angular`; for the band, both sides' tiles together, which may
    /// overlap (and so exceed 1 when most pairs are positives or negatives).
    pub fn tile_share<T: Scalar>(
        &self,
        batch: &Batch<'_, T>,
        config: &Config,
    ) -> Result<f64, Error> {
        let params = batch.check(config)?;
        let rows = batch.rows();
        let all = rows.div_ceil(ROW_BLOCK) * rows.div_ceil(COL_BLOCK);
        if self.plan == TilePlan::Dense {
            return Ok(1.0);
        }
        let mut visited = 0;
        for side in [Side::Positives, Side::Negatives] {
            let (mut order, mut keys) = (vec![0u32; rows], vec![T::zero(); rows]);
            match BandPlan::new(batch, &params, side, &mut order, &mut keys)? {
                Some(plan) => visited += plan.tiles(ROW_BLOCK, COL_BLOCK),
                None => return Ok(1.0),
            }
        }
        Ok(visited as f64 / all as f64)
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
            Some(pool) => pool.install(|| run(batch, &params, self.plan)),
            None => run(batch, &params, self.plan),
        }
    }
}

/// Everything the tiles read.
struct Tiles<'a, 'b, T> {
    params: &'a Params<T>,
    batch: &'a Batch<'b, T>,
    log_eta: &'a [T],
    rows: usize,
    dim: usize,
}

/// The rows in one order, for one pass over the tiles: every row and pair
/// (the dense plan), or one side of the band plan.
struct View<'a, T> {
    /// Row index at each position; `None` is the identity.
    order: Option<&'a [u32]>,
    /// Normalised features in this order, M×D.
    z: &'a [T],
    /// The band, or `None` for every column.
    band: Option<&'a BandPlan<'a, T>>,
}

impl<T: Scalar> View<'_, T> {
    fn index(&self, position: usize) -> usize {
        self.order.map_or(position, |o| o[position] as usize)
    }

    fn columns(&self, rows: Range<usize>, all: usize) -> Range<usize> {
        self.band.map_or(0..all, |b| b.columns(rows))
    }

    /// Whether a pair found on this view counts here: on a band side, only
    /// the side's own kind, so that no pair is counted twice.
    fn keeps(&self, pair: &Pair<T>) -> bool {
        match self.band.map(|b| b.side()) {
            None => *pair != Pair::Neither,
            Some(Side::Positives) => pair.is_positive(),
            Some(Side::Negatives) => pair.is_negative(),
        }
    }
}

fn blocks_of(rows: usize) -> Vec<Range<usize>> {
    (0..rows)
        .step_by(ROW_BLOCK)
        .map(|r| r..(r + ROW_BLOCK).min(rows))
        .collect()
}

fn run<T: Scalar>(
    batch: &Batch<'_, T>,
    params: &Params<T>,
    plan: TilePlan,
) -> Result<Output<T>, Error> {
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
        log_eta: &log_eta,
        rows,
        dim,
    };
    let blocks = blocks_of(rows);

    // The views: every pair at once, or the two sides of the band (none
    // under `angular`, where no band exists).
    let mut scratch: Vec<(Vec<u32>, Vec<T>)> = match plan {
        TilePlan::Band => (0..2)
            .map(|_| (vec![0; rows], vec![T::zero(); rows]))
            .collect(),
        TilePlan::Dense => Vec::new(),
    };
    let mut plans = Vec::with_capacity(2);
    for ((order, keys), side) in scratch.iter_mut().zip([Side::Positives, Side::Negatives]) {
        if let Some(plan) = BandPlan::new(batch, params, side, order, keys)? {
            plans.push(plan);
        }
    }
    if plans.len() < 2 {
        plans.clear();
    }
    // Each side's features in its order, so that band tiles are contiguous for the GEMMs.
    let gathered: Vec<Vec<T>> = plans
        .iter()
        .map(|plan| {
            let mut zs = vec![T::zero(); rows * dim];
            zs.par_chunks_mut(dim)
                .zip(plan.order().par_iter())
                .for_each(|(out, &j)| {
                    out.copy_from_slice(&z[j as usize * dim..(j as usize + 1) * dim])
                });
            zs
        })
        .collect();
    let views: Vec<View<'_, T>> = if plans.is_empty() {
        vec![View {
            order: None,
            z: &z,
            band: None,
        }]
    } else {
        plans
            .iter()
            .zip(&gathered)
            .map(|(plan, zs)| View {
                order: Some(plan.order()),
                z: zs,
                band: Some(plan),
            })
            .collect()
    };

    // Forward: each view's statistics, merged per row in view order.
    let mut stats = vec![RowStats::default(); rows];
    for view in &views {
        let partial: Vec<RowStats<T>> = blocks
            .par_iter()
            .map(|block| tiles.forward(view, block.clone()))
            .collect::<Vec<_>>()
            .concat();
        for (position, s) in partial.into_iter().enumerate() {
            let j = view.index(position);
            stats[j].merge(&s);
        }
    }
    let outcomes: Vec<RowOutcome<T>> = stats
        .iter()
        .enumerate()
        .map(|(j, s)| s.finish(params, rows, batch.weight(j)))
        .collect();
    let anchors = outcomes.iter().filter(|o| o.anchor).count();
    let factor = reduction_factor::<T>(params.config.reduction, rows, anchors);
    let loss = factor * outcomes.iter().fold(T::zero(), |acc, o| acc + o.loss);

    // Backward: each view's ∂L/∂z, summed per row in view order.
    let grads: Vec<RowGrad<T>> = outcomes.iter().map(|o| o.gradient(factor)).collect();
    let mut dz = vec![T::zero(); rows * dim];
    let mut partial = vec![T::zero(); rows * dim];
    for view in &views {
        partial
            .par_chunks_mut(ROW_BLOCK * dim)
            .zip(blocks.par_iter())
            .for_each(|(out, block)| tiles.backward(view, block.clone(), &grads, out));
        for (position, row) in partial.chunks_exact(dim).enumerate() {
            let j = view.index(position);
            dz[j * dim..(j + 1) * dim]
                .iter_mut()
                .zip(row)
                .for_each(|(acc, &x)| *acc = *acc + x);
        }
    }
    let mut grad_features = vec![T::zero(); rows * dim];
    grad_features
        .par_chunks_mut(dim)
        .enumerate()
        .for_each(|(j, out)| {
            let span = j * dim..(j + 1) * dim;
            normalize_backward(lengths[j], &z[span.clone()], &dz[span], out);
        });

    Ok(Output {
        loss,
        grad_features,
        anchors: outcomes.iter().map(|o| o.anchor).collect(),
        positives: outcomes.iter().map(|o| o.positives).collect(),
        negatives: outcomes.iter().map(|o| o.negatives).collect(),
    })
}

impl<T: Scalar> Tiles<'_, '_, T> {
    /// The column tiles (positions in the view's order) for a block of rows.
    fn column_tiles(&self, view: &View<'_, T>, rows: &Range<usize>) -> Vec<Range<usize>> {
        let cols = view.columns(rows.clone(), self.rows);
        (cols.start..cols.end)
            .step_by(COL_BLOCK)
            .map(|c| c..(c + COL_BLOCK).min(cols.end))
            .collect()
    }

    /// `gram[(p − rows.start)·cols.len() + (q − cols.start)] = z_p · z_q`, in view positions.
    fn gram(&self, z: &[T], rows: &Range<usize>, cols: &Range<usize>, gram: &mut [T]) {
        let d = self.dim;
        let (a, b) = (
            &z[rows.start * d..rows.end * d],
            &z[cols.start * d..cols.end * d],
        );
        gram_into(a, b, rows.len(), cols.len(), d, gram, 1);
    }

    /// The forward pass of one block of positions: their statistics over the
    /// view's column tiles, in position order.
    fn forward(&self, view: &View<'_, T>, rows: Range<usize>) -> Vec<RowStats<T>> {
        let (params, batch) = (self.params, self.batch);
        let mut stats = vec![RowStats::default(); rows.len()];
        let mut gram = vec![T::zero(); rows.len() * COL_BLOCK];
        // The tile's kept pairs: (row in block, column position, pair).
        let mut hits: Vec<(usize, usize, Pair<T>)> = Vec::new();
        for cols in self.column_tiles(view, &rows) {
            hits.clear();
            for (i, p) in rows.clone().enumerate() {
                let j = view.index(p);
                let (anchor, log_eta) = (batch.row(j), self.log_eta[j]);
                for q in cols.clone() {
                    let pair = Pair::classify(params, anchor, batch.row(view.index(q)), log_eta);
                    if view.keeps(&pair) {
                        hits.push((i, q, pair));
                    }
                }
            }
            let dense = self.logits(view.z, &rows, &cols, hits.len(), &mut gram);
            for &(i, q, pair) in &hits {
                let dot = if dense {
                    gram[i * cols.len() + q - cols.start]
                } else {
                    self.dot(view.z, rows.start + i, q)
                };
                stats[i].push(pair, dot * params.inv_temperature);
            }
        }
        stats
    }

    /// Fills `gram` with the tile's dot products by one GEMM when at least
    /// [`DENSE_SHARE`] of its pairs are used, and returns whether it did.
    fn logits(
        &self,
        z: &[T],
        rows: &Range<usize>,
        cols: &Range<usize>,
        used: usize,
        gram: &mut [T],
    ) -> bool {
        let dense = used as f64 > DENSE_SHARE * (rows.len() * cols.len()) as f64;
        if dense {
            self.gram(z, rows, cols, gram);
        }
        dense
    }

    /// `z_p · z_q` (view positions), with eight independent sums so that the
    /// compiler vectorises it.
    #[inline]
    fn dot(&self, z: &[T], p: usize, q: usize) -> T {
        let d = self.dim;
        let (a, b) = (&z[p * d..(p + 1) * d], &z[q * d..(q + 1) * d]);
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

    /// The backward pass of one block of positions: this view's part of
    /// `∂L/∂z` for those rows (position order), written into `dz`. `H_jk` is
    /// zero outside P ∪ Q, so the view's tiles hold all of its part.
    fn backward(&self, view: &View<'_, T>, rows: Range<usize>, grads: &[RowGrad<T>], dz: &mut [T]) {
        let (params, batch, d) = (self.params, self.batch, self.dim);
        let inv_t = params.inv_temperature;
        dz.fill(T::zero());
        let mut gram = vec![T::zero(); rows.len() * COL_BLOCK];
        let mut h = vec![T::zero(); rows.len() * COL_BLOCK];
        let mut hits: Vec<(usize, usize, Pair<T>, Pair<T>)> = Vec::new();
        for cols in self.column_tiles(view, &rows) {
            let width = cols.len();
            hits.clear();
            for (i, p) in rows.clone().enumerate() {
                let j = view.index(p);
                let anchor = batch.row(j);
                for q in cols.clone() {
                    let k = view.index(q);
                    let (jk, kj) = Pair::classify_both(
                        params,
                        anchor,
                        batch.row(k),
                        self.log_eta[j],
                        self.log_eta[k],
                    );
                    if view.keeps(&jk) {
                        hits.push((i, q, jk, kj));
                    }
                }
            }
            let dense = self.logits(view.z, &rows, &cols, hits.len(), &mut gram);
            if dense {
                h[..rows.len() * width].fill(T::zero());
            }
            for &(i, q, jk, kj) in &hits {
                let (j, k) = (view.index(rows.start + i), view.index(q));
                let dot = if dense {
                    gram[i * width + q - cols.start]
                } else {
                    self.dot(view.z, rows.start + i, q)
                };
                let s = dot * inv_t;
                // H_jk = (G_jk + G_kj)/τ: both rows' coefficients from one logit.
                let h_jk = (grads[j].coefficient(jk, s) + grads[k].coefficient(kj, s)) * inv_t;
                if dense {
                    h[i * width + q - cols.start] = h_jk;
                } else if !h_jk.is_zero() {
                    let zk = &view.z[q * d..(q + 1) * d];
                    let dz_j = &mut dz[i * d..(i + 1) * d];
                    dz_j.iter_mut()
                        .zip(zk)
                        .for_each(|(acc, &x)| *acc = *acc + h_jk * x);
                }
            }
            if dense {
                let lhs = Mat::row_major(&h[..rows.len() * width], rows.len(), width);
                let rhs = Mat::row_major(&view.z[cols.start * d..cols.end * d], width, d);
                matmul(dz, d, lhs, rhs, true, 1);
            }
        }
    }
}
