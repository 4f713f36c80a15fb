//! `candor monitor` through the real binary: the Tessera log (clean, consistency
//! across sizes, flipped bytes), Candor logs served as static tlog-tiles
//! directories (thousands of entries, SIGKILL and resume, split views directly and
//! through --peer, every Candor and policy check), and the report.

use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
use candor_core::entry::{self, Entry, KeyAction, Leaf, SignedEntry, samples};
use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::MemoryTree;
use candor_core::note::SignerKey;
use candor_core::tiles::{
    Bundle, TILE_WIDTH, bundles_for_size, encode_bundle, read_tile_data, tiles_for_size,
};
use ed25519_dalek::SigningKey;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TESSERA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/tessera-log"
);
const TESSERA_KEY: &str =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

fn candor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_candor"))
}

// ------------------------------------------------------------------ static server

/// A static file server for a directory (any tlog-tiles mirror looks like this).
struct StaticServer {
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn serve_dir(root: &Path) -> StaticServer {
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = root.to_owned();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |req: Request| {
        let root = root.clone();
        async move {
            // The log lives under a path prefix, as on many mirrors.
            let Some(rel) = req.uri().path().strip_prefix("/mirror/").map(str::to_owned) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            if rel.split('/').any(|c| c == "..") {
                return StatusCode::BAD_REQUEST.into_response();
            }
            match tokio::fs::read(root.join(&rel)).await {
                Ok(b) => b.into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    StaticServer {
        url: format!("http://{addr}/mirror"),
        _rt: rt,
    }
}

/// Copies a directory tree (so tests can damage their copy).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut p = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            p.set_readonly(false);
            std::fs::set_permissions(&dst, p).unwrap();
        }
    }
}

// ------------------------------------------------------------------ running the monitor

struct Run {
    code: i32,
    findings: Vec<Value>,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let findings = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        findings,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn monitor_once(log: &str, key: &str, state: &Path, extra: &[&str]) -> Run {
    let out = candor()
        .args([
            "monitor",
            "--once",
            "--log",
            log,
            "--log-key",
            key,
            "--state",
        ])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    finish(out)
}

/// Starts `candor monitor --once` on `log` with `concurrency` fetches in flight,
/// stdout piped (findings) and stderr discarded, for tests that kill it.
fn spawn_monitor_once(
    log: &str,
    vkey: &str,
    state: &Path,
    concurrency: u32,
) -> std::process::Child {
    candor()
        .args(["monitor", "--once", "--concurrency"])
        .arg(concurrency.to_string())
        .args(["--log", log, "--log-key", vkey, "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        // Read with the output once the child ends, to say why a run failed; the
        // monitor writes little there, so the pipe cannot fill while it runs.
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn kinds(r: &Run) -> Vec<String> {
    r.findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------------ a static Candor log

/// Builds a tlog-tiles log directory from leaves, as a log would publish it.
struct LogBuilder {
    key: SignerKey,
    tree: MemoryTree,
    leaves: Vec<Vec<u8>>,
}

impl LogBuilder {
    fn new(key: &SignerKey) -> Self {
        LogBuilder {
            key: key.clone(),
            tree: MemoryTree::new(),
            leaves: Vec::new(),
        }
    }

    fn push_raw(&mut self, leaf: Vec<u8>) -> (u64, Hash) {
        let h = leaf_hash(&leaf);
        self.tree.append(h);
        self.leaves.push(leaf);
        (self.leaves.len() as u64 - 1, h)
    }

    fn push(
        &mut self,
        entry: Entry,
        key: &SigningKey,
        key_id: [u8; 4],
        logged_at: &str,
    ) -> (u64, Hash) {
        let signed = SignedEntry::sign(entry, key, key_id).unwrap();
        let leaf = Leaf::new(signed, logged_at.to_owned());
        self.push_raw(leaf.to_bytes().unwrap())
    }

    /// The log operator registers (or revokes) a company key.
    fn company_key(
        &mut self,
        company: &str,
        key: &SigningKey,
        action: KeyAction,
        logged_at: &str,
    ) -> (u64, Hash) {
        // Dated when it is logged, as the log dates the registrations it makes.
        let e = samples::company_key(company, &key.verifying_key(), action);
        let e = samples::dated(e, logged_at);
        let (sk, id) = (self.key.signing_key().clone(), self.key.key_id());
        self.push(e, &sk, id, logged_at)
    }

    /// Writes checkpoint, tiles and bundles for the current size into `dir`
    /// (earlier partial files stay, as on a real log).
    fn publish(&self, dir: &Path) -> String {
        let size = self.tree.size();
        for t in tiles_for_size(size) {
            let data = read_tile_data(t, &self.tree).unwrap();
            let p = dir.join(t.path());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        for b in bundles_for_size(size) {
            write_bundle(dir, b, &self.leaves);
        }
        let cp = Checkpoint {
            origin: self.key.name().to_owned(),
            size,
            root: self.tree.root(),
            extensions: vec![],
        };
        let note = sign_checkpoint(&cp, &self.key).unwrap();
        std::fs::write(dir.join("checkpoint"), &note).unwrap();
        String::from_utf8(note).unwrap()
    }
}

fn write_bundle(dir: &Path, b: Bundle, leaves: &[Vec<u8>]) {
    let start = (b.index * TILE_WIDTH) as usize;
    let refs: Vec<&[u8]> = leaves[start..start + usize::from(b.width)]
        .iter()
        .map(Vec::as_slice)
        .collect();
    let p = dir.join(b.path());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, encode_bundle(&refs).unwrap()).unwrap();
}

fn log_key(origin: &str, label: &str) -> SignerKey {
    SignerKey::from_seed(origin, samples::signing_key(label).to_bytes()).unwrap()
}

fn company_signer(label: &str, company: &str) -> (SigningKey, [u8; 4]) {
    let k = samples::signing_key(label);
    let id = entry::ed25519_key_id(company, &k.verifying_key());
    (k, id)
}

fn now_minus(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs);
    entry::format_time(t)
}

/// A targeting decision decided at `at` with a fresh subject.
fn decision(company: &str, n: u64, at: &str) -> Entry {
    let mut e = samples::load_targeting_decision(company, n);
    if let Entry::TargetingDecision(td) = &mut e {
        td.decided_at = at.to_owned();
    }
    e
}

fn purchase(company: &str, at: &str) -> Entry {
    let mut e = samples::data_purchase(company);
    if let Entry::DataPurchase(p) = &mut e {
        p.purchased_at = at.to_owned();
    }
    e
}

/// A clean Candor log of `n` entries: one company key, purchases, decisions citing them.
fn clean_candor_log(b: &mut LogBuilder, company: &str, n: u64) {
    let (ck, cid) = company_signer("acme", company);
    let t0 = now_minus(3600);
    if b.leaves.is_empty() {
        b.company_key(company, &ck, KeyAction::Register, &t0);
    }
    let mut last_purchase = None;
    while (b.leaves.len() as u64) < n {
        let i = b.leaves.len() as u64;
        let t = now_minus(3000);
        if i % 50 == 1 {
            last_purchase = Some(b.push(purchase(company, &t), &ck, cid, &t));
        } else if let (Some((pi, ph)), true) = (last_purchase, i.is_multiple_of(7)) {
            let subject = samples::opening(&format!("p{i}@example.com"), i).commitment();
            let mut e = samples::targeting_decision_from_purchase(company, subject, pi, ph);
            if let Entry::TargetingDecision(td) = &mut e {
                td.decided_at = t.clone();
            }
            b.push(e, &ck, cid, &t);
        } else {
            b.push(decision(company, i, &t), &ck, cid, &t);
        }
    }
}

// ================================================================== tests

#[test]
fn tessera_log_audits_clean_and_consistent_across_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    copy_dir(Path::new(TESSERA), &log);
    let srv = serve_dir(&log);
    let state = tmp.path().join("state");
    for n in [0, 1, 5, 15] {
        std::fs::copy(log.join(format!("checkpoint.{n}")), log.join("checkpoint")).unwrap();
        let r = monitor_once(&srv.url, TESSERA_KEY, &state, &[]);
        assert_eq!(r.code, 0, "size {n}: {} {}", r.stdout, r.stderr);
        assert!(r.findings.is_empty());
    }
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(st["verified"]["size"], 15);
    // An older checkpoint (a stale mirror) is consistent: no finding.
    std::fs::copy(log.join("checkpoint.7"), log.join("checkpoint")).unwrap();
    let r = monitor_once(&srv.url, TESSERA_KEY, &state, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("consistent"), "{}", r.stderr);
    // A checkpoint with a bad signature is a finding.
    let cp = std::fs::read_to_string(log.join("checkpoint.15"))
        .unwrap()
        .replacen("\n15\n", "\n16\n", 1);
    std::fs::write(log.join("checkpoint"), cp).unwrap();
    let r = monitor_once(&srv.url, TESSERA_KEY, &state, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(kinds(&r), ["bad_checkpoint"]);
}

#[test]
fn tessera_flipped_bytes_are_named() {
    for (path, offset, kind) in [
        ("tile/0/000.p/15", 100usize, "tile_mismatch"),
        ("tile/entries/000.p/15", 3, "bundle_mismatch"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        copy_dir(Path::new(TESSERA), &log);
        let mut b = std::fs::read(log.join(path)).unwrap();
        b[offset] ^= 0x01;
        std::fs::write(log.join(path), b).unwrap();
        let srv = serve_dir(&log);
        let r = monitor_once(&srv.url, TESSERA_KEY, &tmp.path().join("state"), &[]);
        assert_eq!(r.code, 1, "{path}: {}", r.stderr);
        assert_eq!(kinds(&r), [kind], "{path}: {}", r.stdout);
        let f = &r.findings[0];
        assert_eq!(f["resources"][0], path);
        assert!(f["message"].as_str().unwrap().contains(path));
        let idx = f["indexes"][0].as_u64().unwrap();
        assert_eq!(idx, if kind == "tile_mismatch" { 100 / 32 } else { 0 });
    }
}

#[test]
fn candor_log_of_thousands_audits_clean_and_grows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let key = log_key("log.example/candor", "log-1");
    let vkey = key.verifier().to_string();
    let mut b = LogBuilder::new(&key);
    clean_candor_log(&mut b, "acme.example", 3000);
    b.publish(&dir);
    let srv = serve_dir(&dir);
    let state = tmp.path().join("state");
    let r = monitor_once(&srv.url, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.findings.is_empty());
    // Grow past tile boundaries (partial tiles become full, level 1 grows).
    clean_candor_log(&mut b, "acme.example", 3000 + 256 * 3 + 17);
    b.publish(&dir);
    let r = monitor_once(&srv.url, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(st["verified"]["size"], 3000 + 256 * 3 + 17);

    // A log whose next bundle rewrites an entry the monitor saw in the earlier
    // partial bundle is caught, even though its tiles and checkpoint are honest.
    let n = b.leaves.len();
    let last = Bundle {
        index: (n as u64 - 1) / TILE_WIDTH,
        width: (n as u64 % TILE_WIDTH) as u16,
    };
    clean_candor_log(&mut b, "acme.example", n as u64 + 1);
    b.publish(&dir);
    let mut with_tamper = b.leaves.clone();
    with_tamper[n - 1] = b"tampered".to_vec();
    write_bundle(
        &dir,
        Bundle {
            index: last.index,
            width: last.width + 1,
        },
        &with_tamper,
    );
    let r = monitor_once(&srv.url, &vkey, &state, &[]);
    assert_eq!(r.code, 1);
    let k = kinds(&r);
    assert!(k.contains(&"partial_changed".to_owned()), "{k:?}");
    let f = r
        .findings
        .iter()
        .find(|f| f["kind"] == "partial_changed")
        .unwrap();
    assert_eq!(f["indexes"][0].as_u64().unwrap(), n as u64 - 1);
}

#[test]
fn sigkill_mid_audit_then_resume_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let key = log_key("log.example/big", "log-big");
    let vkey = key.verifier().to_string();
    let mut b = LogBuilder::new(&key);
    clean_candor_log(&mut b, "acme.example", 12_000);
    b.publish(&dir);
    let srv = serve_dir(&dir);
    let state = tmp.path().join("state");
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = spawn_monitor_once(&srv.url, &vkey, &state, 2);
        // Wait until the audit is under way, then SIGKILL it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut killed = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let at = std::fs::read(state.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["progress"]["point"]["size"].as_u64());
            if at.is_some_and(|s| s > 0) {
                std::thread::sleep(Duration::from_millis(30 * (kills + 1)));
                child.kill().unwrap(); // SIGKILL on Unix
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let out = child.wait_with_output().unwrap();
        // Whatever it printed before dying must not be a finding.
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        if killed {
            kills += 1;
        } else {
            break;
        }
    }
    assert!(kills >= 1, "the audit finished before it could be killed");
    let r = monitor_once(&srv.url, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.findings.is_empty());
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(st["verified"]["size"], 12_000);
    assert!(st["progress"].is_null());
}

/// Starts a monitor that follows `log` every second and serves its view; returns it
/// and the `host:port` it listens on (the first line it writes to stderr).
fn serving_monitor(log: &str, vkey: &str, state: &Path) -> (std::process::Child, String) {
    let mut m = candor()
        .args([
            "monitor",
            "--interval",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--log",
            log,
            "--log-key",
            vkey,
            "--state",
        ])
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(m.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Keep reading its stderr so that it never writes into a closed or full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (m, addr)
}

fn check_evidence(finding: &Value, key: &str) -> (i32, String) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), finding.to_string()).unwrap();
    let out = candor()
        .args(["monitor", "check-evidence", "--log-key", key])
        .arg(tmp.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Two logs sharing one key and origin but holding different entries.
fn forked_logs(tmp: &Path, size_a: u64, size_b: u64) -> (SignerKey, PathBuf, PathBuf) {
    let key = log_key("log.example/fork", "log-fork");
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let mut la = LogBuilder::new(&key);
    clean_candor_log(&mut la, "acme.example", size_a);
    la.publish(&a);
    let mut lb = LogBuilder::new(&key);
    for i in 0..size_b {
        lb.push_raw(format!("other history {i}").into_bytes());
    }
    lb.publish(&b);
    (key, a, b)
}

#[test]
fn split_view_detected_directly_with_checkable_evidence() {
    for (size_a, size_b) in [(300u64, 300u64), (300, 700), (700, 300)] {
        let tmp = tempfile::tempdir().unwrap();
        let (key, a, b) = forked_logs(tmp.path(), size_a, size_b);
        let vkey = key.verifier().to_string();
        let (sa, sb) = (serve_dir(&a), serve_dir(&b));
        let state = tmp.path().join("state");
        let r = monitor_once(&sa.url, &vkey, &state, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let r = monitor_once(&sb.url, &vkey, &state, &[]);
        assert_eq!(r.code, 1, "{size_a}/{size_b}: {}", r.stderr);
        let f = r.findings.iter().find(|f| f["kind"] == "split_view");
        if size_b < size_a {
            // The monitor holds only the larger tree's right edge and log B no
            // longer serves it: reported, but without proof either way.
            let f = r
                .findings
                .iter()
                .find(|f| f["kind"] == "checkpoint_rollback")
                .expect("rollback finding");
            assert_eq!(f["evidence"]["checkpoints"].as_array().unwrap().len(), 2);
            continue;
        }
        let f = f.unwrap_or_else(|| panic!("{size_a}/{size_b}: {}", r.stdout));
        assert_eq!(f["severity"], "critical");
        let ev = &f["evidence"];
        assert_eq!(ev["checkpoints"].as_array().unwrap().len(), 2);
        assert!(
            ev["checkpoints"][0]
                .as_str()
                .unwrap()
                .starts_with("log.example/fork\n")
        );
        let (code, out) = check_evidence(f, &vkey);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("VALID"));
        // Tampered evidence does not verify.
        let mut bad = f.clone();
        bad["evidence"]["checkpoints"][1] = bad["evidence"]["checkpoints"][0].clone();
        let (code, out) = check_evidence(&bad, &vkey);
        assert_eq!(code, 1, "{out}");
        // The same split view is reported once.
        let r = monitor_once(&sb.url, &vkey, &state, &[]);
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
}

#[test]
fn split_view_detected_through_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, a, b) = forked_logs(tmp.path(), 400, 900);
    let vkey = key.verifier().to_string();
    let (sa, sb) = (serve_dir(&a), serve_dir(&b));
    // Monitor 1 follows log A and serves its view.
    let (mut m1, url) = serving_monitor(&sa.url, &vkey, &tmp.path().join("s1"));
    let peer = format!("http://{url}/");
    let origin_id = candor_core::hash::sha256(b"log.example/fork").to_hex();
    // Wait until it has verified log A.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new("curl")
            .args(["-sf", &format!("{peer}{origin_id}/checkpoint")])
            .output();
        if let Ok(o) = ok
            && o.status.success()
        {
            assert!(String::from_utf8_lossy(&o.stdout).starts_with("log.example/fork\n400\n"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "monitor 1 never served a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Unknown origins are 404.
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{peer}{}/checkpoint", "00".repeat(32)),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "404");
    // Monitor 2 follows log B (consistent on its own) and compares with monitor 1.
    let r = monitor_once(&sb.url, &vkey, &tmp.path().join("s2"), &["--peer", &peer]);
    m1.kill().unwrap();
    let _ = m1.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(kinds(&r), ["split_view"], "{}", r.stdout);
    let f = &r.findings[0];
    assert!(f["message"].as_str().unwrap().contains("peer"));
    let (code, out) = check_evidence(f, &vkey);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn candor_and_policy_checks_fire_and_stay_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let key = log_key("log.example/policy", "log-policy");
    let vkey = key.verifier().to_string();
    let mut b = LogBuilder::new(&key);
    let (acme, acme_id) = company_signer("acme", "acme.example");
    let (beta, beta_id) = company_signer("beta", "beta.example");
    let (acme2, acme2_id) = company_signer("acme-2", "acme.example");
    let (rogue, rogue_id) = company_signer("rogue", "acme.example");
    let day = |d: i64| now_minus(86_400 * d);
    let t = day(20);
    let mut expect: Vec<(u64, &str)> = Vec::new();
    b.company_key("acme.example", &acme, KeyAction::Register, &t);
    b.company_key("beta.example", &beta, KeyAction::Register, &t);
    // Clean entries.
    let (p_acme, h_acme) = b.push(purchase("acme.example", &t), &acme, acme_id, &t);
    let (p_beta, h_beta) = b.push(purchase("beta.example", &t), &beta, beta_id, &t);
    let subject = samples::opening("x@example.com", 1).commitment();
    let cites = |company: &str, pi: u64, ph: Hash| {
        let mut e = samples::targeting_decision_from_purchase(company, subject, pi, ph);
        if let Entry::TargetingDecision(td) = &mut e {
            td.decided_at = t.clone();
        }
        e
    };
    b.push(cites("acme.example", p_acme, h_acme), &acme, acme_id, &t);
    b.push(decision("acme.example", 1, &t), &acme, acme_id, &t);
    // Policy: a decision on a legal basis that cannot carry marketing.
    let mut e = decision("acme.example", 2, &t);
    if let Entry::TargetingDecision(td) = &mut e {
        td.legal_basis = entry::LegalBasis::Contract;
    }
    expect.push((b.push(e, &acme, acme_id, &t).0, "no_legal_basis"));
    // Policy: purchased list with no purchase as data source.
    let mut e = decision("acme.example", 3, &t);
    if let Entry::TargetingDecision(td) = &mut e {
        td.criteria[0].criterion_type = entry::CriterionType::PurchasedList;
    }
    expect.push((b.push(e, &acme, acme_id, &t).0, "no_data_source"));
    // Policy: interest targeting on legitimate interests.
    let mut e = decision("acme.example", 4, &t);
    if let Entry::TargetingDecision(td) = &mut e {
        td.criteria[0].criterion_type = entry::CriterionType::Interests;
    }
    expect.push((
        b.push(e, &acme, acme_id, &t).0,
        "profiling_on_legitimate_interests",
    ));
    // Policy: sensitive purchase.
    let mut e = samples::sensitive_data_purchase("acme.example");
    if let Entry::DataPurchase(p) = &mut e {
        p.purchased_at = t.clone();
    }
    expect.push((b.push(e, &acme, acme_id, &t).0, "sensitive_purchase"));
    // Policy: citing another company's purchase.
    expect.push((
        b.push(cites("acme.example", p_beta, h_beta), &acme, acme_id, &t)
            .0,
        "foreign_purchase",
    ));
    // Candor: citing a purchase that is not there / with a wrong hash.
    expect.push((
        b.push(
            cites("acme.example", p_acme + 1, h_acme),
            &acme,
            acme_id,
            &t,
        )
        .0,
        "missing_purchase",
    ));
    expect.push((
        b.push(cites("acme.example", 999_999, h_acme), &acme, acme_id, &t)
            .0,
        "missing_purchase",
    ));
    // Candor: back-dated and future-dated.
    expect.push((
        b.push(decision("acme.example", 5, &day(60)), &acme, acme_id, &t)
            .0,
        "backdated",
    ));
    expect.push((
        b.push(decision("acme.example", 6, &day(-1)), &acme, acme_id, &t)
            .0,
        "future_time",
    ));
    // Candor: a key never registered; a bad signature; a non-canonical leaf; junk JSON.
    expect.push((
        b.push(decision("acme.example", 7, &t), &rogue, rogue_id, &t)
            .0,
        "unregistered_key",
    ));
    let mut leaf = Leaf::new(
        SignedEntry::sign(decision("acme.example", 8, &t), &acme, acme_id).unwrap(),
        t.clone(),
    );
    leaf.signature = Leaf::new(
        SignedEntry::sign(decision("acme.example", 9, &t), &acme, acme_id).unwrap(),
        t.clone(),
    )
    .signature;
    expect.push((b.push_raw(leaf.to_bytes().unwrap()).0, "bad_signature"));
    let good = Leaf::new(
        SignedEntry::sign(decision("acme.example", 10, &t), &acme, acme_id).unwrap(),
        t.clone(),
    );
    let pretty = serde_json::to_vec_pretty(
        &serde_json::from_slice::<Value>(&good.to_bytes().unwrap()).unwrap(),
    )
    .unwrap();
    expect.push((b.push_raw(pretty).0, "non_canonical_entry"));
    // A member named twice (the second key_id is the real one): not JSON to the entry
    // parser (I-JSON), still a Candor leaf that is not canonical.
    let twice = Leaf::new(
        SignedEntry::sign(decision("acme.example", 13, &t), &acme, acme_id).unwrap(),
        t.clone(),
    );
    let twice = [
        b"{\"key_id\":\"00000000\",".as_slice(),
        &twice.to_bytes().unwrap()[1..],
    ]
    .concat();
    expect.push((b.push_raw(twice).0, "non_canonical_entry"));
    expect.push((b.push_raw(br#"{"entry":{"kind":"nonsense"},"key_id":"00000000","logged_at":"2026-01-01T00:00:00Z","signature":""}"#.to_vec()).0, "invalid_entry"));
    // Opaque bytes are fine.
    b.push_raw(b"not a candor leaf at all".to_vec());
    // Policy: key rotation (second key), then the old key revoked; entries signed
    // with the revoked key afterwards are a Candor finding.
    expect.push((
        b.company_key("acme.example", &acme2, KeyAction::Register, &t)
            .0,
        "key_rotation",
    ));
    b.push(decision("acme.example", 11, &t), &acme2, acme2_id, &t);
    expect.push((
        b.company_key("acme.example", &acme, KeyAction::Revoke, &t)
            .0,
        "key_rotation",
    ));
    expect.push((
        b.push(decision("acme.example", 12, &t), &acme, acme_id, &t)
            .0,
        "revoked_key",
    ));
    // Policy: volume jump. beta.example logs 3 a day for 5 days, then 40 in one day.
    for d in (1..=5).rev() {
        for i in 0..3 {
            let at = day(d);
            b.push(
                decision("beta.example", 100 + d as u64 * 10 + i, &at),
                &beta,
                beta_id,
                &at,
            );
        }
    }
    let today = now_minus(60);
    let mut jump = None;
    for i in 0..40 {
        let idx = b
            .push(
                decision("beta.example", 500 + i, &today),
                &beta,
                beta_id,
                &today,
            )
            .0;
        if i == 30 {
            jump = Some(idx);
        }
    }
    let _ = jump;
    b.publish(&dir);
    let srv = serve_dir(&dir);

    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[volume_jump]\nmin_count = 20\nfactor = 5.0\nmin_history_days = 3\n",
    )
    .unwrap();
    let state = tmp.path().join("state");
    let r = monitor_once(
        &srv.url,
        &vkey,
        &state,
        &["--policy", policy.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let mut got: Vec<(u64, String)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f["indexes"]
                    .get(0)
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The volume jump fires once, on the entry that made beta's day exceed 5 × 3.
    let vol: Vec<_> = got
        .iter()
        .filter(|(_, k)| k == "volume_jump")
        .cloned()
        .collect();
    assert_eq!(vol.len(), 1, "{got:?}");
    got.retain(|(_, k)| k != "volume_jump");
    let mut want: Vec<(u64, String)> = expect.iter().map(|(i, k)| (*i, (*k).to_owned())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "\n{}", r.stdout);
    for f in &r.findings {
        assert!(f["message"].as_str().unwrap().ends_with('.'));
        assert!(
            ["info", "low", "medium", "high", "critical"]
                .contains(&f["severity"].as_str().unwrap())
        );
    }

    // With every policy check disabled, only the Candor checks remain.
    let off = tmp.path().join("off.toml");
    std::fs::write(
        &off,
        "[no_legal_basis]\nenabled = false\nseverity = \"high\"\n[no_data_source]\nenabled = false\nseverity = \"low\"\n\
         [profiling_on_legitimate_interests]\nenabled = false\n[sensitive_purchase]\nenabled = false\n\
         [foreign_purchase]\nenabled = false\nseverity = \"high\"\n[key_rotation]\nenabled = false\nseverity = \"info\"\n\
         [volume_jump]\nenabled = false\n[time]\nbackdate_enabled = false\n",
    )
    .unwrap();
    let r2 = monitor_once(
        &srv.url,
        &vkey,
        &tmp.path().join("state-off"),
        &["--policy", off.to_str().unwrap()],
    );
    let k2 = kinds(&r2);
    for quiet in [
        "no_legal_basis",
        "no_data_source",
        "profiling_on_legitimate_interests",
        "sensitive_purchase",
        "foreign_purchase",
        "key_rotation",
        "volume_jump",
        "backdated",
    ] {
        assert!(
            !k2.contains(&quiet.to_owned()),
            "{quiet} fired while disabled"
        );
    }
    assert!(k2.contains(&"revoked_key".to_owned()));
    // fail_severity decides the exit code.
    let lenient = tmp.path().join("lenient.toml");
    std::fs::write(&lenient, "fail_severity = \"critical\"\n").unwrap();
    let r3 = monitor_once(
        &srv.url,
        &vkey,
        &tmp.path().join("state-lenient"),
        &["--policy", lenient.to_str().unwrap()],
    );
    assert_eq!(r3.code, 0, "{}", r3.stderr);
    assert!(!r3.findings.is_empty());
    // A bad policy file is "could not check".
    std::fs::write(&lenient, "fail_severity = \"dire\"\n").unwrap();
    let r4 = monitor_once(
        &srv.url,
        &vkey,
        &tmp.path().join("state-bad"),
        &["--policy", lenient.to_str().unwrap()],
    );
    assert_eq!(r4.code, 2);

    report_of(&state, tmp.path());
}

/// `candor monitor report` on a state directory with findings.
fn report_of(state: &Path, tmp: &Path) {
    let out = tmp.join("report");
    let o = candor()
        .args(["monitor", "report", "--state"])
        .arg(state)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "summary.json",
        "companies.csv",
        "breakdown.csv",
        "daily.csv",
        "findings.csv",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let acme = &summary["companies"]["acme.example"];
    assert!(acme["by_kind"]["targeting_decision"].as_u64().unwrap() > 5);
    assert_eq!(acme["purchases_by_category"]["health"], 1);
    assert!(
        acme["findings_by_kind"]["sensitive_purchase"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(
        summary["companies"]["beta.example"]["entries_per_day"]
            .as_object()
            .unwrap()
            .len()
            >= 6
    );
    let companies = std::fs::read_to_string(out.join("companies.csv")).unwrap();
    assert!(companies.starts_with("company,entries,"));
    assert!(companies.contains("\r\nacme.example,"));
    if let Some(keep) = std::env::var_os("CANDOR_KEEP_REPORT") {
        // For looking at the page by hand.
        std::fs::copy(out.join("report.html"), keep).unwrap();
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<style>"));
    for id in ["chart-entries", "chart-categories", "chart-findings"] {
        assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains(" src="));
    assert!(html.contains("beta.example") && html.contains("sensitive_purchase"));
    // A real browser renders it (when the machine has one; tools/test.sh installs it).
    if Path::new("/usr/bin/chromium").exists() {
        let png = tmp.join("report.png");
        let o = Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ])
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1200,1600")
            .arg(format!("file://{}", out.join("report.html").display()))
            .output()
            .unwrap();
        assert!(
            png.exists(),
            "no screenshot: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            std::fs::metadata(&png).unwrap().len() > 20_000,
            "screenshot looks empty"
        );
    }
}

#[test]
fn bad_arguments_are_could_not_check() {
    let tmp = tempfile::tempdir().unwrap();
    let r = monitor_once(
        "http://127.0.0.1:9/",
        TESSERA_KEY,
        &tmp.path().join("s"),
        &[],
    );
    assert_eq!(r.code, 2, "an unreachable log cannot be checked");
    let r = monitor_once(
        "http://127.0.0.1:9/",
        "not-a-key",
        &tmp.path().join("s"),
        &[],
    );
    assert_eq!(r.code, 2);
    let out = candor().args(["monitor", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A state directory belongs to one log.
    let srv = serve_dir(Path::new(TESSERA));
    let s = tmp.path().join("t");
    assert_eq!(monitor_once(&srv.url, TESSERA_KEY, &s, &[]).code, 0);
    let other = log_key("log.example/x", "x").verifier().to_string();
    let r = monitor_once(&srv.url, &other, &s, &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("belongs to log"), "{}", r.stderr);
}

// ================================================================== against `candor serve`

mod common;

use common::{Company, LogServer};

/// A targeting decision by `c` decided a minute ago (so no time check fires,
/// whatever the date the test runs on).
fn fresh_decision(c: &Company, n: u64) -> SignedEntry {
    c.sign(decision(&c.name, n, &now_minus(60)))
}

/// Submits about `n` clean entries for `c` in NDJSON batches: per batch one data
/// purchase, then decisions of which every tenth cites that purchase.
async fn fill(log: &LogServer, c: &Company, n: u64, salt: u64) {
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(1000);
        let t = now_minus(60);
        let p = log.submit(&c.sign(purchase(&c.name, &t))).await;
        let pi = p["index"].as_u64().unwrap();
        let leaf = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            p["leaf"].as_str().unwrap(),
        )
        .unwrap();
        let ph = leaf_hash(&leaf);
        let es: Vec<SignedEntry> = (1..batch)
            .map(|i| {
                let n = salt * 1_000_000 + sent + i;
                if i % 10 == 0 {
                    let subject = samples::opening(&format!("c{n}@example.com"), n).commitment();
                    let mut e = samples::targeting_decision_from_purchase(&c.name, subject, pi, ph);
                    if let Entry::TargetingDecision(td) = &mut e {
                        td.decided_at = t.clone();
                    }
                    c.sign(e)
                } else {
                    fresh_decision(c, n)
                }
            })
            .collect();
        log.submit_ndjson(&es).await;
        sent += batch;
    }
}

fn run_blocking(log: &str, key: &str, state: &Path, extra: &[&str]) -> Run {
    tokio::task::block_in_place(|| monitor_once(log, key, state, extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_log_clean_audit_then_sigkill_and_resume() {
    let log = LogServer::start("redb", &[]).await;
    let acme = log.register_company("acme.example").await;
    fill(&log, &acme, 3000, 1).await;
    // Not 3001 for sure: two batches' purchases made within one second are the same
    // entry, logged once.
    let first_size = log.get_json("/v1/log").await["size"].as_u64().unwrap();
    assert!(first_size >= 2999);
    let vkey = log.verifier_key.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let r = run_blocking(&log.base, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.findings.is_empty());
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        st["verified"]["size"].as_u64(),
        Some(first_size),
        "{}",
        r.stderr
    );

    // More entries; kill the monitor mid-audit, then resume.
    fill(&log, &acme, 6000, 2).await;
    let size = log.get_json("/v1/log").await["size"].as_u64().unwrap();
    let mut child = spawn_monitor_once(&log.base, &vkey, &state, 1);
    let before = st["verified"]["size"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        let at = std::fs::read(state.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["progress"]["point"]["size"].as_u64());
        if at.is_some_and(|s| s > before) {
            child.kill().unwrap();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child.wait_with_output().unwrap();
    assert!(killed, "the audit finished before it could be killed");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = run_blocking(&log.base, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert!(st["verified"]["size"].as_u64().unwrap() >= size);
}

/// How far a monitor's state says it got: the verified size, or the point of an
/// audit in progress, whichever is further.
fn reached(state: &Path) -> u64 {
    let Some(st) = std::fs::read(state.join("state.json"))
        .ok()
        .map(|b| serde_json::from_slice::<Value>(&b).expect("state.json is always whole JSON"))
    else {
        return 0;
    };
    let verified = st["verified"]["size"].as_u64().unwrap_or(0);
    let progress = st["progress"]["point"]["size"].as_u64().unwrap_or(0);
    verified.max(progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_killed_at_random_moments_resumes_without_loss_or_false_alarm() {
    // Issue 6, crash suite for the monitor's state: SIGKILL at random moments (while
    // starting, fetching, verifying, saving), again and again. Each run must print no
    // finding, the state must always be whole JSON, progress must never go backwards,
    // and the last run must finish clean at the log's size.
    let log = LogServer::start("redb", &[]).await;
    let acme = log.register_company("acme.example").await;
    fill(&log, &acme, 12_000, 3).await;
    let size = log.get_json("/v1/log").await["size"].as_u64().unwrap();
    let vkey = log.verifier_key.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill-delay seed {seed}");
    let mut rng = seed;
    let mut next_delay = move || {
        // xorshift64: the delays only need to be spread, not unpredictable.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(rng % 400)
    };
    let (mut kills, mut last) = (0, 0);
    while kills < 12 {
        let mut child = spawn_monitor_once(&log.base, &vkey, &state, 2);
        let delay = next_delay();
        let finished = tokio::task::block_in_place(|| {
            std::thread::sleep(delay);
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !finished {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.stdout.is_empty(),
            "a run killed after {delay:?} printed findings: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let now = reached(&state);
        assert!(now >= last, "progress went back from {last} to {now}");
        last = now;
        if finished {
            assert_eq!(
                out.status.code(),
                Some(0),
                "an unkilled run exits clean: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
    }
    eprintln!("{kills} kills landed");
    let r = run_blocking(&log.base, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(st["verified"]["size"].as_u64(), Some(size));
    assert!(st["progress"].is_null());
    assert!(
        kills >= 3,
        "only {kills} kills landed before the audit finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_logs_forked_under_one_key_are_a_split_view() {
    let tmp = tempfile::tempdir().unwrap();
    let keyfile = tmp.path().join("log.key");
    let origin = "fork.example/log";
    let o = candor()
        .args(["keygen", "--name", origin, "--out"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let k = keyfile.to_str().unwrap();
    let a = LogServer::start_in(
        &tmp.path().join("a"),
        "redb",
        &["--key", k, "--origin", origin],
    )
    .await;
    let b = LogServer::start_in(
        &tmp.path().join("b"),
        "sled",
        &["--key", k, "--origin", origin],
    )
    .await;
    assert_eq!(a.verifier_key.to_string(), b.verifier_key.to_string());
    let vkey = a.verifier_key.to_string();
    let ca = a.register_company("acme.example").await;
    fill(&a, &ca, 300, 1).await;
    let cb = b.register_company("acme.example").await;
    fill(&b, &cb, 700, 2).await;

    // Directly: one state directory, pointed at A, then at B.
    let state = tmp.path().join("direct");
    let r = run_blocking(&a.base, &vkey, &state, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run_blocking(&b.base, &vkey, &state, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(kinds(&r), ["split_view"], "{}", r.stdout);
    let f = &r.findings[0];
    let notes = f["evidence"]["checkpoints"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .all(|n| n.as_str().unwrap().starts_with("fork.example/log\n"))
    );
    let (code, out) = check_evidence(f, &vkey);
    assert_eq!(code, 0, "{out}");

    // Through --peer: monitor 1 follows A and serves its view; monitor 2 follows B.
    let (mut m1, addr) = serving_monitor(&a.base, &vkey, &tmp.path().join("m1"));
    let peer = format!("http://{addr}");
    let path = format!(
        "{peer}/{}/checkpoint",
        candor_core::hash::sha256(origin.as_bytes()).to_hex()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(&path).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "monitor 1 never served its checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = run_blocking(&b.base, &vkey, &tmp.path().join("m2"), &["--peer", &peer]);
    m1.kill().unwrap();
    let _ = m1.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(kinds(&r), ["split_view"], "{}", r.stdout);
    let (code, out) = check_evidence(&r.findings[0], &vkey);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_log_policy_checks_fire_and_stay_quiet() {
    let log = LogServer::start("redb", &[]).await;
    let acme = log.register_company("acme.example").await;
    let beta = log.register_company("beta.example").await;
    let t = now_minus(60);
    let mut expect: Vec<(u64, &str)> = Vec::new();
    let idx = |r: &Value| r["index"].as_u64().unwrap();
    // Clean: purchases and a decision citing its own purchase.
    let pa = log.submit(&acme.sign(purchase("acme.example", &t))).await;
    let pb = log.submit(&beta.sign(purchase("beta.example", &t))).await;
    let leaf_hash_of = |r: &Value| -> Hash {
        let leaf = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            r["leaf"].as_str().unwrap(),
        )
        .unwrap();
        leaf_hash(&leaf)
    };
    let subject = samples::opening("x@example.com", 1).commitment();
    let cite = |c: &Company, r: &Value| {
        let mut e =
            samples::targeting_decision_from_purchase(&c.name, subject, idx(r), leaf_hash_of(r));
        if let Entry::TargetingDecision(td) = &mut e {
            td.decided_at = t.clone();
        }
        c.sign(e)
    };
    log.submit(&cite(&acme, &pa)).await;
    log.submit(&fresh_decision(&acme, 1)).await;
    let mut e = decision("acme.example", 2, &t);
    if let Entry::TargetingDecision(td) = &mut e {
        td.legal_basis = entry::LegalBasis::Contract;
    }
    expect.push((idx(&log.submit(&acme.sign(e)).await), "no_legal_basis"));
    let mut e = decision("acme.example", 3, &t);
    if let Entry::TargetingDecision(td) = &mut e {
        td.criteria[0].criterion_type = entry::CriterionType::PurchasedList;
    }
    expect.push((idx(&log.submit(&acme.sign(e)).await), "no_data_source"));
    let mut e = decision("acme.example", 4, &t);
    if let Entry::TargetingDecision(td) = &mut e {
        td.criteria[0].criterion_type = entry::CriterionType::Lookalike;
    }
    expect.push((
        idx(&log.submit(&acme.sign(e)).await),
        "profiling_on_legitimate_interests",
    ));
    let mut e = samples::sensitive_data_purchase("acme.example");
    if let Entry::DataPurchase(p) = &mut e {
        p.purchased_at = t.clone();
    }
    expect.push((idx(&log.submit(&acme.sign(e)).await), "sensitive_purchase"));
    expect.push((
        idx(&log.submit(&cite(&acme, &pb)).await),
        "foreign_purchase",
    ));
    // Key rotation: a second key for acme, then the first revoked.
    let acme2 = Company::new("acme.example");
    let (st, body) = log
        .company_request(
            "acme.example",
            &acme2.verifier_key().to_string(),
            "register",
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = log
        .company_request("acme.example", &acme.verifier_key().to_string(), "revoke")
        .await;
    assert_eq!(st, 200, "{body}");
    log.submit(&fresh_decision(&acme2, 5)).await;
    let size = log.get_json("/v1/log").await["size"].as_u64().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let r = run_blocking(
        &log.base,
        &log.verifier_key.to_string(),
        &tmp.path().join("s"),
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let mut got: Vec<(u64, String)> = r
        .findings
        .iter()
        .filter(|f| f["kind"] != "key_rotation")
        .map(|f| {
            (
                f["indexes"][0].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(u64, String)> = expect.iter().map(|(i, k)| (*i, (*k).to_owned())).collect();
    want.sort();
    assert_eq!(got, want, "{}", r.stdout);
    let rotations: Vec<u64> = r
        .findings
        .iter()
        .filter(|f| f["kind"] == "key_rotation")
        .map(|f| f["indexes"][0].as_u64().unwrap())
        .collect();
    assert_eq!(rotations.len(), 2, "{}", r.stdout);
    assert!(rotations.iter().all(|i| *i < size));
}
