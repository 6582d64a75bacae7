//! The running statistics and when each step of an epoch applies.
//!
//! Within an epoch `e`: smooth the training batches (from `start_smooth`),
//! then, at the epoch's end, the last-epoch update (only when `e` is one past
//! the `epoch` counter, which it then advances; the counter starts at
//! `start_update`), then the running update (skipped when `e` is below the
//! counter).

use super::Fds;
use super::groups::bucket_of;
use crate::{Error, Scalar, cast};

/// Whether `update_running_stats` at `epoch` updates, given the counter.
pub fn running_due(epoch: u64, counter: u64) -> bool {
    epoch >= counter
}

/// Whether `update_last_epoch_stats` at `epoch` updates (and advances the counter).
pub fn last_epoch_due(epoch: u64, counter: u64) -> bool {
    counter.checked_add(1) == Some(epoch)
}

/// Whether `smooth` at `epoch` smooths (else it is the identity).
pub fn smoothing_due(config: &Fds, epoch: u64) -> bool {
    epoch >= config.start_smooth
}

/// A caller's statistics buffers, each `buckets × dim` (row-major) but
/// `num_samples_tracked` (`buckets`).
#[derive(Debug)]
pub struct Statistics<'a, T> {
    /// The running means; buckets start at 0.
    pub running_mean: &'a mut [T],
    /// The running variances; buckets start at 1.
    pub running_var: &'a mut [T],
    /// How many samples each bucket has seen.
    pub num_samples_tracked: &'a mut [T],
}

/// The groups' statistics from one statistics pass: for each of the groups
/// keyed `keys` (ascending, in any float type), its count, mean and variance (`groups × dim`).
#[derive(Debug, Clone, Copy)]
pub struct GroupMoments<'a, K> {
    /// The group keys ([`super::groups::keys`]).
    pub keys: &'a [K],
    /// Each group's sample count.
    pub counts: &'a [f64],
    /// Each group's mean.
    pub means: &'a [f64],
    /// Each group's variance ([`super::moments::variances`]).
    pub variances: &'a [f64],
}

impl<T: Scalar> Statistics<'_, T> {
    /// The running update of epoch `epoch` by the groups in key order: each
    /// non-empty group adds its count to its bucket's, then blends its mean
    /// and variance into the bucket's by the factor `f` (the momentum, or
    /// `1 − k / seen` without one; 0 at `start_update`):
    /// `μ ← (1 − f)·mean + f·μ`, `σ² ← (1 − f)·var + f·σ²`.
    pub fn update<K: Scalar>(
        &mut self,
        config: &Fds,
        epoch: u64,
        groups: &GroupMoments<'_, K>,
    ) -> Result<(), Error> {
        config.validate()?;
        let buckets = config.buckets();
        let dim = self.running_mean.len() / buckets;
        let n = groups.keys.len();
        for (what, len, want) in [
            ("running_mean", self.running_mean.len(), buckets * dim),
            ("running_var", self.running_var.len(), buckets * dim),
            (
                "num_samples_tracked",
                self.num_samples_tracked.len(),
                buckets,
            ),
            ("counts", groups.counts.len(), n),
            ("means", groups.means.len(), n * dim),
            ("variances", groups.variances.len(), n * dim),
        ] {
            if len != want || dim == 0 {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: want,
                    got: len,
                });
            }
        }
        for (g, &key) in groups.keys.iter().enumerate() {
            let k = groups.counts[g];
            if k <= 0.0 {
                continue;
            }
            let b = bucket_of(config, key);
            let seen = self.num_samples_tracked[b] + cast::<T>(k);
            self.num_samples_tracked[b] = seen;
            let mut factor = match config.momentum {
                Some(m) => m,
                None => 1.0 - k / seen.to_f64().unwrap_or(k),
            };
            if epoch == config.start_update {
                factor = 0.0;
            }
            let (keep, take) = (cast::<T>(factor), cast::<T>(1.0 - factor));
            let rows = b * dim..(b + 1) * dim;
            let group = g * dim..(g + 1) * dim;
            blend(
                &mut self.running_mean[rows.clone()],
                &groups.means[group.clone()],
                take,
                keep,
            );
            blend(
                &mut self.running_var[rows],
                &groups.variances[group],
                take,
                keep,
            );
        }
        Ok(())
    }
}

/// `old ← take·new + keep·old`, `new` rounded to `T` (saturating, so that a
/// variance past `T`'s range stays finite).
fn blend<T: Scalar>(old: &mut [T], new: &[f64], take: T, keep: T) {
    for (o, &v) in old.iter_mut().zip(new) {
        let v = cast::<T>(v).min(T::max_value()).max(T::min_value());
        *o = take * v + keep * *o;
    }
}
