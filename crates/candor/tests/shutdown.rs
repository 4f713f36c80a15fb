//! Graceful shutdown under load (issue 3): on SIGTERM every in-flight submission is
//! either completed (a receipt whose entry survives the restart) or refused with a
//! JSON error, never half-written, and the log exits 0.

mod common;

use common::{Company, LogServer, ndjson};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

async fn sigterm_under_load(store: &str) {
    let mut s = LogServer::start(store, &[]).await;
    let acme = Company::new("acme.example");
    let (st, _) = s
        .company_request(&acme.name, &acme.verifier_key().to_string(), "register")
        .await;
    assert_eq!(st, 200);

    // Eight clients submit NDJSON batches of 20 until the log goes away.
    let mut clients = Vec::new();
    let acked = Arc::new(AtomicUsize::new(0));
    for c in 0..8u64 {
        let acked = Arc::clone(&acked);
        let http = s.client.clone();
        let url = s.url("/v1/entries");
        let entries: Vec<_> = (0..40)
            .map(|b| {
                (0..20)
                    .map(|i| acme.entry(c * 100_000 + b * 100 + i))
                    .collect::<Vec<_>>()
            })
            .collect();
        clients.push(tokio::spawn(async move {
            let mut acknowledged: Vec<Value> = Vec::new();
            let mut refused = 0u32;
            for batch in entries {
                let sent = http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(ndjson(&batch))
                    .send()
                    .await;
                let Ok(r) = sent else { break }; // the log is gone: nothing acknowledged
                let status = r.status().as_u16();
                let Ok(body) = r.bytes().await else { break };
                match status {
                    200 => {
                        acknowledged.extend(
                            body.split(|&b| b == b'\n')
                                .filter(|l| !l.is_empty())
                                .map(|l| serde_json::from_slice::<Value>(l).expect("receipt line")),
                        );
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    503 => {
                        let e: Value = serde_json::from_slice(&body).expect("JSON error body");
                        assert!(e["error"].is_string(), "{e}");
                        refused += 1;
                    }
                    other => panic!(
                        "unexpected status {other}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            (acknowledged, refused)
        }));
    }

    // Let the load build up (a slow machine may take a while for the first batch), then
    // ask the log to stop while batches are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::block_in_place(|| s.stop());
    assert!(status.success(), "graceful shutdown exit status {status}");

    let mut acknowledged = Vec::new();
    for c in clients {
        let (acks, _refused) = c.await.expect("client task");
        acknowledged.extend(acks);
    }
    assert!(
        !acknowledged.is_empty(),
        "some submissions completed before SIGTERM"
    );

    // Every receipt handed out before the shutdown names an entry the restarted log holds.
    let data = s.data.clone();
    let restarted = LogServer::start_in(&data, store, &[]).await;
    let log = restarted.get_json("/v1/log").await;
    let size = log["size"].as_u64().expect("size");
    for r in &acknowledged {
        let index = r["index"].as_u64().expect("index");
        assert!(
            index < size,
            "acknowledged index {index} beyond restarted size {size}"
        );
        let e = restarted.get_json(&format!("/v1/entries/{index}")).await;
        assert_eq!(
            e["leaf"], r["leaf"],
            "entry {index} changed across the shutdown"
        );
    }
    // No entry is half-written: the tree the log serves has exactly `size` leaves and the
    // last one is readable.
    if size > 0 {
        let last = restarted
            .get_json(&format!("/v1/entries/{}", size - 1))
            .await;
        assert!(last["leaf"].is_string());
    }
    drop(restarted);
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_redb() {
    sigterm_under_load("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_sled() {
    sigterm_under_load("sled").await;
}
