//! A log in this process on the in-memory store, with no HTTP and no clock but the
//! host's: the fixture of the sequencer's unit tests and of the in-process tests of
//! what reads a log (the monitor's audit).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::registry::{Action, Change};
use crate::sequencer::Core;
use crate::state::{
    AppState, Limits, Phase, Published, Reply, Role, Shared, Submission, Validated,
};
use candor_core::entry::{Entry, SignedEntry, samples};
use candor_core::note::SignerKey;
use candor_store::Store;
use candor_store::memory::MemoryStore;

pub const ORIGIN: &str = "example.com/test-log";
pub const COMPANY: &str = "acme.example";

/// A log: its memory store, its key, its one registered company and its sequencer.
pub struct Log {
    pub store: Arc<MemoryStore>,
    pub key: SignerKey,
    pub company: SignerKey,
    pub core: Core,
}

impl Default for Log {
    fn default() -> Log {
        Log::new()
    }
}

impl Log {
    /// A log on a fresh memory store with [`COMPANY`] registered at index 0.
    pub fn new() -> Log {
        let store = Arc::new(MemoryStore::new());
        let key = SignerKey::generate(ORIGIN).expect("log key");
        let company = SignerKey::generate(COMPANY).expect("company key");
        let core = open(&store, &key);
        let mut log = Log {
            store,
            key,
            company,
            core,
        };
        let reg = log.registration();
        assert_eq!(log.submit(vec![vec![reg]]), vec![Ok(vec![0])]);
        log
    }

    /// A second sequencer on the same store (a restart, or a rival writer).
    pub fn reopen(&self) -> Core {
        open(&self.store, &self.key)
    }

    pub fn registration(&self) -> Validated {
        registration(&self.key, &self.company)
    }

    /// The `n`-th distinct entry of the company.
    pub fn entry(&self, n: u64) -> Validated {
        company_entry(&self.company, n)
    }

    /// Sequences one batch of submissions with `self.core` and returns each one's
    /// indices (or the error it got).
    pub fn submit(&mut self, subs: Vec<Vec<Validated>>) -> Vec<Result<Vec<u64>, ApiError>> {
        submit(&mut self.core, subs)
    }

    pub fn published(&self) -> Arc<Published> {
        self.core.shared().published()
    }

    pub fn stored_size(&self) -> u64 {
        self.store.state().expect("state").map_or(0, |s| s.size)
    }
}

/// The log's `company_key` entry registering `company`'s key, signed by `log`.
pub fn registration(log: &SignerKey, company: &SignerKey) -> Validated {
    let vkey = company.verifier();
    let entry = Entry::parse_value(&json!({
        "kind": "company_key",
        "company": company.name(),
        "at": samples::decision_time(),
        "action": "register",
        "verifier_key": vkey.to_string(),
    }))
    .expect("company_key entry");
    let log_vkey = log.verifier();
    let signed =
        SignedEntry::sign(entry, log.signing_key(), log_vkey.key_id()).expect("sign registration");
    let change = Change {
        name: company.name().into(),
        key: vkey,
        action: Action::Register,
    };
    validated(signed, *log_vkey.verifying_key(), Some(change))
}

/// The `n`-th distinct entry of `company`.
pub fn company_entry(company: &SignerKey, n: u64) -> Validated {
    let vkey = company.verifier();
    let signed = SignedEntry::sign(
        samples::load_targeting_decision(company.name(), n),
        company.signing_key(),
        vkey.key_id(),
    )
    .expect("sign entry");
    validated(signed, *vkey.verifying_key(), None)
}

pub fn open(store: &Arc<MemoryStore>, key: &SignerKey) -> Core {
    let store: Arc<dyn Store> = store.clone();
    Core::open(
        store,
        key.clone(),
        ORIGIN.to_string(),
        Arc::new(Metrics::new()),
        candor_core::clock::system(),
    )
    .expect("open the log")
}

pub fn validated(
    signed: SignedEntry,
    key: ed25519_dalek::VerifyingKey,
    change: Option<Change>,
) -> Validated {
    let message = signed.entry.signed_message().expect("signed message");
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&signed.signature)
        .expect("base64 signature");
    Validated {
        entry_hash: candor_core::entry::entry_hash_of_message(&message),
        signature: ed25519_dalek::Signature::from_slice(&sig).expect("64-byte signature"),
        signed,
        message,
        key,
        change,
        line: None,
        verified: false,
    }
}

pub fn submit(core: &mut Core, subs: Vec<Vec<Validated>>) -> Vec<Result<Vec<u64>, ApiError>> {
    let permits = Arc::new(Semaphore::new(10_000));
    let mut waiting = Vec::new();
    let mut batch = Vec::new();
    for items in subs {
        let (reply, rx) = oneshot::channel::<Reply>();
        let n = u32::try_from(items.len()).expect("few items");
        let permit = permits.clone().try_acquire_many_owned(n).expect("permits");
        batch.push(Submission {
            items,
            reply,
            accepted: Instant::now(),
            permit,
        });
        waiting.push(rx);
    }
    if let Some(job) = core.process(batch) {
        job.run();
    }
    waiting
        .into_iter()
        .map(|mut rx| {
            let receipts = rx.try_recv().expect("every submission is answered")?;
            Ok(receipts.iter().map(|r| r.index).collect())
        })
        .collect()
}

/// The HTTP handlers' state for a log of `key` on `store` in `role`, with small limits
/// and a pool nobody drains (submissions over HTTP are not what these tests send).
pub fn app_state(
    store: Arc<dyn Store>,
    key: &SignerKey,
    shared: Arc<Shared>,
    role: Role,
) -> AppState {
    let (pool, _) = mpsc::unbounded_channel();
    AppState {
        origin: key.name().to_string(),
        verifier_key: key.verifier(),
        log_key: key.clone(),
        admin_token: "token".into(),
        store,
        shared,
        metrics: Arc::new(Metrics::new()),
        pool,
        pool_permits: Arc::new(Semaphore::new(1)),
        pool_size: 1,
        phase: watch::channel(Phase::Running).1,
        role: watch::channel(role).1,
        rate_limiter: None,
        limits: Limits {
            max_batch_lines: 10,
            max_body_bytes: 1 << 20,
            max_entry_body_bytes: 1 << 16,
            request_timeout: std::time::Duration::from_secs(5),
        },
    }
}
