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
//!   one already signed (the sequencer, unchanged), so no two are inconsistent.
//! * Only this task stores checkpoints in witness mode, and it stores a cosigned note
//!   *before* publishing it: the published checkpoint is always durable, and a
//!   restarted log serves it again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::error::ApiError;
use super::reader::{self, StoreTiles};
use super::routes::AppState;
use super::sequencer::{self, Phase, Published, Receipt, Shared};
use crate::hash::Hash;
use crate::note::VerifierKey;
use crate::policy::Policy;
use crate::store::Store;
use crate::witness::client::{ClientError, Cosigned, WitnessClient, WitnessEndpoint};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Default time limit of one request to one witness.
pub const DEFAULT_WITNESS_TIMEOUT_MS: u64 = 5_000;
/// Default pause between cosigning rounds while the quorum is not met.
pub const DEFAULT_WITNESS_RETRY_MS: u64 = 1_000;
/// Default time a submission waits for a witnessed checkpoint before 202.
pub const DEFAULT_WITNESS_WAIT_MS: u64 = 5_000;

/// Witnessing settings of `candor serve`.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    pub endpoints: Vec<WitnessEndpoint>,
    /// Cosignatures a checkpoint needs before it is published.
    pub quorum: usize,
    /// Time limit of one request to one witness.
    pub timeout: Duration,
    /// Pause between rounds while the quorum is not met (or a witness lags).
    pub retry: Duration,
    /// How long a submission waits for a witnessed checkpoint covering it.
    pub wait: Duration,
}

/// What the HTTP handlers may wait on: the published checkpoint's size and whether
/// it is witnessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Witnessed {
    size: u64,
    witnessed: bool,
}

/// The witnessing state shared by the sequencer, the cosigning task and the handlers.
pub struct Witnessing {
    client: WitnessClient,
    policy: Policy,
    policy_text: String,
    retry: Duration,
    wait: Duration,
    /// The latest checkpoint the log signed (for its whole durable tree).
    signed: watch::Sender<Option<Arc<Published>>>,
    /// The published checkpoint, as far as waiters are concerned.
    witnessed: watch::Sender<Witnessed>,
    /// Cosignatures on the published checkpoint.
    published_cosigners: AtomicUsize,
    /// The last round did not reach the quorum (or could not store its result).
    degraded: AtomicBool,
    rounds_quorum: AtomicU64,
    rounds_failed: AtomicU64,
}

/// Why witnessing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WitnessingError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("building the trust policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}

impl Witnessing {
    /// Witnessing for the log with verifier key `log_key`.
    pub fn new(cfg: WitnessConfig, log_key: &VerifierKey) -> Result<Witnessing, WitnessingError> {
        let client = WitnessClient::new(cfg.endpoints, cfg.quorum, cfg.timeout)?;
        let names = policy_names(client.endpoints());
        let policy_text = Policy::threshold_text(log_key, &names, client.quorum());
        let policy = Policy::parse(policy_text.as_bytes())?;
        Ok(Witnessing {
            client,
            policy,
            policy_text,
            retry: cfg.retry,
            wait: cfg.wait,
            signed: watch::Sender::new(None),
            witnessed: watch::Sender::new(Witnessed {
                size: 0,
                witnessed: false,
            }),
            published_cosigners: AtomicUsize::new(0),
            degraded: AtomicBool::new(true),
            rounds_quorum: AtomicU64::new(0),
            rounds_failed: AtomicU64::new(0),
        })
    }

    /// The trust policy (C2SP tlog-policy) a verifier of this log should use: the log
    /// key and `--witness-quorum` of the configured witnesses.
    pub fn policy_text(&self) -> &str {
        &self.policy_text
    }

    /// Records the checkpoint the log starts with (read from the store). It counts as
    /// witnessed only if it satisfies the log's own trust policy.
    pub fn start_with(&self, published: &Published) {
        let accepted = self.policy.check(&published.note).ok();
        let witnessed = accepted.is_some();
        self.published_cosigners
            .store(accepted.map_or(0, |a| a.cosigners.len()), Ordering::Relaxed);
        self.witnessed.send_replace(Witnessed {
            size: published.checkpoint.size,
            witnessed,
        });
    }

    /// Records the checkpoint a standby follows from the store (it signs nothing and
    /// runs no rounds): the log is degraded, as far as this process can tell, only
    /// if that checkpoint lacks the quorum.
    pub fn follow(&self, published: &Published) {
        self.start_with(published);
        self.degraded.store(!self.is_witnessed(), Ordering::Relaxed);
    }

    /// Hands a freshly signed checkpoint (of a durable tree) to the cosigning task.
    pub fn offer(&self, signed: Published) {
        self.signed.send_replace(Some(Arc::new(signed)));
    }

    /// The latest checkpoint the log signed, if any since start.
    pub fn latest_signed(&self) -> Option<Arc<Published>> {
        self.signed.borrow().clone()
    }

    /// The size of the latest signed checkpoint: everything sequenced and durable.
    pub fn sequenced_size(&self) -> Option<u64> {
        self.signed.borrow().as_ref().map(|p| p.checkpoint.size)
    }

    /// Whether the published checkpoint carries the quorum.
    pub fn is_witnessed(&self) -> bool {
        self.witnessed.borrow().witnessed
    }

    /// Whether the log currently fails to get its checkpoints witnessed.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// One cosigning round for `target`; publishes on quorum. Returns whether every
    /// witness cosigned.
    async fn round(&self, target: &Published, store: &Arc<dyn Store>, shared: &Shared) -> bool {
        let size = target.checkpoint.size;
        // A witness whose size the log does not know yet (after a restart) answers
        // the first attempt with a 409 naming it; the second attempt brings the proof
        // from there.
        let mut cosigned = None;
        for _ in 0..2 {
            let known = self.known_sizes(size);
            match self.attempt(target, store, &known).await {
                Ok(c) => {
                    let all = c.cosigners.len() == self.client.endpoints().len();
                    cosigned = Some(c);
                    if all || self.known_sizes(size) == known {
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
            self.fail_round();
            return false;
        };
        let all = cosigned.cosigners.len() == self.client.endpoints().len();
        if !cosigned.quorum_met {
            tracing::warn!(
                size,
                cosigners = cosigned.cosigners.len(),
                quorum = self.client.quorum(),
                "checkpoint not witnessed by the quorum; serving the last witnessed checkpoint"
            );
            self.fail_round();
            return all;
        }
        let current = *self.witnessed.borrow();
        let better = !current.witnessed
            || size > current.size
            || cosigned.cosigners.len() > self.published_cosigners.load(Ordering::Relaxed);
        if !better {
            self.rounds_quorum.fetch_add(1, Ordering::Relaxed);
            self.degraded.store(false, Ordering::Relaxed);
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
            self.fail_round();
            return false;
        }
        shared.publish_witnessed(Published {
            note: Arc::new(note),
            checkpoint: target.checkpoint.clone(),
        });
        self.published_cosigners
            .store(cosigned.cosigners.len(), Ordering::Relaxed);
        self.rounds_quorum.fetch_add(1, Ordering::Relaxed);
        self.degraded.store(false, Ordering::Relaxed);
        self.witnessed.send_replace(Witnessed {
            size,
            witnessed: true,
        });
        tracing::info!(size, cosigners = ?cosigned.cosigners, "published a witnessed checkpoint");
        all
    }

    /// The sizes (strictly between 0 and `size`) the witnesses are known to hold.
    fn known_sizes(&self, size: u64) -> Vec<u64> {
        let mut olds: Vec<u64> = self
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
        &self,
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
        self.client.cosign(&target.note, &prove).await
    }

    fn fail_round(&self) {
        self.rounds_failed.fetch_add(1, Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
    }

    /// Waits (at most `--witness-wait-ms`) until a witnessed checkpoint covers every
    /// receipt's index, then rebuilds the receipts against it. `Err(response)` is the
    /// documented 202 `pending` answer when none does in time.
    pub async fn settle(
        &self,
        app: &AppState,
        receipts: Vec<Receipt>,
    ) -> Result<Result<Vec<Receipt>, Response>, ApiError> {
        let Some(max) = receipts.iter().map(|r| r.index).max() else {
            return Ok(Ok(receipts));
        };
        let mut rx = self.witnessed.subscribe();
        let covered = |w: &Witnessed| w.witnessed && w.size > max;
        // A time-out or a dropped sender both mean: not covered in time.
        let _ = tokio::time::timeout(self.wait, rx.wait_for(covered)).await;
        let published = app.shared.published();
        if !(self.is_witnessed() && published.checkpoint.size > max) {
            let indices: Vec<u64> = receipts.iter().map(|r| r.index).collect();
            return Ok(Err(self.pending(&indices, published.checkpoint.size)));
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
        Ok(Ok(rebuilt))
    }

    /// The 202 answer for entries that are logged but not yet covered by a witnessed
    /// checkpoint (spec/api.md, "Witnessing").
    pub fn pending(&self, indices: &[u64], witnessed_size: u64) -> Response {
        let retry = self.retry.as_secs().max(1);
        let body = json!({
            "status": "pending",
            "detail": "the entries are logged and durable, but no checkpoint covering them has been cosigned by the witness quorum yet; fetch each receipt later",
            "indices": indices,
            "receipts": indices.iter().map(|i| format!("/v1/receipts/{i}")).collect::<Vec<_>>(),
            "witnessed_size": witnessed_size,
            "sequenced_size": self.sequenced_size().unwrap_or(witnessed_size),
            "retry_after_secs": retry,
        });
        let mut resp = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry));
        resp
    }

    /// The witnessing members of the `/healthz` body.
    pub fn health(&self, published_size: u64) -> Value {
        let witnesses: Vec<Value> = self
            .client
            .status()
            .into_iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "url": s.url,
                    "up": s.last_error.is_none() && s.last_success.is_some(),
                    "cosigned_size": s.cosigned_size,
                    "last_success": s.last_success.map(unix_secs),
                    "last_error": s.last_error,
                    "consecutive_failures": s.consecutive_failures,
                })
            })
            .collect();
        json!({
            "witnessed": self.is_witnessed(),
            "witnessed_size": published_size,
            "sequenced_size": self.sequenced_size().unwrap_or(published_size),
            "witness_quorum": self.client.quorum(),
            "witnesses": witnesses,
        })
    }

    /// The witnessing series of `/metrics` (Prometheus text format).
    pub fn render_metrics(&self, published_size: u64) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "candor_witness_quorum",
            "Witness cosignatures a checkpoint needs before it is published.",
            self.client.quorum() as u64,
        );
        gauge(
            "candor_witnessed_tree_size",
            "Size of the latest published (witnessed) checkpoint.",
            if self.is_witnessed() {
                published_size
            } else {
                0
            },
        );
        gauge(
            "candor_sequenced_tree_size",
            "Size of the latest signed checkpoint (every durable entry).",
            self.sequenced_size().unwrap_or(published_size),
        );
        gauge(
            "candor_witness_degraded",
            "1 while the latest cosigning round did not reach the quorum.",
            u64::from(self.is_degraded()),
        );
        let _ = writeln!(
            out,
            "# HELP candor_witness_rounds_total Cosigning rounds by result.\n# TYPE candor_witness_rounds_total counter\ncandor_witness_rounds_total{{result=\"quorum\"}} {}\ncandor_witness_rounds_total{{result=\"no_quorum\"}} {}",
            self.rounds_quorum.load(Ordering::Relaxed),
            self.rounds_failed.load(Ordering::Relaxed)
        );
        let status = self.client.status();
        let series: [(&str, &str, &str); 3] = [
            (
                "candor_witness_up",
                "1 if the witness cosigned in its latest round.",
                "gauge",
            ),
            (
                "candor_witness_cosigned_size",
                "The tree size the witness last cosigned, as far as the log knows.",
                "gauge",
            ),
            (
                "candor_witness_consecutive_failures",
                "Failed rounds of the witness since its last cosignature.",
                "gauge",
            ),
        ];
        for (i, (name, help, kind)) in series.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &status {
                let v = match i {
                    0 => u64::from(s.last_error.is_none() && s.last_success.is_some()),
                    1 => s.cosigned_size,
                    _ => s.consecutive_failures,
                };
                let _ = writeln!(
                    out,
                    "{name}{{witness=\"{}\",url=\"{}\"}} {v}",
                    label(&s.name),
                    label(&s.url)
                );
            }
        }
        out
    }
}

/// Policy names for the witnesses: their key names when those are distinct and
/// valid tlog-policy names, else `w0`, `w1`, ….
fn policy_names(endpoints: &[WitnessEndpoint]) -> Vec<(String, VerifierKey)> {
    let names: Vec<String> = endpoints.iter().map(|e| e.key.name().to_string()).collect();
    let usable = names.iter().enumerate().all(|(i, n)| {
        !n.is_empty()
            && n != "none"
            && n != "quorum-group"
            && !n.chars().any(|c| c.is_whitespace() || c.is_control())
            && !names[..i].contains(n)
    });
    endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = if usable {
                names[i].clone()
            } else {
                format!("w{i}")
            };
            (name, e.key.clone())
        })
        .collect()
}

/// Escapes a Prometheus label value (text format 0.0.4).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
                settled = w.round(&t, &store, &shared).await && w.is_witnessed();
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

/// For a log with witnesses, [`Witnessing::settle`]s the receipts a submission
/// got; without witnesses, returns them as they are.
pub async fn settle(
    app: &AppState,
    receipts: Vec<Receipt>,
) -> Result<Result<Vec<Receipt>, Response>, ApiError> {
    match &app.shared.witnessing {
        Some(w) => w.settle(app, receipts).await,
        None => Ok(Ok(receipts)),
    }
}

/// The trust policy for the `/verify` page.
impl AppState {
    /// The C2SP tlog-policy text verifiers of this log should use when it is
    /// configured with witnesses (its key and `--witness-quorum` of the witnesses);
    /// `None` for a log without witnesses. The `/verify` page embeds it.
    pub fn trust_policy_text(&self) -> Option<String> {
        self.shared
            .witnessing
            .as_ref()
            .map(|w| w.policy_text().to_string())
    }
}
