//! Balanced MSE (Ren, Zhang, Liu and Yi, CVPR 2022): a regression loss on the
//! predictions that undoes the training label distribution, with a learnable
//! noise scale σ (noise variance `v = σ²`).
//!
//! Every form is `L = (2v / n) Σ_i t_i`, the factor `2v` a constant (the
//! reference detaches it), with a row term `t_i`:
//!
//! - **BMC** (batch-based Monte Carlo, [`Prior::Batch`]): the batch's labels
//!   stand for the prior. `t_i = −ℓ_ii + log Σ_j e^{ℓ_ij}` with
//!   `ℓ_ij = −‖p_i − y_j‖²/(2v)`: the cross-entropy of row i against target
//!   i. For labels of L > 1 dimensions this is the reference's isotropic form
//!   (covariance `vI`), whose normalising constant is the same for every j
//!   and cancels.
//! - **GAI** (a Gaussian-mixture prior, [`Prior::Gmm`]), one-dimensional:
//!   `t_i = (p_i − y_i)²/(2v) + ½ log v + log Σ_k π_k N(p_i; μ_k, σ_k² + v)`
//!   up to constants, that is `log Σ_k e^{log π_k − ½ log(σ_k² + v) − (p_i − μ_k)²/(2(σ_k² + v))}`.
//! - **BNI** (a histogram prior, [`Prior::Buckets`]), one-dimensional:
//!   `t_i = (p_i − y_i)²/(2v) + log Σ_b e^{log w_b − (p_i − c_b)²/(2v)}`.
//!
//! Each row function gives `t_i`, `∂t_i/∂p_i` and `∂t_i/∂v`; the engine
//! scales them (`∂L/∂σ = 2σ · ∂L/∂v`). A prior component of weight 0 adds
//! nothing (the reference's `log 0 = −∞` term), and every log-sum-exp runs
//! without overflow: the loss is finite for any finite input.

use crate::config::named;
use crate::math::{exp, ln};
use crate::rules::Rule;
use crate::{Error, Named, Scalar, cast};

use super::check_positive;
use super::lse::LogSum;

/// The label prior that Balanced MSE divides out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prior<'a> {
    /// BMC: the batch's own labels.
    Batch,
    /// GAI: a Gaussian mixture over one-dimensional labels.
    Gmm {
        /// The components' means μ_k.
        means: &'a [f64],
        /// The components' variances σ_k² (≥ 0).
        variances: &'a [f64],
        /// The components' weights π_k (≥ 0, not all 0; need not sum to 1).
        weights: &'a [f64],
    },
    /// BNI: bucket centres and the label density at each.
    Buckets {
        /// The buckets' centres c_b.
        centers: &'a [f64],
        /// The buckets' weights w_b (≥ 0, not all 0).
        weights: &'a [f64],
    },
}

/// The kind of a [`Prior`], by name: `bmc`, `gai`, `bni`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PriorKind {
    /// [`Prior::Batch`].
    Bmc,
    /// [`Prior::Gmm`].
    Gai,
    /// [`Prior::Buckets`].
    Bni,
}

named!(
    PriorKind,
    "variant",
    [
        ("bmc", PriorKind::Bmc),
        ("gai", PriorKind::Gai),
        ("bni", PriorKind::Bni)
    ]
);

impl Prior<'_> {
    /// Its kind.
    pub fn kind(&self) -> PriorKind {
        match self {
            Prior::Batch => PriorKind::Bmc,
            Prior::Gmm { .. } => PriorKind::Gai,
            Prior::Buckets { .. } => PriorKind::Bni,
        }
    }
}

/// Balanced MSE's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalancedMse<'a> {
    /// σ, the noise scale (> 0); the noise variance is σ².
    pub noise_sigma: f64,
    /// The label prior.
    pub prior: Prior<'a>,
}

impl BalancedMse<'_> {
    /// The config's own domain, and that of its prior against `label_dim`:
    /// σ finite and positive with σ² finite and positive, GAI and BNI on
    /// one-dimensional labels, component lists of one length, at least one
    /// component, finite values, variances and weights ≥ 0, some weight > 0.
    pub fn validate(&self, label_dim: usize) -> Result<(), Error> {
        let Self { noise_sigma, prior } = *self;
        check_positive("noise_sigma", noise_sigma)?;
        let variance = noise_sigma * noise_sigma;
        if !(variance.is_finite() && variance > 0.0) {
            return Err(Error::InvalidConfig {
                field: "noise_sigma",
                why: "its square must be finite and > 0",
            });
        }
        let (values, weights): (&[&[f64]], &[f64]) = match prior {
            Prior::Batch => return Ok(()),
            Prior::Gmm {
                means,
                variances,
                weights,
            } => {
                if variances.iter().any(|&v| v < 0.0) {
                    return Err(invalid("gmm.variances", "must be >= 0"));
                }
                (&[means, variances], weights)
            }
            Prior::Buckets { centers, weights } => (&[centers], weights),
        };
        if label_dim != 1 {
            return Err(invalid(
                "variant",
                "gai and bni take one-dimensional labels",
            ));
        }
        let field = match prior.kind() {
            PriorKind::Gai => "gmm",
            _ => "buckets",
        };
        if weights.is_empty() || values.iter().any(|v| v.len() != weights.len()) {
            return Err(invalid(
                field,
                "needs one or more components, each list of one length",
            ));
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !values.iter().all(|v| finite(v)) || !finite(weights) {
            return Err(invalid(field, "holds a NaN or infinite value"));
        }
        if weights.iter().any(|&w| w < 0.0) || !weights.iter().any(|&w| w > 0.0) {
            return Err(invalid(field, "weights must be >= 0 and not all 0"));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, why: &'static str) -> Error {
    Error::InvalidConfig { field, why }
}

/// A validated batch for Balanced MSE: predictions and labels, n×L each.
#[derive(Debug, Clone, Copy)]
pub struct BmseBatch<'a, T> {
    rows: usize,
    label_dim: usize,
    preds: &'a [T],
    labels: &'a [T],
}

impl<'a, T: Scalar> BmseBatch<'a, T> {
    /// Validates the sizes, the lengths and that every value is finite.
    pub fn new(
        rows: usize,
        label_dim: usize,
        preds: &'a [T],
        labels: &'a [T],
    ) -> Result<Self, Error> {
        if rows == 0 {
            return Err(Error::EmptyBatch);
        }
        if label_dim == 0 {
            return Err(Error::ZeroWidth { what: "labels" });
        }
        super::check_rows("preds", preds, rows, label_dim, Rule::PredsFinite)?;
        super::check_rows("labels", labels, rows, label_dim, Rule::LabelsFinite)?;
        Ok(Self {
            rows,
            label_dim,
            preds,
            labels,
        })
    }

    /// n, the number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// L, the label width.
    pub fn label_dim(&self) -> usize {
        self.label_dim
    }

    /// Row `i`'s prediction.
    #[inline]
    pub fn pred(&self, i: usize) -> &'a [T] {
        &self.preds[i * self.label_dim..(i + 1) * self.label_dim]
    }

    /// Row `i`'s label.
    #[inline]
    pub fn label(&self, i: usize) -> &'a [T] {
        &self.labels[i * self.label_dim..(i + 1) * self.label_dim]
    }

    /// The labels, n×L.
    pub fn labels(&self) -> &'a [T] {
        self.labels
    }
}

/// One row's term `t_i` and `∂t_i/∂v`, with `∂t_i/∂p_i` written into `grad`
/// (L values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowTerm<T> {
    /// `t_i`.
    pub term: T,
    /// `∂t_i/∂v`, v = σ².
    pub d_variance: T,
}

/// BMC's row term for row `i`, in one pass over the batch's labels: a
/// running log-sum-exp, with the softmax-weighted sums it needs rescaled
/// alongside it.
///
/// Each logit is taken against the row's own: `t_i = log Σ_j e^{−Δ_ij/2v}`
/// with `Δ_ij = ‖p_i − y_j‖² − ‖p_i − y_i‖²`, computed as
/// `Σ_c (y_jc − y_ic)·((y_jc − p_ic) + (y_ic − p_ic))`: `t_i` is
/// `−log softmax_i` of the reference's logits.
/// `Δ_ii = 0`, so the sum holds a term of 1 and a prediction far from every
/// label (whose squared distances overflow) still gives its finite term.
pub fn bmc_row<T: Scalar>(
    batch: &BmseBatch<'_, T>,
    variance: T,
    i: usize,
    grad: &mut [T],
) -> RowTerm<T> {
    let (p, own) = (batch.pred(i), batch.label(i));
    let half_inv = T::one() / (cast::<T>(2.0) * variance);
    let mut sum = LogSum::new();
    // Σ_j e^{ℓ_ij − m} Δ_ij, and in `grad` Σ_j e^{ℓ_ij − m} (y_j − y_i).
    let mut weighted_delta = T::zero();
    grad.iter_mut().for_each(|g| *g = T::zero());
    for j in 0..batch.rows() {
        let y = batch.label(j);
        let delta = y
            .iter()
            .zip(own)
            .zip(p)
            .fold(T::zero(), |acc, ((&yj, &yi), &pc)| {
                acc + (yj - yi) * ((yj - pc) + (yi - pc))
            });
        let logit = -delta * half_inv;
        if logit == T::neg_infinity() {
            // A weight of exactly 0: the row's own term keeps the sum positive.
            continue;
        }
        let rescale = sum.add(logit);
        let w = sum.shifted(logit);
        weighted_delta = weighted_delta * rescale + w * delta;
        for (g, (&yj, &yi)) in grad.iter_mut().zip(y.iter().zip(own)) {
            *g = *g * rescale + w * (yj - yi);
        }
    }
    // ∂Δ_ij/∂p_i = 2(y_i − y_j) and ∂(−Δ_ij/2v)/∂v = Δ_ij/(2v²).
    let (inv, total) = (T::one() / variance, sum.sum());
    grad.iter_mut().for_each(|g| *g = *g / total * inv);
    RowTerm {
        term: sum.get(),
        d_variance: weighted_delta / total * half_inv * inv,
    }
}

/// GAI's row term for row `i` (one-dimensional labels): `grad` has one value.
pub fn gai_row<T: Scalar>(
    batch: &BmseBatch<'_, T>,
    variance: T,
    means: &[f64],
    variances: &[f64],
    weights: &[f64],
    i: usize,
    grad: &mut [T],
) -> RowTerm<T> {
    let (p, y) = (batch.pred(i)[0], batch.label(i)[0]);
    let half = cast::<T>(0.5);
    let component = |k: usize| {
        let total = cast::<T>(variances[k]) + variance;
        let r = p - cast(means[k]);
        (
            total,
            r,
            ln(cast::<T>(weights[k])) - half * ln(total) - half * r * r / total,
        )
    };
    let mut sum = LogSum::new();
    for k in (0..weights.len()).filter(|&k| weights[k] > 0.0) {
        sum.add(component(k).2);
    }
    let log_z = sum.get();
    let inv = T::one() / variance;
    let mut d_pred = (p - y) * inv;
    let mut d_variance = -half * (p - y) * (p - y) * inv * inv + half * inv;
    for k in (0..weights.len()).filter(|&k| weights[k] > 0.0) {
        let (total, r, value) = component(k);
        let w = exp(value - log_z);
        d_pred = d_pred - w * r / total;
        d_variance = d_variance + w * half * (r * r / (total * total) - T::one() / total);
    }
    grad[0] = d_pred;
    RowTerm {
        term: half * (p - y) * (p - y) * inv + half * ln(variance) + log_z,
        d_variance,
    }
}

/// BNI's row term for row `i` (one-dimensional labels): `grad` has one value.
pub fn bni_row<T: Scalar>(
    batch: &BmseBatch<'_, T>,
    variance: T,
    centers: &[f64],
    weights: &[f64],
    i: usize,
    grad: &mut [T],
) -> RowTerm<T> {
    let (p, y) = (batch.pred(i)[0], batch.label(i)[0]);
    let half = cast::<T>(0.5);
    let inv = T::one() / variance;
    let bucket = |b: usize| {
        let r = p - cast(centers[b]);
        (r, ln(cast::<T>(weights[b])) - half * r * r * inv)
    };
    let mut sum = LogSum::new();
    for b in (0..weights.len()).filter(|&b| weights[b] > 0.0) {
        sum.add(bucket(b).1);
    }
    let log_z = sum.get();
    let mut d_pred = (p - y) * inv;
    let mut d_variance = -half * (p - y) * (p - y) * inv * inv;
    for b in (0..weights.len()).filter(|&b| weights[b] > 0.0) {
        let (r, value) = bucket(b);
        let w = exp(value - log_z);
        d_pred = d_pred - w * r * inv;
        d_variance = d_variance + w * half * r * r * inv * inv;
    }
    grad[0] = d_pred;
    RowTerm {
        term: half * (p - y) * (p - y) * inv + log_z,
        d_variance,
    }
}

/// Row `i`'s term under `prior` (validated against the batch).
pub fn row_term<T: Scalar>(
    batch: &BmseBatch<'_, T>,
    prior: &Prior<'_>,
    variance: T,
    i: usize,
    grad: &mut [T],
) -> RowTerm<T> {
    match *prior {
        Prior::Batch => bmc_row(batch, variance, i, grad),
        Prior::Gmm {
            means,
            variances,
            weights,
        } => gai_row(batch, variance, means, variances, weights, i, grad),
        Prior::Buckets { centers, weights } => bni_row(batch, variance, centers, weights, i, grad),
    }
}

/// The factors that turn row terms into the loss in `T`: `L = scale · Σ t_i`,
/// `∂L/∂p_i = scale · ∂t_i/∂p_i`, `∂L/∂σ = 2σ · scale · Σ ∂t_i/∂v`, with
/// `scale = 2σ²/n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale<T> {
    /// σ².
    pub variance: T,
    /// 2σ²/n.
    pub scale: T,
    /// 2σ, `∂v/∂σ`.
    pub d_sigma: T,
}

impl<T: Scalar> Scale<T> {
    /// Validates `config` against the batch and converts it to `T`: σ² must
    /// be a normal number of `T` whose reciprocal is finite.
    pub fn new(config: &BalancedMse<'_>, batch: &BmseBatch<'_, T>) -> Result<Self, Error> {
        config.validate(batch.label_dim())?;
        let sigma = config.noise_sigma;
        let variance: T = cast(sigma * sigma);
        if !(variance.is_normal() && (T::one() / variance).is_finite()) {
            return Err(invalid(
                "noise_sigma",
                "its square must be a normal number in the engine's precision",
            ));
        }
        Ok(Self {
            variance,
            scale: cast::<T>(2.0) * variance / cast(batch.rows() as f64),
            d_sigma: cast(2.0 * sigma),
        })
    }

    /// Row `i`'s term under `prior`, with its `∂L/∂p_i` written into `grad`
    /// (already scaled): returns `(t_i, ∂t_i/∂v)`, the unscaled summands.
    pub fn row(
        &self,
        batch: &BmseBatch<'_, T>,
        prior: &Prior<'_>,
        i: usize,
        grad: &mut [T],
    ) -> (T, T) {
        let term = row_term(batch, prior, self.variance, i, grad);
        grad.iter_mut().for_each(|g| *g = *g * self.scale);
        (term.term, term.d_variance)
    }
}
