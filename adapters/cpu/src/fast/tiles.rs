//! The tile passes of the fast engine: one block of rows against the column
//! tiles its view gives it. One loop ([`Tiles::visit`]) finds each tile's
//! pairs and their logits; the forward pass pushes them into row statistics,
//! the backward pass turns them into `H Z_K`.

use std::ops::Range;

use conr_core::pairs::Pair;
use conr_core::stats::{RowGrad, RowStats};
use conr_core::{Batch, Params, Scalar};

use super::COL_BLOCK;
use super::views::View;
use crate::matmul::{Mat, gram_into, matmul};

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

impl<T: Scalar> Tiles<'_, T> {
    /// Calls `visit` for each column tile of `block` (positions in the view's
    /// order) with the pairs the view keeps and their logits.
    fn visit(&self, view: &View<'_, T>, block: &[usize], mut visit: impl FnMut(&Tile<'_, T>)) {
        let (Some(&first), Some(&last)) = (block.first(), block.last()) else {
            return;
        };
        let (params, batch) = (self.params, self.batch);
        let d = batch.shape().dim;
        // The block's rows of the view's features, contiguous.
        let zr: Vec<T> = block
            .iter()
            .flat_map(|&p| view.z[p * d..(p + 1) * d].iter().copied())
            .collect();
        let mut gram = vec![T::zero(); block.len() * COL_BLOCK];
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
            let dense = hits.len() as f64 > DENSE_SHARE * (block.len() * width) as f64;
            if dense {
                let b = &view.z[cols.start * d..cols.end * d];
                gram_into(&zr, b, block.len(), width, d, &mut gram, 1);
            }
            logits.clear();
            logits.extend(hits.iter().map(|h| {
                let dot = if dense {
                    gram[h.i * width + h.q - cols.start]
                } else {
                    dot(&zr[h.i * d..(h.i + 1) * d], &view.z[h.q * d..(h.q + 1) * d])
                };
                dot * params.inv_temperature
            }));
            visit(&Tile {
                cols,
                hits: &hits,
                logits: &logits,
                dense,
            });
        }
    }

    /// The forward pass of one block of positions: their statistics over the
    /// view's column tiles, in block order.
    pub fn forward(&self, view: &View<'_, T>, block: &[usize]) -> Vec<RowStats<T>> {
        let mut stats = vec![RowStats::default(); block.len()];
        self.visit(view, block, |tile| {
            for (hit, &s) in tile.hits.iter().zip(tile.logits) {
                stats[hit.i].push(hit.jk, s);
            }
        });
        stats
    }

    /// The backward pass of one block of positions: this view's part of
    /// `∂L/∂z` for those rows, in block order. `H_jk` is zero outside P ∪ Q,
    /// so the view's tiles hold all of its part.
    pub fn backward(&self, view: &View<'_, T>, block: &[usize], grads: &[RowGrad<T>]) -> Vec<T> {
        let d = self.batch.shape().dim;
        let inv_t = self.params.inv_temperature;
        let rows = block.len();
        let mut dz = vec![T::zero(); rows * d];
        let mut h = vec![T::zero(); rows * COL_BLOCK];
        self.visit(view, block, |tile| {
            let (cols, width) = (&tile.cols, tile.cols.len());
            if tile.dense {
                h[..rows * width].fill(T::zero());
            }
            for (hit, &s) in tile.hits.iter().zip(tile.logits) {
                // H_jk = (G_jk + G_kj)/τ: both rows' coefficients from one logit.
                let h_jk = (grads[hit.j].coefficient(hit.jk, s)
                    + grads[hit.k].coefficient(hit.kj, s))
                    * inv_t;
                if tile.dense {
                    h[hit.i * width + hit.q - cols.start] = h_jk;
                } else if !h_jk.is_zero() {
                    let zk = &view.z[hit.q * d..(hit.q + 1) * d];
                    let dz_j = &mut dz[hit.i * d..(hit.i + 1) * d];
                    dz_j.iter_mut()
                        .zip(zk)
                        .for_each(|(acc, &x)| *acc = *acc + h_jk * x);
                }
            }
            if tile.dense {
                let lhs = Mat::row_major(&h[..rows * width], rows, width);
                let rhs = Mat::row_major(&view.z[cols.start * d..cols.end * d], width, d);
                matmul(&mut dz, d, lhs, rhs, true, 1);
            }
        });
        dz
    }
}

/// `a · b`, with eight independent sums so that the compiler vectorises it.
#[inline]
fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
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
