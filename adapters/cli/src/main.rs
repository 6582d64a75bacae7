//! `conr`: ConR, the contrastive regularizer for deep imbalanced regression, from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use conr_cli::input::{LossCase, WeightsCase, read_json};
use conr_cli::output::{self, Backend, Precision};

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
    Compute {
        /// A JSON file in the conr-fixture/1 schema: n, d, label_dim, config, features,
        /// labels, preds and optional weights. An `expected` field is ignored.
        #[arg(long, short)]
        input: PathBuf,
        /// The engine: `reference` (plain loops, the oracle) or `cpu` (the fast engine).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// The precision to compute in.
        #[arg(long, value_enum, default_value_t = Precision::F64)]
        precision: Precision,
    },
    /// Compute per-sample density weights (inverse, sqrt_inv, LDS) from labels.
    ///
    /// Prints {"weights": [...]}.
    Weights {
        /// A JSON file with `labels` and a `config` of reweight, kernel, kernel_size,
        /// sigma, bins, bin_width and min_label.
        #[arg(long, short)]
        input: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(json) => {
            println!("{json}");
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

fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Compute {
            input,
            backend,
            precision,
        } => {
            let case: LossCase = read_json(&input)?;
            Ok(serde_json::to_string(&output::compute(
                &case, backend, precision,
            )?)?)
        }
        Command::Weights { input } => {
            let case: WeightsCase = read_json(&input)?;
            Ok(serde_json::to_string(&output::weights(&case)?)?)
        }
    }
}
