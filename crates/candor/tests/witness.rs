//! `candor witness serve` through the real binary over loopback: every status
//! code of C2SP tlog-witness, persistence across restarts, refusal of a forked
//! log, and cosignatures that verify with the witness's vkey.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
use candor_core::cosignature::{verify_cosignature, witness_verifier_key};
use candor_core::hash::{Hash, leaf_hash, sha256};
use candor_core::merkle::{MemoryTree, consistency_proof, tree_hash};
use candor_core::note::{self, Note, SignerKey, VerifierKey};
use candor_core::witness_protocol::{AddCheckpointRequest, SIZE_CONTENT_TYPE};

const BIN: &str = env!("CARGO_BIN_EXE_candor");

/// A running `candor witness serve`, killed (SIGKILL) on drop.
struct WitnessProc {
    child: Child,
    url: String,
}

impl WitnessProc {
    fn start(key_file: &Path, data: &Path, logs: &[&VerifierKey]) -> WitnessProc {
        let mut cmd = Command::new(BIN);
        cmd.args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
            .arg(key_file)
            .arg("--data")
            .arg(data);
        for l in logs {
            cmd.arg("--log").arg(l.to_string());
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn candor witness serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        WitnessProc { child, url }
    }

    /// Simulates a crash: SIGKILL, no graceful shutdown.
    fn kill(mut self) {
        self.child.kill().expect("kill witness");
        self.child.wait().expect("reap witness");
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log simulated in the test: a key and an in-memory tree, so the test can
/// sign any checkpoint it likes (including a fork with the same key).
struct FakeLog {
    key: SignerKey,
    tree: MemoryTree,
}

impl FakeLog {
    fn new(key: SignerKey) -> FakeLog {
        FakeLog {
            key,
            tree: MemoryTree::default(),
        }
    }

    /// Appends `n` leaves derived from `tag`, so two logs with different tags diverge.
    fn grow(&mut self, n: u64, tag: &str) {
        for _ in 0..n {
            let i = self.tree.size();
            self.tree
                .append(leaf_hash(format!("{tag} leaf {i}").as_bytes()));
        }
    }

    fn root(&self, size: u64) -> Hash {
        tree_hash(size, &self.tree).expect("root at size")
    }

    fn checkpoint(&self, size: u64) -> Vec<u8> {
        let cp = Checkpoint {
            origin: self.key.name().to_string(),
            size,
            root: self.root(size),
            extensions: vec![],
        };
        sign_checkpoint(&cp, &self.key).expect("sign checkpoint")
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        consistency_proof(old, new, &self.tree).expect("consistency proof")
    }

    /// A well-formed request from `old` to `new` with a correct proof.
    fn request(&self, old: u64, new: u64) -> Vec<u8> {
        let proof = if old == 0 {
            vec![]
        } else {
            self.proof(old, new)
        };
        AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: self.checkpoint(new),
        }
        .to_bytes()
    }
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn post(url: &str, body: Vec<u8>) -> Reply {
    let resp = reqwest::Client::new()
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .expect("POST add-checkpoint");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.bytes().await.expect("response body").to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::get(url).await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

fn write_key(dir: &Path, name: &str) -> (PathBuf, SignerKey) {
    let key = SignerKey::generate(name).expect("generate key");
    let path = dir.join(format!("{}.key", name.replace('/', "_")));
    std::fs::write(&path, format!("{key}\n")).expect("write key file");
    (path, key)
}

/// Checks that a 200 body is exactly one cosignature line that verifies with
/// the witness's vkey over `checkpoint`'s text; returns its timestamp.
fn assert_cosigned(reply: &Reply, checkpoint: &[u8], witness: &VerifierKey) -> u64 {
    assert_eq!(
        reply.status,
        200,
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = String::from_utf8(reply.body.clone()).expect("UTF-8 body");
    assert!(
        body.starts_with('\u{2014}') && body.ends_with('\n'),
        "{body:?}"
    );
    // tlog-witness: the client MAY append the response to the checkpoint and
    // parse the result as a note.
    let mut joined = checkpoint.to_vec();
    joined.extend_from_slice(body.as_bytes());
    let note = Note::parse(&joined).expect("checkpoint + cosignature parses as a note");
    let sig = note
        .signatures
        .iter()
        .find(|s| witness.matches(s))
        .expect("a signature by the witness key");
    verify_cosignature(&note.text, sig, witness).expect("cosignature verifies")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[tokio::test]
async fn every_status_code_of_the_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wkey_file, wkey) = write_key(dir.path(), "witness.example/w1");
    let wvkey = witness_verifier_key(&wkey);
    let mut log = FakeLog::new(SignerKey::generate("log.example/a").expect("key"));
    let other_log = FakeLog::new(SignerKey::generate("log.example/unknown").expect("key"));
    let w = WitnessProc::start(&wkey_file, &dir.path().join("data"), &[&log.key.verifier()]);

    // 200: first checkpoint, old size 0 and an empty proof.
    log.grow(5, "a");
    let t0 = now();
    let reply = post(&w.url, log.request(0, 5)).await;
    let ts = assert_cosigned(&reply, &log.checkpoint(5), &wvkey);
    assert!(
        ts >= t0 && ts <= now() + 1,
        "timestamp {ts} is the signing time"
    );

    // 200: a consistent extension with a real RFC 6962 proof.
    log.grow(8, "a");
    let reply = post(&w.url, log.request(5, 13)).await;
    assert_cosigned(&reply, &log.checkpoint(13), &wvkey);

    // 200: the same checkpoint again (old = new, equal roots, empty proof).
    let reply = post(&w.url, log.request(13, 13)).await;
    assert_cosigned(&reply, &log.checkpoint(13), &wvkey);

    // 404: an origin no configured log key has.
    let mut other = other_log;
    other.grow(3, "u");
    assert_eq!(post(&w.url, other.request(0, 3)).await.status, 404);

    // 403: right origin, but signed by a different key of the same name.
    let mut impostor = FakeLog::new(SignerKey::generate("log.example/a").expect("key"));
    impostor.grow(13, "a");
    let reply = post(&w.url, impostor.request(13, 13)).await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    // 400: old size larger than the checkpoint size.
    let body = AddCheckpointRequest {
        old_size: 14,
        proof: vec![],
        checkpoint: log.checkpoint(13),
    }
    .to_bytes();
    assert_eq!(post(&w.url, body).await.status, 400);

    // 400: malformed bodies (leading zero, no blank line, garbage proof line).
    for bad in [
        b"old 013\n\n".to_vec(),
        b"old 13\n".to_vec(),
        [b"old 13\nnot-base64!\n\n".as_slice(), &log.checkpoint(13)].concat(),
    ] {
        assert_eq!(post(&w.url, bad).await.status, 400);
    }

    // 409: old size is not the witness's latest; body is its size as text/x.tlog.size.
    log.grow(3, "a");
    let reply = post(&w.url, log.request(5, 16)).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.content_type, SIZE_CONTENT_TYPE);
    assert_eq!(reply.body, b"13\n");

    // 422: a consistency proof that does not verify.
    let mut proof = log.proof(13, 16);
    proof[0] = sha256(b"not a tree node");
    let body = AddCheckpointRequest {
        old_size: 13,
        proof,
        checkpoint: log.checkpoint(16),
    }
    .to_bytes();
    assert_eq!(post(&w.url, body).await.status, 422);

    // 422: old size 0 requires an empty proof (tlog-witness); use a fresh origin.
    let mut fresh = FakeLog::new(SignerKey::generate("log.example/b").expect("key"));
    fresh.grow(4, "b");
    drop(w);
    let w = WitnessProc::start(
        &wkey_file,
        &dir.path().join("data"),
        &[&log.key.verifier(), &fresh.key.verifier()],
    );
    let body = AddCheckpointRequest {
        old_size: 0,
        proof: fresh.proof(2, 4),
        checkpoint: fresh.checkpoint(4),
    }
    .to_bytes();
    assert_eq!(post(&w.url, body).await.status, 422);

    // 200 after all the refusals: the state was never changed by them.
    let reply = post(&w.url, log.request(13, 16)).await;
    assert_cosigned(&reply, &log.checkpoint(16), &wvkey);

    // Monitoring path: GET /<hex sha256(origin)>/checkpoint serves the latest
    // cosigned checkpoint with the log signature and the cosignature.
    let id = sha256(b"log.example/a").to_hex();
    let (status, served) = get(&format!("{}/{id}/checkpoint", w.url)).await;
    assert_eq!(status, 200);
    let verified = note::open(&served, &[log.key.verifier()]).expect("log signature");
    assert_eq!(
        verified.note.text.as_bytes(),
        &log.checkpoint(16)[..verified.note.text.len()]
    );
    let cosig = verified
        .note
        .signatures
        .iter()
        .find(|s| wvkey.matches(s))
        .expect("served with the cosignature");
    verify_cosignature(&verified.note.text, cosig, &wvkey).expect("served cosignature verifies");
    let (status, _) = get(&format!(
        "{}/{}/checkpoint",
        w.url,
        sha256(b"nope").to_hex()
    ))
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn restarted_witness_keeps_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (wkey_file, wkey) = write_key(dir.path(), "witness.example/w2");
    let wvkey = witness_verifier_key(&wkey);
    let mut log = FakeLog::new(SignerKey::generate("log.example/r").expect("key"));
    log.grow(7, "r");

    let w = WitnessProc::start(&wkey_file, &data, &[&log.key.verifier()]);
    assert_cosigned(
        &post(&w.url, log.request(0, 7)).await,
        &log.checkpoint(7),
        &wvkey,
    );

    // A second witness on the same data directory is refused (it would break
    // the atomic check-and-update).
    let second = Command::new(BIN)
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&wkey_file)
        .arg("--data")
        .arg(&data)
        .arg("--log")
        .arg(log.key.verifier().to_string())
        .output()
        .expect("run second witness");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"));

    // Crash (SIGKILL) and restart: it still knows size 7.
    w.kill();
    let w = WitnessProc::start(&wkey_file, &data, &[&log.key.verifier()]);
    log.grow(2, "r");
    let reply = post(&w.url, log.request(0, 9)).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.body, b"7\n");
    assert_cosigned(
        &post(&w.url, log.request(7, 9)).await,
        &log.checkpoint(9),
        &wvkey,
    );
}

#[tokio::test]
async fn forked_log_gets_no_cosignature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wkey_file, wkey) = write_key(dir.path(), "witness.example/w3");
    let wvkey = witness_verifier_key(&wkey);
    let log_key = SignerKey::generate("log.example/fork").expect("key");
    let w = WitnessProc::start(&wkey_file, &dir.path().join("data"), &[&log_key.verifier()]);

    // Branch A and branch B share the first 4 leaves, then diverge; same key.
    let mut a = FakeLog::new(log_key.clone());
    let mut b = FakeLog::new(log_key);
    a.grow(4, "common");
    b.grow(4, "common");
    a.grow(6, "branch A");
    b.grow(8, "branch B");
    assert_ne!(a.root(10), b.root(10));

    assert_cosigned(
        &post(&w.url, a.request(0, 4)).await,
        &a.checkpoint(4),
        &wvkey,
    );
    assert_cosigned(
        &post(&w.url, a.request(4, 10)).await,
        &a.checkpoint(10),
        &wvkey,
    );

    // B, proving from 10 with its own (self-consistent) proof: 422.
    let reply = post(&w.url, b.request(10, 12)).await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // B at the same size 10, different root: 409.
    let reply = post(&w.url, b.request(10, 10)).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.body, b"10\n");
    // B from the common prefix: 409 (the witness is at 10, not 4).
    let reply = post(&w.url, b.request(4, 12)).await;
    assert_eq!(reply.status, 409);
    // B from scratch: 409.
    assert_eq!(post(&w.url, b.request(0, 12)).await.status, 409);

    // The two refusals with a valid log signature (bad proof, different root
    // at the same size) were kept as evidence of the fork.
    let evidence = dir
        .path()
        .join("data/evidence")
        .join(sha256(b"log.example/fork").to_hex());
    let kept: Vec<Vec<u8>> = std::fs::read_dir(&evidence)
        .expect("evidence directory")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read evidence"))
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&b.request(10, 10)));

    // A continues to be cosigned.
    a.grow(1, "branch A");
    assert_cosigned(
        &post(&w.url, a.request(10, 11)).await,
        &a.checkpoint(11),
        &wvkey,
    );
}

#[tokio::test]
async fn concurrent_requests_are_serialized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wkey_file, _) = write_key(dir.path(), "witness.example/w4");
    let mut log = FakeLog::new(SignerKey::generate("log.example/race").expect("key"));
    let w = WitnessProc::start(&wkey_file, &dir.path().join("data"), &[&log.key.verifier()]);
    log.grow(40, "race");
    assert_eq!(post(&w.url, log.request(0, 2)).await.status, 200);

    // Twenty valid requests all claiming old size 2: the first to take the
    // origin's lock wins, every other one must see the new size (409); none
    // may roll the witness back (tlog-witness's race).
    let mut tasks = Vec::new();
    for new in 21..=40 {
        let body = log.request(2, new);
        let url = w.url.clone();
        tasks.push(tokio::spawn(async move { post(&url, body).await }));
    }
    let mut ok = 0;
    let mut conflicts = Vec::new();
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            200 => ok += 1,
            409 => conflicts.push(String::from_utf8(r.body).expect("UTF-8")),
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(conflicts.len(), 19);
    // All conflicts report the single winner's size.
    let first = conflicts[0].clone();
    assert!(conflicts.iter().all(|c| *c == first) && first != "2\n");
}

#[test]
fn vkey_prints_the_cosignature_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wkey_file, wkey) = write_key(dir.path(), "witness.example/w5");
    let out = Command::new(BIN)
        .args(["witness", "vkey", "--key"])
        .arg(&wkey_file)
        .output()
        .expect("run candor witness vkey");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    let vkey: VerifierKey = printed.trim().parse().expect("a vkey");
    assert_eq!(vkey, witness_verifier_key(&wkey));
    assert_eq!(vkey.key_type(), note::KeyType::Cosignature);
}

/// The log side (`witness::client`) against three real witnesses, quorum two:
/// what `candor serve --witness … --witness-quorum 2` does after each batch.
#[tokio::test]
async fn client_collects_a_quorum_and_survives_witness_outages() {
    use candor_net::witness_client::{WitnessClient, WitnessEndpoint};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = FakeLog::new(SignerKey::generate("log.example/q").expect("key"));
    let mut keys = Vec::new();
    let mut procs = Vec::new();
    for i in 0..3 {
        let (file, key) = write_key(dir.path(), &format!("witness.example/q{i}"));
        let data = dir.path().join(format!("data{i}"));
        procs.push(Some(WitnessProc::start(
            &file,
            &data,
            &[&log.key.verifier()],
        )));
        keys.push((file, key, data));
    }
    let endpoints: Vec<WitnessEndpoint> = keys
        .iter()
        .zip(&procs)
        .map(|((_, k, _), p)| {
            format!(
                "{}={}",
                witness_verifier_key(k),
                p.as_ref().expect("running").url
            )
            .parse()
            .expect("VKEY=URL")
        })
        .collect();
    let client = WitnessClient::new(endpoints, 2, Duration::from_secs(5)).expect("client");
    let policy = client.policy(&log.key.verifier()).expect("policy");

    // Pre-seed witness 2 at size 3 so the client, which starts from 0, must
    // follow a 409 hint to reach it.
    log.grow(3, "q");
    let w2 = procs[2].as_ref().expect("running");
    assert_eq!(post(&w2.url, log.request(0, 3)).await.status, 200);

    // All up: three cosignatures, and the policy (log + 2 of 3) accepts it.
    log.grow(5, "q");
    let tree = &log.tree;
    let prove = |old: u64, new: u64| consistency_proof(old, new, tree).map_err(|e| e.to_string());
    let out = client
        .cosign(&log.checkpoint(8), &prove)
        .await
        .expect("round");
    assert_eq!(out.cosigners.len(), 3);
    assert!(out.quorum_met);
    let accepted = policy.check(&out.note).expect("policy accepts");
    assert_eq!(accepted.cosigners.len(), 3);
    assert!(client.status().iter().all(|s| s.cosigned_size == 8));

    // One witness down: two cosignatures, still a quorum.
    procs[0].take().expect("running").kill();
    log.grow(4, "q");
    let tree = &log.tree;
    let prove = |old: u64, new: u64| consistency_proof(old, new, tree).map_err(|e| e.to_string());
    let out = client
        .cosign(&log.checkpoint(12), &prove)
        .await
        .expect("round");
    assert_eq!(out.cosigners.len(), 2);
    assert!(out.quorum_met);
    assert_eq!(
        policy.check(&out.note).expect("accepted").cosigners.len(),
        2
    );
    let st = client.status();
    assert!(st[0].last_error.is_some() && st[0].consecutive_failures == 1);

    // Two down: one cosignature, no quorum; the policy rejects the note.
    procs[1].take().expect("running").kill();
    log.grow(4, "q");
    let tree = &log.tree;
    let prove = |old: u64, new: u64| consistency_proof(old, new, tree).map_err(|e| e.to_string());
    let out = client
        .cosign(&log.checkpoint(16), &prove)
        .await
        .expect("round");
    assert_eq!(out.cosigners.len(), 1);
    assert!(!out.quorum_met);
    assert!(policy.check(&out.note).is_err());

    // Witness 1 comes back on its old state (size 12): a proof from 12 gets it
    // to 16 again, and the quorum is back.
    let (file, _, data) = &keys[1];
    let back = WitnessProc::start(file, data, &[&log.key.verifier()]);
    let endpoints: Vec<WitnessEndpoint> = client
        .endpoints()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let url = if i == 1 {
                back.url.clone()
            } else {
                e.url.clone()
            };
            WitnessEndpoint {
                key: e.key.clone(),
                url,
            }
        })
        .collect();
    // A new client (as after a log restart) starts from size 0 for every
    // witness and learns their sizes from 409s.
    let client = WitnessClient::new(endpoints, 2, Duration::from_secs(5)).expect("client");
    log.grow(1, "q");
    let tree = &log.tree;
    let prove = |old: u64, new: u64| consistency_proof(old, new, tree).map_err(|e| e.to_string());
    let out = client
        .cosign(&log.checkpoint(17), &prove)
        .await
        .expect("round");
    assert!(out.quorum_met, "{:?}", client.status());
    assert_eq!(out.cosigners.len(), 2);
    assert_eq!(
        policy.check(&out.note).expect("accepted").checkpoint.size,
        17
    );
    drop(back);
}

#[test]
fn witness_endpoint_parsing() {
    use candor_net::witness_client::WitnessEndpoint;
    let key = SignerKey::generate("witness.example/p").expect("key");
    let vkey = witness_verifier_key(&key);
    let ep: WitnessEndpoint = format!("{vkey}=http://127.0.0.1:9/")
        .parse()
        .expect("parses");
    assert_eq!(ep.key, vkey);
    assert_eq!(ep.url, "http://127.0.0.1:9");
    assert!(format!("{vkey}").parse::<WitnessEndpoint>().is_err());
    assert!(
        format!("{}=http://x", key.verifier())
            .parse::<WitnessEndpoint>()
            .is_err()
    );
}
