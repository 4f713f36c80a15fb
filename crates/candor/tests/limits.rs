//! The log's load limits and time-outs through the real binary (issue 3, spec/api.md
//! §6): a full sequencing pool answers `429 pool_full` and logs nothing of the refused
//! request; a submission that waits longer than the request time-out gets `503` and
//! its entry, already in the pool, is logged exactly once (resubmitting returns the
//! same index); a client that sends its headers slowly, or connects and says nothing,
//! is cut off after the header time-out while other clients are served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{LogServer, ndjson, signed_json};
use serde_json::Value;

fn flags(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

/// Reads `candor_pool_entries` from `/metrics`.
async fn pool_entries(log: &LogServer) -> u64 {
    let (st, body) = log.get("/metrics").await;
    assert_eq!(st, 200);
    let text = String::from_utf8(body).expect("metrics are UTF-8");
    text.lines()
        .find_map(|l| l.strip_prefix("candor_pool_entries "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("candor_pool_entries in /metrics")
}

async fn log_size(log: &LogServer) -> u64 {
    log.get_json("/v1/log").await["size"]
        .as_u64()
        .expect("size")
}

/// Waits (bounded) until `cond` holds on the log.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {}", String::from_utf8_lossy(body)));
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "error without detail: {v}"
    );
    v["error"].as_str().expect("error code").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_pool_is_refused_with_429_and_nothing_of_it_is_logged() {
    // Registration first, with the default batching; then the same log with a pool of
    // 20 entries and a 3 s batch delay, so that a 20-entry request fills the pool.
    let mut log = LogServer::start("redb", &[]).await;
    let acme = log.register_company("acme.example").await;
    log.extra = flags(&[
        "--pool-entries",
        "20",
        "--max-batch-lines",
        "20",
        "--batch-size",
        "1000",
        "--batch-delay-ms",
        "3000",
    ]);
    log.restart().await;
    let before = log_size(&log).await;

    let filling: Vec<_> = (0..20).map(|i| acme.entry(i)).collect();
    let filler = {
        let (client, url, body) = (log.client.clone(), log.url("/v1/entries"), ndjson(&filling));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .expect("POST filler");
            (r.status().as_u16(), r.bytes().await.expect("body").to_vec())
        })
    };
    wait_until("the pool to hold 20 entries", || async {
        pool_entries(&log).await == 20
    })
    .await;

    // One more entry, as JSON and as NDJSON: both refused while the pool is full.
    let extra = acme.entry(100);
    let r = log
        .client
        .post(log.url("/v1/entries"))
        .header("content-type", "application/json")
        .body(signed_json(&extra))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 429);
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("429 carries Retry-After in seconds");
    assert!(retry >= 1);
    assert_eq!(error_code(&r.bytes().await.expect("body")), "pool_full");
    let (st, body) = log
        .post_entries("application/x-ndjson", ndjson(std::slice::from_ref(&extra)))
        .await;
    assert_eq!(st, 429);
    assert_eq!(error_code(&body), "pool_full");

    // Reads are served meanwhile.
    let (st, _) = log.get("/checkpoint").await;
    assert_eq!(st, 200);

    // The filler is sequenced; the refused entry is not in the log.
    let (st, body) = filler.await.expect("filler task");
    assert_eq!(st, 200, "filler: {}", String::from_utf8_lossy(&body));
    assert_eq!(
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        20
    );
    assert_eq!(log_size(&log).await, before + 20);
    // The permits go back when the sequencer drops the batch, just after answering.
    wait_until("the pool to empty", || async {
        pool_entries(&log).await == 0
    })
    .await;

    // With room again, the same entry is accepted as a NEW entry: had the refused
    // request logged it, this would return its earlier index (idempotence).
    let receipt = log.submit(&extra).await;
    assert_eq!(receipt["index"].as_u64(), Some(before + 20));
    assert_eq!(log_size(&log).await, before + 21);
    log.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submission_outliving_the_request_timeout_gets_503_and_is_logged_once() {
    let mut log = LogServer::start("sled", &[]).await;
    let acme = log.register_company("acme.example").await;
    // Batches wait 3 s, requests 1 s: a submission's answer cannot come in time.
    log.extra = flags(&["--batch-delay-ms", "3000", "--request-timeout-secs", "1"]);
    log.restart().await;
    let before = log_size(&log).await;

    let e = acme.entry(7);
    let (st, body) = log
        .post_entries("application/json", signed_json(&e).into_bytes())
        .await;
    assert_eq!(st, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_code(&body), "unavailable");
    let detail: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(
        detail["detail"]
            .as_str()
            .is_some_and(|d| d.contains("resubmit")),
        "the 503 tells the client to resubmit: {detail}"
    );

    // The entry was in the pool: it is sequenced anyway, once.
    wait_until("the timed-out entry to be sequenced", || async {
        log_size(&log).await == before + 1
    })
    .await;
    let (st, body) = log.get(&format!("/v1/entries/{before}")).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));

    // Resubmitting the identical entry (with batches that fit in the time-out again)
    // returns the index it already has and adds no copy.
    log.extra = vec![];
    log.restart().await;
    let receipt = log.submit(&e).await;
    assert_eq!(receipt["index"].as_u64(), Some(before));
    assert_eq!(log_size(&log).await, before + 1);
    log.stop();
}

/// Opens a connection, sends `head` (part of a request's headers, a whole request,
/// or nothing), and returns what the server sent and whether it closed the
/// connection, waiting up to `limit`.
fn stall(addr: &str, head: &[u8], limit: Duration) -> (Vec<u8>, bool, Duration) {
    let started = Instant::now();
    // `closed` is false if the client's own limit (here 20 s, several times the
    // server's time-outs) ran out first.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(limit)).expect("read timeout");
    s.write_all(head).expect("partial headers");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            // Reset by the server also means it gave up on us.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (got, closed, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_silent_connections_are_cut_off_after_the_header_timeout() {
    // --request-timeout-secs 2: a new connection must speak within min(2, 10) = 2 s;
    // --idle-timeout-secs 3: headers must be complete, and an idle keep-alive
    // connection speak again, within 3 s.
    let mut log = LogServer::start(
        "redb",
        &["--request-timeout-secs", "2", "--idle-timeout-secs", "3"],
    )
    .await;
    let acme = log.register_company("acme.example").await;
    let addr = log.base.trim_start_matches("http://").to_string();

    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            stall(
                &addr,
                b"GET /checkpoint HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                Duration::from_secs(20),
            )
        })
    };
    let silent = {
        let addr = addr.clone();
        std::thread::spawn(move || stall(&addr, b"", Duration::from_secs(20)))
    };
    // Meanwhile the log serves others, reads and writes.
    for i in 0..5 {
        let receipt = log.submit(&acme.entry(i)).await;
        assert!(receipt["index"].as_u64().is_some());
        let (st, _) = log.get("/checkpoint").await;
        assert_eq!(st, 200);
    }

    for (what, handle) in [("slow headers", slow), ("silent connection", silent)] {
        let (got, closed, took) = handle.join().expect("client thread");
        assert!(
            closed,
            "{what}: the server kept the connection open for {took:?}"
        );
        // Either closed without a word or with a 408; never a served request.
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: unexpected answer {text:?}"
        );
    }

    // A keep-alive connection that goes quiet after a request is closed as well.
    let (got, closed, _) = stall(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(20),
    );
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "the request itself is served"
    );
    assert!(closed, "an idle keep-alive connection is closed");
    log.stop();
}

/// A body over `--max-body-bytes` is answered `413` before the server has read it
/// all. The server must then close the connection gracefully, draining what the
/// client still sends: closing a socket with unread bytes resets it, and a reset
/// makes the client drop the 413 it has not read yet (spec/api.md §6.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_over_the_limit_get_their_413_and_never_a_reset() {
    let log = LogServer::start("redb", &["--max-body-bytes", "65536"]).await;
    let huge = vec![b' '; 4 * 1024 * 1024];
    for round in 0..40 {
        // A client that keeps no connection, as a fresh one-off uploader would.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let req = client
            .post(log.url("/v1/entries"))
            .header("content-type", "application/x-ndjson");
        let req = if round % 2 == 0 {
            req.body(huge.clone())
        } else {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                huge.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
            req.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: no answer to an oversized body: {e:?}"));
        assert_eq!(resp.status().as_u16(), 413, "round {round}");
        let body = resp.bytes().await.expect("413 body");
        assert_eq!(error_code(&body), "too_large", "round {round}");
    }
    assert_eq!(
        log_size(&log).await,
        0,
        "nothing of the refused bodies is logged"
    );
}
