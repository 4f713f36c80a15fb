//! Hostile input against every route of spec/api.md (and the witness's
//! `POST /add-checkpoint`), through the real binary over loopback (issue 6,
//! "Hostile input"). Every case gets its specific 4xx and a JSON
//! `{"error","detail"}` body; after every case the log holds nothing but what the
//! well-behaved background client submitted; and that client is served throughout.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use candor_core::entry::SignedEntry;
use candor_core::hash::Hash;
use candor_core::merkle;
use common::{Company, LogServer, ndjson, signed_json};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const GOOD: &str = "good.example";

/// A raw HTTP answer.
struct Reply {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    /// Asserts `status` and a JSON error body with code `code`; returns the body.
    fn expect_error(&self, what: &str, status: u16, code: &str) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "{what}: status (body {text})");
        assert!(
            self.content_type.starts_with("application/json"),
            "{what}: error Content-Type is {:?} (body {text})",
            self.content_type
        );
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
        assert_eq!(v["error"], code, "{what}: error code (body {text})");
        assert!(
            v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: error detail missing: {text}"
        );
        v
    }
}

async fn send(log: &LogServer, req: reqwest::RequestBuilder) -> Reply {
    let _ = log;
    let r = req.send().await.expect("request sent");
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let body = r.bytes().await.expect("body").to_vec();
    Reply {
        status,
        content_type,
        retry_after,
        body,
    }
}

async fn get(log: &LogServer, path: &str) -> Reply {
    send(log, log.client.get(log.url(path))).await
}

async fn post(log: &LogServer, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = log.client.post(log.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    send(log, req).await
}

async fn post_json(log: &LogServer, body: impl Into<Vec<u8>>) -> Reply {
    post(log, "/v1/entries", Some("application/json"), body.into()).await
}

async fn post_ndjson(log: &LogServer, body: Vec<u8>) -> Reply {
    post(log, "/v1/entries", Some("application/x-ndjson"), body).await
}

async fn admin(log: &LogServer, token: Option<&str>, ct: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = log.client.post(log.url("/v1/companies")).body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    send(log, req).await
}

/// Checks that the log holds nothing new but the good client's entries: every leaf
/// past `seen` is a `good.example` entry, and the tree of `seen` leaves is a prefix
/// of the current one (consistency proof). Returns the new size.
async fn state_unchanged(log: &LogServer, seen: &mut u64, what: &str) {
    let v = log.get_json("/v1/log").await;
    let size = v["size"].as_u64().expect("size");
    assert!(
        size >= *seen,
        "{what}: the log shrank from {seen} to {size}"
    );
    for i in *seen..size {
        let e = log.get_json(&format!("/v1/entries/{i}")).await;
        assert_eq!(
            e["entry"]["company"], GOOD,
            "{what}: leaf {i} was not submitted by the good client: {e}"
        );
    }
    if *seen > 0 && size > *seen {
        let p = log
            .get_json(&format!("/v1/proof/consistency?old={seen}&new={size}"))
            .await;
        let h = |v: &Value| {
            Hash::from_slice(&B64.decode(v.as_str().expect("b64")).expect("b64")).expect("hash")
        };
        let proof: Vec<Hash> = p["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(h)
            .collect();
        merkle::verify_consistency(*seen, size, &h(&p["old_root"]), &h(&p["new_root"]), &proof)
            .unwrap_or_else(|e| panic!("{what}: consistency {seen}->{size}: {e:?}"));
    }
    *seen = size;
}

/// The JSON of `e` with `f` applied.
fn mutate(e: &SignedEntry, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(&signed_json(e)).expect("JSON");
    f(&mut v);
    serde_json::to_vec(&v).expect("JSON")
}

/// The well-behaved client: submits entries one by one until told to stop; counts
/// successes and records any failure.
fn good_client(
    log: &LogServer,
    good: Company,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let url = log.url("/v1/entries");
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .body(signed_json(&good.entry(n)))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                Ok(r) => failures.push(format!(
                    "entry {n}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => failures.push(format!("entry {n}: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        failures
    })
}

/// Sends the headers of a POST promising `len` body bytes, then trickles one byte
/// every 400 ms; returns the status line the server answers (or what happened).
fn trickle_body(addr: &str, len: usize) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let head = format!(
        "POST /v1/entries HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).expect("headers");
    // Trickle in a helper thread; the answer is read here.
    let mut w = s.try_clone().expect("clone");
    let trickler = std::thread::spawn(move || {
        for _ in 0..len {
            std::thread::sleep(Duration::from_millis(400));
            if w.write_all(b" ").is_err() {
                break;
            }
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n")
                    && String::from_utf8_lossy(&buf).contains("\"detail\"")
                {
                    break;
                }
            }
            Err(e) => {
                buf.extend_from_slice(format!("<read error {e}>").as_bytes());
                break;
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = trickler.join();
    String::from_utf8_lossy(&buf).into_owned()
}

fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![b'['; depth];
    v.extend(std::iter::repeat_n(b']', depth));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_http_matrix() {
    let log = LogServer::start(
        "redb",
        &[
            "--max-batch-lines",
            "50",
            "--max-body-bytes",
            "1048576",
            "--request-timeout-secs",
            "3",
        ],
    )
    .await;
    let token = log.admin_token();
    let good = log.register_company(GOOD).await;
    let acme = log.register_company("acme.example").await;
    let rival = log.register_company("rival.example").await;
    // A company whose key is revoked.
    let gone = log.register_company("gone.example").await;
    let (st, body) = log
        .company_request("gone.example", &gone.verifier_key().to_string(), "revoke")
        .await;
    assert_eq!(st, 200, "revoke: {body}");
    // One logged acme entry, replayed below.
    let logged = acme.entry(1);
    let first = log.submit(&logged).await;
    let logged_index = first["index"].as_u64().expect("index");

    let start_size = log.get_json("/v1/log").await["size"]
        .as_u64()
        .expect("size");
    let mut seen = start_size;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let good_task = good_client(&log, good, stop.clone(), ok.clone());

    // ---------------------------------------------------------------- submissions
    let e = acme.entry(2);
    let valid = signed_json(&e).into_bytes();

    // Malformed and truncated JSON.
    for (what, body) in [
        ("empty body", b"".to_vec()),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("trailing garbage", [valid.as_slice(), b"}"].concat()),
        ("not JSON", b"entry=1".to_vec()),
        ("bare comma", b"{,}".to_vec()),
        // The key_id again, first, with another value (I-JSON: names are unique).
        (
            "duplicate member",
            [b"{\"key_id\":\"00000000\",".as_slice(), &valid[1..]].concat(),
        ),
    ] {
        post_json(&log, body)
            .await
            .expect_error(what, 400, "malformed_json");
        state_unchanged(&log, &mut seen, what).await;
    }
    // Deep nesting: serde_json's recursion limit (128) holds; no stack overflow.
    // (A 100,000-deep body is over the 64 KiB entry limit, so that is a 413 first;
    // the registry route below takes it whole.)
    post_json(&log, nested(100_000))
        .await
        .expect_error("100000 nested arrays", 413, "too_large");
    for depth in [200, 30_000] {
        let what = format!("{depth} nested arrays");
        post_json(&log, nested(depth))
            .await
            .expect_error(&what, 400, "malformed_json");
        let nested_entry = mutate(&e, |v| v["entry"]["campaign"]["id"] = json!([]));
        let mut deep = String::from_utf8(nested_entry).expect("utf8");
        deep = deep.replacen("[]", &String::from_utf8(nested(depth)).expect("utf8"), 1);
        post_json(&log, deep.into_bytes())
            .await
            .expect_error(&what, 400, "malformed_json");
        let mut nd = valid.clone();
        nd.push(b'\n');
        nd.extend(nested(depth));
        let v = post_ndjson(&log, nd)
            .await
            .expect_error(&what, 400, "malformed_json");
        assert_eq!(v["line"], 2, "{what}: the error names the line");
        state_unchanged(&log, &mut seen, &what).await;
    }
    // Invalid UTF-8 inside a string and as a whole.
    let mut bad_utf8 = valid.clone();
    let at = bad_utf8
        .windows(4)
        .position(|w| w == b"acme")
        .expect("company name");
    bad_utf8[at] = 0xff;
    post_json(&log, bad_utf8)
        .await
        .expect_error("invalid UTF-8", 400, "malformed_json");
    post_json(&log, vec![0xc3, 0x28, 0xa0, 0xa1])
        .await
        .expect_error("binary body", 400, "malformed_json");
    state_unchanged(&log, &mut seen, "invalid UTF-8").await;

    // Wrong types and unknown fields.
    for (what, body) in [
        ("array", b"[]".to_vec()),
        ("string", b"\"entry\"".to_vec()),
        ("number", b"42".to_vec()),
        ("null", b"null".to_vec()),
        ("entry is a number", mutate(&e, |v| v["entry"] = json!(5))),
        (
            "key_id is a number",
            mutate(&e, |v| v["key_id"] = json!(1234)),
        ),
        (
            "signature is an array",
            mutate(&e, |v| v["signature"] = json!([1, 2])),
        ),
        (
            "company is an object",
            mutate(&e, |v| v["entry"]["company"] = json!({"a": 1})),
        ),
        (
            "unknown top-level member",
            mutate(&e, |v| v["extra"] = json!(1)),
        ),
        (
            "unknown entry member",
            mutate(&e, |v| v["entry"]["extra"] = json!(1)),
        ),
        (
            "missing signature",
            mutate(&e, |v| {
                v.as_object_mut().expect("object").remove("signature");
            }),
        ),
        (
            "unknown kind",
            mutate(&e, |v| v["entry"]["kind"] = json!("launch_missiles")),
        ),
        (
            "bad time",
            mutate(&e, |v| v["entry"]["at"] = json!("yesterday")),
        ),
        // Bad base64 and hex.
        (
            "signature not base64",
            mutate(&e, |v| v["signature"] = json!("!!!not base64!!!")),
        ),
        (
            "signature too short",
            mutate(&e, |v| v["signature"] = json!(B64.encode([1u8; 63]))),
        ),
        (
            "signature with whitespace",
            mutate(&e, |v| {
                let s = v["signature"].as_str().expect("sig").to_string();
                v["signature"] = json!(format!(" {s}"))
            }),
        ),
        (
            "key_id not hex",
            mutate(&e, |v| v["key_id"] = json!("zzzzzzzz")),
        ),
        (
            "key_id upper-case",
            mutate(&e, |v| v["key_id"] = json!("ABCDEF12")),
        ),
        ("key_id short", mutate(&e, |v| v["key_id"] = json!("abc"))),
    ] {
        post_json(&log, body)
            .await
            .expect_error(what, 422, "invalid_entry");
        state_unchanged(&log, &mut seen, what).await;
    }

    // Unknown company, unknown key, revoked key, reserved kind.
    let stranger = Company::new("stranger.example");
    post_json(&log, signed_json(&stranger.entry(1)))
        .await
        .expect_error("unknown company", 403, "unknown_company");
    let impostor = Company::new("acme.example");
    post_json(&log, signed_json(&impostor.entry(3)))
        .await
        .expect_error("unknown key", 403, "unknown_key");
    post_json(&log, signed_json(&gone.entry(1)))
        .await
        .expect_error("revoked key", 403, "key_revoked");
    let ck = mutate(&e, |v| {
        v["entry"] = json!({"kind": "company_key", "company": "acme.example",
            "at": "2026-01-01T00:00:00Z", "action": "register",
            "verifier_key": acme.verifier_key().to_string()});
    });
    post_json(&log, ck).await.expect_error(
        "company_key submitted by a company",
        403,
        "reserved_kind",
    );
    state_unchanged(&log, &mut seen, "403 cases").await;

    // Forged and replayed signatures.
    let forged = mutate(&e, |v| {
        // A valid-looking signature by another key under acme's key id.
        let other = impostor.entry(2);
        v["signature"] = json!(other.signature);
    });
    post_json(&log, forged)
        .await
        .expect_error("forged signature", 422, "bad_signature");
    // Replay of rival's entry under acme's name: rival's signature, acme's name/key.
    let theirs = rival.entry(7);
    let replayed = mutate(&theirs, |v| {
        v["entry"]["company"] = json!("acme.example");
        v["key_id"] = json!(e.key_id);
    });
    post_json(&log, replayed).await.expect_error(
        "another company's entry replayed under acme's name",
        422,
        "bad_signature",
    );
    // A signature moved from one acme entry to another.
    let other = acme.entry(4);
    let moved = mutate(&e, |v| v["signature"] = json!(other.signature));
    post_json(&log, moved).await.expect_error(
        "signature moved between entries",
        422,
        "bad_signature",
    );
    // An entry altered after signing.
    let altered = mutate(&e, |v| v["entry"]["campaign"]["id"] = json!("tampered"));
    post_json(&log, altered).await.expect_error(
        "entry altered after signing",
        422,
        "bad_signature",
    );
    // The zero signature and the all-ones signature (non-canonical S) never verify.
    for sig in [[0u8; 64], [0xff; 64]] {
        let z = mutate(&e, |v| v["signature"] = json!(B64.encode(sig)));
        post_json(&log, z)
            .await
            .expect_error("degenerate signature", 422, "bad_signature");
    }
    state_unchanged(&log, &mut seen, "forged signatures").await;
    // Replaying an entry that is already logged logs nothing new (idempotence).
    let again = log.submit(&logged).await;
    assert_eq!(again["index"].as_u64(), Some(logged_index), "replay dedups");
    state_unchanged(&log, &mut seen, "replay of a logged entry").await;

    // Wrong content types.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/xml"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        post(&log, "/v1/entries", ct, valid.clone())
            .await
            .expect_error(
                &format!("Content-Type {ct:?}"),
                415,
                "unsupported_media_type",
            );
    }
    state_unchanged(&log, &mut seen, "415").await;

    // Huge bodies: one entry over 64 KiB; a body over --max-body-bytes (declared
    // and chunked); an NDJSON line over 64 KiB.
    let big = mutate(&e, |v| {
        v["entry"]["campaign"]["id"] = json!("x".repeat(70_000))
    });
    post_json(&log, big)
        .await
        .expect_error("entry over 64 KiB", 413, "too_large");
    // The server answers these before reading the whole body and closes the
    // connection, so each uses a client of its own that keeps no connection.
    let one_shot = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client")
    };
    let huge = vec![b' '; 2 * 1024 * 1024];
    send(
        &log,
        one_shot()
            .post(log.url("/v1/entries"))
            .header("content-type", "application/x-ndjson")
            .body(huge.clone()),
    )
    .await
    .expect_error("body over the limit", 413, "too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        huge.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = send(
        &log,
        one_shot()
            .post(log.url("/v1/entries"))
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
    )
    .await;
    streamed.expect_error("chunked body over the limit", 413, "too_large");
    let mut long_line = valid.clone();
    long_line.push(b'\n');
    long_line.extend(vec![b' '; 70_000]);
    long_line.extend_from_slice(b"{}\n");
    let v = post_ndjson(&log, long_line).await.expect_error(
        "NDJSON line over 64 KiB",
        413,
        "too_large",
    );
    assert_eq!(v["line"], 2);
    state_unchanged(&log, &mut seen, "413").await;

    // Too many entries in a batch (--max-batch-lines 50), and empty NDJSON.
    let many: Vec<SignedEntry> = (100..151).map(|n| acme.entry(n)).collect();
    post_ndjson(&log, ndjson(&many))
        .await
        .expect_error("51 NDJSON lines", 413, "too_large");
    post_ndjson(&log, b"\n\r\n  \n".to_vec())
        .await
        .expect_error("empty NDJSON", 400, "bad_request");
    // All-or-nothing: a forged line 3 refuses the whole request.
    let mut mixed = ndjson(&[acme.entry(200), acme.entry(201)]);
    mixed.extend(mutate(&acme.entry(202), |v| {
        v["signature"] = json!(other.signature)
    }));
    mixed.push(b'\n');
    let v = post_ndjson(&log, mixed).await.expect_error(
        "NDJSON with a forged line",
        422,
        "bad_signature",
    );
    assert_eq!(v["line"], 3);
    // The same in a request large enough for its handler to batch-verify it (32
    // entries or more) instead of the sequencer: line 37 of 40 is forged.
    let mut large = Vec::new();
    for n in 300..340 {
        let e = acme.entry(n);
        if n == 336 {
            large.extend(mutate(&e, |v| v["signature"] = json!(other.signature)));
            large.push(b'\n');
        } else {
            large.extend(ndjson(&[e]));
        }
    }
    let v = post_ndjson(&log, large).await.expect_error(
        "40-line NDJSON with a forged line",
        422,
        "bad_signature",
    );
    assert_eq!(v["line"], 37);
    state_unchanged(&log, &mut seen, "NDJSON limits").await;

    // ---------------------------------------------------------------- registry
    let reg = |name: &str, key: &str, action: &str| {
        serde_json::to_vec(&json!({"name": name, "verifier_key": key, "action": action}))
            .expect("json")
    };
    let newco = Company::new("newco.example");
    let nk = newco.verifier_key().to_string();
    let ok_body = reg("newco.example", &nk, "register");
    admin(&log, None, Some("application/json"), ok_body.clone())
        .await
        .expect_error("no token", 401, "unauthorized");
    admin(
        &log,
        Some(&format!("{token}0")),
        Some("application/json"),
        ok_body.clone(),
    )
    .await
    .expect_error("wrong token", 401, "unauthorized");
    admin(
        &log,
        Some(&token[..token.len() - 1]),
        Some("application/json"),
        ok_body.clone(),
    )
    .await
    .expect_error("token prefix", 401, "unauthorized");
    admin(&log, Some(""), Some("application/json"), ok_body.clone())
        .await
        .expect_error("empty token", 401, "unauthorized");
    admin(&log, Some(&token), Some("text/plain"), ok_body.clone())
        .await
        .expect_error("registry Content-Type", 415, "unsupported_media_type");
    admin(
        &log,
        Some(&token),
        Some("application/x-ndjson"),
        ok_body.clone(),
    )
    .await
    .expect_error("registry NDJSON", 415, "unsupported_media_type");
    for (what, body, status, code) in [
        ("truncated", ok_body[..10].to_vec(), 400, "malformed_json"),
        ("deep nesting", nested(100_000), 400, "malformed_json"),
        (
            "invalid UTF-8",
            vec![b'"', 0xff, b'"'],
            400,
            "malformed_json",
        ),
        (
            "unknown member",
            serde_json::to_vec(&json!({"name": "newco.example", "verifier_key": nk,
                "action": "register", "admin": true}))
            .expect("json"),
            422,
            "invalid_entry",
        ),
        (
            "wrong type",
            serde_json::to_vec(&json!({"name": 5, "verifier_key": nk, "action": "register"}))
                .expect("json"),
            422,
            "invalid_entry",
        ),
        (
            "unknown action",
            reg("newco.example", &nk, "promote"),
            422,
            "invalid_entry",
        ),
        (
            "bad key base64",
            reg("newco.example", "newco.example+01020304+!!!!", "register"),
            422,
            "invalid_entry",
        ),
        (
            "key named after another company",
            reg("acme.example", &nk, "register"),
            422,
            "invalid_entry",
        ),
        (
            "register an existing key",
            reg("acme.example", &acme.verifier_key().to_string(), "register"),
            409,
            "conflict",
        ),
        (
            "revoke an unknown key",
            reg("newco.example", &nk, "revoke"),
            409,
            "conflict",
        ),
        (
            "revoke a revoked key",
            reg("gone.example", &gone.verifier_key().to_string(), "revoke"),
            409,
            "conflict",
        ),
    ] {
        admin(&log, Some(&token), Some("application/json"), body)
            .await
            .expect_error(what, status, code);
        state_unchanged(&log, &mut seen, what).await;
    }

    // ---------------------------------------------------------------- reads
    let max = u64::MAX;
    let cases: Vec<(String, u16, &str)> = vec![
        ("/v1/entries/-1".to_string(), 400, "bad_request"),
        ("/v1/entries/01".to_string(), 400, "bad_request"),
        ("/v1/entries/+1".to_string(), 400, "bad_request"),
        ("/v1/entries/1.0".to_string(), 400, "bad_request"),
        ("/v1/entries/0x10".to_string(), 400, "bad_request"),
        (
            "/v1/entries/18446744073709551616".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/entries/99999999999999999999999".to_string(),
            400,
            "bad_request",
        ),
        ("/v1/entries/%FF%FE".to_string(), 400, "bad_request"),
        (format!("/v1/entries/{max}"), 404, "not_found"),
        ("/v1/entries?leaf_hash=zz".to_string(), 400, "bad_request"),
        ("/v1/entries?leaf_hash=".to_string(), 400, "bad_request"),
        ("/v1/entries".to_string(), 400, "bad_request"),
        (
            format!("/v1/entries?leaf_hash={}", "AB".repeat(32)),
            400,
            "bad_request",
        ),
        (
            format!("/v1/entries?leaf_hash={}", "ab".repeat(33)),
            400,
            "bad_request",
        ),
        (
            format!("/v1/entries?leaf_hash={}", "ab".repeat(32)),
            404,
            "not_found",
        ),
        (
            "/v1/proof/inclusion?index=0".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/inclusion?index=-1&size=2".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/inclusion?index=01&size=2".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/inclusion?index=2&size=2".to_string(),
            400,
            "bad_request",
        ),
        (
            format!("/v1/proof/inclusion?index=0&size={max}"),
            404,
            "not_found",
        ),
        (
            "/v1/proof/inclusion?index=0&size=18446744073709551616".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/consistency?old=0&new=1".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/consistency?old=3&new=2".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/consistency?old=1".to_string(),
            400,
            "bad_request",
        ),
        (
            "/v1/proof/consistency?old=1&new=%31".to_string(),
            400,
            "bad_request",
        ),
        (
            format!("/v1/proof/consistency?old=1&new={max}"),
            404,
            "not_found",
        ),
        ("/v1/receipts/-1".to_string(), 400, "bad_request"),
        ("/v1/receipts/007".to_string(), 400, "bad_request"),
        (format!("/v1/receipts/{max}"), 404, "not_found"),
        ("/v1/companies/nobody.example".to_string(), 404, "not_found"),
        ("/v1/companies/%FF".to_string(), 400, "bad_request"),
        ("/tile/0/x001".to_string(), 400, "bad_request"),
        ("/tile/0/1".to_string(), 400, "bad_request"),
        ("/tile/0/000.p/0".to_string(), 400, "bad_request"),
        ("/tile/0/000.p/256".to_string(), 400, "bad_request"),
        ("/tile/0/000.p/01".to_string(), 400, "bad_request"),
        ("/tile/64/000".to_string(), 400, "bad_request"),
        ("/tile/-1/000".to_string(), 400, "bad_request"),
        (
            "/tile/0/x18446744073709551616".to_string(),
            400,
            "bad_request",
        ),
        ("/tile/entries/x000/002".to_string(), 400, "bad_request"),
        ("/tile/entries/%FF".to_string(), 400, "bad_request"),
        ("/tile/0/x999/999".to_string(), 404, "not_found"),
        ("/tile/entries/x999/999".to_string(), 404, "not_found"),
        ("/tile/5/000".to_string(), 404, "not_found"),
        ("/no/such/route".to_string(), 404, "not_found"),
    ];
    for (path, status, code) in &cases {
        get(&log, path).await.expect_error(path, *status, code);
    }
    // Methods the routes do not have.
    for (method, path) in [
        (reqwest::Method::DELETE, "/checkpoint"),
        (reqwest::Method::PUT, "/v1/entries"),
        (reqwest::Method::POST, "/v1/log"),
        (reqwest::Method::GET, "/v1/companies"),
        (reqwest::Method::POST, "/tile/0/000"),
    ] {
        send(&log, log.client.request(method.clone(), log.url(path)))
            .await
            .expect_error(&format!("{method} {path}"), 405, "method_not_allowed");
    }
    state_unchanged(&log, &mut seen, "reads").await;

    // ---------------------------------------------------------------- slow clients
    // A client that sends its headers and trickles the body is cut off with 408
    // (the body time-out is --request-timeout-secs, here 3 s) while others are served.
    let addr = log.base.trim_start_matches("http://").to_string();
    let before = ok.load(Ordering::SeqCst);
    let slow = tokio::task::spawn_blocking(move || trickle_body(&addr, 200));
    let answer = slow.await.expect("slow client thread");
    let status_line = answer.lines().next().unwrap_or_default().to_string();
    assert!(
        status_line.starts_with("HTTP/1.1 408"),
        "slow client: {answer}"
    );
    assert!(
        answer.contains("\"error\":\"request_timeout\""),
        "slow client body: {answer}"
    );
    assert!(
        ok.load(Ordering::SeqCst) > before,
        "the good client was served while the slow client trickled"
    );
    state_unchanged(&log, &mut seen, "slow client").await;

    // ---------------------------------------------------------------- the end
    stop.store(true, Ordering::SeqCst);
    let failures = good_task.await.expect("good client task");
    assert!(
        failures.is_empty(),
        "the well-behaved client was refused: {failures:?}"
    );
    let served = ok.load(Ordering::SeqCst);
    assert!(served > 0, "the good client submitted nothing");
    state_unchanged(&log, &mut seen, "end").await;
    assert_eq!(
        seen,
        start_size + served,
        "exactly the good client's entries were logged"
    );
    let h = log.get_json("/healthz").await;
    assert_eq!(h["status"], "ok");
}

/// The witness's `POST /add-checkpoint` (tlog-witness; its errors are the
/// `text/plain` bodies that spec/witness.md §3 fixes, not the log's JSON): every
/// malformed request gets its status, nothing is cosigned, and a good request is
/// still cosigned afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_witness_requests() {
    use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
    use candor_core::note::SignerKey;
    use candor_core::witness_protocol::AddCheckpointRequest;
    use std::io::BufRead as _;

    let dir = tempfile::tempdir().expect("tmp");
    let log_key = SignerKey::generate("log.example/w").expect("key");
    let wkey = SignerKey::generate("witness.example").expect("key");
    let wkey_path = dir.path().join("w.key");
    std::fs::write(&wkey_path, format!("{wkey}\n")).expect("write key");
    let mut child = std::process::Command::new(common::CANDOR)
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
        .arg(&wkey_path)
        .arg("--data")
        .arg(dir.path().join("wdata"))
        .arg("--log")
        .arg(log_key.verifier().to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn witness");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = line.trim().rsplit(' ').next().expect("url").to_string() + "/add-checkpoint";
    let client = reqwest::Client::new();

    let leaf = candor_core::hash::leaf_hash(b"leaf 0");
    let cp = |key: &SignerKey, size: u64| {
        sign_checkpoint(
            &Checkpoint {
                origin: "log.example/w".into(),
                size,
                root: leaf,
                extensions: vec![],
            },
            key,
        )
        .expect("sign")
    };
    let good = AddCheckpointRequest {
        old_size: 0,
        proof: vec![],
        checkpoint: cp(&log_key, 1),
    }
    .to_bytes();
    let forger = SignerKey::generate("log.example/w").expect("key");
    let mut other_origin = good.clone();
    let at = other_origin
        .windows(3)
        .position(|w| w == b"log")
        .expect("origin");
    other_origin[at] = b'L';
    let too_many_lines = {
        let mut b = b"old 0\n".to_vec();
        for _ in 0..64 {
            b.extend_from_slice(format!("{}\n", leaf.to_base64()).as_bytes());
        }
        b.push(b'\n');
        b.extend(cp(&log_key, 1));
        b
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty", vec![], 400),
        ("truncated", good[..good.len() / 2].to_vec(), 400),
        ("invalid UTF-8", vec![0xff, 0xfe, b'\n', b'\n'], 400),
        (
            "old size overflow",
            [b"old 18446744073709551616\n\n".as_slice(), &cp(&log_key, 1)].concat(),
            400,
        ),
        (
            "old size leading zero",
            [b"old 00\n\n".as_slice(), &cp(&log_key, 1)].concat(),
            400,
        ),
        (
            "old size negative",
            [b"old -1\n\n".as_slice(), &cp(&log_key, 1)].concat(),
            400,
        ),
        (
            "bad base64 proof line",
            [b"old 0\n!!!!\n\n".as_slice(), &cp(&log_key, 1)].concat(),
            400,
        ),
        ("64 proof lines", too_many_lines, 400),
        (
            "old beyond size",
            [b"old 5\n\n".as_slice(), &cp(&log_key, 1)].concat(),
            400,
        ),
        ("huge body", vec![b'a'; 70_000], 413),
        ("unknown origin", other_origin, 404),
        (
            "forged log signature",
            AddCheckpointRequest {
                old_size: 0,
                proof: vec![],
                checkpoint: cp(&forger, 1),
            }
            .to_bytes(),
            403,
        ),
        (
            "proof with old 0",
            AddCheckpointRequest {
                old_size: 0,
                proof: vec![leaf],
                checkpoint: cp(&log_key, 1),
            }
            .to_bytes(),
            422,
        ),
    ];
    for (what, body, status) in cases {
        let r = client.post(&url).body(body).send().await.expect("POST");
        let st = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(st, status, "{what}: {text}");
    }
    // Nothing was cosigned: a first request with old 0 is still accepted.
    let r = client.post(&url).body(good).send().await.expect("POST");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// SECURITY.md, "Key handling": the log's key and admin token are written mode
/// 0600, and neither appears in anything the log prints, even at `RUST_LOG=trace`
/// through a registration (which sends the token) and some submissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_are_0600_and_never_printed() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(common::CANDOR)
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--batch-delay-ms", "5"])
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn candor serve");
    // Wait for the listen line.
    let base = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = std::fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(l) = out.lines().find_map(|l| l.strip_prefix("listening on ")) {
                break l.trim().to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no listen line: {out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let client = reqwest::Client::new();
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("token")
        .trim()
        .to_string();
    let acme = Company::new("acme.example");
    let r = client
        .post(format!("{base}/v1/companies"))
        .bearer_auth(&token)
        .json(&json!({"name": "acme.example", "verifier_key": acme.verifier_key().to_string(), "action": "register"}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 200);
    for n in 0..3 {
        let r = client
            .post(format!("{base}/v1/entries"))
            .header("content-type", "application/json")
            .body(signed_json(&acme.entry(n)))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 200);
    }
    // A wrong token is refused and not echoed either.
    let wrong = "f".repeat(64);
    let r = client
        .post(format!("{base}/v1/companies"))
        .bearer_auth(&wrong)
        .json(&json!({}))
        .send()
        .await
        .expect("bad admin");
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap_or_default().contains(&wrong));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    for file in ["log.key", "admin.token"] {
        let mode = std::fs::metadata(data.join(file))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
    }
    let key_text = std::fs::read_to_string(data.join("log.key")).expect("key");
    // PRIVATE+KEY+<name>+<hex id>+<base64>: the base64 may itself hold '+', so take
    // everything after the fourth '+', not after the last.
    let key_b64 = key_text.trim().splitn(5, '+').nth(4).expect("base64 part");
    assert!(
        key_b64.len() >= 44,
        "the whole key, not a fragment: {key_b64}"
    );
    let printed = std::fs::read_to_string(&out_path).expect("stdout")
        + &std::fs::read_to_string(&err_path).expect("stderr");
    assert!(printed.contains("listening on"), "output captured");
    assert!(printed.len() > 500, "trace output captured: {printed}");
    for (what, secret) in [
        ("the log's private key", key_b64),
        ("PRIVATE+KEY", "PRIVATE+KEY"),
        ("the admin token", token.as_str()),
    ] {
        assert!(
            !printed.contains(secret),
            "{what} appears in the log's output"
        );
    }
}

/// SECURITY.md, "Rate limits": a flood from one company gets 429 with
/// Retry-After while another company is still served; forged entries in a
/// company's name do not use up that company's allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_company_rate_limits() {
    let log = LogServer::start("redb", &["--rate-limit", "1/s", "--rate-burst", "3"]).await;
    let flood = log.register_company("flood.example").await;
    let quiet = log.register_company("quiet.example").await;

    // Forged submissions in quiet's name (right key id, wrong signature) are refused
    // with 422 and must not exhaust quiet's bucket.
    let impostor = Company::new("quiet.example");
    for n in 0..6 {
        let forged = mutate(&quiet.entry(1000 + n), |v| {
            v["signature"] = json!(impostor.entry(1000 + n).signature)
        });
        post_json(&log, forged)
            .await
            .expect_error("forged entry", 422, "bad_signature");
    }

    let mut limited = 0;
    for n in 0..10 {
        let r = post_json(&log, signed_json(&flood.entry(n))).await;
        match r.status {
            200 => {}
            429 => {
                r.expect_error("flood", 429, "rate_limited");
                let secs: u64 = r
                    .retry_after
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .expect("Retry-After in seconds");
                assert!(secs >= 1);
                limited += 1;
            }
            s => panic!(
                "flood: unexpected {s}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
    assert!(
        limited >= 5,
        "only {limited} of 10 flood requests were limited"
    );
    // A batch larger than the burst can never pass: 429 naming the burst.
    let batch: Vec<SignedEntry> = (50..54).map(|n| flood.entry(n)).collect();
    let v = post_ndjson(&log, ndjson(&batch)).await.expect_error(
        "batch over the burst",
        429,
        "rate_limited",
    );
    assert!(v["detail"].as_str().unwrap_or("").contains("burst"));
    // The other company is served meanwhile, its full burst intact.
    for n in 0..3 {
        let r = post_json(&log, signed_json(&quiet.entry(n))).await;
        assert_eq!(
            r.status,
            200,
            "quiet company: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}
