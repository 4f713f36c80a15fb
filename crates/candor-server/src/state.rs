//! The state the server's modules share: the published checkpoint and registry
//! ([`Shared`]), what the HTTP handlers hold ([`AppState`]), a submission on its way to
//! the sequencer and the receipts it gets back, and the witnessing status
//! ([`witnessed::Witnessing`]). It depends on none of the modules that use it
//! (`routes`, `sequencer`, `witnessing`, `follower`, `publish`), so they form no cycle.

pub mod witnessed;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::error::ApiError;
use super::metrics::Metrics;
use super::ratelimit::RateLimiter;
use super::registry::{Change, Registry};
use candor_core::checkpoint::Checkpoint;
use candor_core::clock::SharedClock;
use candor_core::entry::SignedEntry;
use candor_core::hash::Hash;
use candor_core::note::{SignerKey, VerifierKey};
use candor_store::Store;
pub use witnessed::Witnessing;

/// The inclusion of the registration of the key that signed an entry, in the same
/// checkpoint as the entry's receipt (spec/receipts.md §1, `company_key`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompanyKeyProof {
    pub index: u64,
    /// base64 of the registration entry's leaf bytes.
    pub leaf: String,
    /// base64 hashes of its RFC 9162 inclusion proof.
    pub proof: Vec<String>,
}

/// A receipt as the log returns it (spec/receipts.md §1). Members are declared in
/// their RFC 8785 order, so the canonical writer of NDJSON answers need not move them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// Shared by every receipt of a batch signed with the same key: it is the same
    /// proof, and copying its strings per receipt was a measurable cost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_key: Option<Arc<CompanyKeyProof>>,
    pub index: u64,
    /// base64 of the leaf bytes.
    pub leaf: String,
    /// hex of the RFC 6962 leaf hash.
    pub leaf_hash: String,
    pub log: String,
    /// `c2sp.org/tlog-proof@v1` text.
    pub tlog_proof: String,
}

/// One entry, checked before it enters the pool.
#[derive(Debug, Clone)]
pub struct Validated {
    pub signed: SignedEntry,
    pub entry_hash: Hash,
    /// `candor-entry/v1\n ‖ JCS(entry)`: what the signature covers.
    pub message: Vec<u8>,
    pub signature: Signature,
    pub key: VerifyingKey,
    /// For `company_key` entries made by the log: the registry change they carry.
    pub change: Option<Change>,
    /// 1-based NDJSON line, for error messages.
    pub line: Option<usize>,
    /// The signature was verified already (with its request's other entries, by the
    /// HTTP handler: [`verify_submission`]); the sequencer verifies only the others.
    pub verified: bool,
}

/// What a submitter waits for.
pub type Reply = Result<Vec<Receipt>, ApiError>;

/// One request's entries, sequenced all-or-nothing.
pub struct Submission {
    pub items: Vec<Validated>,
    pub reply: oneshot::Sender<Reply>,
    pub accepted: Instant,
    /// Pool permits, one per entry; released when the submission is answered.
    pub permit: OwnedSemaphorePermit,
}

/// The latest signed checkpoint, as served.
#[derive(Debug, Clone)]
pub struct Published {
    /// The whole signed note.
    pub note: Arc<Vec<u8>>,
    pub checkpoint: Checkpoint,
}

/// State the sequencer publishes for the HTTP handlers.
pub struct Shared {
    pub published: RwLock<Arc<Published>>,
    pub registry: RwLock<Arc<Registry>>,
    pub metrics: Arc<Metrics>,
    /// Set when the log publishes only witnessed checkpoints (`--witness`).
    pub witnessing: Option<Arc<Witnessing>>,
    /// The clock `logged_at` and company_key times are read from.
    pub clock: SharedClock,
}

impl Shared {
    /// The latest published checkpoint.
    pub fn published(&self) -> Arc<Published> {
        // A poisoned lock still holds a fully written Arc (writes are one assignment).
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The registry as of the latest sequenced batch.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// State for a log whose latest checkpoint is `published`: the sequencer's, and
    /// the one read-only front ends and standbys follow the store with (a standby's
    /// sequencer adopts it on promotion, `sequencer::Core::open_shared`).
    pub fn new(
        published: Published,
        registry: Registry,
        metrics: Arc<Metrics>,
        witnessing: Option<Arc<Witnessing>>,
        clock: SharedClock,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            published: RwLock::new(Arc::new(published.clone())),
            registry: RwLock::new(Arc::new(registry)),
            metrics,
            witnessing,
            clock,
        });
        shared.publish(published);
        shared
    }

    pub(crate) fn publish(&self, p: Published) {
        let mut cur = self.published.write().unwrap_or_else(|p| p.into_inner());
        // Never go back to a smaller tree (the sequencer's recovery and the
        // witnessing task may publish concurrently).
        if p.checkpoint.size < cur.checkpoint.size {
            return;
        }
        self.metrics
            .tree_size
            .store(p.checkpoint.size, Ordering::Relaxed);
        *cur = Arc::new(p);
    }

    /// Publishes a cosigned checkpoint that is already durable in the store.
    pub(crate) fn publish_witnessed(&self, p: Published) {
        self.publish(p);
    }

    pub(crate) fn publish_registry(&self, r: Registry) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }
}

/// Lifecycle of the sequencer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking submissions.
    Running,
    /// Shutdown requested: finish the batch in hand, refuse the rest with 503.
    Draining,
    /// The HTTP server has stopped: refuse what is left and exit.
    Finished,
}

/// What a front end does with submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It is the log's sequencer.
    Sequencer,
    /// It waits for the sequencer lock; submissions get 503 until it holds it.
    Standby,
    /// `--read-only`: submissions get 405.
    ReadOnly,
}

impl Role {
    /// The name `/healthz` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sequencer => "sequencer",
            Role::Standby => "standby",
            Role::ReadOnly => "read_only",
        }
    }
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_batch_lines: usize,
    pub max_body_bytes: usize,
    pub max_entry_body_bytes: usize,
    pub request_timeout: Duration,
}

/// Everything the handlers share.
pub struct AppState {
    pub origin: String,
    pub verifier_key: VerifierKey,
    /// Signs `company_key` entries (spec/entries.md: they are signed by the log).
    pub log_key: SignerKey,
    pub admin_token: String,
    pub store: Arc<dyn Store>,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub pool: mpsc::UnboundedSender<Submission>,
    pub pool_permits: Arc<Semaphore>,
    pub pool_size: usize,
    pub phase: watch::Receiver<Phase>,
    /// Whether this front end sequences (see [`Role`]).
    pub role: watch::Receiver<Role>,
    pub rate_limiter: Option<RateLimiter>,
    pub limits: Limits,
}

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
