//! `candor`: minimal entry point carrying the `serve` subcommand (the lead merges it
//! into the full CLI).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "candor",
    version,
    about = "A public, append-only, signed transparency log for marketing data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log server.
    Serve(candor::server::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => candor::server::run(args),
    }
}
