//! Short crash rounds for CI (issue 6, "Crash suite"): the harness of tools/crash
//! (`candor-crash`) SIGKILLs the real `candor serve` under load at random moments,
//! restarts it, and checks every receipt and checkpoint seen before each kill.
//! The long rounds (hundreds of kills) are documented in BENCHMARKS.md, "Crash suite".
//!
//! The PostgreSQL round runs on a fresh database of the server tools/test.sh starts
//! (tests/common/pg.rs); without `CANDOR_TEST_POSTGRES_URL` it is skipped with a
//! message, except under `CI=true`, where it fails.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use candor_crash::{Backend, Options, run};

fn round(backend: Backend, kills: u32, seed: u64) {
    let name = backend.name.clone();
    let mut opts = Options::new(PathBuf::from(env!("CARGO_BIN_EXE_candor")), backend);
    opts.kills = kills;
    opts.seed = seed;
    opts.clients = 3;
    opts.max_kill_delay = Duration::from_millis(250);
    // The redb store flushes its index rows every 200 rows here (131,072 in service),
    // and moves a merge on by 25 records per append, so a round's few thousand entries
    // see many flushes, and merges spanning several appends, with kills around them.
    opts.index_flush_rows = Some(200);
    opts.index_merge_step = Some(25);
    let summary = run(&opts).expect("the crash harness runs");
    eprintln!("{summary:?}");
    assert!(
        summary.failures.is_empty(),
        "{name}: {:#?}",
        summary.failures
    );
    assert_eq!(summary.kills, kills);
    // The round did real work: receipts were collected and re-checked across restarts.
    assert!(summary.receipts > 0 && summary.receipts_checked > 0);
    assert!(summary.checkpoints_checked >= 10);
}

#[test]
fn redb_survives_25_sigkills_under_load() {
    round(Backend::builtin("redb").unwrap(), 25, 0x5eed_0001);
}

#[test]
fn sled_survives_25_sigkills_under_load() {
    round(Backend::builtin("sled").unwrap(), 25, 0x5eed_0002);
}

/// The same round on PostgreSQL: every restart reconnects to the database, takes the
/// sequencer lock (after the server released the killed process's session) and
/// resumes from the stored state.
#[test]
fn postgres_survives_25_sigkills_under_load() {
    let Some(admin) = common::pg::admin_url() else {
        return;
    };
    let url = common::pg::fresh_database(&admin);
    round(Backend::postgres(&url), 25, 0x5eed_0003);
}

#[test]
fn unknown_backend_is_refused() {
    assert!(Backend::builtin("postgres-not-yet").is_err());
    assert!(
        Backend::builtin("postgres").is_err(),
        "PostgreSQL is chosen by URL"
    );
}
