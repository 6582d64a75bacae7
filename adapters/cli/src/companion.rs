//! What `conr compute` prints for a `dir-fixture/1` case: a loss ConR is
//! combined with (RankSim, Rank-N-Contrast, Balanced MSE), on the engine
//! named on the command line.

use anyhow::Result;
use conr_core::Precision;
use conr_schema::{DirCase, DirReport};

/// Runs one companion case on the engine called `backend`, in `precision`
/// (default: f64 where the engine computes f64, else the engine's own).
pub fn compute(case: &DirCase, backend: &str, precision: Option<Precision>) -> Result<DirReport> {
    let engine = conr_engines::engine(backend)?;
    Ok(match conr_engines::batch_precision(&*engine, precision)? {
        Precision::F64 => case.run::<f64>(&*engine)?,
        _ => case.run::<f32>(&*engine)?,
    })
}
