//! Short crash round for CI (issue 6, "Crash suite"): the harness of tools/crash
//! (`candor-crash`) SIGKILLs the real `candor serve` under load at random moments,
//! restarts it, and checks every receipt and checkpoint seen before each kill.
//! The long round (hundreds of kills) is documented in BENCHMARKS.md, "Crash suite".

// `default_candor` is for the binary only.
#[allow(dead_code)]
#[path = "../tools/crash/src/lib.rs"]
mod crash;

use std::path::PathBuf;
use std::time::Duration;

use crash::{Backend, Options, run};

fn round(backend: &str, seed: u64) {
    let mut opts = Options::new(
        PathBuf::from(env!("CARGO_BIN_EXE_candor")),
        Backend::builtin(backend).expect("built-in backend"),
    );
    opts.kills = 25;
    opts.seed = seed;
    opts.clients = 3;
    opts.max_kill_delay = Duration::from_millis(250);
    let summary = run(&opts).expect("the crash harness runs");
    eprintln!("{summary:?}");
    assert!(
        summary.failures.is_empty(),
        "{backend}: {:#?}",
        summary.failures
    );
    assert_eq!(summary.kills, 25);
    // The round did real work: receipts were collected and re-checked across restarts.
    assert!(summary.receipts > 0 && summary.receipts_checked > 0);
    assert!(summary.checkpoints_checked >= 10);
}

#[test]
fn redb_survives_25_sigkills_under_load() {
    round("redb", 0x5eed_0001);
}

#[test]
fn sled_survives_25_sigkills_under_load() {
    round("sled", 0x5eed_0002);
}

#[test]
fn unknown_backend_is_refused() {
    assert!(Backend::builtin("postgres-not-yet").is_err());
}
