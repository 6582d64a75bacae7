//! The fast engine: the engine itself and its worker ([`Fast`]), the views
//! of the batch a worker builds once ([`views`]), and the tile passes over
//! them ([`tiles`]).

mod tiles;
mod views;
mod workspace;

use std::ops::Range;
use std::sync::Arc;

use conr_core::band::TilePlan;
use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::dir::{BalancedMseOutput, RankSimOutput, RncOutput};
use conr_core::math::ln;
use conr_core::shard;
use conr_core::stats::{RowGrad, RowOutcome, RowStats};
use conr_core::{Batch, Config, Engine, Error, Output, Params, Part, PlanReport, Scalar, Worker};
use rayon::prelude::*;

use tiles::{BlockHits, HitBudget, Tiles};
use views::Views;
use workspace::Workspace;

/// Rows per block: each block is one parallel task and owns its rows' results.
const ROW_BLOCK: usize = 64;
/// Columns per tile.
const COL_BLOCK: usize = 256;

/// The fast engine: the streaming forward and backward passes of DESIGN §2 in
/// tiles, multi-threaded with rayon, with the tile products done by the `gemm`
/// crate's micro-kernels.
///
/// - Forward: for each block of rows, classify the pairs of a column tile,
///   form the logits `S = Z_J Z_Kᵀ`, and push them into the core's [`RowStats`].
/// - Backward: take the pairs and logits the forward pass kept (within one
///   copy of the features' memory; a block past it finds them again), form
///   `H_jk = (G_jk + G_kj)/τ` from both rows' [`RowGrad`]s, and accumulate
///   `∂z_J += H Z_K`.
///
/// With the band plan ([`TilePlan::Band`]) it visits only the tiles that can
/// hold a positive, with rows and columns sorted by label, and those that can
/// hold a negative, sorted by prediction (see [`conr_core::band`]): time
/// grows with the pairs that enter the loss, not with M². Each pair is taken
/// on one side only (a pair cannot be both), and each row's statistics and
/// gradient are merged in a fixed order, positives first.
/// [`Fast::with_plan`]`(TilePlan::Dense)` visits every tile, and so does the
/// band plan under `angular`, where no band exists. The default,
/// [`TilePlan::Auto`], takes the band where it visits fewer tiles than the
/// dense plan ([`conr_core::band::pays`]): on large batches, not on small
/// ones such as 128 rows, whose two band passes each span nearly every tile.
///
/// A tile where at least a quarter of the pairs are positives or negatives
/// gets its logits and its `H Z_K` from GEMMs: two M×M×D GEMMs in all (the
/// backward pass takes the forward pass's logits). A sparser tile computes a
/// dot product (and an update) only for the pairs that enter the loss, which
/// is cheaper below that share. Rows wider than 2¹⁵ (NYUD2-DIR's 2.2 million
/// features) always take the GEMMs, split along D into fixed chunks that the
/// threads share: a batch of 32 such rows is one block, which would otherwise
/// keep one thread busy and the rest idle. Under the dense plan such rows are
/// read from the features themselves, each chunk divided by its rows'
/// lengths as it is read, so no normalised copy of them exists; their
/// backward pass folds the normalisation's backward into `H` and is one GEMM
/// per block straight into `∂L/∂f`.
/// A block of rows owns its rows' results,
/// so there are no atomics, and results are bit-identical across thread counts.
/// Extra memory is O(M·D + threads · tile²): the normalised features, the
/// kept pairs (at most the features' size) and the gradient; no M×M buffer exists.
///
/// Between calls the engine keeps the last batch's normalised features
/// (M·D, two copies under the band plan) and writes a batch of the same size
/// into them again: their memory pages are mapped already. Clones share it.
///
/// ```
/// use conr_cpu::{Batch, Config, Engine, Fast, Inputs, Reference, Shape};
/// let shape = Shape { rows: 3, dim: 2, label_dim: 1 };
/// let inputs = Inputs {
///     features: &[1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0],
///     labels: &[10.0, 10.5, 40.0],
///     preds: &[20.0, 20.0, 20.5],
///     eta: None,
/// };
/// let batch = Batch::new(shape, inputs)?;
/// let fast = Fast::with_threads(2)?.compute(&batch, &Config::paper())?;
/// let reference = Reference.compute(&batch, &Config::paper())?;
/// assert!((fast.loss - reference.loss).abs() < 1e-12);
/// # Ok::<(), conr_cpu::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Fast {
    pool: Option<Arc<rayon::ThreadPool>>,
    plan: TilePlan,
    workspace: Arc<Workspace>,
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
            ..Self::default()
        })
    }

    /// The same engine with another tile plan ([`TilePlan::Auto`] by default).
    pub fn with_plan(self, plan: TilePlan) -> Self {
        Self { plan, ..self }
    }

    /// The number of threads this engine computes on.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }
}

impl<T: Scalar> Engine<T> for Fast {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn rank_sim(
        &self,
        batch: &RankSimBatch<'_, T>,
        config: &RankSim,
    ) -> Result<RankSimOutput<T>, Error> {
        self.install(|| crate::dir::fast::rank_sim(batch, config))
    }

    fn rank_n_contrast(
        &self,
        batch: &RncBatch<'_, T>,
        config: &RankNContrast,
    ) -> Result<RncOutput<T>, Error> {
        self.install(|| crate::dir::fast::rank_n_contrast(batch, config))
    }

    fn balanced_mse(
        &self,
        batch: &BmseBatch<'_, T>,
        config: &BalancedMse<'_>,
    ) -> Result<BalancedMseOutput<T>, Error> {
        self.install(|| crate::dir::fast::balanced_mse(batch, config))
    }

    fn fds_pass(
        &self,
        rows: &conr_core::fds::moments::Rows<'_, T>,
        pass: conr_core::fds::moments::Pass<'_>,
        out: &mut [f64],
    ) -> Result<(), Error> {
        self.install(|| crate::fds::pass(rows, pass, out))
    }

    /// Both phases in one trip to the pool: a trip costs 7 to 28 µs here
    /// (more when the pool's threads have gone to sleep), and the worker and
    /// its two phases would each take one.
    fn compute(&self, batch: &Batch<'_, T>, config: &Config) -> Result<Output<T>, Error> {
        self.install(|| conr_core::engine::whole(self, batch, config))
    }

    /// Normalises the features and, where the plan takes the band, sorts and
    /// gathers both sides' views, once for both phases.
    fn worker<'a>(
        &'a self,
        batch: Batch<'a, T>,
        config: &Config,
    ) -> Result<Box<dyn Worker<T> + 'a>, Error> {
        let params = batch.check(config)?;
        let views = self.install(|| {
            views::chosen_sides(&batch, &params, self.plan)
                .map(|sides| Views::new(&batch, sides.map(|(sides, _)| sides), &self.workspace))
        })?;
        let log_eta = (0..batch.rows()).map(|j| ln(batch.eta(j))).collect();
        Ok(Box::new(FastWorker {
            engine: self,
            batch,
            params,
            log_eta,
            views,
            kept: None,
        }))
    }

    /// The share of its 64×256 tiles the engine visits: see [`PlanReport`].
    fn plan(&self, batch: &Batch<'_, T>, config: &Config) -> Result<PlanReport, Error> {
        let params = batch.check(config)?;
        Ok(match views::chosen_sides(batch, &params, self.plan)? {
            None => PlanReport::DENSE,
            Some((_, tile_share)) => PlanReport {
                tiles: TilePlan::Band,
                tile_share,
            },
        })
    }
}

/// The fast engine's worker: one preparation, both phases on the engine's pool.
struct FastWorker<'a, T: Scalar> {
    engine: &'a Fast,
    batch: Batch<'a, T>,
    params: Params<T>,
    log_eta: Vec<T>,
    views: Views<'a, T>,
    /// The last forward pass's rows and, per view and block, the pairs and
    /// logits it kept for the backward pass of the same rows.
    kept: Option<Kept<T>>,
}

/// What a forward pass kept: see [`BlockHits`].
struct Kept<T> {
    rows: Range<usize>,
    views: Vec<Vec<Option<BlockHits<T>>>>,
}

impl<T: Scalar> FastWorker<'_, T> {
    fn tiles(&self) -> Tiles<'_, T> {
        Tiles {
            params: &self.params,
            batch: &self.batch,
            log_eta: &self.log_eta,
        }
    }
}

/// The worker's feature buffers go back to the engine for its next call.
impl<T: Scalar> Drop for FastWorker<'_, T> {
    fn drop(&mut self) {
        self.engine.workspace.keep(self.views.take_buffers());
    }
}

impl<T: Scalar> Worker<T> for FastWorker<'_, T> {
    fn forward(&mut self, rows: Range<usize>) -> Result<Vec<RowOutcome<T>>, Error> {
        shard::check_phase(self.batch.rows(), &rows, None)?;
        self.kept = None;
        let this = &*self;
        let (outcomes, kept) = self.engine.install(|| this.forward_rows(rows));
        self.kept = Some(kept);
        Ok(outcomes)
    }

    fn backward(
        &mut self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
    ) -> Result<Part<T>, Error> {
        shard::check_phase(self.batch.rows(), &rows, Some(outcomes.len()))?;
        // Kept pairs serve the backward pass of the forward pass's own rows.
        let kept = self.kept.take().filter(|k| k.rows == rows);
        let this = &*self;
        Ok(self
            .engine
            .install(|| this.backward_rows(rows, outcomes, kept)))
    }
}

impl<T: Scalar> FastWorker<'_, T> {
    /// Phase 1: the outcomes of `rows`, against every row, and the pairs
    /// and logits kept for phase 2.
    fn forward_rows(&self, rows: Range<usize>) -> (Vec<RowOutcome<T>>, Kept<T>) {
        let tiles = self.tiles();
        let first = rows.start;
        let mut stats = vec![RowStats::default(); rows.len()];
        let shape = self.batch.shape();
        let budget = HitBudget::new(shape.rows * shape.dim * size_of::<T>());
        let mut kept = Kept {
            rows: rows.clone(),
            views: Vec::new(),
        };
        // Views in a fixed order (positives, then negatives): bit-identical across threads.
        for view in self.views.each() {
            let blocks = view.blocks(&rows);
            let parts: Vec<_> = blocks
                .par_iter()
                .map(|block| tiles.forward(&view, block, &budget))
                .collect();
            let mut view_kept = Vec::with_capacity(blocks.len());
            for (block, (part, hits)) in blocks.iter().zip(parts) {
                for (&p, s) in block.iter().zip(part) {
                    stats[view.index(p) - first].merge(&s);
                }
                view_kept.push(hits);
            }
            kept.views.push(view_kept);
        }
        let batch = &self.batch;
        let outcomes = stats
            .iter()
            .zip(rows)
            .map(|(s, j)| s.finish(&self.params, batch.rows(), batch.eta(j)))
            .collect();
        (outcomes, kept)
    }

    /// Phase 2: the part of the loss and `∂L/∂features` of `rows`, given
    /// every row's outcome.
    fn backward_rows(
        &self,
        rows: Range<usize>,
        outcomes: &[RowOutcome<T>],
        kept: Option<Kept<T>>,
    ) -> Part<T> {
        let (config, dim) = (&self.params.config, self.batch.shape().dim);
        let factor = shard::reduction::<T>(config, outcomes);
        let grads: Vec<RowGrad<T>> = outcomes.iter().map(|o| o.gradient(factor)).collect();
        let tiles = self.tiles();
        let first = rows.start;
        // ∂L/∂z, then ∂L/∂f in place (a view of wide rows read from the
        // features writes ∂L/∂f at once): the one M·D buffer of this phase.
        let mut grad = zeroed(rows.len() * dim);
        let mut kept = kept.map(|k| k.views.into_iter());
        for view in self.views.each() {
            let blocks = view.blocks(&rows);
            let hits = kept.as_mut().and_then(Iterator::next);
            let hits = |b: usize| hits.as_ref().and_then(|h| h[b].as_ref());
            if view.in_row_order() {
                // Each block owns a run of rows, so it adds its part in place.
                grad.par_chunks_mut(ROW_BLOCK * dim)
                    .zip(&blocks)
                    .enumerate()
                    .for_each(|(b, (dz, block))| tiles.backward(&view, block, hits(b), &grads, dz));
                continue;
            }
            let parts: Vec<Vec<T>> = blocks
                .par_iter()
                .enumerate()
                .map(|(b, block)| {
                    let mut part = vec![T::zero(); block.len() * dim];
                    tiles.backward(&view, block, hits(b), &grads, &mut part);
                    part
                })
                .collect();
            for (block, part) in blocks.iter().zip(parts) {
                for (&p, row) in block.iter().zip(part.chunks_exact(dim)) {
                    let j = view.index(p) - first;
                    let out = &mut grad[j * dim..(j + 1) * dim];
                    out.iter_mut()
                        .zip(row)
                        .for_each(|(acc, &x)| *acc = *acc + x);
                }
            }
        }
        let views = &self.views;
        grad.par_chunks_mut(dim)
            .enumerate()
            .for_each(|(i, g)| views.unnormalize(first + i, g));
        Part {
            loss: shard::part_loss(config, outcomes, rows),
            grad_features: grad,
        }
    }
}

/// A zeroed buffer, its pages first written on the pool's threads.
///
/// The kernel maps a fresh page at its first write. Inside the strided GEMM
/// of a few wide rows, those faults cost many times the arithmetic: at
/// 32 × 2.2 million f32 features, `H Z` took 0.59 s into a fresh buffer and
/// 0.06 s into one written first. One write per page maps it; the memory is
/// zero already, so writing all of it would only add a pass.
fn zeroed<T: Scalar>(len: usize) -> Vec<T> {
    let mut buffer = vec![T::zero(); len];
    let per_page = (PAGE / size_of::<T>()).max(1);
    buffer.par_chunks_mut(PAGE_RUN).for_each(|run| {
        // `black_box`: the compiler may know that the memory holds zeros.
        run.iter_mut()
            .step_by(per_page)
            .for_each(|x| *x = std::hint::black_box(T::zero()));
    });
    buffer
}

/// The smallest page size of the platforms conr runs on, in bytes.
const PAGE: usize = 4096;

/// Elements per task of [`zeroed`]: a few pages.
const PAGE_RUN: usize = 1 << 14;
