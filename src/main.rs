//! The `candor` command line.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "candor",
    version,
    about = "Candor: a transparency log for marketing data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow a tlog-tiles log and audit it (also: `monitor report`, `monitor check-evidence`).
    Monitor(candor::monitor::cli::MonitorArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Monitor(args) => candor::monitor::cli::run(args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("candor: {e:#}");
            std::process::exit(2);
        }
    }
}
