//! `candor monitor …` command line (spec/monitor.md §2).

use super::audit::{Auditor, Sink};
use super::client::{TilesClient, http_client};
use super::findings::Severity;
use super::policy::Policy;
use super::splitview::{Evidence, EvidenceError};
use super::state::{StateDir, read_entries, read_findings};
use candor_core::clock::SharedClock;
use candor_core::note::VerifierKey;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Exit code: audited, nothing found.
pub const EXIT_CLEAN: i32 = 0;
/// Exit code: at least one finding at or above the policy's `fail_severity`.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code: could not check (network, state directory, bad arguments).
pub const EXIT_COULD_NOT_CHECK: i32 = 2;

/// `candor monitor`: follow a tlog-tiles log, audit it, report findings.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub command: Option<MonitorCommand>,
    /// The log's tlog-tiles URL prefix (e.g. https://log.example/ or a mirror).
    #[arg(long, value_name = "URL")]
    pub log: Option<String>,
    /// The log's signed-note verifier key (name+hexid+base64); its name is the origin.
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
    /// Directory for the monitor's state (created if missing).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Audit up to the log's current checkpoint, then exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between polls of the log when not --once.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub interval: u64,
    /// Another monitor's or witness's monitoring-path base URL (repeatable).
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// Serve the latest verified checkpoint at GET /<hex sha256(origin)>/checkpoint.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// POST every finding (JSON) to this URL as well.
    #[arg(long, value_name = "URL")]
    pub alert_url: Option<String>,
    /// Policy file (TOML); defaults apply to everything it leaves out.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Trust policy file (C2SP tlog-policy): a checkpoint of the log that does not
    /// satisfy it (e.g. lacks the witness quorum) is refused and reported as a
    /// `witness_quorum` finding. Not the same as --policy (the monitor's TOML checks).
    #[arg(long, value_name = "FILE")]
    pub trust_policy: Option<PathBuf>,
    /// Tiles and bundles fetched in parallel.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
    /// Print the default policy (TOML) and exit.
    #[arg(long)]
    pub print_default_policy: bool,
}

/// Subcommands of `candor monitor`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum MonitorCommand {
    /// Write per-company summaries (CSV, JSON) and an HTML report from a state directory.
    Report(ReportArgs),
    /// Re-check split-view evidence (a finding line or its evidence object).
    CheckEvidence(CheckEvidenceArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The monitor's state directory.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Where to write summary.json, *.csv and report.html.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CheckEvidenceArgs {
    /// The evidence (JSON), or a finding line carrying it; `-` for stdin.
    pub file: PathBuf,
    /// The log key to check against (recommended: your own pinned copy). Without
    /// it, the key written in the evidence is used.
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
}

/// Runs `candor monitor …` and returns the process exit code.
pub fn run(args: MonitorArgs) -> anyhow::Result<i32> {
    match args.command.clone() {
        Some(MonitorCommand::Report(r)) => Ok(report(&r)),
        Some(MonitorCommand::CheckEvidence(c)) => Ok(check_evidence(&c)),
        None => block_on(monitor(args)),
    }
}

/// Runs a future to completion whether or not a Tokio runtime is already running.
fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(fut: F) -> anyhow::Result<i32> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(fut),
    }
}

fn report(r: &ReportArgs) -> i32 {
    let (state, db) = match StateDir::open_read(&r.state) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("monitor report: {e}");
            return EXIT_COULD_NOT_CHECK;
        }
    };
    let data = read_entries(&db).and_then(|e| read_findings(&db).map(|f| (e, f)));
    let (entries, findings) = match data {
        Ok(x) => x,
        Err(e) => {
            eprintln!("monitor report: cannot read {}: {e}", r.state.display());
            return EXIT_COULD_NOT_CHECK;
        }
    };
    let summary = super::report::summarize(state.as_ref(), &entries, findings);
    match super::report::write_report(&r.out, &summary) {
        Ok(files) => {
            for f in files {
                println!("{}", r.out.join(f).display());
            }
            EXIT_CLEAN
        }
        Err(e) => {
            eprintln!("monitor report: cannot write to {}: {e}", r.out.display());
            EXIT_COULD_NOT_CHECK
        }
    }
}

/// Exit codes: 0 the evidence proves the log misbehaved; 1 it does not; 2 unreadable.
fn check_evidence(c: &CheckEvidenceArgs) -> i32 {
    let bytes = if c.file.as_os_str() == "-" {
        let mut b = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut b) {
            eprintln!("check-evidence: cannot read stdin: {e}");
            return EXIT_COULD_NOT_CHECK;
        }
        b
    } else {
        match std::fs::read(&c.file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("check-evidence: cannot read {}: {e}", c.file.display());
                return EXIT_COULD_NOT_CHECK;
            }
        }
    };
    let ev = match Evidence::from_json(&bytes) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("check-evidence: {e}");
            return EXIT_COULD_NOT_CHECK;
        }
    };
    let key_text = match &c.log_key {
        Some(k) => k.clone(),
        None => {
            eprintln!("check-evidence: no --log-key given; using the key written in the evidence");
            ev.log_key.clone()
        }
    };
    let key: VerifierKey = match key_text.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("check-evidence: bad log key {key_text:?}: {e}");
            return EXIT_COULD_NOT_CHECK;
        }
    };
    match ev.check(&key) {
        Ok(sentence) => {
            println!("VALID: {sentence}");
            EXIT_CLEAN
        }
        Err(e @ EvidenceError::Format(_)) => {
            eprintln!("check-evidence: {e}");
            EXIT_COULD_NOT_CHECK
        }
        Err(e) => {
            println!("NOT PROVEN: {e}");
            EXIT_FINDINGS
        }
    }
}

async fn monitor(args: MonitorArgs) -> anyhow::Result<i32> {
    monitor_with_clock(args, candor_core::clock::system()).await
}

/// `candor monitor` (not its subcommands), checking entry times against `clock`.
pub async fn monitor_with_clock(args: MonitorArgs, clock: SharedClock) -> anyhow::Result<i32> {
    if args.print_default_policy {
        print!("{}", Policy::default_toml());
        return Ok(EXIT_CLEAN);
    }
    let (Some(log), Some(log_key), Some(state_path)) = (&args.log, &args.log_key, &args.state)
    else {
        eprintln!("monitor: --log URL, --log-key VKEY and --state DIR are required");
        return Ok(EXIT_COULD_NOT_CHECK);
    };
    let key: VerifierKey = match log_key.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("monitor: bad --log-key {log_key:?}: {e}");
            return Ok(EXIT_COULD_NOT_CHECK);
        }
    };
    let policy = match Policy::load(args.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("monitor: {e}");
            return Ok(EXIT_COULD_NOT_CHECK);
        }
    };
    let trust_policy = match args.trust_policy.as_deref().map(|p| {
        std::fs::read(p)
            .map_err(|e| format!("cannot read --trust-policy {}: {e}", p.display()))
            .and_then(|b| {
                candor_core::trust_policy::Policy::parse(&b)
                    .map_err(|e| format!("bad --trust-policy {}: {e}", p.display()))
            })
    }) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            eprintln!("monitor: {e}");
            return Ok(EXIT_COULD_NOT_CHECK);
        }
    };
    let http = http_client()?;
    let client = match TilesClient::new(http.clone(), log) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("monitor: {e}");
            return Ok(EXIT_COULD_NOT_CHECK);
        }
    };
    let origin = key.name().to_owned();
    let dir = match StateDir::open(state_path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("monitor: {e}");
            return Ok(EXIT_COULD_NOT_CHECK);
        }
    };
    let state = match dir.load_for(&origin, &key.to_string()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("monitor: {e}");
            return Ok(EXIT_COULD_NOT_CHECK);
        }
    };
    let served = Arc::new(RwLock::new(None));
    if let Some(addr) = &args.listen {
        match super::serve::spawn(addr, &origin, served.clone()).await {
            Ok(bound) => eprintln!(
                "monitor: serving the monitoring path at http://{bound}/{}/checkpoint",
                candor_core::hash::sha256(origin.as_bytes()).to_hex()
            ),
            Err(e) => {
                eprintln!("monitor: cannot listen on {addr}: {e}");
                return Ok(EXIT_COULD_NOT_CHECK);
            }
        }
    }
    let fail = policy.fail_severity;
    let mut auditor = Auditor {
        client,
        http: http.clone(),
        log_key: key,
        origin,
        policy: std::sync::Arc::new(policy),
        trust_policy,
        dir: std::sync::Arc::new(dir),
        state,
        sink: Sink::new(http, args.alert_url.clone()),
        peers: args.peers.clone(),
        concurrency: args.concurrency,
        served,
        clock,
    };
    let mut could_not_check;
    loop {
        could_not_check = match auditor.round().await {
            Ok(()) => {
                // A one-line status on stderr, so a clean audit is not silent.
                eprintln!(
                    "monitor: {} verified up to size {}; {} finding(s) so far",
                    auditor.origin,
                    auditor.state.verified.size,
                    auditor.sink.reported.len()
                );
                false
            }
            Err(e) => {
                eprintln!("monitor: could not check: {e}");
                true
            }
        };
        if args.once {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
            _ = candor_net::shutdown_signal() => break,
        }
    }
    Ok(exit_code(&auditor.sink.reported, fail, could_not_check))
}

fn exit_code(reported: &[super::findings::Finding], fail: Severity, could_not_check: bool) -> i32 {
    if reported.iter().any(|f| f.severity >= fail) {
        EXIT_FINDINGS
    } else if could_not_check {
        EXIT_COULD_NOT_CHECK
    } else {
        EXIT_CLEAN
    }
}
