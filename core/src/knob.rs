//! Every knob of every config, as data: its name, what it takes, its domain
//! and one line on what it does.
//!
//! The front ends read these tables and nothing else: the JSON schema's
//! `config` objects, Python's keyword arguments (their errors and `repr`
//! included) and the knob reference in the docs. A knob is added by adding
//! its field to the config, its line to the config's table, and its rule to
//! the config's `validate`.
//!
//! ```
//! use conr_core::knob::{Knobs, Value};
//! use conr_core::Config;
//!
//! let mut config = Config::official_agedb();
//! config.set("threshold", Value::Number(2.0))?;
//! config.set("label_metric", Value::Name("l2"))?;
//! assert_eq!(config.get("threshold"), Some(Value::Number(2.0)));
//! assert_eq!(Config::knob("temperature").map(|k| k.domain), Some("[1e-6, 1e6]"));
//! assert!(config.set("temprature", Value::Number(0.1)).is_err());
//! # Ok::<(), conr_core::Error>(())
//! ```

use crate::Error;

/// What a knob takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A real number.
    Number,
    /// A real number, or nothing (JSON's `null`, Python's `None`).
    OptionalNumber,
    /// A whole number, zero or more.
    Count,
    /// True or false.
    Flag,
    /// One of these names.
    Name(&'static [&'static str]),
    /// One of these names, or nothing.
    OptionalName(&'static [&'static str]),
    /// A pushing weight: its kind, one of these names, and its scale.
    Pushing(&'static [&'static str]),
}

/// A knob's value as a front end reads or writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// For [`Kind::Number`] and [`Kind::OptionalNumber`].
    Number(f64),
    /// For [`Kind::Count`].
    Count(u64),
    /// For [`Kind::Flag`].
    Flag(bool),
    /// For [`Kind::Name`] and [`Kind::OptionalName`].
    Name(&'a str),
    /// Nothing, for [`Kind::OptionalNumber`] and [`Kind::OptionalName`].
    Unset,
    /// For [`Kind::Pushing`].
    Pushing {
        /// The kind's name.
        kind: &'a str,
        /// The scale e.
        scale: f64,
    },
}

/// One knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// Its name, the same in Rust, JSON, Python and the docs.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// The values it may take, as the config's `validate` checks them.
    pub domain: &'static str,
    /// What it does, in one line.
    pub doc: &'static str,
}

/// A config whose knobs are listed in a table.
pub trait Knobs: Sized {
    /// The config's name in messages.
    const NAME: &'static str;
    /// Every knob, in the order of the config's fields.
    const KNOBS: &'static [Knob];
    /// Every knob's name, in the same order.
    const NAMES: &'static [&'static str];

    /// The knob called `name`.
    fn knob(name: &str) -> Option<&'static Knob> {
        Self::KNOBS.iter().find(|k| k.name == name)
    }

    /// The value of the knob called `name`.
    fn get(&self, name: &str) -> Option<Value<'static>>;

    /// Sets the knob called `name`. An unknown name is
    /// [`Error::UnknownName`] with every knob's name, and a value of another
    /// kind, or a name that is not one of the knob's, is an error that names
    /// the knob. The domain is [`Knobs::validate`]'s to check, once every
    /// knob is set.
    fn set(&mut self, name: &str, value: Value<'_>) -> Result<(), Error>;

    /// Checks every knob's domain.
    fn validate(&self) -> Result<(), Error>;
}

/// A field type a knob can have: how it reads and writes a [`Value`].
pub(crate) trait KnobValue: Sized {
    /// What a knob of this type takes.
    const KIND: Kind;
    /// The field as a value.
    fn to_value(&self) -> Value<'static>;
    /// The field from a value, or `None` when the value is of another kind.
    fn from_value(value: Value<'_>) -> Option<Result<Self, Error>>;
}

/// [`KnobValue`] for a plain field type: the value variant it reads and writes.
macro_rules! plain_knob {
    ($ty:ty, $kind:ident, $variant:ident) => {
        impl KnobValue for $ty {
            const KIND: Kind = Kind::$kind;
            fn to_value(&self) -> Value<'static> {
                Value::$variant(*self)
            }
            fn from_value(value: Value<'_>) -> Option<Result<Self, Error>> {
                match value {
                    Value::$variant(x) => Some(Ok(x)),
                    _ => None,
                }
            }
        }
    };
}

plain_knob!(f64, Number, Number);
plain_knob!(u64, Count, Count);
plain_knob!(bool, Flag, Flag);

impl KnobValue for usize {
    const KIND: Kind = Kind::Count;
    fn to_value(&self) -> Value<'static> {
        // usize is at most 64 bits wide on every target Rust supports.
        Value::Count(*self as u64)
    }
    fn from_value(value: Value<'_>) -> Option<Result<Self, Error>> {
        match value {
            // A count past this target's address space is of no use to any knob.
            Value::Count(n) => usize::try_from(n).ok().map(Ok),
            _ => None,
        }
    }
}

impl KnobValue for Option<f64> {
    const KIND: Kind = Kind::OptionalNumber;
    fn to_value(&self) -> Value<'static> {
        self.map_or(Value::Unset, Value::Number)
    }
    fn from_value(value: Value<'_>) -> Option<Result<Self, Error>> {
        match value {
            Value::Number(x) => Some(Ok(Some(x))),
            Value::Unset => Some(Ok(None)),
            _ => None,
        }
    }
}

/// [`KnobValue`] for a [`Named`](crate::Named) enum and for its `Option`.
macro_rules! named_knob {
    ($ty:ty) => {
        impl $crate::knob::KnobValue for $ty {
            const KIND: $crate::knob::Kind =
                $crate::knob::Kind::Name(<$ty as $crate::Named>::NAMES);
            fn to_value(&self) -> $crate::knob::Value<'static> {
                $crate::knob::Value::Name($crate::Named::name(*self))
            }
            fn from_value(value: $crate::knob::Value<'_>) -> Option<Result<Self, $crate::Error>> {
                match value {
                    $crate::knob::Value::Name(name) => {
                        Some(<$ty as $crate::Named>::from_name(name))
                    }
                    _ => None,
                }
            }
        }

        impl $crate::knob::KnobValue for Option<$ty> {
            const KIND: $crate::knob::Kind =
                $crate::knob::Kind::OptionalName(<$ty as $crate::Named>::NAMES);
            fn to_value(&self) -> $crate::knob::Value<'static> {
                self.map_or($crate::knob::Value::Unset, |v| {
                    $crate::knob::Value::Name($crate::Named::name(v))
                })
            }
            fn from_value(value: $crate::knob::Value<'_>) -> Option<Result<Self, $crate::Error>> {
                match value {
                    $crate::knob::Value::Name(name) => {
                        Some(<$ty as $crate::Named>::from_name(name).map(Some))
                    }
                    $crate::knob::Value::Unset => Some(Ok(None)),
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use named_knob;

/// The [`Knobs`] impl of a config from its one table: each line names a
/// field, its type, its domain and what it does.
macro_rules! knobs {
    (
        $config:ty, $label:literal,
        [$(($field:ident: $ty:ty, $domain:literal, $doc:literal)),+ $(,)?]
    ) => {
        impl $crate::knob::Knobs for $config {
            const NAME: &'static str = $label;
            const KNOBS: &'static [$crate::knob::Knob] = &[$($crate::knob::Knob {
                name: stringify!($field),
                kind: <$ty as $crate::knob::KnobValue>::KIND,
                domain: $domain,
                doc: $doc,
            }),+];
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            fn get(&self, name: &str) -> Option<$crate::knob::Value<'static>> {
                match name {
                    $(stringify!($field) => {
                        Some(<$ty as $crate::knob::KnobValue>::to_value(&self.$field))
                    })+
                    _ => None,
                }
            }

            fn set(
                &mut self,
                name: &str,
                value: $crate::knob::Value<'_>,
            ) -> Result<(), $crate::Error> {
                match name {
                    $(stringify!($field) => {
                        match <$ty as $crate::knob::KnobValue>::from_value(value) {
                            Some(Ok(v)) => {
                                self.$field = v;
                                Ok(())
                            }
                            Some(Err(e)) => Err(e),
                            None => Err($crate::Error::InvalidConfig {
                                field: stringify!($field),
                                why: $crate::knob::expects(
                                    <$ty as $crate::knob::KnobValue>::KIND,
                                ),
                            }),
                        }
                    })+
                    _ => Err($crate::Error::UnknownName {
                        field: $label,
                        expected: <Self as $crate::knob::Knobs>::NAMES,
                    }),
                }
            }

            fn validate(&self) -> Result<(), $crate::Error> {
                <$config>::validate(self)
            }
        }
    };
}
pub(crate) use knobs;

/// What a knob of `kind` takes, for the error of a value of another kind.
pub fn expects(kind: Kind) -> &'static str {
    match kind {
        Kind::Number => "takes a number",
        Kind::OptionalNumber => "takes a number or nothing",
        Kind::Count => "takes a whole number >= 0",
        Kind::Flag => "takes true or false",
        Kind::Name(_) => "takes a name",
        Kind::OptionalName(_) => "takes a name or nothing",
        Kind::Pushing(_) => "takes a kind and a scale",
    }
}
