//! A read-only C2SP tlog-tiles client: `GET <prefix>/checkpoint`,
//! `GET <prefix>/tile/<L>/<N>[.p/<W>]`, `GET <prefix>/tile/entries/<N>[.p/<W>]`,
//! plus the tlog-witness monitoring path of peers. Nothing else, so any tlog-tiles
//! log (a static mirror or a CDN included) can be monitored.

use std::time::Duration;

/// Why a fetch failed. All of these mean "could not check", not "the log misbehaved".
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("GET {url} failed: {message}")]
    Network { url: String, message: String },
    #[error("GET {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

impl ClientError {
    /// True for a 404 (resource not there), which callers treat specially
    /// (a partial tile may be gone once the full tile exists).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status: 404, .. })
    }
}

/// Largest body accepted: a full tile is 8 KiB; a full bundle of 256 entries of at
/// most 65,535 bytes each is under 17 MiB.
const MAX_BODY: usize = 256 * (65_535 + 2);
/// Attempts per request (transient failures and 5xx are retried).
const ATTEMPTS: u32 = 4;

/// An HTTP client for one URL prefix.
#[derive(Clone, Debug)]
pub struct TilesClient {
    http: reqwest::Client,
    prefix: String,
}

/// Joins a base URL (which may contain a path) and a relative path with exactly one `/`.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A reqwest client with the monitor's time-outs and User-Agent.
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .user_agent(concat!("candor-monitor/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        // Drop idle connections before a server does (Candor: 60 s), so that
        // a request never races the server closing its connection.
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ClientError::Network {
            url: String::new(),
            message: e.to_string(),
        })
}

impl TilesClient {
    /// A client for the log at `prefix` (e.g. `https://log.example/candor/`).
    pub fn new(http: reqwest::Client, prefix: &str) -> Result<Self, ClientError> {
        let parsed = reqwest::Url::parse(prefix).map_err(|e| ClientError::BadUrl {
            url: prefix.to_owned(),
            message: e.to_string(),
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(ClientError::BadUrl {
                url: prefix.to_owned(),
                message: "the scheme must be http or https".into(),
            });
        }
        Ok(TilesClient {
            http,
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `GET <prefix>/checkpoint`.
    pub async fn checkpoint(&self) -> Result<Vec<u8>, ClientError> {
        get(&self.http, &join(&self.prefix, "checkpoint")).await
    }

    /// `GET <prefix>/<path>` for a tile or bundle path (as `tiles::Tile::path` gives).
    pub async fn resource(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        get(&self.http, &join(&self.prefix, path)).await
    }

    /// Fetches a possibly partial tile or bundle. `path` is the partial path and
    /// `full_path` the path of the full resource with the same index: tlog-tiles lets
    /// a log delete a partial once the full one exists, so on 404 the full one is
    /// fetched instead and returned whole (the caller checks its prefix).
    pub async fn partial_or_full(
        &self,
        path: &str,
        full_path: &str,
    ) -> Result<Vec<u8>, ClientError> {
        match self.resource(path).await {
            Err(e) if e.is_not_found() && path != full_path => self.resource(full_path).await,
            r => r,
        }
    }
}

/// `GET <peer>/<hex sha256(origin)>/checkpoint`: the tlog-witness monitoring path.
pub async fn peer_checkpoint(
    http: &reqwest::Client,
    peer: &str,
    origin: &str,
) -> Result<Vec<u8>, ClientError> {
    let id = candor_core::hash::sha256(origin.as_bytes()).to_hex();
    get(http, &join(peer, &format!("{id}/checkpoint"))).await
}

/// GET with retries on network errors and 5xx/429; 4xx other than 429 is final.
async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, ClientError> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match get_once(http, url).await {
            Ok(body) => return Ok(body),
            Err(e @ ClientError::Status { status, .. }) if status != 429 && status < 500 => {
                return Err(e);
            }
            Err(e @ (ClientError::TooLarge { .. } | ClientError::BadUrl { .. })) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ClientError::Network {
        url: url.to_owned(),
        message: "no attempt made".into(),
    }))
}

async fn get_once(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, ClientError> {
    let net = |e: reqwest::Error| ClientError::Network {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let mut resp = http.get(url).send().await.map_err(net)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ClientError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    // Sized once from Content-Length (within the limit) instead of regrown per chunk.
    let declared = resp
        .content_length()
        .map_or(0, |n| n.min(MAX_BODY as u64) as usize);
    let mut body = Vec::with_capacity(declared);
    while let Some(chunk) = resp.chunk().await.map_err(net)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ClientError::TooLarge {
                url: url.to_owned(),
                limit: MAX_BODY,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_paths() {
        assert_eq!(join("http://a/b/", "/checkpoint"), "http://a/b/checkpoint");
        assert_eq!(join("http://a", "tile/0/000"), "http://a/tile/0/000");
    }

    #[test]
    fn rejects_bad_prefix() {
        let http = http_client().unwrap();
        assert!(TilesClient::new(http.clone(), "ftp://x/").is_err());
        assert!(TilesClient::new(http.clone(), "not a url").is_err());
        assert_eq!(
            TilesClient::new(http, "http://x/log/").unwrap().prefix(),
            "http://x/log"
        );
    }
}
