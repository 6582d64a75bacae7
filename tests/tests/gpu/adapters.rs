//! The gpu engine by PCI address (`gpu@0000:01:00.0`): what the torch op's
//! `engine="auto"` names for a CUDA tensor's GPU.

use conr_core::{Engine, Error};
use conr_engines::{engine, gpu_adapters};
use conr_tests::gpu::gpu;

/// `gpu@` takes a PCI address, and one where no adapter sits is an error
/// that names it, not another adapter.
#[test]
fn gpu_at_an_address_is_that_adapter_or_an_error() {
    let bad = engine("gpu@01:00").map(drop).expect_err("not an address");
    assert!(
        matches!(
            bad,
            Error::InvalidConfig {
                field: "engine",
                ..
            }
        ),
        "{bad:?}"
    );
    let none = engine("gpu@ffff:ff:1f.7")
        .map(drop)
        .expect_err("no adapter there");
    assert!(matches!(none, Error::Unavailable(_)), "{none:?}");
    assert!(none.to_string().contains("ffff:ff:1f.7"), "{none}");
}

/// Every adapter that reports an address opens by it. (Lavapipe, CI's,
/// and the GL backend report none.)
#[test]
fn every_adapter_with_an_address_opens_by_it() {
    if gpu().is_none() {
        return;
    }
    for pci in gpu_adapters().into_iter().filter_map(|a| a.pci) {
        let gpu = engine(&format!("gpu@{pci}")).expect("the adapter at its own address");
        assert_eq!(Engine::<f32>::name(&*gpu), "gpu");
    }
}
