use conr_core::Error;

use crate::layout::DeviceStats;

/// Bytes of one row's statistics on the device.
const STATS_BYTES: u64 = std::mem::size_of::<DeviceStats>() as u64;

/// Workgroups the mixed tile kernels aim for per call: a few per
/// multiprocessor of a large GPU (an H100 has 132).
pub(crate) const MIXED_WORKGROUPS: usize = 512;

/// Workgroups the f32 tile kernels aim for per call: two per multiprocessor
/// of a large GPU. Each costs a fixed setup and merge, which on a CPU
/// adapter (lavapipe) made 512 of them at 1,024 × 512 with the band 2.6
/// times slower than one per row tile.
pub(crate) const F32_WORKGROUPS: usize = 256;

/// The fewest features of a feature range of the f32 logit tiles: fewer
/// would leave each workgroup too little to sum.
const DEPTH_PER_SPLIT: usize = 128;

/// The most feature ranges of the f32 logit tiles.
const MAX_DEPTH_SPLITS: usize = 16;

/// The most column ranges of the f32 tile kernels: each holds a block of M×D
/// partial gradients (two with the band), so the blocks together stay within
/// 16 times the features.
const MAX_F32_SPLITS: usize = 16;

/// Row alignment of a chunk: 64 rows of f32 is 256·D bytes, a multiple of any
/// storage-offset alignment wgpu allows (at most 256).
const CHUNK_ALIGN: u64 = 64;

/// How an M×D batch is cut into row chunks that each fit one storage
/// binding, and (mixed precision) its columns into ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Chunking {
    pub rows: usize,
    pub dim: usize,
    pub label_dim: usize,
    pub chunk_rows: usize,
    /// Column ranges of the tile kernels: each row tile's columns are cut
    /// into this many ranges of whole tiles, one workgroup each.
    pub splits: usize,
    /// Feature ranges of the f32 logit tiles (1: none): each tile's logits
    /// are summed over this many ranges of features, one workgroup each,
    /// and kept for both passes.
    pub depth_splits: usize,
}

impl Chunking {
    /// Chunks of as many rows as `max_binding` bytes allow (a multiple of 64).
    pub fn new(
        rows: usize,
        dim: usize,
        label_dim: usize,
        max_binding: u64,
        max_workgroups: u32,
    ) -> Result<Self, Error> {
        let row_bytes = dim as u64 * 4;
        let fit = (max_binding / row_bytes) / CHUNK_ALIGN * CHUNK_ALIGN;
        if fit == 0 {
            return Err(Error::TooLarge {
                what: "64 feature rows (the smallest chunk)",
                needed: row_bytes * CHUNK_ALIGN,
                limit: max_binding,
            });
        }
        if rows as u64 > crate::status::MAX_ROWS {
            return Err(Error::TooLarge {
                what: "the number of rows (the device's check numbers rows in 29 bits)",
                needed: rows as u64,
                limit: crate::status::MAX_ROWS,
            });
        }
        // Per-row buffers (labels, statistics) are bound whole.
        let per_row = [
            ("the label buffer", (rows * label_dim) as u64 * 4),
            ("the row statistics", rows as u64 * STATS_BYTES),
        ];
        for (what, needed) in per_row {
            if needed > max_binding {
                return Err(Error::TooLarge {
                    what,
                    needed,
                    limit: max_binding,
                });
            }
        }
        // One workgroup per 64 rows in the per-row kernels.
        let groups = rows.div_ceil(crate::LINEAR_WORKGROUP as usize) as u64;
        if groups > u64::from(max_workgroups) {
            return Err(Error::TooLarge {
                what: "the number of rows (in workgroups of 64)",
                needed: groups,
                limit: u64::from(max_workgroups),
            });
        }
        // One workgroup per tile of 32 rows in the tiled kernels.
        let by_groups = (max_workgroups as usize * crate::TILE as usize) / CHUNK_ALIGN as usize
            * CHUNK_ALIGN as usize;
        let chunk_rows = (fit as usize)
            .min(by_groups)
            .min(rows.div_ceil(CHUNK_ALIGN as usize) * CHUNK_ALIGN as usize);
        Ok(Self {
            rows,
            dim,
            label_dim,
            chunk_rows,
            splits: 1,
            depth_splits: 1,
        })
    }

    /// The number of chunks.
    pub fn chunks(&self) -> usize {
        self.rows.div_ceil(self.chunk_rows)
    }

    /// The first row and the row count of chunk `a`.
    pub fn chunk(&self, a: usize) -> (usize, usize) {
        let start = a * self.chunk_rows;
        (start, self.chunk_rows.min(self.rows - start))
    }

    /// Bytes of one M×D f32 chunk.
    pub fn chunk_bytes(&self, a: usize) -> u64 {
        (self.chunk(a).1 * self.dim * 4) as u64
    }

    /// The row length of the f16 features of the mixed kernels: D rounded up
    /// to 64, so that the four subgroups of a workgroup split every 64
    /// features of the backward product without a bounds test.
    pub fn stride(&self) -> usize {
        self.dim.next_multiple_of(crate::TILE as usize)
    }

    /// The rows of the mixed kernels' padded buffers: M rounded up to whole tiles.
    pub fn padded_rows(&self) -> usize {
        self.rows.next_multiple_of(crate::TILE as usize)
    }

    /// The chunking of the mixed kernels: the batch as one chunk, with padded f16
    /// features and padded f32 gradient blocks, and its columns cut into
    /// ranges so that about [`MIXED_WORKGROUPS`] workgroups run at once
    /// (at most 8 ranges, one tile each at least), the ranges' accumulator
    /// blocks together within one storage binding.
    pub fn mixed(self, max_binding: u64) -> Result<Self, Error> {
        let block = (self.padded_rows() * self.stride() * 4) as u64;
        if self.chunks() > 1 || block > max_binding {
            return Err(Error::TooLarge {
                what: "the batch in mixed precision (one storage binding of M x D f32, padded)",
                needed: block.max((self.rows * self.dim * 4) as u64),
                limit: max_binding,
            });
        }
        let tiles = self.padded_rows() / crate::TILE as usize;
        let wanted = (MIXED_WORKGROUPS / tiles).clamp(1, 8).min(tiles);
        let fits = (max_binding / block) as usize;
        Ok(Self {
            splits: wanted.min(fits).max(1),
            ..self
        })
    }

    /// The f32 tile kernels' column ranges for a batch of one chunk with
    /// `sides` band sides (1 without the band), each side's dispatch one
    /// workgroup per (row tile, range): enough ranges for about
    /// [`F32_WORKGROUPS`] workgroups a call (at most one a tile, at most
    /// [`MAX_F32_SPLITS`]), their blocks of partial gradients (`sides ·
    /// splits` of M×D f32) within one storage binding. Several chunks keep
    /// one range: they have row tiles enough.
    pub fn f32_splits(self, sides: usize, max_binding: u64) -> Self {
        if self.chunks() > 1 {
            return self;
        }
        let tiles = self.rows.div_ceil(crate::TILE as usize);
        let wanted = F32_WORKGROUPS
            .div_ceil(sides * tiles)
            .clamp(1, MAX_F32_SPLITS)
            .min(tiles);
        let block = (sides * self.rows * self.dim * 4) as u64;
        let fits = (max_binding / block.max(1)) as usize;
        Self {
            splits: wanted.min(fits).max(1),
            ..self
        }
    }

    /// The f32 dense plan's feature ranges, for a batch of one chunk whose
    /// row tiles and column ranges are too few for [`F32_WORKGROUPS`]: as
    /// many ranges (of at least [`DEPTH_PER_SPLIT`] features, at most
    /// [`MAX_DEPTH_SPLITS`]) as make that many workgroups of 64×64 tiles, the
    /// kept partial tiles within M·D values and one binding; then one column
    /// range (the kept tiles already give the forward pass its work, and the
    /// backward pass takes one workgroup per 64 features). Unchanged where
    /// fewer than two ranges would do.
    pub fn f32_depth(self, max_binding: u64) -> Self {
        let tiles = self.rows.div_ceil(crate::TILE as usize);
        if self.chunks() > 1 || tiles * self.splits >= F32_WORKGROUPS {
            return self;
        }
        let tile_values = tiles * tiles * (crate::TILE * crate::TILE) as usize;
        let by_memory = (self.rows * self.dim) / tile_values;
        let by_binding = (max_binding / (tile_values as u64 * 4)) as usize;
        let depth_splits = F32_WORKGROUPS
            .div_ceil(tiles * tiles)
            .min(self.dim / DEPTH_PER_SPLIT)
            .min(MAX_DEPTH_SPLITS)
            .min(by_memory)
            .min(by_binding);
        if depth_splits < 2 {
            return self;
        }
        Self {
            splits: 1,
            depth_splits,
            ..self
        }
    }

    /// The bytes of the kept logit tiles (0 without feature ranges).
    pub fn logits_bytes(&self) -> u64 {
        if self.depth_splits <= 1 {
            return 0;
        }
        let tiles = self.rows.div_ceil(crate::TILE as usize);
        (tiles * tiles * self.depth_splits * (crate::TILE * crate::TILE) as usize * 4) as u64
    }

    /// The byte offset of chunk `a` in an M×D f32 buffer.
    pub fn chunk_offset(&self, a: usize) -> u64 {
        (self.chunk(a).0 * self.dim * 4) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_binding_limit_and_alignment() {
        let chunking = Chunking::new(1000, 100, 1, 64 * 400 * 2, 65535).unwrap();
        assert_eq!(chunking.chunk_rows, 128);
        assert_eq!(chunking.chunks(), 8);
        assert_eq!(chunking.chunk(7), (896, 104));
        assert_eq!(chunking.chunk_offset(1) % 256, 0);
        let whole = Chunking::new(100, 8, 1, 1 << 27, 65535).unwrap();
        assert_eq!((whole.chunks(), whole.chunk(0)), (1, (0, 100)));
    }

    #[test]
    fn mixed_chunkings_cut_columns_into_ranges_that_fit() {
        let mixed = |m| {
            Chunking::new(m, 512, 1, 2 << 30, 65535)
                .unwrap()
                .mixed(2 << 30)
                .unwrap()
        };
        // Few row tiles: more column ranges, at most 8 and at most one per tile.
        assert_eq!(mixed(256).splits, 4);
        assert_eq!(mixed(1024).splits, 8);
        assert_eq!(mixed(8192).splits, 4);
        assert_eq!(mixed(65536).splits, 1);
        assert_eq!((mixed(100).stride(), mixed(100).padded_rows()), (512, 128));
        let narrow = Chunking::new(100, 100, 1, 2 << 30, 65535)
            .unwrap()
            .mixed(2 << 30)
            .unwrap();
        assert_eq!(narrow.stride(), 128);
        // All ranges' f32 blocks (1024 × 512 × 4 bytes each) share one binding.
        let tight = Chunking::new(1024, 512, 1, 3 << 21, 65535)
            .unwrap()
            .mixed(3 << 21)
            .unwrap();
        assert_eq!(tight.splits, 3);
        // A batch that needs row chunks cannot run mixed.
        let chunked = Chunking::new(1024, 512, 1, 1 << 20, 65535).unwrap();
        assert!(matches!(
            chunked.mixed(1 << 20),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn f32_chunkings_cut_columns_where_row_tiles_are_few() {
        let f32 = |m, d, sides| {
            Chunking::new(m, d, 1, 2 << 30, 65535)
                .unwrap()
                .f32_splits(sides, 2 << 30)
        };
        // Workgroups a call: row tiles × ranges × sides.
        let workgroups = |c: Chunking, sides: usize| c.rows.div_ceil(64) * c.splits * sides;
        assert_eq!(f32(128, 2048, 1).splits, 2);
        assert_eq!(f32(1024, 512, 1).splits, 16);
        assert_eq!(workgroups(f32(1024, 512, 1), 1), 256);
        assert_eq!(workgroups(f32(1024, 512, 2), 2), 256);
        assert_eq!(f32(256, 512, 2).splits, 4);
        assert_eq!(f32(8192, 512, 1).splits, 2);
        assert_eq!(f32(8192, 512, 2).splits, 1);
        assert_eq!(f32(65536, 512, 2).splits, 1);
        // The blocks of partial gradients share one binding.
        let tight = Chunking::new(1024, 512, 1, 3 << 21, 65535)
            .unwrap()
            .f32_splits(1, 3 << 21);
        assert_eq!(tight.splits, 3);
        // Several chunks: one range.
        let chunked = Chunking::new(1024, 512, 1, 1 << 20, 65535).unwrap();
        assert_eq!(chunked.f32_splits(1, 1 << 20).splits, 1);
    }

    #[test]
    fn few_row_tiles_of_many_features_sum_their_logits_in_ranges() {
        let depth = |m, d| {
            Chunking::new(m, d, 1, 2 << 30, 65535)
                .unwrap()
                .f32_splits(1, 2 << 30)
                .f32_depth(2 << 30)
        };
        // AgeDB's batch: 2 row tiles, 2 column tiles, 16 ranges of 128
        // features: 64 workgroups in row_stats_depth, and in backward 2 row
        // tiles × 32 blocks of 64 features.
        let agedb = depth(128, 2048);
        assert_eq!((agedb.depth_splits, agedb.splits), (16, 1));
        assert_eq!(agedb.logits_bytes(), (128 * 2048 * 4) as u64);
        assert_eq!(depth(256, 2048).depth_splits, 8);
        // Few features, or enough row tiles: none.
        assert_eq!(depth(128, 64).depth_splits, 1);
        assert_eq!(depth(1024, 512).depth_splits, 1);
        assert_eq!(depth(1024, 512).logits_bytes(), 0);
    }

    #[test]
    fn impossible_shapes_are_errors() {
        assert!(matches!(
            Chunking::new(10, 1 << 20, 1, 1 << 20, 65535),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            Chunking::new(100_000_000, 4, 1, 1 << 27, 65535),
            Err(Error::TooLarge { .. })
        ));
    }
}
