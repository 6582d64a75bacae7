//! `conr.Config`: the core's config, built from a preset and keyword
//! overrides with the core's names, validated at construction.

use conr_core::{Aggregation, Config, LabelMetric, Named, Preset, Pushing, PushingKind, Reduction};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::errors::to_py;

/// ConR's config: every knob of the general formulation.
///
/// Build one from a preset with keyword overrides, by the core's names:
/// `Config.paper(temperature=0.1)`, `Config.official_agedb()`,
/// `Config.official_nyud2(threshold=0.5)`. An unknown keyword is a
/// `TypeError`; a value out of its domain is a `ValueError`.
#[pyclass(name = "Config", module = "conr", frozen, eq, from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PyConfig {
    pub inner: Config,
}

/// A knob's value, for `repr` and for JSON.
enum Value {
    Float(f64),
    MaybeFloat(Option<f64>),
    Pushing(&'static str, f64),
    Name(&'static str),
    Bool(bool),
}

impl Value {
    /// The value as Python writes it.
    fn python(&self) -> String {
        let py_bool = |b: bool| if b { "True" } else { "False" };
        match self {
            Value::Float(x) | Value::MaybeFloat(Some(x)) => format!("{x:?}"),
            Value::MaybeFloat(None) => "None".into(),
            Value::Pushing(kind, scale) => format!("('{kind}', {scale:?})"),
            Value::Name(name) => format!("'{name}'"),
            Value::Bool(b) => py_bool(*b).into(),
        }
    }

    /// The value as the `conr-fixture/1` schema writes it.
    fn json(&self) -> serde_json::Value {
        match *self {
            Value::Float(x) => x.into(),
            Value::MaybeFloat(x) => x.into(),
            Value::Pushing(kind, scale) => serde_json::json!({"kind": kind, "scale": scale}),
            Value::Name(name) => name.into(),
            Value::Bool(b) => b.into(),
        }
    }
}

/// Every knob, by its core name, in the core's order. The config is
/// destructured whole, so that a new knob cannot be left out.
fn knobs(config: &Config) -> [(&'static str, Value); 10] {
    let Config {
        threshold,
        pred_threshold,
        temperature,
        pushing: Pushing { kind, scale },
        label_metric,
        aggregation,
        denominator_padding,
        outer_weight,
        self_in_positive_count,
        reduction,
    } = *config;
    [
        ("threshold", Value::Float(threshold)),
        ("pred_threshold", Value::MaybeFloat(pred_threshold)),
        ("temperature", Value::Float(temperature)),
        ("pushing", Value::Pushing(kind.name(), scale)),
        ("label_metric", Value::Name(label_metric.name())),
        ("aggregation", Value::Name(aggregation.name())),
        ("denominator_padding", Value::Bool(denominator_padding)),
        ("outer_weight", Value::Bool(outer_weight)),
        (
            "self_in_positive_count",
            Value::Bool(self_in_positive_count),
        ),
        ("reduction", Value::Name(reduction.name())),
    ]
}

fn named<N: Named>(value: &Bound<'_, PyAny>) -> PyResult<N> {
    let name: String = value.extract()?;
    N::from_name(&name).map_err(to_py)
}

/// `pushing`: `(kind, scale)` or `{"kind": kind, "scale": scale}`.
fn pushing(value: &Bound<'_, PyAny>) -> PyResult<Pushing> {
    let (kind, scale): (Bound<'_, PyAny>, f64) = if let Ok(dict) = value.cast::<PyDict>() {
        let item = |key: &str| {
            dict.get_item(key)?
                .ok_or_else(|| PyTypeError::new_err(format!("pushing needs a `{key}` entry")))
        };
        (item("kind")?, item("scale")?.extract()?)
    } else if let Ok(pair) = value.cast::<PyTuple>() {
        pair.extract()?
    } else {
        return Err(PyTypeError::new_err(
            "pushing is a (kind, scale) tuple or a {\"kind\": ..., \"scale\": ...} dict",
        ));
    };
    Ok(Pushing {
        kind: named::<PushingKind>(&kind)?,
        scale,
    })
}

impl PyConfig {
    /// `base` with `overrides` applied, validated.
    fn with(base: Config, method: &str, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut c = base;
        for (key, value) in overrides.into_iter().flat_map(|d| d.iter()) {
            let key: String = key.extract()?;
            match key.as_str() {
                "threshold" => c.threshold = value.extract()?,
                "pred_threshold" => c.pred_threshold = value.extract()?,
                "temperature" => c.temperature = value.extract()?,
                "pushing" => c.pushing = pushing(&value)?,
                "label_metric" => c.label_metric = named::<LabelMetric>(&value)?,
                "aggregation" => c.aggregation = named::<Aggregation>(&value)?,
                "denominator_padding" => c.denominator_padding = value.extract()?,
                "outer_weight" => c.outer_weight = value.extract()?,
                "self_in_positive_count" => c.self_in_positive_count = value.extract()?,
                "reduction" => c.reduction = named::<Reduction>(&value)?,
                other => {
                    let names: Vec<&str> = knobs(&c).iter().map(|(name, _)| *name).collect();
                    return Err(PyTypeError::new_err(format!(
                        "Config.{method}() got an unexpected keyword argument '{other}' (the knobs are {})",
                        names.join(", ")
                    )));
                }
            }
        }
        c.validate().map_err(to_py)?;
        Ok(Self { inner: c })
    }

    fn preset(preset: Preset, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::with(preset.config(), preset.name(), overrides)
    }
}

#[pymethods]
impl PyConfig {
    /// The paper's loss: exp pushing (e = 0.01), ω = 1, τ = 0.07, no padding,
    /// no outer weight, with any knob overridden.
    #[staticmethod]
    #[pyo3(signature = (**overrides))]
    fn paper(overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::preset(Preset::Paper, overrides)
    }

    /// The official AgeDB-DIR / IMDB-WIKI-DIR code's loss (its padding, its
    /// outer weight, τ = 0.07), with any knob overridden.
    #[staticmethod]
    #[pyo3(signature = (**overrides))]
    fn official_agedb(overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::preset(Preset::OfficialAgedb, overrides)
    }

    /// The official NYUD2-DIR code's loss (linear pushing, ω = τ = 0.2, the
    /// row itself among its positives), with any knob overridden.
    #[staticmethod]
    #[pyo3(signature = (**overrides))]
    fn official_nyud2(overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::preset(Preset::OfficialNyud2, overrides)
    }

    /// The same config with some knobs changed.
    #[pyo3(signature = (**overrides))]
    fn replace(&self, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::with(self.inner, "replace", overrides)
    }

    /// ω: labels within this distance are similar.
    #[getter]
    fn threshold(&self) -> f64 {
        self.inner.threshold
    }

    /// ω̂: predictions within this distance are confusable (`None`: ω).
    #[getter]
    fn pred_threshold(&self) -> Option<f64> {
        self.inner.pred_threshold
    }

    /// τ.
    #[getter]
    fn temperature(&self) -> f64 {
        self.inner.temperature
    }

    /// The pushing weight g(d): `(kind, scale)`.
    #[getter]
    fn pushing(&self) -> (&'static str, f64) {
        (self.inner.pushing.kind.name(), self.inner.pushing.scale)
    }

    /// `l1`, `l2`, `linf` or `angular`.
    #[getter]
    fn label_metric(&self) -> &'static str {
        self.inner.label_metric.name()
    }

    /// `mean_of_logs` or `log_of_mean`.
    #[getter]
    fn aggregation(&self) -> &'static str {
        self.inner.aggregation.name()
    }

    /// Whether `M − |P_j|` is added to each denominator.
    #[getter]
    fn denominator_padding(&self) -> bool {
        self.inner.denominator_padding
    }

    /// Whether each row loss is multiplied by its eta again.
    #[getter]
    fn outer_weight(&self) -> bool {
        self.inner.outer_weight
    }

    /// Whether the row itself counts among its positives.
    #[getter]
    fn self_in_positive_count(&self) -> bool {
        self.inner.self_in_positive_count
    }

    /// `mean`, `mean_anchors` or `sum`.
    #[getter]
    fn reduction(&self) -> &'static str {
        self.inner.reduction.name()
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> = knobs(&self.inner)
            .iter()
            .map(|(name, value)| format!("{name}={}", value.python()))
            .collect();
        format!("Config({})", fields.join(", "))
    }

    /// The config as the `conr-fixture/1` schema's `config` object (the
    /// string the torch op carries).
    fn to_json(&self) -> String {
        let object: serde_json::Map<String, serde_json::Value> = knobs(&self.inner)
            .iter()
            .map(|(name, value)| (name.to_string(), value.json()))
            .collect();
        serde_json::Value::Object(object).to_string()
    }

    /// A config from [`PyConfig::to_json`]'s text, or any `config` object of
    /// the `conr-fixture/1` schema.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        let json: conr_schema::ConfigJson = serde_json::from_str(text)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("config: {e}")))?;
        let inner = json
            .to_config()
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(Self { inner })
    }
}
