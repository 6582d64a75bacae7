//! The `config` objects: ConR's (a preset and overrides) and the density weights'.

use conr_core::density::{DensityConfig, Kernel, Reweight};
use conr_core::{Aggregation, Config, LabelMetric, Named, Preset, Pushing, PushingKind, Reduction};
use serde::Deserialize;

use crate::Error;

/// The `config` object of a loss case. Every key is optional; `preset`
/// (default `paper`) fills the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigJson {
    /// `paper`, `official_agedb` or `official_nyud2`.
    pub preset: Option<String>,
    /// ω.
    pub threshold: Option<f64>,
    /// ω̂.
    pub pred_threshold: Option<f64>,
    /// τ.
    pub temperature: Option<f64>,
    /// `{"kind": "exp"|"linear"|"constant", "scale": e}`.
    pub pushing: Option<PushingJson>,
    /// `l1`, `l2`, `linf`, `angular`.
    pub label_metric: Option<String>,
    /// `mean_of_logs`, `log_of_mean`.
    pub aggregation: Option<String>,
    /// Add `M − |P_j|` to the denominator.
    pub denominator_padding: Option<bool>,
    /// Multiply row losses by their eta.
    pub outer_weight: Option<bool>,
    /// Count the row itself in `n_j`.
    pub self_in_positive_count: Option<bool>,
    /// `mean`, `mean_anchors`, `sum`.
    pub reduction: Option<String>,
}

/// The `pushing` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushingJson {
    /// `exp`, `linear` or `constant`.
    pub kind: String,
    /// The scale e (default 0).
    #[serde(default)]
    pub scale: f64,
}

/// The value named `value` at `key`, from the core's name table.
pub(crate) fn named<N: Named>(key: &'static str, value: &str) -> Result<N, Error> {
    N::from_name(value).map_err(|source| Error::Name {
        key,
        value: value.to_string(),
        source,
    })
}

impl ConfigJson {
    /// The core config, validated.
    pub fn to_config(&self) -> Result<Config, Error> {
        let preset = self.preset.as_deref().unwrap_or("paper");
        let mut c = named::<Preset>("config.preset", preset)?.config();
        let ConfigJson {
            preset: _,
            threshold,
            pred_threshold,
            temperature,
            pushing,
            label_metric,
            aggregation,
            denominator_padding,
            outer_weight,
            self_in_positive_count,
            reduction,
        } = self;
        c.threshold = threshold.unwrap_or(c.threshold);
        c.pred_threshold = pred_threshold.or(c.pred_threshold);
        c.temperature = temperature.unwrap_or(c.temperature);
        if let Some(p) = pushing {
            c.pushing = Pushing {
                kind: named::<PushingKind>("config.pushing.kind", &p.kind)?,
                scale: p.scale,
            };
        }
        if let Some(m) = label_metric {
            c.label_metric = named::<LabelMetric>("config.label_metric", m)?;
        }
        if let Some(a) = aggregation {
            c.aggregation = named::<Aggregation>("config.aggregation", a)?;
        }
        if let Some(r) = reduction {
            c.reduction = named::<Reduction>("config.reduction", r)?;
        }
        c.denominator_padding = denominator_padding.unwrap_or(c.denominator_padding);
        c.outer_weight = outer_weight.unwrap_or(c.outer_weight);
        c.self_in_positive_count = self_in_positive_count.unwrap_or(c.self_in_positive_count);
        c.validate()?;
        Ok(c)
    }
}

/// The density `config` object; missing keys take [`DensityConfig::default`]'s values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DensityJson {
    /// `sqrt_inv` or `inverse`.
    pub reweight: Option<String>,
    /// `gaussian`, `triang`, `laplace`, or null.
    pub kernel: Option<String>,
    /// The window size.
    pub kernel_size: Option<usize>,
    /// The window width.
    pub sigma: Option<f64>,
    /// The number of bins.
    pub bins: Option<usize>,
    /// The bin width.
    pub bin_width: Option<f64>,
    /// The lower edge of bin 0.
    pub min_label: Option<f64>,
}

impl DensityJson {
    /// The core density config, validated.
    pub fn to_config(&self) -> Result<DensityConfig, Error> {
        let d = DensityConfig::default();
        let reweight = match &self.reweight {
            Some(r) => named::<Reweight>("config.reweight", r)?,
            None => d.reweight,
        };
        let kernel = match &self.kernel {
            Some(k) => Some(named::<Kernel>("config.kernel", k)?),
            None => None,
        };
        let config = DensityConfig {
            reweight,
            kernel,
            kernel_size: self.kernel_size.unwrap_or(d.kernel_size),
            sigma: self.sigma.unwrap_or(d.sigma),
            bins: self.bins.unwrap_or(d.bins),
            bin_width: self.bin_width.unwrap_or(d.bin_width),
            min_label: self.min_label.unwrap_or(d.min_label),
        };
        config.validate()?;
        Ok(config)
    }
}
