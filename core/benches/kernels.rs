//! The core's hot kernels, one row of 4096 pairs at a time: pair
//! classification, the streaming statistics, the gradient coefficients, and
//! normalisation. Run with `cargo bench -p conr-core`.

use std::hint::black_box;

use conr_core::normalize::normalize;
use conr_core::pairs::{Pair, RowView};
use conr_core::stats::RowStats;
use conr_core::{Config, Scalar};
use criterion::{Criterion, criterion_group, criterion_main};

const M: usize = 4096;

/// AgeDB-like ages and predictions on a fixed pattern.
fn row_data<T: Scalar>() -> (Vec<T>, Vec<T>, Vec<T>) {
    let labels: Vec<T> = (0..M).map(|i| T::from((i * 37) % 101).unwrap()).collect();
    let preds: Vec<T> = (0..M)
        .map(|i| T::from(30.0 + ((i * 13) % 29) as f64).unwrap())
        .collect();
    let logits: Vec<T> = (0..M)
        .map(|i| T::from(((i * 7919) % 200) as f64 / 14.0 - 7.0).unwrap())
        .collect();
    (labels, preds, logits)
}

fn kernels<T: Scalar>(c: &mut Criterion, name: &str) {
    let params = Config::official_agedb().params::<T>().unwrap();
    let (labels, preds, logits) = row_data::<T>();
    let view = |k: usize| RowView {
        index: k,
        label: &labels[k..k + 1],
        pred: &preds[k..k + 1],
    };
    let pairs: Vec<Pair<T>> = (0..M)
        .map(|k| Pair::classify(&params, view(0), view(k), T::zero()))
        .collect();

    c.bench_function(&format!("{name}/classify_row"), |b| {
        b.iter(|| {
            (0..M)
                .filter(|&k| {
                    Pair::classify(&params, view(0), black_box(view(k)), T::zero()) != Pair::Neither
                })
                .count()
        })
    });
    c.bench_function(&format!("{name}/row_stats_push"), |b| {
        b.iter(|| {
            let mut stats = RowStats::default();
            for (&p, &s) in pairs.iter().zip(&logits) {
                stats.push(p, black_box(s));
            }
            stats
        })
    });
    let mut stats = RowStats::default();
    pairs
        .iter()
        .zip(&logits)
        .for_each(|(&p, &s)| stats.push(p, s));
    let grad = stats.finish(&params, M, T::one()).gradient(T::one());
    c.bench_function(&format!("{name}/gradient_coefficients"), |b| {
        b.iter(|| {
            pairs.iter().zip(&logits).fold(T::zero(), |acc, (&p, &s)| {
                acc + grad.coefficient(p, black_box(s))
            })
        })
    });
    let f: Vec<T> = (0..512)
        .map(|i| T::from(i as f64 * 0.01 - 2.0).unwrap())
        .collect();
    let mut z = vec![T::zero(); 512];
    c.bench_function(&format!("{name}/normalize_512"), |b| {
        b.iter(|| normalize(black_box(&f), &mut z))
    });
}

fn all(c: &mut Criterion) {
    kernels::<f32>(c, "f32");
    kernels::<f64>(c, "f64");
}

criterion_group!(benches, all);
criterion_main!(benches);
