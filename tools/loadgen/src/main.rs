//! `candor-loadgen`: measures a Candor log under load (spec/api.md §4, issue 7).
//!
//! Without `--log` it starts a real log server (`candor serve`'s own code, in a child
//! process) on a fresh temporary data directory, registers companies, and submits N
//! realistic entries of mixed kinds over HTTP in NDJSON requests. With `--audit` it
//! then runs `candor monitor --once` against the log and reports the audit rate. The
//! last line of output is one JSON object.
//!
//! Memory stays bounded for any N (10^7 included): the load runs in chunks of
//! `--chunk` entries. For each chunk the tool, *with the clock paused*, signs the
//! chunk's entries on all cores (`presign_seconds` is the sum over chunks); then, with
//! the clock running, submits them (each request body is freed once answered); then,
//! with the clock paused again, verifies every receipt of the chunk offline on all
//! cores (spec/receipts.md §3) and drops them. `seconds` and `entries_per_sec` count
//! submission time only. A request never spans two chunks. With `--rate` the open-loop
//! schedule restarts at each chunk. Latency percentiles are exact: one
//! (latency, entries) pair is kept per request (16 bytes), and every entry of a
//! request has that request's latency.
//!
//! The server's resident memory is sampled every 250 ms during the whole run
//! (`server_rss_sampled_max_mb`) and read at the end of each chunk's submission
//! (`server_rss_mb_by_chunk`); `server_peak_rss_mb` is the kernel's high-water mark.
//!
//! `server_cpu_us_per_entry` and `loadgen_cpu_us_per_entry` are the CPU time (user
//! plus system) each process used during the submission windows, per entry: on two
//! cores shared by both, they vary less from run to run than `entries_per_sec`.
//!
//! The Ed25519 batch-verification limit is measured in the same run, on all cores,
//! with the server idle, so `fraction_of_limit` compares like with like: once with
//! ed25519-dalek's `verify_batch` (`verify_limit_per_sec`, `fraction_of_limit`) and
//! once with the batch verification the log runs, which sums each key's terms
//! (`candor_verify_limit_per_sec`, `fraction_of_candor_limit`).

// The same allocator as the `candor` binary, so that both measure the same server.
#[path = "../../../crates/candor/src/allocator.rs"]
mod allocator;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use candor_core::entry::{DataPurchase, Entry, SignedEntry, samples};
use candor_core::hash::sha256;
use candor_core::note::{SignerKey, VerifierKey};
use candor_core::receipt::{Receipt, verify_receipt};
use clap::Parser;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::json;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "candor-loadgen",
    version,
    about,
    after_help = "Timing: entries are signed and receipts verified in chunks of --chunk \
entries with the clock paused; `seconds` and `entries_per_sec` measure submission only \
(`presign_seconds` and `receipts_verify_seconds` are reported apart). Latency \
percentiles are exact (one latency per request, shared by its entries)."
)]
struct Args {
    /// Entries to submit.
    #[arg(long, default_value_t = 10_000)]
    entries: usize,
    /// Entries per chunk: signed (clock paused), submitted (clock running), then their
    /// receipts verified and dropped (clock paused). Bounds this tool's memory to about
    /// 4-5 KB per chunk entry (request bodies, then receipts, plus allocator slack):
    /// measured peaks 279 MB at 10^6 entries with the default, 136 MB with
    /// --chunk 25000 at 10^5, 375 MB with --chunk 100000 at 10^5 and 527 MB at 10^6.
    #[arg(long, default_value_t = 50_000)]
    chunk: usize,
    /// Requests in flight at once (closed loop; ignored with --rate, which is open loop).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Offered load in entries per second (open loop: a request leaves when its last
    /// entry is due, whether or not earlier ones were answered; latency counts from
    /// then).
    #[arg(long)]
    rate: Option<f64>,
    /// Entries per NDJSON request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Storage backend of the log this tool starts.
    #[arg(long, default_value = "redb", value_parser = ["redb", "sled"])]
    store: String,
    /// Use a running log at this URL instead of starting one (`bytes_per_entry` and the
    /// server's memory figures are then null: this tool cannot see that server's disk
    /// or memory).
    #[arg(long, value_name = "URL", requires = "key")]
    log: Option<String>,
    /// With --log: the company's signed-note private key (PRIVATE+KEY+name+…), already
    /// registered on that log; the key name is the company name.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Companies to register on the log this tool starts (entries are spread over them).
    #[arg(long, default_value_t = 4)]
    companies: usize,
    /// After loading, run `candor monitor --once` against the log and report its rate.
    #[arg(long)]
    audit: bool,
    /// Keep the data directory here instead of a temporary one (must not exist yet).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Run this `candor` binary instead of this tool's built-in copy of the server.
    #[arg(long, value_name = "PATH")]
    candor: Option<PathBuf>,
    /// Extra argument for `candor serve` (repeatable), e.g. --serve-arg=--batch-size=4096.
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Seconds spent measuring each Ed25519 verification limit (there are two).
    #[arg(long, default_value_t = 2.0)]
    limit_secs: f64,
}

/// `candor serve`'s flags, for the child-process mode of this binary.
#[derive(Parser, Debug)]
struct ServeChild {
    #[command(flatten)]
    serve: candor_server::ServeArgs,
}

/// `candor monitor`'s flags, for the child-process mode of this binary.
#[derive(Parser, Debug)]
struct MonitorChild {
    #[command(flatten)]
    monitor: candor_monitor::cli::MonitorArgs,
}

const SERVE_CHILD: &str = "__candor-serve";
const MONITOR_CHILD: &str = "__candor-monitor";

fn main() -> std::process::ExitCode {
    // Child modes: this same executable runs the real server / monitor code, so the
    // figures always measure the library this tool was built with.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(SERVE_CHILD) {
        let a = ServeChild::parse_from(argv[1..].iter());
        return exit(candor_server::run(a.serve).map(|()| 0));
    }
    if argv.get(1).map(String::as_str) == Some(MONITOR_CHILD) {
        let a = MonitorChild::parse_from(argv[1..].iter());
        return exit(candor_monitor::cli::run(a.monitor));
    }
    let args = Args::parse();
    exit(run(args).map(|()| 0))
}

fn exit(r: anyhow::Result<i32>) -> std::process::ExitCode {
    match r {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("candor-loadgen: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// A company and its signing key.
struct Company {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
    /// A data purchase of this company already on the log (index, leaf hash), for its
    /// decisions to cite; logged before the clock starts.
    purchase: Option<(u64, candor_core::hash::Hash)>,
}

impl Company {
    fn from_signer(s: &SignerKey) -> Company {
        let v = s.verifier();
        Company {
            name: s.name().to_string(),
            key: s.signing_key().clone(),
            key_id: v.key_id(),
            purchase: None,
        }
    }
}

/// A log server this tool started; killed on drop.
struct Server {
    child: Child,
    base: String,
    data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // A graceful SIGTERM first (spec/api.md §7), so profilers wrapping the server
        // (valgrind via --candor) can write their output; SIGKILL after 30 s.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn self_command(candor: Option<&Path>, sub: &str, child_mode: &str) -> anyhow::Result<Command> {
    Ok(match candor {
        Some(p) => {
            let mut c = Command::new(p);
            c.arg(sub);
            c
        }
        None => {
            let mut c = Command::new(std::env::current_exe().context("locating this binary")?);
            c.arg(child_mode);
            c
        }
    })
}

fn start_server(args: &Args) -> anyhow::Result<Server> {
    let (tmp, data) = match &args.data {
        Some(d) => {
            if d.exists() {
                bail!(
                    "--data {} already exists; give a fresh directory",
                    d.display()
                );
            }
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("candor-loadgen-")
                .tempdir()
                .context("creating a temporary data directory")?;
            let d = t.path().join("data");
            (Some(t), d)
        }
    };
    let mut cmd = self_command(args.candor.as_deref(), "serve", SERVE_CHILD)?;
    cmd.arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--store", &args.store])
        .args(&args.serve_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting the log server")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from the server"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Drain the server's stdout for its whole life so it never blocks on the pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("listening on ") {
                    break a.trim().to_string();
                }
            }
            Err(_) => {
                let _ = child.kill();
                bail!("the log server printed no listen address within 60 s");
            }
        }
    };
    Ok(Server {
        child,
        base,
        data,
        _tmp: tmp,
    })
}

/// The `n`-th load entry of `company`: mostly targeting decisions over every channel,
/// some decisions citing the company's purchase on the log, some data purchases (a
/// few with special-category data). All distinct, so none is deduplicated, and dated
/// within the day before `now` (Unix seconds), so that a monitor auditing the load
/// flags only what a real log of this mix would show (the special-category purchases)
/// and no entry dated in the future or long before it was logged.
fn load_entry(company: &Company, n: u64, now: i64) -> Entry {
    let when = format_unix(now - 60 - (n % 86_400) as i64);
    let mut e = match (n % 100, company.purchase) {
        (0..=89, _) | (90..=94, None) => samples::load_targeting_decision(&company.name, n),
        (90..=94, Some((index, leaf))) => {
            let subject = samples::opening(&format!("prospect{n}@example.org"), n).commitment();
            samples::targeting_decision_from_purchase(&company.name, subject, index, leaf)
        }
        (95..=98, _) => {
            let mut e = samples::data_purchase(&company.name);
            if let Entry::DataPurchase(DataPurchase {
                records,
                contract_hash,
                ..
            }) = &mut e
            {
                *records = 1_000 + n;
                *contract_hash = Some(sha256(format!("contract {} {n}", company.name).as_bytes()));
            }
            e
        }
        _ => {
            let mut e = samples::sensitive_data_purchase(&company.name);
            if let Entry::DataPurchase(DataPurchase { records, .. }) = &mut e {
                *records = 10 + n;
            }
            e
        }
    };
    match &mut e {
        Entry::TargetingDecision(td) => td.decided_at = when,
        Entry::DataPurchase(dp) => dp.purchased_at = when,
        _ => {}
    }
    e
}

/// RFC 3339 UTC time of `unix` seconds (as entries carry it).
fn format_unix(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(candor_core::entry::format_time)
        .unwrap_or_else(|_| "2026-01-01T00:00:00Z".into())
}

/// Logs one ordinary data purchase of `company` (before the clock starts) and
/// returns its index and leaf hash from the receipt, for load entries to cite.
async fn log_setup_purchase(
    http: &reqwest::Client,
    base: &str,
    company: &Company,
    now: i64,
) -> anyhow::Result<(u64, candor_core::hash::Hash)> {
    let mut e = samples::data_purchase(&company.name);
    if let Entry::DataPurchase(dp) = &mut e {
        dp.purchased_at = format_unix(now - 7 * 86_400);
        dp.contract_hash = Some(sha256(format!("setup {} {now}", company.name).as_bytes()));
    }
    let signed = SignedEntry::sign(e, &company.key, company.key_id)
        .map_err(|e| anyhow!("signing the setup purchase: {e}"))?;
    let r = http
        .post(format!("{base}/v1/entries"))
        .json(&signed)
        .send()
        .await
        .context("POST the setup purchase")?;
    let st = r.status();
    let body: serde_json::Value = r.json().await.context("the setup purchase's receipt")?;
    if !st.is_success() {
        bail!(
            "logging the setup purchase of {}: {st}: {body}",
            company.name
        );
    }
    let index = body["index"]
        .as_u64()
        .ok_or_else(|| anyhow!("the setup purchase's receipt has no index: {body}"))?;
    let leaf = body["leaf_hash"]
        .as_str()
        .and_then(candor_core::hash::Hash::from_hex)
        .ok_or_else(|| anyhow!("the setup purchase's receipt has no leaf_hash: {body}"))?;
    Ok((index, leaf))
}

/// Signs entries `lo..hi` on all cores and serializes them as NDJSON request bodies
/// of at most `batch` entries each.
fn presign(
    companies: &[Company],
    lo: usize,
    hi: usize,
    batch: usize,
    now: i64,
) -> anyhow::Result<Vec<(Bytes, usize)>> {
    let batches: Vec<usize> = (0..(hi - lo).div_ceil(batch)).collect();
    let body = |&b: &usize| -> anyhow::Result<(Bytes, usize)> {
        let first = lo + b * batch;
        let end = (first + batch).min(hi);
        let mut body = Vec::with_capacity((end - first) * 1400);
        for i in first..end {
            let c = &companies[i % companies.len()];
            let e = load_entry(c, i as u64, now);
            let signed = SignedEntry::sign(e, &c.key, c.key_id)
                .map_err(|e| anyhow!("signing entry {i}: {e}"))?;
            body.extend(signed.submission_bytes()?);
            body.push(b'\n');
        }
        Ok((Bytes::from(body), end - first))
    };
    candor_core::par::map(&batches, 1, body)
        .into_iter()
        .collect()
}

/// Which batch verification a limit is measured with.
#[derive(Clone, Copy)]
enum Verifier {
    /// `ed25519_dalek::verify_batch`: the definition of the limit.
    Dalek,
    /// `candor_core::ed25519_strict::verify_batch`, which the log itself runs.
    Candor,
}

/// Ed25519 batch verification (64 signatures per batch, the size the sequencer sees
/// per request slice) on every core for `secs` seconds: signatures per second.
fn verify_limit(secs: f64, verifier: Verifier) -> f64 {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let key = SigningKey::from_bytes(&sha256(b"candor-loadgen verify limit").0);
    let vk: VerifyingKey = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let mut m = b"candor-entry/v1\n".to_vec();
            m.extend(std::iter::repeat_n(b'x', 1200));
            m.extend(i.to_be_bytes());
            m
        })
        .collect();
    let sigs: Vec<Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let keys = vec![vk; 64];
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let total: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                    let mut done = 0usize;
                    while start.elapsed() < dur {
                        let ok = match verifier {
                            Verifier::Dalek => {
                                ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok()
                            }
                            Verifier::Candor => {
                                candor_core::ed25519_strict::verify_batch(&refs, &sigs, &keys)
                                    .is_ok()
                            }
                        };
                        if ok {
                            done += 64;
                        }
                    }
                    done
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// User plus system CPU seconds a process has used, from /proc (clock ticks of
/// 10 ms: precise to about 1 % over a window of a few seconds).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident set size (current, peak) of a process, in MB, from /proc.
fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let l = s.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = l.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The exact `p`-quantile of per-entry latencies given as (latency ms, entries)
/// pairs sorted by latency: the value at rank round((N-1)·p) of the N entries, the
/// same as sorting one latency per entry.
fn percentile(sorted: &[(f64, u64)], p: f64) -> f64 {
    let n: u64 = sorted.iter().map(|&(_, k)| k).sum();
    if n == 0 {
        return 0.0;
    }
    let rank = ((n as f64 - 1.0) * p).round() as u64;
    let mut seen = 0u64;
    for &(ms, k) in sorted {
        seen += k;
        if seen > rank {
            return ms;
        }
    }
    sorted.last().map_or(0.0, |&(ms, _)| ms)
}

/// Samples a process's resident memory every 250 ms on a thread of its own, so a
/// peak between the end-of-chunk readings is seen (the kernel's VmHWM should agree).
struct RssSampler {
    max_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (max_kb.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some((now, _)) = rss_mb(pid) {
                    m.fetch_max((now * 1024.0) as u64, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        RssSampler {
            max_kb,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the largest RSS seen, in MB.
    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// One answered request: its latency and its NDJSON receipts.
struct Answer {
    latency: Duration,
    body: Bytes,
    entries: usize,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Bytes,
    entries: usize,
    since: Instant,
) -> anyhow::Result<Answer> {
    // Retry refusals the log marks as transient (pool full, 503) after its Retry-After.
    for attempt in 0..50 {
        let resp = http
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .context("POST /v1/entries")?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.context("reading the receipts")?;
        if status == 200 {
            return Ok(Answer {
                latency: since.elapsed(),
                body: bytes,
                entries,
            });
        }
        if (status == 429 || status == 503) && attempt < 49 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        bail!(
            "the log answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    bail!("the log kept refusing a request")
}

async fn register(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    company: &Company,
    vkey: &VerifierKey,
) -> anyhow::Result<()> {
    let r = http
        .post(format!("{base}/v1/companies"))
        .bearer_auth(token)
        .json(
            &json!({"name": company.name, "verifier_key": vkey.to_string(), "action": "register"}),
        )
        .send()
        .await
        .context("POST /v1/companies")?;
    if !r.status().is_success() {
        let st = r.status();
        bail!(
            "registering {}: {st}: {}",
            company.name,
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Verifies every receipt offline on all cores; returns (receipts, leaf bytes total).
fn verify_all(answers: &[Answer], log_key: &VerifierKey) -> anyhow::Result<(usize, u64)> {
    let lines: Vec<&[u8]> = answers
        .iter()
        .flat_map(|a| a.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()))
        .collect();
    let check = |l: &&[u8]| -> anyhow::Result<u64> {
        let r = Receipt::from_json(l).map_err(|e| anyhow!("receipt: {e}"))?;
        let v = verify_receipt(&r, log_key, None);
        if let Some(f) = v.first_failure() {
            bail!("receipt for index {} does not verify: {f:?}", r.index);
        }
        Ok(r.leaf_bytes().map(|b| b.len() as u64).unwrap_or(0))
    };
    let mut total = 0;
    for leaf_bytes in candor_core::par::map(&lines, 1, check) {
        total += leaf_bytes?;
    }
    Ok((lines.len(), total))
}

/// Submits one chunk's request bodies (closed loop with `--concurrency` requests in
/// flight, or open loop at `--rate` from `start`) and returns every answer. Each body
/// is dropped once its request was answered.
async fn submit(
    http: &reqwest::Client,
    url: &str,
    bodies: Vec<(Bytes, usize)>,
    args: &Args,
    start: Instant,
) -> anyhow::Result<Vec<Answer>> {
    let mut handles = Vec::new();
    if let Some(rate) = args.rate {
        // Open loop: entries fall due at `rate` from `start`, and a request leaves
        // when its last entry is due. Leaving when its first was due would offer N
        // requests in N - 1 intervals, and a short run would report more than `rate`.
        let mut due = 0usize;
        for (body, n) in bodies {
            due += n;
            let at = start + Duration::from_secs_f64(due as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
            let http = http.clone();
            let url = url.to_owned();
            handles.push(tokio::spawn(async move {
                post(&http, &url, body, n, at).await.map(|a| vec![a])
            }));
        }
    } else {
        let queue = Arc::new(Mutex::new(VecDeque::from(bodies)));
        for _ in 0..args.concurrency {
            let (queue, http, url) = (queue.clone(), http.clone(), url.to_owned());
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    // A poisoned lock means another submitter panicked; its join error
                    // is reported below, so this one just stops.
                    let next = match queue.lock() {
                        Ok(mut q) => q.pop_front(),
                        Err(_) => None,
                    };
                    let Some((body, n)) = next else {
                        break;
                    };
                    mine.push(post(&http, &url, body, n, Instant::now()).await?);
                }
                anyhow::Ok(mine)
            }));
        }
    }
    let mut out = Vec::new();
    for h in handles {
        out.extend(
            h.await
                .map_err(|e| anyhow!("a submitter task failed: {e}"))??,
        );
    }
    Ok(out)
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.entries == 0 || args.batch == 0 || args.concurrency == 0 || args.chunk == 0 {
        bail!("--entries, --chunk, --batch and --concurrency must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive, finite number of entries per second, not {rate}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(300))
        .build()?;

    // 1. The log, and companies with registered keys.
    let server = match &args.log {
        Some(_) => None,
        None => Some(start_server(&args)?),
    };
    let base = match (&server, &args.log) {
        (Some(s), _) => s.base.clone(),
        (None, Some(url)) => url.trim_end_matches('/').to_string(),
        (None, None) => bail!("no log"),
    };
    let info: serde_json::Value = rt.block_on(async {
        let r = http.get(format!("{base}/v1/log")).send().await?;
        anyhow::Ok(r.json().await?)
    })?;
    let log_vkey: VerifierKey = info["verifier_key"]
        .as_str()
        .ok_or_else(|| anyhow!("GET /v1/log has no verifier_key"))?
        .parse()
        .map_err(|e| anyhow!("the log's verifier key does not parse: {e}"))?;
    let size_before = info["size"].as_u64().unwrap_or(0);
    let companies: Vec<Company> = match (&server, &args.key) {
        (Some(s), _) => {
            let token = std::fs::read_to_string(s.data.join("admin.token"))
                .context("reading the admin token")?;
            let mut cs = Vec::new();
            for i in 0..args.companies.max(1) {
                let sk = SignerKey::generate(&format!("shop{i}.example"))
                    .map_err(|e| anyhow!("generating a key: {e}"))?;
                let c = Company::from_signer(&sk);
                rt.block_on(register(&http, &base, token.trim(), &c, &sk.verifier()))?;
                cs.push(c);
            }
            cs
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let sk: SignerKey = text
                .trim()
                .parse()
                .map_err(|e| anyhow!("{} is not a signed-note private key: {e}", path.display()))?;
            vec![Company::from_signer(&sk)]
        }
        (None, None) => bail!("--log needs --key"),
    };

    // Each company's decisions cite a purchase it logged beforehand, as in real use.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut companies = companies;
    for c in &mut companies {
        c.purchase = Some(rt.block_on(log_setup_purchase(&http, &base, c, now))?);
    }

    // 2. The verification limit, same machine, same run, server idle.
    let limit = verify_limit(args.limit_secs, Verifier::Dalek);
    eprintln!("Ed25519 verify_batch limit on all cores: {limit:.0} signatures/s");
    let candor_limit = verify_limit(args.limit_secs, Verifier::Candor);
    eprintln!("the same with Candor's batch verification: {candor_limit:.0} signatures/s");

    // 3. The load, chunk by chunk: sign (clock paused), submit (clock running),
    // verify the receipts and drop them (clock paused).
    let url = format!("{base}/v1/entries");
    let sampler = server.as_ref().map(|s| RssSampler::start(s.child.id()));
    let mut seconds = 0.0f64;
    let mut presign_secs = 0.0f64;
    let mut verify_secs = 0.0f64;
    let mut receipts = 0usize;
    let mut leaf_bytes = 0u64;
    let mut lat: Vec<(f64, u64)> = Vec::new();
    let mut rss_by_chunk: Vec<f64> = Vec::new();
    // CPU seconds used during the submission windows: the server's and this tool's.
    let mut server_cpu = 0.0f64;
    let mut own_cpu = 0.0f64;
    let server_pid = server.as_ref().map(|s| s.child.id());
    let chunks = args.entries.div_ceil(args.chunk);
    for c in 0..chunks {
        let lo = c * args.chunk;
        let hi = (lo + args.chunk).min(args.entries);
        let t = Instant::now();
        let bodies = presign(&companies, lo, hi, args.batch, now)?;
        presign_secs += t.elapsed().as_secs_f64();

        let cpu_before = (
            server_pid.and_then(cpu_seconds),
            cpu_seconds(std::process::id()),
        );
        let start = Instant::now();
        let answers = rt.block_on(submit(&http, &url, bodies, &args, start))?;
        seconds += start.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (cpu_before.0, server_pid.and_then(cpu_seconds)) {
            server_cpu += b - a;
        }
        if let (Some(a), Some(b)) = (cpu_before.1, cpu_seconds(std::process::id())) {
            own_cpu += b - a;
        }
        if let Some(s) = &server
            && let Some((now_mb, _)) = rss_mb(s.child.id())
        {
            rss_by_chunk.push(round(now_mb, 1));
        }

        let t = Instant::now();
        let (n, bytes) = verify_all(&answers, &log_vkey)?;
        verify_secs += t.elapsed().as_secs_f64();
        if n != hi - lo {
            bail!("{n} receipts for the {} entries {lo}..{hi}", hi - lo);
        }
        receipts += n;
        leaf_bytes += bytes;
        // Every entry of a request waits for the request's answer.
        lat.extend(
            answers
                .iter()
                .map(|a| (a.latency.as_secs_f64() * 1e3, a.entries as u64)),
        );
        if chunks > 1 {
            eprintln!(
                "chunk {}/{chunks}: entries {lo}..{hi} submitted, receipts verify ({:.0} entries/s so far)",
                c + 1,
                hi as f64 / seconds
            );
        }
    }
    let sampled_max = sampler.map(RssSampler::finish);
    eprintln!(
        "pre-signed {} entries in {chunks} chunk(s) in {presign_secs:.1} s",
        args.entries
    );

    // 4. Figures about the server.
    let rss = server.as_ref().and_then(|s| rss_mb(s.child.id()));
    if let (Some(m), Some((_, peak))) = (sampled_max, rss)
        && m > peak + 1.0
    {
        eprintln!("warning: sampled server RSS {m:.1} MB exceeds its reported peak {peak:.1} MB");
    }
    let size_after = rt.block_on(async {
        let r = http.get(format!("{base}/v1/log")).send().await?;
        let v: serde_json::Value = r.json().await?;
        anyhow::Ok(v["size"].as_u64().unwrap_or(0))
    })?;
    let disk = server
        .as_ref()
        .and_then(|s| candor_store::dir_size(&s.data).ok());
    if receipts != args.entries {
        bail!("{} receipts for {} entries", receipts, args.entries);
    }
    eprintln!("all {receipts} receipts verify ({verify_secs:.1} s)");
    lat.sort_by(|a, b| a.0.total_cmp(&b.0));
    let eps = args.entries as f64 / seconds;

    // 6. Optionally, the monitor's full audit of the log.
    let audit = if args.audit {
        Some(run_audit(&args, &base, &log_vkey, size_after)?)
    } else {
        None
    };

    let mut report = json!({
        "entries": args.entries,
        "seconds": round(seconds, 3),
        "entries_per_sec": round(eps, 0),
        "p50_ms": round(percentile(&lat, 0.50), 2),
        "p99_ms": round(percentile(&lat, 0.99), 2),
        // The tail a stall in one batch shows up in, and the worst of all.
        "p999_ms": round(percentile(&lat, 0.999), 2),
        "max_ms": round(percentile(&lat, 1.0), 2),
        "bytes_per_entry": disk.map(|d| round(d as f64 / size_after.max(1) as f64, 1)),
        "leaf_bytes_per_entry": round(leaf_bytes as f64 / receipts.max(1) as f64, 1),
        "server_rss_mb": rss.map(|r| round(r.0, 1)),
        "server_peak_rss_mb": rss.map(|r| round(r.1, 1)),
        "verify_limit_per_sec": round(limit, 0),
        "fraction_of_limit": round(eps / limit, 3),
        "candor_verify_limit_per_sec": round(candor_limit, 0),
        "fraction_of_candor_limit": round(eps / candor_limit, 3),
        "store": if args.log.is_some() { serde_json::Value::Null } else { json!(args.store) },
        "batch": args.batch,
        "concurrency": if args.rate.is_some() { serde_json::Value::Null } else { json!(args.concurrency) },
        "offered_rate": args.rate,
        "log_size": size_after,
        "log_size_before": size_before,
        "presign_seconds": round(presign_secs, 2),
        "receipts_verify_seconds": round(verify_secs, 2),
        "chunk": args.chunk,
        "chunks": chunks,
        "latency_percentiles": "exact",
        "server_rss_sampled_max_mb": sampled_max.map(|m| round(m, 1)),
        "server_rss_mb_by_chunk": if server.is_some() { json!(rss_by_chunk) } else { serde_json::Value::Null },
        "loadgen_peak_rss_mb": rss_mb(std::process::id()).map(|r| round(r.1, 1)),
        "load_average": load_average(),
        "server_cpu_us_per_entry": server_pid.map(|_| round(server_cpu * 1e6 / args.entries as f64, 1)),
        "loadgen_cpu_us_per_entry": round(own_cpu * 1e6 / args.entries as f64, 1),
    });
    if let (Some((secs, rate)), Some(obj)) = (audit, report.as_object_mut()) {
        obj.insert("audit_seconds".into(), json!(round(secs, 3)));
        obj.insert("audit_entries_per_sec".into(), json!(round(rate, 0)));
    }
    println!("{report}");
    Ok(())
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Runs the monitor once over the whole log: (seconds, entries per second).
fn run_audit(
    args: &Args,
    base: &str,
    log_key: &VerifierKey,
    size: u64,
) -> anyhow::Result<(f64, f64)> {
    let state = tempfile::Builder::new()
        .prefix("candor-loadgen-monitor-")
        .tempdir()
        .context("creating the monitor's state directory")?;
    let mut cmd = self_command(args.candor.as_deref(), "monitor", MONITOR_CHILD)?;
    cmd.args(["--log", base, "--log-key", &log_key.to_string(), "--once"])
        .arg("--state")
        .arg(state.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let t = Instant::now();
    let status = cmd.status().context("running the monitor")?;
    let secs = t.elapsed().as_secs_f64();
    // Exit 1 means findings (e.g. the policy flags special-category purchases), which
    // is still a complete audit; 2 means it could not check.
    if status.code() != Some(0) && status.code() != Some(1) {
        bail!("the monitor could not audit the log ({status})");
    }
    eprintln!("monitor audited {size} entries in {secs:.2} s");
    Ok((secs, size as f64 / secs))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    /// The per-request percentile equals the percentile of one latency per entry.
    #[test]
    fn weighted_percentile_equals_per_entry_percentile() {
        let pairs = [(1.0, 3u64), (2.5, 1), (4.0, 10), (9.0, 2), (30.0, 1)];
        let mut flat: Vec<f64> = pairs
            .iter()
            .flat_map(|&(ms, k)| std::iter::repeat_n(ms, k as usize))
            .collect();
        flat.sort_by(f64::total_cmp);
        for p in [0.0, 0.1, 0.2, 0.5, 0.8, 0.9, 0.99, 1.0] {
            let i = ((flat.len() as f64 - 1.0) * p).round() as usize;
            assert_eq!(percentile(&pairs, p), flat[i], "p = {p}");
        }
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
