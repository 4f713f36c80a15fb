//! The `candor` command-line tool. Each subcommand lives in its own module
//! under `src/cli/`; see `cli/mod.rs` for how to add one.

mod allocator;
mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("candor: error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}
