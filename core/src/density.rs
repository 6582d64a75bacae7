//! Per-sample pushing power `eta` from label density (DESIGN §3), as in the DIR
//! pipelines of Yang et al. (2021): bin the labels, count, take the square root
//! (`sqrt_inv`) or clip to [5, 1000] (`inverse`), optionally smooth the counts
//! with a kernel window (LDS), then weight each sample by 1/count of its bin and
//! rescale the weights to mean 1.
//!
//! Nothing here allocates: the caller passes a scratch slice of
//! [`DensityConfig::scratch_len`] values.
//!
//! ```
//! use conr_core::density::{DensityConfig, Kernel, Reweight, density_weights};
//! let config = DensityConfig { kernel: Some(Kernel::Gaussian), ..DensityConfig::default() };
//! let labels = [30.0, 30.0, 30.0, 31.0, 80.0];
//! let mut scratch = vec![0.0; config.scratch_len()];
//! let mut weights = [0.0; 5];
//! density_weights(&config, &labels, &mut scratch, &mut weights)?;
//! let mean = weights.iter().sum::<f64>() / 5.0;
//! assert!((mean - 1.0).abs() < 1e-12);
//! assert!(weights[4] > weights[0]); // the rare label pushes harder
//! # Ok::<(), conr_core::Error>(())
//! ```

use crate::math::sqrt;
use crate::{Error, Named, Scalar, cast};

/// The most bins a density config may ask for (the scratch is two arrays of bins).
pub const MAX_BINS: usize = 10_000_000;

/// How counts turn into the value a weight is the inverse of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reweight {
    /// `sqrt(count)`.
    #[default]
    SqrtInv,
    /// `clip(count, 5, 1000)`. Empty bins become 5 before smoothing.
    Inverse,
}

/// The LDS smoothing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// scipy's `gaussian_filter1d` (truncate 4.0, mode `reflect`) of a unit
    /// impulse of length `2·⌊(ks−1)/2⌋ + 1`, scaled to a maximum of 1.
    Gaussian,
    /// scipy's `triang(ks)`; `ks` must be odd.
    Triang,
    /// `exp(−|x|/σ)/(2σ)` for `|x| <= ⌊(ks−1)/2⌋`, scaled to a maximum of 1.
    Laplace,
}

crate::config::named!(
    Reweight,
    "reweight",
    [
        ("sqrt_inv", Reweight::SqrtInv),
        ("inverse", Reweight::Inverse),
    ]
);
crate::config::named!(
    Kernel,
    "kernel",
    [
        ("gaussian", Kernel::Gaussian),
        ("triang", Kernel::Triang),
        ("laplace", Kernel::Laplace),
    ]
);

/// How to bin labels and weight them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DensityConfig {
    /// Square-root inverse or clipped inverse.
    pub reweight: Reweight,
    /// The smoothing window, or `None` for plain counts.
    pub kernel: Option<Kernel>,
    /// The window size `ks`.
    pub kernel_size: usize,
    /// The window width σ (gaussian and laplace).
    pub sigma: f64,
    /// The number of bins. Labels bin as `min(bins − 1, ⌊(y − min_label)/bin_width⌋)`,
    /// and labels below `min_label` fall into bin 0.
    pub bins: usize,
    /// The width of one bin.
    pub bin_width: f64,
    /// The lower edge of bin 0.
    pub min_label: f64,
}

impl Default for DensityConfig {
    /// The AgeDB-DIR setting: `sqrt_inv`, no smoothing, ks = 5, σ = 2, 121 one-year bins from 0.
    fn default() -> Self {
        Self {
            reweight: Reweight::SqrtInv,
            kernel: None,
            kernel_size: 5,
            sigma: 2.0,
            bins: 121,
            bin_width: 1.0,
            min_label: 0.0,
        }
    }
}

/// Checks a label range and resolution, and returns the number of label
/// steps in it, `⌊(max − min) / resolution⌋ + 1`.
pub(crate) fn label_steps(range: (f64, f64), resolution: f64) -> Result<usize, Error> {
    let bad = |field, why| Err(Error::InvalidConfig { field, why });
    let (min, max) = range;
    if !(min.is_finite() && max.is_finite() && min < max) {
        return bad(
            "range",
            "must be two finite labels, the first below the second",
        );
    }
    if !(resolution.is_finite() && resolution > 0.0) {
        return bad("resolution", "must be finite and > 0");
    }
    let steps = libm::floor((max - min) / resolution) + 1.0;
    // Finite here: both ends and the resolution are finite, and min < max.
    if steps > MAX_BINS as f64 {
        return bad(
            "resolution",
            "the range holds more than 10000000 steps of it",
        );
    }
    Ok(steps as usize)
}

impl DensityConfig {
    /// LDS for labels in `range` (both ends included) at `resolution`: one
    /// bin per resolution step from `range.0`, square-root inverse counts
    /// smoothed by a gaussian window of 5 bins with σ = 2 bins, the AgeDB-DIR
    /// setting. For ages 0–100 at resolution 1 its weights are those of the
    /// official AgeDB-DIR runs (which bin to 121, but no label lies past 100).
    ///
    /// ```
    /// use conr_core::density::{DensityConfig, Kernel};
    /// let lds = DensityConfig::for_labels((0.7, 10.0), 0.1)?; // depths in metres
    /// assert_eq!((lds.bins, lds.bin_width, lds.min_label), (94, 0.1, 0.7));
    /// assert_eq!((lds.kernel, lds.kernel_size, lds.sigma), (Some(Kernel::Gaussian), 5, 2.0));
    /// # Ok::<(), conr_core::Error>(())
    /// ```
    pub fn for_labels(range: (f64, f64), resolution: f64) -> Result<Self, Error> {
        let bins = label_steps(range, resolution)?;
        let config = Self {
            kernel: Some(Kernel::Gaussian),
            bins,
            bin_width: resolution,
            min_label: range.0,
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The length of the scratch slice [`density_weights`] needs: two arrays of
    /// `bins` and one window of `kernel_size`.
    pub fn scratch_len(&self) -> usize {
        self.bins.saturating_mul(2).saturating_add(self.kernel_size)
    }

    /// Checks every value's domain.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, why| Err(Error::InvalidConfig { field, why });
        if self.bins == 0 || self.bins > MAX_BINS {
            return bad("bins", "must be in 1..=10000000");
        }
        if !(self.bin_width.is_finite() && self.bin_width > 0.0) {
            return bad("bin_width", "must be finite and > 0");
        }
        if !self.min_label.is_finite() {
            return bad("min_label", "must be finite");
        }
        if let Some(kernel) = self.kernel {
            if self.kernel_size == 0 || self.kernel_size > 64 {
                return bad("kernel_size", "must be in 1..=64");
            }
            if kernel == Kernel::Triang && self.kernel_size.is_multiple_of(2) {
                return bad("kernel_size", "the triang window needs an odd size");
            }
            if kernel != Kernel::Triang {
                check_sigma(self.sigma)?;
            }
        }
        Ok(())
    }

    /// The bin of label `y`.
    #[inline]
    pub fn bin(&self, y: f64) -> usize {
        let b = libm::floor((y - self.min_label) / self.bin_width);
        if b <= 0.0 {
            0
        } else {
            (b as usize).min(self.bins - 1)
        }
    }
}

// LDS's knobs: the one list the schema, Python and the docs read.
crate::knob::knobs!(
    DensityConfig,
    "density knob",
    [
        (reweight: Reweight, "", "the weight of a bin from its count: 1/√count, or 1/count clipped"),
        (
            kernel: Option<Kernel>,
            "",
            "the window that smooths the counts across bins (LDS), or none for plain counts"
        ),
        (kernel_size: usize, "1..=64 with a kernel; odd for triang", "the window size ks"),
        (sigma: f64, "in [0.001, 1000] (gaussian and laplace)", "the window width σ"),
        (bins: usize, "1..=10000000", "the number of bins"),
        (bin_width: f64, "finite, > 0", "the width of one bin"),
        (min_label: f64, "finite", "the lower edge of bin 0; labels below it fall into bin 0"),
    ]
);

/// Writes the smoothing window of `kernel` into `out` and returns its length
/// (`ks` for triang, `2·⌊(ks−1)/2⌋ + 1` otherwise). The window peaks at 1.
pub fn kernel_window(
    kernel: Kernel,
    kernel_size: usize,
    sigma: f64,
    out: &mut [f64],
) -> Result<usize, Error> {
    let half = kernel_size.saturating_sub(1) / 2;
    let len = match kernel {
        Kernel::Triang => kernel_size,
        _ => 2 * half + 1,
    };
    if out.len() < len {
        return Err(Error::BufferTooSmall {
            what: "window",
            needed: len,
            got: out.len(),
        });
    }
    let window = &mut out[..len];
    match kernel {
        Kernel::Triang => {
            // scipy.signal.windows.triang for odd M: 2n/(M+1), n = 1..(M+1)/2, mirrored.
            for (i, w) in window.iter_mut().enumerate() {
                let n = (i + 1).min(len - i);
                *w = 2.0 * n as f64 / (len as f64 + 1.0);
            }
        }
        Kernel::Laplace => {
            for (i, w) in window.iter_mut().enumerate() {
                let x = i as f64 - half as f64;
                *w = libm::exp(-libm::fabs(x) / sigma);
            }
        }
        Kernel::Gaussian => gaussian_of_impulse(sigma, half, window),
    }
    let peak = window.iter().fold(0.0f64, |a, &b| a.max(b));
    window.iter_mut().for_each(|w| *w /= peak);
    Ok(len)
}

/// The window widths σ a gaussian or laplace window takes: below 0.001 the
/// gaussian's weights underflow to 0/0, and above 1000 its radius of 4σ
/// makes building the window slow, while any window of up to 1023 weights is
/// flat to within 10⁻⁷ long before.
pub const SIGMA_RANGE: (f64, f64) = (1e-3, 1e3);

/// Checks a window width against [`SIGMA_RANGE`].
pub(crate) fn check_sigma(sigma: f64) -> Result<(), Error> {
    if (SIGMA_RANGE.0..=SIGMA_RANGE.1).contains(&sigma) {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "sigma",
            why: "must be in [0.001, 1000]",
        })
    }
}

/// scipy's `gaussian_filter1d(impulse, sigma)` with truncate 4.0 and mode
/// `reflect` (`d c b a | a b c d | d c b a`), for an impulse at `half` of a
/// signal of length `2·half + 1`, in f64 as scipy computes it: the weights
/// `exp(−0.5/σ² · t²)` over `|t| <= ⌊4σ + 0.5⌋` divided by their sum, and each
/// output the sum of the weights that the reflections carry onto the impulse.
pub(crate) fn gaussian_of_impulse(sigma: f64, half: usize, out: &mut [f64]) {
    let n = out.len() as i64;
    let radius = (4.0 * sigma + 0.5) as i64;
    let scale = -0.5 / (sigma * sigma);
    let phi = |x: i64| libm::exp(scale * (x * x) as f64);
    let total: f64 = (-radius..=radius).map(phi).sum();
    let reflect = |p: i64| {
        let q = p.rem_euclid(2 * n);
        if q >= n { 2 * n - 1 - q } else { q }
    };
    for (i, w) in out.iter_mut().enumerate() {
        *w = (-radius..=radius)
            .filter(|&t| reflect(i as i64 + t) == half as i64)
            .map(|t| phi(t) / total)
            .sum();
    }
}

/// Writes each label's density weight into `weights` (mean 1).
///
/// `scratch` needs [`DensityConfig::scratch_len`] values. Labels must be finite.
pub fn density_weights<T: Scalar>(
    config: &DensityConfig,
    labels: &[T],
    scratch: &mut [T],
    weights: &mut [T],
) -> Result<(), Error> {
    config.validate()?;
    if labels.is_empty() {
        return Err(Error::EmptyBatch);
    }
    if weights.len() != labels.len() {
        return Err(Error::ShapeMismatch {
            what: "weights",
            expected: labels.len(),
            got: weights.len(),
        });
    }
    if scratch.len() < config.scratch_len() {
        return Err(Error::BufferTooSmall {
            what: "scratch",
            needed: config.scratch_len(),
            got: scratch.len(),
        });
    }
    if let Some(row) = labels.iter().position(|y| !y.is_finite()) {
        return Err(Error::NonFinite {
            what: "labels",
            row,
        });
    }
    let bins = config.bins;
    let (counts, rest) = scratch.split_at_mut(bins);
    let (smoothed, window) = rest.split_at_mut(bins);
    let bin_of = |y: T| config.bin(y.to_f64().unwrap_or(0.0));

    counts.fill(T::zero());
    for &y in labels {
        let b = bin_of(y);
        counts[b] = counts[b] + T::one();
    }
    for c in counts.iter_mut() {
        *c = match config.reweight {
            Reweight::SqrtInv => sqrt(*c),
            Reweight::Inverse => c.max(cast(5.0)).min(cast(1000.0)),
        };
    }
    let per_bin: &[T] = match config.kernel {
        None => counts,
        Some(kernel) => {
            // validate() bounds the window to 64.
            let mut window64 = [0.0f64; 64];
            let len = kernel_window(kernel, config.kernel_size, config.sigma, &mut window64)?;
            for (w, &v) in window.iter_mut().zip(&window64[..len]) {
                *w = cast(v);
            }
            smooth(counts, &window[..len], smoothed);
            smoothed
        }
    };
    for (w, &y) in weights.iter_mut().zip(labels) {
        *w = T::one() / per_bin[bin_of(y)];
    }
    let total = weights.iter().fold(T::zero(), |a, &b| a + b);
    let scaling = cast::<T>(labels.len() as f64) / total;
    weights.iter_mut().for_each(|w| *w = *w * scaling);
    Ok(())
}

/// `scipy.ndimage.convolve1d(values, window, mode='constant')` for a symmetric window.
fn smooth<T: Scalar>(values: &[T], window: &[T], out: &mut [T]) {
    let half = window.len() / 2;
    for (b, o) in out.iter_mut().enumerate() {
        *o = window.iter().enumerate().fold(T::zero(), |acc, (i, &w)| {
            match (b + i).checked_sub(half).and_then(|src| values.get(src)) {
                Some(&v) => acc + w * v,
                None => acc,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_scipy() {
        let mut w = [0.0; 8];
        assert_eq!(kernel_window(Kernel::Triang, 5, 0.0, &mut w), Ok(5));
        let third = 1.0 / 3.0;
        assert_eq!(w[..5], [third, 2.0 * third, 1.0, 2.0 * third, third]);
        // gaussian_filter1d(impulse, σ) / max, as printed by scipy 1.17.1.
        kernel_window(Kernel::Gaussian, 5, 2.0, &mut w).unwrap();
        let expected = [0.8582852377730947, 0.9458276490853568, 1.0];
        for (a, b) in w.iter().zip(expected) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
        kernel_window(Kernel::Gaussian, 7, 3.0, &mut w).unwrap();
        let expected = [
            0.9038900096262872,
            0.9382009366366886,
            0.9809123959525723,
            1.0,
        ];
        for (a, b) in w.iter().zip(expected) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let triang_even = DensityConfig {
            kernel: Some(Kernel::Triang),
            kernel_size: 4,
            ..DensityConfig::default()
        };
        assert!(triang_even.validate().is_err());
        let mut scratch = [0.0f64; 4];
        let mut out = [0.0f64; 1];
        let err = density_weights(&DensityConfig::default(), &[1.0], &mut scratch, &mut out);
        assert!(matches!(err, Err(Error::BufferTooSmall { .. })));
    }
}
