//! One bad input for each error the core's rules give (the shape's, the
//! values' and the config's), with the exact [`Error`] the core gives for
//! it. Every entry point is held to refuse each case with that same error:
//! the CPU engines, the GPU engine, the GPU's record path (whose device
//! check reports the value rules), the data-parallel protocol, and the
//! framework ops.

use conr_core::shard::{compute_sharded, even_slices};
use conr_core::{
    Batch, Config, Engine, Error, Inputs, LabelMetric, Output, Pushing, PushingKind, Scalar, Shape,
};

/// A batch that breaks one rule (or several: the first in the core's order
/// wins), and the error it must give.
#[derive(Debug, Clone)]
pub struct BadCase {
    /// What is wrong, for messages.
    pub name: &'static str,
    /// The declared shape.
    pub shape: Shape,
    /// The inputs, as given (lengths may disagree with the shape).
    pub features: Vec<f64>,
    /// Labels.
    pub labels: Vec<f64>,
    /// Predictions.
    pub preds: Vec<f64>,
    /// Pushing powers eta.
    pub eta: Option<Vec<f64>>,
    /// The config.
    pub config: Config,
    /// The error every entry point must give.
    pub error: Error,
}

/// Which of the core's checks a case breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The shape's own rules (`Shape::validate`).
    Shape,
    /// The inputs' lengths against the shape.
    Lengths,
    /// The values' rules (`conr_core::rules`), which a device checks too.
    Values,
    /// The config's domain.
    Config,
}

impl BadCase {
    /// The check the case breaks first.
    pub fn check(&self) -> Check {
        match self.error {
            Error::EmptyBatch | Error::ZeroWidth { .. } => Check::Shape,
            Error::InvalidConfig { field: "shape", .. } => Check::Shape,
            Error::ShapeMismatch { .. } => Check::Lengths,
            Error::InvalidConfig { .. } => Check::Config,
            _ => Check::Values,
        }
    }

    /// The inputs in `T` (rounded once; every value of the table fits in f32).
    pub fn converted<T: Scalar>(&self) -> [Vec<T>; 4] {
        let c = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from(x).unwrap()).collect() };
        [
            c(&self.features),
            c(&self.labels),
            c(&self.preds),
            self.eta.as_deref().map_or_else(Vec::new, c),
        ]
    }

    /// The case's batch in `T` and `run` on it: the core's refusal of the
    /// batch, or `run`'s result.
    pub fn with_batch<T: Scalar, R>(
        &self,
        run: impl FnOnce(&Batch<'_, T>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let [f, y, p, w] = self.converted::<T>();
        let inputs = Inputs {
            features: &f,
            labels: &y,
            preds: &p,
            eta: self.eta.as_ref().map(|_| w.as_slice()),
        };
        run(&Batch::new(self.shape, inputs)?)
    }

    /// The case on `engine` in `T`.
    pub fn compute<T: Scalar>(&self, engine: &dyn Engine<T>) -> Result<Output<T>, Error> {
        self.with_batch(|batch| engine.compute(batch, &self.config))
    }

    /// The case on `engine` as `workers` workers of the data-parallel protocol.
    pub fn sharded<T: Scalar>(
        &self,
        engine: &dyn Engine<T>,
        workers: usize,
    ) -> Result<Output<T>, Error> {
        self.with_batch(|batch| {
            compute_sharded(
                engine,
                batch,
                &self.config,
                &even_slices(batch.rows(), workers),
            )
        })
    }

    /// The case's batch owned in `T`, where the case's lengths fit its
    /// shape (its values may break the value rules: this skips the core's
    /// checks, to hand the values to a path that must check them itself).
    pub fn unchecked<T: Scalar>(&self) -> Option<[Vec<T>; 4]> {
        let [f, y, p, w] = self.converted::<T>();
        let Shape {
            rows,
            dim,
            label_dim,
        } = self.shape;
        let fits = rows.checked_mul(dim) == Some(f.len())
            && rows.checked_mul(label_dim) == Some(y.len())
            && y.len() == p.len()
            && self.eta.as_ref().is_none_or(|_| w.len() == rows);
        fits.then_some([f, y, p, w])
    }
}

const M: usize = 4;
const D: usize = 3;

/// A valid batch: 4 rows of 3 features, scalar labels, eta, the AgeDB preset.
fn base() -> BadCase {
    BadCase {
        name: "valid",
        shape: Shape {
            rows: M,
            dim: D,
            label_dim: 1,
        },
        features: vec![1.0, 0.2, 0.0, 0.9, 0.3, 0.1, 0.1, 1.0, 0.2, 0.2, 0.8, 0.1],
        labels: vec![20.0, 20.5, 60.0, 60.5],
        preds: vec![40.0, 40.2, 40.4, 40.1],
        eta: Some(vec![1.0, 0.5, 2.0, 1.5]),
        config: Config::official_agedb(),
        error: Error::EmptyBatch,
    }
}

/// The valid batch the table's cases are made from.
pub fn valid() -> BadCase {
    base()
}

/// Two-wide labels under `angular`, where a zero vector has no angle.
fn angular() -> BadCase {
    BadCase {
        shape: Shape {
            label_dim: 2,
            ..base().shape
        },
        labels: vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9],
        preds: vec![0.7, 0.7, 0.8, 0.6, 0.6, 0.8, 0.7, 0.7],
        config: Config {
            label_metric: LabelMetric::Angular,
            threshold: 0.3,
            ..Config::official_agedb()
        },
        ..base()
    }
}

/// Every bad case, each with its error.
pub fn cases() -> Vec<BadCase> {
    let b = base();
    let set = |v: &[f64], i: usize, x: f64| {
        let mut v = v.to_vec();
        v[i] = x;
        v
    };
    let eta = |row: usize, x: f64| Some(set(b.eta.as_deref().unwrap(), row, x));
    vec![
        BadCase {
            name: "no rows",
            shape: Shape { rows: 0, ..b.shape },
            features: vec![],
            labels: vec![],
            preds: vec![],
            eta: Some(vec![]),
            error: Error::EmptyBatch,
            ..base()
        },
        BadCase {
            name: "features of width 0",
            shape: Shape { dim: 0, ..b.shape },
            features: vec![],
            error: Error::ZeroWidth { what: "features" },
            ..base()
        },
        BadCase {
            name: "labels of width 0",
            shape: Shape {
                label_dim: 0,
                ..b.shape
            },
            labels: vec![],
            preds: vec![],
            error: Error::ZeroWidth { what: "labels" },
            ..base()
        },
        BadCase {
            name: "a shape whose inputs cannot be addressed",
            shape: Shape {
                rows: usize::MAX / 2,
                ..b.shape
            },
            error: Error::InvalidConfig {
                field: "shape",
                why: "M·D and M·L must fit in a usize",
            },
            ..base()
        },
        BadCase {
            name: "three labels for four rows",
            labels: b.labels[..3].to_vec(),
            error: Error::ShapeMismatch {
                what: "labels",
                expected: M,
                got: 3,
            },
            ..base()
        },
        BadCase {
            name: "a NaN feature",
            features: set(&b.features, 2 * D + 1, f64::NAN),
            error: Error::NonFinite {
                what: "features",
                row: 2,
            },
            ..base()
        },
        BadCase {
            name: "NaN features in two rows",
            features: set(&set(&b.features, 3 * D, f64::NAN), D + 2, f64::NAN),
            error: Error::NonFinite {
                what: "features",
                row: 1,
            },
            ..base()
        },
        BadCase {
            name: "an infinite label",
            labels: set(&b.labels, 1, f64::INFINITY),
            error: Error::NonFinite {
                what: "labels",
                row: 1,
            },
            ..base()
        },
        BadCase {
            name: "a NaN prediction",
            preds: set(&b.preds, 3, f64::NAN),
            error: Error::NonFinite {
                what: "preds",
                row: 3,
            },
            ..base()
        },
        BadCase {
            name: "an infinite eta",
            eta: eta(0, f64::NEG_INFINITY),
            error: Error::NonFinite {
                what: "weights",
                row: 0,
            },
            ..base()
        },
        BadCase {
            name: "a zero eta",
            eta: eta(1, 0.0),
            error: Error::NonPositiveEta { row: 1 },
            ..base()
        },
        BadCase {
            name: "a negative eta",
            eta: eta(2, -0.5),
            error: Error::NonPositiveEta { row: 2 },
            ..base()
        },
        BadCase {
            name: "an eta above 1e6",
            eta: eta(3, 2e6),
            error: Error::EtaTooLarge { row: 3 },
            ..base()
        },
        BadCase {
            name: "a negative eta and a later NaN feature: features come first",
            features: set(&b.features, 3 * D, f64::NAN),
            eta: eta(0, -1.0),
            error: Error::NonFinite {
                what: "features",
                row: 3,
            },
            ..base()
        },
        BadCase {
            name: "a zero label vector under angular",
            labels: set(&set(&angular().labels, 4, 0.0), 5, 0.0),
            error: Error::ZeroLengthLabel {
                what: "labels",
                row: 2,
            },
            ..angular()
        },
        BadCase {
            name: "a zero prediction vector under angular",
            preds: set(&set(&angular().preds, 2, -0.0), 3, 0.0),
            error: Error::ZeroLengthLabel {
                what: "preds",
                row: 1,
            },
            ..angular()
        },
        BadCase {
            name: "a temperature of 0",
            config: Config {
                temperature: 0.0,
                ..b.config
            },
            error: Error::InvalidConfig {
                field: "temperature",
                why: "must be finite and > 0",
            },
            ..base()
        },
        BadCase {
            name: "a NaN threshold",
            config: Config {
                threshold: f64::NAN,
                ..b.config
            },
            error: Error::InvalidConfig {
                field: "threshold",
                why: "must be >= 0 (NaN is not allowed)",
            },
            ..base()
        },
        BadCase {
            name: "a negative scale of linear pushing",
            config: Config {
                pushing: Pushing {
                    kind: PushingKind::Linear,
                    scale: -1.0,
                },
                ..b.config
            },
            error: Error::InvalidConfig {
                field: "pushing.scale",
                why: "linear pushing needs a scale >= 0, or weights turn negative",
            },
            ..base()
        },
    ]
}

/// The name of an error's variant.
pub fn variant(error: &Error) -> &'static str {
    match error {
        Error::EmptyBatch => "EmptyBatch",
        Error::ZeroWidth { .. } => "ZeroWidth",
        Error::ShapeMismatch { .. } => "ShapeMismatch",
        Error::NonFinite { .. } => "NonFinite",
        Error::NonPositiveEta { .. } => "NonPositiveEta",
        Error::EtaTooLarge { .. } => "EtaTooLarge",
        Error::ZeroLengthLabel { .. } => "ZeroLengthLabel",
        Error::InvalidConfig { .. } => "InvalidConfig",
        Error::UnknownName { .. } => "UnknownName",
        Error::BufferTooSmall { .. } => "BufferTooSmall",
        Error::TooLarge { .. } => "TooLarge",
        Error::BadBuffer { .. } => "BadBuffer",
        Error::Unsupported { .. } => "Unsupported",
        Error::Unavailable(_) => "Unavailable",
        Error::OutOfMemory(_) => "OutOfMemory",
        Error::DeviceLost(_) => "DeviceLost",
        Error::Device(_) => "Device",
        _ => "another variant",
    }
}

/// The variants a batch and a config can give, which the table covers.
pub const BATCH_VARIANTS: [&str; 8] = [
    "EmptyBatch",
    "ZeroWidth",
    "ShapeMismatch",
    "NonFinite",
    "NonPositiveEta",
    "EtaTooLarge",
    "ZeroLengthLabel",
    "InvalidConfig",
];

/// Checks that `got` is the case's error, with a message that names both.
pub fn expect<T: std::fmt::Debug>(
    case: &BadCase,
    path: &str,
    got: Result<T, Error>,
) -> Result<(), String> {
    match got {
        Err(e) if e == case.error => Ok(()),
        other => Err(format!(
            "{path}, {}: got {other:?}, want Err({:?})",
            case.name, case.error
        )),
    }
}
