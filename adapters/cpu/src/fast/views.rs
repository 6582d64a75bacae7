//! The views of a batch the fast engine's passes read, built once per worker:
//! every row in order (the dense plan), or the two sides of the band plan,
//! each with its features gathered in the side's sorted order so that band
//! tiles stay contiguous for the GEMMs.

use std::ops::Range;

use conr_core::band::{self, BandPlan, Side, SortedBand, TilePlan};
use conr_core::normalize::normalize;
use conr_core::pairs::Pair;
use conr_core::{Batch, Error, Params, Scalar};
use rayon::prelude::*;

use super::{COL_BLOCK, ROW_BLOCK};

/// What a worker's passes read.
pub(super) enum Views<T> {
    /// Every tile: the normalised features in row order.
    Dense { z: Vec<T> },
    /// The band plan: the positives' side, then the negatives'.
    Band { sides: [BandSide<T>; 2] },
}

/// One side of the band: its sorted rows, and their normalised features in that order.
pub(super) struct BandSide<T> {
    band: SortedBand<T>,
    z: Vec<T>,
}

impl<T: Scalar> Views<T> {
    /// The views of `plan` on `batch`: the band's two sides (`sides`, from
    /// [`chosen_sides`]), or the dense view.
    pub fn new(batch: &Batch<'_, T>, sides: Option<Sides<T>>) -> Self {
        match sides {
            Some(sides) => Views::Band {
                sides: sides.map(|band| BandSide {
                    z: normalized(batch, Some(band.plan().order())),
                    band,
                }),
            },
            None => Views::Dense {
                z: normalized(batch, None),
            },
        }
    }

    /// Every view, in the fixed order of the passes.
    pub fn each(&self) -> Vec<View<'_, T>> {
        match self {
            Views::Dense { z } => vec![View { z, band: None }],
            Views::Band { sides } => sides
                .iter()
                .map(|side| View {
                    z: &side.z,
                    band: Some(side.band.plan()),
                })
                .collect(),
        }
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
    /// Normalised features in this view's order, M×D.
    pub z: &'a [T],
    /// The band, or `None` for every column in row order.
    band: Option<BandPlan<'a, T>>,
}

impl<T: Scalar> View<'_, T> {
    /// The row at `position` of this view.
    pub fn index(&self, position: usize) -> usize {
        self.band
            .as_ref()
            .map_or(position, |b| b.order()[position] as usize)
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
