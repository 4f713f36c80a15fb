//! `candor-crash`: SIGKILLs `candor serve` under load and checks that nothing
//! acknowledged is lost and no checkpoint forks (see the library docs).
//!
//! ```text
//! cargo build --release -p candor -p candor-crash
//! target/release/candor-crash --store all --kills 200 --json
//! # PostgreSQL: an empty database per round
//! target/release/candor-crash --store postgres://USER@HOST:PORT/EMPTY_DB --kills 200 --json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use candor_crash::{Backend, Options, default_candor, run};
use clap::Parser;

/// Crash-test a Candor log: kill it at random moments under load, restart it, and
/// verify every receipt and checkpoint seen before each kill.
#[derive(Parser, Debug)]
#[command(name = "candor-crash", version)]
struct Args {
    /// The candor binary [default: target/release/candor, else target/debug/candor].
    #[arg(long, value_name = "BIN")]
    candor: Option<PathBuf>,
    /// Storage backend: redb, sled, all (redb then sled), or a postgres:// URL of an
    /// empty database.
    #[arg(long, value_name = "redb|sled|all|postgres://…", default_value = "all")]
    store: String,
    /// SIGKILLs per backend.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Seed of the kill schedule and the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Kill delays are drawn up to this many milliseconds after each restart.
    #[arg(long, default_value_t = 300)]
    max_delay_ms: u64,
    /// Older receipts re-checked after each restart.
    #[arg(long, default_value_t = 32)]
    resample: usize,
    /// Flush the redb store's index rows to a sorted run every N rows instead of every
    /// 131,072 (passes --redb-index-flush-rows to the server), so kills also land around
    /// flushes and the merges of runs.
    #[arg(long, value_name = "N")]
    index_flush_rows: Option<usize>,
    /// Move each merge of index runs on by N records per append instead of twice the
    /// append's rows (passes --redb-index-merge-step to the server), so merges span
    /// many appends and kills land while they are in progress.
    #[arg(long, value_name = "N")]
    index_merge_step: Option<u64>,
    /// Print one JSON summary per backend (a JSON array) instead of text.
    #[arg(long)]
    json: bool,
    /// Progress on standard error.
    #[arg(long, short)]
    verbose: bool,
}

/// A backend name fit for messages (a database URL may carry a password).
fn opts_name(name: &str) -> &str {
    if name.contains("://") {
        "postgres"
    } else {
        name
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let names: Vec<&str> = if args.store == "all" {
        Backend::BUILTIN.to_vec()
    } else {
        vec![args.store.as_str()]
    };
    let candor = args.candor.clone().unwrap_or_else(default_candor);
    let mut summaries = Vec::new();
    for name in names {
        let backend = if name.starts_with("postgres://") || name.starts_with("postgresql://") {
            Ok(Backend::postgres(name))
        } else {
            Backend::builtin(name)
        };
        let backend = match backend {
            Ok(b) => b,
            Err(e) => {
                eprintln!("candor-crash: {e}");
                return ExitCode::from(2);
            }
        };
        let mut opts = Options::new(candor.clone(), backend);
        opts.kills = args.kills;
        opts.seed = args.seed;
        opts.clients = args.clients.max(1);
        opts.max_kill_delay = Duration::from_millis(args.max_delay_ms);
        opts.resample = args.resample;
        opts.verbose = args.verbose;
        opts.index_flush_rows = args.index_flush_rows;
        opts.index_merge_step = args.index_merge_step;
        match run(&opts) {
            Ok(s) => {
                if !args.json {
                    println!(
                        "{}: {} kills, {} receipts ({} checks), {} checkpoint checks, {} dedup checks, {} entries, {} interrupted submissions, {:.1} s, {} failures",
                        s.backend,
                        s.kills,
                        s.receipts,
                        s.receipts_checked,
                        s.checkpoints_checked,
                        s.dedup_checked,
                        s.entries,
                        s.interrupted_submissions,
                        s.elapsed_secs,
                        s.failures.len()
                    );
                    for f in &s.failures {
                        println!("  FAIL {f}");
                    }
                }
                summaries.push(s);
            }
            Err(e) => {
                eprintln!("candor-crash: {}: {e}", opts_name(name));
                return ExitCode::from(2);
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&summaries) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("candor-crash: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if summaries.iter().any(|s| !s.failures.is_empty()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
