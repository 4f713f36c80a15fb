//! The witnessing status the sequencer, the cosigning task (`server::witnessing`), the
//! follower and the HTTP handlers share: the latest signed checkpoint, whether the
//! published one is witnessed, and the per-witness and per-round figures `/healthz` and
//! `/metrics` report.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Published;
use candor_core::note::VerifierKey;
use candor_core::trust_policy::Policy;
use candor_net::witness_client::{ClientError, WitnessClient, WitnessEndpoint};

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
pub(crate) struct Witnessed {
    pub(crate) size: u64,
    pub(crate) witnessed: bool,
}

/// The witnessing state shared by the sequencer, the cosigning task and the handlers.
pub struct Witnessing {
    pub(crate) client: WitnessClient,
    pub(crate) policy: Policy,
    pub(crate) policy_text: String,
    pub(crate) retry: Duration,
    pub(crate) wait: Duration,
    /// The latest checkpoint the log signed (for its whole durable tree).
    pub(crate) signed: watch::Sender<Option<Arc<Published>>>,
    /// The published checkpoint, as far as waiters are concerned.
    pub(crate) witnessed: watch::Sender<Witnessed>,
    /// Cosignatures on the published checkpoint.
    pub(crate) published_cosigners: AtomicUsize,
    /// The last round did not reach the quorum (or could not store its result).
    pub(crate) degraded: AtomicBool,
    pub(crate) rounds_quorum: AtomicU64,
    pub(crate) rounds_failed: AtomicU64,
}

/// Why witnessing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WitnessingError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("building the trust policy: {0}")]
    Policy(#[from] candor_core::trust_policy::PolicyError),
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

    /// Records a round that did not reach the quorum (or could not store its result).
    pub(crate) fn fail_round(&self) {
        self.rounds_failed.fetch_add(1, Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
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
