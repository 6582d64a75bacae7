use crate::knob::{Kind, KnobValue, Value, knobs};
use crate::{Error, Scalar, cast};

/// How two label (or prediction) vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelMetric {
    /// Sum of absolute differences. For scalar labels, `|y_j − y_k|`.
    #[default]
    L1,
    /// Euclidean distance.
    L2,
    /// Largest absolute difference.
    Linf,
    /// The angle between the two vectors, in radians (for directions such as gaze).
    Angular,
}

/// The shape of the pushing weight `g(d)`, a function of the label distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushingKind {
    /// `g(d) = e^(scale·d)`: the AgeDB and IMDB-WIKI code, and the paper.
    #[default]
    Exp,
    /// `g(d) = scale·d`: the NYUD2 code.
    Linear,
    /// `g(d) = 1`.
    Constant,
}

/// The pushing weight `g(d)` with its scale `e`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pushing {
    /// The shape of `g`.
    pub kind: PushingKind,
    /// The scale `e`. Ignored by [`PushingKind::Constant`].
    pub scale: f64,
}

/// Where the log sits in the per-anchor loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// `l_j = (1/n_j) Σ_k P_jk (log D_j − s_jk)`: the official code.
    #[default]
    MeanOfLogs,
    /// `l_j = log D_j + log n_j − log Σ_k P_jk e^{s_jk}`: one reading of the paper's equation.
    LogOfMean,
}

/// How the per-row losses become one scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// `Σ_j l_j / M`.
    #[default]
    Mean,
    /// `Σ_j l_j / max(#anchors, 1)`.
    MeanAnchors,
    /// `Σ_j l_j`.
    Sum,
}

/// Every knob of ConR. See the crate docs and `DESIGN.md` §1 for the formulas.
///
/// [`Config::default()`] is the [`Config::paper`] preset. Build one with a preset
/// and struct update syntax, then call [`Config::validate`] (every engine does):
///
/// ```
/// use conr_core::Config;
/// let config = Config { threshold: 2.0, ..Config::official_agedb() };
/// assert!(config.validate().is_ok());
/// assert!(Config { temperature: 0.0, ..config }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// ω: labels within this distance are similar (`<=`).
    pub threshold: f64,
    /// ω̂: predictions within this distance are confusable (`<=`). `None` means ω.
    pub pred_threshold: Option<f64>,
    /// τ, the softmax temperature. Must lie in [1e-6, 1e6]: outside that range
    /// `1/τ` leaves the useful range of `f32`.
    pub temperature: f64,
    /// The pushing weight `g(d)`.
    pub pushing: Pushing,
    /// The distance between labels (and between predictions).
    pub label_metric: LabelMetric,
    /// Where the log sits.
    pub aggregation: Aggregation,
    /// Add `M − |P_j|` to the denominator, as the official code does through
    /// `exp(prod * mask)` (every non-positive column contributes `e^0 = 1`).
    pub denominator_padding: bool,
    /// Multiply each row loss by its weight `eta_j`, as the AgeDB code does.
    pub outer_weight: bool,
    /// Count the row itself in `n_j`, the number of positives, as the NYUD2 code does.
    pub self_in_positive_count: bool,
    /// How row losses are reduced.
    pub reduction: Reduction,
}

impl Default for Config {
    fn default() -> Self {
        Self::paper()
    }
}

impl Config {
    /// The method as the paper states it: exp pushing with e = 0.01, ω = 1,
    /// τ = 0.07, `mean_of_logs`, `mean` reduction, no padding, no outer weight.
    pub fn paper() -> Self {
        Self {
            threshold: 1.0,
            pred_threshold: None,
            temperature: 0.07,
            pushing: Pushing {
                kind: PushingKind::Exp,
                scale: 0.01,
            },
            label_metric: LabelMetric::L1,
            aggregation: Aggregation::MeanOfLogs,
            denominator_padding: false,
            outer_weight: false,
            self_in_positive_count: false,
            reduction: Reduction::Mean,
        }
    }

    /// The official AgeDB-DIR / IMDB-WIKI-DIR code and the README snippet.
    ///
    /// Quirks it reproduces:
    /// - τ = 0.07: the AgeDB code hard-codes it and ignores its temperature argument;
    /// - `denominator_padding`: `exp(prod * mask)` adds `e^0 = 1` per non-positive column;
    /// - `outer_weight`: the row loss is multiplied again by the sample weight.
    pub fn official_agedb() -> Self {
        Self {
            denominator_padding: true,
            outer_weight: true,
            ..Self::paper()
        }
    }

    /// The official NYUD2-DIR code: linear pushing (e = 0.2), ω = 0.2 m, τ = 0.2,
    /// denominator padding, and the row itself counted in `n_j`; no outer weight.
    pub fn official_nyud2() -> Self {
        Self {
            threshold: 0.2,
            temperature: 0.2,
            pushing: Pushing {
                kind: PushingKind::Linear,
                scale: 0.2,
            },
            denominator_padding: true,
            self_in_positive_count: true,
            ..Self::paper()
        }
    }

    /// The paper's config with its thresholds in the labels' units: labels
    /// within one `resolution` step of each other are similar (ω =
    /// `resolution`), and so are predictions (ω̂ = ω). `range` (both ends
    /// included) is checked with it, as for [`crate::density::DensityConfig::for_labels`]
    /// and [`crate::fds::Fds::for_labels`], which derive LDS's and FDS's
    /// bins from the same two values. For ages 0–100 at resolution 1 it is
    /// the paper's config, whose ω and ω̂ are the official AgeDB-DIR values.
    ///
    /// ```
    /// use conr_core::Config;
    /// let depth = Config::for_labels((0.7, 10.0), 0.1)?;
    /// assert_eq!((depth.threshold, depth.effective_pred_threshold()), (0.1, 0.1));
    /// assert_eq!(Config::for_labels((0.0, 100.0), 1.0)?, Config::paper());
    /// # Ok::<(), conr_core::Error>(())
    /// ```
    pub fn for_labels(range: (f64, f64), resolution: f64) -> Result<Self, Error> {
        crate::density::label_steps(range, resolution)?;
        let config = Self {
            threshold: resolution,
            ..Self::paper()
        };
        config.validate()?;
        Ok(config)
    }

    /// ω̂, the prediction threshold in effect.
    pub fn effective_pred_threshold(&self) -> f64 {
        self.pred_threshold.unwrap_or(self.threshold)
    }

    /// Checks every value's domain. Engines call this before any work. The
    /// config is destructured whole, so that a new knob cannot go unchecked.
    pub fn validate(&self) -> Result<(), Error> {
        let Config {
            threshold,
            pred_threshold,
            temperature,
            pushing: Pushing { kind, scale },
            // Every value of these is valid.
            label_metric: _,
            aggregation: _,
            denominator_padding: _,
            outer_weight: _,
            self_in_positive_count: _,
            reduction: _,
        } = *self;
        let bad = |field, why| Err(Error::InvalidConfig { field, why });
        if threshold.is_nan() || threshold < 0.0 {
            return bad("threshold", "must be >= 0 (NaN is not allowed)");
        }
        if let Some(p) = pred_threshold
            && (p.is_nan() || p < 0.0)
        {
            return bad("pred_threshold", "must be >= 0 (NaN is not allowed)");
        }
        if !temperature.is_finite() || temperature <= 0.0 {
            return bad("temperature", "must be finite and > 0");
        }
        if !(1e-6..=1e6).contains(&temperature) {
            return bad("temperature", "must lie in [1e-6, 1e6]");
        }
        if !scale.is_finite() {
            return bad("pushing.scale", "must be finite");
        }
        if kind == PushingKind::Linear && scale < 0.0 {
            return bad(
                "pushing.scale",
                "linear pushing needs a scale >= 0, or weights turn negative",
            );
        }
        Ok(())
    }

    /// The config as values of `T`, precomputed for the hot loops. Validates first.
    pub fn params<T: Scalar>(&self) -> Result<Params<T>, Error> {
        self.validate()?;
        let params = Params {
            config: *self,
            threshold: cast(self.threshold),
            pred_threshold: cast(self.effective_pred_threshold()),
            inv_temperature: cast(1.0 / self.temperature),
            scale: cast(self.pushing.scale),
            log_scale: if self.pushing.scale > 0.0 {
                cast(libm::log(self.pushing.scale))
            } else {
                T::neg_infinity()
            },
        };
        if !params.scale.is_finite() {
            return Err(Error::InvalidConfig {
                field: "pushing.scale",
                why: "is too large for this precision",
            });
        }
        Ok(params)
    }
}

/// A config enum whose values have names: the names of the JSON schema, the
/// CLI and the Python keywords, in one table per enum.
///
/// ```
/// use conr_core::{Error, LabelMetric, Named};
/// assert_eq!(LabelMetric::from_name("linf"), Ok(LabelMetric::Linf));
/// assert_eq!(LabelMetric::Angular.name(), "angular");
/// let err = LabelMetric::from_name("cosine").unwrap_err();
/// assert_eq!(err.to_string(), "unknown `label_metric`: expected one of l1, l2, linf, angular");
/// ```
pub trait Named: Copy + PartialEq + 'static {
    /// The config field it fills.
    const FIELD: &'static str;
    /// Every value, with its name.
    const TABLE: &'static [(&'static str, Self)];
    /// Every name, in the table's order.
    const NAMES: &'static [&'static str];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(n, _)| n)
    }

    /// The value with this name.
    fn from_name(name: &str) -> Result<Self, Error> {
        Self::TABLE
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
            .ok_or(Error::UnknownName {
                field: Self::FIELD,
                expected: Self::NAMES,
            })
    }
}

/// A [`Named`] impl from one table: the names list is derived from it.
macro_rules! named {
    ($ty:ty, $field:literal, [$(($name:literal, $value:expr)),+ $(,)?]) => {
        impl Named for $ty {
            const FIELD: &'static str = $field;
            const TABLE: &'static [(&'static str, Self)] = &[$(($name, $value)),+];
            const NAMES: &'static [&'static str] = &[$($name),+];
        }
        $crate::knob::named_knob!($ty);
    };
}
pub(crate) use named;

named!(
    LabelMetric,
    "label_metric",
    [
        ("l1", LabelMetric::L1),
        ("l2", LabelMetric::L2),
        ("linf", LabelMetric::Linf),
        ("angular", LabelMetric::Angular),
    ]
);
named!(
    PushingKind,
    "pushing.kind",
    [
        ("exp", PushingKind::Exp),
        ("linear", PushingKind::Linear),
        ("constant", PushingKind::Constant),
    ]
);
named!(
    Aggregation,
    "aggregation",
    [
        ("mean_of_logs", Aggregation::MeanOfLogs),
        ("log_of_mean", Aggregation::LogOfMean),
    ]
);
named!(
    Reduction,
    "reduction",
    [
        ("mean", Reduction::Mean),
        ("mean_anchors", Reduction::MeanAnchors),
        ("sum", Reduction::Sum),
    ]
);

/// The presets, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// [`Config::paper`].
    Paper,
    /// [`Config::official_agedb`].
    OfficialAgedb,
    /// [`Config::official_nyud2`].
    OfficialNyud2,
}

named!(
    Preset,
    "preset",
    [
        ("paper", Preset::Paper),
        ("official_agedb", Preset::OfficialAgedb),
        ("official_nyud2", Preset::OfficialNyud2),
    ]
);

impl Preset {
    /// The preset's config.
    pub fn config(self) -> Config {
        match self {
            Preset::Paper => Config::paper(),
            Preset::OfficialAgedb => Config::official_agedb(),
            Preset::OfficialNyud2 => Config::official_nyud2(),
        }
    }
}

impl KnobValue for Pushing {
    const KIND: Kind = Kind::Pushing(PushingKind::NAMES);
    fn to_value(&self) -> Value<'static> {
        Value::Pushing {
            kind: self.kind.name(),
            scale: self.scale,
        }
    }
    fn from_value(value: Value<'_>) -> Option<Result<Self, Error>> {
        match value {
            Value::Pushing { kind, scale } => {
                Some(PushingKind::from_name(kind).map(|kind| Pushing { kind, scale }))
            }
            _ => None,
        }
    }
}

// ConR's knobs: the one list the schema, Python and the docs read.
knobs!(
    Config,
    "config knob",
    [
        (threshold: f64, ">= 0", "ω: labels within this distance are similar (`<=`)"),
        (
            pred_threshold: Option<f64>,
            ">= 0, or none for ω",
            "ω̂: predictions within this distance are confusable (`<=`)"
        ),
        (temperature: f64, "[1e-6, 1e6]", "τ, the softmax temperature"),
        (
            pushing: Pushing,
            "a finite scale; >= 0 for linear",
            "the pushing weight g(d): `exp` e^(e·d), `linear` e·d or `constant` 1, with its scale e"
        ),
        (
            label_metric: LabelMetric,
            "",
            "the distance between labels, and between predictions"
        ),
        (
            aggregation: Aggregation,
            "",
            "where the log sits: the official code's mean of logs, or the log of the mean"
        ),
        (
            denominator_padding: bool,
            "",
            "add `M − |P_j|` to each denominator, as the official code's `exp(prod * mask)` does"
        ),
        (
            outer_weight: bool,
            "",
            "multiply each row loss by its weight eta again, as the AgeDB code does"
        ),
        (
            self_in_positive_count: bool,
            "",
            "count the row itself among its positives n_j, as the NYUD2 code does"
        ),
        (
            reduction: Reduction,
            "",
            "how row losses become one number: over every row, over the anchors, or summed"
        ),
    ]
);

/// A validated [`Config`] with its numbers converted to `T` once.
#[derive(Debug, Clone, Copy)]
pub struct Params<T> {
    /// The config these came from.
    pub config: Config,
    /// ω.
    pub threshold: T,
    /// ω̂.
    pub pred_threshold: T,
    /// 1/τ.
    pub inv_temperature: T,
    /// The pushing scale e.
    pub scale: T,
    /// ln e, or −∞ when e ≤ 0 (only meaningful for linear pushing).
    pub log_scale: T,
}
