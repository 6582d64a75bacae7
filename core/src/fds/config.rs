//! FDS's knobs and their domains.

use crate::config::named;
use crate::density::Kernel;
use crate::{Error, Named};

/// The most buckets an FDS config may ask for.
pub const MAX_BUCKETS: usize = 10_000_000;
/// The largest window FDS smooths with.
pub const MAX_KERNEL_SIZE: usize = 1023;

/// Which FDS: the reference code's, or the clean one for real-valued labels
/// (see [the module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Behaviour {
    /// The reference code's, quirks included.
    #[default]
    Official,
    /// Binned labels, every row in a bucket, last-epoch statistics copied.
    Clean,
}

named!(
    Behaviour,
    "behaviour",
    [
        ("official", Behaviour::Official),
        ("clean", Behaviour::Clean)
    ]
);

/// FDS's knobs: the reference's constructor arguments, the behaviour, and the
/// clean behaviour's bin width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fds {
    /// One past the last bucket's label (bin, for the clean behaviour).
    pub bucket_num: usize,
    /// The first bucket's label (bin); there are `bucket_num − bucket_start` buckets.
    pub bucket_start: usize,
    /// The first epoch whose features update the running statistics.
    pub start_update: u64,
    /// The first epoch whose batches are smoothed.
    pub start_smooth: u64,
    /// The smoothing window's shape.
    pub kernel: Kernel,
    /// The window size (odd).
    pub ks: usize,
    /// The window width σ (gaussian and laplace).
    pub sigma: f64,
    /// The running statistics' momentum, or `None` for the cumulative mean
    /// over every sample seen.
    pub momentum: Option<f64>,
    /// The reference's behaviour, or the clean one.
    pub behaviour: Behaviour,
    /// The clean behaviour's bin width: label `y` is in bin `⌊y / bin_width⌋`.
    pub bin_width: f64,
}

impl Default for Fds {
    /// The reference's defaults: 100 buckets from 3, updates from epoch 0,
    /// smoothing from epoch 1, a gaussian window of 5 with σ = 2, momentum 0.9.
    fn default() -> Self {
        Self {
            bucket_num: 100,
            bucket_start: 3,
            start_update: 0,
            start_smooth: 1,
            kernel: Kernel::Gaussian,
            ks: 5,
            sigma: 2.0,
            momentum: Some(0.9),
            behaviour: Behaviour::Official,
            bin_width: 1.0,
        }
    }
}

impl Fds {
    /// The clean behaviour for labels in `range` (both ends included) at
    /// `resolution`: one bucket per resolution step (`bin_width =
    /// resolution`, buckets from the bin of `range.0` to that of `range.1`),
    /// with the window of the reference's AgeDB-DIR training script
    /// (gaussian, ks = 9, σ = 1; narrowed to fit fewer than 5 buckets),
    /// momentum 0.9, updates from epoch 0 and smoothing from epoch 1.
    ///
    /// ```
    /// use conr_core::fds::{Behaviour, Fds};
    /// let fds = Fds::for_labels((0.0, 100.0), 1.0)?;
    /// assert_eq!((fds.bucket_start, fds.bucket_num, fds.ks), (0, 101, 9));
    /// assert_eq!(fds.behaviour, Behaviour::Clean);
    /// # Ok::<(), conr_core::Error>(())
    /// ```
    pub fn for_labels(range: (f64, f64), resolution: f64) -> Result<Self, Error> {
        crate::density::label_steps(range, resolution)?;
        let first = libm::floor(range.0 / resolution);
        let last = libm::floor(range.1 / resolution);
        if first < 0.0 || last >= MAX_BUCKETS as f64 {
            return Err(Error::InvalidConfig {
                field: "range",
                why: "FDS's bins ⌊y / resolution⌋ must lie in 0..10000000",
            });
        }
        let (bucket_start, bucket_num) = (first as usize, last as usize + 1);
        let buckets = bucket_num - bucket_start;
        let config = Self {
            bucket_num,
            bucket_start,
            ks: 9.min(2 * (buckets - 1) + 1),
            sigma: 1.0,
            behaviour: Behaviour::Clean,
            bin_width: resolution,
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The number of buckets, `bucket_num − bucket_start`.
    pub fn buckets(&self) -> usize {
        self.bucket_num.saturating_sub(self.bucket_start)
    }

    /// Checks every value's domain.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, why| Err(Error::InvalidConfig { field, why });
        if self.bucket_start >= self.bucket_num {
            return bad("bucket_start", "must be less than bucket_num");
        }
        if self.buckets() > MAX_BUCKETS {
            return bad("bucket_num", "at most 10000000 buckets");
        }
        if self.ks.is_multiple_of(2) || self.ks > MAX_KERNEL_SIZE {
            return bad("ks", "must be odd and at most 1023");
        }
        if self.ks / 2 >= self.buckets() {
            return bad(
                "ks",
                "reflect padding needs (ks − 1)/2 < the number of buckets",
            );
        }
        if self.kernel != Kernel::Triang {
            crate::density::check_sigma(self.sigma)?;
        }
        if let Some(m) = self.momentum
            && !(0.0..1.0).contains(&m)
        {
            return bad("momentum", "must be in [0, 1), or none");
        }
        if !(self.bin_width.is_finite() && self.bin_width > 0.0) {
            return bad("bin_width", "must be finite and > 0");
        }
        Ok(())
    }
}

// FDS's knobs: the one list the schema, Python and the docs read.
crate::knob::knobs!(
    Fds,
    "fds knob",
    [
        (bucket_num: usize, "> bucket_start", "one past the last bucket's label (bin)"),
        (bucket_start: usize, "< bucket_num", "the first bucket's label (bin)"),
        (start_update: u64, "", "the first epoch whose features update the statistics"),
        (start_smooth: u64, "", "the first epoch whose batches are smoothed"),
        (kernel: Kernel, "", "the smoothing window's shape"),
        (ks: usize, "odd, (ks − 1)/2 < buckets, <= 1023", "the window size"),
        (sigma: f64, "in [0.001, 1000] (gaussian and laplace)", "the window width σ"),
        (
            momentum: Option<f64>,
            "[0, 1), or none",
            "the running statistics' momentum; none: the mean over every sample seen"
        ),
        (behaviour: Behaviour, "", "the reference's behaviour, or the clean one"),
        (bin_width: f64, "finite, > 0", "clean only: label y is in bin ⌊y / bin_width⌋"),
    ]
);
