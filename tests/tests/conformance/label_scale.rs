//! The knobs that follow the label scale (`for_labels`): for ages 0–100 at
//! resolution 1, the official AgeDB-DIR values.

use conr_core::Config;
use conr_core::density::{DensityConfig, Kernel};
use conr_core::fds::Fds;

#[test]
fn ages_at_resolution_one_give_the_official_agedb_values() {
    let conr = Config::for_labels((0.0, 100.0), 1.0).unwrap();
    let agedb = Config::official_agedb();
    assert_eq!(conr.threshold, agedb.threshold);
    assert_eq!(
        conr.effective_pred_threshold(),
        agedb.effective_pred_threshold()
    );

    // LDS as the AgeDB-DIR runs set it (gaussian, ks 5, σ 2, 121 bins): the
    // same weights for any ages in 0..=100.
    let official = DensityConfig {
        kernel: Some(Kernel::Gaussian),
        ..DensityConfig::default()
    };
    let derived = DensityConfig::for_labels((0.0, 100.0), 1.0).unwrap();
    let ages: Vec<f64> = (0..3000)
        .map(|i| ((i * 7919) % 101) as f64 * ((i % 7) as f64 / 7.0).sqrt().max(0.3))
        .map(f64::floor)
        .collect();
    let a = conr_cpu::density_weights(&official, &ages).unwrap();
    let b = conr_cpu::density_weights(&derived, &ages).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-12 * x, "{x} vs {y}");
    }
}

#[test]
fn other_scales_follow_the_resolution() {
    let depth = Config::for_labels((0.7, 10.0), 0.1).unwrap();
    assert_eq!(depth.threshold, 0.1);
    let fds = Fds::for_labels((0.7, 10.0), 0.1).unwrap();
    // The bins ⌊y / 0.1⌋ of 0.7 and 10.0 (6 and 100 in floating point) are
    // the first and last buckets.
    use conr_core::fds::groups::clean_bucket;
    assert_eq!(fds.bin_width, 0.1);
    assert_eq!(clean_bucket(&fds, 0.7), 0);
    assert_eq!(clean_bucket(&fds, 10.0), fds.buckets() - 1);
    assert_eq!(clean_bucket(&fds, 9.95), fds.buckets() - 2);
    // Three buckets: the window narrows to fit.
    assert_eq!(Fds::for_labels((0.0, 2.0), 1.0).unwrap().ks, 5);
    for bad in [
        ((1.0, 1.0), 1.0),
        ((0.0, 1.0), 0.0),
        ((0.0, f64::NAN), 1.0),
        ((0.0, 1e12), 1e-6),
    ] {
        assert!(Config::for_labels(bad.0, bad.1).is_err(), "{bad:?}");
        assert!(DensityConfig::for_labels(bad.0, bad.1).is_err(), "{bad:?}");
    }
    assert!(Fds::for_labels((-5.0, 5.0), 1.0).is_err());
}
