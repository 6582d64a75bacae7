//! Every tolerance the tests use, in one table.
//!
//! A check passes when `|got − want| <= abs + rel · max(floor, scale)`, where
//! `scale` is `|want|` for a scalar and `max_i |want_i|` for a vector. A vector
//! check reports its worst element, never a mean.
//!
//! Plain comparisons in the tests use `approx`; this table is for what `approx`
//! cannot say: a gradient tolerance scaled by `max |g|` and floored, named per
//! engine and precision.

/// A tolerance: `abs + rel · max(floor, scale)`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// The absolute part.
    pub abs: f64,
    /// The relative part.
    pub rel: f64,
    /// The smallest scale the relative part applies to.
    pub floor: f64,
}

impl Tol {
    /// The allowed error for a value (or vector) of magnitude `scale`.
    pub fn allowed(&self, scale: f64) -> f64 {
        self.abs + self.rel * scale.max(self.floor)
    }

    /// Checks a scalar.
    pub fn scalar(&self, what: &str, got: f64, want: f64) -> Result<(), String> {
        let err = (got - want).abs();
        // approx's `abs_diff_eq` with the budget's scaled epsilon; a relative
        // check alone cannot say `floor` (losses near 0 keep an absolute budget).
        if approx::abs_diff_eq!(got, want, epsilon = self.allowed(want.abs())) {
            Ok(())
        } else {
            Err(format!(
                "{what}: got {got:e}, want {want:e}, |Δ| = {err:e} > {:e}",
                self.allowed(want.abs())
            ))
        }
    }

    /// Checks a vector element by element against one scale, `max |want|`.
    pub fn vector(&self, what: &str, got: &[f64], want: &[f64]) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
        }
        let scale = want.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        let allowed = self.allowed(scale);
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| {
                if g.is_finite() {
                    (g - w).abs()
                } else {
                    f64::INFINITY
                }
            })
            .enumerate()
            .fold(
                (0, 0.0f64),
                |best, (i, e)| if e > best.1 { (i, e) } else { best },
            );
        if worst.1 <= allowed {
            Ok(())
        } else {
            let i = worst.0;
            Err(format!(
                "{what}[{i}]: got {:e}, want {:e}, |Δ| = {:e} > {allowed:e} (max |want| = {scale:e})",
                got[i], want[i], worst.1
            ))
        }
    }
}

/// A loss and a gradient budget.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// For the loss.
    pub loss: Tol,
    /// For the gradient.
    pub grad: Tol,
}

/// f64 against the fixtures: `|Δloss| <= 1e-9·max(1, |loss|)`, `max|Δgrad| <= 1e-9·max|grad| + 1e-15`.
pub const F64_FIXTURE: Budget = Budget {
    loss: Tol {
        abs: 0.0,
        rel: 1e-9,
        floor: 1.0,
    },
    grad: Tol {
        abs: 1e-15,
        rel: 1e-9,
        floor: 0.0,
    },
};

/// f32 (CPU or GPU) against the f64 fixtures: loss within 1e-4 relative plus
/// 1e-6 absolute; `max|Δgrad| <= 2e-3·max|grad| + 1e-7`.
pub const F32_FIXTURE: Budget = Budget {
    loss: Tol {
        abs: 1e-6,
        rel: 1e-4,
        floor: 0.0,
    },
    grad: Tol {
        abs: 1e-7,
        rel: 2e-3,
        floor: 0.0,
    },
};

/// Two f64 engines on the same batch: only summation order may differ.
pub const F64_VS_F64: Budget = Budget {
    loss: Tol {
        abs: 1e-12,
        rel: 1e-10,
        floor: 0.0,
    },
    grad: Tol {
        abs: 1e-13,
        rel: 1e-9,
        floor: 0.0,
    },
};

/// An f32 engine against the f64 reference on random batches with τ >= 0.05.
/// Logits reach 1/τ, so the absolute part scales with 1/τ (see [`scaled_by_inv_temperature`]).
pub const F32_VS_F64: Budget = Budget {
    loss: Tol {
        abs: 2e-6,
        rel: 2e-4,
        floor: 0.0,
    },
    grad: Tol {
        abs: 2e-6,
        rel: 3e-3,
        floor: 0.0,
    },
};

/// A GPU (f32) engine against the f64 reference: as [`F32_VS_F64`], since the GPU
/// sums in a different order but in the same precision.
pub const GPU_VS_CPU: Budget = F32_VS_F64;

/// The GPU engine in mixed precision (f16 tile inputs on tensor cores, f32
/// accumulation and statistics) against the f64 reference. The normalised
/// features and the tiles of H are rounded to f16 (a relative error of up to
/// 2^-11 ≈ 4.9e-4 each), so a logit z_j·z_k/τ is off by up to about 1e-3/τ.
/// On an H100 the worst errors were 7.8e-4 (loss, relative) and 4.9e-3 of
/// max|g| (gradient) over the fixtures, 1.2e-4 and 6.1e-4 over 200 random
/// batches (every knob, τ in [0.05, 2]), and 6.9e-7 and 4.5e-4 on AgeDB-like
/// batches up to M = 4096: this budget is about twice the worst. The
/// absolute parts widen with 1/τ like the f32 budgets.
pub const MIXED_VS_F64: Budget = Budget {
    loss: Tol {
        abs: 1e-5,
        rel: 2e-3,
        floor: 0.0,
    },
    grad: Tol {
        abs: 1e-6,
        rel: 1e-2,
        floor: 0.0,
    },
};

/// Central finite differences (h = 1e-6 relative) against the analytic f64 gradient.
pub const F64_VS_FD: Tol = Tol {
    abs: 1e-7,
    rel: 1e-5,
    floor: 0.0,
};

/// Widens a budget's absolute parts by 1/τ, for random batches where logits reach 1/τ.
pub fn scaled_by_inv_temperature(budget: Budget, temperature: f64) -> Budget {
    let k = (1.0 / temperature).max(1.0);
    Budget {
        loss: Tol {
            abs: budget.loss.abs * k,
            ..budget.loss
        },
        grad: Tol {
            abs: budget.grad.abs * k,
            ..budget.grad
        },
    }
}

/// Checks two engines' outputs against each other within `budget`: the loss
/// and gradient within tolerance, anchors and counts exactly.
pub fn agree(
    budget: &Budget,
    got: &conr_cpu::Output<f64>,
    want: &conr_cpu::Output<f64>,
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::test_runner::TestCaseError;
    budget
        .loss
        .scalar("loss", got.loss, want.loss)
        .map_err(TestCaseError::fail)?;
    budget
        .grad
        .vector("grad", &got.grad_features, &want.grad_features)
        .map_err(TestCaseError::fail)?;
    proptest::prop_assert_eq!(&got.anchors, &want.anchors);
    proptest::prop_assert_eq!(&got.positives, &want.positives);
    proptest::prop_assert_eq!(&got.negatives, &want.negatives);
    Ok(())
}
