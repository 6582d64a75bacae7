//! The views of a batch the fast engine's passes read, built once per worker:
//! every row in order (the dense plan), or the two sides of the band plan,
//! each with its features gathered in the side's sorted order so that band
//! tiles stay contiguous for the GEMMs. Rows too wide to copy in full are
//! read from the features themselves, normalised chunk by chunk.

use std::ops::Range;

use conr_core::band::{self, BandPlan, Side, SortedBand, TilePlan};
use conr_core::normalize::{self, normalize, normalize_backward_in_place};
use conr_core::pairs::Pair;
use conr_core::{Batch, Error, Params, Scalar};
use rayon::prelude::*;

use super::workspace::Workspace;
use super::{COL_BLOCK, ROW_BLOCK};
use crate::matmul::{K_CHUNK, Rows};

/// Whether rows are wide enough that one tile's work is split along D
/// between threads (a batch of few rows has too few blocks to keep them
/// busy), and that the dense plan reads them from the features rather than
/// from a normalised copy: at NYUD2's 32 × 2.2 million, one more copy of
/// the features is most of the memory a call takes.
pub(super) fn is_wide(d: usize) -> bool {
    d > K_CHUNK
}

/// How far from 1 (2³², either way) every row's length may be for the
/// passes over wide rows to divide products rather than features (see
/// [`View::lengths_near_one`]): a product of two rows, or `1 / (d_j d_k)`,
/// then stays within 2⁶⁴ of 1, far inside f32's range of 2¹²⁷.
const NEAR_ONE: f64 = 4_294_967_296.0;

/// What a worker's passes read: the normalised features in the order of
/// each pass, and every row's length `|f_j|`, which the backward pass needs to
/// un-normalise `∂L/∂z` against the same `z`.
pub(super) struct Views<'a, T> {
    layout: Layout<'a, T>,
    /// `|f_j|`, in row order.
    lengths: Vec<T>,
    /// D.
    dim: usize,
}

enum Layout<'a, T> {
    /// Every tile: the normalised features in row order.
    Dense { z: Vec<T> },
    /// Every tile, on [wide](is_wide) rows: the features themselves, each
    /// row read divided by its `max(|f_j|, ε)`, or with `near_one` (see
    /// [`View::lengths_near_one`]) their products divided.
    Wide {
        features: &'a [T],
        divisors: Vec<T>,
        near_one: bool,
    },
    /// The band plan: the positives' side, then the negatives'; `rank[j]` is
    /// row `j`'s position on the first side.
    Band {
        sides: [BandSide<T>; 2],
        rank: Vec<u32>,
    },
}

/// One side of the band: its sorted rows, and their normalised features in that order.
struct BandSide<T> {
    band: SortedBand<T>,
    z: Vec<T>,
}

impl<'a, T: Scalar> Views<'a, T> {
    /// The views of `plan` on `batch`: the band's two sides (`sides`, from
    /// [`chosen_sides`]), or the dense view.
    pub fn new(batch: &Batch<'a, T>, sides: Option<Sides<T>>, workspace: &Workspace) -> Self {
        let dim = batch.shape().dim;
        if sides.is_none() && is_wide(dim) {
            let lengths: Vec<T> = batch
                .features()
                .par_chunks(dim)
                .map(conr_core::metric::norm)
                .collect();
            let divisors: Vec<T> = lengths.iter().map(|&l| normalize::divisor(l)).collect();
            let high = T::from(NEAR_ONE).unwrap_or_else(T::infinity);
            let near_one = divisors.iter().all(|&v| v >= high.recip() && v <= high);
            let features = batch.features();
            return Self {
                layout: Layout::Wide {
                    features,
                    divisors,
                    near_one,
                },
                lengths,
                dim,
            };
        }
        let mut lengths = vec![T::zero(); batch.rows()];
        let z = |order: Option<&[u32]>, lengths: &mut [T]| {
            let mut z = workspace.take(batch.rows() * batch.shape().dim);
            normalize_into(batch, order, lengths, &mut z);
            z
        };
        let layout = match sides {
            Some(sides) => {
                let z =
                    |band: &SortedBand<T>, lengths: &mut [T]| z(Some(band.plan().order()), lengths);
                let [positives, negatives] = sides;
                let z_positives = z(&positives, &mut lengths);
                let z_negatives = z(&negatives, &mut lengths);
                let mut rank = vec![0u32; batch.rows()];
                for (p, &j) in positives.plan().order().iter().enumerate() {
                    rank[j as usize] = p as u32;
                }
                Layout::Band {
                    sides: [
                        BandSide {
                            band: positives,
                            z: z_positives,
                        },
                        BandSide {
                            band: negatives,
                            z: z_negatives,
                        },
                    ],
                    rank,
                }
            }
            None => Layout::Dense {
                z: z(None, &mut lengths),
            },
        };
        Self {
            layout,
            lengths,
            dim,
        }
    }

    /// Every view, in the fixed order of the passes.
    pub fn each(&self) -> Vec<View<'_, T>> {
        match &self.layout {
            Layout::Dense { z } => vec![View {
                z,
                divisors: None,
                near_one: false,
                dim: self.dim,
                band: None,
            }],
            Layout::Wide {
                features,
                divisors,
                near_one,
            } => vec![View {
                z: features,
                divisors: Some(divisors),
                near_one: *near_one,
                dim: self.dim,
                band: None,
            }],
            Layout::Band { sides, .. } => sides
                .iter()
                .map(|side| View {
                    z: &side.z,
                    divisors: None,
                    near_one: false,
                    dim: self.dim,
                    band: Some(side.band.plan()),
                })
                .collect(),
        }
    }

    /// The feature buffers, for the engine to keep (see [`Workspace`]).
    pub fn take_buffers(&mut self) -> Vec<Vec<T>> {
        match &mut self.layout {
            Layout::Dense { z } => vec![std::mem::take(z)],
            Layout::Wide { .. } => Vec::new(),
            Layout::Band { sides, .. } => {
                sides.iter_mut().map(|s| std::mem::take(&mut s.z)).collect()
            }
        }
    }

    /// Turns row `j`'s `∂L/∂z` in `grad` into its `∂L/∂f`, in place. A view
    /// of wide rows read from the features gives `∂L/∂f` already
    /// ([`View::divisors`]), and so has nothing to turn.
    pub fn unnormalize(&self, j: usize, grad: &mut [T]) {
        let dim = grad.len();
        let (z, p) = match &self.layout {
            Layout::Dense { z } => (z, j),
            Layout::Band { sides, rank } => (&sides[0].z, rank[j] as usize),
            Layout::Wide { .. } => return,
        };
        normalize_backward_in_place(self.lengths[j], &z[p * dim..(p + 1) * dim], grad);
    }
}

/// Both sides of the band: positives, then negatives.
pub(super) type Sides<T> = [SortedBand<T>; 2];

/// The band's two sides where `plan` takes the band on `batch`, with the
/// share of the dense plan's tiles they visit: under [`TilePlan::Auto`] only
/// where the band [`band::pays`]; never under `angular`, where no band exists.
pub(super) fn chosen_sides<T: Scalar>(
    batch: &Batch<'_, T>,
    params: &Params<T>,
    plan: TilePlan,
) -> Result<Option<(Sides<T>, f64)>, Error> {
    if plan == TilePlan::Dense {
        return Ok(None);
    }
    let Some(sides) = band::sides(batch, params)? else {
        return Ok(None);
    };
    let share = band::sides_share(&sides, batch.rows(), ROW_BLOCK, COL_BLOCK);
    let take = plan == TilePlan::Band || band::pays(share);
    Ok(take.then_some((sides, share)))
}

/// The rows in one order, for one pass over the tiles: every row and pair
/// (the dense plan), or one side of the band plan.
pub(super) struct View<'a, T> {
    /// Normalised features in this view's order, M×D, or with `divisors`
    /// the features themselves.
    pub z: &'a [T],
    /// Each row's divisor where `z` holds the features themselves.
    divisors: Option<&'a [T]>,
    /// With `divisors`: whether every one is [near 1](View::lengths_near_one).
    near_one: bool,
    /// D.
    dim: usize,
    /// The band, or `None` for every column in row order.
    band: Option<BandPlan<'a, T>>,
}

impl<T: Scalar> View<'_, T> {
    /// The rows at `positions` as the wide kernels read them: normalised,
    /// or where the lengths are [near 1](View::lengths_near_one), the
    /// features themselves, whose products are divided after.
    pub fn rows(&self, positions: Range<usize>) -> Rows<'_, T> {
        let dim = self.dim;
        Rows {
            data: &self.z[positions.start * dim..positions.end * dim],
            dim,
            divisors: self
                .divisors
                .filter(|_| !self.near_one)
                .map(|v| &v[positions]),
        }
    }

    /// Whether the view reads the features themselves and every row's
    /// divisor `d_j = max(|f_j|, ε)` lies within [`NEAR_ONE`] of 1 either
    /// way. Then a product of two rows, `f_j·f_k`, cannot overflow, nor
    /// `H_jk / d_j / d_k` leave the type's range, so the passes divide
    /// products and fold divisors into `H` rather than divide the features
    /// as they read them (a quotient of every feature, written and read again).
    pub fn lengths_near_one(&self) -> bool {
        self.divisors.is_some() && self.near_one
    }

    /// The divisors by which the products of [`View::rows`] are divided
    /// after the GEMM: where the lengths are [near 1](View::lengths_near_one).
    pub fn divisors_after_product(&self) -> Option<&[T]> {
        self.divisors.filter(|_| self.near_one)
    }

    /// Each row's divisor `max(|f_j|, ε)` where the view reads the features
    /// themselves: then the backward pass gives `∂L/∂f` directly.
    pub fn divisors(&self) -> Option<&[T]> {
        self.divisors
    }

    /// The row at `position` of this view.
    pub fn index(&self, position: usize) -> usize {
        self.band
            .as_ref()
            .map_or(position, |b| b.order()[position] as usize)
    }

    /// Whether positions are rows: then [`View::blocks`] gives consecutive
    /// runs of [`ROW_BLOCK`] rows, and a block can write its rows' results in place.
    pub fn in_row_order(&self) -> bool {
        self.band.is_none()
    }

    /// The column positions that can pair with rows at sorted positions
    /// `first..=last`: every column of the batch's `rows` without a band.
    pub fn columns(&self, first: usize, last: usize, rows: usize) -> Range<usize> {
        self.band
            .as_ref()
            .map_or(0..rows, |b| b.columns(first..last + 1))
    }

    /// Whether a pair found on this view counts here: on a band side, only
    /// the side's own kind, so that no pair is counted twice.
    pub fn keeps(&self, pair: &Pair<T>) -> bool {
        match self.band.as_ref().map(BandPlan::side) {
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
    pub fn blocks(&self, rows: &Range<usize>) -> Vec<Vec<usize>> {
        let Some(band) = &self.band else {
            let positions: Vec<usize> = rows.clone().collect();
            return positions.chunks(ROW_BLOCK).map(<[usize]>::to_vec).collect();
        };
        let order = band.order();
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

/// Writes the normalised features to `z` (M·D), in row order or in
/// `order`, and each row's length to `lengths` (in row order).
fn normalize_into<T: Scalar>(
    batch: &Batch<'_, T>,
    order: Option<&[u32]>,
    lengths: &mut [T],
    z: &mut [T],
) {
    let dim = batch.shape().dim;
    let row = |p: usize| order.map_or(p, |o| o[p] as usize);
    let by_position: Vec<T> = z
        .par_chunks_mut(dim)
        .enumerate()
        .map(|(p, zp)| normalize(batch.feature_row(row(p)), zp))
        .collect();
    for (p, length) in by_position.into_iter().enumerate() {
        lengths[row(p)] = length;
    }
}
