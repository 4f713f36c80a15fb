//! Command-line interface: the `Cli` parser, the subcommand enum and the
//! exit-status convention.
//!
//! To add a subcommand: create `src/cli/<name>.rs` with a clap `Args` (or
//! `Subcommand`) type and a `run` function returning `anyhow::Result<()>`,
//! add a variant to [`Command`] and a match arm to [`run`]. Return
//! [`Invalid`] (via [`invalid`]) when the *input* was checked and found bad
//! (exit 1); every other error exits 2. Async subcommands build their own
//! Tokio runtime inside their `run`.

pub mod company;
pub mod keys;
pub mod note;
pub mod publish;
pub mod receipt_cmd;
pub mod verify;

use clap::{ArgAction, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Exit status when the input was checked and is not valid.
pub const EXIT_INVALID: u8 = 1;
/// Exit status for usage errors and I/O problems (clap also uses 2).
pub const EXIT_USAGE: u8 = 2;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  the input was checked and is invalid (bad or missing signature, malformed note, ...)
  2  usage or I/O problem (bad arguments, bad key, unreadable or unwritable file, ...)";

/// Candor: a public, append-only, signed transparency log for marketing data.
#[derive(Debug, Parser)]
#[command(name = "candor", version, about, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 signed-note key pair (c2sp.org/signed-note).
    #[command(after_help = EXIT_STATUS_HELP)]
    Keygen(keys::KeygenArgs),
    /// Work with C2SP signed notes and checkpoints.
    #[command(subcommand)]
    Note(note::NoteCommand),
    /// Run the log server (spec/api.md).
    Serve(Box<candor_server::ServeArgs>),
    /// Run or inspect a C2SP tlog-witness (spec/witness.md).
    Witness(candor_witness::cli::WitnessArgs),
    /// Register or revoke a company's key on a log (operator; spec/cli.md §1).
    Company(company::CompanyArgs),
    /// Sign and log a campaign's entries, one receipt a line (spec/cli.md §2).
    Publish(Box<publish::PublishArgs>),
    /// Consumer forms of a receipt (spec/cli.md §3).
    Receipt(receipt_cmd::ReceiptArgs),
    /// Check a receipt and say what it proves (spec/cli.md §4).
    Verify(Box<verify::VerifyArgs>),
    /// Follow and audit any tlog-tiles log; also `monitor report` and
    /// `monitor check-evidence` (spec/monitor.md, which lists its exit codes).
    Monitor(Box<candor_monitor::cli::MonitorArgs>),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen(args) => keys::run(args),
        Command::Note(cmd) => note::run(cmd),
        Command::Serve(args) => candor_server::run(*args),
        Command::Witness(args) => candor_witness::cli::run(args),
        Command::Company(args) => company::run(&args),
        Command::Publish(args) => publish::run(&args),
        Command::Receipt(args) => receipt_cmd::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Monitor(args) => {
            // The monitor has its own exit codes (0 clean, 1 findings, 2 could
            // not check); its output is flushed before it returns.
            let code = candor_monitor::cli::run(*args)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}

/// Marks an error as "the input was checked and is invalid" (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Invalid(pub Box<dyn std::error::Error + Send + Sync + 'static>);

/// Wraps an error as [`Invalid`].
pub fn invalid(
    err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> anyhow::Error {
    anyhow::Error::new(Invalid(err.into()))
}

/// The exit status for an error returned by [`run`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Invalid>().is_some() || err.chain().any(|e| e.is::<Invalid>()) {
        EXIT_INVALID
    } else {
        EXIT_USAGE
    }
}

/// Logs to stderr; `RUST_LOG` wins over `-v`.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second initialisation (impossible in the binary) is harmless to ignore.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| candor_server::LossyStderr)
        .try_init();
}
