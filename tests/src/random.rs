//! Random batches and configs for the property tests: sizes first, then data
//! (`prop_flat_map`), with labels on a coarse grid so that every batch has
//! positives, negatives and anchors, and distances sit exactly on or off the
//! thresholds in f32 and f64 alike.

use conr_core::{
    Aggregation, Batch, Config, Inputs, LabelMetric, OwnedBatch, Pushing, PushingKind, Reduction,
    Scalar, Shape,
};
use proptest::prelude::*;

/// A batch that owns its data, with a config.
#[derive(Debug, Clone)]
pub struct RandomBatch {
    /// The sizes.
    pub shape: Shape,
    /// M·D features.
    pub features: Vec<f64>,
    /// M·L labels (positive integers, so no label vector is zero).
    pub labels: Vec<f64>,
    /// M·L predictions: labels plus a multiple of 0.25 in [−0.75, 0.75].
    pub preds: Vec<f64>,
    /// Optional pushing powers eta in [0.2, 3].
    pub eta: Option<Vec<f64>>,
    /// The config.
    pub config: Config,
}

impl RandomBatch {
    /// The inputs, by name.
    pub fn inputs(&self) -> Inputs<'_, f64> {
        Inputs {
            features: &self.features,
            labels: &self.labels,
            preds: &self.preds,
            eta: self.eta.as_deref(),
        }
    }

    /// The batch in f64.
    pub fn batch(&self) -> Batch<'_, f64> {
        Batch::new(self.shape, self.inputs()).expect("random batches are valid")
    }

    /// Whether some label or prediction distance lies within `margin` of its
    /// threshold. Precisions and backends may then classify that pair
    /// differently (an f32 angle near ω can round either way), so the
    /// cross-precision properties hold away from such ties.
    pub fn has_near_ties(&self, margin: f64) -> bool {
        let (m, l) = (self.shape.rows, self.shape.label_dim);
        let metric = self.config.label_metric;
        let omega = self.config.threshold;
        let omega_hat = self.config.effective_pred_threshold();
        let row = |v: &[f64], j: usize| v[j * l..(j + 1) * l].to_vec();
        (0..m).any(|j| {
            (0..j).any(|k| {
                let dy = conr_core::metric::distance(
                    metric,
                    &row(&self.labels, j),
                    &row(&self.labels, k),
                );
                let dp =
                    conr_core::metric::distance(metric, &row(&self.preds, j), &row(&self.preds, k));
                (dy - omega).abs() < margin || (dp - omega_hat).abs() < margin
            })
        })
    }

    /// Whether every feature row is longer than `floor`. Near the origin the
    /// gradient grows as 1/|f| and f32 rounding with it, without bound.
    pub fn row_norms_above(&self, floor: f64) -> bool {
        self.features
            .chunks_exact(self.shape.dim)
            .all(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt() > floor)
    }

    /// The batch in precision `T`.
    pub fn convert<T: Scalar>(&self) -> OwnedBatch<T> {
        OwnedBatch::converted(&self.batch()).expect("random batches fit in f32")
    }
}

/// Any config: every knob, τ in [0.05, 2].
pub fn any_config() -> impl Strategy<Value = Config> {
    let knobs = (
        prop::sample::select(vec![0.5, 1.0, 2.0, 3.0]),
        prop::option::of(prop::sample::select(vec![0.25, 0.5, 1.0, 2.5])),
        0.05f64..2.0,
        prop::sample::select(vec![
            PushingKind::Exp,
            PushingKind::Linear,
            PushingKind::Constant,
        ]),
        0.0f64..0.5,
        prop::sample::select(vec![
            LabelMetric::L1,
            LabelMetric::L2,
            LabelMetric::Linf,
            LabelMetric::Angular,
        ]),
    );
    let switches = (
        prop::sample::select(vec![Aggregation::MeanOfLogs, Aggregation::LogOfMean]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![
            Reduction::Mean,
            Reduction::MeanAnchors,
            Reduction::Sum,
        ]),
    );
    (knobs, switches).prop_map(
        |(
            (threshold, pred_threshold, temperature, kind, scale, metric),
            (aggregation, pad, outer, selfc, reduction),
        )| {
            // Angles live in [0, π]: use thresholds on that scale.
            let (threshold, pred_threshold) = if metric == LabelMetric::Angular {
                (threshold * 0.2, pred_threshold.map(|p| p * 0.2))
            } else {
                (threshold, pred_threshold)
            };
            Config {
                threshold,
                pred_threshold,
                temperature,
                pushing: Pushing { kind, scale },
                label_metric: metric,
                aggregation,
                denominator_padding: pad,
                outer_weight: outer,
                self_in_positive_count: selfc,
                reduction,
            }
        },
    )
}

/// Random batches of 2..=`max_rows` rows and 1..=`max_dim` features, label
/// width 1..=3, with `config`.
pub fn batch_with(
    max_rows: usize,
    max_dim: usize,
    config: impl Strategy<Value = Config>,
) -> impl Strategy<Value = RandomBatch> {
    (2..=max_rows, 1..=max_dim, 1usize..=3, config).prop_flat_map(
        |(rows, dim, label_dim, config)| {
            let n = rows * label_dim;
            (
                prop::collection::vec(-1.0f64..1.0, rows * dim),
                prop::collection::vec(1u8..=8, n),
                prop::collection::vec(-3i8..=3, n),
                prop::option::of(prop::collection::vec(0.2f64..3.0, rows)),
            )
                .prop_map(move |(features, labels, noise, eta)| {
                    let labels: Vec<f64> = labels.into_iter().map(f64::from).collect();
                    let preds = labels
                        .iter()
                        .zip(&noise)
                        .map(|(y, &e)| y + 0.25 * f64::from(e))
                        .collect();
                    RandomBatch {
                        shape: Shape {
                            rows,
                            dim,
                            label_dim,
                        },
                        features,
                        labels,
                        preds,
                        eta,
                        config,
                    }
                })
        },
    )
}

/// A deterministic AgeDB-like batch: ages spread over 20–80, predictions a
/// few years off, and features of `dim` columns with no zero row. Its band
/// visits a fraction of the tiles at M = 1024.
pub fn agedb_like<T: Scalar>(rows: usize, dim: usize) -> OwnedBatch<T> {
    let value = |x: f64| T::from(x).expect("small values fit");
    let labels: Vec<T> = (0..rows)
        .map(|j| value((20 + (j * 37) % 61) as f64))
        .collect();
    let preds = (0..rows)
        .map(|j| value((20 + (j * 37) % 61) as f64 + ((j * 13) % 15) as f64 - 7.0))
        .collect();
    let features = (0..rows * dim)
        .map(|i| value(((i * 7919) % 97) as f64 / 48.0 - 1.0))
        .collect();
    let shape = Shape {
        rows,
        dim,
        label_dim: 1,
    };
    OwnedBatch::new(shape, features, labels, preds, None).expect("a valid batch")
}

/// Random batches with any config.
pub fn any_batch(max_rows: usize, max_dim: usize) -> impl Strategy<Value = RandomBatch> {
    batch_with(max_rows, max_dim, any_config())
}

/// Batches chosen to break a band planner: label and prediction distances
/// exactly at ω and ω̂ (grids of step ω and ω̂), ω = 0, every label equal
/// (every pair positive), predictions far from the labels, labels of ±1e30,
/// two- and three-wide labels under every metric, rows in no particular
/// order, and duplicated rows.
pub fn band_breaker(max_rows: usize, max_dim: usize) -> impl Strategy<Value = RandomBatch> {
    let knobs = (
        2..=max_rows,
        1..=max_dim,
        1usize..=3,
        any_config(),
        0u8..6,
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0]),
    );
    knobs.prop_flat_map(|(rows, dim, label_dim, config, kind, omega)| {
        let n = rows * label_dim;
        (
            prop::collection::vec(-1.0f64..1.0, rows * dim),
            prop::collection::vec(-4i32..=4, n),
            prop::collection::vec(-4i32..=4, n),
            prop::option::of(prop::collection::vec(0.2f64..3.0, rows)),
            prop::collection::vec(0..rows, rows / 3),
        )
            .prop_map(move |(mut features, steps, noise, eta, copies)| {
                let mut config = config;
                if config.label_metric != LabelMetric::Angular {
                    config.threshold = omega;
                    config.pred_threshold = Some(omega * 0.5);
                }
                let (w, w_hat) = (config.threshold, config.effective_pred_threshold());
                // Grid steps of ω (or 1 when ω = 0) put distances exactly on the thresholds.
                let step = if w > 0.0 { w } else { 1.0 };
                let step_hat = if w_hat > 0.0 { w_hat } else { 1.0 };
                let (labels, preds): (Vec<f64>, Vec<f64>) = steps
                    .iter()
                    .zip(&noise)
                    .map(|(&s, &e)| {
                        // Angular labels must not be zero vectors.
                        let y = 10.0 + step * f64::from(s);
                        match kind {
                            // Every label equal: every pair is a positive.
                            0 => (7.0, 7.0 + step_hat * f64::from(e)),
                            // Predictions far from the labels.
                            1 => (y, y + 1000.0 * f64::from(e)),
                            // Labels of ±1e30.
                            2 => {
                                let big = if s < 0 { -1e30 } else { 1e30 };
                                (big + 1e15 * f64::from(s), big + 1e15 * f64::from(e))
                            }
                            // Predictions on the ω̂ grid next to the labels.
                            _ => (y, y + step_hat * f64::from(e)),
                        }
                    })
                    .unzip();
                let (mut labels, mut preds) = (labels, preds);
                // Duplicated rows: copy row `from` over row `to` (features, labels, predictions).
                for (to, &from) in copies.iter().enumerate() {
                    let to = (to * 7 + 1) % rows;
                    for i in 0..dim {
                        features[to * dim + i] = features[from * dim + i];
                    }
                    for i in 0..label_dim {
                        labels[to * label_dim + i] = labels[from * label_dim + i];
                        preds[to * label_dim + i] = preds[from * label_dim + i];
                    }
                }
                RandomBatch {
                    shape: Shape {
                        rows,
                        dim,
                        label_dim,
                    },
                    features,
                    labels,
                    preds,
                    eta: eta.clone(),
                    config,
                }
            })
    })
}
