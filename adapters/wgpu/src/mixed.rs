//! The precision of the GPU engine, and what mixed precision needs of a device.

use crate::GpuError;

/// The precision of the GPU engine's logit tiles.
///
/// - [`GpuPrecision::F32`] (the default): every product and sum in f32, on
///   any adapter.
/// - [`GpuPrecision::Mixed`]: the two M×M×D products of each pass (the logit
///   tiles `z_J·z_Kᵀ` and the gradient `H·Z_K`) run on tensor cores through
///   wgpu's cooperative matrices, with f16 inputs and f32 accumulation. Every
///   statistic (the online log-sum-exp, the counts, the loss) and every
///   accumulator stays in f32. The normalised features and the 64×64 tiles of
///   `H` are rounded to f16 (11 significant bits), so results differ from the
///   f32 engine by about 1e-3 relative: see the crate README for the budget.
///
/// Mixed precision needs `Features::EXPERIMENTAL_COOPERATIVE_MATRIX` and
/// `Features::SHADER_F16`, a 16×16×16 f16×f16→f32 cooperative-matrix shape,
/// and subgroups of exactly 32 lanes (NVIDIA). Asking for it elsewhere is a
/// [`GpuError::Unsupported`], never a silent fallback to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GpuPrecision {
    /// f32 everywhere.
    #[default]
    F32,
    /// f16 tile inputs on tensor cores, f32 accumulation and statistics.
    Mixed,
}

impl GpuPrecision {
    /// `"f32"` or `"mixed"`.
    pub fn name(self) -> &'static str {
        match self {
            GpuPrecision::F32 => "f32",
            GpuPrecision::Mixed => "mixed",
        }
    }

    /// The device features this precision needs.
    pub fn features(self) -> wgpu::Features {
        match self {
            GpuPrecision::F32 => wgpu::Features::empty(),
            GpuPrecision::Mixed => {
                wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16
            }
        }
    }
}

/// The subgroup width the mixed kernels are written for.
const SUBGROUP: u32 = 32;

fn unsupported(why: String) -> GpuError {
    GpuError::Unsupported {
        what: "mixed precision",
        why,
    }
}

/// Whether `adapter` can run [`GpuPrecision::Mixed`]: the features, a 16×16×16
/// f16×f16→f32 cooperative-matrix shape, and 32-lane subgroups.
pub fn mixed_support(adapter: &wgpu::Adapter) -> Result<(), GpuError> {
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

pub(crate) fn check_features(have: wgpu::Features) -> Result<(), GpuError> {
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

pub(crate) fn check_subgroups(info: &wgpu::AdapterInfo) -> Result<(), GpuError> {
    if info.subgroup_min_size != SUBGROUP || info.subgroup_max_size != SUBGROUP {
        return Err(unsupported(format!(
            "the kernels need subgroups of {SUBGROUP} lanes; this adapter's are {} to {}",
            info.subgroup_min_size, info.subgroup_max_size
        )));
    }
    Ok(())
}
