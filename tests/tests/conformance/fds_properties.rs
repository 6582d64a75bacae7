//! FDS on arbitrary shapes, buckets and labels: no panic, finite outputs;
//! a bucket whose smoothed statistics are its own is left as it is; the clean
//! behaviour does not depend on the order of the rows; the fast engine's
//! pass is the serial one, on any number of threads.

use conr_core::Engine;
use conr_core::density::Kernel;
use conr_core::fds::calibrate::{Calibration, smooth};
use conr_core::fds::groups::{assign, keys, keys_len};
use conr_core::fds::moments::{Pass, Rows, accumulate, count, shifts};
use conr_core::fds::{Behaviour, Fds, FdsState};
use conr_cpu::Fast;
use proptest::prelude::*;

fn config() -> impl Strategy<Value = Fds> {
    (
        1usize..30,
        0usize..5,
        0u64..2,
        prop_oneof![
            Just(Kernel::Gaussian),
            Just(Kernel::Triang),
            Just(Kernel::Laplace)
        ],
        0usize..4,
        0.3f64..4.0,
        prop_oneof![Just(None), (0.0f64..0.99).prop_map(Some)],
        prop_oneof![Just(Behaviour::Official), Just(Behaviour::Clean)],
        0.2f64..3.0,
    )
        .prop_map(
            |(
                buckets,
                start,
                start_update,
                kernel,
                half,
                sigma,
                momentum,
                behaviour,
                bin_width,
            )| Fds {
                bucket_num: start + buckets,
                bucket_start: start,
                start_update,
                start_smooth: start_update + 1,
                kernel,
                ks: 2 * half.min(buckets - 1) + 1,
                sigma,
                momentum,
                behaviour,
                bin_width,
            },
        )
}

/// Labels: integers around the buckets, and some halves.
fn labels(rows: usize, top: usize) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec((-3i32..(top as i32 + 4), any::<bool>()), rows).prop_map(|v| {
        v.into_iter()
            .map(|(y, half)| y as f64 + if half { 0.5 } else { 0.0 })
            .collect()
    })
}

/// An epoch's features and labels.
type Epoch = (Vec<f64>, Vec<f64>);

/// A config, a feature width, and three epochs of features and labels.
fn case() -> impl Strategy<Value = (Fds, usize, Vec<Epoch>)> {
    (config(), 1usize..5, 1usize..40).prop_flat_map(|(config, dim, rows)| {
        let epoch = (
            proptest::collection::vec(-1.0f64..1.0, rows * dim),
            labels(rows, config.bucket_num),
        );
        (Just(config), Just(dim), proptest::collection::vec(epoch, 3))
    })
}

fn epochs(config: &Fds, dim: usize, data: &[Epoch]) -> FdsState<f64> {
    let mut state = FdsState::new(*config, dim).unwrap();
    for (e, (features, labels)) in data.iter().enumerate() {
        let e = e as u64 + config.start_update;
        let smoothed = state.smooth(features, labels, e).unwrap();
        assert!(
            smoothed
                .out
                .iter()
                .chain(&smoothed.scale)
                .all(|x| x.is_finite())
        );
        state.update_last_epoch_stats(e);
        state.update_running_stats(features, labels, e).unwrap();
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_finite_input_gives_finite_buffers(
        (config, dim, data) in case(),
        scale in prop_oneof![Just(1e-6), Just(1.0), Just(1e6)],
    ) {
        let data: Vec<_> = data
            .into_iter()
            .map(|(f, l)| (f.into_iter().map(|x| x * scale).collect(), l))
            .collect();
        let state = epochs(&config, dim, &data);
        for (name, values) in state.buffers() {
            prop_assert!(values.iter().all(|x| x.is_finite()), "{name}");
        }
    }

    #[test]
    fn a_bucket_smoothed_to_its_own_statistics_is_left_as_it_is(
        dim in 1usize..6,
        features in proptest::collection::vec(-50.0f64..50.0, 6),
        mean in proptest::collection::vec(-5.0f64..5.0, 6),
        var in proptest::collection::vec(0.0f64..4.0, 6),
    ) {
        let config = Fds { bucket_num: 4, bucket_start: 0, ks: 3, ..Fds::default() };
        let (mean, var) = (&mean[..dim], &var[..dim]);
        let tiled = |v: &[f64]| v.iter().copied().cycle().take(4 * dim).collect::<Vec<_>>();
        let (m, v) = (tiled(mean), tiled(var));
        let stats = Calibration { mean: &m, var: &v, smoothed_mean: &m, smoothed_var: &v };
        let x = &features[..dim];
        let labels = [2.0];
        let mut k = [0.0];
        let n = keys(&config, &labels, &mut k).unwrap();
        let mut of_row = [0u32];
        assign(&config, &k[..n], &labels, &mut of_row).unwrap();
        let (mut out, mut s) = (vec![0.0; dim], vec![0.0; dim]);
        smooth(&config, &stats, &k[..n], &of_row, x, &mut out, &mut s).unwrap();
        for d in 0..dim {
            prop_assert_eq!(s[d], 1.0);
            prop_assert!((out[d] - x[d]).abs() <= 1e-12 * (x[d].abs() + mean[d].abs()));
        }
    }

    #[test]
    fn the_clean_behaviour_ignores_the_order_of_rows(
        (config, dim, data) in case(),
        perm_seed in any::<u64>(),
    ) {
        let config = Fds { behaviour: Behaviour::Clean, ..config };
        let (features, labels) = &data[0];
        let rows = labels.len();
        // A permutation from the seed.
        let mut order: Vec<usize> = (0..rows).collect();
        let mut s = perm_seed | 1;
        for i in (1..rows).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let shuffled_labels: Vec<f64> = order.iter().map(|&i| labels[i]).collect();
        let shuffled: Vec<f64> =
            order.iter().flat_map(|&i| features[i * dim..(i + 1) * dim].to_vec()).collect();
        let a = epochs(&config, dim, &vec![(features.clone(), labels.clone()); 3]);
        let b = epochs(&config, dim, &vec![(shuffled, shuffled_labels); 3]);
        for ((name, x), (_, y)) in a.buffers().iter().zip(b.buffers().iter()) {
            for (p, q) in x.iter().zip(y.iter()) {
                prop_assert!((p - q).abs() <= 1e-12 * p.abs().max(1.0), "{name}: {p} vs {q}");
            }
        }
    }
}

#[test]
fn the_fast_pass_is_the_serial_one_on_any_threads() {
    let config = Fds {
        bucket_num: 40,
        bucket_start: 0,
        ..Fds::default()
    };
    // 7 columns: fewer than one of the fast engine's register blocks; 37:
    // two blocks and a tail. 20,000 rows: several chunks, each of several
    // windows.
    for dim in [7, 37] {
        let rows = 20_000;
        let labels: Vec<f32> = (0..rows).map(|i| ((i * 7919) % 45) as f32).collect();
        let features: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 97.0)
            .collect();
        let mut k = vec![0.0f32; keys_len(&config, rows)];
        let n = keys(&config, &labels, &mut k).unwrap();
        let mut of_row = vec![0u32; rows];
        assign(&config, &k[..n], &labels, &mut of_row).unwrap();
        let batch = Rows::new(&features, dim, &of_row, n).unwrap();
        let mut c = vec![0.0; batch.out_len()];
        shifts(&batch, &mut c).unwrap();
        let mut means = vec![0.0; batch.out_len()];
        accumulate(&batch, Pass::Sums, &mut means).unwrap();
        let mut counts = vec![0.0; n];
        count(&batch, &mut counts).unwrap();
        conr_core::fds::moments::means(&mut means, &counts);
        for pass in [
            Pass::Sums,
            Pass::Squares { means: &means },
            Pass::Shifted { shifts: &c },
        ] {
            let mut serial = vec![0.0; pass.out_len(&batch)];
            accumulate(&batch, pass, &mut serial).unwrap();
            let mut results = Vec::new();
            for threads in [1, 2, 3] {
                let fast = Fast::with_threads(threads).unwrap();
                let mut out = vec![0.0; pass.out_len(&batch)];
                Engine::<f32>::fds_pass(&fast, &batch, pass, &mut out).unwrap();
                results.push(out);
            }
            assert_eq!(results[0], results[1]);
            assert_eq!(results[0], results[2]);
            for (a, b) in results[0].iter().zip(&serial) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "{dim} columns, {pass:?}: {a} vs {b}"
                );
            }
        }
    }
}
