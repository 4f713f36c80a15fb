//! The log, the monitor and the witness read the clock they are given
//! (spec/overview.md §Clocks), in-process, over loopback HTTP: a year from now, a
//! log dates its entries and key registrations by its clock, a witness stamps its
//! cosignatures by its clock, and a monitor on the same clock audits the log clean,
//! while a monitor still on today's clock sees every entry logged in the future.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use candor_core::clock::{Clock, ManualClock, SharedClock};
use candor_core::entry::{SignedEntry, format_time, samples};
use candor_core::note::Note;
use candor_core::witness_protocol::AddCheckpointRequest;
use candor_monitor::cli::{EXIT_CLEAN, EXIT_FINDINGS, MonitorArgs, MonitorCommand, ReportArgs};
use candor_server::{Config, ServeArgs};
use candor_witness::server::{Witness, router};
use candor_witness::state::WitnessState;
use common::LogServer;
use time::{Duration, OffsetDateTime};

/// A year and a day from now, whole seconds.
fn a_year_ahead() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc() + Duration::days(366);
    t.replace_nanosecond(0).unwrap()
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// `candor serve` in this process on `data`, reading `clock`.
async fn start_log(
    data: &Path,
    clock: SharedClock,
) -> (LogServer, tokio::sync::oneshot::Sender<()>) {
    let listen = free_addr();
    let mut config = Config::resolve(ServeArgs {
        data: Some(data.to_path_buf()),
        listen: Some(listen),
        ..ServeArgs::default()
    })
    .expect("config");
    config.clock = clock;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(candor_server::serve(config, async {
        let _ = stopped.await;
    }));
    let log = LogServer::attach(data, format!("http://{listen}")).await;
    (log, stop)
}

fn leaf_json(receipt: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(receipt["leaf"].as_str().expect("leaf"))
        .expect("leaf base64");
    serde_json::from_slice(&leaf).expect("leaf JSON")
}

fn monitor_args() -> MonitorArgs {
    MonitorArgs {
        command: None,
        log: None,
        log_key: None,
        state: None,
        once: true,
        interval: 60,
        peers: vec![],
        listen: None,
        alert_url: None,
        policy: None,
        trust_policy: None,
        concurrency: 4,
        print_default_policy: false,
    }
}

async fn audit(log: &LogServer, state: &Path, clock: SharedClock) -> i32 {
    let args = MonitorArgs {
        log: Some(log.base.clone()),
        log_key: Some(log.verifier_key.to_string()),
        state: Some(state.to_path_buf()),
        ..monitor_args()
    };
    candor_monitor::cli::monitor_with_clock(args, clock)
        .await
        .expect("the monitor runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_monitor_and_witness_read_the_clock_they_are_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let later = a_year_ahead();
    let clock = ManualClock::new(later);
    let (log, stop) = start_log(&dir.path().join("data"), clock.clone()).await;

    // The key registration is dated by the log's clock.
    let acme = log.register_company("acme.example").await;
    let reg = log.get_json("/v1/entries/0").await;
    let reg = serde_json::to_string(&reg).unwrap();
    assert!(reg.contains(&format_time(later)), "{reg}");

    // Entries dated by the company a year ahead are logged by the log's clock, and
    // the clock moving on moves `logged_at` with it.
    let on = |t: OffsetDateTime, e| samples::dated(e, &format_time(t));
    let purchase: SignedEntry = acme.sign(on(
        later - Duration::days(2),
        samples::data_purchase(&acme.name),
    ));
    let r = log.submit(&purchase).await;
    assert_eq!(leaf_json(&r)["logged_at"], format_time(later));
    clock.advance(Duration::days(1));
    let decision = acme.sign(on(
        later + Duration::days(1) - Duration::hours(1),
        samples::load_targeting_decision(&acme.name, 1),
    ));
    let r = log.submit(&decision).await;
    assert_eq!(
        leaf_json(&r)["logged_at"],
        format_time(later + Duration::days(1))
    );

    // A monitor on the log's clock finds nothing; one on today's clock sees entries
    // logged a year in its future (spec/monitor.md §5.1 `future_time`).
    let clean = dir.path().join("mon-later");
    assert_eq!(audit(&log, &clean, clock.clone()).await, EXIT_CLEAN);
    let today = dir.path().join("mon-today");
    assert_eq!(
        audit(&log, &today, candor_core::clock::system()).await,
        EXIT_FINDINGS
    );
    let kinds: Vec<String> = findings(&today)
        .iter()
        .map(|f| f["kind"].as_str().expect("kind").to_owned())
        .collect();
    assert!(kinds.len() >= 2, "{kinds:?}");
    assert!(kinds.iter().all(|k| k == "future_time"), "{kinds:?}");
    assert!(findings(&clean).is_empty());

    // A witness stamps its cosignature with its clock's time.
    let (wkey, wvkey) = candor_core::cosignature::generate_witness("witness.example").unwrap();
    let state = WitnessState::open(&dir.path().join("witness")).expect("witness state");
    let witness = Witness::new(wkey, vec![log.verifier_key.clone()], state)
        .expect("witness")
        .with_clock(clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let waddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(witness))).await });
    let checkpoint = log.checkpoint().await;
    let body = AddCheckpointRequest {
        old_size: 0,
        proof: vec![],
        checkpoint: checkpoint.clone(),
    }
    .to_bytes();
    let resp = reqwest::Client::new()
        .post(format!("http://{waddr}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .expect("add-checkpoint");
    assert_eq!(resp.status(), 200);
    let line = resp.text().await.unwrap();
    let note = Note::parse(&[checkpoint, line.into_bytes()].concat()).expect("cosigned note");
    let cosig = note
        .signatures
        .iter()
        .find(|s| wvkey.matches(s))
        .expect("the witness's cosignature");
    let stamped =
        candor_core::cosignature::verify_cosignature(&note.text, cosig, &wvkey).expect("valid");
    assert_eq!(stamped, clock.now_unix());
    assert_eq!(stamped, (later + Duration::days(1)).unix_timestamp() as u64);

    let _ = stop.send(());
}

/// The findings a monitor stored in `state`, read through `candor monitor report`.
fn findings(state: &Path) -> Vec<serde_json::Value> {
    let out = state.with_extension("report");
    let code = candor_monitor::cli::run(MonitorArgs {
        command: Some(MonitorCommand::Report(ReportArgs {
            state: state.to_path_buf(),
            out: out.clone(),
        })),
        ..monitor_args()
    })
    .expect("report");
    assert_eq!(code, EXIT_CLEAN);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json"))
            .expect("summary JSON");
    summary["findings"].as_array().expect("findings").clone()
}
