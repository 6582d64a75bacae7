//! `GpuConr::profiled`: the kernels a call dispatches, each with its
//! workgroups and device time, and the host's steps. Each test builds its
//! own context, because a profile counts every call on its context.

use conr_core::band::TilePlan;
use conr_core::{Config, Engine, Error};
use conr_tests::gpu::{gpu, required};
use conr_tests::random::agedb_like;
use conr_tests::skipped;
use conr_wgpu::{GpuConr, Profile};

/// The f32 kernels of one whole call, in dispatch order.
const WHOLE_CALL: [&str; 7] = [
    "check_values",
    "normalize",
    "row_stats",
    "finish_rows",
    "reduce_loss",
    "backward",
    "normalize_backward",
];

fn own_context(plan: TilePlan) -> Option<GpuConr> {
    gpu()?;
    let context = GpuConr::new().expect("another context on the adapter");
    if !context.can_profile() {
        // The software adapter CI runs on has timestamps; a GPU without them
        // is refused with a reason, which is all there is to test there.
        assert!(
            !required(),
            "CONR_REQUIRE_GPU=1, but the adapter cannot profile (no timestamp queries)"
        );
        let err = context.profiled(|| ()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    what: "profiling",
                    ..
                }
            ),
            "{err:?}"
        );
        skipped(
            "gpu::profile",
            "the adapter has no timestamp queries; profiling is refused with Error::Unsupported, as tested",
        );
        return None;
    }
    Some(context.with_plan(plan))
}

fn kernel<'p>(profile: &'p Profile, name: &str) -> &'p conr_wgpu::KernelTime {
    profile
        .kernels
        .iter()
        .find(|k| k.kernel == name)
        .unwrap_or_else(|| panic!("no {name} in {profile:?}"))
}

/// A profiled call gives the bits of an unprofiled one, and its profile
/// names every kernel once, with its workgroups and a device time inside
/// the host's wait for it.
#[test]
fn a_profiled_call_is_the_same_call_timed_kernel_by_kernel() {
    let Some(gpu) = own_context(TilePlan::Dense) else {
        return;
    };
    let (rows, dim) = (130, 24);
    let data = agedb_like::<f32>(rows, dim);
    let config = Config::official_agedb();
    let plain = gpu.compute(&data.batch(), &config).unwrap();
    let (timed, profile) = gpu
        .profiled(|| gpu.compute(&data.batch(), &config))
        .unwrap();
    let timed = timed.unwrap();
    assert_eq!(timed.loss.to_bits(), plain.loss.to_bits());
    assert!(
        timed
            .grad_features
            .iter()
            .zip(&plain.grad_features)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );

    assert_eq!(profile.calls, 1);
    let names: Vec<&str> = profile.kernels.iter().map(|k| k.kernel).collect();
    assert_eq!(names, WHOLE_CALL);
    assert!(profile.kernels.iter().all(|k| k.dispatches == 1));
    // One workgroup per 64-row tile in the per-row kernels; in the tile
    // kernels, one per 64-row tile and column range, and so few row tiles
    // get a range per column tile.
    let tiles = rows.div_ceil(64) as u64;
    assert_eq!(kernel(&profile, "row_stats").workgroups, tiles * tiles);
    assert_eq!(kernel(&profile, "backward").workgroups, tiles * tiles);
    assert_eq!(kernel(&profile, "normalize").workgroups, tiles);
    assert_eq!(kernel(&profile, "reduce_loss").workgroups, 1);

    // The tile kernels are the work; the device's time lies inside the
    // host's wait for it (a unit slip would miss by a factor of 1000).
    let device = profile.device_s();
    assert!(kernel(&profile, "row_stats").seconds > 0.0, "{profile:?}");
    assert!(kernel(&profile, "backward").seconds > 0.0, "{profile:?}");
    assert!(
        device > 0.0 && device <= 1.5 * profile.host_wait_s + 1e-3,
        "{profile:?}"
    );
    assert!(profile.host_record_s > 0.0 && profile.host_read_s > 0.0);

    // Finished: the next call is not counted anywhere, and another profile
    // starts from nothing.
    gpu.compute(&data.batch(), &config).unwrap();
    let ((), empty) = gpu.profiled(|| ()).unwrap();
    assert_eq!(empty, Profile::default());
}

/// Calls add up kernel by kernel; the band's two sides are two dispatches of
/// each tile kernel; the row phases count as a call each; and a profile
/// inside a profile is refused.
#[test]
fn profiles_add_up_over_calls_sides_and_phases() {
    let Some(gpu) = own_context(TilePlan::Band) else {
        return;
    };
    let data = agedb_like::<f32>(200, 8);
    let config = Config::official_agedb();
    assert_eq!(
        gpu.plan(&data.batch(), &config).unwrap().tiles,
        TilePlan::Band
    );
    let (outs, profile) = gpu
        .profiled(|| {
            let inner = gpu.profiled(|| ()).unwrap_err();
            assert!(matches!(inner, Error::Unsupported { .. }), "{inner:?}");
            (0..3)
                .map(|_| gpu.compute(&data.batch(), &config))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    assert_eq!(outs.unwrap().len(), 3);
    assert_eq!(profile.calls, 3);
    assert_eq!(kernel(&profile, "row_stats").dispatches, 6);
    assert_eq!(kernel(&profile, "backward").dispatches, 6);
    assert_eq!(kernel(&profile, "check_values").dispatches, 3);
    // Per call, each side's 4 row tiles times 4 column ranges.
    assert_eq!(kernel(&profile, "row_stats").workgroups, 3 * 2 * 4 * 4);

    // Phase 1, then phase 2, as a data-parallel worker runs them.
    let batch = data.batch();
    let (result, phases) = gpu
        .profiled(|| -> Result<(), Error> {
            let mut worker = gpu.worker(batch, &config)?;
            let outcomes = worker.forward(0..200)?;
            worker.backward(0..200, &outcomes)?;
            Ok(())
        })
        .unwrap();
    result.unwrap();
    // Both phases check and normalise the batch; the forward phase alone
    // builds the row statistics, and the backward phase alone the gradient.
    assert_eq!(phases.calls, 2);
    for (name, dispatches) in [
        ("check_values", 2),
        ("normalize", 2),
        ("row_stats", 1),
        ("backward", 1),
        ("normalize_backward", 1),
    ] {
        assert_eq!(kernel(&phases, name).dispatches, dispatches, "{phases:?}");
    }
}

/// At a training batch, 1,024 × 512, the tile kernels run at least 256
/// workgroups a call in the dense plan and the band alike: the columns of
/// each row tile are cut into ranges. (A recorded call takes the same plan:
/// `record` and `compute` share the call plan and the recording.)
#[test]
fn a_training_batch_runs_hundreds_of_workgroups() {
    for plan in [TilePlan::Dense, TilePlan::Band] {
        let Some(gpu) = own_context(plan) else {
            return;
        };
        let data = agedb_like::<f32>(1024, 512);
        let config = Config::official_agedb();
        assert_eq!(gpu.plan(&data.batch(), &config).unwrap().tiles, plan);
        let (out, profile) = gpu
            .profiled(|| gpu.compute(&data.batch(), &config))
            .unwrap();
        out.unwrap();
        for name in ["row_stats", "backward"] {
            let workgroups = kernel(&profile, name).workgroups;
            assert!(workgroups >= 256, "{plan:?} {name}: {workgroups}");
        }
    }
}

/// AgeDB's batch, 128 × 2048, is two row tiles: its logit tiles are summed
/// in ranges of features (`row_stats_depth`) and its gradient in blocks of
/// 64 features, at least 64 workgroups a call in the forward kernels and in
/// the backward ones.
#[test]
fn agedbs_batch_runs_sixty_four_workgroups() {
    let Some(gpu) = own_context(TilePlan::Auto) else {
        return;
    };
    let data = agedb_like::<f32>(128, 2048);
    let config = Config::official_agedb();
    let (out, profile) = gpu
        .profiled(|| gpu.compute(&data.batch(), &config))
        .unwrap();
    out.unwrap();
    let total = |prefix: &str| -> u64 {
        profile
            .kernels
            .iter()
            .filter(|k| k.kernel.starts_with(prefix))
            .map(|k| k.workgroups)
            .sum()
    };
    assert_eq!(kernel(&profile, "row_stats_depth").workgroups, 64);
    assert_eq!(kernel(&profile, "backward").workgroups, 64);
    assert!(
        total("row_stats") >= 64 && total("backward") >= 64,
        "{profile:?}"
    );
}

/// A device made without the timestamp features cannot profile, and says so.
#[test]
fn a_device_without_timestamps_is_refused() {
    let Some(shared) = gpu() else { return };
    if !shared.can_profile() {
        assert!(
            !required(),
            "CONR_REQUIRE_GPU=1, but the adapter cannot profile"
        );
        skipped("gpu::profile", "the adapter has no timestamp queries");
        return;
    }
    let (device, queue) = conr_tests::gpu::own_device(|limits| limits);
    let plain = GpuConr::from_device(device, queue).unwrap();
    assert!(!plain.can_profile());
    let err = plain.profiled(|| ()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TIMESTAMP_QUERY"), "{text}");
}
