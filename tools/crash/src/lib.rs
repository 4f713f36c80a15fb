//! The Candor crash harness: runs the real `candor serve` under steady load from several
//! concurrent clients, kills it with SIGKILL at random moments, restarts it on the same
//! data directory, and checks after every restart that the log kept its promises
//! (spec/api.md §1 and §4, "Synchronous receipts"; C2SP tlog-checkpoint):
//!
//! 1. **No acknowledged entry is lost.** Every receipt a client received before the kill
//!    still holds on the restarted log: `GET /v1/entries/{index}` returns the receipt's
//!    leaf, a fresh receipt (`GET /v1/receipts/{index}`) proves its inclusion in the new
//!    checkpoint, and the receipt's own checkpoint is consistent with the new one.
//! 2. **No fork.** Every checkpoint any client saw (from `GET /checkpoint` and inside
//!    receipts) is consistent with every later one: equal sizes have equal roots, and
//!    the RFC 9162 §2.1.4 consistency proof from each checkpoint seen since the last
//!    restart, and from the newest checkpoint verified at the last restart, to the new
//!    checkpoint verifies. Since a verified consistency proof shows the old tree is a
//!    prefix of the new one, and "prefix of" is transitive, this chain covers all pairs
//!    of checkpoints ever seen without re-checking every pair each round.
//! 3. **No rollback.** The restarted log's checkpoint is at least as large as any seen.
//! 4. **It keeps accepting work.** A probe entry is logged after each restart, and a
//!    resubmission of an already acknowledged entry gets its original index back.
//!
//! Each receipt is also verified when it arrives (its `tlog_proof` against the log key).
//! Receipts are checked against the restarted log once, at the first restart after they
//! arrived; older receipts are re-checked by a random sample each round.
//!
//! Storage backends are [`Backend`]s: a name plus the `candor serve` flags that select
//! it: the embedded ones by name ([`Backend::builtin`]), PostgreSQL by URL
//! ([`Backend::postgres`]); any other is a [`Backend`] built with its own flags.
//!
//! The harness is synchronous from the outside ([`run`] builds its own tokio runtime),
//! so both the `candor-crash` binary and `tests/crash.rs` call it directly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use candor_core::checkpoint::open_checkpoint;
use candor_core::entry::{SignedEntry, samples};
use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::verify_consistency;
use candor_core::note::{SignerKey, VerifierKey};
use candor_core::receipt::Receipt;
use candor_core::tlog_proof::TlogProof;
use futures::StreamExt as _;
use serde::Serialize;

const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::STANDARD;

/// Why the harness itself could not run (as opposed to a failed check, which is
/// reported in [`Summary::failures`]).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "unknown storage backend {0:?}: expected one of redb, sled (PostgreSQL is chosen by a postgres:// URL)"
    )]
    UnknownBackend(String),
    #[error("the candor binary {0} does not exist; build it first (cargo build --release)")]
    NoBinary(PathBuf),
    #[error("starting candor serve: {0}")]
    Spawn(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("setting up the log: {0}")]
    Setup(String),
}

/// A storage backend under test: its name and the `candor serve` flags selecting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub serve_args: Vec<String>,
}

impl Backend {
    /// The backends `candor serve` has built in.
    pub const BUILTIN: &'static [&'static str] = &["redb", "sled"];

    /// A built-in backend by name. A backend with external state (e.g. a database
    /// server) is built by the caller with the flags that point at a fresh instance.
    pub fn builtin(name: &str) -> Result<Backend, HarnessError> {
        if !Self::BUILTIN.contains(&name) {
            return Err(HarnessError::UnknownBackend(name.to_string()));
        }
        Ok(Backend {
            name: name.to_string(),
            serve_args: vec!["--store".into(), name.to_string()],
        })
    }

    /// The PostgreSQL backend at `url` (`postgres://…`). The database must hold no
    /// Candor log yet: a round starts a new log, whose state lives in the database
    /// rather than in the (fresh, temporary) data directory.
    pub fn postgres(url: &str) -> Backend {
        Backend {
            name: "postgres".into(),
            serve_args: vec!["--store".into(), url.to_string()],
        }
    }
}

/// What one crash round does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `candor` binary.
    pub candor: PathBuf,
    pub backend: Backend,
    /// How many SIGKILLs (each followed by a restart and the checks).
    pub kills: u32,
    /// Seeds the kill delays and the clients' choices.
    pub seed: u64,
    /// Concurrent submitting clients, one company each.
    pub clients: usize,
    /// Kill delays are drawn up to this long after a restart's checks.
    pub max_kill_delay: Duration,
    /// Older receipts re-checked per round (in addition to all new ones).
    pub resample: usize,
    /// Data directory to use (kept); a temporary one when `None`.
    pub data_dir: Option<PathBuf>,
    /// Progress on standard error.
    pub verbose: bool,
    /// `--redb-index-flush-rows` for the server: a small number makes the redb store
    /// flush its index rows to runs, and merge runs, many times per round, so kills
    /// land around flushes and merges too.
    pub index_flush_rows: Option<usize>,
    /// `--redb-index-merge-step` for the server: records a merge of runs moves on per
    /// append; a small number makes each merge span many appends, so kills land
    /// while merges are in progress.
    pub index_merge_step: Option<u64>,
}

impl Options {
    /// Defaults for `backend` with the binary at `candor`.
    pub fn new(candor: PathBuf, backend: Backend) -> Options {
        Options {
            candor,
            backend,
            kills: 10,
            seed: 1,
            clients: 4,
            max_kill_delay: Duration::from_millis(300),
            resample: 32,
            data_dir: None,
            verbose: false,
            index_flush_rows: None,
            index_merge_step: None,
        }
    }
}

/// The outcome of a round (`--json` prints it).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub backend: String,
    pub seed: u64,
    pub kills: u32,
    /// Receipts received from the log (all verified on arrival).
    pub receipts: u64,
    /// Receipt checks against a restarted log (leaf, fresh inclusion, consistency).
    pub receipts_checked: u64,
    /// Checkpoint checks (equal-size roots and consistency proofs) across restarts.
    pub checkpoints_checked: u64,
    /// Resubmissions of acknowledged entries that got their original index back.
    pub dedup_checked: u64,
    /// The log's size at the end.
    pub entries: u64,
    /// Submissions that failed because of a kill (connection lost, 503 while starting).
    pub interrupted_submissions: u64,
    pub elapsed_secs: f64,
    /// Every broken promise, in words. Empty means the round passed.
    pub failures: Vec<String>,
}

/// A small deterministic PRNG (SplitMix64): reproducible kill schedules from `--seed`
/// without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Older receipts kept for re-checking (a uniform sample of all of them).
const OLD_POOL: usize = 20_000;

/// A checkpoint as seen by a client, already verified with the log key.
#[derive(Debug, Clone, Copy)]
struct SeenCheckpoint {
    size: u64,
    root: Hash,
}

/// An acknowledged entry, already verified against its receipt's checkpoint.
#[derive(Debug, Clone)]
struct SeenReceipt {
    index: u64,
    leaf: Vec<u8>,
    checkpoint: SeenCheckpoint,
}

/// What clients saw since the last restart's checks.
#[derive(Default)]
struct Pending {
    receipts: Vec<SeenReceipt>,
    checkpoints: Vec<SeenCheckpoint>,
}

/// State shared by the clients and the killer.
struct Shared {
    base: RwLock<String>,
    vkey: VerifierKey,
    stop: AtomicBool,
    /// Set from a kill until the restarted log is checked: the clients wait, so a
    /// round's checks cover what one kill window produced (bounded work per round).
    paused: AtomicBool,
    pending: Mutex<Pending>,
    failures: Mutex<Vec<String>>,
    receipts: AtomicU64,
    dedup_checked: AtomicU64,
    interrupted: AtomicU64,
}

impl Shared {
    fn fail(&self, msg: String) {
        lock(&self.failures).push(msg);
    }

    fn base(&self) -> String {
        self.base.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a client task panicked; the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens a checkpoint note with the log key.
fn open_cp(note: &[u8], vkey: &VerifierKey) -> Result<SeenCheckpoint, String> {
    let (cp, _) = open_checkpoint(note, vkey).map_err(|e| e.to_string())?;
    Ok(SeenCheckpoint {
        size: cp.size,
        root: cp.root,
    })
}

/// Verifies a receipt as a consumer would (its tlog-proof against the log key) and
/// returns what it proves.
fn verify_receipt(r: &Receipt, vkey: &VerifierKey) -> Result<SeenReceipt, String> {
    let leaf = r.leaf_bytes().map_err(|e| e.to_string())?;
    let proof = TlogProof::parse(r.tlog_proof.as_bytes()).map_err(|e| e.to_string())?;
    if proof.index != r.index {
        return Err(format!(
            "receipt index {} but its tlog-proof is for index {}",
            r.index, proof.index
        ));
    }
    let cp = proof
        .verify(&leaf_hash(&leaf), vkey)
        .map_err(|e| format!("receipt for index {}: {e}", r.index))?;
    Ok(SeenReceipt {
        index: r.index,
        leaf,
        checkpoint: SeenCheckpoint {
            size: cp.size,
            root: cp.root,
        },
    })
}

/// A running `candor serve`.
struct Server {
    child: Child,
    base: String,
    vkey: String,
}

fn spawn_server(opts: &Options, data: &Path, log: &Path) -> Result<Server, HarnessError> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(&opts.candor);
    command.arg("serve");
    if let Some(n) = opts.index_flush_rows {
        command.arg(format!("--redb-index-flush-rows={n}"));
    }
    if let Some(n) = opts.index_merge_step {
        command.arg(format!("--redb-index-merge-step={n}"));
    }
    let mut child = command
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--batch-delay-ms", "5"])
        .args(&opts.backend.serve_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| HarnessError::Spawn(format!("{}: {e}", opts.candor.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| HarnessError::Spawn("no stdout pipe".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Drain stdout for the server's whole life so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut vkey = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(k) = line.strip_prefix("verifier key: ") {
                    vkey = Some(k.trim().to_string());
                } else if let Some(a) = line.strip_prefix("listening on ") {
                    let vkey = vkey.ok_or_else(|| {
                        HarnessError::Spawn("no verifier key line before the address".into())
                    })?;
                    return Ok(Server {
                        child,
                        base: a.trim().to_string(),
                        vkey,
                    });
                }
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                let mut text = String::new();
                std::fs::File::open(log)?.read_to_string(&mut text)?;
                let tail: String = text
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(HarnessError::Spawn(format!(
                    "candor serve did not start ({status}); its last messages:\n{tail}"
                )));
            }
        }
    }
}

/// Runs one crash round. Failed checks are collected in the summary; an `Err` means
/// the harness could not run at all (or the log refused to restart, also a failure).
pub fn run(opts: &Options) -> Result<Summary, HarnessError> {
    if !opts.candor.exists() {
        return Err(HarnessError::NoBinary(opts.candor.clone()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(opts))
}

async fn run_async(opts: &Options) -> Result<Summary, HarnessError> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let data = match &opts.data_dir {
        Some(d) => d.clone(),
        None => tmp.path().join("data"),
    };
    let log = tmp.path().join("serve.log");
    let mut rng = Rng::new(opts.seed);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| HarnessError::Setup(e.to_string()))?;

    let mut server = spawn_server(opts, &data, &log)?;
    let vkey: VerifierKey = server
        .vkey
        .parse()
        .map_err(|e| HarnessError::Setup(format!("the printed verifier key: {e}")))?;
    wait_healthy(&http, &server.base).await?;
    let token = std::fs::read_to_string(data.join("admin.token"))?
        .trim()
        .to_string();

    // One company per client, plus one for the post-restart probe.
    let mut companies = Vec::new();
    for i in 0..=opts.clients {
        let name = format!("c{i}.crash.example");
        let key = SignerKey::generate(&name).map_err(|e| HarnessError::Setup(e.to_string()))?;
        let resp = http
            .post(format!("{}/v1/companies", server.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "name": name,
                "verifier_key": key.verifier().to_string(),
                "action": "register",
            }))
            .send()
            .await
            .map_err(|e| HarnessError::Setup(format!("registering {name}: {e}")))?;
        if !resp.status().is_success() {
            return Err(HarnessError::Setup(format!(
                "registering {name}: {}",
                resp.status()
            )));
        }
        companies.push((name, key));
    }
    let Some((probe_name, probe_key)) = companies.pop() else {
        return Err(HarnessError::Setup("no probe company".into()));
    };

    let shared = Arc::new(Shared {
        base: RwLock::new(server.base.clone()),
        vkey: vkey.clone(),
        stop: AtomicBool::new(false),
        paused: AtomicBool::new(false),
        pending: Mutex::new(Pending::default()),
        failures: Mutex::new(Vec::new()),
        receipts: AtomicU64::new(0),
        dedup_checked: AtomicU64::new(0),
        interrupted: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for (i, (name, key)) in companies.into_iter().enumerate() {
        let shared = shared.clone();
        let http = http.clone();
        let seed = opts.seed ^ ((i as u64 + 1) << 32);
        tasks.push(tokio::spawn(client(shared, http, name, key, seed)));
    }

    let mut checker = Checker {
        http: http.clone(),
        vkey: vkey.clone(),
        known: BTreeMap::new(),
        anchor: None,
        old: Vec::new(),
        old_seen: 0,
        receipts_checked: 0,
        checkpoints_checked: 0,
    };
    let mut probe_n = 0u64;
    let mut kills = 0;
    let mut fatal = None;
    while kills < opts.kills {
        // Half the kills land soon after the log starts taking load again, half
        // anywhere in the window: batching, fsync, signing and answering all happen
        // within a few milliseconds of each other under steady load.
        let window = opts.max_kill_delay.as_millis() as u64;
        let delay = if rng.below(2) == 0 {
            rng.below(window.min(40) + 1)
        } else {
            rng.below(window + 1)
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // SIGKILL: no signal handler, no drain, no flush.
        shared.paused.store(true, Ordering::SeqCst);
        server.child.kill()?;
        server.child.wait()?;
        kills += 1;
        let pending = std::mem::take(&mut *lock(&shared.pending));
        let restarted = spawn_server(opts, &data, &log);
        server = match restarted {
            Ok(s) => s,
            Err(e) => {
                fatal = Some(format!(
                    "after kill {kills}, the log did not restart on its data directory: {e}"
                ));
                break;
            }
        };
        if server.vkey != vkey.to_string() {
            shared.fail(format!(
                "after kill {kills} the log key changed: {} became {}",
                vkey, server.vkey
            ));
        }
        *shared.base.write().unwrap_or_else(|p| p.into_inner()) = server.base.clone();
        if let Err(e) = wait_healthy(&http, &server.base).await {
            fatal = Some(format!("after kill {kills}: {e}"));
            break;
        }
        for f in checker
            .check(&server.base, pending, &mut rng, opts.resample)
            .await
        {
            shared.fail(format!("after kill {kills}: {f}"));
        }
        // The log keeps accepting work: a fresh entry must be logged.
        probe_n += 1;
        let entry = sign(&probe_name, &probe_key, probe_n)
            .map_err(|e| HarnessError::Setup(format!("signing a probe entry: {e}")))?;
        match probe(&http, &server.base, &entry, &vkey).await {
            Ok(r) => lock(&shared.pending).receipts.push(r),
            Err(e) => shared.fail(format!(
                "after kill {kills} the log did not accept a new entry: {e}"
            )),
        }
        shared.paused.store(false, Ordering::SeqCst);
        if opts.verbose {
            eprintln!(
                "[{}] kill {kills}/{}: after {delay} ms; receipts {}, checked {} receipts and {} checkpoints, failures {}",
                opts.backend.name,
                opts.kills,
                shared.receipts.load(Ordering::Relaxed),
                checker.receipts_checked,
                checker.checkpoints_checked,
                lock(&shared.failures).len()
            );
        }
    }

    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut entries = 0;
    if fatal.is_none() {
        // A last round of checks for what arrived after the last kill, then a graceful
        // stop, which must also succeed.
        let pending = std::mem::take(&mut *lock(&shared.pending));
        for f in checker
            .check(&server.base, pending, &mut rng, opts.resample)
            .await
        {
            shared.fail(format!("at the end: {f}"));
        }
        entries = checker.anchor.map(|a| a.size).unwrap_or(0);
        let pid = server.child.id().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = server.child.try_wait()? {
                if !st.success() {
                    shared.fail(format!("graceful shutdown at the end exited with {st}"));
                }
                break;
            }
            if !term.success() || Instant::now() > deadline {
                shared.fail("the log did not stop on SIGTERM at the end".into());
                let _ = server.child.kill();
                let _ = server.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
    let mut failures = std::mem::take(&mut *lock(&shared.failures));
    if let Some(f) = fatal {
        failures.push(f);
    }
    Ok(Summary {
        backend: opts.backend.name.clone(),
        seed: opts.seed,
        kills,
        receipts: shared.receipts.load(Ordering::Relaxed),
        receipts_checked: checker.receipts_checked,
        checkpoints_checked: checker.checkpoints_checked,
        dedup_checked: shared.dedup_checked.load(Ordering::Relaxed),
        entries,
        interrupted_submissions: shared.interrupted.load(Ordering::Relaxed),
        elapsed_secs: started.elapsed().as_secs_f64(),
        failures,
    })
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> Result<(), HarnessError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Setup(format!(
                "{base}/healthz did not answer 200 within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sign(company: &str, key: &SignerKey, n: u64) -> Result<SignedEntry, String> {
    SignedEntry::sign(
        samples::load_targeting_decision(company, n),
        key.signing_key(),
        key.key_id(),
    )
    .map_err(|e| e.to_string())
}

/// Submits `entry` until the log answers 200 (retrying connection errors and 503 for
/// up to 20 s) and returns the verified receipt.
async fn probe(
    http: &reqwest::Client,
    base: &str,
    entry: &SignedEntry,
    vkey: &VerifierKey,
) -> Result<SeenReceipt, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match submit(http, base, std::slice::from_ref(entry), false).await {
            Ok(rs) => {
                let r = rs.first().ok_or("no receipt in the answer")?;
                return verify_receipt(r, vkey);
            }
            Err(Submit::Interrupted(e)) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(Submit::Interrupted(e)) | Err(Submit::Refused(e)) => return Err(e),
        }
    }
}

/// Why a submission got no receipts.
enum Submit {
    /// The log was killed or is starting: connection errors, 503. Expected.
    Interrupted(String),
    /// Any other answer: a broken promise.
    Refused(String),
}

async fn submit(
    http: &reqwest::Client,
    base: &str,
    entries: &[SignedEntry],
    ndjson: bool,
) -> Result<Vec<Receipt>, Submit> {
    let url = format!("{base}/v1/entries");
    let mut body = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut body, e).map_err(|e| Submit::Refused(e.to_string()))?;
        body.push(b'\n');
    }
    let ct = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let resp = http
        .post(&url)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .map_err(|e| Submit::Interrupted(e.to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Submit::Interrupted(e.to_string()))?;
    if status == 503 {
        return Err(Submit::Interrupted("503".into()));
    }
    if status != 200 {
        return Err(Submit::Refused(format!(
            "POST /v1/entries answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        out.push(Receipt::from_json(line).map_err(|e| Submit::Refused(e.to_string()))?);
    }
    if out.len() != entries.len() {
        return Err(Submit::Refused(format!(
            "sent {} entries, got {} receipts",
            entries.len(),
            out.len()
        )));
    }
    Ok(out)
}

/// One client: submits single entries and NDJSON batches, sometimes re-submits an
/// acknowledged entry (which must keep its index), sometimes reads the checkpoint.
async fn client(
    shared: Arc<Shared>,
    http: reqwest::Client,
    company: String,
    key: SignerKey,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let mut next = 0u64;
    let mut acked: Vec<(SignedEntry, u64)> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let base = shared.base();
        let roll = rng.below(100);
        if roll < 5 {
            if let Ok(r) = http.get(format!("{base}/checkpoint")).send().await
                && r.status() == 200
                && let Ok(body) = r.bytes().await
            {
                match open_cp(&body, &shared.vkey) {
                    Ok(cp) => lock(&shared.pending).checkpoints.push(cp),
                    Err(e) => shared.fail(format!("GET /checkpoint does not verify: {e}")),
                }
            }
            continue;
        }
        let (entries, expect): (Vec<SignedEntry>, Option<u64>) = if roll < 12 && !acked.is_empty() {
            let (e, i) = acked[rng.below(acked.len() as u64) as usize].clone();
            (vec![e], Some(i))
        } else {
            let n = if roll < 55 { 1 } else { 2 + rng.below(31) };
            let mut es = Vec::new();
            for _ in 0..n {
                next += 1;
                match sign(&company, &key, next) {
                    Ok(e) => es.push(e),
                    Err(e) => {
                        shared.fail(format!("signing a sample entry: {e}"));
                        return;
                    }
                }
            }
            (es, None)
        };
        let ndjson = entries.len() > 1 || rng.below(4) == 0;
        match submit(&http, &base, &entries, ndjson).await {
            Ok(receipts) => {
                let mut seen = Vec::new();
                for (r, e) in receipts.iter().zip(&entries) {
                    match verify_receipt(r, &shared.vkey) {
                        Ok(s) => {
                            if let Some(i) = expect {
                                if s.index != i {
                                    shared.fail(format!(
                                        "a resubmitted entry got index {} but was acknowledged at {i}",
                                        s.index
                                    ));
                                } else {
                                    shared.dedup_checked.fetch_add(1, Ordering::Relaxed);
                                }
                            } else if acked.len() < 4096 {
                                acked.push((e.clone(), s.index));
                            }
                            seen.push(s);
                        }
                        Err(e) => {
                            shared.fail(format!("a receipt from the log does not verify: {e}"))
                        }
                    }
                }
                shared
                    .receipts
                    .fetch_add(seen.len() as u64, Ordering::Relaxed);
                let mut p = lock(&shared.pending);
                for s in seen {
                    p.checkpoints.push(s.checkpoint);
                    p.receipts.push(s);
                }
            }
            Err(Submit::Interrupted(_)) => {
                shared.interrupted.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10 + rng.below(20))).await;
            }
            Err(Submit::Refused(e)) => {
                shared.fail(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Checks what clients saw against a restarted log.
struct Checker {
    http: reqwest::Client,
    vkey: VerifierKey,
    /// Root of every checkpoint size ever seen.
    known: BTreeMap<u64, Hash>,
    /// The newest checkpoint verified at a restart; every older one is its prefix.
    anchor: Option<SeenCheckpoint>,
    /// A uniform sample of the receipts already checked once, for re-checking.
    old: Vec<SeenReceipt>,
    /// How many receipts were offered to `old`.
    old_seen: u64,
    receipts_checked: u64,
    checkpoints_checked: u64,
}

impl Checker {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if status != 200 {
            return Err(format!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body.to_vec())
    }

    /// Runs every check of the module docs; returns the failures.
    async fn check(
        &mut self,
        base: &str,
        pending: Pending,
        rng: &mut Rng,
        resample: usize,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let new = match self.get(&format!("{base}/checkpoint")).await {
            Ok(note) => match open_cp(&note, &self.vkey) {
                Ok(cp) => cp,
                Err(e) => return vec![format!("the restarted log's checkpoint: {e}")],
            },
            Err(e) => return vec![e],
        };
        // Every checkpoint seen since the last restart, the last anchor, and the new one.
        let mut cps = pending.checkpoints;
        cps.extend(self.anchor);
        cps.push(new);
        let mut by_size: BTreeMap<u64, Hash> = BTreeMap::new();
        for cp in cps {
            if let Some(root) = self.known.get(&cp.size).or(by_size.get(&cp.size))
                && *root != cp.root
            {
                failures.push(format!(
                    "two signed checkpoints of size {} have different roots ({} and {})",
                    cp.size,
                    root.to_base64(),
                    cp.root.to_base64()
                ));
                continue;
            }
            by_size.insert(cp.size, cp.root);
        }
        if let Some((&max, _)) = by_size.iter().next_back()
            && max > new.size
        {
            failures.push(format!(
                "rollback: a checkpoint of size {max} was signed before the kill but the restarted log's checkpoint has size {}",
                new.size
            ));
            return failures;
        }
        let results: Vec<Result<(), String>> = futures::stream::iter(by_size.clone())
            .map(|(size, root)| self.consistent(base, size, root, new))
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            self.checkpoints_checked += 1;
            if let Err(e) = r {
                failures.push(e);
            }
        }
        self.known.extend(by_size);

        // Receipts: all new ones, and a sample of older ones.
        let mut receipts = pending.receipts;
        let fresh = receipts.len();
        for _ in 0..resample.min(self.old.len()) {
            receipts.push(self.old[rng.below(self.old.len() as u64) as usize].clone());
        }
        let results: Vec<Result<SeenCheckpoint, String>> = futures::stream::iter(&receipts)
            .map(|r| self.receipt_holds(base, r, new))
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            self.receipts_checked += 1;
            match r {
                Ok(cp) => {
                    // The fresh receipt's checkpoint is one more signed checkpoint.
                    if let Some(root) = self.known.get(&cp.size)
                        && *root != cp.root
                    {
                        failures.push(format!(
                            "two signed checkpoints of size {} have different roots",
                            cp.size
                        ));
                    }
                }
                Err(e) => failures.push(e),
            }
        }
        receipts.truncate(fresh);
        // Reservoir sampling keeps the re-check pool uniform over every receipt ever
        // checked while bounding memory on long rounds.
        for r in receipts {
            self.old_seen += 1;
            if self.old.len() < OLD_POOL {
                self.old.push(r);
            } else {
                let j = rng.below(self.old_seen) as usize;
                if j < OLD_POOL {
                    self.old[j] = r;
                }
            }
        }
        self.anchor = Some(new);
        failures
    }

    /// The RFC 9162 §2.1.4.2 consistency of (size, root) with `new`, with a proof from
    /// the restarted log; the roots come from the signed checkpoints, not the log.
    async fn consistent(
        &self,
        base: &str,
        size: u64,
        root: Hash,
        new: SeenCheckpoint,
    ) -> Result<(), String> {
        if size == 0 || size == new.size {
            return if size == new.size && root != new.root {
                Err(format!("two signed checkpoints of size {size} differ"))
            } else {
                Ok(())
            };
        }
        let url = format!("{base}/v1/proof/consistency?old={size}&new={}", new.size);
        let body = self.get(&url).await?;
        let proof = parse_proof(&body).map_err(|e| format!("{url}: {e}"))?;
        verify_consistency(size, new.size, &root, &new.root, &proof).map_err(|e| {
            format!(
                "fork: the checkpoint of size {size} seen before the kill is not consistent with the restarted log's checkpoint of size {}: {e}",
                new.size
            )
        })
    }

    /// The receipt's leaf is still at its index, included in a fresh receipt, and its
    /// checkpoint is consistent with the new one. Returns the fresh receipt's checkpoint.
    async fn receipt_holds(
        &self,
        base: &str,
        r: &SeenReceipt,
        new: SeenCheckpoint,
    ) -> Result<SeenCheckpoint, String> {
        let i = r.index;
        let body = self
            .get(&format!("{base}/v1/entries/{i}"))
            .await
            .map_err(|e| {
                format!("lost entry: acknowledged index {i} is not served after the restart: {e}")
            })?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("/v1/entries/{i}: {e}"))?;
        let leaf = v["leaf"]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| format!("/v1/entries/{i}: no base64 leaf"))?;
        if leaf != r.leaf {
            return Err(format!(
                "rewritten entry: index {i} holds another leaf than the receipt's after the restart"
            ));
        }
        let body = self.get(&format!("{base}/v1/receipts/{i}")).await?;
        let fresh = Receipt::from_json(&body).map_err(|e| format!("/v1/receipts/{i}: {e}"))?;
        let fresh = verify_receipt(&fresh, &self.vkey)
            .map_err(|e| format!("fresh receipt for acknowledged index {i}: {e}"))?;
        if fresh.leaf != r.leaf {
            return Err(format!("the fresh receipt for index {i} has another leaf"));
        }
        self.consistent(base, r.checkpoint.size, r.checkpoint.root, new)
            .await?;
        Ok(fresh.checkpoint)
    }
}

fn parse_proof(body: &[u8]) -> Result<Vec<Hash>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    v["proof"]
        .as_array()
        .ok_or("no proof array")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(Hash::from_base64)
                .ok_or_else(|| "a proof hash is not base64 of 32 bytes".to_string())
        })
        .collect()
}

/// The default `candor` binary: target/release/candor if built, else target/debug/candor.
pub fn default_candor() -> PathBuf {
    let release = PathBuf::from("target/release/candor");
    if release.exists() {
        release
    } else {
        PathBuf::from("target/debug/candor")
    }
}
