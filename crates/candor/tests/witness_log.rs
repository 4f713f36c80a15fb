//! A log with witnesses, through the real binaries over loopback: three
//! `candor witness serve` processes and `candor serve --witness … --witness-quorum 2`.
//! Checkpoints carry ≥ 2 valid cosignatures; one witness down, the log still
//! publishes; two down, it keeps sequencing (202 pending receipts, degraded
//! /healthz and /metrics, /checkpoint stays at the last witnessed size) and
//! publishes again on recovery; a restarted log serves its cosigned checkpoint;
//! `candor verify --trust-policy` and `candor monitor --trust-policy` accept the
//! quorum and refuse a checkpoint without it. On PostgreSQL, a standby with the same
//! witnesses takes over from a SIGKILLed sequencer (tests/common/pg.rs: skipped
//! without `CANDOR_TEST_POSTGRES_URL`, except under `CI=true`, where it fails).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_core::checkpoint::{Checkpoint, open_checkpoint};
use candor_core::cosignature::witness_verifier_key;
use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::verify_consistency;
use candor_core::note::{Note, SignerKey, VerifierKey};
use candor_core::tlog_proof::TlogProof;
use candor_core::trust_policy::Policy;
use common::witness::{Witness, write_key};
use common::{CANDOR, LogServer};
use serde_json::Value;

/// Polls until `f` holds (at most 20 s).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn checkpoint_size(log: &LogServer) -> Option<u64> {
    let (st, body) = log.get("/checkpoint").await;
    if st != 200 {
        return None;
    }
    let text = String::from_utf8(body).ok()?;
    text.lines().nth(1)?.parse().ok()
}

async fn metric(log: &LogServer, series: &str) -> Option<u64> {
    let (_, body) = log.get("/metrics").await;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// `candor verify` → (exit code, JSON answer).
fn verify(receipt: &Value, dir: &Path, log_key: &VerifierKey, policy: &Path) -> (i32, Value) {
    let file = dir.join("receipt.json");
    std::fs::write(&file, receipt.to_string()).expect("write receipt");
    let out = Command::new(CANDOR)
        .args(["verify", "--json", "--log-key", &log_key.to_string()])
        .arg("--trust-policy")
        .arg(policy)
        .arg(&file)
        .output()
        .expect("run candor verify");
    let answer = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), answer)
}

fn check<'a>(answer: &'a Value, name: &str) -> Option<&'a Value> {
    answer["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// The receipt's checkpoint note.
fn receipt_checkpoint(receipt: &Value) -> Vec<u8> {
    let text = receipt["tlog_proof"].as_str().expect("tlog_proof");
    TlogProof::parse(text.as_bytes())
        .expect("tlog-proof parses")
        .checkpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_witnesses_quorum_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = "log.example/witnessed";
    let (log_key_file, log_key) = write_key(dir.path(), origin);
    let log_vkey = log_key.verifier();

    let mut witnesses = Vec::new();
    let mut wkeys = Vec::new();
    for i in 0..3 {
        let (kf, k) = write_key(dir.path(), &format!("witness.example/w{i}"));
        wkeys.push((format!("w{i}"), witness_verifier_key(&k)));
        witnesses.push(Witness::start(
            kf,
            dir.path().join(format!("w{i}")),
            log_vkey.clone(),
        ));
    }
    let policy_text = Policy::threshold_text(&log_vkey, &wkeys, 2);
    let policy = Policy::parse(policy_text.as_bytes()).expect("policy");
    let policy_file = dir.path().join("policy.txt");
    std::fs::write(&policy_file, &policy_text).expect("write policy");

    let endpoints: Vec<(String, String)> = witnesses
        .iter()
        .zip(&wkeys)
        .map(|(w, (_, vk))| (vk.to_string(), w.url()))
        .collect();
    let args = common::witnessed_log_args(&log_key_file, origin, 2, 1500, &endpoints);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = dir.path().join("log");
    let mut log = LogServer::start_in(&data, "redb", &argv).await;

    // All three up: the registration and the entries get receipts whose checkpoint
    // carries at least two valid cosignatures.
    let acme = log.register_company("acme.example").await;
    let receipts = log
        .submit_ndjson(&[acme.entry(1), acme.entry(2), acme.entry(3)])
        .await;
    for r in &receipts {
        let accepted = policy
            .check(&receipt_checkpoint(r))
            .expect("receipt checkpoint meets the quorum");
        assert!(accepted.cosigners.len() >= 2, "{:?}", accepted.cosigners);
    }
    let cp = log.checkpoint().await;
    let accepted = policy.check(&cp).expect("/checkpoint meets the quorum");
    assert!(accepted.cosigners.len() >= 2);
    assert_eq!(accepted.checkpoint.size, 4);

    // candor verify --trust-policy accepts the receipt...
    let (code, answer) = verify(&receipts[0], dir.path(), &log_vkey, &policy_file);
    assert_eq!(code, 0, "{answer}");
    assert_eq!(
        check(&answer, "witness_quorum").expect("ran")["passed"],
        true
    );
    // ...and rejects the same receipt whose checkpoint lost its cosignatures,
    // naming the witness_quorum check.
    let mut stripped = receipts[0].clone();
    let mut proof = TlogProof::parse(stripped["tlog_proof"].as_str().unwrap().as_bytes()).unwrap();
    let mut note = Note::parse(&proof.checkpoint).unwrap();
    note.signatures.retain(|s| log_vkey.matches(s));
    proof.checkpoint = note.to_bytes();
    stripped["tlog_proof"] = Value::String(String::from_utf8(proof.to_bytes()).unwrap());
    let (code, answer) = verify(&stripped, dir.path(), &log_vkey, &policy_file);
    assert_eq!(code, 1, "{answer}");
    assert_eq!(answer["status"], "invalid", "{answer}");
    let failed = check(&answer, "witness_quorum").expect("witness_quorum ran");
    assert_eq!(failed["passed"], false, "{answer}");
    assert_eq!(
        check(&answer, "checkpoint_signature").unwrap()["passed"],
        true
    );

    // candor monitor --trust-policy audits the witnessed log cleanly, and refuses
    // its checkpoints under a policy whose quorum they cannot meet.
    let monitor = |policy: &Path, state: &str| {
        Command::new(CANDOR)
            .args(["monitor", "--once", "--log", &log.base])
            .args(["--log-key", &log_vkey.to_string()])
            .arg("--state")
            .arg(dir.path().join(state))
            .arg("--trust-policy")
            .arg(policy)
            .output()
            .expect("run candor monitor")
    };
    let out = monitor(&policy_file, "mon-ok");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stranger = witness_verifier_key(&SignerKey::generate("witness.example/x").unwrap());
    let strict_text = Policy::threshold_text(&log_vkey, &[("x".into(), stranger)], 1);
    let strict_file = dir.path().join("strict.txt");
    std::fs::write(&strict_file, strict_text).unwrap();
    let out = monitor(&strict_file, "mon-strict");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("\"witness_quorum\""), "{stdout}");

    // One witness down: the log still publishes (two cosignatures).
    witnesses[0].down();
    let r = log.submit(&acme.entry(4)).await;
    let accepted = policy
        .check(&receipt_checkpoint(&r))
        .expect("quorum of two");
    assert_eq!(accepted.cosigners.len(), 2, "{:?}", accepted.cosigners);
    assert_eq!(checkpoint_size(&log).await, Some(5));

    // Two down: entries are still accepted and sequenced, receipts are pending.
    witnesses[1].down();
    let (st, body) = log
        .post_entries(
            "application/json",
            common::signed_json(&acme.entry(5)).into_bytes(),
        )
        .await;
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&body));
    let pending: Value = serde_json::from_slice(&body).expect("pending JSON");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["indices"], serde_json::json!([5]));
    assert_eq!(pending["receipts"][0], "/v1/receipts/5");
    assert_eq!(pending["witnessed_size"], 5);
    assert_eq!(pending["sequenced_size"], 6);
    let (st, _) = log.get("/v1/receipts/5").await;
    assert_eq!(st, 202);
    assert_eq!(
        checkpoint_size(&log).await,
        Some(5),
        "stays at the witnessed size"
    );
    let health = log.get_json("/healthz").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["witnessing"]["sequenced_size"], 6, "{health}");
    assert_eq!(health["witnessing"]["witnessed_size"], 5, "{health}");
    assert_eq!(metric(&log, "candor_witness_degraded").await, Some(1));
    assert_eq!(metric(&log, "candor_witnessed_tree_size").await, Some(5));
    assert_eq!(metric(&log, "candor_sequenced_tree_size").await, Some(6));
    let down = format!(
        "candor_witness_up{{witness=\"witness.example/w1\",url=\"{}\"}}",
        witnesses[1].url()
    );
    assert_eq!(metric(&log, &down).await, Some(0));

    // Recovery: the witnesses come back on the same URLs with their state; the log
    // publishes the pending size on its retry timer.
    witnesses[0].up();
    witnesses[1].up();
    eventually("the log publishes size 6", || async {
        checkpoint_size(&log).await == Some(6)
    })
    .await;
    let health = log.get_json("/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    let r = log.get_json("/v1/receipts/5").await;
    let cp = receipt_checkpoint(&r);
    assert!(policy.check(&cp).expect("quorum").cosigners.len() >= 2);
    let (code, answer) = verify(&r, dir.path(), &log_vkey, &policy_file);
    assert_eq!(code, 0, "{answer}");
    eventually("every witness cosigned again", || async {
        let cp = log.checkpoint().await;
        policy.check(&cp).map(|a| a.cosigners.len()).unwrap_or(0) == 3
    })
    .await;

    // A restarted log serves its stored cosigned checkpoint at once, byte for byte,
    // and keeps publishing witnessed checkpoints.
    let before = log.checkpoint().await;
    log.restart().await;
    assert_eq!(log.checkpoint().await, before);
    let r = log.submit(&acme.entry(6)).await;
    assert_eq!(r["index"], 6);
    assert!(policy.check(&receipt_checkpoint(&r)).is_ok());
}

/// Verifies a receipt as a consumer does (its tlog-proof against the log key) and
/// returns the checkpoint it proves inclusion in.
fn verified_checkpoint(receipt: &Value, log_vkey: &VerifierKey) -> Checkpoint {
    let r =
        candor_core::receipt::Receipt::from_json(receipt.to_string().as_bytes()).expect("receipt");
    let leaf = r.leaf_bytes().expect("leaf");
    TlogProof::parse(r.tlog_proof.as_bytes())
        .expect("tlog-proof parses")
        .verify(&leaf_hash(&leaf), log_vkey)
        .unwrap_or_else(|e| panic!("receipt for index {} does not verify: {e}", r.index))
}

/// The checkpoint note stored in the log's PostgreSQL database (spec/deployment.md §2).
fn stored_checkpoint(url: &str) -> Vec<u8> {
    let url = url.to_string();
    // A thread of its own: the postgres crate must not run inside a tokio runtime.
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query_one("SELECT note FROM candor_checkpoint WHERE id = 1", &[])
            .expect("stored checkpoint row")
            .get::<_, Vec<u8>>(0)
    })
    .join()
    .expect("query thread")
}

/// RFC 9162 §2.1.4.2: `old` is a prefix of `new`, checked with a proof from `log`
/// against the roots of the two signed checkpoints (never the log's word for them).
async fn assert_consistent(log: &LogServer, old: &Checkpoint, new: &Checkpoint) {
    assert!(
        old.size <= new.size,
        "checkpoint {} beyond {}",
        old.size,
        new.size
    );
    if old.size == new.size {
        assert_eq!(old.root, new.root, "two checkpoints of size {}", old.size);
        return;
    }
    if old.size == 0 {
        return;
    }
    let v = log
        .get_json(&format!(
            "/v1/proof/consistency?old={}&new={}",
            old.size, new.size
        ))
        .await;
    let proof: Vec<Hash> = v["proof"]
        .as_array()
        .expect("proof array")
        .iter()
        .map(|h| Hash::from_base64(h.as_str().expect("string")).expect("base64 hash"))
        .collect();
    verify_consistency(old.size, new.size, &old.root, &new.root, &proof).unwrap_or_else(|e| {
        panic!(
            "fork: checkpoint {} is not a prefix of {}: {e}",
            old.size, new.size
        )
    });
}

/// Issue 10 with witnesses: two `candor serve` on one PostgreSQL database with the
/// same three witnesses (quorum 2). The sequencer is SIGKILLed under load while two
/// witnesses are down (so entries are logged beyond the last witnessed checkpoint);
/// the standby takes over from the last witnessed checkpoint in the store and publishes
/// nothing without the quorum; once the witnesses are back its checkpoints carry the
/// quorum, receipts acknowledged before the kill still verify and are consistent with
/// everything after it, and every witness cosigns the new sequencer's checkpoints
/// (none is stuck answering 409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_with_witnesses() {
    let Some(admin) = common::pg::admin_url() else {
        return;
    };
    let url = common::pg::fresh_database(&admin);
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = "log.example/takeover";
    let (log_key_file, log_key) = write_key(dir.path(), origin);
    let log_vkey = log_key.verifier();
    let mut witnesses = Vec::new();
    let mut wkeys = Vec::new();
    for i in 0..3 {
        let (kf, k) = write_key(dir.path(), &format!("witness.example/t{i}"));
        wkeys.push((format!("t{i}"), witness_verifier_key(&k)));
        witnesses.push(Witness::start(
            kf,
            dir.path().join(format!("t{i}")),
            log_vkey.clone(),
        ));
    }
    let policy =
        Policy::parse(Policy::threshold_text(&log_vkey, &wkeys, 2).as_bytes()).expect("policy");
    let endpoints: Vec<(String, String)> = witnesses
        .iter()
        .zip(&wkeys)
        .map(|(w, (_, vk))| (vk.to_string(), w.url()))
        .collect();
    let args = common::witnessed_log_args(&log_key_file, origin, 2, 1000, &endpoints);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = LogServer::start_in(&dir.path().join("a"), &url, &argv).await;
    let company = first.register_company("acme.example").await;
    // The standby starts once a witnessed checkpoint is in the store.
    let second = LogServer::start_in(&dir.path().join("b"), &url, &argv).await;
    assert_eq!(first.get_json("/healthz").await["role"], "sequencer");
    let health = second.get_json("/healthz").await;
    assert_eq!(health["role"], "standby", "{health}");
    eventually("the standby to serve the witnessed checkpoint", || async {
        second.get("/checkpoint").await.1 == first.checkpoint().await
    })
    .await;
    let health = second.get_json("/healthz").await;
    assert_eq!(
        health["status"], "ok",
        "a standby on a witnessed checkpoint: {health}"
    );
    assert!(policy.check(&second.checkpoint().await).is_ok());

    // Load: 4 clients submit distinct entries to whichever server takes them. A 200
    // carries a receipt; a 202 means logged and durable but not yet witnessed.
    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let pending: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let company = Arc::new(company);
    let load = {
        let (acked, pending) = (acked.clone(), pending.clone());
        let bases = vec![first.base.clone(), second.base.clone()];
        common::FailoverLoad::start(company.clone(), bases, move |(n, status, body)| {
            let Some(v) = body
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            else {
                return false;
            };
            if status == 200 {
                acked.lock().unwrap().push(v);
            } else if status == 202 {
                let index = v["indices"][0].as_u64().expect("pending index");
                pending.lock().unwrap().push((n, index));
            } else {
                return false;
            }
            true
        })
    };
    eventually("acknowledgements from the first sequencer", || async {
        acked.lock().unwrap().len() >= 40
    })
    .await;
    // Two witnesses go down: the sequencer goes on logging entries (202 pending) that
    // no checkpoint with the quorum covers, while the third witness cosigns beyond the
    // stored checkpoint. So at the kill the durable tree, the stored (last witnessed)
    // checkpoint and each witness's latest size all differ.
    witnesses[0].down();
    witnesses[1].down();
    let pending_before = pending.lock().unwrap().len();
    eventually("entries logged without the quorum", || async {
        pending.lock().unwrap().len() >= pending_before + 4
    })
    .await;
    let mut child = first.child.take().expect("first server");
    child.kill().expect("SIGKILL the sequencer");
    child.wait().expect("reap");
    let before: Vec<Value> = acked.lock().unwrap().clone();
    // The last witnessed checkpoint, as the dead sequencer left it in the store.
    let stored = stored_checkpoint(&url);
    assert!(
        policy.check(&stored).is_ok(),
        "the stored checkpoint is witnessed"
    );
    let stored_size = open_checkpoint(&stored, &log_vkey)
        .expect("stored checkpoint")
        .0
        .size;
    eventually("the standby to take over", || async {
        second.get_json("/healthz").await["role"] == "sequencer"
    })
    .await;
    // Without the quorum the new sequencer signs the durable tree (beyond the stored
    // checkpoint: the 202 entries) but publishes nothing new: it serves the stored
    // checkpoint, degraded, and stores nothing.
    eventually(
        "the new sequencer to sign the durable tree and miss the quorum",
        || async {
            let h = second.get_json("/healthz").await;
            h["witnessing"]["sequenced_size"].as_u64() > Some(stored_size)
                && h["status"] == "degraded"
        },
    )
    .await;
    let health = second.get_json("/healthz").await;
    assert_eq!(
        health["witnessing"]["witnessed_size"], stored_size,
        "{health}"
    );
    assert_eq!(second.checkpoint().await, stored);
    assert_eq!(stored_checkpoint(&url), stored);
    witnesses[0].up();
    witnesses[1].up();
    eventually("acknowledgements from the new sequencer", || async {
        acked.lock().unwrap().len() >= before.len() + 40
    })
    .await;
    load.stop().await;

    // Every witness cosigns the new sequencer's checkpoints: it learnt each witness's
    // size from a 409 and proved consistency from there.
    eventually(
        "all three witnesses to cosign the new sequencer's latest checkpoint",
        || async {
            let health = second.get_json("/healthz").await;
            let cosigners = policy
                .check(&second.checkpoint().await)
                .map(|a| a.cosigners.len())
                .unwrap_or(0);
            cosigners == 3
                && health["witnessing"]["witnessed_size"] == health["witnessing"]["sequenced_size"]
        },
    )
    .await;
    let health = second.get_json("/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    for w in health["witnessing"]["witnesses"]
        .as_array()
        .expect("witnesses")
    {
        assert_eq!(w["up"], true, "{health}");
        assert_eq!(w["consecutive_failures"], 0, "{health}");
    }
    let final_cp = open_checkpoint(&second.checkpoint().await, &log_vkey)
        .expect("final checkpoint")
        .0;
    assert_eq!(
        health["witnessing"]["witnessed_size"], final_cp.size,
        "{health}"
    );

    // Every receipt, before and after the kill, verifies, carries the quorum, still
    // holds on the new sequencer and is consistent with its latest checkpoint.
    let all: Vec<Value> = acked.lock().unwrap().clone();
    let mut last_before = None::<Checkpoint>;
    for (i, r) in all.iter().enumerate() {
        let cp = verified_checkpoint(r, &log_vkey);
        let note = receipt_checkpoint(r);
        let accepted = policy
            .check(&note)
            .unwrap_or_else(|e| panic!("receipt checkpoint {} lacks the quorum: {e}", cp.size));
        assert!(accepted.cosigners.len() >= 2);
        let index = r["index"].as_u64().expect("index");
        let found = second
            .get_json(&format!(
                "/v1/entries?leaf_hash={}",
                r["leaf_hash"].as_str().expect("leaf_hash")
            ))
            .await;
        assert_eq!(
            found["index"].as_u64(),
            Some(index),
            "acknowledged entry lost"
        );
        assert_consistent(&second, &cp, &final_cp).await;
        if i < before.len() {
            if last_before.as_ref().is_none_or(|l| l.size < cp.size) {
                last_before = Some(cp);
            }
            // A fresh receipt from the new sequencer verifies under the policy too.
            let fresh = second.get_json(&format!("/v1/receipts/{index}")).await;
            assert_eq!(fresh["leaf"], r["leaf"]);
            verified_checkpoint(&fresh, &log_vkey);
            assert!(policy.check(&receipt_checkpoint(&fresh)).is_ok());
        }
    }
    // Consistency across the takeover: the newest checkpoint the first sequencer
    // published is a prefix of every checkpoint the second one published.
    let last_before = last_before.expect("receipts before the kill");
    for r in &all[before.len()..] {
        assert_consistent(&second, &last_before, &verified_checkpoint(r, &log_vkey)).await;
    }
    // Entries answered 202 were durable: resubmitting one returns its index.
    let pending = pending.lock().unwrap().clone();
    for (n, index) in pending.iter().take(5) {
        let r = second.submit(&company.entry(*n)).await;
        assert_eq!(r["index"].as_u64(), Some(*index));
    }
    // A receipt from before the kill passes `candor verify --trust-policy`.
    let policy_file = dir.path().join("policy.txt");
    std::fs::write(&policy_file, Policy::threshold_text(&log_vkey, &wkeys, 2)).expect("policy");
    let (code, answer) = verify(&before[0], dir.path(), &log_vkey, &policy_file);
    assert_eq!(code, 0, "{answer}");
}
