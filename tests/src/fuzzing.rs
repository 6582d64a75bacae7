//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, run with
//! `cargo fuzz` on nightly) and of their stable smoke run
//! (`tests/tests/conformance/fuzz_smoke.rs`). Each takes arbitrary bytes and panics only
//! when a written promise breaks.

use conr_core::band::{BandPlan, Side, TilePlan};
use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch, Subsample};
use conr_core::dir::rnc::{FeatureDistance, RankNContrast, RncBatch};
use conr_core::pairs::Pair;
use conr_core::{
    Aggregation, Batch, Config, Engine, FloatEngine, Inputs, LabelMetric, Output, Pushing,
    PushingKind, Reduction, Scalar, Shape,
};
use conr_cpu::{Fast, Reference};
use conr_schema::{DirCase, DirReport, LossCase, WeightsCase};

/// Reads typed values from fuzz bytes; past the end it yields zeros.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A float biased towards the values that break numeric code.
    fn f64(&mut self) -> f64 {
        const SPECIAL: [f64; 16] = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            1e-12,
            1e-300,
            1e30,
            -1e30,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            3.0,
        ];
        let tag = self.u8();
        match tag % 4 {
            0 => SPECIAL[usize::from(tag / 4) % SPECIAL.len()],
            1 => f64::from(self.u8() as i8) / 8.0,
            _ => {
                let mut bits = [0u8; 8];
                bits.iter_mut().for_each(|b| *b = self.u8());
                f64::from_le_bytes(bits)
            }
        }
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.u8()) % choices.len()]
    }
}

fn config(r: &mut Reader<'_>) -> Config {
    Config {
        threshold: r.f64(),
        pred_threshold: if r.bool() { Some(r.f64()) } else { None },
        temperature: r.f64(),
        pushing: Pushing {
            kind: r.pick(&[PushingKind::Exp, PushingKind::Linear, PushingKind::Constant]),
            scale: r.f64(),
        },
        label_metric: r.pick(&[
            LabelMetric::L1,
            LabelMetric::L2,
            LabelMetric::Linf,
            LabelMetric::Angular,
        ]),
        aggregation: r.pick(&[Aggregation::MeanOfLogs, Aggregation::LogOfMean]),
        denominator_padding: r.bool(),
        outer_weight: r.bool(),
        self_in_positive_count: r.bool(),
        reduction: r.pick(&[Reduction::Mean, Reduction::MeanAnchors, Reduction::Sum]),
    }
}

/// The promise of every engine: a valid batch and config give finite outputs
/// of the right lengths, and engines agree on anchors and counts exactly.
fn check_outputs<T: Scalar>(shape: Shape, outputs: &[Output<T>]) {
    for out in outputs {
        assert!(out.loss.is_finite(), "non-finite loss {:?}", out.loss);
        assert_eq!(out.grad_features.len(), shape.rows * shape.dim);
        assert!(
            out.grad_features.iter().all(|g| g.is_finite()),
            "non-finite gradient"
        );
        assert_eq!(out.anchors.len(), shape.rows);
    }
    for pair in outputs.windows(2) {
        assert_eq!(pair[0].anchors, pair[1].anchors);
        assert_eq!(pair[0].positives, pair[1].positives);
        assert_eq!(pair[0].negatives, pair[1].negatives);
    }
}

fn run_engines<T: Scalar>(
    shape: Shape,
    f: &[f64],
    y: &[f64],
    p: &[f64],
    w: Option<&[f64]>,
    config: &Config,
) {
    let cast = |v: &[f64]| -> Vec<T> {
        v.iter()
            .map(|&x| T::from(x).unwrap_or_else(T::nan))
            .collect()
    };
    let (f, y, p) = (cast(f), cast(y), cast(p));
    let w = w.map(cast);
    let inputs = Inputs {
        features: &f,
        labels: &y,
        preds: &p,
        eta: w.as_deref(),
    };
    let Ok(batch) = Batch::new(shape, inputs) else {
        return;
    };
    if let Ok(params) = batch.check(config) {
        check_bands(&batch, &params);
    }
    let reference = Engine::<T>::compute(&Reference, &batch, config);
    let fast = Engine::<T>::compute(&Fast::new().with_plan(TilePlan::Band), &batch, config);
    let dense = Engine::<T>::compute(&Fast::new().with_plan(TilePlan::Dense), &batch, config);
    match (reference, fast, dense) {
        (Ok(a), Ok(b), Ok(c)) => check_outputs(shape, &[a, b, c]),
        (Err(a), Err(b), Err(c)) => {
            assert_eq!(a, b, "engines refuse differently");
            assert_eq!(a, c, "the band and dense plans refuse differently");
        }
        (a, b, c) => panic!(
            "one engine accepts, another refuses: {:?} / {:?} / {:?}",
            a.err(),
            b.err(),
            c.err()
        ),
    }
}

/// The band plan is exact: every positive (negative) pair of the batch lies
/// in the band of columns the plan gives for its row, for blocks of any size.
fn check_bands<T: Scalar>(batch: &Batch<'_, T>, params: &conr_core::Params<T>) {
    let rows = batch.rows();
    for side in [Side::Positives, Side::Negatives] {
        let (mut order, mut keys) = (vec![0u32; rows], vec![T::zero(); rows]);
        let plan = BandPlan::new(batch, params, side, &mut order, &mut keys)
            .expect("scratch of the right length");
        let Some(plan) = plan else { continue };
        let mut position = vec![0usize; rows];
        for (i, &j) in plan.order().iter().enumerate() {
            position[j as usize] = i;
        }
        for block in [1, 3] {
            for start in (0..rows).step_by(block) {
                let cols = plan.columns(start..start + block);
                for &j in &plan.order()[start..(start + block).min(rows)] {
                    let j = j as usize;
                    for (k, at) in position.iter().enumerate() {
                        let pair = Pair::classify(params, batch.row(j), batch.row(k), T::zero());
                        let inside = cols.contains(at);
                        match side {
                            Side::Positives => assert!(!pair.is_positive() || inside),
                            Side::Negatives => assert!(!pair.is_negative() || inside),
                        }
                    }
                }
            }
        }
    }
}

/// Fuzz target (a): the core API on arbitrary shapes, configs and values.
pub fn core_api(data: &[u8]) {
    let mut r = Reader(data);
    let shape = Shape {
        rows: usize::from(r.u8() % 13),
        dim: usize::from(r.u8() % 7),
        label_dim: usize::from(r.u8() % 4),
    };
    let config = config(&mut r);
    let trim = usize::from(r.u8() % 16 == 0);
    let with_weights = r.bool();
    let mut values = |n: usize| -> Vec<f64> { (0..n).map(|_| r.f64()).collect() };
    let mut features = values(shape.rows * shape.dim);
    features.truncate(features.len().saturating_sub(trim));
    let labels = values(shape.rows * shape.label_dim);
    let preds = values(shape.rows * shape.label_dim);
    let weights = if with_weights {
        Some(values(shape.rows))
    } else {
        None
    };
    run_engines::<f64>(
        shape,
        &features,
        &labels,
        &preds,
        weights.as_deref(),
        &config,
    );
    run_engines::<f32>(
        shape,
        &features,
        &labels,
        &preds,
        weights.as_deref(),
        &config,
    );
}

/// Fuzz target (b): the input files of `conr compute` and `conr weights`
/// (the `conr-schema` parser) on arbitrary bytes, then the CPU engines on
/// what parses: an error or a finite result, never a panic.
pub fn cli_input(data: &[u8]) {
    if let Ok(case) = serde_json::from_slice::<LossCase>(data)
        && case.features.len() <= 4096
        && let Ok(config) = case.config.to_config()
    {
        let engines: [&dyn FloatEngine; 2] = [&Reference, &Fast::new()];
        for engine in engines {
            if let Ok(out) = loss_in::<f64>(engine, &case, &config) {
                assert!(out.loss.is_finite());
                assert!(out.grad_features.iter().all(|g| g.is_finite()));
            }
            if let Ok(out) = loss_in::<f32>(engine, &case, &config) {
                assert!(out.loss.is_finite());
                assert!(out.grad_features.iter().all(|g| g.is_finite()));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && text.len() <= 1 << 19
        && let Ok(case) = DirCase::parse(text, std::path::Path::new("fuzz.json"))
    {
        let engines: [&dyn FloatEngine; 2] = [&Reference, &Fast::new()];
        for engine in engines {
            if let Ok(report) = case.run::<f64>(engine) {
                check_report(&report);
            }
            if let Ok(report) = case.run::<f32>(engine) {
                check_report(&report);
            }
        }
    }
    if let Ok(case) = serde_json::from_slice::<WeightsCase>(data)
        && case.labels.len() <= 4096
        && let Ok(config) = case.config.to_config()
        && let Ok(labels) = case.labels()
        && let Ok(weights) = conr_cpu::density_weights(&config, labels)
    {
        assert!(weights.iter().all(|w: &f64| w.is_finite() && *w > 0.0));
    }
}

/// A case in `T` on `engine`.
fn loss_in<T: Scalar>(
    engine: &dyn Engine<T>,
    case: &LossCase,
    config: &Config,
) -> Result<Output<T>, conr_core::Error> {
    let batch = case.converted::<T>()?;
    engine.compute(&batch.batch(), config)
}

/// Every number of a companion loss's report is finite.
fn check_report(report: &DirReport) {
    assert!(report.loss.is_finite(), "non-finite loss {}", report.loss);
    for grad in [&report.grad_features, &report.grad_preds]
        .into_iter()
        .flatten()
    {
        assert!(grad.iter().all(|g| g.is_finite()), "non-finite gradient");
    }
    assert!(report.grad_noise_sigma.is_none_or(f64::is_finite));
}

/// Fuzz target (d): RankSim, Rank-N-Contrast and Balanced MSE on arbitrary
/// shapes, configs and values, on the reference and fast engines in both
/// precisions: never a panic or a non-finite result, and, where every value
/// is at most 1e100 in magnitude, both refuse alike or both give results of
/// the right lengths (RankSim's subsets equal). Nearer the largest float an
/// engine may refuse a batch (its sums overflow) that the other computes.
pub fn companions(data: &[u8]) {
    let mut r = Reader(data);
    let shape = Shape {
        rows: usize::from(r.u8() % 11),
        dim: usize::from(r.u8() % 6),
        label_dim: usize::from(r.u8() % 4),
    };
    let metric = r.pick(&[
        LabelMetric::L1,
        LabelMetric::L2,
        LabelMetric::Linf,
        LabelMetric::Angular,
    ]);
    let rank_sim = RankSim {
        lambda: r.f64(),
        label_metric: metric,
        subsample: r.pick(&[Subsample::OnePerLabel, Subsample::Every]),
        seed: u64::from(r.u8()),
    };
    let rnc = RankNContrast {
        temperature: r.f64(),
        label_metric: metric,
        feature_distance: FeatureDistance::L2,
    };
    let noise_sigma = r.f64();
    let prior_kind = r.u8() % 3;
    let components = usize::from(r.u8() % 4);
    let mut values = |n: usize| -> Vec<f64> { (0..n).map(|_| r.f64()).collect() };
    let features = values(shape.rows * shape.dim);
    let labels = values(shape.rows * shape.label_dim);
    let preds = values(shape.rows * shape.label_dim);
    let rows: Vec<usize> = values(shape.rows / 2)
        .iter()
        .map(|v| (v.abs() * 7.0) as usize % (shape.rows + 1))
        .collect();
    let (a, b, c) = (values(components), values(components), values(components));
    let prior = match prior_kind {
        0 => Prior::Batch,
        1 => Prior::Gmm {
            means: &a,
            variances: &b,
            weights: &c,
        },
        _ => Prior::Buckets {
            centers: &a,
            weights: &b,
        },
    };
    let given = (!rows.is_empty()).then_some(rows.as_slice());
    let bmse = BalancedMse { noise_sigma, prior };
    companions_in::<f64>(
        shape,
        (&features, &labels, &preds),
        given,
        (&rank_sim, &rnc, &bmse),
    );
    companions_in::<f32>(
        shape,
        (&features, &labels, &preds),
        given,
        (&rank_sim, &rnc, &bmse),
    );
}

type Configs<'a> = (&'a RankSim, &'a RankNContrast, &'a BalancedMse<'a>);

fn companions_in<T: Scalar>(
    shape: Shape,
    (f, y, p): (&[f64], &[f64], &[f64]),
    rows: Option<&[usize]>,
    (rank_sim, rnc, bmse): Configs<'_>,
) {
    let moderate = [f, y, p]
        .iter()
        .all(|v| v.iter().all(|x| x.is_nan() || x.abs() <= 1e100));
    let cast = |v: &[f64]| -> Vec<T> {
        v.iter()
            .map(|&x| T::from(x).unwrap_or_else(T::nan))
            .collect()
    };
    let (f, y, p) = (cast(f), cast(y), cast(p));
    let finite = |v: &[T]| v.iter().all(|x| x.is_finite());
    let engines: [&dyn Engine<T>; 2] = [&Reference, &Fast::new()];
    let [a, b] = engines.map(|e| {
        RankSimBatch::new(shape, &f, &y, rows).and_then(|batch| e.rank_sim(&batch, rank_sim))
    });
    match (a, b) {
        (Ok(a), Ok(b)) => {
            for out in [&a, &b] {
                assert!(
                    out.loss.is_finite() && finite(&out.grad_features),
                    "RankSim: non-finite output {out:?} of {shape:?} {f:?} {y:?} {rows:?} {rank_sim:?}"
                );
                assert_eq!(out.grad_features.len(), shape.rows * shape.dim);
            }
            assert_eq!(a.rows, b.rows, "the engines choose different subsets");
        }
        (Err(a), Err(b)) => assert!(!moderate || a == b, "RankSim: refused as {a:?} / {b:?}"),
        (a, b) => assert!(
            !moderate,
            "RankSim: one engine accepts, one refuses: {a:?} / {b:?}"
        ),
    }
    let [a, b] = engines
        .map(|e| RncBatch::new(shape, &f, &y).and_then(|batch| e.rank_n_contrast(&batch, rnc)));
    match (a, b) {
        (Ok(a), Ok(b)) => {
            for out in [&a, &b] {
                assert!(
                    out.loss.is_finite() && finite(&out.grad_features),
                    "RnC: non-finite output {out:?} of {shape:?} {f:?} {y:?} {rnc:?}"
                );
                assert_eq!(out.grad_features.len(), shape.rows * shape.dim);
            }
        }
        (Err(a), Err(b)) => assert!(!moderate || a == b, "RnC: refused as {a:?} / {b:?}"),
        (a, b) => assert!(
            !moderate,
            "RnC: one engine accepts, one refuses: {a:?} / {b:?}"
        ),
    }
    let [a, b] = engines.map(|e| {
        BmseBatch::new(shape.rows, shape.label_dim, &p, &y)
            .and_then(|batch| e.balanced_mse(&batch, bmse))
    });
    match (a, b) {
        (Ok(a), Ok(b)) => {
            for out in [&a, &b] {
                assert!(
                    out.loss.is_finite()
                        && finite(&out.grad_preds)
                        && out.grad_noise_sigma.is_finite(),
                    "Balanced MSE: non-finite output {out:?} of preds {p:?}, labels {y:?}, {bmse:?}"
                );
                assert_eq!(out.grad_preds.len(), shape.rows * shape.label_dim);
            }
        }
        (Err(a), Err(b)) => assert!(
            !moderate || a == b,
            "Balanced MSE: refused as {a:?} / {b:?}"
        ),
        (a, b) => assert!(
            !moderate,
            "Balanced MSE: one engine accepts, one refuses: {a:?} / {b:?}"
        ),
    }
}

/// FDS on arbitrary configs, shapes, labels and features over three
/// epochs, in both precisions, its statistics passes on the core's loop and
/// on the fast engine: never a panic; both passes give the same buffers; and
/// where the config is valid and every value is finite and at most 1e30 in
/// magnitude, every step succeeds and every buffer, output and scale is
/// finite. Returns whether the config was valid (and so the steps ran).
pub fn fds(data: &[u8]) -> bool {
    use conr_core::density::Kernel;
    use conr_core::fds::{Behaviour, Fds};
    let mut r = Reader(data);
    let config = Fds {
        bucket_num: usize::from(r.u8() % 40),
        bucket_start: usize::from(r.u8() % 8),
        start_update: u64::from(r.u8() % 3),
        start_smooth: u64::from(r.u8() % 3),
        kernel: r.pick(&[Kernel::Gaussian, Kernel::Triang, Kernel::Laplace]),
        ks: usize::from(r.u8() % 12),
        sigma: r.f64(),
        momentum: if r.bool() { None } else { Some(r.f64()) },
        behaviour: r.pick(&[Behaviour::Official, Behaviour::Clean]),
        bin_width: r.f64(),
    };
    let dim = usize::from(r.u8() % 5);
    let epochs: Vec<(Vec<f64>, Vec<f64>)> = (0..3)
        .map(|_| {
            let rows = usize::from(r.u8() % 12);
            let features = (0..rows * dim).map(|_| r.f64()).collect();
            let labels = (0..rows).map(|_| f64::from(r.u8() as i8) / 2.0).collect();
            (features, labels)
        })
        .collect();
    fds_in::<f32>(&config, dim, &epochs);
    fds_in::<f64>(&config, dim, &epochs)
}

fn fds_in<T: Scalar>(
    config: &conr_core::fds::Fds,
    dim: usize,
    epochs: &[(Vec<f64>, Vec<f64>)],
) -> bool {
    use conr_core::fds::FdsState;
    let Ok(mut serial) = FdsState::<T>::new(*config, dim) else {
        return false;
    };
    let mut fast = serial.clone();
    let engine = Fast::with_threads(2).expect("a pool of two threads");
    let cast = |v: &[f64]| {
        v.iter()
            .map(|&x| T::from(x).unwrap_or_else(T::nan))
            .collect::<Vec<T>>()
    };
    for (e, (features, labels)) in epochs.iter().enumerate() {
        let e = e as u64;
        let tame = features
            .iter()
            .chain(labels)
            .all(|x| x.is_finite() && x.abs() <= 1e30);
        let (f, l) = (cast(features), cast(labels));
        match serial.smooth(&f, &l, e) {
            Ok(s) => assert!(
                !tame || s.out.iter().chain(&s.scale).all(|x| x.is_finite()),
                "non-finite smoothing of {features:?}"
            ),
            Err(err) => assert!(!tame, "tame features refused: {err}"),
        }
        serial.update_last_epoch_stats(e);
        fast.update_last_epoch_stats(e);
        let a = serial.update_running_stats(&f, &l, e);
        let b = fast.update_running_stats_on(Some(&engine), &f, &l, e);
        assert_eq!(a.is_ok(), b.is_ok());
        assert!(!tame || a.is_ok(), "tame epoch refused: {a:?}");
        // Bit for bit (a NaN the two share is the same NaN).
        let bits = |s: &FdsState<T>| {
            let mut v: Vec<u64> = vec![s.epoch];
            for (_, values) in s.buffers() {
                v.extend(values.iter().map(|x| x.to_f64().unwrap_or(0.0).to_bits()));
            }
            v
        };
        assert_eq!(bits(&serial), bits(&fast));
        if tame {
            for (name, values) in serial.buffers() {
                assert!(values.iter().all(|x| x.is_finite()), "{name} not finite");
            }
        }
    }
    true
}
