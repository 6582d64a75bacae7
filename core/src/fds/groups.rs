//! Which rows update, and are smoothed by, which bucket.
//!
//! Rows form *groups*, identified by a key, walked in ascending key order.
//! [`Behaviour::Official`] keys a group by a distinct label value `v` in
//! `[bucket_start, bucket_num − 1]`, as the reference does: the group of
//! `v = bucket_start` is every row with a label `<= v`, that of
//! `v = bucket_num − 1` every row with a label `>= v`, any other the rows with
//! label `== v`; its bucket is `⌊v − bucket_start⌋`, so non-integer labels
//! make several groups of one bucket. [`Behaviour::Clean`] keys a group by its
//! bucket: every row is in the bucket of its bin, clamped to the buckets.
//!
//! The keys come from the labels of the whole batch (of every worker, across
//! ranks), the group of each row from its own label.

use super::{Behaviour, Fds};
use crate::rules::Rule;
use crate::{Error, Scalar, cast};

/// The group of a row in no group.
pub const NO_GROUP: u32 = u32::MAX;

/// The length [`keys`] needs for a batch of `rows` labels.
pub fn keys_len(config: &Fds, rows: usize) -> usize {
    match config.behaviour {
        Behaviour::Official => rows,
        Behaviour::Clean => config.buckets(),
    }
}

/// Writes the keys of the groups that `labels` (the whole batch) forms into
/// `keys`, ascending, and returns how many there are. `keys` needs
/// [`keys_len`] values; labels must be finite.
pub fn keys<T: Scalar>(config: &Fds, labels: &[T], keys: &mut [T]) -> Result<usize, Error> {
    config.validate()?;
    check_labels(labels)?;
    let needed = keys_len(config, labels.len());
    if keys.len() < needed {
        return Err(Error::BufferTooSmall {
            what: "keys",
            needed,
            got: keys.len(),
        });
    }
    if config.behaviour == Behaviour::Clean {
        for (b, k) in keys[..needed].iter_mut().enumerate() {
            *k = cast(b as f64);
        }
        return Ok(needed);
    }
    let (first, last) = official_range::<T>(config);
    let mut n = 0;
    for &y in labels {
        if y >= first && y <= last {
            keys[n] = y;
            n += 1;
        }
    }
    let keys = &mut keys[..n];
    // Finite labels are totally ordered.
    keys.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
    let mut distinct = 0;
    for i in 0..n {
        if distinct == 0 || keys[i] != keys[distinct - 1] {
            keys[distinct] = keys[i];
            distinct += 1;
        }
    }
    Ok(distinct)
}

/// Writes the group of each of `labels` (an index into `keys`, from
/// [`keys`], or [`NO_GROUP`]) into `of_row`.
pub fn assign<T: Scalar>(
    config: &Fds,
    keys: &[T],
    labels: &[T],
    of_row: &mut [u32],
) -> Result<(), Error> {
    check_labels(labels)?;
    if of_row.len() != labels.len() {
        return Err(Error::ShapeMismatch {
            what: "of_row",
            expected: labels.len(),
            got: of_row.len(),
        });
    }
    if keys.len() >= NO_GROUP as usize {
        return Err(Error::InvalidConfig {
            field: "keys",
            why: "at most 2^32 − 1 groups",
        });
    }
    for (g, &y) in of_row.iter_mut().zip(labels) {
        *g = group_of(config, keys, y).map_or(NO_GROUP, |i| i as u32);
    }
    Ok(())
}

/// The groups a batch of `labels` forms on its own: their keys
/// ([`keys`]) and the group of each row ([`assign`]).
#[cfg(feature = "alloc")]
pub fn batch<T: Scalar>(
    config: &Fds,
    labels: &[T],
) -> Result<(alloc::vec::Vec<T>, alloc::vec::Vec<u32>), Error> {
    let mut k = alloc::vec![T::zero(); keys_len(config, labels.len())];
    let n = keys(config, labels, &mut k)?;
    k.truncate(n);
    let mut of_row = alloc::vec![NO_GROUP; labels.len()];
    assign(config, &k, labels, &mut of_row)?;
    Ok((k, of_row))
}

/// The group of label `y` among `keys`.
fn group_of<T: Scalar>(config: &Fds, keys: &[T], y: T) -> Option<usize> {
    if config.behaviour == Behaviour::Clean {
        let b = clean_bucket(config, y.to_f64().unwrap_or(0.0));
        return (b < keys.len()).then_some(b);
    }
    let (first, last) = official_range::<T>(config);
    let find = |v: T| {
        keys.binary_search_by(|k| k.partial_cmp(&v).unwrap_or(core::cmp::Ordering::Equal))
            .ok()
    };
    if y <= first {
        find(first)
    } else if y >= last && last > first {
        find(last)
    } else {
        find(y)
    }
}

/// The bucket of the group keyed `key`.
pub fn bucket_of<T: Scalar>(config: &Fds, key: T) -> usize {
    let k = key.to_f64().unwrap_or(0.0);
    match config.behaviour {
        // int(v − bucket_start), v in [bucket_start, bucket_num − 1].
        Behaviour::Official => {
            ((k - config.bucket_start as f64) as usize).min(config.buckets() - 1)
        }
        Behaviour::Clean => k as usize,
    }
}

/// The clean behaviour's bucket of label `y`: its bin `⌊y / bin_width⌋`
/// less `bucket_start`, clamped to the buckets.
pub fn clean_bucket(config: &Fds, y: f64) -> usize {
    let bin = libm::floor(y / config.bin_width) - config.bucket_start as f64;
    if bin <= 0.0 {
        0
    } else {
        (bin as usize).min(config.buckets() - 1)
    }
}

/// The first and last labels with a bucket of their own, in `T`.
fn official_range<T: Scalar>(config: &Fds) -> (T, T) {
    (
        cast(config.bucket_start as f64),
        cast((config.bucket_num - 1) as f64),
    )
}

fn check_labels<T: Scalar>(labels: &[T]) -> Result<(), Error> {
    match labels.iter().position(|y| !y.is_finite()) {
        Some(row) => Err(Rule::LabelsFinite.error(row)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn official() -> Fds {
        Fds {
            bucket_num: 6,
            bucket_start: 2,
            ks: 3,
            ..Fds::default()
        }
    }

    #[test]
    fn rows_below_the_start_join_it_only_when_it_is_there() {
        let config = official();
        let labels = [0.0, 2.0, 3.0, 3.5, 7.0, 1.0];
        let mut k = [0.0; 6];
        let n = keys(&config, &labels, &mut k).unwrap();
        assert_eq!(&k[..n], [2.0, 3.0, 3.5]);
        let mut of_row = [0; 6];
        assert!(assign(&config, &k[..n], &labels, &mut of_row).is_ok());
        // 7 is above the last bucket (5), which has no row: no group.
        assert_eq!(of_row, [0, 0, 1, 2, NO_GROUP, 0]);
        assert_eq!(bucket_of(&config, 3.5), 1);

        let without_start = [0.0, 3.0];
        let n = keys(&config, &without_start, &mut k).unwrap();
        let mut of_row = [0; 2];
        assert!(assign(&config, &k[..n], &without_start, &mut of_row).is_ok());
        assert_eq!(of_row, [NO_GROUP, 0]);
    }

    #[test]
    fn clean_rows_always_have_a_bucket() {
        let config = Fds {
            behaviour: Behaviour::Clean,
            bin_width: 0.5,
            ..official()
        };
        let labels = [-3.0, 1.2, 1.6, 100.0];
        let mut k = [0.0; 4];
        assert_eq!(keys(&config, &labels, &mut k), Ok(4));
        let mut of_row = [0; 4];
        assert!(assign(&config, &k, &labels, &mut of_row).is_ok());
        // Bins ⌊y / 0.5⌋ = −6, 2, 3, 200, less bucket_start 2, clamped to 0..4.
        assert_eq!(of_row, [0, 0, 1, 3]);
    }
}
