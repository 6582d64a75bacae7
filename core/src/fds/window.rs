//! FDS's smoothing window: `ks` weights summing to 1.
//!
//! The shapes are LDS's ([`crate::density::Kernel`]). The official behaviour
//! holds the window as the reference does, built in f64 (the gaussian as
//! scipy's `gaussian_filter1d` of a float32 impulse, which scipy returns in
//! float32) and kept in float32; the clean behaviour keeps it in f64.

use super::{Behaviour, Fds};
use crate::Error;
use crate::density::{Kernel, gaussian_of_impulse};

/// Writes the window of `config` into `out[..ks]` and returns `ks`.
pub fn window(config: &Fds, out: &mut [f64]) -> Result<usize, Error> {
    config.validate()?;
    let ks = config.ks;
    if out.len() < ks {
        return Err(Error::BufferTooSmall {
            what: "window",
            needed: ks,
            got: out.len(),
        });
    }
    let w = &mut out[..ks];
    let half = (ks - 1) / 2;
    let official = config.behaviour == Behaviour::Official;
    match config.kernel {
        Kernel::Gaussian if official => {
            // scipy returns the filtered float32 impulse in float32; the
            // reference sums those (in float32) and divides in float32.
            gaussian_of_impulse(config.sigma, half, w);
            let total = w.iter().fold(0.0f32, |acc, &x| acc + x as f32);
            w.iter_mut().for_each(|x| *x = f64::from(*x as f32 / total));
            return Ok(ks);
        }
        Kernel::Gaussian => gaussian_of_impulse(config.sigma, half, w),
        Kernel::Triang => {
            // scipy.signal.windows.triang for odd M: 2n/(M+1), n = 1..(M+1)/2, mirrored.
            for (i, x) in w.iter_mut().enumerate() {
                let n = (i + 1).min(ks - i);
                *x = 2.0 * n as f64 / (ks as f64 + 1.0);
            }
        }
        Kernel::Laplace => {
            for (i, x) in w.iter_mut().enumerate() {
                let t = i as f64 - half as f64;
                *x = libm::exp(-libm::fabs(t) / config.sigma) / (2.0 * config.sigma);
            }
        }
    }
    let total = w.iter().fold(0.0, |acc, &x| acc + x);
    w.iter_mut().for_each(|x| *x /= total);
    if official {
        // The reference hands its f64 window to torch as float32.
        w.iter_mut().for_each(|x| *x = f64::from(*x as f32));
    }
    Ok(ks)
}

/// The buckets of `values` (`buckets × dim`, row-major) convolved with
/// `window` along the bucket axis, with reflect padding of `(ks − 1)/2`
/// buckets on each side (the reflection leaves out the edge bucket itself),
/// into `out`. `window.len()` must be odd and its half less than `buckets`
/// (as [`Fds::validate`] ensures).
pub fn smooth_buckets<T: crate::Scalar>(values: &[T], dim: usize, window: &[f64], out: &mut [T]) {
    let buckets = values.len() / dim.max(1);
    let half = window.len() / 2;
    let reflect = |i: isize| -> usize {
        let last = buckets as isize - 1;
        let j = if i < 0 {
            -i
        } else if i > last {
            2 * last - i
        } else {
            i
        };
        j as usize
    };
    for b in 0..buckets {
        let row = &mut out[b * dim..(b + 1) * dim];
        row.fill(T::zero());
        for (k, &w) in window.iter().enumerate() {
            let src = reflect(b as isize + k as isize - half as isize);
            let w = crate::cast::<T>(w);
            for (o, &v) in row.iter_mut().zip(&values[src * dim..(src + 1) * dim]) {
                *o = *o + w * v;
            }
        }
    }
}
