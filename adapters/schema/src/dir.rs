//! The `dir-fixture/1` cases: one batch of one of the losses ConR is combined
//! with (`loss`: `ranksim`, `rnc` or `balanced_mse`), its config, and the
//! object `conr compute` prints for it.

use conr_core::dir::balanced_mse::{BalancedMse, BmseBatch, Prior};
use conr_core::dir::ranksim::{RankSim, RankSimBatch};
use conr_core::dir::rnc::{RankNContrast, RncBatch};
use conr_core::dir::{BalancedMseOutput, RankSimOutput, RncOutput};
use conr_core::{Named, Precision, Shape};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

use crate::Error;
use crate::config::knobs_from;

/// An input file of `conr compute`: a ConR case or a companion case.
#[derive(Debug, Clone)]
pub enum Input {
    /// A `conr-fixture/1` case.
    Conr(Box<crate::LossCase>),
    /// A `dir-fixture/1` case.
    Dir(Box<DirCase>),
    /// An `fds-fixture/1` case.
    Fds(Box<crate::FdsCase>),
}

impl Input {
    /// Reads a file and parses it by its `schema` (or, without one, by
    /// whether it has a `loss` key).
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = crate::case::read_text(path)?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if crate::FdsCase::is_fds(&value) {
            let case = serde_json::from_value(value).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })?;
            return Ok(Self::Fds(Box::new(case)));
        }
        if DirCase::is_dir(&value) {
            return Ok(Self::Dir(Box::new(DirCase::parse(&text, path)?)));
        }
        let case = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::Conr(Box::new(case)))
    }
}

/// The schema name of these cases.
pub const DIR_SCHEMA: &str = "dir-fixture/1";

/// One case of a companion loss, by its `loss` key.
#[derive(Debug, Clone)]
pub enum DirCase {
    /// `loss: "ranksim"`.
    RankSim(RankSimCase),
    /// `loss: "rnc"`.
    Rnc(RncCase),
    /// `loss: "balanced_mse"`.
    BalancedMse(BmseCase),
}

/// The names of the `loss` key.
pub const LOSSES: &[&str] = &["ranksim", "rnc", "balanced_mse"];

impl DirCase {
    /// Whether a parsed JSON object is a `dir-fixture/1` case (by its
    /// `schema`, or, without one, by a `loss` key).
    pub fn is_dir(value: &Value) -> bool {
        match value.get("schema").and_then(Value::as_str) {
            Some(schema) => schema == DIR_SCHEMA,
            None => value.get("loss").is_some(),
        }
    }

    /// The case in `text` (read from `path`), by its `loss` key; unknown
    /// keys are errors, reported with their line.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let json = |source| Error::Json {
            path: path.to_path_buf(),
            source,
        };
        let value: Value = serde_json::from_str(text).map_err(json)?;
        let loss = value
            .get("loss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(match loss {
            "ranksim" => Self::RankSim(serde_json::from_str(text).map_err(json)?),
            "rnc" => Self::Rnc(serde_json::from_str(text).map_err(json)?),
            "balanced_mse" => Self::BalancedMse(serde_json::from_str(text).map_err(json)?),
            other => {
                return Err(Error::Name {
                    key: "loss".into(),
                    value: other.to_string(),
                    source: conr_core::Error::UnknownName {
                        field: "loss",
                        expected: LOSSES,
                    },
                });
            }
        })
    }

    /// Reads and parses a case file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        Self::parse(&crate::case::read_text(path)?, path)
    }

    /// Runs the case on `engine` in `T` (its values rounded once) and
    /// reports the loss and gradients, widened to f64, under the fixture's
    /// field names.
    pub fn run<T: conr_core::Scalar>(
        &self,
        engine: &dyn conr_core::Engine<T>,
    ) -> Result<DirReport, Error> {
        let (name, precision) = (engine.name(), engine.precision());
        Ok(match self {
            Self::RankSim(c) => {
                let config = c.config()?;
                let (f, l) = (convert::<T>(&c.features), convert::<T>(&c.labels));
                let out = engine.rank_sim(&c.batch(&f, &l)?, &config)?;
                DirReport::rank_sim(out, name, precision)
            }
            Self::Rnc(c) => {
                let config = c.config()?;
                let (f, l) = (convert::<T>(&c.features), convert::<T>(&c.labels));
                let out = engine.rank_n_contrast(&c.batch(&f, &l)?, &config)?;
                DirReport::rnc(out, name, precision)
            }
            Self::BalancedMse(c) => {
                let config = c.config()?;
                let (p, l) = (convert::<T>(&c.preds), convert::<T>(&c.labels));
                let out = engine.balanced_mse(&c.batch(&p, &l)?, &config)?;
                DirReport::balanced_mse(out, name, precision)
            }
        })
    }

    /// The fixture's `expected` object, if any.
    pub fn expected(&self) -> Option<&Value> {
        match self {
            Self::RankSim(c) => c.expected.as_ref(),
            Self::Rnc(c) => c.expected.as_ref(),
            Self::BalancedMse(c) => c.expected.as_ref(),
        }
    }
}

fn one() -> usize {
    1
}

/// A RankSim case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankSimCase {
    /// `"dir-fixture/1"` when present.
    #[serde(default)]
    pub schema: Option<String>,
    /// `"ranksim"`.
    pub loss: String,
    /// The fixture family, informational.
    #[serde(default)]
    pub variant: Option<String>,
    /// n, the rows.
    pub n: usize,
    /// D, the feature width.
    pub d: usize,
    /// L, the label width (default 1).
    #[serde(default = "one")]
    pub label_dim: usize,
    /// The config.
    #[serde(default)]
    pub config: RankSimJson,
    /// n·D features.
    pub features: Vec<f64>,
    /// n·L labels.
    pub labels: Vec<f64>,
    /// The subset's rows, given; `null` or absent lets the config choose.
    #[serde(default)]
    pub sampled_rows: Option<Vec<usize>>,
    /// The fixture's expected results.
    #[serde(default)]
    pub expected: Option<Value>,
    /// The reference's own (float32-ranked) results, informational.
    #[serde(default)]
    pub official: Option<Value>,
}

/// RankSim's `config` object: any of [`RankSim`]'s knobs, by their names;
/// missing ones take [`RankSim::default`]'s values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RankSimJson(pub serde_json::Map<String, Value>);

impl RankSimCase {
    /// The config, validated.
    pub fn config(&self) -> Result<RankSim, Error> {
        knobs_from(&self.config.0)
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        Shape {
            rows: self.n,
            dim: self.d,
            label_dim: self.label_dim,
        }
    }

    /// The validated batch over `features` and `labels` (the case's values in `T`, see [`convert`]).
    pub fn batch<'a, T: conr_core::Scalar>(
        &'a self,
        features: &'a [T],
        labels: &'a [T],
    ) -> Result<RankSimBatch<'a, T>, conr_core::Error> {
        RankSimBatch::new(self.shape(), features, labels, self.sampled_rows.as_deref())
    }
}

/// A Rank-N-Contrast case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RncCase {
    /// `"dir-fixture/1"` when present.
    #[serde(default)]
    pub schema: Option<String>,
    /// `"rnc"`.
    pub loss: String,
    /// The fixture family, informational.
    #[serde(default)]
    pub variant: Option<String>,
    /// n, the rows.
    pub n: usize,
    /// D, the feature width.
    pub d: usize,
    /// L, the label width (default 1).
    #[serde(default = "one")]
    pub label_dim: usize,
    /// The config.
    #[serde(default)]
    pub config: RncJson,
    /// n·D features.
    pub features: Vec<f64>,
    /// n·L labels.
    pub labels: Vec<f64>,
    /// The fixture's expected results.
    #[serde(default)]
    pub expected: Option<Value>,
}

/// Rank-N-Contrast's `config` object: any of [`RankNContrast`]'s knobs, by
/// their names; missing ones take the reference's defaults
/// ([`RankNContrast::default`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RncJson(pub serde_json::Map<String, Value>);

impl RncCase {
    /// The config, validated.
    pub fn config(&self) -> Result<RankNContrast, Error> {
        knobs_from(&self.config.0)
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        Shape {
            rows: self.n,
            dim: self.d,
            label_dim: self.label_dim,
        }
    }

    /// The validated batch over `features` and `labels` (the case's values in `T`).
    pub fn batch<'a, T: conr_core::Scalar>(
        &self,
        features: &'a [T],
        labels: &'a [T],
    ) -> Result<RncBatch<'a, T>, conr_core::Error> {
        RncBatch::new(self.shape(), features, labels)
    }
}

/// A Balanced MSE case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmseCase {
    /// `"dir-fixture/1"` when present.
    #[serde(default)]
    pub schema: Option<String>,
    /// `"balanced_mse"`.
    pub loss: String,
    /// `bmc`, `gai` or `bni`: the prior (default `bmc`).
    #[serde(default)]
    pub variant: Option<String>,
    /// n, the rows.
    pub n: usize,
    /// L, the label width (default 1).
    #[serde(default = "one")]
    pub label_dim: usize,
    /// The config.
    pub config: BmseJson,
    /// n·L predictions.
    pub preds: Vec<f64>,
    /// n·L labels.
    pub labels: Vec<f64>,
    /// The fixture's expected results.
    #[serde(default)]
    pub expected: Option<Value>,
}

/// Balanced MSE's `config` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmseJson {
    /// σ, the noise scale.
    pub noise_sigma: f64,
    /// GAI's Gaussian mixture.
    #[serde(default)]
    pub gmm: Option<GmmJson>,
    /// BNI's bucket centres.
    #[serde(default)]
    pub bucket_centers: Option<Vec<f64>>,
    /// BNI's bucket weights.
    #[serde(default)]
    pub bucket_weights: Option<Vec<f64>>,
}

/// GAI's `gmm` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmJson {
    /// The components' means.
    pub means: Vec<f64>,
    /// The components' variances.
    pub variances: Vec<f64>,
    /// The components' weights.
    pub weights: Vec<f64>,
}

impl BmseCase {
    /// The config, validated against the case's label width: the prior the
    /// variant names (`bmc`, `gai`, `bni`), with the lists it needs present.
    pub fn config(&self) -> Result<BalancedMse<'_>, Error> {
        let c = &self.config;
        let missing = |why| {
            Error::Invalid(conr_core::Error::InvalidConfig {
                field: "config",
                why,
            })
        };
        let prior = match self.variant.as_deref().unwrap_or("bmc") {
            "bmc" => Prior::Batch,
            "gai" => {
                let g = c
                    .gmm
                    .as_ref()
                    .ok_or_else(|| missing("gai needs config.gmm"))?;
                Prior::Gmm {
                    means: &g.means,
                    variances: &g.variances,
                    weights: &g.weights,
                }
            }
            "bni" => match (&c.bucket_centers, &c.bucket_weights) {
                (Some(centers), Some(weights)) => Prior::Buckets { centers, weights },
                _ => {
                    return Err(missing(
                        "bni needs config.bucket_centers and config.bucket_weights",
                    ));
                }
            },
            other => {
                return Err(Error::Name {
                    key: "variant".into(),
                    value: other.to_string(),
                    source: conr_core::Error::UnknownName {
                        field: "variant",
                        expected: <conr_core::dir::balanced_mse::PriorKind as Named>::NAMES,
                    },
                });
            }
        };
        let config = BalancedMse {
            noise_sigma: c.noise_sigma,
            prior,
        };
        config.validate(self.label_dim)?;
        Ok(config)
    }

    /// The validated batch over `preds` and `labels` (the case's values in `T`).
    pub fn batch<'a, T: conr_core::Scalar>(
        &self,
        preds: &'a [T],
        labels: &'a [T],
    ) -> Result<BmseBatch<'a, T>, conr_core::Error> {
        BmseBatch::new(self.n, self.label_dim, preds, labels)
    }
}

/// The object `conr compute` prints for a companion loss: the loss and the
/// gradients under the fixture's field names.
#[derive(Debug, Clone, Serialize)]
pub struct DirReport {
    /// The loss.
    pub loss: f64,
    /// `∂loss/∂features` (RankSim, Rank-N-Contrast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_features: Option<Vec<f64>>,
    /// `∂loss/∂preds` (Balanced MSE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_preds: Option<Vec<f64>>,
    /// `∂loss/∂σ` (Balanced MSE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_noise_sigma: Option<f64>,
    /// RankSim's subset, in the order its ranks were taken over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_rows: Option<Vec<usize>>,
    /// The engine that ran, as the caller named it.
    pub backend: String,
    /// The precision it computed in.
    pub precision: &'static str,
}

impl DirReport {
    fn new(loss: f64, backend: &str, precision: Precision) -> Self {
        Self {
            loss,
            grad_features: None,
            grad_preds: None,
            grad_noise_sigma: None,
            sampled_rows: None,
            backend: backend.to_string(),
            precision: precision.name(),
        }
    }

    /// RankSim's report.
    pub fn rank_sim<T: conr_core::Scalar>(
        out: RankSimOutput<T>,
        backend: &str,
        precision: Precision,
    ) -> Self {
        Self {
            grad_features: Some(widen(&out.grad_features)),
            sampled_rows: Some(out.rows),
            ..Self::new(wide(out.loss), backend, precision)
        }
    }

    /// Rank-N-Contrast's report.
    pub fn rnc<T: conr_core::Scalar>(
        out: RncOutput<T>,
        backend: &str,
        precision: Precision,
    ) -> Self {
        Self {
            grad_features: Some(widen(&out.grad_features)),
            ..Self::new(wide(out.loss), backend, precision)
        }
    }

    /// Balanced MSE's report.
    pub fn balanced_mse<T: conr_core::Scalar>(
        out: BalancedMseOutput<T>,
        backend: &str,
        precision: Precision,
    ) -> Self {
        Self {
            grad_preds: Some(widen(&out.grad_preds)),
            grad_noise_sigma: Some(wide(out.grad_noise_sigma)),
            ..Self::new(wide(out.loss), backend, precision)
        }
    }
}

fn wide<T: conr_core::Scalar>(x: T) -> f64 {
    x.to_f64().unwrap_or(f64::NAN)
}

fn widen<T: conr_core::Scalar>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| wide(x)).collect()
}

/// `values` rounded once to `T`.
pub fn convert<T: conr_core::Scalar>(values: &[f64]) -> Vec<T> {
    values
        .iter()
        .map(|&x| T::from(x).unwrap_or_else(T::nan))
        .collect()
}
