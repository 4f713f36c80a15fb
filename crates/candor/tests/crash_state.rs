//! Crash safety of the witness's state (issue 6, "Crash suite"): `candor witness serve`
//! is SIGKILLed at random moments, again and again, while several clients send it
//! add-checkpoint requests concurrently, half of them from a fork of the log signed
//! with the same key. Across all restarts the witness must never cosign two
//! inconsistent checkpoints (C2SP tlog-witness: it only cosigns checkpoints consistent
//! with the latest one it cosigned), and never forget a size it cosigned (a 200 means
//! the new size was durably recorded first). The monitor's state gets the same
//! treatment in tests/monitor.rs
//! (`monitor_killed_at_random_moments_resumes_without_loss_or_false_alarm`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
use candor_core::cosignature::{verify_cosignature, witness_verifier_key};
use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::{MemoryTree, consistency_proof, tree_hash};
use candor_core::note::{Note, SignerKey, VerifierKey};
use candor_core::witness_protocol::AddCheckpointRequest;

const BIN: &str = env!("CARGO_BIN_EXE_candor");
/// Both branches share this many leaves, then diverge.
const COMMON: u64 = 60;
/// Each branch grows to this size.
const MAX: u64 = 3000;

struct Witness {
    child: Child,
    url: String,
}

fn start_witness(key_file: &Path, data: &Path, log: &VerifierKey) -> Witness {
    let mut child = Command::new(BIN)
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(key_file)
        .arg("--data")
        .arg(data)
        .arg("--log")
        .arg(log.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn candor witness serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| {
            panic!("unexpected first line {line:?}; did the witness refuse to restart?")
        })
        .to_string();
    Witness { child, url }
}

impl Drop for Witness {
    // The last witness must not outlive the test (it would hold the test's output pipe).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One branch of the log: the common prefix, then leaves of its own.
fn branch(tag: &str) -> MemoryTree {
    let mut t = MemoryTree::default();
    for i in 0..MAX {
        let label = if i < COMMON { "common" } else { tag };
        t.append(leaf_hash(format!("{label} leaf {i}").as_bytes()));
    }
    t
}

fn checkpoint(key: &SignerKey, tree: &MemoryTree, size: u64) -> Vec<u8> {
    let cp = Checkpoint {
        origin: key.name().to_string(),
        size,
        root: tree_hash(size, tree).expect("root"),
        extensions: vec![],
    };
    sign_checkpoint(&cp, key).expect("sign")
}

/// A checkpoint the witness cosigned: which branch, its size and root.
#[derive(Clone, Copy, Debug)]
struct Cosigned {
    fork: bool,
    size: u64,
    root: Hash,
}

struct State {
    url: RwLock<String>,
    stop: AtomicBool,
    cosigned: Mutex<Vec<Cosigned>>,
    /// Largest size cosigned so far (any branch).
    max: AtomicU64,
}

async fn client(
    st: Arc<State>,
    key: Arc<SignerKey>,
    tree: Arc<MemoryTree>,
    fork: bool,
    wvkey: VerifierKey,
    seed: u64,
) {
    let http = reqwest::Client::new();
    let mut rng = seed;
    let mut old = 0u64;
    while !st.stop.load(Ordering::Relaxed) && old < MAX {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let new = (old + 1 + (rng >> 33) % 12).min(MAX);
        let proof = if old == 0 {
            vec![]
        } else {
            consistency_proof(old, new, &*tree).expect("proof")
        };
        let cp = checkpoint(&key, &tree, new);
        let body = AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: cp.clone(),
        }
        .to_bytes();
        let url = format!("{}/add-checkpoint", st.url.read().expect("url").clone());
        let resp = match http.post(&url).body(body).send().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let Ok(body) = resp.bytes().await else {
            continue;
        };
        match status {
            200 => {
                let mut joined = cp.clone();
                joined.extend_from_slice(&body);
                let note = Note::parse(&joined).expect("checkpoint + cosignature is a note");
                let sig = note
                    .signatures
                    .iter()
                    .find(|s| wvkey.matches(s))
                    .expect("the witness's cosignature");
                verify_cosignature(&note.text, sig, &wvkey).expect("cosignature verifies");
                st.cosigned.lock().expect("lock").push(Cosigned {
                    fork,
                    size: new,
                    root: tree_hash(new, &*tree).expect("root"),
                });
                st.max.fetch_max(new, Ordering::SeqCst);
                old = new;
            }
            // The witness is elsewhere: continue from the size it reports (a proof from
            // there exists only if it is on this branch; otherwise it refuses us).
            409 => {
                let text = String::from_utf8_lossy(&body);
                old = text.trim().parse().expect("409 body is the witness's size");
                if old >= MAX {
                    break;
                }
            }
            // Refused as inconsistent (the other branch won): try again later.
            422 | 400 => tokio::time::sleep(Duration::from_millis(5)).await,
            503 => tokio::time::sleep(Duration::from_millis(10)).await,
            s => panic!("unexpected status {s}: {}", String::from_utf8_lossy(&body)),
        }
    }
}

fn write_key(dir: &Path, name: &str) -> (PathBuf, SignerKey) {
    let key = SignerKey::generate(name).expect("key");
    let path = dir.join("witness.key");
    std::fs::write(&path, format!("{key}\n")).expect("write key");
    (path, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_killed_repeatedly_never_cosigns_a_fork_nor_forgets() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let (wkey_file, wkey) = write_key(dir.path(), "witness.example/crash");
    let wvkey = witness_verifier_key(&wkey);
    let log_key = Arc::new(SignerKey::generate("log.example/crash").expect("key"));
    let honest = Arc::new(branch("honest"));
    let forked = Arc::new(branch("fork"));

    let mut w = start_witness(&wkey_file, &data, &log_key.verifier());
    let st = Arc::new(State {
        url: RwLock::new(w.url.clone()),
        stop: AtomicBool::new(false),
        cosigned: Mutex::new(Vec::new()),
        max: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let fork = i % 2 == 1;
        let tree = if fork { forked.clone() } else { honest.clone() };
        tasks.push(tokio::spawn(client(
            st.clone(),
            log_key.clone(),
            tree,
            fork,
            wvkey.clone(),
            i * 7919 + 17,
        )));
    }

    let http = reqwest::Client::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    for _ in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(rng % 120)).await;
        let before = st.max.load(Ordering::SeqCst);
        w.child.kill().expect("SIGKILL");
        w.child.wait().expect("reap");
        kills += 1;
        drop(w);
        w = start_witness(&wkey_file, &data, &log_key.verifier());
        *st.url.write().expect("url") = w.url.clone();
        // No lost progress: the witness still knows at least every size it cosigned
        // before the kill (a stale old size is answered 409 with its recorded size).
        if before > 0 {
            let body = AddCheckpointRequest {
                old_size: 0,
                proof: vec![],
                checkpoint: checkpoint(&log_key, &honest, 1),
            }
            .to_bytes();
            let r = http
                .post(format!("{}/add-checkpoint", w.url))
                .body(body)
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status().as_u16(), 409);
            let size: u64 = r.text().await.expect("body").trim().parse().expect("size");
            assert!(
                size >= before,
                "after kill {kills} the witness reports size {size} but had cosigned {before}"
            );
        }
    }
    st.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }

    let cosigned = st.cosigned.lock().expect("lock").clone();
    eprintln!(
        "{kills} kills, {} cosignatures, largest size {}",
        cosigned.len(),
        st.max.load(Ordering::SeqCst)
    );
    assert!(
        cosigned.len() >= 10,
        "the witness kept working: {} cosignatures",
        cosigned.len()
    );
    // Never two inconsistent checkpoints: every cosigned checkpoint beyond the common
    // prefix is on one branch, and each root is that branch's root at its size.
    let beyond: Vec<_> = cosigned.iter().filter(|c| c.size > COMMON).collect();
    assert!(
        beyond.iter().all(|c| c.fork == beyond[0].fork),
        "the witness cosigned both branches of a fork: {beyond:?}"
    );
    for c in &cosigned {
        let tree = if c.fork { &forked } else { &honest };
        assert_eq!(c.root, tree_hash(c.size, &**tree).expect("root"));
    }
    assert_eq!(kills, 20);
}
