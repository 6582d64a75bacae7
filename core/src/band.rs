//! The band plan: which tiles of pairs can hold a positive or a negative.
//!
//! Only positives (`d(y_j, y_k) <= ω`) and negatives (`d(y_j, y_k) > ω` and
//! `d(p_j, p_k) <= ω̂`) enter the loss and its gradient. Sort the rows by the
//! first coordinate of their labels and every positive lies in a band around
//! the diagonal; sort them by the first coordinate of their predictions and
//! every negative does. Under `l1`, `l2` and `linf` the first coordinate's
//! difference bounds the distance from below, so a band on it is exact for
//! labels of any width (only looser above one). Under `angular` no such bound
//! holds and the plan is dense.
//!
//! A [`BandPlan`] sorts the rows of one [`Side`] (a deterministic order: ties
//! broken by index) into caller-provided scratch, and gives for any run of
//! sorted rows the run of sorted columns that can pair with them. Its bound is
//! widened by a few units in the last place, so that every pair
//! [`Pair::classify`](crate::pairs::Pair::classify) could call a positive (or
//! a negative) lies inside, whatever the rounding of the distances.
//!
//! ```
//! use conr_core::band::{BandPlan, Side};
//! use conr_core::{Batch, Config, Inputs, Shape};
//!
//! let shape = Shape { rows: 6, dim: 1, label_dim: 1 };
//! let labels = [50.0, 20.0, 21.0, 80.0, 20.5, 51.0];
//! let preds = labels;
//! let features = [1.0; 6];
//! let batch = Batch::new(shape, Inputs { features: &features, labels: &labels, preds: &preds, eta: None })?;
//! let params = batch.check(&Config::paper())?; // ω = 1
//! let (mut order, mut keys) = ([0u32; 6], [0.0f64; 6]);
//! let plan = BandPlan::new(&batch, &params, Side::Positives, &mut order, &mut keys)?
//!     .expect("l1 labels have a band");
//! assert_eq!(plan.order(), [1, 4, 2, 0, 5, 3]); // ages 20, 20.5, 21, 50, 51, 80
//! // Rows at sorted positions 0..2 (ages 20, 20.5) pair only with positions 0..3.
//! assert_eq!(plan.columns(0..2), 0..3);
//! # Ok::<(), conr_core::Error>(())
//! ```

use core::cmp::Ordering;
use core::ops::Range;

use crate::{Batch, Error, LabelMetric, Params, Scalar};

/// Which tiles of pairs an engine visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TilePlan {
    /// The band plan where it [`pays`] for the batch, every tile otherwise:
    /// the band on large batches with a spread of labels and predictions,
    /// every tile on small ones, whose band spans nearly every column.
    #[default]
    Auto,
    /// Only the tiles a [`BandPlan`] says can hold a positive (rows and
    /// columns sorted by label) or a negative (sorted by prediction),
    /// whatever they cost; every tile under `angular`, where no band exists.
    Band,
    /// Every tile: all M² pairs are classified.
    Dense,
}

impl TilePlan {
    /// `"auto"`, `"band"` or `"dense"`.
    pub fn name(self) -> &'static str {
        match self {
            TilePlan::Auto => "auto",
            TilePlan::Band => "band",
            TilePlan::Dense => "dense",
        }
    }
}

/// Which pairs a plan covers, and so which values it sorts the rows by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Positives: rows sorted by the first label coordinate, bound ω.
    Positives,
    /// Negatives: rows sorted by the first prediction coordinate, bound ω̂.
    Negatives,
}

/// The rows of one [`Side`] in sorted order, with the bound that cuts a band
/// out of it. Borrowed from the caller's scratch; see the module docs.
#[derive(Debug)]
pub struct BandPlan<'a, T> {
    side: Side,
    order: &'a [u32],
    keys: &'a [T],
    reach: T,
}

/// How far rounding may move a computed distance below the first
/// coordinate's difference, in units of the type's epsilon. A distance takes
/// a handful of rounded operations; 64 leaves a wide margin. (The GPU's
/// device-built plan uses the same slack.)
pub const SLACK_ULPS: f64 = 64.0;

impl<'a, T: Scalar> BandPlan<'a, T> {
    /// Sorts the rows of `batch` for `side` into `order` (row indices) and
    /// `keys` (their first coordinate), both of length M. Returns `None` when
    /// no band bounds the pairs (the `angular` metric): visit every tile.
    ///
    /// Fails when a scratch slice has the wrong length, or when M does not fit
    /// in a `u32`.
    pub fn new(
        batch: &Batch<'_, T>,
        params: &Params<T>,
        side: Side,
        order: &'a mut [u32],
        keys: &'a mut [T],
    ) -> Result<Option<Self>, Error> {
        let rows = batch.rows();
        if rows > u32::MAX as usize {
            return Err(Error::InvalidConfig {
                field: "rows",
                why: "the band plan indexes rows with u32: at most 4,294,967,295",
            });
        }
        for (what, len) in [("band order", order.len()), ("band keys", keys.len())] {
            if len != rows {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: rows,
                    got: len,
                });
            }
        }
        if params.config.label_metric == LabelMetric::Angular {
            return Ok(None);
        }
        let (values, threshold) = match side {
            Side::Positives => (batch.labels(), params.threshold),
            Side::Negatives => (batch.preds(), params.pred_threshold),
        };
        let width = batch.shape().label_dim;
        let key = |j: usize| values[j * width];
        for (j, slot) in order.iter_mut().enumerate() {
            *slot = j as u32;
        }
        // Ties (and incomparable keys, which validation rules out) by index:
        // the order is a function of the data alone.
        order.sort_unstable_by(|&a, &b| {
            key(a as usize)
                .partial_cmp(&key(b as usize))
                .unwrap_or(Ordering::Equal)
                .then(a.cmp(&b))
        });
        for (slot, &j) in keys.iter_mut().zip(order.iter()) {
            *slot = key(j as usize);
        }
        let slack = crate::cast::<T>(SLACK_ULPS) * T::epsilon();
        Ok(Some(Self {
            side,
            order,
            keys,
            reach: threshold + threshold * slack,
        }))
    }

    /// The side this plan covers.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Row indices in sorted order: position `i` holds row `order()[i]`.
    pub fn order(&self) -> &[u32] {
        self.order
    }

    /// The first coordinate of each sorted row.
    pub fn keys(&self) -> &[T] {
        self.keys
    }

    /// The sorted positions of every column that can form a pair of this
    /// side with a row at the sorted positions `rows`: one contiguous run,
    /// since keys are sorted. Empty for an empty `rows`.
    pub fn columns(&self, rows: Range<usize>) -> Range<usize> {
        let rows = rows.start.min(self.keys.len())..rows.end.min(self.keys.len());
        if rows.is_empty() {
            return 0..0;
        }
        let (low, high) = (self.keys[rows.start], self.keys[rows.end - 1]);
        let slack = crate::cast::<T>(SLACK_ULPS) * T::epsilon();
        // Rounding of the subtraction itself, relative to the keys' size.
        let below = low - self.reach - (low.abs() + self.reach) * slack;
        let above = high + self.reach + (high.abs() + self.reach) * slack;
        let start = self.keys.partition_point(|&k| k < below);
        let end = self.keys.partition_point(|&k| k <= above);
        start..end.max(start)
    }

    /// For each block of `block` sorted rows (the last one shorter), the run
    /// of sorted columns that can pair with it: a band pass's tile list.
    pub fn block_columns(&self, block: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let block = block.max(1);
        (0..self.keys.len())
            .step_by(block)
            .map(move |start| self.columns(start..start + block))
    }

    /// How many tiles of `tile` sorted columns the runs of
    /// [`Self::block_columns`] touch: the work of a band pass.
    pub fn tiles(&self, block: usize, tile: usize) -> usize {
        let tile = tile.max(1);
        self.block_columns(block)
            .map(|cols| cols.len().div_ceil(tile))
            .sum()
    }
}

/// A [`BandPlan`] that owns its order and keys (needs the `alloc` feature),
/// for engines that keep a plan for both phases of a batch.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct SortedBand<T> {
    side: Side,
    order: alloc::vec::Vec<u32>,
    keys: alloc::vec::Vec<T>,
    reach: T,
}

#[cfg(feature = "alloc")]
impl<T: Scalar> SortedBand<T> {
    /// [`BandPlan::new`] into vectors of its own: `None` where no band exists.
    pub fn new(
        batch: &Batch<'_, T>,
        params: &Params<T>,
        side: Side,
    ) -> Result<Option<Self>, Error> {
        let rows = batch.rows();
        let (mut order, mut keys) = (alloc::vec![0u32; rows], alloc::vec![T::zero(); rows]);
        let Some(plan) = BandPlan::new(batch, params, side, &mut order, &mut keys)? else {
            return Ok(None);
        };
        let reach = plan.reach;
        Ok(Some(Self {
            side,
            order,
            keys,
            reach,
        }))
    }

    /// The plan, borrowing this one's order and keys.
    pub fn plan(&self) -> BandPlan<'_, T> {
        BandPlan {
            side: self.side,
            order: &self.order,
            keys: &self.keys,
            reach: self.reach,
        }
    }
}

/// Whether the band plan pays for a batch where its two passes together
/// visit `share` of the dense plan's tiles: only below one. On a small batch
/// each side's band spans nearly every column, and two passes over nearly
/// every tile cost about twice the dense plan's one.
pub fn pays(share: f64) -> bool {
    share < 1.0
}

/// Both sides of the band plan, sorted: `None` where no band exists
/// (`angular`).
#[cfg(feature = "alloc")]
pub fn sides<T: Scalar>(
    batch: &Batch<'_, T>,
    params: &Params<T>,
) -> Result<Option<[SortedBand<T>; 2]>, Error> {
    let positives = SortedBand::new(batch, params, Side::Positives)?;
    let negatives = SortedBand::new(batch, params, Side::Negatives)?;
    Ok(positives.zip(negatives).map(|(p, n)| [p, n]))
}

/// The share of the dense plan's `block`×`tile` tiles that both `sides`
/// visit together, on a batch of `rows` rows (see [`tile_share`]).
#[cfg(feature = "alloc")]
pub fn sides_share<T: Scalar>(
    sides: &[SortedBand<T>; 2],
    rows: usize,
    block: usize,
    tile: usize,
) -> f64 {
    let visited: usize = sides.iter().map(|s| s.plan().tiles(block, tile)).sum();
    visited as f64 / dense_tiles(rows, block, tile) as f64
}

/// The dense plan's `block`×`tile` tiles on `rows` rows (at least one).
fn dense_tiles(rows: usize, block: usize, tile: usize) -> usize {
    (rows.div_ceil(block.max(1)) * rows.div_ceil(tile.max(1))).max(1)
}

/// The share of `block`×`tile` tiles that both band passes visit together
/// (they may overlap, so it may exceed 1), over the dense plan's tiles;
/// `None` where no band exists (`angular`). `order` and `keys` are scratch of
/// length M, reused by both sides.
pub fn tile_share<T: Scalar>(
    batch: &Batch<'_, T>,
    params: &Params<T>,
    block: usize,
    tile: usize,
    order: &mut [u32],
    keys: &mut [T],
) -> Result<Option<f64>, Error> {
    let rows = batch.rows();
    let mut visited = 0;
    for side in [Side::Positives, Side::Negatives] {
        match BandPlan::new(batch, params, side, order, keys)? {
            Some(plan) => visited += plan.tiles(block, tile),
            None => return Ok(None),
        }
    }
    Ok(Some(visited as f64 / dense_tiles(rows, block, tile) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs::Pair;
    use crate::{Config, Inputs, Shape};

    fn plan_holds_every_pair(labels: &[f64], preds: &[f64], width: usize, config: Config) {
        let rows = labels.len() / width;
        let shape = Shape {
            rows,
            dim: 1,
            label_dim: width,
        };
        let features = std::vec![1.0; rows];
        let inputs = Inputs {
            features: &features,
            labels,
            preds,
            eta: None,
        };
        let batch = Batch::new(shape, inputs).unwrap();
        let params = batch.check(&config).unwrap();
        for side in [Side::Positives, Side::Negatives] {
            let (mut order, mut keys) = (std::vec![0u32; rows], std::vec![0.0; rows]);
            let Some(plan) = BandPlan::new(&batch, &params, side, &mut order, &mut keys).unwrap()
            else {
                assert_eq!(config.label_metric, LabelMetric::Angular);
                continue;
            };
            let mut position = std::vec![0usize; rows];
            for (i, &j) in plan.order().iter().enumerate() {
                position[j as usize] = i;
            }
            for block in [1, 2, 3] {
                for start in (0..rows).step_by(block) {
                    let cols = plan.columns(start..start + block);
                    for i in start..(start + block).min(rows) {
                        let j = plan.order()[i] as usize;
                        for (k, &at) in position.iter().enumerate() {
                            let pair = Pair::classify(&params, batch.row(j), batch.row(k), 0.0);
                            let wanted = match side {
                                Side::Positives => pair.is_positive(),
                                Side::Negatives => pair.is_negative(),
                            };
                            if wanted {
                                assert!(
                                    cols.contains(&at),
                                    "{side:?}: pair ({j}, {k}) outside {cols:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bands_hold_every_pair_at_and_around_the_thresholds() {
        let config = Config {
            threshold: 1.0,
            pred_threshold: Some(0.5),
            ..Config::paper()
        };
        let labels = [3.0, 2.0, 4.0, 1.0, 2.0, 7.5, 8.0, 9.0, 3.5, -1.0];
        let preds = [3.0, 3.5, 3.0, 2.5, 9.0, 7.0, 3.25, 8.5, 3.0, 0.0];
        plan_holds_every_pair(&labels, &preds, 1, config);
        let zero = Config {
            threshold: 0.0,
            ..Config::paper()
        };
        plan_holds_every_pair(&labels, &preds, 1, zero);
        // Two-wide labels under each metric: the first coordinate still bounds.
        for metric in [
            LabelMetric::L1,
            LabelMetric::L2,
            LabelMetric::Linf,
            LabelMetric::Angular,
        ] {
            let config = Config {
                label_metric: metric,
                threshold: if metric == LabelMetric::Angular {
                    0.3
                } else {
                    1.5
                },
                ..Config::paper()
            };
            let labels = [1.0, 2.0, 1.5, 0.5, 3.0, 3.0, 1.0, 2.5, 9.0, 1.0];
            let preds = [1.0, 2.0, 1.0, 1.0, 2.0, 2.5, 1.5, 2.5, 1.0, 2.0];
            plan_holds_every_pair(&labels, &preds, 2, config);
        }
        // Huge labels.
        let huge = [1e30, -1e30, 1e30, 1e30 + 1e15, -1e30];
        plan_holds_every_pair(&huge, &huge, 1, Config::paper());
    }

    #[test]
    fn scratch_of_the_wrong_length_is_an_error() {
        let shape = Shape {
            rows: 2,
            dim: 1,
            label_dim: 1,
        };
        let inputs = Inputs {
            features: &[1.0, 1.0],
            labels: &[1.0, 2.0],
            preds: &[1.0, 2.0],
            eta: None,
        };
        let batch = Batch::new(shape, inputs).unwrap();
        let params = batch.check(&Config::paper()).unwrap();
        let (mut order, mut keys) = ([0u32; 3], [0.0f64; 2]);
        let err = BandPlan::new(&batch, &params, Side::Positives, &mut order, &mut keys);
        assert!(matches!(err, Err(Error::ShapeMismatch { .. })));
    }
}
