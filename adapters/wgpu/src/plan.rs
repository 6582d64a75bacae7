use crate::GpuError;

/// Row alignment of a chunk: 64 rows of f32 is 256·D bytes, a multiple of any
/// storage-offset alignment wgpu allows (at most 256).
const CHUNK_ALIGN: u64 = 64;

/// How an M×D batch is cut into row chunks that each fit one storage binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Plan {
    pub rows: usize,
    pub dim: usize,
    pub label_dim: usize,
    pub chunk_rows: usize,
}

impl Plan {
    /// Chunks of as many rows as `max_binding` bytes allow (a multiple of 64).
    pub fn new(
        rows: usize,
        dim: usize,
        label_dim: usize,
        max_binding: u64,
        max_workgroups: u32,
    ) -> Result<Self, GpuError> {
        let row_bytes = dim as u64 * 4;
        let fit = (max_binding / row_bytes) / CHUNK_ALIGN * CHUNK_ALIGN;
        if fit == 0 {
            return Err(GpuError::TooLarge {
                what: "64 feature rows (the smallest chunk)",
                needed: row_bytes * CHUNK_ALIGN,
                limit: max_binding,
            });
        }
        // Per-row buffers (labels, statistics) are bound whole.
        let per_row = [
            ("the label buffer", (rows * label_dim) as u64 * 4),
            ("the row statistics", rows as u64 * 32),
        ];
        for (what, needed) in per_row {
            if needed > max_binding {
                return Err(GpuError::TooLarge {
                    what,
                    needed,
                    limit: max_binding,
                });
            }
        }
        // One workgroup per 64 rows in the per-row kernels.
        let groups = rows.div_ceil(crate::LINEAR_WORKGROUP as usize) as u64;
        if groups > u64::from(max_workgroups) {
            return Err(GpuError::TooLarge {
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
    /// to whole cooperative matrices.
    pub fn stride(&self) -> usize {
        self.dim.next_multiple_of(crate::mixed::COOP)
    }

    /// The rows of the mixed kernels' padded buffers: M rounded up to whole tiles.
    pub fn padded_rows(&self) -> usize {
        self.rows.next_multiple_of(crate::TILE as usize)
    }

    /// Mixed precision runs the batch as one chunk, with padded f16 features
    /// and a padded f32 gradient accumulator, each in one storage binding.
    pub fn check_mixed(&self, max_binding: u64) -> Result<(), GpuError> {
        let accumulator = (self.padded_rows() * self.stride() * 4) as u64;
        if self.chunks() > 1 || accumulator > max_binding {
            return Err(GpuError::TooLarge {
                what: "the batch in mixed precision (one storage binding of M x D f32, padded)",
                needed: accumulator.max((self.rows * self.dim * 4) as u64),
                limit: max_binding,
            });
        }
        Ok(())
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
        let plan = Plan::new(1000, 100, 1, 64 * 400 * 2, 65535).unwrap();
        assert_eq!(plan.chunk_rows, 128);
        assert_eq!(plan.chunks(), 8);
        assert_eq!(plan.chunk(7), (896, 104));
        assert_eq!(plan.chunk_offset(1) % 256, 0);
        let whole = Plan::new(100, 8, 1, 1 << 27, 65535).unwrap();
        assert_eq!((whole.chunks(), whole.chunk(0)), (1, (0, 100)));
    }

    #[test]
    fn impossible_shapes_are_errors() {
        assert!(matches!(
            Plan::new(10, 1 << 20, 1, 1 << 20, 65535),
            Err(GpuError::TooLarge { .. })
        ));
        assert!(matches!(
            Plan::new(100_000_000, 4, 1, 1 << 27, 65535),
            Err(GpuError::TooLarge { .. })
        ));
    }
}
