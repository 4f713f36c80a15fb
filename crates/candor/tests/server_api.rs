//! The log server through the real binary over loopback HTTP, for both storage backends
//! (issue 3): registration, single and NDJSON submissions, receipts, tiles and bundles,
//! look-ups, proofs, dedup, restart, every error status, refusal to fork.

mod common;

use base64::Engine as _;
use candor_core::checkpoint::{self, Checkpoint};
use candor_core::entry::Leaf;
use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::{self, MemoryTree};
use candor_core::note::VerifierKey;
use candor_core::tiles;
use candor_core::tlog_proof::TlogProof;
use common::{Company, LogServer, ndjson, signed_json};
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| Hash::from_slice(&b64(h)).expect("32 bytes"))
        .collect()
}

/// Runs receipts.md §3 steps 1–6 on `r`; returns the checkpoint it proves inclusion in.
fn verify_receipt(r: &Value, log: &VerifierKey, signer: &VerifierKey) -> Checkpoint {
    let leaf = b64(&r["leaf"]);
    let lh = leaf_hash(&leaf);
    assert_eq!(r["leaf_hash"].as_str(), Some(lh.to_hex().as_str()));
    let tp = TlogProof::parse(r["tlog_proof"].as_str().expect("tlog_proof").as_bytes())
        .expect("tlog-proof parses");
    assert_eq!(Some(tp.index), r["index"].as_u64());
    let cp = tp
        .verify(&lh, log)
        .expect("inclusion in a log-signed checkpoint");
    assert_eq!(r["log"].as_str(), Some(cp.origin.as_str()));
    let parsed = Leaf::parse(&leaf).expect("canonical leaf");
    parsed
        .signed_entry()
        .verify(signer.verifying_key())
        .expect("company signature");
    if parsed.entry.kind() != "company_key" {
        let ck = &r["company_key"];
        let ck_leaf = b64(&ck["leaf"]);
        let ck_index = ck["index"].as_u64().expect("company_key.index");
        assert!(ck_index < tp.index);
        merkle::verify_inclusion(
            ck_index,
            cp.size,
            &leaf_hash(&ck_leaf),
            &hashes(&ck["proof"]),
            &cp.root,
        )
        .expect("company_key inclusion in the same checkpoint");
        let reg = Leaf::parse(&ck_leaf).expect("registration leaf");
        assert_eq!(reg.entry.kind(), "company_key");
        assert_eq!(reg.entry.company(), parsed.entry.company());
    }
    cp
}

async fn published(s: &LogServer) -> Checkpoint {
    let note = s.checkpoint().await;
    checkpoint::open_checkpoint(&note, &s.verifier_key)
        .expect("checkpoint verifies")
        .0
}

/// Fetches every tile and bundle of the published tree and checks them against the
/// leaves and the checkpoint root; returns the leaf hashes.
async fn check_tiles(s: &LogServer) -> Vec<Hash> {
    let cp = published(s).await;
    let mut leaves = Vec::new();
    for b in tiles::bundles_for_size(cp.size) {
        let (st, body) = s.get(&format!("/{}", b.path())).await;
        assert_eq!(st, 200, "{}", b.path());
        let entries = tiles::decode_bundle(&body).expect("bundle decodes");
        assert_eq!(entries.len(), b.width as usize);
        leaves.extend(entries.iter().map(|e| leaf_hash(e)));
    }
    assert_eq!(leaves.len() as u64, cp.size);
    assert_eq!(
        merkle::root_from_leaf_hashes(&leaves),
        cp.root,
        "bundles hash to the root"
    );
    let tree = MemoryTree::from_leaf_hashes(&leaves);
    for t in tiles::tiles_for_size(cp.size) {
        let r = s
            .client
            .get(s.url(&format!("/{}", t.path())))
            .send()
            .await
            .expect("GET tile");
        assert_eq!(r.status(), 200, "{}", t.path());
        let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
        assert_eq!(cache.contains("immutable"), t.width == 256, "{}", t.path());
        let body = r.bytes().await.unwrap();
        assert_eq!(
            body.as_ref(),
            tiles::read_tile_data(t, &tree).unwrap().as_slice(),
            "{}",
            t.path()
        );
    }
    leaves
}

async fn lifecycle(store: &str) {
    let mut s = LogServer::start(store, &[]).await;
    let log = s.verifier_key.clone();
    let empty = published(&s).await;
    assert_eq!(empty.size, 0);
    assert_eq!(empty.origin, s.origin);

    let acme = s.register_company("acme.example").await;
    let beta = s.register_company("beta.example").await;
    let keys = s.get_json("/v1/companies/acme.example").await;
    assert_eq!(keys["keys"][0]["registered_index"], 0);
    assert_eq!(keys["keys"][0]["revoked_index"], Value::Null);

    // Single submissions.
    let mut receipts = Vec::new();
    for n in 0..3 {
        let r = s.submit(&acme.entry(n)).await;
        verify_receipt(&r, &log, &acme.verifier_key());
        receipts.push(r);
    }
    // NDJSON batches crossing a tile boundary, from two companies.
    let batch: Vec<_> = (0..300)
        .map(|n| {
            if n % 3 == 0 {
                beta.entry(n)
            } else {
                acme.entry(100 + n)
            }
        })
        .collect();
    let rs = s.submit_ndjson(&batch).await;
    assert_eq!(rs.len(), 300);
    let mut last = 0;
    for (i, r) in rs.iter().enumerate() {
        let signer = if i % 3 == 0 { &beta } else { &acme };
        verify_receipt(r, &log, &signer.verifier_key());
        let idx = r["index"].as_u64().unwrap();
        assert!(
            idx > last,
            "receipts in request order with increasing indices"
        );
        last = idx;
    }
    receipts.extend(rs);
    let cp = published(&s).await;
    assert_eq!(cp.size, 2 + 3 + 300);

    // Dedup: a single resubmission and duplicates inside one NDJSON request.
    let again = s.submit(&acme.entry(1)).await;
    assert_eq!(again["index"], receipts[1]["index"]);
    verify_receipt(&again, &log, &acme.verifier_key());
    let dup = s
        .submit_ndjson(&[acme.entry(5000), acme.entry(5000), acme.entry(2)])
        .await;
    assert_eq!(dup[0]["index"], dup[1]["index"]);
    assert_eq!(dup[2]["index"], receipts[2]["index"]);
    let cp = published(&s).await;
    assert_eq!(cp.size, 306, "duplicates add nothing");

    // Tiles and bundles; partial prefixes; beyond the tree.
    let leaves = check_tiles(&s).await;
    let (st, body) = s.get("/tile/0/000.p/10").await;
    assert_eq!(st, 200);
    assert_eq!(body.len(), 320);
    let (st, _) = s.get("/tile/0/001.p/51").await;
    assert_eq!(st, 404, "wider than the tile at the published size");
    let (st, _) = s.get("/tile/0/002").await;
    assert_eq!(st, 404);
    let (st, _) = s.get("/tile/entries/001.p/50").await;
    assert_eq!(st, 200);

    // Look-ups by index and by leaf hash.
    for i in [0u64, 2, 255, 256, 305] {
        let e = s.get_json(&format!("/v1/entries/{i}")).await;
        assert_eq!(e["index"], i);
        assert_eq!(
            e["leaf_hash"].as_str(),
            Some(leaves[i as usize].to_hex().as_str())
        );
        let by_hash = s
            .get_json(&format!("/v1/entries?leaf_hash={}", leaves[i as usize]))
            .await;
        assert_eq!(by_hash, e);
        let r = s.get_json(&format!("/v1/receipts/{i}")).await;
        let signer = if i < 2 {
            log.clone()
        } else {
            let company = e["entry"]["company"].as_str().unwrap();
            if company == "acme.example" {
                acme.verifier_key()
            } else {
                beta.verifier_key()
            }
        };
        let rcp = verify_receipt(&r, &log, &signer);
        assert_eq!(
            rcp.size, cp.size,
            "fresh receipt against the latest checkpoint"
        );
    }

    // Inclusion and consistency proofs for many (index, size) pairs.
    let tree = MemoryTree::from_leaf_hashes(&leaves);
    for size in [1u64, 2, 3, 7, 64, 255, 256, 257, 300, 306] {
        let root = tree.root_at(size).unwrap();
        for index in [0, size / 3, size / 2, size - 1] {
            let p = s
                .get_json(&format!("/v1/proof/inclusion?index={index}&size={size}"))
                .await;
            assert_eq!(Hash::from_slice(&b64(&p["root"])), Some(root));
            merkle::verify_inclusion(
                index,
                size,
                &leaves[index as usize],
                &hashes(&p["proof"]),
                &root,
            )
            .unwrap_or_else(|e| panic!("inclusion {index}@{size}: {e}"));
        }
        for old in [1u64, size / 2, size] {
            if old == 0 {
                continue;
            }
            let p = s
                .get_json(&format!("/v1/proof/consistency?old={old}&new={size}"))
                .await;
            let old_root = tree.root_at(old).unwrap();
            assert_eq!(Hash::from_slice(&b64(&p["old_root"])), Some(old_root));
            merkle::verify_consistency(old, size, &old_root, &root, &hashes(&p["proof"]))
                .unwrap_or_else(|e| panic!("consistency {old}->{size}: {e}"));
        }
    }

    // /v1/log, metrics, compression of JSON but never of tiles.
    let info = s.get_json("/v1/log").await;
    assert_eq!(info["size"], 306);
    assert_eq!(
        info["verifier_key"].as_str(),
        Some(log.to_string().as_str())
    );
    let (st, m) = s.get("/metrics").await;
    assert_eq!(st, 200);
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("candor_entries_total 306"), "{m}");
    assert!(m.contains("candor_duplicate_submissions_total 3"), "{m}");
    assert!(m.contains("candor_http_responses_total{status=\"200\"}"));
    assert!(m.contains("candor_sequencing_seconds_count"));
    let gz = s
        .client
        .get(s.url("/v1/proof/consistency?old=1&new=306"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        gz.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let tile = s
        .client
        .get(s.url("/tile/0/000"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(tile.headers().get("content-encoding").is_none());

    // Restart: everything kept, then new checkpoints stay consistent with the old one.
    let before = s.checkpoint().await;
    s.restart().await;
    assert_eq!(
        s.checkpoint().await,
        before,
        "same checkpoint after a restart"
    );
    assert_eq!(check_tiles(&s).await, leaves);
    let again = s.submit(&acme.entry(0)).await;
    assert_eq!(
        again["index"], receipts[0]["index"],
        "dedup survives a restart"
    );
    let r = s.submit(&beta.entry(9999)).await;
    let new_cp = verify_receipt(&r, &log, &beta.verifier_key());
    assert_eq!(new_cp.size, 307);
    let p = s.get_json("/v1/proof/consistency?old=306&new=307").await;
    merkle::verify_consistency(306, 307, &cp.root, &new_cp.root, &hashes(&p["proof"]))
        .expect("new checkpoint consistent with the one before the restart");
    let st = s.stop();
    assert!(st.success(), "graceful shutdown exits 0: {st}");
}

/// Expects `(status, error code)` and an unchanged checkpoint.
async fn expect_error(
    s: &LogServer,
    before: &[u8],
    got: (u16, Vec<u8>),
    status: u16,
    code: &str,
) -> Value {
    let body: Value = serde_json::from_slice(&got.1)
        .unwrap_or_else(|_| panic!("error body is JSON: {}", String::from_utf8_lossy(&got.1)));
    assert_eq!(got.0, status, "{body}");
    assert_eq!(body["error"].as_str(), Some(code), "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(
        s.checkpoint().await,
        before,
        "a client fault never changes the log"
    );
    body
}

async fn errors(store: &str) {
    let s = LogServer::start(
        store,
        &[
            "--max-batch-lines",
            "5",
            "--rate-limit",
            "1/s",
            "--rate-burst",
            "4",
        ],
    )
    .await;
    let acme = s.register_company("acme.example").await;
    let old = s.register_company("old.example").await;
    let rl = s.register_company("rate.example").await;
    let (st, _) = s
        .company_request("old.example", &old.verifier_key().to_string(), "revoke")
        .await;
    assert_eq!(st, 200);
    let before = s.checkpoint().await;
    let json = "application/json";
    let nd = "application/x-ndjson";

    // 400
    let got = s.post_entries(json, b"{not json".to_vec()).await;
    expect_error(&s, &before, got, 400, "malformed_json").await;
    let got = s.get("/tile/0/0x1").await;
    expect_error(&s, &before, got, 400, "bad_request").await;
    let got = s.get("/v1/proof/inclusion?index=5&size=5").await;
    expect_error(&s, &before, got, 400, "bad_request").await;
    let got = s.get("/v1/entries/01").await;
    expect_error(&s, &before, got, 400, "bad_request").await;
    // 401
    let r = s
        .client
        .post(s.url("/v1/companies"))
        .json(&serde_json::json!({"name": "x.example", "verifier_key": "", "action": "register"}))
        .send()
        .await
        .unwrap();
    let got = (r.status().as_u16(), r.bytes().await.unwrap().to_vec());
    expect_error(&s, &before, got, 401, "unauthorized").await;
    let r = s
        .client
        .post(s.url("/v1/companies"))
        .bearer_auth("0".repeat(64))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let got = (r.status().as_u16(), r.bytes().await.unwrap().to_vec());
    expect_error(&s, &before, got, 401, "unauthorized").await;
    // 403: unknown company, unknown key, revoked key, reserved kind.
    let stranger = Company::new("stranger.example");
    let got = s
        .post_entries(json, signed_json(&stranger.entry(1)).into_bytes())
        .await;
    expect_error(&s, &before, got, 403, "unknown_company").await;
    let impostor = Company::new("acme.example");
    let got = s
        .post_entries(json, signed_json(&impostor.entry(1)).into_bytes())
        .await;
    expect_error(&s, &before, got, 403, "unknown_key").await;
    let got = s
        .post_entries(json, signed_json(&old.entry(1)).into_bytes())
        .await;
    expect_error(&s, &before, got, 403, "key_revoked").await;
    let ck = acme.sign(candor_core::entry::samples::company_key(
        "acme.example",
        acme.verifier_key().verifying_key(),
        candor_core::entry::KeyAction::Register,
    ));
    let got = s.post_entries(json, signed_json(&ck).into_bytes()).await;
    expect_error(&s, &before, got, 403, "reserved_kind").await;
    // 404
    let got = s.get("/v1/entries/99").await;
    expect_error(&s, &before, got, 404, "not_found").await;
    let got = s.get("/v1/receipts/99").await;
    expect_error(&s, &before, got, 404, "not_found").await;
    let got = s.get("/v1/proof/consistency?old=1&new=99").await;
    expect_error(&s, &before, got, 404, "not_found").await;
    let got = s
        .get(&format!("/v1/entries?leaf_hash={}", "ab".repeat(32)))
        .await;
    expect_error(&s, &before, got, 404, "not_found").await;
    let got = s.get("/nothing/here").await;
    expect_error(&s, &before, got, 404, "not_found").await;
    // 409
    let (st, body) = s
        .company_request("acme.example", &acme.verifier_key().to_string(), "register")
        .await;
    assert_eq!((st, body["error"].as_str()), (409, Some("conflict")));
    let (st, _) = s
        .company_request(
            "acme.example",
            &impostor.verifier_key().to_string(),
            "revoke",
        )
        .await;
    assert_eq!(st, 409);
    assert_eq!(s.checkpoint().await, before);
    // 413: too many NDJSON lines; an oversized entry.
    let six: Vec<_> = (0..6).map(|n| acme.entry(n)).collect();
    let got = s.post_entries(nd, ndjson(&six)).await;
    expect_error(&s, &before, got, 413, "too_large").await;
    let got = s.post_entries(json, vec![b' '; 70 * 1024]).await;
    expect_error(&s, &before, got, 413, "too_large").await;
    // 415
    let got = s
        .post_entries("text/plain", signed_json(&acme.entry(1)).into_bytes())
        .await;
    expect_error(&s, &before, got, 415, "unsupported_media_type").await;
    // 422: bad signature (line-numbered, whole request refused), bad entry, key/name mismatch.
    let mut forged = acme.entry(7);
    forged.signature = impostor.entry(7).signature;
    let batch = vec![acme.entry(8), acme.entry(9), forged.clone()];
    let got = s.post_entries(nd, ndjson(&batch)).await;
    let body = expect_error(&s, &before, got, 422, "bad_signature").await;
    assert_eq!(body["line"], 3);
    let mut v: Value = serde_json::from_str(&signed_json(&acme.entry(10))).unwrap();
    v["entry"]["channel"] = Value::from("carrier-pigeon");
    let got = s.post_entries(json, v.to_string().into_bytes()).await;
    expect_error(&s, &before, got, 422, "invalid_entry").await;
    let (st, body) = s
        .company_request(
            "other.example",
            &acme.verifier_key().to_string(),
            "register",
        )
        .await;
    assert_eq!((st, body["error"].as_str()), (422, Some("invalid_entry")));
    assert_eq!(s.checkpoint().await, before);
    // 429: the bucket holds 4 tokens; 5 entries can never pass, and after 4 the 5th waits.
    let five: Vec<_> = (20..25).map(|n| rl.entry(n)).collect();
    let got = s.post_entries(nd, ndjson(&five)).await;
    assert_eq!(got.0, 429);
    let four: Vec<_> = (20..24).map(|n| rl.entry(n)).collect();
    let rs = s.submit_ndjson(&four).await;
    assert_eq!(rs.len(), 4);
    let before = s.checkpoint().await;
    let r = s
        .client
        .post(s.url("/v1/entries"))
        .header("content-type", json)
        .body(signed_json(&rl.entry(30)))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let got = (r.status().as_u16(), r.bytes().await.unwrap().to_vec());
    expect_error(&s, &before, got, 429, "rate_limited").await;
}

/// A stored checkpoint ahead of the durable tree (a lost write) makes the log refuse to
/// start; so do a changed origin and a foreign key.
async fn refuses_to_fork(store: &str) {
    let mut s = LogServer::start(store, &[]).await;
    let acme = s.register_company("acme.example").await;
    s.submit(&acme.entry(1)).await;
    let cp = published(&s).await;
    let st = s.stop();
    assert!(st.success());
    let data = s.data.clone();

    let err = common::serve_should_fail(&data, store, &["--origin", "other.example/log"]);
    assert!(err.contains("origin"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let foreign = tmp.path().join("foreign.key");
    let key = candor_core::note::SignerKey::generate(&s.origin).unwrap();
    std::fs::write(&foreign, key.to_string()).unwrap();
    let err = common::serve_should_fail(&data, store, &["--key", foreign.to_str().unwrap()]);
    assert!(err.contains("does not verify"), "{err}");

    // Sign (with the real log key) a checkpoint two entries ahead of the durable tree.
    let log_key: candor_core::note::SignerKey = std::fs::read_to_string(data.join("log.key"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ahead = Checkpoint {
        size: cp.size + 2,
        ..cp.clone()
    };
    {
        let kind = store.parse().unwrap();
        let st = candor_store::open_store(kind, &data).unwrap();
        st.put_checkpoint(&checkpoint::sign_checkpoint(&ahead, &log_key).unwrap())
            .unwrap();
    }
    let err = common::serve_should_fail(&data, store, &[]);
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains(&format!("size {}", cp.size + 2)), "{err}");
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod redb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name("redb").await })*
        }
        mod sled {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name("sled").await })*
        }
    };
}

both_backends!(lifecycle, errors, refuses_to_fork);

/// The redb tuning flags take positive numbers only; zero would stop the index from
/// ever being flushed or merged, so `candor serve` refuses it by name, from a flag or
/// from the config file.
#[test]
fn redb_index_flags_refuse_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let err = common::serve_should_fail(&data, "redb", &["--redb-index-flush-rows", "0"]);
    assert!(
        err.contains("--redb-index-flush-rows must be positive"),
        "{err}"
    );
    let config = tmp.path().join("candor.toml");
    std::fs::write(&config, "redb_index_merge_step = 0\n").unwrap();
    let err = common::serve_should_fail(&data, "redb", &["--config", config.to_str().unwrap()]);
    assert!(
        err.contains("--redb-index-merge-step must be positive"),
        "{err}"
    );
}
