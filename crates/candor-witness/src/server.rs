//! The witness's HTTP service (C2SP tlog-witness §"HTTP Interface"), with the
//! submission and monitoring prefixes both at the root:
//!
//! * `POST /add-checkpoint`: cosign a checkpoint (tlog-witness §"add-checkpoint").
//! * `GET /<hex sha256(origin)>/checkpoint`: the latest cosigned checkpoint of an
//!   origin, with the log signature and the witness's cosignature, so monitors
//!   can use the witness as a peer (spec/witness.md §4).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::{Record, StateError, WitnessState};
use candor_core::clock::{self, SharedClock};
use candor_core::cosignature;
use candor_core::note::{KeyType, Note, SignerKey, VerifierKey};
use candor_core::witness_protocol::{
    self as protocol, AddCheckpointRequest, Latest, MAX_REQUEST_BYTES, Rejection, SIZE_CONTENT_TYPE,
};

/// A witness: its cosigning key, the log keys it trusts and its state.
pub struct Witness {
    key: SignerKey,
    cosigner: VerifierKey,
    logs: Vec<VerifierKey>,
    state: WitnessState,
    /// Stamps cosignatures (tlog-cosignature `timestamp`).
    clock: SharedClock,
}

/// Why an add-checkpoint request did not produce a cosignature.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Refused per tlog-witness; carries the status code to answer with.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The state could not be read or durably written: nothing was cosigned.
    #[error("witness state failure: {0}")]
    State(#[from] StateError),
    #[error("cannot cosign: {0}")]
    Cosign(String),
}

/// Errors building a [`Witness`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("log key {0} is not an Ed25519 (type 0x01) signed-note key")]
    LogKeyType(String),
    #[error("log key {0} is listed twice")]
    DuplicateLog(String),
    #[error("no log keys configured: the witness would trust nothing")]
    NoLogs,
}

impl Witness {
    /// A witness cosigning with `key` for checkpoints signed by one of `logs`.
    pub fn new(
        key: SignerKey,
        logs: Vec<VerifierKey>,
        state: WitnessState,
    ) -> Result<Witness, ConfigError> {
        if logs.is_empty() {
            return Err(ConfigError::NoLogs);
        }
        for (i, k) in logs.iter().enumerate() {
            if k.key_type() != KeyType::Ed25519 {
                return Err(ConfigError::LogKeyType(k.to_string()));
            }
            if logs[..i]
                .iter()
                .any(|o| o.name() == k.name() && o.key_id() == k.key_id())
            {
                return Err(ConfigError::DuplicateLog(k.to_string()));
            }
        }
        let cosigner = cosignature::witness_verifier_key(&key);
        Ok(Witness {
            key,
            cosigner,
            logs,
            state,
            clock: clock::system(),
        })
    }

    /// The same witness stamping its cosignatures with `clock`'s time.
    pub fn with_clock(mut self, clock: SharedClock) -> Witness {
        self.clock = clock;
        self
    }

    /// The witness's cosignature verifier key (signed-note type 0x04).
    pub fn cosigner(&self) -> &VerifierKey {
        &self.cosigner
    }

    /// Handles one add-checkpoint body (blocking: it fsyncs). On success returns
    /// the response body, the cosignature line(s). `now` is the POSIX time put in
    /// the cosignature (tlog-cosignature `timestamp`).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, AddError> {
        let req =
            AddCheckpointRequest::parse(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let verified = protocol::verify_log_signature(&req.checkpoint, &self.logs)?;
        let cp = &verified.checkpoint;
        let outcome = self.state.check_and_update(&cp.origin, |current| {
            protocol::check_consistency(req.old_size, &req.proof, cp, current.map(|r| r.latest))?;
            let sig = cosignature::cosign(&verified.text, now, &self.key)
                .map_err(|e| AddError::Cosign(e.to_string()))?;
            // What the monitoring path serves: the log's verified signature(s)
            // and this witness's cosignature, not unverified third-party lines.
            let mut signatures = verified.log_signatures.clone();
            signatures.push(sig.clone());
            let note = Note {
                text: verified.text.clone(),
                signatures,
            }
            .to_bytes();
            let record = Record {
                latest: Latest {
                    size: cp.size,
                    root: cp.root,
                },
                note,
            };
            Ok::<_, AddError>((record, sig))
        })?;
        let outcome = match outcome {
            Ok(sig) => sig,
            Err(AddError::Rejected(r)) if r.is_evidence() => {
                // The log signature verified: keep the request as evidence.
                match self.state.save_evidence(&cp.origin, body) {
                    Ok(Some(path)) => {
                        tracing::warn!(origin = %cp.origin, reason = %r, evidence = %path.display(), "log misbehaviour: kept the request as evidence")
                    }
                    Ok(None) => {
                        tracing::warn!(origin = %cp.origin, reason = %r, "log misbehaviour (evidence cap reached)")
                    }
                    Err(e) => {
                        tracing::error!(origin = %cp.origin, reason = %r, error = %e, "log misbehaviour; could not keep the evidence")
                    }
                }
                return Err(AddError::Rejected(r));
            }
            Err(e) => return Err(e),
        };
        tracing::info!(origin = %cp.origin, size = cp.size, "cosigned checkpoint");
        Ok(protocol::format_cosignatures(&[outcome]))
    }

    /// The latest cosigned note for the origin whose hex SHA-256 is `id`.
    pub fn latest_by_id(&self, id: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.state.latest_by_id(id)
    }
}

/// The axum router of a witness.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(protocol::ADD_CHECKPOINT_PATH, post(add_checkpoint))
        .route("/{id}/checkpoint", get(monitoring_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(witness)
}

/// Serves `witness` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The same accept loop as the log's: a slow or silent client is cut off after
    // the header time-out instead of holding a connection forever.
    let timeouts = candor_net::listener::Timeouts {
        first_byte: FIRST_BYTE_TIMEOUT,
        idle: IDLE_TIMEOUT,
    };
    candor_net::listener::serve(listener, router(witness), timeouts, shutdown).await;
    Ok(())
}

/// Time a new connection has to say anything.
const FIRST_BYTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Keep-alive idle time, and the time a request's headers may take.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn text(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let worker = w.clone();
    // A clock before 1970 is a broken host; 0 still yields a valid cosignature.
    let now = w.clock.now_unix();
    let result = tokio::task::spawn_blocking(move || worker.add_checkpoint(&body, now)).await;
    match result {
        Ok(Ok(lines)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        )
            .into_response(),
        Ok(Err(AddError::Rejected(r))) if r.conflict_size().is_some() => {
            let latest = r.conflict_size().unwrap_or_default();
            tracing::info!(latest, reason = %r, "add-checkpoint conflict");
            (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                protocol::format_size_body(latest),
            )
                .into_response()
        }
        Ok(Err(AddError::Rejected(r))) => {
            tracing::info!(status = r.status(), reason = %r, "add-checkpoint refused");
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, r.to_string())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "add-checkpoint failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "add-checkpoint worker panicked");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_string(),
            )
        }
    }
}

async fn monitoring_checkpoint(State(w): State<Arc<Witness>>, Path(id): Path<String>) -> Response {
    let worker = w.clone();
    match tokio::task::spawn_blocking(move || worker.latest_by_id(&id)).await {
        Ok(Ok(Some(note))) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            note,
        )
            .into_response(),
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            "no checkpoint cosigned for this origin".to_string(),
        ),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error".to_string(),
        ),
    }
}
