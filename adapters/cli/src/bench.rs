//! `conr bench`: forward plus backward on random AgeDB-like batches, timed
//! next to one M×M×D f32 GEMM of the same shape on the same threads, so the
//! result reads as GEMM-equivalents, a ratio that survives noisy machines.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use conr_core::density::DensityConfig;
use conr_core::shard::{Header, even_slices, message_len, read_message, write_message};
use conr_core::stats::RowOutcome;
use conr_core::{Batch, Config, Engine, Inputs, Named, Shape};
use conr_cpu::{density_weights, gram};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::gpu::Gpu;
use crate::memory;
use conr_core::band::TilePlan;

/// `--plan auto|band|dense`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanArg {
    /// The band where it visits fewer tiles than the dense plan, every tile otherwise.
    Auto,
    /// Only the tiles that can hold a positive or a negative.
    Band,
    /// Every tile.
    Dense,
}

impl From<PlanArg> for TilePlan {
    fn from(p: PlanArg) -> Self {
        match p {
            PlanArg::Auto => TilePlan::Auto,
            PlanArg::Band => TilePlan::Band,
            PlanArg::Dense => TilePlan::Dense,
        }
    }
}

/// The label distribution of `conr bench`'s batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Labels {
    /// Integer ages ~ N(35, 15) in [0, 100], predictions within N(0, 7) years.
    Agedb,
    /// Integer ages uniform over [0, 100], predictions within N(0, 7) years.
    Uniform,
    /// AgeDB ages with every prediction within ω̂ of every other (in
    /// [34.5, 35.5]), as a model predicts at the start of training: almost
    /// every pair is a positive or a negative, the band plan's worst case.
    Collapsed,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The engine's name (`conr_engines`).
    pub backend: String,
    /// (M, D) pairs.
    pub sizes: Vec<(usize, usize)>,
    /// Timed repetitions per size (the median is reported).
    pub reps: usize,
    /// Untimed repetitions first.
    pub warmup: usize,
    /// Threads for the engine and the GEMM (0: one per core).
    pub threads: usize,
    /// The GPU engine in mixed precision (`--precision mixed`); every engine
    /// computes in f32 otherwise.
    pub mixed: bool,
    /// Which tiles the fast engines visit.
    pub plan: TilePlan,
    /// The label distribution.
    pub labels: Labels,
    /// Run the data-parallel protocol with this many workers too.
    pub shards: Option<usize>,
    /// GPU only: time `reps` more calls kernel by kernel (`GpuConr::profiled`).
    pub profile: bool,
}

/// One worker of a `--shards` run: its rows, its medians, what it sends.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    /// The rows it owns.
    pub rows: usize,
    /// Median seconds of its preparation and phase 1 (`Engine::worker`, `Worker::forward`).
    pub forward_s: f64,
    /// Median seconds of its phase 2 (`Worker::backward`), on the same preparation.
    pub backward_s: f64,
    /// Bytes of its message of outcomes (f32), all it sends beyond the
    /// feature gather.
    pub sent_bytes: usize,
}

/// One size's result; `--json` prints one per line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The engine, as named on the command line.
    pub backend: String,
    /// Rows.
    pub m: usize,
    /// Feature width.
    pub d: usize,
    /// Threads used.
    pub threads: usize,
    /// `"f32"`, or `"mixed"` (the GPU's f16 tensor-core tiles).
    pub precision: &'static str,
    /// `"band"` or `"dense"`: the plan the engine took for this batch (the
    /// reference engine always visits every pair).
    pub plan: &'static str,
    /// The label distribution.
    pub labels: Labels,
    /// The share of the M² pairs that are positives or negatives.
    pub pair_share: f64,
    /// The share of the engine's tiles that the plan visits (1 for dense;
    /// both band sides together may exceed 1).
    pub tile_share: f64,
    /// Median seconds of one forward plus backward pass (f32).
    pub fwd_bwd_s: f64,
    /// Median seconds of one M×M×D f32 GEMM on the CPU with the fast engine's
    /// kernels; `null` for the GPU, whose GEMM yardstick comes from
    /// `bench/torch_conr.py` run beside it.
    pub gemm_s: Option<f64>,
    /// `fwd_bwd_s / gemm_s`.
    pub gemm_equivalents: Option<f64>,
    /// CPU: peak heap bytes allocated by the engine above the inputs. GPU: device
    /// bytes of the working buffers and the gradient, beyond the inputs.
    pub peak_bytes: u64,
    /// GPU only: median seconds of `GpuConr::record` on buffers already on the
    /// device, with the submission and the wait for it, but no upload and no
    /// readback: the cost a framework that keeps its tensors on the GPU pays.
    pub record_s: Option<f64>,
    /// GPU only, M <= 8192, not on software adapters: median seconds per call
    /// of ten `record` calls in one submission: the GPU's own time for a call, without the latency of
    /// one submission and wait each.
    pub record_batched_s: Option<f64>,
    /// GPU only: `"band"` or `"dense"`, the plan the record path took (its
    /// band built on the device).
    pub record_plan: Option<&'static str>,
    /// GPU only: the share of tiles the record path visited, counted on the device.
    pub record_tile_share: Option<f64>,
    /// With `--shards W`: each worker, run one after another.
    pub workers: Option<Vec<WorkerRow>>,
    /// With `--profile`: where one call's time went, on the device and the host.
    pub profile: Option<ProfileRow>,
}

/// One call's time by kernel and by host step: a `GpuConr::profiled`
/// profile of `calls` calls, divided by their number.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileRow {
    /// Calls profiled (`--reps`), after the timed ones.
    pub calls: usize,
    /// Host seconds from a call's start to its submission.
    pub host_record_s: f64,
    /// Host seconds from the submission until the results were mapped.
    pub host_wait_s: f64,
    /// Host seconds copying the results out.
    pub host_read_s: f64,
    /// Device seconds from the first clear to the last copy.
    pub device_s: f64,
    /// Device seconds clearing the outputs before the first dispatch.
    pub clears_s: f64,
    /// Device seconds copying the results to the readback buffers.
    pub copies_s: f64,
    /// Each kernel, in the order first dispatched.
    pub kernels: Vec<KernelRow>,
}

/// One kernel's share of a call.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRow {
    /// Its entry point.
    pub kernel: &'static str,
    /// Dispatches per call.
    pub dispatches: f64,
    /// Workgroups per call, over those dispatches.
    pub workgroups: f64,
    /// Device seconds per call.
    pub device_s: f64,
}

/// Parses `1024x512,4096x512`.
pub fn parse_sizes(text: &str) -> Result<Vec<(usize, usize)>> {
    text.split(',')
        .map(|item| {
            let (m, d) = item
                .trim()
                .split_once(['x', 'X'])
                .with_context(|| format!("size {item:?} is not MxD, e.g. 1024x512"))?;
            let m: usize = m.parse().with_context(|| format!("bad M in {item:?}"))?;
            let d: usize = d.parse().with_context(|| format!("bad D in {item:?}"))?;
            if m < 2 || d == 0 {
                bail!("size {item:?}: M must be >= 2 and D >= 1");
            }
            Ok((m, d))
        })
        .collect()
}

/// A random batch in f32 with `Labels` ages (AgeDB-like by default: integer
/// ages ~ N(35, 15) in [0, 100], predictions within N(0, 7) years), N(0, 1)
/// features, `sqrt_inv` weights.
pub struct RandomBatch {
    /// The sizes.
    pub shape: Shape,
    /// M·D features.
    pub features: Vec<f32>,
    /// M labels.
    pub labels: Vec<f32>,
    /// M predictions.
    pub preds: Vec<f32>,
    /// M weights.
    pub weights: Vec<f32>,
}

impl RandomBatch {
    /// Draws a batch from `seed`.
    pub fn new(m: usize, d: usize, seed: u64, kind: Labels) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<f32> = (0..m)
            .map(|_| match kind {
                Labels::Uniform => rng.random_range(0.0f64..=100.0).round() as f32,
                _ => (35.0 + 15.0 * rng.sample::<f64, _>(StandardNormal))
                    .round()
                    .clamp(0.0, 100.0) as f32,
            })
            .collect();
        let preds = labels
            .iter()
            .map(|&y| match kind {
                Labels::Collapsed => (35.0 + rng.random_range(-0.5f64..0.5)) as f32,
                _ => y + (7.0 * rng.sample::<f64, _>(StandardNormal)) as f32,
            })
            .collect();
        let features = (0..m * d)
            .map(|_| rng.sample::<f64, _>(StandardNormal) as f32)
            .collect();
        let weights = density_weights(&DensityConfig::default(), &labels)?;
        Ok(Self {
            shape: Shape {
                rows: m,
                dim: d,
                label_dim: 1,
            },
            features,
            labels,
            preds,
            weights,
        })
    }

    /// The batch view.
    pub fn batch(&self) -> Result<Batch<'_, f32>> {
        let inputs = Inputs {
            features: &self.features,
            labels: &self.labels,
            preds: &self.preds,
            eta: Some(&self.weights),
        };
        Ok(Batch::new(self.shape, inputs)?)
    }
}

pub(crate) fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Seconds of one M×M×D f32 GEMM. Above 1 GiB of output it runs in row slabs
/// into one reused buffer: the same flops, without an M×M allocation.
pub(crate) fn time_gemm(z: &[f32], m: usize, d: usize, threads: usize) -> Result<f64> {
    let slab = ((1usize << 28) / m).clamp(1, m);
    let mut out = vec![0.0f32; slab * m];
    let start = Instant::now();
    for r in (0..m).step_by(slab) {
        let rows = slab.min(m - r);
        // Z[r..r+rows] · Zᵀ: the slab's rows against every row.
        gram(
            &z[r * d..(r + rows) * d],
            z,
            rows,
            m,
            d,
            &mut out[..rows * m],
            threads,
        )?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Times each of `workers` workers' two phases (median of `--reps`), one
/// worker after another, with the exchange of outcomes between the phases.
fn time_workers(
    engine: &dyn Engine<f32>,
    batch: &Batch<'_, f32>,
    config: &Config,
    workers: usize,
    options: &BenchOptions,
) -> Result<Vec<WorkerRow>> {
    if workers == 0 {
        bail!("--shards must be at least 1");
    }
    let slices = even_slices(batch.rows(), workers);
    let header = Header::new(config, batch.shape());
    let mut forward = vec![Vec::new(); workers];
    let mut backward = vec![Vec::new(); workers];
    let mut sent = vec![0; workers];
    for rep in 0..options.warmup + options.reps {
        let timed = rep >= options.warmup;
        let mut all = vec![RowOutcome::default(); batch.rows()];
        // Each worker prepares once (timed with its phase 1) and keeps it for phase 2.
        let mut kept = Vec::with_capacity(workers);
        for (w, slice) in slices.iter().enumerate() {
            let start = Instant::now();
            let mut worker = engine.worker(*batch, config)?;
            let outcomes = worker.forward(slice.clone())?;
            let elapsed = start.elapsed().as_secs_f64();
            kept.push(worker);
            let mut message = vec![0.0f32; message_len(outcomes.len())];
            write_message(&header, slice.start, &outcomes, &mut message)?;
            read_message(&header, &message, &mut all)?;
            sent[w] = message.len() * std::mem::size_of::<f32>();
            if timed {
                forward[w].push(elapsed);
            }
        }
        for (w, (slice, worker)) in slices.iter().zip(&mut kept).enumerate() {
            let start = Instant::now();
            worker.backward(slice.clone(), &all)?;
            if timed {
                backward[w].push(start.elapsed().as_secs_f64());
            }
        }
    }
    Ok(slices
        .iter()
        .enumerate()
        .map(|(w, slice)| WorkerRow {
            rows: slice.len(),
            forward_s: median(forward[w].clone()),
            backward_s: median(backward[w].clone()),
            sent_bytes: sent[w],
        })
        .collect())
}

/// Calls per submission for `record_batched_s`.
const BATCHED: usize = 10;
/// The largest batch `record_batched_s` is measured for.
const BATCHED_MAX_ROWS: usize = 8192;

/// Runs the benchmark, calling `progress` with a line per step.
pub fn run(options: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<Vec<BenchRow>> {
    if options.reps == 0 {
        bail!("--reps must be at least 1");
    }
    // One engine for the whole run: the pool or the GPU context is built once.
    let chosen = conr_engines::choose(
        &options.backend,
        &conr_engines::Options {
            threads: options.threads,
            plan: options.plan,
            mixed: options.mixed,
        },
    )?;
    let engine_f32: &dyn Engine<f32> = &*chosen.engine;
    // The GPU context, for what only it has: recording on device buffers.
    let gpu = Gpu::of(&chosen);
    let precision = engine_f32.precision().name();
    if options.profile && gpu.is_none() {
        bail!("--profile times the gpu engine's kernels (--backend gpu)");
    }
    if let Some(gpu) = gpu {
        progress(&format!("GPU: {} ({precision})", gpu.adapter_name()));
    }
    // The CPU threads the engine and the GEMM run on (the GPU's host thread: 1).
    let threads = match (gpu, options.threads) {
        (Some(_), _) => 1,
        (None, 0) => std::thread::available_parallelism().map_or(1, usize::from),
        (None, n) => n,
    };
    let config = Config::official_agedb();
    let mut rows = Vec::new();
    for &(m, d) in &options.sizes {
        let data = RandomBatch::new(m, d, 0x5EED ^ (m as u64) << 20 ^ d as u64, options.labels)?;
        let batch = data.batch()?;
        let mut times = Vec::new();
        let mut peak = 0;
        let mut pair_share = 0.0;
        for rep in 0..options.warmup + options.reps {
            let timed = rep >= options.warmup;
            progress(&format!(
                "M={m} D={d}: {} {}/{}",
                if timed { "rep" } else { "warmup" },
                if timed {
                    rep - options.warmup + 1
                } else {
                    rep + 1
                },
                if timed { options.reps } else { options.warmup }
            ));
            let baseline = memory::start();
            let start = Instant::now();
            let out = engine_f32.compute(&batch, &config)?;
            let elapsed = start.elapsed().as_secs_f64();
            peak = peak.max(match gpu {
                Some(gpu) => gpu.working_bytes(),
                None => memory::peak_since(baseline) as u64,
            });
            if !out.loss.is_finite() {
                bail!("M={m} D={d}: the loss is not finite");
            }
            let pairs: u64 = out
                .positives
                .iter()
                .zip(&out.negatives)
                .map(|(&p, &q)| u64::from(p) + u64::from(q))
                .sum();
            pair_share = pairs as f64 / (m as f64 * m as f64);
            drop(out);
            if timed {
                times.push(elapsed);
            }
        }
        let fwd_bwd_s = median(times);
        // The CPU's yardstick; a GPU's comes from bench/torch_conr.py beside it.
        let gemm_s = match gpu {
            Some(_) => None,
            None => {
                progress(&format!("M={m} D={d}: GEMM"));
                // One call untimed, as bench/torch_conr.py does for torch's:
                // the first maps its buffers. Each waits for the engine's
                // threads to go to sleep, which until then take turns on the
                // cores with the GEMM's (at 128×2048, a third of its time).
                let mut gemm_times = Vec::new();
                for rep in 0..1 + options.reps.min(3) {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    let elapsed = time_gemm(&data.features, m, d, threads)?;
                    if rep > 0 {
                        gemm_times.push(elapsed);
                    }
                }
                Some(median(gemm_times))
            }
        };
        let (record_s, record_batched_s, record_plan) = match gpu {
            Some(gpu) => {
                progress(&format!("M={m} D={d}: record path"));
                let (one, plan) = gpu.time_record(&data, &config, options, 1)?;
                // Where one call takes milliseconds, ten in a row tell apart its
                // fixed cost; larger batches, and software adapters, would only
                // take long.
                let batched = if m <= BATCHED_MAX_ROWS && !gpu.is_software() {
                    Some(gpu.time_record(&data, &config, options, BATCHED)?.0)
                } else {
                    None
                };
                (Some(one), batched, Some(plan))
            }
            None => (None, None, None),
        };
        let workers = match options.shards {
            None => None,
            Some(w) => {
                progress(&format!("M={m} D={d}: {w} workers"));
                Some(time_workers(engine_f32, &batch, &config, w, options)?)
            }
        };
        let profile = match gpu {
            Some(gpu) if options.profile => {
                progress(&format!("M={m} D={d}: profile"));
                Some(gpu.profile(|| {
                    for _ in 0..options.reps {
                        engine_f32.compute(&batch, &config)?;
                    }
                    Ok(())
                })?)
            }
            _ => None,
        };
        let plan = engine_f32.plan(&batch, &config)?;
        rows.push(BenchRow {
            backend: engine_f32.name().to_string(),
            m,
            d,
            threads,
            precision,
            plan: plan.tiles.name(),
            labels: options.labels,
            pair_share,
            tile_share: plan.tile_share,
            fwd_bwd_s,
            gemm_s,
            gemm_equivalents: gemm_s.map(|g| fwd_bwd_s / g),
            peak_bytes: peak,
            record_s,
            record_batched_s,
            record_plan: record_plan.map(|p| p.tiles.name()),
            record_tile_share: record_plan.map(|p| p.tile_share),
            workers,
            profile,
        });
    }
    Ok(rows)
}
