//! The tile passes of the fast engine: one block of rows against the column
//! tiles its view gives it. One loop ([`Tiles::visit`]) finds each tile's
//! pairs and their logits; the forward pass pushes them into row statistics,
//! the backward pass turns them into `H Z_K`. Where the [`HitBudget`] allows,
//! the forward pass keeps what it found ([`BlockHits`]) and the backward pass
//! reads it instead of finding it again.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use conr_core::normalize::has_radial_part;
use conr_core::pairs::Pair;
use conr_core::stats::{RowGrad, RowStats};
use conr_core::{Batch, Params, Scalar};

use super::COL_BLOCK;
use super::views::View;
use super::views::is_wide;
use crate::matmul::{
    K_CHUNK, Mat, Rows, gram_into, gram_split_k, matmul, matmul_split_n, transpose_into,
};
use crate::simd::{axpy, dot};

/// Above this share of positive-or-negative pairs, a tile's logits come from
/// one GEMM; below it, from a dot product per pair that needs one. Only those
/// pairs enter the loss, and in AgeDB-like batches they are about one in ten.
const DENSE_SHARE: f64 = 0.25;

/// What the tile passes read.
pub(super) struct Tiles<'a, T> {
    pub params: &'a Params<T>,
    pub batch: &'a Batch<'a, T>,
    pub log_eta: &'a [T],
}

/// A pair of one tile that the view keeps.
#[derive(Clone, Copy)]
struct Hit<T> {
    /// The row's place in its block.
    i: usize,
    /// The column's position in the view.
    q: usize,
    /// The row and the column, as batch rows.
    j: usize,
    k: usize,
    /// What `k` is to `j`, and what `j` is to `k`.
    jk: Pair<T>,
    kj: Pair<T>,
}

/// One column tile of a block: its kept pairs with their logits `s_jk`.
struct Tile<'t, T> {
    cols: Range<usize>,
    hits: &'t [Hit<T>],
    logits: &'t [T],
    /// Whether the logits came from one GEMM (and so the update may too).
    dense: bool,
}

/// The pairs and logits of one block's tiles, as the forward pass found
/// them: the backward pass then classifies no pair and computes no logit
/// again. The logits are the same bits either way, so whether a block kept
/// them never changes a result.
pub(super) struct BlockHits<T> {
    /// Each tile's columns, whether it was dense, and its run of `hits`.
    tiles: Vec<(Range<usize>, bool, Range<usize>)>,
    hits: Vec<Hit<T>>,
    logits: Vec<T>,
}

impl<T: Scalar> BlockHits<T> {
    fn new() -> Self {
        Self {
            tiles: Vec::new(),
            hits: Vec::new(),
            logits: Vec::new(),
        }
    }

    fn push(&mut self, tile: &Tile<'_, T>) {
        let start = self.hits.len();
        self.hits.extend_from_slice(tile.hits);
        self.logits.extend_from_slice(tile.logits);
        let span = start..self.hits.len();
        self.tiles.push((tile.cols.clone(), tile.dense, span));
    }

    fn each(&self, mut visit: impl FnMut(&Tile<'_, T>)) {
        for (cols, dense, span) in &self.tiles {
            visit(&Tile {
                cols: cols.clone(),
                hits: &self.hits[span.clone()],
                logits: &self.logits[span.clone()],
                dense: *dense,
            });
        }
    }

    /// The bytes one more kept pair takes.
    const PER_HIT: usize = size_of::<Hit<T>>() + size_of::<T>();
}

/// The memory the kept [`BlockHits`] of one forward pass may take, in bytes:
/// one copy of the features (M·D scalars), so that keeping them stays within
/// the engine's O(M·D). A block that would go past it keeps nothing and its
/// backward pass finds its pairs again.
pub(super) struct HitBudget(AtomicUsize);

impl HitBudget {
    pub fn new(bytes: usize) -> Self {
        Self(AtomicUsize::new(bytes))
    }

    /// Takes `bytes` from the budget, or nothing when fewer are left.
    fn take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

impl<T: Scalar> Tiles<'_, T> {
    /// Calls `visit` for each column tile of `block` (positions in the view's
    /// order) with the pairs the view keeps and their logits.
    fn visit(&self, view: &View<'_, T>, block: &[usize], mut visit: impl FnMut(&Tile<'_, T>)) {
        let (Some(&first), Some(&last)) = (block.first(), block.last()) else {
            return;
        };
        let (params, batch) = (self.params, self.batch);
        let d = batch.shape().dim;
        // The block's rows of the view's features, contiguous: borrowed where
        // they already are (always in row order), so that a batch of few,
        // wide rows is not copied.
        let zr: Cow<'_, [T]> = if last + 1 - first == block.len() {
            Cow::Borrowed(&view.z[first * d..(last + 1) * d])
        } else {
            Cow::Owned(
                block
                    .iter()
                    .flat_map(|&p| view.z[p * d..(p + 1) * d].iter().copied())
                    .collect(),
            )
        };
        let wide = is_wide(d);
        // The tile's logits, column-major (a column's row of the tile is
        // `gram[q · rows + i]`): the products' k-major operand is the block,
        // written once for all its tiles.
        let rows = block.len();
        let mut gram = vec![T::zero(); rows * COL_BLOCK];
        let mut block_t: Vec<T> = Vec::new();
        let mut hits: Vec<Hit<T>> = Vec::new();
        let mut logits: Vec<T> = Vec::new();
        let all = view.columns(first, last, batch.rows());
        for start in (all.start..all.end).step_by(COL_BLOCK) {
            let cols = start..(start + COL_BLOCK).min(all.end);
            hits.clear();
            for (i, &p) in block.iter().enumerate() {
                let j = view.index(p);
                for q in cols.clone() {
                    let k = view.index(q);
                    let (jk, kj) = Pair::classify_both(
                        params,
                        batch.row(j),
                        batch.row(k),
                        self.log_eta[j],
                        self.log_eta[k],
                    );
                    if view.keeps(&jk) {
                        hits.push(Hit { i, q, j, k, jk, kj });
                    }
                }
            }
            let width = cols.len();
            // Wide rows do not stay in cache between one pair's dot product and
            // the next, so there one GEMM over the tile costs less than a few
            // dot products each reading two rows from memory.
            let dense = wide || hits.len() as f64 > DENSE_SHARE * (block.len() * width) as f64;
            if dense {
                if wide {
                    // The block's rows as the view reads them where they are
                    // contiguous in it (always so in row order, where the view
                    // may be the features themselves), else the gathered copy.
                    let lhs = match zr {
                        Cow::Borrowed(_) => view.rows(first..last + 1),
                        Cow::Owned(ref z) => Rows::plain(z, d),
                    };
                    let columns = view.rows(cols.clone());
                    gram_split_k(columns, lhs, width, rows, &mut gram, K_CHUNK);
                    if let Some(divisors) = view.divisors_after_product() {
                        // z_j·z_k = (f_j·f_k) / d_j / d_k: no quotient of the
                        // features is formed (see `View::lengths_near_one`).
                        for (column, &dk) in
                            gram.chunks_exact_mut(rows).zip(&divisors[cols.clone()])
                        {
                            for (g, &p) in column.iter_mut().zip(block) {
                                *g = *g / divisors[p] / dk;
                            }
                        }
                    }
                } else {
                    if block_t.is_empty() {
                        let block_rows: Vec<&[T]> = zr.chunks_exact(d).collect();
                        transpose_into(&block_rows, None, 0..d, &mut block_t);
                    }
                    let columns = &view.z[cols.start * d..cols.end * d];
                    gram_into(columns, &block_t, width, rows, d, &mut gram, 1);
                }
            }
            let logit = |h: &Hit<T>| {
                let dot = if dense {
                    gram[(h.q - cols.start) * rows + h.i]
                } else {
                    dot(&zr[h.i * d..(h.i + 1) * d], &view.z[h.q * d..(h.q + 1) * d])
                };
                dot * params.inv_temperature
            };
            logits.clear();
            logits.extend(hits.iter().map(logit));
            visit(&Tile {
                cols,
                hits: &hits,
                logits: &logits,
                dense,
            });
        }
    }

    /// The forward pass of one block of positions: their statistics over the
    /// view's column tiles, in block order, and the block's pairs and logits
    /// for the backward pass where `budget` holds room for them.
    pub fn forward(
        &self,
        view: &View<'_, T>,
        block: &[usize],
        budget: &HitBudget,
    ) -> (Vec<RowStats<T>>, Option<BlockHits<T>>) {
        let mut stats = vec![RowStats::default(); block.len()];
        let mut kept = Some(BlockHits::new());
        self.visit(view, block, |tile| {
            for (hit, &s) in tile.hits.iter().zip(tile.logits) {
                stats[hit.i].push(hit.jk, s);
            }
            if let Some(hits) = &mut kept {
                if budget.take(tile.hits.len() * BlockHits::<T>::PER_HIT) {
                    hits.push(tile);
                } else {
                    kept = None;
                }
            }
        });
        (stats, kept)
    }

    /// The backward pass of one block of positions: adds this view's part of
    /// `∂L/∂z` for those rows to `dz` (block order, `block.len()` rows of D).
    /// `H_jk` is zero outside P ∪ Q, so the view's tiles hold all of its part.
    /// `kept` holds the block's pairs and logits where the forward pass kept them.
    pub fn backward(
        &self,
        view: &View<'_, T>,
        block: &[usize],
        kept: Option<&BlockHits<T>>,
        grads: &[RowGrad<T>],
        dz: &mut [T],
    ) {
        if let Some(divisors) = view.divisors() {
            return self.backward_of_features(view, block, kept, grads, divisors, dz);
        }
        let d = self.batch.shape().dim;
        let inv_t = self.params.inv_temperature;
        let rows = block.len();
        let wide = is_wide(d);
        let mut h = vec![T::zero(); rows * COL_BLOCK];
        let mut sparse: Vec<(usize, usize, T)> = Vec::new();
        let update = |tile: &Tile<'_, T>| {
            let (cols, width) = (&tile.cols, tile.cols.len());
            if tile.dense {
                h[..rows * width].fill(T::zero());
            }
            sparse.clear();
            for (hit, &s) in tile.hits.iter().zip(tile.logits) {
                // H_jk = (G_jk + G_kj)/τ: both rows' coefficients from one logit.
                let h_jk = (grads[hit.j].coefficient(hit.jk, s)
                    + grads[hit.k].coefficient(hit.kj, s))
                    * inv_t;
                if tile.dense {
                    h[hit.i * width + hit.q - cols.start] = h_jk;
                } else if !h_jk.is_zero() {
                    sparse.push((hit.i, hit.q, h_jk));
                }
            }
            if tile.dense {
                let lhs = Mat::row_major(&h[..rows * width], rows, width);
                if wide {
                    // D's columns in chunks, between the threads.
                    matmul_split_n(dz, d, lhs, view.rows(cols.clone()), true);
                } else {
                    let rhs = Mat::row_major(&view.z[cols.start * d..cols.end * d], width, d);
                    matmul(dz, d, lhs, rhs, true, 1);
                }
                return;
            }
            // dz_j += H_jk z_k, in hit order (rows first).
            for &(i, q, h_jk) in &sparse {
                axpy(
                    &mut dz[i * d..(i + 1) * d],
                    h_jk,
                    &view.z[q * d..(q + 1) * d],
                );
            }
        };
        match kept {
            Some(hits) => hits.each(update),
            None => self.visit(view, block, update),
        }
    }

    /// [`Tiles::backward`] on a view that reads the features themselves
    /// (wide rows under the dense plan): writes the block's `∂L/∂f`, not
    /// `∂L/∂z`, with the normalisation's backward folded into `H`.
    ///
    /// With `d_j = max(|f_j|, ε)` and `z_k = f_k / d_k`, the normalisation's
    /// backward of `∂z_j = Σ_k H_jk z_k` is
    /// `∂f_j = (∂z_j − z_j (z_j·∂z_j)) / d_j = Σ_k H'_jk f_k / d_j`, where
    /// `H'_jk = H_jk / d_k` and the diagonal also takes `−(z_j·∂z_j) / d_j`.
    /// The radial part `z_j·∂z_j = Σ_k H_jk s_jk τ` comes from the logits the
    /// block already has; rows of length at most ε have none (as in
    /// [`conr_core::normalize::normalize_backward`]). So the block's whole
    /// gradient is one GEMM over the features, split along D between the
    /// threads: no quotient of the features is formed, and no second pass
    /// over the features and the gradient takes the radial part out.
    ///
    /// The last `1 / d_j` goes into `H'` too where every length is
    /// [near 1](View::lengths_near_one), so that `H_jk / d_j / d_k` can
    /// neither overflow nor underflow; otherwise each row is scaled after the GEMM.
    fn backward_of_features(
        &self,
        view: &View<'_, T>,
        block: &[usize],
        kept: Option<&BlockHits<T>>,
        grads: &[RowGrad<T>],
        divisors: &[T],
        df: &mut [T],
    ) {
        let (m, d) = (self.batch.rows(), self.batch.shape().dim);
        let inv_t = self.params.inv_temperature;
        let rows = block.len();
        let folded = view.lengths_near_one();
        let row_factor = |p: usize| if folded { divisors[p] } else { T::one() };
        // The block's rows of H' against every column: rows × M, within
        // O(M·D) since these rows are more than 2¹⁵ wide.
        let mut h = vec![T::zero(); rows * m];
        let mut radial = vec![T::zero(); rows];
        let update = |tile: &Tile<'_, T>| {
            for (hit, &s) in tile.hits.iter().zip(tile.logits) {
                let c = grads[hit.j].coefficient(hit.jk, s) + grads[hit.k].coefficient(hit.kj, s);
                radial[hit.i] = radial[hit.i] + c * s;
                h[hit.i * m + hit.q] = c * inv_t / divisors[hit.q] / row_factor(block[hit.i]);
            }
        };
        match kept {
            Some(hits) => hits.each(update),
            None => self.visit(view, block, update),
        }
        for (i, &p) in block.iter().enumerate() {
            let divisor = divisors[p];
            if has_radial_part(divisor) {
                let diagonal = &mut h[i * m + p];
                *diagonal = *diagonal - radial[i] / divisor / row_factor(p);
            }
        }
        let features = Rows::plain(&view.z[..m * d], d);
        // The block's one product: it writes `df` rather than adding to it.
        matmul_split_n(df, d, Mat::row_major(&h, rows, m), features, false);
        if !folded {
            for (&p, row) in block.iter().zip(df.chunks_exact_mut(d)) {
                let inv = divisors[p].recip();
                row.iter_mut().for_each(|g| *g = *g * inv);
            }
        }
    }
}
