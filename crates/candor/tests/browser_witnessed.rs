//! The `/verify` page of a log with witnesses (issue 9): three
//! `candor witness serve` processes, `candor serve --witness … --witness-quorum 2`,
//! and headless Chromium (driven through `browser_cdp`). The page pins the
//! log's trust policy (C2SP tlog-policy) and shows it; a genuine receipt is
//! `valid` with the `witness_quorum` check listed; a receipt whose checkpoint
//! carries fewer than two cosignatures, or a log whose latest checkpoint
//! does, is `invalid`, said in plain words. Screenshots go to
//! target/browser-screenshots/.

mod browser_cdp;
mod common;

use browser_cdp::Browser;
use candor_core::cosignature::witness_verifier_key;
use candor_core::entry::samples;
use candor_core::hash::leaf_hash;
use candor_core::note::{Note, VerifierKey};
use candor_core::receipt::{Receipt, ReceiptLink};
use candor_core::tlog_proof::TlogProof;
use candor_core::trust_policy::Policy;
use common::LogServer;
use common::witness::{Witness, write_key};

const COMPANY: &str = "acme.example";

/// The note with only the log's signature and the first `keep` cosignatures.
fn strip_cosignatures(note: &[u8], log: &VerifierKey, keep: usize) -> Vec<u8> {
    let mut n = Note::parse(note).expect("note");
    let mut kept = 0;
    n.signatures.retain(|s| {
        if log.matches(s) {
            return true;
        }
        kept += 1;
        kept <= keep
    });
    n.to_bytes()
}

/// The receipt with its checkpoint's cosignatures cut down to `keep`.
fn with_cosignatures(r: &Receipt, log: &VerifierKey, keep: usize) -> String {
    let mut proof = TlogProof::parse(r.tlog_proof.as_bytes()).expect("tlog-proof");
    proof.checkpoint = strip_cosignatures(&proof.checkpoint, log, keep);
    let mut r = r.clone();
    r.tlog_proof = String::from_utf8(proof.to_bytes()).expect("tlog-proof text");
    serde_json::to_string(&r).expect("receipt JSON")
}

/// A proxy in front of the log that serves everything as is, except that the
/// latest checkpoint (`/checkpoint`) loses all its cosignatures.
async fn unwitnessed_proxy(log: String, log_key: VerifierKey) -> String {
    let rewrite = move |path: &str, status: u16, body: Vec<u8>| {
        if path == "/checkpoint" && status == 200 {
            strip_cosignatures(&body, &log_key, 0)
        } else {
            body
        }
    };
    common::proxy(Box::new(move |_| log.clone()), Box::new(rewrite)).await
}

/// The failed check's name and the page's text, once the page decided `invalid`.
fn invalid(b: &mut Browser) -> (String, String) {
    assert_eq!(b.verdict(), "invalid", "{}", b.text());
    let failed = b
        .eval(
            "[...document.querySelectorAll('#checks li.fail .what')].map(e => e.textContent).join('|')",
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    (failed, b.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_page_applies_the_witness_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = "log.example/witnessed-page";
    let (log_key_file, log_key) = write_key(dir.path(), origin);
    let log_vkey = log_key.verifier();
    let mut witnesses = Vec::new();
    let mut endpoints = Vec::new();
    for i in 0..3 {
        let (kf, k) = write_key(dir.path(), &format!("witness.example/w{i}"));
        let w = Witness::start(kf, dir.path().join(format!("w{i}")), log_vkey.clone());
        endpoints.push((witness_verifier_key(&k).to_string(), w.url()));
        witnesses.push(w);
    }
    let args = common::witnessed_log_args(&log_key_file, origin, 2, 5000, &endpoints);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = LogServer::start_in(&dir.path().join("log"), "redb", &argv).await;

    // A purchase and a decision citing it, each with a witnessed receipt.
    let acme = log.register_company(COMPANY).await;
    let opening = samples::opening("alice@example.org", 1);
    let (_, decision) = log
        .submit_decision_citing_new_purchase(&acme, &opening)
        .await;
    let receipt = Receipt::from_json(decision.to_string().as_bytes()).expect("receipt");
    let link = ReceiptLink {
        index: receipt.index,
        leaf_hash: leaf_hash(&receipt.leaf_bytes().expect("leaf")),
        salt: Some(opening.salt.clone()),
    };

    // The policy the log serves, and pins in the page: its key and 2 of the 3.
    let (st, body) = log.get("/verify/trust-policy").await;
    assert_eq!(st, 200);
    let policy_text = String::from_utf8(body).expect("policy text");
    let policy = Policy::parse(policy_text.as_bytes()).expect("the served policy parses");
    assert_eq!(policy.witnesses().len(), 3);
    assert_eq!(policy.logs()[0].key, log_vkey);
    assert!(
        policy.describe().starts_with("2 of "),
        "{}",
        policy.describe()
    );
    policy
        .check(&log.checkpoint().await)
        .expect("the log's checkpoint meets its own policy");
    let (_, html) = log.get("/verify").await;
    let html = String::from_utf8(html).expect("page");
    let first_witness = policy.witnesses()[0].key.to_string();
    assert!(
        html.contains(&format!(
            "witness {} {first_witness}",
            policy.witnesses()[0].name
        )),
        "the policy is not pinned in the page"
    );

    let genuine = link.url(&log.base);
    let one_cosignature = with_cosignatures(&receipt, &log_vkey, 1);
    let no_cosignature = with_cosignatures(&receipt, &log_vkey, 0);
    let proxied = unwitnessed_proxy(log.base.clone(), log_vkey.clone()).await;
    let via_proxy = link.url(&proxied);
    let quorum = policy.describe();
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::start(1000, 1600);

        // A genuine receipt: valid, the witness check listed, the policy shown.
        b.goto(&genuine);
        assert_eq!(b.verdict(), "valid", "{}", b.text());
        let text = b.text();
        assert!(
            text.contains("enough independent witnesses cosigned the tree head"),
            "the witness check is not listed:\n{text}"
        );
        assert!(text.contains("cosigned by witness.example/w"), "{text}");
        assert!(text.contains("today's tree head is cosigned by"), "{text}");
        assert!(text.contains("The witnesses this page requires"), "{text}");
        assert!(text.contains(&quorum), "the quorum is not shown:\n{text}");
        assert!(text.contains(&first_witness), "the policy is not shown");
        assert!(text.contains("1 purchase verified on the log"), "{text}");
        b.screenshot("witnessed-valid");

        // The same receipt with one cosignature left: fewer than the quorum.
        b.goto(&log_page(&genuine));
        b.paste("#paste", &one_cosignature);
        let (failed, text) = invalid(&mut b);
        assert!(
            failed.contains("enough independent witnesses cosigned the tree head"),
            "{failed}\n{text}"
        );
        assert!(
            text.contains("not enough witnesses cosigned the checkpoint"),
            "{text}"
        );
        assert!(
            text.contains(&format!("the policy requires {quorum}")),
            "{text}"
        );
        b.screenshot("witnessed-invalid-one-cosignature");

        // With no cosignature at all.
        b.goto(&log_page(&genuine));
        b.paste("#paste", &no_cosignature);
        let (failed, text) = invalid(&mut b);
        assert!(failed.contains("witnesses cosigned"), "{failed}");
        assert!(text.contains("no listed witness cosigned it"), "{text}");

        // A log whose latest checkpoint is not witnessed: the receipt itself
        // is fine, but the log cannot show that today's tree is witnessed.
        b.goto(&via_proxy);
        let (failed, text) = invalid(&mut b);
        assert!(
            failed.contains("the log still holds the entry today"),
            "{failed}\n{text}"
        );
        assert!(
            text.contains("the log's latest checkpoint does not satisfy the trust policy"),
            "{text}"
        );
        b.screenshot("witnessed-invalid-latest-unwitnessed");
    })
    .await
    .expect("browser thread");
    drop(witnesses);
}

/// The page itself, without the link's fragment.
fn log_page(link_url: &str) -> String {
    link_url.split('#').next().unwrap_or(link_url).to_string()
}
