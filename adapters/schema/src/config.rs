//! The `config` objects: ConR's (a preset and overrides) and the density
//! weights'. Their keys are the core's knobs ([`conr_core::knob`]): this
//! file reads a knob's JSON by the kind the core's table gives it, and lists
//! no knob of its own.

use conr_core::density::DensityConfig;
use conr_core::knob::{Kind, Knobs, Value};
use conr_core::{Config, Named, Preset};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::Error;

/// The `config` object of a loss case: `preset` (`paper`, the default,
/// `official_agedb` or `official_nyud2`) and any of [`Config`]'s knobs, by
/// their names, each overriding the preset. An unknown key is an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct ConfigJson(pub serde_json::Map<String, Json>);

/// The density `config` object: any of [`DensityConfig`]'s knobs, by their
/// names; missing ones take [`DensityConfig::default`]'s values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct DensityJson(pub serde_json::Map<String, Json>);

/// The value named `value` at `key`, from the core's name table.
pub(crate) fn named<N: Named>(key: &str, value: &str) -> Result<N, Error> {
    N::from_name(value).map_err(|source| Error::Name {
        key: key.to_string(),
        value: value.to_string(),
        source,
    })
}

impl ConfigJson {
    /// `config` as a `config` object: every knob, by the core's table (the
    /// object [`ConfigJson::to_config`] reads back as `config`).
    pub fn of(config: &Config) -> Self {
        Self(knobs_json(config))
    }

    /// The core config, validated.
    pub fn to_config(&self) -> Result<Config, Error> {
        let preset = match self.0.get("preset") {
            None => "paper",
            Some(Json::String(name)) => name,
            Some(_) => return Err(knob_error("preset", "takes a name")),
        };
        let mut config = named::<Preset>("config.preset", preset)?.config();
        let knobs = self.0.iter().filter(|(key, _)| *key != "preset");
        set_all(&mut config, knobs, &["preset"])?;
        config.validate()?;
        Ok(config)
    }
}

impl DensityJson {
    /// The core density config, validated.
    pub fn to_config(&self) -> Result<DensityConfig, Error> {
        knobs_from(&self.0)
    }
}

/// Every knob of `config` as a JSON object, by the config's table.
pub(crate) fn knobs_json<K: Knobs>(config: &K) -> serde_json::Map<String, Json> {
    K::NAMES
        .iter()
        .filter_map(|&name| Some((name.to_string(), json_of(config.get(name)?))))
        .collect()
}

/// A knob's value as the schema writes it.
fn json_of(value: Value<'_>) -> Json {
    match value {
        Value::Number(x) => x.into(),
        Value::Count(n) => n.into(),
        Value::Flag(b) => b.into(),
        Value::Name(name) => name.into(),
        Value::Unset => Json::Null,
        Value::Pushing { kind, scale } => serde_json::json!({"kind": kind, "scale": scale}),
    }
}

/// The config of a JSON object of knobs: the default, with each key set on
/// it by its knob's kind, then validated.
pub(crate) fn knobs_from<K: Knobs + Default>(
    object: &serde_json::Map<String, Json>,
) -> Result<K, Error> {
    let mut config = K::default();
    set_all(&mut config, object.iter(), &[])?;
    Knobs::validate(&config)?;
    Ok(config)
}

fn knob_error(key: &str, why: impl Into<String>) -> Error {
    Error::Knob {
        key: format!("config.{key}"),
        why: why.into(),
    }
}

/// Sets every `(key, value)` on `config`, each read by its knob's kind.
/// `other_keys` are the object's keys that are not knobs (`preset`).
fn set_all<'a, K: Knobs>(
    config: &mut K,
    object: impl Iterator<Item = (&'a String, &'a Json)>,
    other_keys: &[&str],
) -> Result<(), Error> {
    for (key, json) in object {
        let Some(knob) = K::knob(key) else {
            let expected: Vec<&str> = other_keys
                .iter()
                .copied()
                .chain(K::NAMES.iter().copied())
                .collect();
            return Err(knob_error(
                key,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    expected.join(", ")
                ),
            ));
        };
        let value = value_of(knob.kind, json).ok_or_else(|| {
            knob_error(
                key,
                format!("{} (found {json})", conr_core::knob::expects(knob.kind)),
            )
        })?;
        config.set(key, value).map_err(|source| match source {
            conr_core::Error::UnknownName { .. } => Error::Name {
                key: format!("config.{key}"),
                value: name_in(json).unwrap_or_default().to_string(),
                source,
            },
            other => Error::Invalid(other),
        })?;
    }
    Ok(())
}

/// The name a knob's JSON holds: the string, or a pushing object's kind.
fn name_in(json: &Json) -> Option<&str> {
    json.as_str()
        .or_else(|| json.get("kind").and_then(Json::as_str))
}

/// `json` as a value of `kind`, or `None` where it is of another kind.
fn value_of(kind: Kind, json: &Json) -> Option<Value<'_>> {
    Some(match (kind, json) {
        (Kind::OptionalNumber | Kind::OptionalName(_), Json::Null) => Value::Unset,
        (Kind::Number | Kind::OptionalNumber, Json::Number(x)) => Value::Number(x.as_f64()?),
        (Kind::Count, Json::Number(n)) => Value::Count(n.as_u64()?),
        (Kind::Flag, Json::Bool(b)) => Value::Flag(*b),
        (Kind::Name(_) | Kind::OptionalName(_), Json::String(name)) => Value::Name(name),
        // `{"kind": "exp", "scale": e}`; the scale defaults to 0.
        (Kind::Pushing(_), Json::Object(object)) => {
            if object.keys().any(|k| k != "kind" && k != "scale") {
                return None;
            }
            let scale = match object.get("scale") {
                None => 0.0,
                Some(scale) => scale.as_f64()?,
            };
            Value::Pushing {
                kind: object.get("kind")?.as_str()?,
                scale,
            }
        }
        _ => return None,
    })
}
