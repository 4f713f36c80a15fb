//! Shared harness for tests that run the real `candor` binary: start `candor serve` on a
//! temporary data directory, talk to it over loopback HTTP, register companies and build
//! signed entries. Reused by the server, CLI and monitor tests.
#![allow(dead_code)]

pub mod pg;
pub mod witness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use candor_core::entry::{Entry, SignedEntry, samples};
use candor_core::note::{SignerKey, VerifierKey};
use serde_json::{Value, json};

/// Path of the `candor` binary under test.
pub const CANDOR: &str = env!("CARGO_BIN_EXE_candor");

/// A running `candor serve`.
pub struct LogServer {
    /// Keeps the data directory alive (when the harness made it).
    _tmp: Option<tempfile::TempDir>,
    pub data: PathBuf,
    pub store: String,
    pub extra: Vec<String>,
    pub child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub origin: String,
    pub verifier_key: VerifierKey,
    pub client: reqwest::Client,
}

impl LogServer {
    /// Starts a log with backend `store` ("redb" or "sled") on a fresh temp dir.
    pub async fn start(store: &str, extra: &[&str]) -> LogServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let mut s = LogServer::start_in(&data, store, extra).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a log on data directory `data` (kept by the caller).
    pub async fn start_in(data: &Path, store: &str, extra: &[&str]) -> LogServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, base, origin, vkey) = spawn(data, store, &extra);
        let s = LogServer {
            _tmp: None,
            data: data.to_path_buf(),
            store: store.to_string(),
            extra,
            child: Some(child),
            base,
            origin,
            verifier_key: vkey.parse().expect("printed verifier key parses"),
            // Raw bodies: tests check the server's own Content-Encoding.
            client: reqwest::Client::builder()
                .no_gzip()
                // Below the server's idle time-out, so a pooled connection is never
                // reused just as the server closes it.
                .pool_idle_timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
        };
        s.wait_healthy().await;
        s
    }

    /// A log already running at `base` on `data` (started in-process by the test),
    /// once it answers.
    pub async fn attach(data: &Path, base: String) -> LogServer {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let info: Value = loop {
            if let Ok(r) = client.get(format!("{base}/v1/log")).send().await
                && r.status() == 200
            {
                break r.json().await.expect("GET /v1/log JSON");
            }
            assert!(
                Instant::now() < deadline,
                "the log at {base} did not answer"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        LogServer {
            _tmp: None,
            data: data.to_path_buf(),
            store: "redb".into(),
            extra: vec![],
            child: None,
            base,
            origin: info["origin"].as_str().expect("origin").to_owned(),
            verifier_key: info["verifier_key"]
                .as_str()
                .and_then(|k| k.parse().ok())
                .expect("verifier key"),
            client,
        }
    }

    /// Full URL of `path` (which starts with '/').
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls `/healthz` until it answers 200 (10 s at most).
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "log did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The admin bearer token from DATA/admin.token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .expect("admin token")
            .trim()
            .to_string()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "log did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops (SIGTERM, expecting exit 0) and starts again on the same data directory.
    pub async fn restart(&mut self) {
        let st = self.stop();
        assert!(st.success(), "graceful shutdown exit status {st}");
        let (child, base, origin, vkey) = spawn(&self.data, &self.store, &self.extra);
        assert_eq!(origin, self.origin, "origin survives a restart");
        assert_eq!(
            vkey,
            self.verifier_key.to_string(),
            "key survives a restart"
        );
        self.child = Some(child);
        self.base = base;
        self.wait_healthy().await;
    }

    /// `GET path` → (status, body bytes).
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        let st = r.status().as_u16();
        (st, r.bytes().await.expect("body").to_vec())
    }

    /// `GET path` expecting 200 JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let (st, body) = self.get(path).await;
        assert_eq!(st, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON")
    }

    /// The current checkpoint note bytes.
    pub async fn checkpoint(&self) -> Vec<u8> {
        let (st, body) = self.get("/checkpoint").await;
        assert_eq!(st, 200);
        body
    }

    /// `POST /v1/entries` with `content_type` → (status, body).
    pub async fn post_entries(&self, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let r = self
            .client
            .post(self.url("/v1/entries"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        let st = r.status().as_u16();
        (st, r.bytes().await.expect("body").to_vec())
    }

    /// Submits one signed entry, expecting 200; returns the receipt JSON.
    pub async fn submit(&self, e: &SignedEntry) -> Value {
        let (st, body) = self
            .post_entries("application/json", signed_json(e).into_bytes())
            .await;
        assert_eq!(st, 200, "submit: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("receipt JSON")
    }

    /// Submits many entries as NDJSON, expecting 200; returns the receipts in order.
    pub async fn submit_ndjson(&self, es: &[SignedEntry]) -> Vec<Value> {
        let (st, body) = self.post_entries("application/x-ndjson", ndjson(es)).await;
        assert_eq!(st, 200, "submit NDJSON: {}", String::from_utf8_lossy(&body));
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("receipt line"))
            .collect()
    }

    /// Logs a data purchase by `company`, then a targeting decision about the subject
    /// behind `opening` that cites it; returns both receipts (purchase, decision).
    pub async fn submit_decision_citing_new_purchase(
        &self,
        company: &Company,
        opening: &candor_core::subject::Opening,
    ) -> (Value, Value) {
        use base64::Engine as _;
        let purchase = self
            .submit(&company.sign(samples::data_purchase(&company.name)))
            .await;
        let index = purchase["index"].as_u64().expect("purchase index");
        let leaf = base64::engine::general_purpose::STANDARD
            .decode(purchase["leaf"].as_str().expect("purchase leaf"))
            .expect("leaf base64");
        let decision = self
            .submit(&company.sign(samples::targeting_decision_from_purchase(
                &company.name,
                opening.commitment(),
                index,
                candor_core::hash::leaf_hash(&leaf),
            )))
            .await;
        (purchase, decision)
    }

    /// `POST /v1/companies` with the admin token → (status, body).
    pub async fn company_request(&self, name: &str, vkey: &str, action: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/v1/companies"))
            .bearer_auth(self.admin_token())
            .json(&json!({"name": name, "verifier_key": vkey, "action": action}))
            .send()
            .await
            .expect("POST companies");
        let st = r.status().as_u16();
        (st, r.json().await.expect("JSON body"))
    }

    /// Registers a new company `name` with a fresh key; returns it.
    pub async fn register_company(&self, name: &str) -> Company {
        let c = Company::new(name);
        let (st, body) = self
            .company_request(name, &c.verifier_key().to_string(), "register")
            .await;
        assert_eq!(st, 200, "register {name}: {body}");
        c
    }
}

impl Drop for LogServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `candor serve` flags for a log with its key in `key_file` and `origin`, that
/// publishes a checkpoint once `quorum` of `witnesses` (cosignature vkey, URL) cosigned
/// it; quick retries and time-outs for tests, and receipts wait up to `wait_ms` for a
/// witnessed checkpoint (spec/api.md §8).
pub fn witnessed_log_args(
    key_file: &Path,
    origin: &str,
    quorum: usize,
    wait_ms: u64,
    witnesses: &[(String, String)],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--key".into(),
        key_file.display().to_string(),
        "--origin".into(),
        origin.into(),
        "--witness-quorum".into(),
        quorum.to_string(),
        "--witness-retry-ms".into(),
        "200".into(),
        "--witness-timeout-ms".into(),
        "2000".into(),
        "--witness-wait-ms".into(),
        wait_ms.to_string(),
    ];
    for (vkey, url) in witnesses {
        args.push("--witness".into());
        args.push(format!("{vkey}={url}"));
    }
    args
}

/// Spawns `candor serve` and reads its banner: (child, base URL, origin, verifier key).
fn spawn(data: &Path, store: &str, extra: &[String]) -> (Child, String, String, String) {
    let mut child = Command::new(CANDOR)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--store", store])
        // Short batches keep tests quick, unless the test sets its own delay.
        .args(if extra.iter().any(|a| a == "--batch-delay-ms") {
            &[][..]
        } else {
            &["--batch-delay-ms", "5"][..]
        })
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn candor serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    // Keep draining stdout for the server's whole life so it never blocks on a pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let (mut base, mut origin, mut vkey) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while base.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "candor serve printed no listen address (exit: {:?})",
                    child.wait()
                );
            }
        };
        if let Some(a) = line.strip_prefix("listening on ") {
            base = Some(a.trim().to_string());
        } else if let Some(o) = line.strip_prefix("origin: ") {
            origin = Some(o.trim().to_string());
        } else if let Some(k) = line.strip_prefix("verifier key: ") {
            vkey = Some(k.trim().to_string());
        }
    }
    (
        child,
        base.expect("base"),
        origin.expect("origin line"),
        vkey.expect("verifier key line"),
    )
}

/// Runs `candor serve` expecting it to refuse to start; returns its stderr.
pub fn serve_should_fail(data: &Path, store: &str, extra: &[&str]) -> String {
    let out = Command::new(CANDOR)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--store", store])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run candor serve");
    assert!(
        !out.status.success(),
        "candor serve should have refused to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A company with its signing key.
pub struct Company {
    pub name: String,
    pub key: SignerKey,
}

impl Company {
    /// A company with a fresh random key.
    pub fn new(name: &str) -> Company {
        Company {
            name: name.to_string(),
            key: SignerKey::generate(name).expect("generate key"),
        }
    }

    pub fn verifier_key(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// Signs `entry` with this company's key.
    pub fn sign(&self, entry: Entry) -> SignedEntry {
        SignedEntry::sign(entry, self.key.signing_key(), self.verifier_key().key_id())
            .expect("sign entry")
    }

    /// The `n`-th distinct sample targeting decision of this company, signed.
    pub fn entry(&self, n: u64) -> SignedEntry {
        self.sign(samples::load_targeting_decision(&self.name, n))
    }
}

/// The JSON text of a signed entry, as submitted.
pub fn signed_json(e: &SignedEntry) -> String {
    serde_json::to_string(e).expect("signed entry serializes")
}

/// Load that survives a fail-over: four clients submit distinct entries of a company
/// (client c: entries 1 + c, 5 + c, 9 + c, …) to the first of several servers whose answer is taken; an entry
/// no server took is tried again after 20 ms. Runs until [`FailoverLoad::stop`].
pub struct FailoverLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

/// What [`FailoverLoad`] hands its judge for each answer: the entry number, the HTTP
/// status and the body as read.
pub type Answer = (u64, u16, reqwest::Result<bytes::Bytes>);

impl FailoverLoad {
    /// Starts the clients. `take` judges each answer: true if the entry is done, false
    /// to try the next server. A request that fails to send also tries the next one.
    pub fn start(
        company: std::sync::Arc<Company>,
        bases: Vec<String>,
        take: impl Fn(Answer) -> bool + Send + Sync + 'static,
    ) -> FailoverLoad {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let (bases, take) = (Arc::new(bases), Arc::new(take));
        let clients = (0..4u64)
            .map(|c| {
                let (company, bases, take, stop) =
                    (company.clone(), bases.clone(), take.clone(), stop.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("client");
                    let mut n = 1 + c;
                    while !stop.load(Ordering::Relaxed) {
                        let body = signed_json(&company.entry(n));
                        let mut done = false;
                        for base in bases.iter() {
                            let Ok(r) = http
                                .post(format!("{base}/v1/entries"))
                                .header("content-type", "application/json")
                                .body(body.clone())
                                .send()
                                .await
                            else {
                                continue;
                            };
                            let status = r.status().as_u16();
                            if take((n, status, r.bytes().await)) {
                                done = true;
                                break;
                            }
                        }
                        if done {
                            n += 4;
                        } else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        FailoverLoad { stop, clients }
    }

    /// Stops the clients and waits for them (each finishes its current entry).
    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in self.clients {
            c.await.expect("client task");
        }
    }
}

/// Where a [`proxy`] sends a request's path and query: the upstream's base URL.
pub type ProxyRoute = Box<dyn Fn(&str) -> String + Send + Sync>;
/// What a [`proxy`] serves for an upstream answer: (path, status, body) -> body.
pub type ProxyRewrite = Box<dyn Fn(&str, u16, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// Starts a reverse proxy on a free loopback port and returns its URL. Each request is
/// sent as a GET of its path and query to the upstream `route` names, and answered
/// with the upstream's status and headers (less the framing ones, which no longer fit
/// once the body may change) and the body `rewrite` makes of the upstream's.
pub async fn proxy(route: ProxyRoute, rewrite: ProxyRewrite) -> String {
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::Response;
    use std::sync::Arc;

    type Rules = Arc<(ProxyRoute, ProxyRewrite)>;
    async fn forward(State(rules): State<Rules>, req: Request) -> Response {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let (route, rewrite) = &*rules;
        let r = reqwest::get(format!("{}{path}", route(&path)))
            .await
            .expect("upstream");
        let status = r.status().as_u16();
        let mut resp = Response::builder().status(StatusCode::from_u16(status).expect("status"));
        for (k, v) in r.headers() {
            if k != "content-length" && k != "transfer-encoding" && k != "content-encoding" {
                resp = resp.header(k.as_str(), v.as_bytes());
            }
        }
        let body = r.bytes().await.expect("upstream body").to_vec();
        resp.body(Body::from(rewrite(&path, status, body)))
            .expect("response")
    }
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::new((route, rewrite)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// NDJSON body of many signed entries.
pub fn ndjson(es: &[SignedEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in es {
        out.extend_from_slice(signed_json(e).as_bytes());
        out.push(b'\n');
    }
    out
}
