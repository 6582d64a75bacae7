//! Every tolerance the tests use, in one table.
//!
//! A value passes when `|got − want| <= abs + rel · max(|got|, |want|)`, and a
//! vector passes when every element does, each against its own magnitude: a
//! row with a small gradient is held to as many digits as a row with a large
//! one. A failed vector check reports its worst element (by the share of its
//! own tolerance it uses).

/// A tolerance: `abs + rel · max(|got|, |want|)`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// The absolute part.
    pub abs: f64,
    /// The relative part.
    pub rel: f64,
}

impl Tol {
    /// The allowed error between `got` and `want`.
    pub fn allowed(&self, got: f64, want: f64) -> f64 {
        self.abs + self.rel * got.abs().max(want.abs())
    }

    /// How much of its tolerance `got` uses (at most 1 passes; infinite for
    /// a non-finite `got` against a finite `want`).
    fn used(&self, got: f64, want: f64) -> f64 {
        if got == want {
            return 0.0;
        }
        let err = (got - want).abs();
        if !err.is_finite() {
            return f64::INFINITY;
        }
        err / self.allowed(got, want)
    }

    /// Checks a scalar.
    pub fn scalar(&self, what: &str, got: f64, want: f64) -> Result<(), String> {
        if self.used(got, want) <= 1.0 {
            Ok(())
        } else {
            Err(format!(
                "{what}: got {got:e}, want {want:e}, |Δ| = {:e} > {:e}",
                (got - want).abs(),
                self.allowed(got, want)
            ))
        }
    }

    /// Checks a vector element by element.
    pub fn vector(&self, what: &str, got: &[f64], want: &[f64]) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
        }
        let worst = got
            .iter()
            .zip(want)
            .map(|(&g, &w)| self.used(g, w))
            .enumerate()
            .fold(
                (0, 0.0f64),
                |best, (i, u)| if u > best.1 { (i, u) } else { best },
            );
        if worst.1 <= 1.0 {
            return Ok(());
        }
        let i = worst.0;
        Err(format!(
            "{what}[{i}]: got {:e}, want {:e}, |Δ| = {:e} > {:e} ({:.1}× the tolerance)",
            got[i],
            want[i],
            (got[i] - want[i]).abs(),
            self.allowed(got[i], want[i]),
            worst.1
        ))
    }

    /// The largest share of its tolerance any element uses: a measure of how
    /// close a vector comes to failing.
    pub fn worst(&self, got: &[f64], want: &[f64]) -> f64 {
        got.iter()
            .zip(want)
            .map(|(&g, &w)| self.used(g, w))
            .fold(0.0, f64::max)
    }
}

/// A loss and a gradient budget.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// For the loss.
    pub loss: Tol,
    /// For each element of the gradient.
    pub grad: Tol,
}

/// f64 against the fixtures (float64 PyTorch autograd), the fixture
/// README's tolerances applied to each element: the loss to 1e-9 relative
/// (1e-9 absolute near 0), each gradient element to 1e-9 relative plus
/// 1e-15 absolute. The worst element of every fixture uses 0.12 of it on the
/// CPU engines.
pub const F64_FIXTURE: Budget = Budget {
    loss: Tol {
        abs: 1e-9,
        rel: 1e-9,
    },
    grad: Tol {
        abs: 1e-15,
        rel: 1e-9,
    },
};

/// f32 (CPU or GPU) against the f64 fixtures, the fixture README's
/// tolerances applied to each element: the loss within 1e-4 relative plus
/// 1e-6 absolute; each gradient element within 2e-3 relative plus 1e-7
/// absolute. The worst element uses 0.31 of it on the CPU and 0.36 on
/// lavapipe.
pub const F32_FIXTURE: Budget = Budget {
    loss: Tol {
        abs: 1e-6,
        rel: 1e-4,
    },
    grad: Tol {
        abs: 1e-7,
        rel: 2e-3,
    },
};

/// Two f64 engines on the same batch: only summation order may differ. Over
/// 400 random batches the worst gradient element used 0.16 of it.
pub const F64_VS_F64: Budget = Budget {
    loss: Tol {
        abs: 1e-12,
        rel: 1e-10,
    },
    grad: Tol {
        abs: 1e-14,
        rel: 1e-10,
    },
};

/// An f32 engine against the f64 reference on random batches with τ >= 0.05.
/// Logits reach 1/τ, so the absolute part scales with 1/τ (see
/// [`scaled_by_inv_temperature`]). Over 400 random batches (M up to 200,
/// D up to 64, every knob) the worst gradient element used 0.28 of it on
/// the fast engine and 0.26 on lavapipe.
pub const F32_VS_F64: Budget = Budget {
    loss: Tol {
        abs: 2e-6,
        rel: 2e-4,
    },
    grad: Tol {
        abs: 1e-6,
        rel: 1e-3,
    },
};

/// A GPU (f32) engine against the f64 reference: as [`F32_VS_F64`], since the GPU
/// sums in a different order but in the same precision.
pub const GPU_VS_CPU: Budget = F32_VS_F64;

/// The GPU engine in mixed precision (f16 tile inputs on tensor cores, f32
/// accumulation and statistics) against the f64 reference. The normalised
/// features and the tiles of H are rounded to f16 (a relative error of up to
/// 2^-11 ≈ 4.9e-4 each, 8000 times f32's), so a logit z_j·z_k/τ is off by up
/// to about 1e-3/τ; per element the absolute part is f32's scaled by the
/// ratio of the two roundings, with a margin. The absolute parts widen with
/// 1/τ like the f32 budgets.
pub const MIXED_VS_F64: Budget = Budget {
    loss: Tol {
        abs: 1e-5,
        rel: 2e-3,
    },
    grad: Tol {
        abs: 5e-4,
        rel: 1e-2,
    },
};

/// Central finite differences (h = 1e-6 relative) against the analytic f64 gradient.
pub const F64_VS_FD: Tol = Tol {
    abs: 1e-7,
    rel: 1e-5,
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
    got: &conr_core::Output<f64>,
    want: &conr_core::Output<f64>,
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
