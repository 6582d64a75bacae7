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

/// Replays one FDS case (`fds-fixture/1`), the statistics passes on the
/// engine called `backend`, in `precision` (default as for the losses).
pub fn compute_fds(
    case: &conr_schema::FdsCase,
    backend: &str,
    precision: Option<Precision>,
) -> Result<conr_schema::FdsReport> {
    let engine = conr_engines::engine(backend)?;
    let precision = conr_engines::batch_precision(&*engine, precision)?;
    let steps = match precision {
        Precision::F64 => case.replay::<f64>(Some(&*engine))?,
        _ => case.replay::<f32>(Some(&*engine))?,
    };
    Ok(conr_schema::FdsReport {
        loss: "fds".into(),
        backend: conr_core::Engine::<f32>::name(&*engine).into(),
        precision: if precision == Precision::F64 {
            "f64"
        } else {
            "f32"
        }
        .into(),
        steps,
    })
}
