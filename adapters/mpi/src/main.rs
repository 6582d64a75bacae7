//! `conr-mpi`: ConR on one global batch across MPI ranks. Run it under
//! `mpirun -n W`; rank 0 prints `conr compute`'s JSON object plus `"workers"`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::builder::PossibleValuesParser;
use conr_core::{Named, Precision};
use mpi::traits::Communicator;

/// ConR across MPI ranks: each rank owns a run of the batch's rows; together
/// they compute the whole batch's loss and gradient, exactly.
#[derive(Debug, Parser)]
#[command(name = "conr-mpi", version)]
struct Args {
    /// A `conr compute` input file (the conr-fixture/1 schema).
    #[arg(long)]
    input: PathBuf,
    /// The engine every rank runs: `reference`, `cpu` (or `fast`) or `gpu`.
    #[arg(long, default_value = "cpu", value_parser = PossibleValuesParser::new(conr_engines::Kind::NAMES))]
    backend: String,
    /// f64 (default on the CPU) or f32 (the GPU's only precision).
    #[arg(long, value_parser = |s: &str| Precision::from_name(s).map_err(|e| e.to_string()))]
    precision: Option<Precision>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(universe) = mpi::initialize() else {
        eprintln!("error: MPI could not be initialised (or already was)");
        return ExitCode::FAILURE;
    };
    let world = universe.world();
    match conr_mpi::run_file(&world, &args.input, &args.backend, args.precision) {
        Ok(Some(report)) => match serde_json::to_string(&report) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            let message = err.to_string().replace('\n', " ");
            eprintln!(
                "error (rank {} of {}): {message}",
                world.rank(),
                world.size()
            );
            // The other ranks may be waiting in a collective for this one.
            if world.size() > 1 {
                world.abort(1);
            }
            ExitCode::FAILURE
        }
    }
}
