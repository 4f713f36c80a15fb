//! A small async client for the log's HTTP API (`spec/api.md`).
//!
//! Shared by `candor publish`, `candor verify`, `candor company` and the other
//! tools that talk to a log. It knows the routes and bodies, turns the log's
//! JSON errors (`{"error": CODE, "detail": …}`) into [`ClientError`], and says
//! which failures are transient ([`ClientError::is_transient`]) so callers can
//! retry them with [`retry`]. Submissions are idempotent on the log (an
//! identical entry gets its existing index back), so retrying them is safe.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use candor_core::entry::SignedEntry;
use candor_core::hash::Hash;
use candor_core::receipt::Receipt;

/// What can go wrong talking to a log.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad log URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("could not reach the log at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("request to {url} timed out")]
    Timeout { url: String },
    #[error("the log answered {status} to {url}: {code}: {detail}")]
    Status {
        url: String,
        status: u16,
        code: String,
        detail: String,
        /// The 1-based NDJSON line the log blames, for a batch submission.
        line: Option<u64>,
        retry_after: Option<Duration>,
    },
    #[error("the log's answer from {url} is malformed: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// Failures worth retrying: the log could not be reached, timed out, is
    /// rate limiting (429) or temporarily unavailable (502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
            ClientError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The delay the log asked for with `Retry-After` (RFC 9110 §10.2.3).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The 1-based request line an NDJSON submission was refused for
    /// (`api.md` §4: a batch is all-or-nothing and the error names the line).
    pub fn line(&self) -> Option<u64> {
        match self {
            ClientError::Status { line, .. } => *line,
            _ => None,
        }
    }

    /// The log's error code (`api.md` §6), when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the log answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET /v1/log`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct LogInfo {
    pub origin: String,
    pub verifier_key: String,
    pub size: u64,
    /// Base64 root of the published checkpoint.
    pub root: String,
    /// The whole signed checkpoint note.
    pub checkpoint: String,
}

/// `GET /v1/entries/{index}` and `GET /v1/entries?leaf_hash=HEX`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EntryInfo {
    pub index: u64,
    /// Base64 of the leaf bytes.
    pub leaf: String,
    /// Hex leaf hash.
    pub leaf_hash: String,
    pub entry: serde_json::Value,
    pub key_id: String,
    pub signature: String,
    pub logged_at: String,
}

/// One key in a company's key history (`GET /v1/companies/{name}`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct CompanyKeyInfo {
    pub verifier_key: String,
    pub key_id: String,
    /// Index of the `company_key` entry that registered the key.
    pub registered_index: u64,
    /// Index of the `company_key` entry that revoked it, if any.
    #[serde(default)]
    pub revoked_index: Option<u64>,
}

/// `GET /v1/companies/{name}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CompanyInfo {
    pub name: String,
    pub keys: Vec<CompanyKeyInfo>,
}

/// Register or revoke (`POST /v1/companies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompanyAction {
    Register,
    Revoke,
}

#[derive(Serialize)]
struct CompanyRequest<'a> {
    action: CompanyAction,
    name: &'a str,
    verifier_key: &'a str,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    line: Option<u64>,
}

#[derive(Deserialize)]
struct ProofBody {
    proof: Vec<String>,
}

/// A client for one log.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the log whose API is at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Client, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = base.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("the log URL must not carry a query or fragment"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("candor/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            // Drop idle connections before a server does (Candor: 60 s), so that
            // a request never races the server closing its connection.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Client {
            http,
            base: trimmed.to_string(),
            token: None,
        })
    }

    /// Sends `token` as a bearer token (the admin routes).
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.trim().to_string());
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and turns any non-2xx answer into [`ClientError::Status`].
    async fn send(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| transport_error(url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.unwrap_or_default();
        let (code, detail, line) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error, e.detail, e.line),
            Err(_) => (
                status.canonical_reason().unwrap_or("error").to_string(),
                String::from_utf8_lossy(&body).chars().take(200).collect(),
                None,
            ),
        };
        Err(ClientError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            code,
            detail,
            line,
            retry_after,
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.send(&url, self.http.get(&url)).await?;
        let body = resp.bytes().await.map_err(|e| transport_error(&url, &e))?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// `GET /v1/log`.
    pub async fn log_info(&self) -> Result<LogInfo, ClientError> {
        self.get_json("/v1/log").await
    }

    /// `GET /checkpoint`: the latest signed checkpoint note, unverified.
    pub async fn checkpoint(&self) -> Result<Vec<u8>, ClientError> {
        let url = self.url("/checkpoint");
        let resp = self.send(&url, self.http.get(&url)).await?;
        let body = resp.bytes().await.map_err(|e| transport_error(&url, &e))?;
        Ok(body.to_vec())
    }

    /// `POST /v1/entries` with one entry (JSON).
    pub async fn submit(&self, entry: &SignedEntry) -> Result<Receipt, ClientError> {
        let url = self.url("/v1/entries");
        let body = entry.submission_bytes().map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: format!("could not encode the entry: {e}"),
        })?;
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.send(&url, request).await?;
        let body = resp.bytes().await.map_err(|e| transport_error(&url, &e))?;
        Receipt::from_json(&body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// `POST /v1/entries` with many entries (`application/x-ndjson`): one
    /// receipt per entry, in the same order. The log takes all or none; when
    /// it refuses one entry the error's [`ClientError::line`] names it.
    pub async fn submit_batch(&self, entries: &[SignedEntry]) -> Result<Vec<Receipt>, ClientError> {
        let url = self.url("/v1/entries");
        let mut body = Vec::with_capacity(entries.len() * 1024);
        for e in entries {
            body.extend(e.submission_bytes().map_err(|e| ClientError::Decode {
                url: url.clone(),
                reason: format!("could not encode an entry: {e}"),
            })?);
            body.push(b'\n');
        }
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .body(body);
        let resp = self.send(&url, req).await?;
        let body = resp.bytes().await.map_err(|e| transport_error(&url, &e))?;
        let outcomes = parse_receipts(&body).map_err(|reason| ClientError::Decode {
            url: url.clone(),
            reason,
        })?;
        if outcomes.len() != entries.len() {
            return Err(ClientError::Decode {
                url,
                reason: format!(
                    "sent {} entries but got {} answers",
                    entries.len(),
                    outcomes.len()
                ),
            });
        }
        Ok(outcomes)
    }

    /// `GET /v1/receipts/{index}`: a fresh receipt against the latest checkpoint.
    pub async fn receipt(&self, index: u64) -> Result<Receipt, ClientError> {
        self.get_json(&format!("/v1/receipts/{index}")).await
    }

    /// `GET /v1/entries/{index}`.
    pub async fn entry(&self, index: u64) -> Result<EntryInfo, ClientError> {
        self.get_json(&format!("/v1/entries/{index}")).await
    }

    /// `GET /v1/entries?leaf_hash=HEX`.
    pub async fn entry_by_leaf_hash(&self, leaf_hash: &Hash) -> Result<EntryInfo, ClientError> {
        self.get_json(&format!("/v1/entries?leaf_hash={}", leaf_hash.to_hex()))
            .await
    }

    /// `GET /v1/proof/consistency?old=M&new=N`.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ClientError> {
        let path = format!("/v1/proof/consistency?old={old}&new={new}");
        let body: ProofBody = self.get_json(&path).await?;
        decode_hashes(&self.url(&path), &body.proof)
    }

    /// `GET /v1/proof/inclusion?index=I&size=N`.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ClientError> {
        let path = format!("/v1/proof/inclusion?index={index}&size={size}");
        let body: ProofBody = self.get_json(&path).await?;
        decode_hashes(&self.url(&path), &body.proof)
    }

    /// `GET /v1/companies/{name}`: the company's key history.
    pub async fn company(&self, name: &str) -> Result<CompanyInfo, ClientError> {
        if name.is_empty() || name.contains(['/', '?', '#', '%']) {
            return Err(ClientError::BadUrl {
                url: name.to_string(),
                reason: "not a company name".into(),
            });
        }
        self.get_json(&format!("/v1/companies/{name}")).await
    }

    /// `POST /v1/companies` (admin token): registers or revokes a key; the
    /// answer is the receipt of the resulting `company_key` entry.
    pub async fn company_key(
        &self,
        action: CompanyAction,
        name: &str,
        verifier_key: &str,
    ) -> Result<Receipt, ClientError> {
        let url = self.url("/v1/companies");
        let req = self.http.post(&url).json(&CompanyRequest {
            action,
            name,
            verifier_key,
        });
        let resp = self.send(&url, req).await?;
        let body = resp.bytes().await.map_err(|e| transport_error(&url, &e))?;
        Receipt::from_json(&body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }
}

fn transport_error(url: &str, e: &reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout {
            url: url.to_string(),
        }
    } else {
        // Walk the source chain: reqwest's own message ("error sending
        // request") hides the cause a person needs ("connection refused").
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        ClientError::Connect {
            url: url.to_string(),
            reason,
        }
    }
}

fn decode_hashes(url: &str, hashes: &[String]) -> Result<Vec<Hash>, ClientError> {
    hashes
        .iter()
        .map(|h| {
            Hash::from_base64(h).ok_or_else(|| ClientError::Decode {
                url: url.to_string(),
                reason: format!("{h:?} is not a base64 hash"),
            })
        })
        .collect()
}

/// Parses an NDJSON submission answer: one receipt a line.
fn parse_receipts(body: &[u8]) -> Result<Vec<Receipt>, String> {
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(Receipt::from_json(line).map_err(|e| format!("answer line {}: {e}", i + 1))?);
    }
    Ok(out)
}

/// How [`retry`] backs off.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 8,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): exponential with
    /// "full jitter" so that many clients do not retry in lock step, or what
    /// the log asked for with `Retry-After` when that is longer.
    pub fn delay(&self, attempt: u32, err: &ClientError) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        // A failed random draw only loses the jitter, not the back-off.
        let frac = getrandom::u32()
            .map(|r| r as f64 / u32::MAX as f64)
            .unwrap_or(1.0);
        let jittered = exp.mul_f64(0.5 + 0.5 * frac);
        match err.retry_after() {
            Some(ra) => ra.max(jittered).min(self.max.max(ra)),
            None => jittered,
        }
    }
}

/// Runs `op` until it succeeds, fails permanently, or `policy.retries` retries
/// are used up. `on_retry` hears about every transient failure before the wait.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    mut on_retry: impl FnMut(&ClientError, Duration),
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < policy.retries => {
                let wait = policy.delay(attempt, &e);
                on_retry(&e, wait);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> ClientError {
        ClientError::Status {
            url: "u".into(),
            status: code,
            code: "x".into(),
            detail: String::new(),
            line: None,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn transient_statuses() {
        for s in [429, 502, 503, 504] {
            assert!(status(s, None).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 415, 422, 500] {
            assert!(!status(s, None).is_transient(), "{s}");
        }
        assert!(
            ClientError::Connect {
                url: "u".into(),
                reason: "refused".into()
            }
            .is_transient()
        );
    }

    #[test]
    fn delay_honours_retry_after_and_caps() {
        let p = RetryPolicy {
            retries: 3,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert!(p.delay(0, &status(429, Some(5))) >= Duration::from_secs(5));
        for attempt in 0..40 {
            assert!(p.delay(attempt, &status(503, None)) <= Duration::from_secs(2));
        }
        assert!(p.delay(0, &status(503, None)) >= Duration::from_millis(50));
    }

    #[test]
    fn new_rejects_bad_urls() {
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
        assert!(Client::new("http://x/?q=1").is_err());
        assert_eq!(
            Client::new("http://x:1/").map(|c| c.base).ok(),
            Some("http://x:1".into())
        );
    }

    #[test]
    fn receipts_parse() {
        assert_eq!(parse_receipts(b"\n \n").map(|r| r.len()), Ok(0));
        let err = parse_receipts(b"{\"log\":\"x\"}\n").expect_err("incomplete receipt");
        assert!(err.starts_with("answer line 1:"), "{err}");
        assert!(parse_receipts(b"{not json}\n").is_err());
    }

    #[tokio::test]
    async fn retry_stops_on_permanent_and_after_budget() {
        let p = RetryPolicy {
            retries: 2,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let mut calls = 0;
        let r: Result<(), _> = retry(
            &p,
            |_, _| {},
            || {
                calls += 1;
                async { Err(status(503, None)) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = retry(
            &p,
            |_, _| {},
            || {
                calls += 1;
                async { Err(status(422, None)) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
