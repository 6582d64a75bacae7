//! One GPU context for all GPU tests, built once. Without an adapter the GPU
//! tests skip with a printed reason, unless `CONR_REQUIRE_GPU=1` (as in CI),
//! where a missing adapter fails them.

use std::sync::OnceLock;

use conr_wgpu::GpuConr;

/// The shared context, or `None` (with the reason printed) when there is no adapter.
pub fn gpu() -> Option<&'static GpuConr> {
    static GPU: OnceLock<Result<GpuConr, String>> = OnceLock::new();
    match GPU.get_or_init(|| GpuConr::new().map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu),
        Err(reason) => {
            if std::env::var("CONR_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("CONR_REQUIRE_GPU=1 but there is no GPU: {reason}");
            }
            eprintln!("skipping a GPU test: {reason}");
            None
        }
    }
}
