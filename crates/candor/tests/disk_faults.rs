//! Disk faults (issue 6, "Crash suite"): a full disk and a read-only data directory are
//! refused cleanly (a 503/507 with a JSON error naming the problem, or a refusal to
//! start with a message), the log stays up and serves reads, and every receipt it
//! acknowledged before the fault still verifies after the fault is cleared and the log
//! restarted.
//!
//! The faults are real: the data directory lives on a small tmpfs mounted for the test
//! (`mount -t tmpfs -o size=…`), filled with a file for "disk full" and remounted
//! read-only (`mount -o remount,ro`) for "read-only"; chmod would not stop root, which
//! CI runs as. Mounting needs root (CAP_SYS_ADMIN); without it the tests say so on
//! standard error and check what an unprivileged user can: a chmod'ed read-only
//! directory is refused at start.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use candor_core::hash::leaf_hash;
use candor_core::receipt::Receipt;
use candor_core::tlog_proof::TlogProof;
use common::{Company, LogServer, ndjson, serve_should_fail, signed_json};
use serde_json::Value;

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "16m"); `Err` says why not.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { _dir: dir, path })
    }

    fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -o remount,{mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Verifies a receipt JSON against the log key; returns (index, leaf bytes).
fn verified(log: &LogServer, receipt: &Value) -> (u64, Vec<u8>) {
    let r: Receipt = serde_json::from_value(receipt.clone()).expect("receipt");
    let leaf = r.leaf_bytes().expect("leaf");
    let proof = TlogProof::parse(r.tlog_proof.as_bytes()).expect("tlog-proof");
    proof
        .verify(&leaf_hash(&leaf), &log.verifier_key)
        .expect("receipt verifies");
    (r.index, leaf)
}

/// Every acknowledged (index, leaf) is served at its index and has a valid fresh receipt.
async fn assert_all_hold(log: &LogServer, acked: &[(u64, Vec<u8>)]) {
    use base64::Engine as _;
    for (i, leaf) in acked {
        let e = log.get_json(&format!("/v1/entries/{i}")).await;
        let served = base64::engine::general_purpose::STANDARD
            .decode(e["leaf"].as_str().expect("leaf"))
            .expect("base64");
        assert_eq!(&served, leaf, "index {i} lost or rewritten");
        let fresh = log.get_json(&format!("/v1/receipts/{i}")).await;
        assert_eq!(verified(log, &fresh).1, *leaf);
    }
}

/// A refused submission: 503 or 507 with a JSON error body naming the problem.
fn assert_clean_refusal(status: u16, body: &[u8], words: &[&str]) {
    assert!(
        status == 503 || status == 507,
        "expected 503/507, got {status}: {}",
        String::from_utf8_lossy(body)
    );
    let v: Value = serde_json::from_slice(body).expect("a JSON error body");
    let code = v["error"].as_str().expect("error code");
    assert!(!code.is_empty());
    let detail = v["detail"].as_str().expect("detail").to_lowercase();
    assert!(
        words.iter().any(|w| detail.contains(w)),
        "the error names the problem ({words:?}): {detail}"
    );
}

async fn submit_one(log: &LogServer, c: &Company, n: u64) -> (u16, Vec<u8>) {
    log.post_entries("application/json", signed_json(&c.entry(n)).into_bytes())
        .await
}

async fn disk_full(store: &str) {
    let fs = match Tmpfs::mount("24m") {
        Ok(fs) => fs,
        Err(e) => {
            assert!(!is_root(), "running as root but cannot mount a tmpfs: {e}");
            eprintln!("disk_full({store}) not run: {e} (needs root to mount a tmpfs)");
            return;
        }
    };
    let data = fs.path.join("data");
    let mut log = LogServer::start_in(&data, store, &[]).await;
    let c = log.register_company("full.example").await;
    let mut acked = Vec::new();
    for n in 0..20 {
        acked.push(verified(&log, &log.submit(&c.entry(n)).await));
    }
    let batch: Vec<_> = (20..60).map(|n| c.entry(n)).collect();
    for r in log.submit_ndjson(&batch).await {
        acked.push(verified(&log, &r));
    }

    // Fill the file system to the last byte.
    let filler = fs.path.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0xa5u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }

    // Submissions until the store refuses (engines may have some preallocated room;
    // whatever is acknowledged meanwhile must hold too).
    let mut refused = None;
    for n in 1000..3000u64 {
        let body = ndjson(&(0..8).map(|k| c.entry(n * 8 + k)).collect::<Vec<_>>());
        let (st, resp) = log.post_entries("application/x-ndjson", body).await;
        if st == 200 {
            for line in resp.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                acked.push(verified(
                    &log,
                    &serde_json::from_slice(line).expect("receipt"),
                ));
            }
            continue;
        }
        refused = Some((st, resp));
        break;
    }
    let (st, resp) = refused.expect("a full disk made a submission fail");
    assert_clean_refusal(
        st,
        &resp,
        &["disk full", "no space", "space left", "storage"],
    );

    // Still up: health, reads and receipts of what was acknowledged.
    let (st, _) = log.get("/healthz").await;
    assert_eq!(st, 200, "the log stays up on a full disk");
    log.checkpoint().await;
    assert_all_hold(&log, &acked).await;
    // Further submissions are refused the same way, not crashed on.
    let (st, resp) = submit_one(&log, &c, 9_999_999).await;
    if st != 200 {
        assert_clean_refusal(
            st,
            &resp,
            &["disk full", "no space", "space left", "restart"],
        );
    }

    // Free the space, restart on the same directory: nothing acknowledged is lost and
    // the log takes work again.
    std::fs::remove_file(&filler).expect("remove filler");
    let status = log.stop();
    assert!(
        status.code().is_some(),
        "the log exited instead of crashing"
    );
    let log = LogServer::start_in(&data, store, &[]).await;
    assert_all_hold(&log, &acked).await;
    verified(&log, &submit_one(&log, &c, 10_000_000).await.1.pipe_json());
}

trait PipeJson {
    fn pipe_json(&self) -> Value;
}

impl PipeJson for Vec<u8> {
    fn pipe_json(&self) -> Value {
        serde_json::from_slice(self).expect("JSON body")
    }
}

async fn read_only(store: &str) {
    let fs = match Tmpfs::mount("64m") {
        Ok(fs) => fs,
        Err(e) => {
            assert!(!is_root(), "running as root but cannot mount a tmpfs: {e}");
            eprintln!("read_only({store}) with a mount not run: {e}; testing chmod instead");
            read_only_chmod(store).await;
            return;
        }
    };
    let data = fs.path.join("data");
    let mut log = LogServer::start_in(&data, store, &[]).await;
    let c = log.register_company("ro.example").await;
    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push(verified(&log, &log.submit(&c.entry(n)).await));
    }

    // Linux refuses to remount a file system read-only while files on it are open for
    // writing (EBUSY), as the store's are: a running log cannot be switched to a
    // read-only disk under it, so the fault is taken at start.
    let status = log.stop();
    assert!(status.success(), "graceful stop: {status}");
    fs.remount("ro");

    // Starting on a read-only directory is refused with a message.
    let err = serve_should_fail(&data, store, &[]);
    assert!(
        err.to_lowercase().contains("read-only"),
        "refusal names the read-only file system: {err}"
    );

    // Writable again: everything acknowledged is there and the log takes work.
    fs.remount("rw");
    let log = LogServer::start_in(&data, store, &[]).await;
    assert_all_hold(&log, &acked).await;
    verified(&log, &log.submit(&c.entry(101)).await);
}

/// Unprivileged fallback: a chmod 0555 data directory is refused at start.
async fn read_only_chmod(store: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let mut log = LogServer::start_in(&data, store, &[]).await;
    let c = log.register_company("ro.example").await;
    let acked = vec![verified(&log, &log.submit(&c.entry(0)).await)];
    log.stop();
    let set = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    set(&data, 0o555).expect("chmod");
    let err = serve_should_fail(&data, store, &[]);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    set(&data, 0o755).expect("chmod");
    let log = LogServer::start_in(&data, store, &[]).await;
    assert_all_hold(&log, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_redb() {
    disk_full("redb").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_sled() {
    disk_full("sled").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_redb() {
    read_only("redb").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_sled() {
    read_only("sled").await;
}

/// The log's own diagnostics going to a full disk must not stop it: with standard
/// error on /dev/full (every write fails with ENOSPC) and logging at `info`, the log
/// starts, sequences and answers. (A failed write of a log line used to panic inside
/// the logging library, which stopped the sequencer for good.)
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_stderr_does_not_stop_the_log() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut child = Command::new(common::CANDOR)
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--batch-delay-ms", "5"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(full))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout line");
        if let Some(a) = line.strip_prefix("listening on ") {
            base = Some(a.trim().to_string());
            break;
        }
    }
    let base = base.expect("the log started");
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");
    let http = reqwest::Client::new();
    let c = Company::new("stderr.example");
    let r = http
        .post(format!("{base}/v1/companies"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({
            "name": c.name, "verifier_key": c.verifier_key().to_string(), "action": "register"
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 200);
    for n in 0..5 {
        let r = http
            .post(format!("{base}/v1/entries"))
            .header("content-type", "application/json")
            .body(signed_json(&c.entry(n)))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let _ = child.kill();
    let _ = child.wait();
}
