//! Every bad case of `conr_tests::bad` (one per error the core's rules give)
//! on every engine path, each refused with exactly the core's error: the CPU
//! engines in f64 and f32, the GPU engine in f32 and f64, the data-parallel
//! protocol on each of them, and the GPU's record path, whose device check
//! reports the value rules.

use std::collections::BTreeSet;

use conr_core::band::TilePlan;
use conr_core::{Engine, Error, FloatEngine};
use conr_cpu::{Fast, Reference};
use conr_tests::bad::{BATCH_VARIANTS, Check, cases, expect, valid, variant};
use conr_tests::gpu::{DeviceBatch, gpu};

/// The CPU engines: the reference, and the fast engine on both plans.
fn cpu_engines() -> [(&'static str, Box<dyn FloatEngine>); 3] {
    [
        ("reference", Box::new(Reference)),
        ("fast band", Box::new(Fast::new())),
        (
            "fast dense",
            Box::new(Fast::new().with_plan(TilePlan::Dense)),
        ),
    ]
}

/// Runs `path` on every case and collects the mismatches.
fn every_case(mut path: impl FnMut(&conr_tests::bad::BadCase) -> Result<(), String>) {
    let failures: Vec<String> = cases().iter().filter_map(|c| path(c).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_error_a_batch_can_give() {
    let covered: BTreeSet<&str> = cases().iter().map(|c| variant(&c.error)).collect();
    let wanted: BTreeSet<&str> = BATCH_VARIANTS.into_iter().collect();
    assert_eq!(covered, wanted);
    // Each case's error is the core's own, and the valid base batch is valid.
    every_case(|case| {
        expect(
            case,
            "Batch::new + check",
            case.with_batch::<f64, _>(|b| b.check(&case.config)),
        )
    });
    valid()
        .compute::<f64>(&Reference)
        .expect("the base batch is valid");
}

#[test]
fn cpu_engines_refuse_every_case() {
    for (name, engine) in cpu_engines() {
        every_case(|case| {
            expect(case, &format!("{name} f64"), case.compute::<f64>(&*engine))?;
            expect(case, &format!("{name} f32"), case.compute::<f32>(&*engine))
        });
    }
}

#[test]
fn the_sharded_protocol_refuses_every_case() {
    for (name, engine) in cpu_engines() {
        for workers in [1, 3] {
            every_case(|case| {
                let path = format!("{name}, {workers} workers");
                expect(case, &path, case.sharded::<f64>(&*engine, workers))
            });
        }
    }
}

#[test]
fn the_gpu_refuses_every_case() {
    let Some(gpu) = gpu() else { return };
    every_case(|case| {
        expect(case, "gpu f32", case.compute::<f32>(gpu))?;
        expect(case, "gpu f64", case.compute::<f64>(gpu))?;
        expect(case, "gpu, 3 workers", case.sharded::<f32>(gpu, 3))
    });
}

/// The record path: the host refuses bad shapes and configs before it looks
/// at the buffers, buffers that do not fit the shape by name, and the device
/// checks the values, makes the outputs NaN, and reports the core's error
/// through the status word.
#[test]
fn the_record_path_refuses_every_case() {
    let Some(gpu) = gpu() else { return };
    let mut seen = BTreeSet::new();
    every_case(|case| {
        let [f, y, p, w] = case.converted::<f32>();
        let eta = case.eta.as_ref().map(|_| w.as_slice());
        let on_device =
            DeviceBatch::new(gpu, case.shape, &f, &y, &p, eta).expect("the inputs fit the device");
        let run = on_device.run(gpu, &case.config);
        seen.insert(variant(&case.error));
        match case.check() {
            Check::Shape | Check::Config => expect(case, "record", run),
            Check::Lengths => match run {
                Err(Error::BadBuffer { what: "labels", .. }) => Ok(()),
                other => Err(format!("record, {}: got {other:?}", case.name)),
            },
            Check::Values => {
                let got = run.map_err(|e| format!("record, {}: refused: {e}", case.name))?;
                if got.status.error() != Some(case.error.clone()) {
                    return Err(format!(
                        "record, {}: the device reported {:?}, want {:?}",
                        case.name,
                        got.status.error(),
                        case.error
                    ));
                }
                if !got.loss.is_nan() || !got.grad.iter().all(|g| g.is_nan()) {
                    return Err(format!("record, {}: outputs are not NaN", case.name));
                }
                Ok(())
            }
        }
    });
    let wanted: BTreeSet<&str> = BATCH_VARIANTS.into_iter().collect();
    assert_eq!(seen, wanted);
    // A valid batch on the same path: a clean status and a finite loss.
    let case = valid();
    let [f, y, p, w] = case.converted::<f32>();
    let got = DeviceBatch::new(gpu, case.shape, &f, &y, &p, Some(&w))
        .expect("the inputs fit the device")
        .run(gpu, &case.config)
        .unwrap();
    assert_eq!(got.status.error(), None);
    assert!(got.loss.is_finite());
    let want = Engine::<f32>::compute(
        &Reference,
        &conr_core::Batch::new(
            case.shape,
            conr_core::Inputs {
                features: &f,
                labels: &y,
                preds: &p,
                eta: Some(&w),
            },
        )
        .unwrap(),
        &case.config,
    )
    .unwrap();
    approx::assert_relative_eq!(got.loss, want.loss, max_relative = 1e-4);
}
