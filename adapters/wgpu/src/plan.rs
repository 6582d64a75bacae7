//! How one call runs on the device, decided once ([`GpuConr::call_plan`]):
//! its chunking, its precision, whether it takes the band plan, and which
//! phases over which rows. The workspace, the recording and the reports
//! (`Engine::plan`) all read this one value.

use std::ops::Range;

use conr_core::band::TilePlan;
use conr_core::stats::RowOutcome;
use conr_core::{Config, Error, LabelMetric, Precision, Shape};

use crate::GpuConr;
use crate::chunking::Chunking;
use crate::layout::{
    FLAG_ACCUMULATE, FLAG_BAND_NEGATIVES, FLAG_BAND_POSITIVES, FLAG_BANDED, FLAG_PARTS, Uniforms,
};

/// What a call computes: both phases over every row, or one phase over a
/// worker's rows.
pub(crate) enum Phase<'a> {
    Whole,
    Forward(Range<usize>),
    /// The worker's rows and every row's outcome.
    Backward(Range<usize>, &'a [RowOutcome<f32>]),
}

/// Where a call's labels come from: host slices (which the band plan sorts
/// on the host) or caller-owned device buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Host,
    Device,
}

/// Which phases a call records, and the rows its tile kernels own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Steps {
    /// Phase 1: the row statistics (and, with `backward`, their outcomes and the loss).
    pub forward: bool,
    /// Phase 2: ∂L/∂features, from the outcomes and totals in the workspace.
    pub backward: bool,
    /// The rows whose statistics or gradient the tile kernels compute.
    pub rows: Range<usize>,
}

/// The plan of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallPlan {
    pub chunking: Chunking,
    /// [`Precision::F32`] or [`Precision::Mixed`].
    pub precision: Precision,
    /// Whether the tile kernels visit only the band's tiles (one chunk, a
    /// metric with a band, a whole computation; f32 or mixed).
    pub band: bool,
    /// Whether the device builds the band's plan (the labels are in device
    /// buffers) rather than the host.
    pub device_plan: bool,
    pub steps: Steps,
}

impl GpuConr {
    /// The plan of a call on a batch of `shape` with `config`: every
    /// decision about how it runs, and every refusal of a shape or a phase
    /// this device cannot run, in one place.
    pub(crate) fn call_plan(
        &self,
        shape: Shape,
        config: &Config,
        phase: &Phase<'_>,
        source: Source,
    ) -> Result<CallPlan, Error> {
        let limits = self.device.limits();
        let chunking = Chunking::new(
            shape.rows,
            shape.dim,
            shape.label_dim,
            self.max_binding,
            limits.max_compute_workgroups_per_dimension,
        )?;
        let chunking = match self.precision {
            Precision::Mixed => chunking.mixed(self.max_binding)?,
            _ => chunking,
        };
        let steps = match phase {
            Phase::Whole => Steps {
                forward: true,
                backward: true,
                rows: 0..shape.rows,
            },
            Phase::Forward(rows) => Steps {
                forward: true,
                backward: false,
                rows: rows.clone(),
            },
            Phase::Backward(rows, _) => Steps {
                forward: false,
                backward: true,
                rows: rows.clone(),
            },
        };
        let whole = matches!(phase, Phase::Whole);
        if !whole && self.precision == Precision::Mixed {
            return Err(Error::Unsupported {
                what: "a row phase in mixed precision",
                why: "the data-parallel row phases run in f32 only".into(),
            });
        }
        // A worker's rows are scattered through the sorted order, so the
        // row phases visit every tile.
        let may = chunking.chunks() == 1 && config.label_metric != LabelMetric::Angular && whole;
        // `Auto` cannot weigh a band's tiles against the dense plan's before
        // the labels are sorted (on the device, before the call runs), so it
        // takes the band wherever it can pay: each side visits at least one
        // tile per block, 2·b tiles against the dense b², a loss for b ≤ 2.
        let mut band = match self.tiles {
            TilePlan::Dense => false,
            TilePlan::Band => may,
            TilePlan::Auto => may && shape.rows.div_ceil(crate::TILE as usize) > 2,
        };
        let mut chunking = chunking;
        if band && self.precision == Precision::Mixed {
            // Each side has its ranges' ∂z blocks, and the last kernel binds
            // both sides': fewer ranges where they would not fit one
            // binding, and the dense plan where even one range a side would not.
            let block = (chunking.padded_rows() * chunking.stride() * 4) as u64;
            let fits = (self.max_binding / (2 * block)) as usize;
            band = fits >= 1;
            chunking.splits = chunking.splits.min(fits.max(1));
        }
        if self.precision == Precision::F32 && whole {
            // A worker's rows keep one range: its statistics are read back
            // before any merge.
            chunking = chunking.f32_splits(if band { 2 } else { 1 }, self.max_binding);
            if !band {
                chunking = chunking.f32_depth(self.max_binding);
            }
        }
        Ok(CallPlan {
            chunking,
            precision: self.precision,
            band,
            device_plan: band && source == Source::Device,
            steps,
        })
    }
}

impl CallPlan {
    /// The rows of `steps.rows` in row chunk `a`, local to the chunk.
    pub fn owned(&self, a: usize) -> (usize, usize) {
        let (offset, count) = self.chunking.chunk(a);
        let local = |r: usize| r.saturating_sub(offset).min(count);
        (local(self.steps.rows.start), local(self.steps.rows.end))
    }

    /// Every uniform block of the call, from `base` (the batch's and the
    /// config's part): one per chunk pair `(a, b)` at `a · chunks + b`, or
    /// for the band one plain block, then one per band side.
    pub fn uniforms(&self, base: Uniforms) -> Vec<Uniforms> {
        let chunking = &self.chunking;
        // The mixed tile kernels always write per-range parts (even one
        // range a side); the f32 ones with more than one range.
        let parts = self.precision == Precision::Mixed || chunking.splits > 1;
        let base = Uniforms {
            stride: chunking.stride() as u32,
            splits: chunking.splits as u32,
            depth_splits: chunking.depth_splits as u32,
            flags: base.flags | if parts { FLAG_PARTS } else { 0 },
            ..base
        };
        if self.band {
            // The negatives merge into the positives' statistics.
            let sides = [
                0,
                FLAG_BAND_POSITIVES,
                FLAG_BAND_NEGATIVES | FLAG_ACCUMULATE,
            ];
            return sides
                .map(|flags| Uniforms {
                    flags: base.flags | FLAG_BANDED | flags,
                    ..base
                })
                .to_vec();
        }
        let chunks = chunking.chunks();
        (0..chunks * chunks)
            .map(|i| {
                let (a, b) = (i / chunks, i % chunks);
                let (row_offset, row_count) = chunking.chunk(a);
                let (col_offset, col_count) = chunking.chunk(b);
                let (row_begin, row_end) = self.owned(a);
                Uniforms {
                    row_begin: row_begin as u32,
                    row_end: row_end as u32,
                    row_offset: row_offset as u32,
                    row_count: row_count as u32,
                    col_offset: col_offset as u32,
                    col_count: col_count as u32,
                    flags: base.flags | if b > 0 { FLAG_ACCUMULATE } else { 0 },
                    ..base
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    fn plan(precision: Precision, splits: usize, band: bool) -> CallPlan {
        let chunking = Chunking {
            splits,
            ..Chunking::new(4096, 64, 1, 2 << 30, 65535).unwrap()
        };
        CallPlan {
            chunking,
            precision,
            band,
            device_plan: false,
            steps: Steps {
                forward: true,
                backward: true,
                rows: 0..4096,
            },
        }
    }

    /// The kernels after the tile kernels merge per-range parts exactly
    /// where the tile kernels write them: mixed precision always (one range
    /// a side included), f32 with more than one range.
    #[test]
    fn the_parts_flag_follows_what_the_tile_kernels_write() {
        let flagged = |p: CallPlan| {
            let blocks = p.uniforms(Uniforms::zeroed());
            let on = blocks.iter().filter(|u| u.flags & FLAG_PARTS != 0).count();
            assert!(on == 0 || on == blocks.len(), "every block alike");
            on > 0
        };
        for band in [false, true] {
            assert!(flagged(plan(Precision::Mixed, 1, band)));
            assert!(flagged(plan(Precision::Mixed, 4, band)));
            assert!(!flagged(plan(Precision::F32, 1, band)));
            assert!(flagged(plan(Precision::F32, 4, band)));
        }
    }
}
