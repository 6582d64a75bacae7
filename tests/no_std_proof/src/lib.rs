//! Proof that conr-core builds without std: the whole forward pass of a
//! four-row batch, on the stack, in a `#![no_std]` static library.
#![no_std]

use conr_core::normalize::normalize;
use conr_core::pairs::Pair;
use conr_core::stats::{RowStats, reduction_factor};
use conr_core::{Batch, Config, Inputs, Shape};

const ROWS: usize = 4;
const DIM: usize = 2;

/// The official AgeDB loss of a fixed batch, or NaN on error.
#[unsafe(no_mangle)]
pub extern "C" fn conr_no_std_loss() -> f32 {
    let features = [1.0f32, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.8];
    let labels = [20.0f32, 20.5, 60.0, 60.5];
    let preds = [40.0f32, 40.2, 40.4, 40.1];
    let shape = Shape { rows: ROWS, dim: DIM, label_dim: 1 };
    let config = Config::official_agedb();
    let inputs = Inputs { features: &features, labels: &labels, preds: &preds, eta: None };
    let Ok(batch) = Batch::new(shape, inputs) else {
        return f32::NAN;
    };
    let Ok(params) = batch.check(&config) else {
        return f32::NAN;
    };
    let mut z = [0.0f32; ROWS * DIM];
    for (j, zj) in z.chunks_exact_mut(DIM).enumerate() {
        normalize(batch.feature_row(j), zj);
    }
    let (mut total, mut anchors) = (0.0f32, 0);
    for j in 0..ROWS {
        let mut stats = RowStats::default();
        for k in 0..ROWS {
            let pair = Pair::classify(&params, batch.row(j), batch.row(k), 0.0);
            let s = (z[j * DIM] * z[k * DIM] + z[j * DIM + 1] * z[k * DIM + 1]) * params.inv_temperature;
            stats.push(pair, s);
        }
        let outcome = stats.finish(&params, ROWS, 1.0);
        anchors += usize::from(outcome.anchor);
        total += outcome.loss;
    }
    total * reduction_factor::<f32>(config.reduction, ROWS, anchors)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
