//! FDS's fixtures through the core's serial pass and every CPU engine's, in
//! f64 and f32, and the smoothing window as the reference holds it.

use conr_core::Engine;
use conr_core::fds::FdsState;
use conr_cpu::{Fast, Reference};
use conr_tests::fds::{F32_TOL, F64_TOL, cases, check};

#[test]
fn windows_are_the_references_to_the_bit() {
    for (name, case) in cases() {
        let state = FdsState::<f64>::new(case.fds().unwrap(), case.feature_dim).unwrap();
        let want = case.kernel_window.as_ref().expect("a kernel_window");
        assert_eq!(state.window(), &want[..], "{name}");
    }
}

#[test]
fn fixtures_hold_in_f64_on_every_pass() {
    let fast = Fast::with_threads(2).unwrap();
    let engines: [Option<&dyn Engine<f64>>; 3] = [None, Some(&Reference), Some(&fast)];
    for (name, case) in cases() {
        for engine in engines {
            let steps = case.replay::<f64>(engine).unwrap();
            let by = engine.map_or("core", |e| e.name());
            check(&case, &steps, F64_TOL).unwrap_or_else(|e| panic!("{name} on {by}: {e}"));
        }
    }
}

#[test]
fn fixtures_hold_in_f32_on_every_pass() {
    let fast = Fast::with_threads(2).unwrap();
    let engines: [Option<&dyn Engine<f32>>; 3] = [None, Some(&Reference), Some(&fast)];
    for (name, case) in cases() {
        for engine in engines {
            let steps = case.replay::<f32>(engine).unwrap();
            let by = engine.map_or("core", |e| e.name());
            check(&case, &steps, F32_TOL).unwrap_or_else(|e| panic!("{name} on {by}: {e}"));
        }
    }
}
