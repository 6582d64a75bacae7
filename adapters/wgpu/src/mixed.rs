//! What mixed precision ([`Precision::Mixed`]) needs of a device.
//!
//! The two M×M×D products of each pass (the logit tiles `z_J·z_Kᵀ` and the
//! gradient `H·Z_K`) run on tensor cores through wgpu's cooperative
//! matrices, with f16 inputs and f32 accumulation. Every statistic (the
//! online log-sum-exp, the counts, the loss) and every accumulator stays in
//! f32. The normalised features and the 64×64 tiles of `H` are rounded to
//! f16 (11 significant bits), so results differ from the f32 engine by about
//! 1e-3 relative: see the crate README for the budget.
//!
//! It needs `Features::EXPERIMENTAL_COOPERATIVE_MATRIX` and
//! `Features::SHADER_F16`, a 16×16×16 f16×f16→f32 cooperative-matrix shape,
//! and subgroups of exactly 32 lanes (NVIDIA). Asking for it elsewhere is an
//! [`Error::Unsupported`], never a silent fallback to f32.

use conr_core::{Error, Precision};

/// The subgroup width the mixed kernels are written for.
const SUBGROUP: u32 = 32;

fn unsupported(why: String) -> Error {
    Error::Unsupported {
        what: "mixed precision",
        why,
    }
}

/// The device features the GPU engine needs in `precision`: none for f32,
/// cooperative matrices and f16 for mixed.
pub fn features_for(precision: Precision) -> wgpu::Features {
    match precision {
        Precision::Mixed => {
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16
        }
        Precision::F32 | Precision::F64 => wgpu::Features::empty(),
    }
}

/// Whether `adapter` can run [`Precision::Mixed`]: the features, a 16×16×16
/// f16×f16→f32 cooperative-matrix shape, and 32-lane subgroups.
pub fn mixed_support(adapter: &wgpu::Adapter) -> Result<(), Error> {
    check_features(adapter.features())?;
    let shapes = adapter.cooperative_matrix_properties();
    let fits = shapes.iter().any(|p| {
        p.m_size == 16
            && p.n_size == 16
            && p.k_size == 16
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    if !fits {
        return Err(unsupported(format!(
            "the adapter has no 16x16x16 f16 x f16 -> f32 cooperative matrix (it offers {} shapes: {:?})",
            shapes.len(),
            shapes
        )));
    }
    check_subgroups(&adapter.get_info())
}

pub(crate) fn check_features(have: wgpu::Features) -> Result<(), Error> {
    let needed = [
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "EXPERIMENTAL_COOPERATIVE_MATRIX",
        ),
        (wgpu::Features::SHADER_F16, "SHADER_F16"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(feature, _)| !have.contains(*feature))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(unsupported(format!(
            "the device lacks the feature(s) {}",
            missing.join(" and ")
        )));
    }
    Ok(())
}

pub(crate) fn check_subgroups(info: &wgpu::AdapterInfo) -> Result<(), Error> {
    if info.subgroup_min_size != SUBGROUP || info.subgroup_max_size != SUBGROUP {
        return Err(unsupported(format!(
            "the kernels need subgroups of {SUBGROUP} lanes; this adapter's are {} to {}",
            info.subgroup_min_size, info.subgroup_max_size
        )));
    }
    Ok(())
}
