use conr_core::density::{self, DensityConfig};
use conr_core::{Error, Scalar};

/// Each label's density weight `eta` (mean 1), allocating the output and scratch.
/// See [`conr_core::density`] for the steps.
///
/// ```
/// use conr_cpu::{core::density::{DensityConfig, Reweight}, density_weights};
/// let config = DensityConfig { reweight: Reweight::Inverse, ..DensityConfig::default() };
/// let weights = density_weights(&config, &[10.0, 10.0, 50.0])?;
/// assert!(weights.iter().all(|w| (w - 1.0f64).abs() < 1e-15)); // every count clips up to 5
/// # Ok::<(), conr_cpu::Error>(())
/// ```
pub fn density_weights<T: Scalar>(config: &DensityConfig, labels: &[T]) -> Result<Vec<T>, Error> {
    config.validate()?;
    let mut scratch = vec![T::zero(); config.scratch_len()];
    let mut weights = vec![T::zero(); labels.len()];
    density::density_weights(config, labels, &mut scratch, &mut weights)?;
    Ok(weights)
}
