//! The candle op against candle's own autograd of an ops-only ConR, against
//! the conr reference engine, and against finite differences; and a few
//! optimizer steps that lower the loss.

// The losses ConR is combined with, as candle ops.
mod companions;
// FDS, as a candle layer.
mod fds;

use approx::{assert_abs_diff_eq, assert_relative_eq};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use conr_candle::{Config, conr_loss};
use conr_core::pairs::{Pair, RowView};
use conr_core::{Batch, Inputs, Shape};
use conr_cpu::{Engine, Reference};

/// A small batch with positives, negatives and rows without either.
fn batch(m: usize, d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let features = (0..m * d)
        .map(|i| (((i * 7919) % 41) as f64 - 20.0) / 10.0 + 0.05)
        .collect();
    let labels = (0..m).map(|j| ((j * 5) % 7) as f64).collect();
    let preds = (0..m).map(|j| 3.0 + ((j * 3) % 4) as f64 * 0.4).collect();
    let weights = (0..m).map(|j| 0.5 + (j % 3) as f64 * 0.5).collect();
    (features, labels, preds, weights)
}

/// ConR written with candle tensor ops only (DESIGN §1, mean_of_logs), masks
/// and pushing weights computed on the host. Differentiated by candle itself.
fn ops_only(
    features: &Tensor,
    labels: &[f64],
    preds: &[f64],
    weights: &[f64],
    config: &Config,
) -> candle_core::Result<Tensor> {
    let (m, _) = features.dims2()?;
    let dev = features.device();
    let params = config.params::<f64>().unwrap();
    let (mut p, mut q, mut log_s) = (vec![0.0; m * m], vec![0.0; m * m], vec![0.0; m * m]);
    for j in 0..m {
        for k in 0..m {
            let view = |i: usize| RowView {
                index: i,
                label: &labels[i..i + 1],
                pred: &preds[i..i + 1],
            };
            match Pair::classify(&params, view(j), view(k), weights[j].ln()) {
                Pair::Positive => p[j * m + k] = 1.0,
                Pair::Negative { log_weight } => {
                    q[j * m + k] = 1.0;
                    log_s[j * m + k] = log_weight;
                }
                Pair::Neither => {}
            }
        }
    }
    let positives: Vec<f64> = (0..m).map(|j| p[j * m..(j + 1) * m].iter().sum()).collect();
    let anchors: Vec<bool> = (0..m)
        .map(|j| q[j * m..(j + 1) * m].iter().sum::<f64>() > 0.0)
        .collect();
    let n_anchors = anchors.iter().filter(|&&a| a).count();
    let factor = conr_core::stats::reduction_factor::<f64>(config.reduction, m, n_anchors);
    let count: Vec<f64> = positives
        .iter()
        .map(|&c| {
            c + if config.self_in_positive_count {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let coef: Vec<f64> = (0..m)
        .map(|j| {
            if anchors[j] && positives[j] > 0.0 {
                factor * if config.outer_weight { weights[j] } else { 1.0 }
            } else {
                0.0
            }
        })
        .collect();
    let pad: Vec<f64> = positives
        .iter()
        .map(|&c| {
            if config.denominator_padding {
                m as f64 - c
            } else {
                0.0
            }
        })
        .collect();
    let t = |v: Vec<f64>, shape: (usize, usize)| Tensor::from_vec(v, shape, dev);

    let norm = features.sqr()?.sum_keepdim(1)?.sqrt()?;
    let z = features.broadcast_div(&norm)?;
    let s = (z.matmul(&z.t()?)? / config.temperature)?;
    let (p, q, log_s) = (t(p, (m, m))?, t(q, (m, m))?, t(log_s, (m, m))?);
    let denominator =
        ((p.mul(&s.exp()?)? + q.mul(&(&s + &log_s)?.exp()?)?)?.sum_keepdim(1)? + t(pad, (m, 1))?)?;
    let share: Vec<f64> = (0..m)
        .map(|j| {
            if count[j] > 0.0 {
                positives[j] / count[j]
            } else {
                0.0
            }
        })
        .collect();
    let inv: Vec<f64> = count
        .iter()
        .map(|&c| if c > 0.0 { 1.0 / c } else { 0.0 })
        .collect();
    let row = (denominator.log()?.mul(&t(share, (m, 1))?)?
        - p.mul(&s)?.sum_keepdim(1)?.mul(&t(inv, (m, 1))?)?)?;
    row.mul(&t(coef, (m, 1))?)?.sum_all()
}

/// ∂loss/∂var through candle's autograd, flattened to f64.
fn grad_of(loss: &Tensor, var: &Var) -> Vec<f64> {
    let grads = loss.backward().unwrap();
    let grad = grads
        .get(var.as_tensor())
        .expect("a gradient for the features");
    grad.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn configs() -> Vec<Config> {
    vec![
        Config {
            temperature: 0.3,
            ..Config::paper()
        },
        Config {
            temperature: 0.2,
            ..Config::official_agedb()
        },
        Config {
            threshold: 1.0,
            ..Config::official_nyud2()
        },
    ]
}

#[test]
fn gradient_equals_autograd_of_the_ops_only_version_and_the_reference() {
    let (m, d) = (12, 5);
    let (f, y, p, w) = batch(m, d);
    let device = Device::Cpu;
    for config in configs() {
        let features = Var::from_slice(&f, (m, d), &device).unwrap();
        let labels = Tensor::new(y.as_slice(), &device).unwrap();
        let preds = Tensor::new(p.as_slice(), &device).unwrap();
        let weights = Tensor::new(w.as_slice(), &device).unwrap();
        let loss = conr_loss(
            features.as_tensor(),
            &labels,
            &preds,
            Some(&weights),
            &config,
        )
        .unwrap();
        let grad = grad_of(&loss, &features);

        let reference = Reference
            .compute(
                &Batch::new(
                    Shape {
                        rows: m,
                        dim: d,
                        label_dim: 1,
                    },
                    Inputs {
                        features: &f,
                        labels: &y,
                        preds: &p,
                        eta: Some(&w),
                    },
                )
                .unwrap(),
                &config,
            )
            .unwrap();
        let ops = ops_only(features.as_tensor(), &y, &p, &w, &config).unwrap();
        let ops_grad = grad_of(&ops, &features);
        let loss = loss.to_scalar::<f64>().unwrap();
        assert!(reference.loss > 0.0, "the batch has anchors");
        assert_relative_eq!(loss, reference.loss, max_relative = 1e-12);
        assert_relative_eq!(ops.to_scalar::<f64>().unwrap(), loss, max_relative = 1e-10);
        let scale = ops_grad.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        for ((g, r), o) in grad.iter().zip(&reference.grad_features).zip(&ops_grad) {
            assert_abs_diff_eq!(g, r, epsilon = 1e-12 * scale); // the reference
            assert_abs_diff_eq!(g, o, epsilon = 1e-9 * scale); // candle's own autograd
        }
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let (m, d) = (10, 4);
    let (f, y, p, w) = batch(m, d);
    let device = Device::Cpu;
    let labels = Tensor::new(y.as_slice(), &device).unwrap();
    let preds = Tensor::new(p.as_slice(), &device).unwrap();
    let weights = Tensor::new(w.as_slice(), &device).unwrap();
    let config = Config {
        temperature: 0.25,
        ..Config::official_agedb()
    };
    let loss_at = |values: &[f64]| {
        let x = Tensor::from_slice(values, (m, d), &device).unwrap();
        conr_loss(&x, &labels, &preds, Some(&weights), &config)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let features = Var::from_slice(&f, (m, d), &device).unwrap();
    let loss = conr_loss(
        features.as_tensor(),
        &labels,
        &preds,
        Some(&weights),
        &config,
    )
    .unwrap();
    let grad = grad_of(&loss, &features);
    let scale = grad.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let mut x = f.clone();
    for i in 0..x.len() {
        let h = 1e-6;
        let v = x[i];
        x[i] = v + h;
        let up = loss_at(&x);
        x[i] = v - h;
        let down = loss_at(&x);
        x[i] = v;
        let numeric = (up - down) / (2.0 * h);
        assert_abs_diff_eq!(numeric, grad[i], epsilon = 1e-6 * scale + 1e-8);
    }
}

#[test]
fn f32_and_f64_agree() {
    let (m, d) = (16, 6);
    let (f, y, p, w) = batch(m, d);
    let device = Device::Cpu;
    let config = Config::official_agedb();
    let run = |dtype: DType| {
        let x = Var::from_slice(&f, (m, d), &device).unwrap();
        let x = Var::from_tensor(&x.as_tensor().to_dtype(dtype).unwrap()).unwrap();
        let cast = |v: &[f64]| Tensor::new(v, &device).unwrap().to_dtype(dtype).unwrap();
        let loss = conr_loss(
            x.as_tensor(),
            &cast(&y),
            &cast(&p),
            Some(&cast(&w)),
            &config,
        )
        .unwrap();
        assert_eq!(loss.dtype(), dtype);
        let grad = loss
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        (
            loss.to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            grad.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        )
    };
    let (l32, g32) = run(DType::F32);
    let (l64, g64) = run(DType::F64);
    assert_relative_eq!(l32, l64, max_relative = 1e-4, epsilon = 1e-6);
    let scale = g64.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    for (a, b) in g32.iter().zip(&g64) {
        assert_abs_diff_eq!(a, b, epsilon = 2e-3 * scale + 1e-7);
    }
}

#[test]
fn a_few_optimizer_steps_lower_the_loss() {
    let device = Device::Cpu;
    let (m, d_in) = (24, 5);
    let (x, y, p, _) = batch(m, d_in);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let encoder = candle_nn::linear(d_in, 8, vb.pp("encoder")).unwrap();
    let x = Tensor::from_vec(
        x.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
        (m, d_in),
        &device,
    )
    .unwrap();
    let labels = Tensor::new(
        y.iter().map(|&v| v as f32).collect::<Vec<f32>>().as_slice(),
        &device,
    )
    .unwrap();
    let preds = Tensor::new(
        p.iter().map(|&v| v as f32).collect::<Vec<f32>>().as_slice(),
        &device,
    )
    .unwrap();
    let config = Config {
        temperature: 0.5,
        ..Config::official_agedb()
    };
    let loss = |enc: &candle_nn::Linear| {
        let features = candle_core::Module::forward(enc, &x).unwrap();
        conr_loss(&features, &labels, &preds, None, &config).unwrap()
    };
    let mut opt = candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 0.05,
            ..Default::default()
        },
    )
    .unwrap();
    let first = loss(&encoder).to_scalar::<f32>().unwrap();
    for _ in 0..40 {
        opt.backward_step(&loss(&encoder)).unwrap();
    }
    let last = loss(&encoder).to_scalar::<f32>().unwrap();
    assert!(last < 0.95 * first, "{first} -> {last}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = Device::Cpu;
    let features = Tensor::zeros((4, 3), DType::F32, &device).unwrap();
    let three = Tensor::new(&[1.0f32, 2.0, 3.0], &device).unwrap();
    assert!(conr_loss(&features, &three, &three, None, &Config::paper()).is_err());
    let ints = Tensor::zeros((4, 3), DType::U32, &device).unwrap();
    let four = Tensor::new(&[1.0f32, 2.0, 3.0, 4.0], &device).unwrap();
    assert!(conr_loss(&ints, &four, &four, None, &Config::paper()).is_err());
    let bad = Config {
        temperature: -1.0,
        ..Config::paper()
    };
    assert!(conr_loss(&features, &four, &four, None, &bad).is_err());
}

/// Every case of the core's bad-input table through the op, in f64 and f32:
/// refused with the core's own error, which `core_error` finds again.
#[test]
fn every_bad_case_gives_the_cores_error() {
    let device = Device::Cpu;
    let mut ran = 0;
    for case in conr_tests::bad::cases() {
        let Shape {
            rows,
            dim,
            label_dim,
        } = case.shape;
        if rows > 1 << 20 {
            continue; // no tensor has this shape
        }
        for dtype in [DType::F64, DType::F32] {
            let t2 = |v: &[f64], cols: usize| {
                let shape = (v.len().checked_div(cols).unwrap_or(rows), cols);
                Tensor::from_vec(v.to_vec(), shape, &device)
                    .and_then(|t| t.to_dtype(dtype))
                    .unwrap()
            };
            let features = t2(&case.features, dim);
            let (labels, preds) = (t2(&case.labels, label_dim), t2(&case.preds, label_dim));
            let eta = case.eta.as_ref().map(|w| {
                Tensor::new(w.as_slice(), &device)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            });
            let got = conr_loss(&features, &labels, &preds, eta.as_ref(), &case.config);
            let err = got.map(|_| ()).unwrap_err();
            // The core's error itself, to match on, and its message in the text.
            assert_eq!(
                conr_candle::core_error(&err),
                Some(&case.error),
                "{} {dtype:?}: {err}",
                case.name
            );
            assert!(err.to_string().contains(&case.error.to_string()));
            ran += 1;
        }
    }
    assert_eq!(ran, 2 * (conr_tests::bad::cases().len() - 1));
}
