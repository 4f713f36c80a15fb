//! Publishing only witnessed checkpoints (spec/witness.md §6, spec/api.md "Witnessing").
//!
//! With `--witness VKEY=URL` the sequencer no longer publishes the checkpoints it
//! signs. It hands each one ([`Witnessing::offer`]) to a separate task ([`run`]) that
//! asks the witnesses to cosign it (C2SP tlog-witness) and, once `--witness-quorum`
//! of them did, stores the cosigned note with `Store::put_checkpoint` and only then
//! publishes it. Sequencing never waits for witnesses: with them down, entries are
//! still accepted, made durable and signed; readers keep getting the last witnessed
//! checkpoint, the task retries on a timer, and `/metrics` and `/healthz` say the log
//! is degraded.
//!
//! Why this keeps the log's invariants:
//! * The log signs checkpoints only for durable tree sizes, never a smaller size than
//!   one already signed (the sequencer), so no two are inconsistent.
//! * Only this task stores checkpoints in witness mode, and it stores a cosigned note
//!   *before* publishing it: the published checkpoint is always durable, and a
//!   restarted log serves it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::response::Response;
use base64::Engine as _;
use tokio::sync::watch;

use super::error::ApiError;
use super::reader::{self, StoreTiles};
use super::sequencer;
use super::state::witnessed::Witnessed;
use super::state::{AppState, Phase, Published, Receipt, Shared};
use candor_core::hash::Hash;
use candor_net::witness_client::{ClientError, Cosigned};
use candor_store::Store;

pub use super::state::witnessed::{
    DEFAULT_WITNESS_RETRY_MS, DEFAULT_WITNESS_TIMEOUT_MS, DEFAULT_WITNESS_WAIT_MS, WitnessConfig,
    Witnessing, WitnessingError,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One cosigning round for `target`; publishes on quorum. Returns whether every
/// witness cosigned.
async fn round(
    w: &Witnessing,
    target: &Published,
    store: &Arc<dyn Store>,
    shared: &Shared,
) -> bool {
    let size = target.checkpoint.size;
    // A witness whose size the log does not know yet (after a restart) answers
    // the first attempt with a 409 naming it; the second attempt brings the proof
    // from there.
    let mut cosigned = None;
    for _ in 0..2 {
        let known = known_sizes(w, size);
        match attempt(w, target, store, &known).await {
            Ok(c) => {
                let all = c.cosigners.len() == w.client.endpoints().len();
                cosigned = Some(c);
                if all || known_sizes(w, size) == known {
                    break;
                }
            }
            Err(e) => {
                tracing::error!("cosigning round for size {size}: {e}");
                break;
            }
        }
    }
    let Some(cosigned) = cosigned else {
        w.fail_round();
        return false;
    };
    let all = cosigned.cosigners.len() == w.client.endpoints().len();
    if !cosigned.quorum_met {
        tracing::warn!(
            size,
            cosigners = cosigned.cosigners.len(),
            quorum = w.client.quorum(),
            "checkpoint not witnessed by the quorum; serving the last witnessed checkpoint"
        );
        w.fail_round();
        return all;
    }
    let current = *w.witnessed.borrow();
    let better = !current.witnessed
        || size > current.size
        || cosigned.cosigners.len() > w.published_cosigners.load(Ordering::Relaxed);
    if !better {
        w.rounds_quorum.fetch_add(1, Ordering::Relaxed);
        w.degraded.store(false, Ordering::Relaxed);
        return all;
    }
    // Durable first, then published (see the module docs).
    let note = cosigned.note;
    let put_store = store.clone();
    let put_note = note.clone();
    let stored = tokio::task::spawn_blocking(move || put_store.put_checkpoint(&put_note))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = stored {
        tracing::error!("storing the witnessed checkpoint for size {size}: {e}");
        shared
            .metrics
            .store_errors_total
            .fetch_add(1, Ordering::Relaxed);
        w.fail_round();
        return false;
    }
    shared.publish_witnessed(Published {
        note: Arc::new(note),
        checkpoint: target.checkpoint.clone(),
    });
    w.published_cosigners
        .store(cosigned.cosigners.len(), Ordering::Relaxed);
    w.rounds_quorum.fetch_add(1, Ordering::Relaxed);
    w.degraded.store(false, Ordering::Relaxed);
    w.witnessed.send_replace(Witnessed {
        size,
        witnessed: true,
    });
    tracing::info!(size, cosigners = ?cosigned.cosigners, "published a witnessed checkpoint");
    all
}

/// The sizes (strictly between 0 and `size`) the witnesses are known to hold.
fn known_sizes(w: &Witnessing, size: u64) -> Vec<u64> {
    let mut olds: Vec<u64> = w
        .client
        .status()
        .iter()
        .map(|s| s.cosigned_size)
        .filter(|&o| o > 0 && o < size)
        .collect();
    olds.sort_unstable();
    olds.dedup();
    olds
}

/// Asks every witness once, with consistency proofs from the `olds` sizes,
/// computed on a blocking thread (the store is synchronous; the witness client
/// asks for proofs from async code). A size learnt from a 409 during this attempt
/// has no proof; that witness fails the attempt.
async fn attempt(
    w: &Witnessing,
    target: &Published,
    store: &Arc<dyn Store>,
    olds: &[u64],
) -> Result<Cosigned, ClientError> {
    let size = target.checkpoint.size;
    let proof_store = store.clone();
    let olds = olds.to_vec();
    let proofs = tokio::task::spawn_blocking(move || {
        let mut out: BTreeMap<u64, Result<Vec<Hash>, String>> = BTreeMap::new();
        for old in olds {
            let tiles = StoreTiles {
                store: &*proof_store,
                overlay: None,
            };
            let p = reader::consistency_proof(tiles, old, size).map_err(|e| e.to_string());
            out.insert(old, p);
        }
        out
    })
    .await
    .unwrap_or_default();
    let prove = |old: u64, new: u64| -> Result<Vec<Hash>, String> {
        if new != size {
            return Err(format!("no proof prepared to size {new}"));
        }
        proofs.get(&old).cloned().unwrap_or_else(|| {
            Err(format!(
                "no proof prepared from size {old}; it is computed for the next attempt"
            ))
        })
    };
    w.client.cosign(&target.note, &prove).await
}

/// The cosigning task: runs rounds for the latest signed checkpoint until the log
/// stops. After a round that left a witness out (or missed the quorum) it retries
/// every `--witness-retry-ms`; otherwise it waits for the next signed checkpoint.
pub async fn run(
    w: Arc<Witnessing>,
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut signed_rx = w.signed.subscribe();
    loop {
        let target = signed_rx.borrow_and_update().clone();
        let mut settled = true;
        if let Some(t) = target {
            let current = *w.witnessed.borrow();
            let lagging =
                w.published_cosigners.load(Ordering::Relaxed) < w.client.endpoints().len();
            if !current.witnessed || t.checkpoint.size > current.size || lagging {
                settled = round(&w, &t, &store, &shared).await && w.is_witnessed();
            }
        }
        let retry = tokio::time::sleep(w.retry);
        tokio::select! {
            changed = signed_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = retry, if !settled => {}
            _ = phase.wait_for(|p| *p == Phase::Finished) => return,
        }
    }
}

/// Where a submission's receipts stand once witnessing had its say.
#[derive(Debug)]
pub enum Settled {
    /// The receipts to return: against a witnessed checkpoint, or, for a log without
    /// witnesses, against the log's own checkpoint.
    Receipts(Vec<Receipt>),
    /// The entries are logged and durable, but no witnessed checkpoint covered them
    /// within `--witness-wait-ms`: the documented 202 `pending` answer.
    Pending(Response),
}

/// For a log with witnesses, waits (at most `--witness-wait-ms`) until a witnessed
/// checkpoint covers every receipt's index, then rebuilds the receipts against it;
/// without witnesses, returns them as they are.
pub async fn settle(app: &AppState, receipts: Vec<Receipt>) -> Result<Settled, ApiError> {
    let Some(w) = &app.shared.witnessing else {
        return Ok(Settled::Receipts(receipts));
    };
    let Some(max) = receipts.iter().map(|r| r.index).max() else {
        return Ok(Settled::Receipts(receipts));
    };
    let mut rx = w.witnessed.subscribe();
    let covered = |s: &Witnessed| s.witnessed && s.size > max;
    // A time-out or a dropped sender both mean: not covered in time.
    let _ = tokio::time::timeout(w.wait, rx.wait_for(covered)).await;
    let published = app.shared.published();
    if !(w.is_witnessed() && published.checkpoint.size > max) {
        let indices: Vec<u64> = receipts.iter().map(|r| r.index).collect();
        return Ok(Settled::Pending(
            w.pending(&indices, published.checkpoint.size),
        ));
    }
    let store = app.store.clone();
    let registry = app.shared.registry();
    let rebuilt = tokio::task::spawn_blocking(move || {
        receipts
            .into_iter()
            .map(|r| {
                let leaf = B64.decode(&r.leaf).map_err(|e| {
                    ApiError::Internal(format!("receipt {} leaf is not base64: {e}", r.index))
                })?;
                sequencer::build_receipt(&*store, None, &published, &registry, r.index, leaf)
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("building receipts: {e}")))??;
    Ok(Settled::Receipts(rebuilt))
}

#[cfg(test)]
mod tests {
    //! Cosigning rounds against witnesses served in this process on loopback.

    use std::time::{Duration, Instant};

    use tokio::sync::{Semaphore, oneshot};

    use super::*;
    use crate::metrics::Metrics;
    use crate::sequencer::Core;
    use crate::state::{Reply, Role, Submission, Validated};
    use candor_core::note::{SignerKey, VerifierKey};
    use candor_net::witness_client::WitnessEndpoint;
    use candor_store::memory::MemoryStore;
    use candor_witness::server::{Witness, router};
    use candor_witness::state::WitnessState;

    const ORIGIN: &str = "example.com/witnessed-log";
    const COMPANY: &str = "acme.example";

    /// A witness served on 127.0.0.1:0 for the life of the test's runtime.
    async fn witness(name: &str, log: &VerifierKey, dir: &tempfile::TempDir) -> WitnessEndpoint {
        let state = WitnessState::open(&dir.path().join(name)).expect("witness state");
        let key = SignerKey::generate(name).expect("witness key");
        let w = Arc::new(Witness::new(key, vec![log.clone()], state).expect("witness"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let key = w.cosigner().clone();
        tokio::spawn(async move { axum::serve(listener, router(w)).await });
        WitnessEndpoint { key, url }
    }

    /// An endpoint nobody listens on.
    async fn down_witness(name: &str) -> WitnessEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let key = SignerKey::generate(name).expect("key");
        WitnessEndpoint {
            key: candor_core::cosignature::witness_verifier_key(&key),
            url,
        }
    }

    struct Log {
        store: Arc<MemoryStore>,
        key: SignerKey,
        company: SignerKey,
        core: Core,
        w: Arc<Witnessing>,
        next: u64,
    }

    impl Log {
        /// A witnessed log on a fresh memory store, with the company registered.
        async fn new(key: &SignerKey, endpoints: Vec<WitnessEndpoint>, quorum: usize) -> Log {
            let cfg = WitnessConfig {
                endpoints,
                quorum,
                timeout: Duration::from_secs(2),
                retry: Duration::from_millis(50),
                wait: Duration::from_millis(300),
            };
            let w = Arc::new(Witnessing::new(cfg, &key.verifier()).expect("witnessing"));
            let store = Arc::new(MemoryStore::new());
            let st: Arc<dyn Store> = store.clone();
            let core = Core::open_witnessed(
                st,
                key.clone(),
                ORIGIN.into(),
                Arc::new(Metrics::new()),
                Some(w.clone()),
                candor_core::clock::system(),
            )
            .expect("open");
            let mut log = Log {
                store,
                key: key.clone(),
                company: SignerKey::generate(COMPANY).expect("company key"),
                core,
                w,
                next: 0,
            };
            let reg = log.registration();
            log.submit(vec![reg]).await;
            log
        }

        fn registration(&self) -> Validated {
            crate::testing::registration(&self.key, &self.company)
        }

        fn entry(&mut self) -> Validated {
            self.next += 1;
            crate::testing::company_entry(&self.company, self.next)
        }

        /// Sequences one submission; its receipts, against the log's own checkpoint.
        async fn submit(&mut self, items: Vec<Validated>) -> Vec<Receipt> {
            let (reply, mut rx) = oneshot::channel::<Reply>();
            let permit = Arc::new(Semaphore::new(100))
                .try_acquire_many_owned(items.len() as u32)
                .expect("permits");
            let sub = Submission {
                items,
                reply,
                accepted: Instant::now(),
                permit,
            };
            let job = tokio::task::block_in_place(|| self.core.process(vec![sub]));
            if let Some(job) = job {
                tokio::task::block_in_place(|| job.run());
            }
            rx.try_recv().expect("answered").expect("logged")
        }

        /// One cosigning round for the latest signed checkpoint.
        async fn round(&self) -> bool {
            let target = self.w.latest_signed().expect("a signed checkpoint");
            let store: Arc<dyn Store> = self.store.clone();
            round(&self.w, &target, &store, &self.core.shared()).await
        }

        fn app(&self) -> AppState {
            crate::testing::app_state(
                self.store.clone(),
                &self.key,
                self.core.shared(),
                Role::Sequencer,
            )
        }

        /// Cosignatures on the stored checkpoint (each line after the log's own).
        fn stored_signatures(&self) -> usize {
            let note = self
                .store
                .checkpoint()
                .unwrap()
                .expect("a stored checkpoint");
            String::from_utf8(note)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("— "))
                .count()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quorum_publishes_a_durable_cosigned_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate(ORIGIN).unwrap();
        let mut ends = Vec::new();
        for n in ["w0.example", "w1.example", "w2.example"] {
            ends.push(witness(n, &key.verifier(), &dir).await);
        }
        let mut log = Log::new(&key, ends, 2).await;
        let e = log.entry();
        let receipts = log.submit(vec![e]).await;
        assert!(!log.w.is_witnessed());
        assert!(log.round().await, "every witness cosigns");
        assert!(log.w.is_witnessed());
        let published = log.core.shared().published();
        assert_eq!(published.checkpoint.size, 2);
        // Stored before published, with the log's signature and three cosignatures.
        assert_eq!(
            log.store.checkpoint().unwrap().as_deref(),
            Some(&published.note[..])
        );
        assert_eq!(log.stored_signatures(), 4);
        assert!(log.w.policy.check(&published.note).is_ok());

        let settled = settle(&log.app(), receipts).await.expect("settle");
        let Settled::Receipts(r) = settled else {
            panic!("expected receipts, got {settled:?}")
        };
        assert!(
            r[0].tlog_proof
                .ends_with(std::str::from_utf8(&published.note).unwrap())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_witness_down_costs_only_its_cosignature() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate(ORIGIN).unwrap();
        let ends = vec![
            witness("w0.example", &key.verifier(), &dir).await,
            witness("w1.example", &key.verifier(), &dir).await,
            down_witness("w2.example").await,
        ];
        let mut log = Log::new(&key, ends, 2).await;
        let e = log.entry();
        log.submit(vec![e]).await;
        assert!(!log.round().await, "the down witness did not cosign");
        assert!(log.w.is_witnessed());
        assert_eq!(log.core.shared().published().checkpoint.size, 2);
        assert_eq!(log.stored_signatures(), 3);
        let health = log.w.health(2);
        let up: Vec<bool> = health["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["up"].as_bool().unwrap())
            .collect();
        assert_eq!(up, vec![true, true, false]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_quorum_nothing_is_published_as_witnessed() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate(ORIGIN).unwrap();
        let ends = vec![
            witness("w0.example", &key.verifier(), &dir).await,
            down_witness("w1.example").await,
        ];
        let mut log = Log::new(&key, ends, 2).await;
        let e = log.entry();
        let receipts = log.submit(vec![e]).await;
        assert!(!log.round().await);
        assert!(!log.w.is_witnessed());
        assert!(log.w.is_degraded());
        // Neither stored nor published: the served checkpoint is still the empty tree.
        assert_eq!(log.store.checkpoint().unwrap(), None);
        assert_eq!(log.core.shared().published().checkpoint.size, 0);
        let settled = settle(&log.app(), receipts).await.expect("settle");
        let Settled::Pending(resp) = settled else {
            panic!("expected 202 pending, got {settled:?}")
        };
        assert_eq!(resp.status(), axum::http::StatusCode::ACCEPTED);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_witness_holding_a_larger_tree_refuses_and_the_quorum_decides() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate(ORIGIN).unwrap();
        let stale = witness("w2.example", &key.verifier(), &dir).await;
        // Another instance of the log (same key and origin) got this witness to
        // cosign a larger tree: it must answer the smaller one with a conflict.
        let mut rival = Log::new(&key, vec![stale.clone()], 1).await;
        for _ in 0..3 {
            let e = rival.entry();
            rival.submit(vec![e]).await;
        }
        assert!(rival.round().await);
        assert_eq!(rival.core.shared().published().checkpoint.size, 4);

        let good = vec![
            witness("w0.example", &key.verifier(), &dir).await,
            witness("w1.example", &key.verifier(), &dir).await,
        ];
        let mut all = good.clone();
        all.push(stale.clone());
        let mut strict = Log::new(&key, all, 3).await;
        let e = strict.entry();
        strict.submit(vec![e]).await;
        assert!(!strict.round().await);
        assert!(!strict.w.is_witnessed());
        assert_eq!(strict.store.checkpoint().unwrap(), None);
        let status = strict.w.client.status();
        assert_eq!(status[2].cosigned_size, 4, "{status:?}");
        assert!(status[2].last_error.is_some());

        let dir2 = tempfile::tempdir().unwrap();
        let mut fresh = vec![
            witness("w0.example", &key.verifier(), &dir2).await,
            witness("w1.example", &key.verifier(), &dir2).await,
        ];
        fresh.push(stale);
        let mut lenient = Log::new(&key, fresh, 2).await;
        let e = lenient.entry();
        lenient.submit(vec![e]).await;
        assert!(!lenient.round().await, "the stale witness does not cosign");
        assert!(lenient.w.is_witnessed());
        assert_eq!(lenient.stored_signatures(), 3);
    }
}
