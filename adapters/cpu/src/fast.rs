use std::ops::Range;
use std::sync::Arc;

use conr_core::band::{self, BandPlan, Side, TilePlan};
use conr_core::normalize::{normalize, normalize_backward};
use conr_core::pairs::Pair;
use conr_core::shard;
use conr_core::stats::{RowGrad, RowOutcome, RowStats};
use conr_core::{Batch, Config, Error, Params, Scalar};
use rayon::prelude::*;

use crate::matmul::{Mat, gram_into, matmul};
use crate::{Engine, Part, Worker};

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
        if self.plan == TilePlan::Dense {
            return Ok(1.0);
        }
        let params = batch.check(config)?;
        let rows = batch.rows();
        let (mut order, mut keys) = (vec![0u32; rows], vec![T::zero(); rows]);
        band::tile_share(batch, &params, ROW_BLOCK, COL_BLOCK, &mut order, &mut keys)
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

    /// Normalises the features and, with the band plan, sorts and gathers
    /// both sides' views, once for both phases.
    fn worker<'a, T: Scalar>(
        &'a self,
        batch: &'a Batch<'a, T>,
        config: &Config,
    ) -> Result<Box<dyn Worker<T> + 'a>, Error> {
        let params = batch.check(config)?;
        let prepared = self.install(|| Prepared::new(batch, params, self.plan));
        Ok(Box::new(FastWorker {
            engine: self,
            prepared,
        }))
    }
}

/// The fast engine's worker: one preparation, both phases on the engine's pool.
struct FastWorker<'a, T> {
    engine: &'a Fast,
    prepared: Prepared<'a, T>,
}

impl<T: Scalar> Worker<T> for FastWorker<'_, T> {
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>, Error> {
        shard::check_phase(self.prepared.rows, &rows, None)?;
        let prepared = &mut self.prepared;
        self.engine.install(|| prepared.forward(rows))
    }

    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error> {
        shard::check_phase(self.prepared.rows, &rows, Some(outcomes.len()))?;
        let prepared = &mut self.prepared;
        self.engine.install(|| prepared.backward(rows, outcomes))
    }
}

impl Fast {
    fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }
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

    /// The column positions that can pair with rows at sorted positions
    /// `first..=last` (every column without a band).
    fn columns(&self, first: usize, last: usize, all: usize) -> Range<usize> {
        self.band.map_or(0..all, |b| b.columns(first..last + 1))
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

    /// The positions of the rows in `rows` (a worker's own rows), in this
    /// view's order, in blocks of at most [`ROW_BLOCK`].
    ///
    /// On a band side a block also spans at most `ROW_BLOCK` sorted
    /// positions: a worker's rows are scattered through the sorted order, and
    /// a block's column run is the band of its whole span, so 64 rows of one
    /// worker in four would each visit the band of 256 positions. Blocks of
    /// a short span keep every row's columns what they are with one worker.
    fn blocks(&self, rows: &Range<usize>) -> Vec<Vec<usize>> {
        let Some(order) = self.order else {
            let positions: Vec<usize> = rows.clone().collect();
            return positions.chunks(ROW_BLOCK).map(<[usize]>::to_vec).collect();
        };
        let mut blocks: Vec<Vec<usize>> = Vec::new();
        for p in (0..order.len()).filter(|&p| rows.contains(&(order[p] as usize))) {
            match blocks.last_mut() {
                Some(block) if block.len() < ROW_BLOCK && p - block[0] < ROW_BLOCK => {
                    block.push(p);
                }
                _ => blocks.push(vec![p]),
            }
        }
        blocks
    }
}

/// Everything a pass reads: the weights and the views, each with its
/// normalised features: the dense view in row order, or the two sides of the
/// band with their features in sorted order, so that band tiles stay
/// contiguous for the GEMMs. Each is built on the first pass that needs it and
/// kept for the next.
struct Prepared<'a, T> {
    params: Params<T>,
    batch: &'a Batch<'a, T>,
    /// The normalised features in row order (the dense view), once built.
    z: Vec<T>,
    log_eta: Vec<T>,
    /// Per band side: the sorted order and keys (the plans' scratch).
    scratch: Vec<(Vec<u32>, Vec<T>)>,
    /// Per band side, once gathered: the features in that side's order.
    gathered: Vec<Vec<T>>,
    rows: usize,
    dim: usize,
}

impl<'a, T: Scalar> Prepared<'a, T> {
    fn new(batch: &'a Batch<'a, T>, params: Params<T>, plan: TilePlan) -> Self {
        let (rows, dim) = (batch.rows(), batch.shape().dim);
        let log_eta: Vec<T> = (0..rows).map(|j| batch.weight(j).ln()).collect();
        let scratch = match plan {
            TilePlan::Band => (0..2)
                .map(|_| (vec![0; rows], vec![T::zero(); rows]))
                .collect(),
            TilePlan::Dense => Vec::new(),
        };
        Self {
            params,
            batch,
            z: Vec::new(),
            log_eta,
            scratch,
            gathered: Vec::new(),
            rows,
            dim,
        }
    }

    /// Runs `pass` on every view: the two band sides (positives first), or
    /// the dense view where no band exists.
    fn with_views<R>(
        &mut self,
        pass: impl Fn(&Tiles<'_, '_, T>, &View<'_, T>) -> R,
    ) -> Result<Vec<R>, Error> {
        let (batch, params, rows, dim) = (self.batch, &self.params, self.rows, self.dim);
        let mut plans = Vec::with_capacity(2);
        for ((order, keys), side) in self
            .scratch
            .iter_mut()
            .zip([Side::Positives, Side::Negatives])
        {
            if let Some(plan) = BandPlan::new(batch, params, side, order, keys)? {
                plans.push(plan);
            }
        }
        // Both sides have a band, or neither does (`angular`).
        let tiles = Tiles {
            params,
            batch,
            log_eta: &self.log_eta,
            rows,
            dim,
        };
        if plans.is_empty() {
            if self.z.is_empty() {
                self.z = normalized(batch, None);
            }
            let view = View {
                order: None,
                z: &self.z,
                band: None,
            };
            return Ok(vec![pass(&tiles, &view)]);
        }
        // The sort is a function of the data, so a later pass reuses the gathering.
        if self.gathered.len() != plans.len() {
            self.gathered = plans
                .iter()
                .map(|plan| normalized(batch, Some(plan.order())))
                .collect();
        }
        Ok(plans
            .iter()
            .zip(&self.gathered)
            .map(|(plan, gathered)| {
                let view = View {
                    order: Some(plan.order()),
                    z: gathered,
                    band: Some(plan),
                };
                pass(&tiles, &view)
            })
            .collect())
    }
}

impl<T: Scalar> Prepared<'_, T> {
    /// Phase 1: the outcomes of `rows`, against every row.
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>, Error> {
        let (params, batch, total) = (self.params, self.batch, self.rows);
        let first = rows.start;
        let parts = self.with_views(|tiles, view| {
            let blocks = view.blocks(&rows);
            let stats: Vec<Vec<RowStats<T>>> = blocks
                .par_iter()
                .map(|block| tiles.forward(view, block))
                .collect();
            // (row, its statistics on this view), in the view's order.
            blocks
                .iter()
                .zip(stats)
                .flat_map(|(block, s)| {
                    block
                        .iter()
                        .map(|&p| view.index(p))
                        .zip(s)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        });
        let mut stats = vec![RowStats::default(); rows.len()];
        // Views in a fixed order (positives, then negatives): bit-identical across threads.
        for part in parts? {
            for (j, s) in part {
                stats[j - first].merge(&s);
            }
        }
        Ok(stats
            .iter()
            .zip(rows)
            .map(|(s, j)| s.finish(&params, total, batch.weight(j)))
            .collect())
    }

    /// Phase 2: the part of the loss and `∂L/∂features` of `rows`, given
    /// every row's outcome.
    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error> {
        // A copy: the passes below borrow self mutably.
        let config = self.params.config;
        let dim = self.dim;
        let factor = shard::reduction::<T>(&config, outcomes);
        let grads: Vec<RowGrad<T>> = outcomes.iter().map(|o| o.gradient(factor)).collect();
        let first = rows.start;
        let parts = self.with_views(|tiles, view| {
            let blocks = view.blocks(&rows);
            let dz: Vec<Vec<T>> = blocks
                .par_iter()
                .map(|block| tiles.backward(view, block, &grads))
                .collect();
            blocks
                .iter()
                .zip(dz)
                .map(|(block, dz)| (block.iter().map(|&p| view.index(p)).collect::<Vec<_>>(), dz))
                .collect::<Vec<_>>()
        });
        let mut dz = vec![T::zero(); rows.len() * dim];
        for part in parts? {
            for (indices, block) in part {
                for (&j, row) in indices.iter().zip(block.chunks_exact(dim)) {
                    let out = &mut dz[(j - first) * dim..(j - first + 1) * dim];
                    out.iter_mut()
                        .zip(row)
                        .for_each(|(acc, &x)| *acc = *acc + x);
                }
            }
        }
        let mut grad_features = vec![T::zero(); rows.len() * dim];
        let batch = self.batch;
        grad_features
            .par_chunks_mut(dim)
            .zip(dz.par_chunks(dim))
            .enumerate()
            .for_each_init(
                || vec![T::zero(); dim],
                |zj, (i, (out, dz_j))| {
                    // z_j again from f_j: cheaper than keeping every row's.
                    let length = normalize(batch.feature_row(first + i), zj);
                    normalize_backward(length, zj, dz_j, out);
                },
            );
        let loss = shard::part_loss(&config, outcomes, rows);
        Ok(Part {
            loss,
            grad_features,
        })
    }
}

/// The normalised features, in row order or in `order`.
fn normalized<T: Scalar>(batch: &Batch<'_, T>, order: Option<&[u32]>) -> Vec<T> {
    let dim = batch.shape().dim;
    let mut z = vec![T::zero(); batch.rows() * dim];
    z.par_chunks_mut(dim).enumerate().for_each(|(p, zp)| {
        let j = order.map_or(p, |o| o[p] as usize);
        normalize(batch.feature_row(j), zp);
    });
    z
}

/// What the tile passes read.
struct Tiles<'a, 'b, T> {
    params: &'a Params<T>,
    batch: &'a Batch<'b, T>,
    log_eta: &'a [T],
    rows: usize,
    dim: usize,
}

impl<T: Scalar> Tiles<'_, '_, T> {
    /// The column tiles (positions in the view's order) for a block of rows.
    fn column_tiles(&self, view: &View<'_, T>, block: &[usize]) -> Vec<Range<usize>> {
        let (Some(&first), Some(&last)) = (block.first(), block.last()) else {
            return Vec::new();
        };
        let cols = view.columns(first, last, self.rows);
        (cols.start..cols.end)
            .step_by(COL_BLOCK)
            .map(|c| c..(c + COL_BLOCK).min(cols.end))
            .collect()
    }

    /// The block's rows of the view's features, contiguous.
    fn block_z(&self, view: &View<'_, T>, block: &[usize]) -> Vec<T> {
        let d = self.dim;
        block
            .iter()
            .flat_map(|&p| view.z[p * d..(p + 1) * d].iter().copied())
            .collect()
    }

    /// `gram[i·cols.len() + (q − cols.start)] = zr_i · z_q`.
    fn gram(&self, zr: &[T], rows: usize, view: &View<'_, T>, cols: &Range<usize>, gram: &mut [T]) {
        let d = self.dim;
        let b = &view.z[cols.start * d..cols.end * d];
        gram_into(zr, b, rows, cols.len(), d, gram, 1);
    }

    /// The forward pass of one block of positions: their statistics over the
    /// view's column tiles, in block order.
    fn forward(&self, view: &View<'_, T>, block: &[usize]) -> Vec<RowStats<T>> {
        let (params, batch) = (self.params, self.batch);
        let zr = self.block_z(view, block);
        let mut stats = vec![RowStats::default(); block.len()];
        let mut gram = vec![T::zero(); block.len() * COL_BLOCK];
        // The tile's kept pairs: (row in block, column position, pair).
        let mut hits: Vec<(usize, usize, Pair<T>)> = Vec::new();
        for cols in self.column_tiles(view, block) {
            hits.clear();
            for (i, &p) in block.iter().enumerate() {
                let j = view.index(p);
                let (anchor, log_eta) = (batch.row(j), self.log_eta[j]);
                for q in cols.clone() {
                    let pair = Pair::classify(params, anchor, batch.row(view.index(q)), log_eta);
                    if view.keeps(&pair) {
                        hits.push((i, q, pair));
                    }
                }
            }
            let dense = self.logits(&zr, block.len(), view, &cols, hits.len(), &mut gram);
            for &(i, q, pair) in &hits {
                let dot = if dense {
                    gram[i * cols.len() + q - cols.start]
                } else {
                    self.dot(&zr, i, view.z, q)
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
        zr: &[T],
        rows: usize,
        view: &View<'_, T>,
        cols: &Range<usize>,
        used: usize,
        gram: &mut [T],
    ) -> bool {
        let dense = used as f64 > DENSE_SHARE * (rows * cols.len()) as f64;
        if dense {
            self.gram(zr, rows, view, cols, gram);
        }
        dense
    }

    /// `zr_i · z_q`, with eight independent sums so that the compiler vectorises it.
    #[inline]
    fn dot(&self, zr: &[T], i: usize, z: &[T], q: usize) -> T {
        let d = self.dim;
        let (a, b) = (&zr[i * d..(i + 1) * d], &z[q * d..(q + 1) * d]);
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
    /// `∂L/∂z` for those rows, in block order. `H_jk` is zero outside P ∪ Q,
    /// so the view's tiles hold all of its part.
    fn backward(&self, view: &View<'_, T>, block: &[usize], grads: &[RowGrad<T>]) -> Vec<T> {
        let (params, batch, d) = (self.params, self.batch, self.dim);
        let inv_t = params.inv_temperature;
        let zr = self.block_z(view, block);
        let rows = block.len();
        let mut dz = vec![T::zero(); rows * d];
        let mut gram = vec![T::zero(); rows * COL_BLOCK];
        let mut h = vec![T::zero(); rows * COL_BLOCK];
        let mut hits: Vec<(usize, usize, Pair<T>, Pair<T>)> = Vec::new();
        for cols in self.column_tiles(view, block) {
            let width = cols.len();
            hits.clear();
            for (i, &p) in block.iter().enumerate() {
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
            let dense = self.logits(&zr, rows, view, &cols, hits.len(), &mut gram);
            if dense {
                h[..rows * width].fill(T::zero());
            }
            for &(i, q, jk, kj) in &hits {
                let (j, k) = (view.index(block[i]), view.index(q));
                let dot = if dense {
                    gram[i * width + q - cols.start]
                } else {
                    self.dot(&zr, i, view.z, q)
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
                let lhs = Mat::row_major(&h[..rows * width], rows, width);
                let rhs = Mat::row_major(&view.z[cols.start * d..cols.end * d], width, d);
                matmul(&mut dz, d, lhs, rhs, true, 1);
            }
        }
        dz
    }
}
