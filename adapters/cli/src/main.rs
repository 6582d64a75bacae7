//! `conr`: ConR, the contrastive regularizer for deep imbalanced regression, from the command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use conr_cli::bench::{self, BenchOptions, BenchRow, Labels, PlanArg, ProfileRow, parse_sizes};
use conr_cli::bench_dir::{self, Loss};
#[cfg(feature = "demo")]
use conr_cli::demo::{self, DemoOptions};
use conr_cli::{companion, compute, gpu};
use conr_core::{Named, Precision};
use conr_schema::{Input, MetricsCase, WeightsCase, read_json};

/// `--backend`: an engine's name (conr_engines).
fn backend_names() -> PossibleValuesParser {
    PossibleValuesParser::new(conr_engines::Kind::NAMES)
}

/// `--precision`: a precision's name (conr_core::Precision).
fn precision(name: &str) -> Result<Precision, String> {
    Precision::from_name(name).map_err(|e| e.to_string())
}

/// ConR: the contrastive regularizer for deep imbalanced regression (ICLR 2024).
///
/// Every command prints one JSON object on stdout. On bad input it prints a
/// one-line error on stderr and exits with status 1.
#[derive(Parser)]
#[command(name = "conr", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute the loss, its gradient, the anchors and the pair counts of one batch.
    ///
    /// Prints {"loss", "grad_features", "anchors", "positives", "negatives", "backend", "precision"}.
    /// For a dir-fixture/1 case (RankSim, Rank-N-Contrast or Balanced MSE), prints
    /// {"loss", "grad_features"} or {"loss", "grad_preds", "grad_noise_sigma"}, with
    /// "backend" and "precision" (and RankSim's "sampled_rows"). For an fds-fixture/1
    /// case (FDS over a training run), prints {"loss": "fds", "steps": [...]}: per step,
    /// "after" (every buffer, by the reference's names, and "epoch_buffer") and, where the
    /// step smooths a batch, "smooth" {"out", "grad_features"}.
    Compute {
        /// A JSON file in the conr-fixture/1 schema: n, d, label_dim, config, features,
        /// labels, preds and optional weights; or in the dir-fixture/1 schema, whose
        /// `loss` (`ranksim`, `rnc`, `balanced_mse`) selects the loss; or in the
        /// fds-fixture/1 schema (feature_dim, config, steps). An `expected` field, and an
        /// FDS step's expected buffers and outputs, are ignored.
        #[arg(long, short)]
        input: PathBuf,
        /// The engine: `reference` (plain loops, the oracle), `cpu` (the fast engine,
        /// also called `fast`) or `gpu` (WGSL through wgpu; honours WGPU_BACKEND).
        #[arg(long, default_value = "cpu", value_parser = backend_names())]
        backend: String,
        /// The precision to compute in, f32 or f64: f64 by default on the CPU; the GPU
        /// computes in f32.
        #[arg(long, value_parser = precision)]
        precision: Option<Precision>,
        /// Run the data-parallel protocol with W workers, one after another, each owning
        /// a run of rows and exchanging only its rows' outcomes (every engine). Prints
        /// the same object.
        #[arg(long)]
        shards: Option<usize>,
        /// With `--backend gpu`: run the batch through the record path (`GpuConr::record`
        /// on buffers uploaded to the device, the band plan built on the device), as a
        /// framework that keeps its tensors on the GPU would. Prints the same object.
        #[arg(long)]
        record: bool,
    },
    /// Time forward plus backward on random AgeDB-like batches, next to one M×M×D f32 GEMM.
    ///
    /// Reports the median time, the time in GEMM-equivalents (ConR time over GEMM time,
    /// measured in the same run with the same GEMM kernels and threads), and the peak
    /// heap memory the engine allocated above its inputs.
    Bench {
        /// The engine: `reference`, `cpu` or `gpu` (upload and readback included).
        #[arg(long, default_value = "cpu", value_parser = backend_names())]
        backend: String,
        /// Comma-separated sizes, MxD.
        #[arg(long, default_value = "1024x512,4096x512")]
        sizes: String,
        /// Timed repetitions per size; the median is reported.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Untimed repetitions before timing.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Threads for ConR and the GEMM; 0 means one per core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Which tiles the fast engines visit: `auto` (the band where it pays: on the CPU
        /// where it visits fewer tiles than the dense plan, on the GPU on batches of more
        /// than two 64-row blocks), `band` (only those that can hold a positive or a
        /// negative) or `dense` (every tile).
        #[arg(long, value_enum, default_value_t = PlanArg::Auto)]
        plan: PlanArg,
        /// The label distribution: `agedb`, `uniform` (ages uniform over 0-100), or
        /// `collapsed` (AgeDB ages, every prediction within ω̂ of every other).
        #[arg(long, value_enum, default_value_t = Labels::Agedb)]
        labels: Labels,
        /// Also run the data-parallel protocol with W workers, one after another, and
        /// report each worker's forward and backward time and the bytes it sends.
        #[arg(long)]
        shards: Option<usize>,
        /// The precision: `f32`, or `mixed` (the GPU engine's f16 tensor-core tiles with
        /// f32 accumulation, where the adapter has cooperative matrices).
        #[arg(long, default_value = "f32", value_parser = precision)]
        precision: Precision,
        /// The loss: `conr` (the default), or one it is combined with, `ranksim`, `rnc`
        /// or `balanced_mse` (also `bmc`), timed beside conr's reference engine (the reference code's
        /// algorithm; up to M = 2048) and one M×M×D GEMM.
        #[arg(long, value_enum, default_value_t = Loss::Conr)]
        loss: Loss,
        /// GPU only: after the timed calls, time `--reps` more kernel by kernel with
        /// timestamp queries, and the host's steps on its clock (upload and record,
        /// wait, readback), and print where one call's time went.
        #[arg(long)]
        profile: bool,
        /// Print one JSON object per size (backend, m, d, threads, precision, plan, labels,
        /// pair_share, tile_share, fwd_bwd_s, gemm_s, gemm_equivalents, peak_bytes, record_s,
        /// record_batched_s, record_plan, record_tile_share, workers, profile) instead of a
        /// table.
        #[arg(long)]
        json: bool,
    },
    /// Train a small regressor on the red wine quality data with and without ConR,
    /// over several seeds, and report MAE and GM overall and per shot region.
    ///
    /// Methods: an L1 baseline; L1 + β·ConR on two augmented views of each batch;
    /// L1 + β·ConR with pushing power from label density (sqrt_inv + LDS);
    /// L1 + γ·RankSim; L1 + β·ConR + γ·RankSim; BMC; BMC + β·ConR.
    /// The data ships with the binary: no network is needed.
    #[cfg(feature = "demo")]
    Demo {
        /// Seeds per method.
        #[arg(long, default_value_t = 5)]
        seeds: usize,
        /// Epochs per run (the epoch with the best validation MAE is kept).
        #[arg(long, default_value_t = 150)]
        epochs: usize,
        /// β, the weight of the ConR term.
        #[arg(long, default_value_t = 1.0)]
        beta: f64,
        /// γ, the weight of the RankSim term.
        #[arg(long, default_value_t = 10.0)]
        gamma: f64,
        /// ω (and ω̂): qualities within this distance are positives.
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
        /// τ, the ConR temperature.
        #[arg(long, default_value_t = 0.1)]
        temperature: f64,
        /// FDS's window size (gaussian), for the LDS + FDS rows.
        #[arg(long, default_value_t = 3)]
        fds_ks: usize,
        /// FDS's window width σ.
        #[arg(long, default_value_t = 1.0)]
        fds_sigma: f64,
        /// Where the ConR term runs: an engine's name (`cpu`, `gpu`, ...).
        #[arg(long, default_value = "cpu", value_parser = backend_names())]
        backend: String,
        /// One seed and at most 8 epochs: a smoke test.
        #[arg(long)]
        quick: bool,
        /// Write DIR/report.json and DIR/per_label_mae.svg.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare the run, bit for bit, with a report it wrote before (such as
        /// docs/report.json), and fail where a number differs. A report made on a
        /// CPU with other GEMM kernels (AVX-512 against AVX2) is not comparable:
        /// that is said, and nothing fails.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// List the GPU adapters wgpu can see, with their backend, type, driver and key limits.
    ///
    /// Prints {"adapters": [...]}. Honours WGPU_BACKEND.
    Info,
    /// Compute per-sample density weights (inverse, sqrt_inv, LDS) from labels.
    ///
    /// Prints {"weights": [...]}.
    Weights {
        /// A JSON file with `labels` and a `config` of reweight, kernel, kernel_size,
        /// sigma, bins, bin_width and min_label.
        #[arg(long, short)]
        input: PathBuf,
    },
    /// The DIR evaluation: MSE, MAE and geometric mean of the absolute errors over all test
    /// samples and the many-, medium- and few-shot regions (by training samples per label),
    /// as the LDS/FDS reference's shot_metrics computes them, and per label.
    ///
    /// Prints {"all", "many", "medium", "few": {"count", "mse", "mae", "gmean"}, "per_label":
    /// [{"label", "train_count", "region", "count", "mse", "mae", "gmean"}]}; an empty
    /// region's values are null.
    Metrics {
        /// A JSON file with `preds`, `labels` and `train_labels`, and optionally `many`
        /// (100), `few` (20) and `bin_width` (bin real-valued labels as ⌊y / bin_width⌋).
        #[arg(long, short)]
        input: PathBuf,
    },
}

#[global_allocator]
static ALLOCATOR: conr_cli::memory::Counting = conr_cli::memory::Counting;

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    if matches!(cli.command, Command::Demo { .. }) {
        pin_candle_threads();
    }
    match run(cli) {
        Ok(text) => {
            // A closed pipe (`conr ... | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            // One line: the whole context chain, joined.
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Fixes `RAYON_NUM_THREADS`, where it is unset, to the thread count candle
/// would choose. candle asks for its thread count on every matmul and, with
/// the variable unset, reads /proc/cpuinfo each time: a fifth of the demo's
/// time went there. The count is candle's own (physical cores), which the
/// fast engine's rayon pool then uses too.
#[cfg(feature = "demo")]
fn pin_candle_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: called from `main` before any thread is spawned, so that
        // nothing reads the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        }
    }
}

fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Compute {
            input,
            backend,
            precision,
            shards,
            record,
        } => {
            let case = match Input::read(&input)? {
                Input::Conr(case) => case,
                Input::Dir(case) => {
                    if shards.is_some() || record {
                        anyhow::bail!("--shards and --record take ConR cases (conr-fixture/1)");
                    }
                    let report = companion::compute(&case, &backend, precision)?;
                    return Ok(serde_json::to_string(&report)?);
                }
                Input::Fds(case) => {
                    if shards.is_some() || record {
                        anyhow::bail!("--shards and --record take ConR cases (conr-fixture/1)");
                    }
                    let report = companion::compute_fds(&case, &backend, precision)?;
                    return Ok(serde_json::to_string(&report)?);
                }
            };
            let how = compute::Run {
                precision,
                shards,
                record,
            };
            Ok(serde_json::to_string(&compute::compute(
                &case, &backend, how,
            )?)?)
        }
        Command::Bench {
            backend,
            sizes,
            reps,
            warmup,
            threads,
            precision,
            plan,
            labels,
            shards,
            loss,
            profile,
            json,
        } => {
            if precision == Precision::F64 {
                anyhow::bail!("--precision takes f32 or mixed");
            }
            let options = BenchOptions {
                backend,
                sizes: parse_sizes(&sizes)?,
                reps,
                warmup,
                threads,
                mixed: precision == Precision::Mixed,
                plan: plan.into(),
                labels,
                shards,
                profile,
            };
            // Progress on one self-erasing line, when a person is watching.
            let live = std::io::stderr().is_terminal();
            if loss != Loss::Conr {
                if options.shards.is_some() || options.mixed || options.profile {
                    anyhow::bail!(
                        "--shards, --precision mixed and --profile are ConR's (--loss conr)"
                    );
                }
                let rows = bench_dir::run(loss, &options, |line| {
                    if live {
                        eprint!("\r\x1b[2K{line}");
                    }
                })?;
                if live {
                    eprint!("\r\x1b[2K");
                }
                return if json {
                    let lines: Result<Vec<String>, _> =
                        rows.iter().map(serde_json::to_string).collect();
                    Ok(lines?.join("\n"))
                } else {
                    Ok(bench_dir::table(&rows))
                };
            }
            let rows = bench::run(&options, |line| {
                if live {
                    eprint!("\r\x1b[2K{line}");
                }
            })?;
            if live {
                eprint!("\r\x1b[2K");
            }
            if json {
                let lines: Result<Vec<String>, _> =
                    rows.iter().map(serde_json::to_string).collect();
                Ok(lines?.join("\n"))
            } else {
                Ok(table(&rows))
            }
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            seeds,
            epochs,
            beta,
            gamma,
            threshold,
            temperature,
            fds_ks,
            fds_sigma,
            backend,
            quick,
            out,
            check,
        } => {
            // Read first: a missing file fails before the minutes of training.
            let committed = match check {
                Some(path) => Some((
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                    path,
                )),
                None => None,
            };
            let engine = conr_engines::engine(&backend)?;
            let options = DemoOptions {
                seeds,
                epochs,
                beta,
                gamma,
                threshold,
                temperature,
                fds_ks,
                fds_sigma,
                engine,
                quick,
            };
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} epochs {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = demo::run(&options, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            let mut text = report.table();
            if let Some((committed, path)) = committed {
                let path = path.display();
                match report.check(&committed) {
                    demo::Check::Same => text += &format!("the same numbers as {path}\n"),
                    demo::Check::OtherKernels { committed, here } => {
                        text += &format!(
                            "not compared: {path} was made with {committed} GEMM kernels, this CPU runs {here}\n"
                        )
                    }
                    demo::Check::Differs(how) => anyhow::bail!("{path} is stale:\n{how}"),
                }
            }
            if let Some(dir) = out {
                demo::write(&report, &dir).map_err(anyhow::Error::msg)?;
                text += &format!(
                    "wrote {} and {}",
                    dir.join("report.json").display(),
                    dir.join("per_label_mae.svg").display()
                );
            }
            Ok(text.trim_end().to_string())
        }
        Command::Info => Ok(gpu::adapters()?.to_string()),
        Command::Weights { input } => {
            let case: WeightsCase = read_json(&input)?;
            Ok(serde_json::to_string(&compute::weights(&case)?)?)
        }
        Command::Metrics { input } => {
            let case: MetricsCase = read_json(&input)?;
            Ok(serde_json::to_string(&case.run()?)?)
        }
    }
}

/// One call's time by host step and by kernel, indented under its row.
fn profile_table(p: &ProfileRow) -> String {
    let ms = |s: f64| 1e3 * s;
    let mut out = format!(
        "  per call (of {}): host {:.3} ms to submit, {:.3} ms waiting, {:.3} ms reading; \
         device {:.3} ms (clears {:.3}, copies {:.3})\n",
        p.calls,
        ms(p.host_record_s),
        ms(p.host_wait_s),
        ms(p.host_read_s),
        ms(p.device_s),
        ms(p.clears_s),
        ms(p.copies_s)
    );
    out += "    kernel                     dispatches  workgroups  device (ms)  share\n";
    for k in &p.kernels {
        out += &format!(
            "    {:<26} {:>10.0}  {:>10.0}  {:>11.3}  {:>5.1}%\n",
            k.kernel,
            k.dispatches,
            k.workgroups,
            ms(k.device_s),
            100.0 * k.device_s / p.device_s.max(f64::MIN_POSITIVE)
        );
    }
    out
}

/// The human-readable bench table.
fn table(rows: &[BenchRow]) -> String {
    let mut out = String::from(
        "backend  precision plan  labels        M      D  threads  pairs   tiles  fwd+bwd (s)  record (s)        GEMM (s)  GEMM-equivalents  peak extra memory\n",
    );
    let or_dash =
        |x: Option<f64>, digits: usize| x.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in rows {
        out += &format!(
            "{:<8} {:<9} {:<5} {:<9} {:>6} {:>6} {:>8}  {:>5.1}%  {:>5.1}%  {:>11.4}  {:>16}  {:>8}  {:>16}  {:>10.1} MiB\n",
            r.backend,
            r.precision,
            r.plan,
            format!("{:?}", r.labels).to_lowercase(),
            r.m,
            r.d,
            r.threads,
            100.0 * r.pair_share,
            100.0 * r.tile_share,
            r.fwd_bwd_s,
            match (r.record_s, r.record_plan, r.record_tile_share) {
                (Some(s), Some(plan), Some(share)) =>
                    format!("{s:.5} {plan} {:.0}%", 100.0 * share),
                _ => "-".to_string(),
            },
            or_dash(r.gemm_s, 4),
            or_dash(r.gemm_equivalents, 2),
            r.peak_bytes as f64 / (1024.0 * 1024.0)
        );
        for (w, worker) in r.workers.iter().flatten().enumerate() {
            out += &format!(
                "  worker {w}: {} rows, forward {:.4} s, backward {:.4} s, sends {} bytes\n",
                worker.rows, worker.forward_s, worker.backward_s, worker.sent_bytes
            );
        }
        if let Some(p) = &r.profile {
            out += &profile_table(p);
        }
    }
    out.trim_end().to_string()
}
