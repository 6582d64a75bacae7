//! `conr.Config`: the core's config, built from a preset and keyword
//! overrides with the core's names, validated at construction. The knobs,
//! their kinds and their order come from the core's table
//! ([`conr_core::knob`]); this file lists none of its own.

use conr_core::knob::{Kind, Knobs, Value};
use conr_core::{Config, Named, Preset};
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{IntoPyObjectExt, Py, PyAny};

use crate::errors::to_py;

/// ConR's config: every knob of the general formulation.
///
/// Build one from a preset with keyword overrides, by the core's names:
/// `Config.paper(temperature=0.1)`, `Config.official_agedb()`,
/// `Config.official_nyud2(threshold=0.5)`. An unknown keyword is a
/// `TypeError`; a value out of its domain is a `ValueError`. Each knob reads
/// back as an attribute; `Config.knobs()` lists them.
#[pyclass(name = "Config", module = "conr", frozen, eq, from_py_object)]
#[derive(Clone, PartialEq)]
pub struct PyConfig {
    pub inner: Config,
}

/// A knob's value as Python writes it (for `repr`).
fn python_text(value: Value<'_>) -> String {
    match value {
        Value::Number(x) => format!("{x:?}"),
        Value::Count(n) => n.to_string(),
        Value::Flag(b) => if b { "True" } else { "False" }.into(),
        Value::Name(name) => format!("'{name}'"),
        Value::Unset => "None".into(),
        Value::Pushing { kind, scale } => format!("('{kind}', {scale:?})"),
    }
}

/// A knob's value as a Python object (for attributes).
pub(crate) fn python_object(py: Python<'_>, value: Value<'_>) -> PyResult<Py<PyAny>> {
    match value {
        Value::Number(x) => x.into_py_any(py),
        Value::Count(n) => n.into_py_any(py),
        Value::Flag(b) => b.into_py_any(py),
        Value::Name(name) => name.into_py_any(py),
        Value::Unset => Ok(py.None()),
        Value::Pushing { kind, scale } => (kind, scale).into_py_any(py),
    }
}

/// A Python value of a knob of `kind`, read into `text` (a name's owner)
/// and returned as a [`Value`]; `None` where it is of another type.
fn read_value<'t>(kind: Kind, value: &Bound<'_, PyAny>, text: &'t mut String) -> Option<Value<'t>> {
    if value.is_none() && matches!(kind, Kind::OptionalNumber | Kind::OptionalName(_)) {
        return Some(Value::Unset);
    }
    Some(match kind {
        Kind::Number | Kind::OptionalNumber => Value::Number(value.extract().ok()?),
        Kind::Count => Value::Count(value.extract().ok()?),
        Kind::Flag => Value::Flag(value.extract().ok()?),
        Kind::Name(_) | Kind::OptionalName(_) => {
            *text = value.extract().ok()?;
            Value::Name(text)
        }
        // `(kind, scale)` or `{"kind": kind, "scale": scale}`.
        Kind::Pushing(_) => {
            let (name, scale): (String, f64) = if let Ok(dict) = value.cast::<PyDict>() {
                let item = |key: &str| dict.get_item(key).ok().flatten();
                (
                    item("kind")?.extract().ok()?,
                    item("scale")?.extract().ok()?,
                )
            } else {
                value.cast::<PyTuple>().ok()?.extract().ok()?
            };
            *text = name;
            Value::Pushing { kind: text, scale }
        }
    })
}

/// What a Python value of `kind` must be, for the `TypeError`.
fn python_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Number => "a number",
        Kind::OptionalNumber => "a number or None",
        Kind::Count => "an int >= 0",
        Kind::Flag => "a bool",
        Kind::Name(_) => "a str",
        Kind::OptionalName(_) => "a str or None",
        Kind::Pushing(_) => "a (kind, scale) tuple or a {\"kind\": ..., \"scale\": ...} dict",
    }
}

/// `config` with the keyword arguments `overrides` of `function` set on it,
/// each read by its knob's kind, then validated. Unknown keywords and values
/// of the wrong type are `TypeError`s; values out of their domain and
/// unknown names `ValueError`s.
pub fn with_overrides<K: Knobs>(
    mut config: K,
    function: &str,
    overrides: Option<&Bound<'_, PyDict>>,
) -> PyResult<K> {
    for (key, value) in overrides.into_iter().flat_map(|d| d.iter()) {
        let key: String = key.extract()?;
        let Some(knob) = K::knob(knob_name(&key)) else {
            let names: Vec<&str> = K::NAMES.iter().map(|n| python_name(n)).collect();
            return Err(PyTypeError::new_err(format!(
                "{function}() got an unexpected keyword argument '{key}' (the knobs are {})",
                names.join(", ")
            )));
        };
        let mut text = String::new();
        let Some(v) = read_value(knob.kind, &value, &mut text) else {
            return Err(PyTypeError::new_err(format!(
                "{key} must be {}, not {}",
                python_type(knob.kind),
                value.get_type().name()?
            )));
        };
        config.set(knob.name, v).map_err(to_py)?;
    }
    config.validate().map_err(to_py)?;
    Ok(config)
}

/// Every knob of `K` as `(name, kind, domain, doc)`, for `knobs()`.
pub fn describe<K: Knobs>() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    K::KNOBS
        .iter()
        .map(|k| (python_name(k.name), python_type(k.kind), k.domain, k.doc))
        .collect()
}

/// Every knob of `config` by its Python name, with its value.
pub fn knob_dict<'py, K: Knobs>(py: Python<'py>, config: &K) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for &name in K::NAMES {
        if let Some(value) = config.get(name) {
            dict.set_item(python_name(name), python_object(py, value)?)?;
        }
    }
    Ok(dict)
}

/// The knobs whose own name Python cannot take as a keyword, with the name
/// Python spells them by: RankSim's `lambda` is the RankSim reference's
/// `interpolation_lambda`.
const PYTHON_NAMES: [(&str, &str); 1] = [("lambda", "interpolation_lambda")];

/// A knob's name as Python spells it.
pub fn python_name(knob: &'static str) -> &'static str {
    PYTHON_NAMES
        .iter()
        .find(|(name, _)| *name == knob)
        .map_or(knob, |&(_, python)| python)
}

/// The knob a Python keyword names.
fn knob_name(keyword: &str) -> &str {
    PYTHON_NAMES
        .iter()
        .find(|(_, python)| *python == keyword)
        .map_or(keyword, |&(name, _)| name)
}

impl PyConfig {
    fn preset(preset: Preset, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let method = format!("Config.{}", preset.name());
        let inner = with_overrides(preset.config(), &method, overrides)?;
        Ok(Self { inner })
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

    /// The paper's loss with ω = ω̂ = `resolution`, for labels in `range`
    /// (a `(low, high)` pair); any knob overridden. Ages 0–100 at
    /// resolution 1 give the official AgeDB-DIR values.
    #[staticmethod]
    #[pyo3(signature = (range, resolution, **overrides))]
    fn for_labels(
        range: (f64, f64),
        resolution: f64,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let base = Config::for_labels(range, resolution).map_err(to_py)?;
        let inner = with_overrides(base, "Config.for_labels", overrides)?;
        Ok(Self { inner })
    }

    /// The same config with some knobs changed.
    #[pyo3(signature = (**overrides))]
    fn replace(&self, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let inner = with_overrides(self.inner, "Config.replace", overrides)?;
        Ok(Self { inner })
    }

    /// Every knob, in order: `(name, type, domain, what it does)`.
    #[staticmethod]
    fn knobs() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
        describe::<Config>()
    }

    /// Each knob reads back as an attribute: `config.threshold`,
    /// `config.pushing` (a `(kind, scale)` tuple), ...
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        match self.inner.get(name) {
            Some(value) => python_object(py, value),
            None => Err(PyAttributeError::new_err(format!(
                "'Config' object has no attribute '{name}'"
            ))),
        }
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> = Config::NAMES
            .iter()
            .filter_map(|&name| Some(format!("{name}={}", python_text(self.inner.get(name)?))))
            .collect();
        format!("Config({})", fields.join(", "))
    }

    /// The config as the `conr-fixture/1` schema's `config` object (the
    /// string the torch op carries).
    fn to_json(&self) -> String {
        serde_json::Value::Object(conr_schema::ConfigJson::of(&self.inner).0).to_string()
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
