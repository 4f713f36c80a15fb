//! The log side of C2SP tlog-witness: asks witnesses to cosign a freshly signed
//! checkpoint and collects their cosignatures.
//!
//! The sequencer calls [`WitnessClient::cosign`] after each batch with the
//! log-signed checkpoint and a function producing RFC 9162 consistency proofs
//! from its tree. For every witness the client remembers the size it last
//! cosigned (starting from 0, so a restarted log learns it from the first 409),
//! sends `old <that size>` with a proof from there, and follows a 409's size
//! hint (tlog-witness: "If a client doesn't have information on the latest
//! cosigned checkpoint, it MAY initially make a request with a old size of
//! zero to obtain it"). Witnesses are asked concurrently, each under a time
//! limit, so one slow or dead witness delays a round by at most that limit.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use candor_core::checkpoint::Checkpoint;
use candor_core::cosignature;
use candor_core::hash::Hash;
use candor_core::note::{KeyType, Note, NoteSignature, VerifierKey};
use candor_core::trust_policy::{Policy, PolicyError};
use candor_core::witness_protocol::{self as protocol, ADD_CHECKPOINT_PATH, AddCheckpointRequest};

/// How many 409 size hints one witness may send within one round before the
/// client gives up on it for that round.
const MAX_HINTS: usize = 3;

/// One witness the log asks: `--witness VKEY=URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessEndpoint {
    /// The witness's cosignature verifier key (type 0x04).
    pub key: VerifierKey,
    /// Its submission prefix, e.g. `http://127.0.0.1:8091` (no trailing slash needed).
    pub url: String,
}

impl FromStr for WitnessEndpoint {
    type Err = ClientError;

    /// Parses `VKEY=URL`. A vkey has no `=` outside its base64 padding, so the
    /// split is at the first `=` followed by `http://` or `https://`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| ClientError::Config(format!("--witness {s:?}: {why}"));
        let split = ["=http://", "=https://"]
            .iter()
            .filter_map(|sep| s.find(sep))
            .min()
            .ok_or_else(|| bad("expected VKEY=URL with an http:// or https:// URL".into()))?;
        let key: VerifierKey = s[..split]
            .parse()
            .map_err(|e| bad(format!("invalid witness vkey: {e}")))?;
        if key.key_type() != KeyType::Cosignature {
            return Err(bad(
                "the vkey must be a cosignature key (type 0x04); `candor witness vkey` prints it"
                    .into(),
            ));
        }
        Ok(WitnessEndpoint {
            key,
            url: s[split + 1..].trim_end_matches('/').to_string(),
        })
    }
}

/// Errors of the witness client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("witness configuration: {0}")]
    Config(String),
    #[error("the checkpoint to cosign is malformed: {0}")]
    Checkpoint(String),
}

/// What the log knows about one witness, for `/metrics` and `/healthz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessStatus {
    /// The witness's key name.
    pub name: String,
    pub url: String,
    /// The size this witness last cosigned (as far as the log knows).
    pub cosigned_size: u64,
    /// When it last returned a valid cosignature.
    pub last_success: Option<SystemTime>,
    /// Why the last request failed, if it did.
    pub last_error: Option<String>,
    /// Failed rounds since the last success.
    pub consecutive_failures: u64,
}

/// The result of one cosigning round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigned {
    /// The checkpoint note with every valid cosignature collected this round
    /// appended (the log's signature first).
    pub note: Vec<u8>,
    /// Names of the witnesses that cosigned.
    pub cosigners: Vec<String>,
    /// Whether at least `quorum` witnesses cosigned.
    pub quorum_met: bool,
}

/// A consistency-proof source: `prove(old, new)` returns the RFC 9162 proof
/// from size `old` to size `new` of the log's tree.
pub type Prover<'a> = &'a (dyn Fn(u64, u64) -> Result<Vec<Hash>, String> + Sync);

/// Asks a fixed set of witnesses for cosignatures; see the module docs.
pub struct WitnessClient {
    endpoints: Vec<WitnessEndpoint>,
    quorum: usize,
    timeout: Duration,
    http: reqwest::Client,
    status: Mutex<Vec<WitnessStatus>>,
}

impl WitnessClient {
    /// A client for `endpoints` requiring `quorum` cosignatures, each request
    /// limited to `timeout`.
    pub fn new(
        endpoints: Vec<WitnessEndpoint>,
        quorum: usize,
        timeout: Duration,
    ) -> Result<WitnessClient, ClientError> {
        if quorum > endpoints.len() {
            return Err(ClientError::Config(format!(
                "--witness-quorum {quorum} is larger than the number of witnesses ({})",
                endpoints.len()
            )));
        }
        if quorum == 0 && !endpoints.is_empty() {
            return Err(ClientError::Config(
                "--witness-quorum must be at least 1 when witnesses are configured".into(),
            ));
        }
        for (i, e) in endpoints.iter().enumerate() {
            if endpoints[..i]
                .iter()
                .any(|o| o.key.verifying_key() == e.key.verifying_key())
            {
                return Err(ClientError::Config(format!(
                    "witness key {} is listed twice",
                    e.key
                )));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // Drop idle connections before a server does (Candor: 60 s), so that
            // a request never races the server closing its connection.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Config(format!("building the HTTP client: {e}")))?;
        let status = endpoints
            .iter()
            .map(|e| WitnessStatus {
                name: e.key.name().to_string(),
                url: e.url.clone(),
                cosigned_size: 0,
                last_success: None,
                last_error: None,
                consecutive_failures: 0,
            })
            .collect();
        Ok(WitnessClient {
            endpoints,
            quorum,
            timeout,
            http,
            status: Mutex::new(status),
        })
    }

    /// The number of cosignatures a checkpoint needs.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The configured witnesses.
    pub fn endpoints(&self) -> &[WitnessEndpoint] {
        &self.endpoints
    }

    /// The trust policy this configuration implies: `log_key` and `quorum` of
    /// the witnesses (C2SP tlog-policy), as verifiers should use it.
    pub fn policy(&self, log_key: &VerifierKey) -> Result<Policy, PolicyError> {
        let ws = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("w{i}"), e.key.clone()))
            .collect();
        Policy::threshold(log_key.clone(), ws, self.quorum)
    }

    /// A snapshot of every witness's status.
    pub fn status(&self) -> Vec<WitnessStatus> {
        // A poisoned lock still holds complete values (updates are single assignments).
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks every witness, concurrently, to cosign `note` (a checkpoint note
    /// signed by the log). Returns the note with the cosignatures obtained.
    pub async fn cosign(&self, note: &[u8], prove: Prover<'_>) -> Result<Cosigned, ClientError> {
        let mut parsed = Note::parse(note).map_err(|e| ClientError::Checkpoint(e.to_string()))?;
        let cp =
            Checkpoint::parse(&parsed.text).map_err(|e| ClientError::Checkpoint(e.to_string()))?;
        let asks = (0..self.endpoints.len()).map(|i| self.ask(i, note, &parsed.text, &cp, prove));
        let results = futures::future::join_all(asks).await;

        let mut cosigners = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            let ep = &self.endpoints[i];
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let st = &mut status[i];
            match r {
                Ok(sig) => {
                    st.cosigned_size = cp.size;
                    st.last_success = Some(SystemTime::now());
                    st.last_error = None;
                    st.consecutive_failures = 0;
                    // Replace any earlier line by the same witness key.
                    parsed
                        .signatures
                        .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
                    parsed.signatures.push(sig);
                    cosigners.push(ep.key.name().to_string());
                }
                Err(Failure { hint, reason }) => {
                    if let Some(size) = hint {
                        st.cosigned_size = size;
                    }
                    tracing::warn!(witness = %ep.key.name(), url = %ep.url, %reason, "witness did not cosign");
                    st.last_error = Some(reason);
                    st.consecutive_failures += 1;
                }
            }
        }
        let quorum_met = cosigners.len() >= self.quorum;
        Ok(Cosigned {
            note: parsed.to_bytes(),
            cosigners,
            quorum_met,
        })
    }

    /// One witness, one round: POST add-checkpoint, following 409 hints.
    async fn ask(
        &self,
        i: usize,
        note: &[u8],
        text: &str,
        cp: &Checkpoint,
        prove: Prover<'_>,
    ) -> Result<NoteSignature, Failure> {
        let ep = &self.endpoints[i];
        let mut old = {
            let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status[i].cosigned_size
        };
        let mut learned = None;
        let fail = |learned: Option<u64>, reason: String| Failure {
            hint: learned,
            reason,
        };
        for _ in 0..=MAX_HINTS {
            if old > cp.size {
                return Err(fail(
                    learned,
                    format!(
                        "the witness has cosigned size {old}, larger than this checkpoint's size {}: \
                         the log lost entries or was restored from an old backup",
                        cp.size
                    ),
                ));
            }
            let proof = if old == 0 || old == cp.size {
                Vec::new()
            } else {
                prove(old, cp.size).map_err(|e| {
                    fail(
                        learned,
                        format!("consistency proof {old}->{}: {e}", cp.size),
                    )
                })?
            };
            let body = AddCheckpointRequest {
                old_size: old,
                proof,
                checkpoint: note.to_vec(),
            }
            .to_bytes();
            let url = format!("{}{ADD_CHECKPOINT_PATH}", ep.url);
            let send = self.http.post(&url).body(body).send();
            let resp = match tokio::time::timeout(self.timeout, send).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(fail(learned, format!("request failed: {e}"))),
                Err(_) => return Err(fail(learned, "timed out".into())),
            };
            let status = resp.status().as_u16();
            let bytes = match tokio::time::timeout(self.timeout, resp.bytes()).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(fail(learned, format!("reading the response: {e}"))),
                Err(_) => return Err(fail(learned, "timed out reading the response".into())),
            };
            match status {
                200 => return verify_response(text, &bytes, &ep.key).map_err(|r| fail(learned, r)),
                409 => {
                    let size = protocol::parse_size_body(&bytes)
                        .map_err(|e| fail(learned, format!("409 with a bad body: {e}")))?;
                    if size == old {
                        // Same size, different root: the witness holds a
                        // checkpoint this log's tree contradicts.
                        return Err(fail(
                            Some(size),
                            format!(
                                "witness refuses size {old}: it cosigned a different root at that size (split view?)"
                            ),
                        ));
                    }
                    learned = Some(size);
                    old = size;
                }
                s => {
                    let msg = String::from_utf8_lossy(&bytes);
                    return Err(fail(learned, format!("HTTP {s}: {}", msg.trim())));
                }
            }
        }
        Err(fail(learned, "too many 409 size hints".into()))
    }
}

struct Failure {
    hint: Option<u64>,
    reason: String,
}

/// Checks a 200 body: signature lines of which one is a valid cosignature by
/// `key` over `text` (lines from other keys are ignored, as tlog-witness asks).
fn verify_response(text: &str, body: &[u8], key: &VerifierKey) -> Result<NoteSignature, String> {
    // tlog-witness: "the client MAY concatenate it to the checkpoint" and parse a note.
    let mut joined = Vec::with_capacity(text.len() + 1 + body.len());
    joined.extend_from_slice(text.as_bytes());
    joined.push(b'\n');
    joined.extend_from_slice(body);
    let note = Note::parse(&joined).map_err(|e| format!("malformed cosignature response: {e}"))?;
    let sig = note
        .signatures
        .into_iter()
        .find(|s| key.matches(s))
        .ok_or_else(|| "the response has no signature by the witness's key".to_string())?;
    cosignature::verify_cosignature(text, &sig, key)
        .map_err(|e| format!("the witness's cosignature does not verify: {e}"))?;
    Ok(sig)
}
