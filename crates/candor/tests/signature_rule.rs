//! Issue #23 through the real interfaces: one Ed25519 rule (spec/entries.md §7.1) for
//! the log, `candor verify` and the monitor. Signatures whose `R` is off by a point of
//! order 2, 4 or 8, made by a registered key, sent alone and inside 32-entry requests
//! (which the HTTP handler batch-verifies itself), get the same verdict from the log's
//! answer, `candor verify` of their receipts, the `/verify` page's WebAssembly in
//! headless Chromium, a monitor that followed the log from before, and a fresh
//! monitor. Keys that are not admissible (spec/entries.md §7.2) are
//! refused wherever they are registered or configured.

mod browser_cdp;
mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_core::entry::{self, Entry, SignedEntry, samples};
use candor_core::hash::leaf_hash;
use candor_core::receipt::ReceiptLink;
use common::{CANDOR, Company, LogServer};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use std::path::Path;
use std::process::Command;

/// A point of each small order: EIGHT_TORSION[j] has order 8 / gcd(j, 8).
fn torsion(order: usize) -> EdwardsPoint {
    EIGHT_TORSION[8 / order]
}

fn now_minus(secs: i64) -> String {
    entry::format_time(time::OffsetDateTime::now_utc() - time::Duration::seconds(secs))
}

/// The `n`-th distinct targeting decision of `company`, decided a minute ago (so
/// that no date check of the log or the monitor depends on the calendar).
fn decision(company: &str, n: u64) -> Entry {
    let mut e = samples::load_targeting_decision(company, n);
    if let Entry::TargetingDecision(td) = &mut e {
        td.decided_at = now_minus(60);
    }
    e
}

/// `entry` signed by `c` with `R = [r]B + T`. With `valid`, `s = r + k·a` for that
/// `R` (valid by the rule, refused by a cofactorless check); without it, `s` is the
/// one for another message (invalid under either equation).
fn torsion_signed(c: &Company, entry: Entry, t: EdwardsPoint, valid: bool) -> SignedEntry {
    let mut signed = c.sign(entry);
    let message = signed.entry.signed_message().expect("signed message");
    let sk = c.key.signing_key();
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(&message).into());
    let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
    let k = |m: &[u8]| {
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(sk.verifying_key().as_bytes());
        h.update(m);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    };
    let k = if valid { k(&message) } else { k(b"another") };
    let s = r + k * sk.to_scalar();
    let mut sig = big_r.to_bytes().to_vec();
    sig.extend_from_slice(s.as_bytes());
    signed.signature = STANDARD.encode(sig);
    signed
}

struct Monitor {
    code: i32,
    findings: Vec<Value>,
    stderr: String,
}

/// `candor monitor --once` with state in `state`.
fn monitor_once(log: &LogServer, state: &Path) -> Monitor {
    let out = tokio::task::block_in_place(|| {
        Command::new(CANDOR)
            .args(["monitor", "--once", "--log", &log.base, "--log-key"])
            .arg(log.verifier_key.to_string())
            .arg("--state")
            .arg(state)
            .output()
            .expect("run candor monitor")
    });
    Monitor {
        code: out.status.code().unwrap_or(-1),
        findings: String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("finding JSON"))
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// How far a monitor's state says it verified.
fn verified_size(state: &Path) -> u64 {
    let st: Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).expect("state.json"))
            .expect("state JSON");
    st["verified"]["size"].as_u64().expect("verified size")
}

fn error_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON error body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torsion_offsets_get_one_verdict_from_the_log_verify_and_monitors() {
    let log = LogServer::start("redb", &[]).await;
    let acme = log.register_company("acme.example").await;
    let key = *acme.verifier_key().verifying_key();
    let tmp = tempfile::tempdir().expect("temp dir");

    // A monitor that follows the log from before the entries.
    let followed = tmp.path().join("followed");
    let m = monitor_once(&log, &followed);
    assert_eq!(m.code, 0, "{:?}\n{}", m.findings, m.stderr);
    assert!(m.findings.is_empty(), "{:?}", m.findings);

    let mut receipts: Vec<Value> = Vec::new();
    // /verify links of the torsion-signed entries sent alone.
    let mut links: Vec<ReceiptLink> = Vec::new();
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        (n, decision(&acme.name, n))
    };
    for (order, at) in [(2usize, 0usize), (4, 17), (8, 31)] {
        let t = torsion(order);
        // Valid by the rule, alone.
        let (i, d) = next();
        let e = torsion_signed(&acme, d, t, true);
        e.verify(&key).expect("valid by the rule");
        let receipt = log.submit(&e).await;
        let leaf = STANDARD
            .decode(receipt["leaf"].as_str().expect("leaf"))
            .expect("leaf base64");
        links.push(ReceiptLink {
            index: receipt["index"].as_u64().expect("index"),
            leaf_hash: leaf_hash(&leaf),
            // load_targeting_decision's subject is user{n}@example.com's opening n.
            salt: Some(samples::opening(&format!("user{i}@example.com"), i).salt),
        });
        receipts.push(receipt);
        // Valid, inside a request of 32 (verified by the handler in one batch).
        let es: Vec<SignedEntry> = (0..32)
            .map(|i| {
                if i == at {
                    torsion_signed(&acme, next().1, t, true)
                } else {
                    acme.sign(next().1)
                }
            })
            .collect();
        let rs = log.submit_ndjson(&es).await;
        assert_eq!(rs.len(), 32);
        receipts.extend(rs);

        // Invalid (s of another message), alone and inside a request of 32: refused
        // by the log as by the rule, whatever its place.
        let size = log.get_json("/v1/log").await["size"].as_u64();
        let bad = torsion_signed(&acme, next().1, t, false);
        assert!(bad.verify(&key).is_err());
        let (st, body) = log
            .post_entries("application/json", common::signed_json(&bad).into_bytes())
            .await;
        assert_eq!(st, 422, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_of(&body)["error"], "bad_signature");
        let mut es: Vec<SignedEntry> = (0..31).map(|_| acme.sign(next().1)).collect();
        es.insert(at, torsion_signed(&acme, next().1, t, false));
        let (st, body) = log
            .post_entries("application/x-ndjson", common::ndjson(&es))
            .await;
        assert_eq!(st, 422, "{}", String::from_utf8_lossy(&body));
        let err = error_of(&body);
        assert_eq!(err["error"], "bad_signature");
        assert_eq!(err["line"], at as u64 + 1, "{err}");
        assert_eq!(log.get_json("/v1/log").await["size"].as_u64(), size);
    }
    let size = log.get_json("/v1/log").await["size"]
        .as_u64()
        .expect("size");
    assert_eq!(receipts.len(), 3 * 33);

    // candor verify: every receipt valid (company_signature included).
    let file = tmp.path().join("receipts.ndjson");
    let text: String = receipts.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).expect("write receipts");
    let out = tokio::task::block_in_place(|| {
        Command::new(CANDOR)
            .arg("verify")
            .arg(&file)
            .arg("--log-key")
            .arg(log.verifier_key.to_string())
            .output()
            .expect("run candor verify")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("99 receipts: 99 valid, 0 invalid"),
        "{stdout}"
    );

    // The /verify page (WebAssembly, in headless Chromium): valid.
    let urls: Vec<String> = links.iter().map(|l| l.url(&log.base)).collect();
    let verdicts = tokio::task::spawn_blocking(move || {
        let mut b = browser_cdp::Browser::start(1000, 1400);
        urls.iter()
            .map(|u| {
                b.goto(u);
                (b.verdict(), b.text())
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("chromium thread");
    for (verdict, text) in verdicts {
        assert_eq!(verdict, "valid", "{text}");
    }

    // Both monitors: no finding, and the whole log verified.
    let m = monitor_once(&log, &followed);
    assert_eq!(m.code, 0, "{:?}\n{}", m.findings, m.stderr);
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    assert_eq!(verified_size(&followed), size);
    let fresh = tmp.path().join("fresh");
    let m = monitor_once(&log, &fresh);
    assert_eq!(m.code, 0, "{:?}\n{}", m.findings, m.stderr);
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    assert_eq!(verified_size(&fresh), size);
}

/// A signed-note vkey for raw key bytes, whatever they are (the library refuses to
/// make one for a key it does not admit).
fn raw_vkey(name: &str, key_type: u8, key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([key_type]);
    h.update(key);
    let id = &h.finalize()[..4];
    let mut data = vec![key_type];
    data.extend_from_slice(key);
    format!("{name}+{}+{}", hex::encode(id), STANDARD.encode(data))
}

/// `[a]B + T` for a fresh key's `a`.
fn mixed_order_key(order: usize) -> [u8; 32] {
    let sk = candor_core::note::SignerKey::generate("x.example").expect("key");
    (ED25519_BASEPOINT_POINT * sk.signing_key().to_scalar() + torsion(order))
        .compress()
        .to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_keys_that_are_not_admissible() {
    let log = LogServer::start("redb", &[]).await;
    let name = "mixed.example";
    // y = p + c: a non-canonical spelling of y = c, for the first c < 19 that
    // decodes to a point not of small order.
    let high = (0u8..19)
        .map(|c| {
            let mut high = [0xffu8; 32];
            high[0] = 0xed + c;
            high[31] = 0x7f;
            high
        })
        .find(|h| {
            curve25519_dalek::edwards::CompressedEdwardsY(*h)
                .decompress()
                .is_some_and(|p| !p.is_small_order())
        })
        .expect("some y < 19 is a point of large order");
    let mut cases: Vec<([u8; 32], &str)> = vec![
        (mixed_order_key(2), "not torsion-free"),
        (mixed_order_key(4), "not torsion-free"),
        (mixed_order_key(8), "not torsion-free"),
        (high, "not a canonical encoding"),
    ];
    for t in EIGHT_TORSION {
        cases.push((t.compress().to_bytes(), "small order"));
    }
    for (key, why) in cases {
        let (st, body) = log
            .company_request(name, &raw_vkey(name, 0x01, &key), "register")
            .await;
        assert_eq!(st, 422, "{body}");
        assert_eq!(body["error"], "invalid_entry", "{body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(why), "{why}: {detail}");
    }
    let (st, _) = log.get(&format!("/v1/companies/{name}")).await;
    assert_eq!(st, 404, "nothing was registered");
    // A key made by RFC 8032 from a seed is admitted.
    log.register_company(name).await;

    // `candor company add` refuses it before sending.
    let dir = tempfile::tempdir().expect("temp dir");
    let vkey_file = dir.path().join("mixed.pub");
    std::fs::write(&vkey_file, raw_vkey(name, 0x01, &mixed_order_key(8))).expect("write");
    let out = Command::new(CANDOR)
        .args([
            "company", "add", "--log", &log.base, "--name", name, "--vkey",
        ])
        .arg(&vkey_file)
        .arg("--token-file")
        .arg(log.data.join("admin.token"))
        .output()
        .expect("run candor company add");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not torsion-free"), "{stderr}");
}

/// The log refuses a witness key that is not admissible, and so does a monitor given
/// such a log key; `candor keygen` makes admissible keys.
#[test]
fn configured_keys_must_be_admissible() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key_file, _) = common::witness::write_key(dir.path(), "log.example/log");
    let witness = raw_vkey("w.example", 0x04, &mixed_order_key(4));
    let args = common::witnessed_log_args(
        &key_file,
        "log.example/log",
        1,
        1000,
        &[(witness, "http://127.0.0.1:1".into())],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = common::serve_should_fail(&dir.path().join("data"), "redb", &args);
    assert!(stderr.contains("not torsion-free"), "{stderr}");

    let out = Command::new(CANDOR)
        .args([
            "monitor",
            "--once",
            "--log",
            "http://127.0.0.1:1",
            "--log-key",
        ])
        .arg(raw_vkey("log.example/log", 0x01, &mixed_order_key(2)))
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .expect("run candor monitor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not torsion-free"), "{stderr}");

    for i in 0..4 {
        let out_file = dir.path().join(format!("k{i}.key"));
        let out = Command::new(CANDOR)
            .args(["keygen", "--name", "k.example", "--out"])
            .arg(&out_file)
            .output()
            .expect("run candor keygen");
        assert!(out.status.success());
        let printed = String::from_utf8_lossy(&out.stdout);
        let vkey: candor_core::note::VerifierKey = printed.trim().parse().expect("admitted vkey");
        candor_core::ed25519_strict::check_admissible_key(vkey.verifying_key())
            .expect("admissible");
    }
}
