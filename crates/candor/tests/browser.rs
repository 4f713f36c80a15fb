//! The `/verify` page end to end (issue 8): a real `candor serve` on loopback,
//! a data purchase and a targeting decision citing it, and Debian's headless
//! Chromium loading the page and running the WebAssembly verifier. Each state
//! is checked through `document.body.dataset` in the dumped DOM and kept as a
//! screenshot under target/browser-screenshots/.

mod browser_cdp;
mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use browser_cdp::{CHROMIUM, HEADLESS_FLAGS, screenshot_dir};
use candor_core::entry::samples;
use candor_core::hash::{Hash, leaf_hash};
use candor_core::receipt::ReceiptLink;
use common::LogServer;

const COMPANY: &str = "acme.example";
const ALICE: &str = "alice@example.org";

/// Runs headless Chromium once on `url` with a fresh profile; returns stdout.
fn chromium(url: &str, width: u32, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(CHROMIUM)
        .args(HEADLESS_FLAGS)
        .arg("--virtual-time-budget=15000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},1800"))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the page decided: the `<body …>` tag's data attributes and its text.
struct Page {
    verdict: Option<String>,
    subject: Option<String>,
    dom: String,
}

fn attr(body_tag: &str, name: &str) -> Option<String> {
    let at = body_tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = body_tag[at..].find('"')?;
    Some(body_tag[at..at + end].to_string())
}

/// Loads `url`, returns the decision, and saves a screenshot as `name`.png.
fn visit(name: &str, url: &str, width: u32) -> Page {
    let dom = chromium(url, width, &["--dump-dom".to_string()]);
    let start = dom
        .find("<body")
        .unwrap_or_else(|| panic!("{name}: no <body> in the dumped DOM:\n{dom}"));
    let tag = &dom[start..start + dom[start..].find('>').expect("end of body tag")];
    let page = Page {
        verdict: attr(tag, "data-verdict"),
        subject: attr(tag, "data-subject"),
        dom: dom.clone(),
    };
    let shot = screenshot_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    chromium(url, width, &[format!("--screenshot={}", shot.display())]);
    assert!(shot.exists(), "{name}: chromium wrote no screenshot");
    println!("screenshot: {}", shot.display());
    page
}

/// A reverse proxy that serves `page_log`'s `/verify` page (and so pins its
/// key) but answers every API request from `data_log`: a log presenting
/// checkpoints signed by a key other than the one the page pins.
async fn proxy(page_log: String, data_log: String) -> String {
    let route = move |path: &str| {
        if path.starts_with("/verify") {
            page_log.clone()
        } else {
            data_log.clone()
        }
    };
    common::proxy(Box::new(route), Box::new(|_, _, body| body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_page_in_headless_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's chromium package \
         (tools/test.sh installs it: apt-get install chromium)"
    );

    // A log with a company, a data purchase, and a decision citing it.
    let log = LogServer::start("redb", &[]).await;
    let acme = log.register_company(COMPANY).await;
    let opening = samples::opening(ALICE, 1);
    let (purchase, decision) = log
        .submit_decision_citing_new_purchase(&acme, &opening)
        .await;
    let p_index = purchase["index"].as_u64().expect("purchase index");
    let d_index = decision["index"].as_u64().expect("decision index");
    let d_leaf = base64::engine::general_purpose::STANDARD
        .decode(decision["leaf"].as_str().expect("decision leaf"))
        .expect("leaf base64");
    let link = ReceiptLink {
        index: d_index,
        leaf_hash: leaf_hash(&d_leaf),
        salt: Some(opening.salt.clone()),
    };
    let url = |base: &str, link: &ReceiptLink| link.url(base);

    // The page and its assets, with the headers issue 8 asks for.
    let r = log
        .client
        .get(log.url("/verify"))
        .send()
        .await
        .expect("GET /verify");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("default-src 'none'") && csp.contains("'wasm-unsafe-eval'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h.contains_key("cache-control"));
    let html = r.text().await.expect("page");
    let key = log.verifier_key.to_string();
    assert!(
        html.contains(&format!("content=\"{key}\"")),
        "key not pinned"
    );
    assert!(!html.contains("{{"), "placeholder left in the page");
    for (path, ct) in [
        ("/verify/candor_web.js", "text/javascript; charset=utf-8"),
        ("/verify/verify.js", "text/javascript; charset=utf-8"),
        ("/verify/verify.css", "text/css; charset=utf-8"),
        ("/verify/candor_web_bg.wasm", "application/wasm"),
    ] {
        let r = log
            .client
            .get(log.url(path))
            .send()
            .await
            .expect("GET asset");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ct, "{path}");
    }

    // Chromium runs blocking; keep the async runtime free for the log proxy.
    let base = log.base.clone();
    let genuine = url(&base, &link);
    let page = tokio::task::spawn_blocking(move || visit("valid", &genuine, 1000))
        .await
        .expect("chromium thread");
    assert_eq!(
        page.verdict.as_deref(),
        Some("valid"),
        "genuine receipt:\n{}",
        page.dom
    );
    assert!(page.subject.is_none(), "no subject was given");
    assert!(
        page.dom
            .contains("A list we bought says you are interested in hiking"),
        "the company's reason is not on screen"
    );
    assert!(
        page.dom.contains("purchase verified on the log"),
        "purchase not verified"
    );
    assert!(page.dom.contains(&key), "the pinned key is not shown");

    let phone = format!("{}&subject=email:{ALICE}", url(&base, &link));
    let page = tokio::task::spawn_blocking(move || visit("valid-phone-390px-match", &phone, 390))
        .await
        .expect("chromium thread");
    assert_eq!(page.verdict.as_deref(), Some("valid"), "{}", page.dom);
    assert_eq!(page.subject.as_deref(), Some("match"));

    let other = format!("{}&subject=email:bob@example.org", url(&base, &link));
    let page = tokio::task::spawn_blocking(move || visit("subject-mismatch", &other, 1000))
        .await
        .expect("chromium thread");
    assert_eq!(page.subject.as_deref(), Some("mismatch"), "{}", page.dom);
    assert_eq!(page.verdict.as_deref(), Some("invalid"));
    assert!(page.dom.contains("NOT about you"));
    assert!(
        page.dom.contains("purchase verified on the log"),
        "a subject mismatch still checks the cited purchase"
    );

    // A flipped byte in the link's leaf hash: the log's entry is not the one named.
    let mut flipped = link.clone();
    flipped.leaf_hash.0[7] ^= 0x01;
    let u = url(&base, &flipped);
    let page = tokio::task::spawn_blocking(move || visit("invalid-flipped-byte", &u, 1000))
        .await
        .expect("chromium thread");
    assert_eq!(page.verdict.as_deref(), Some("invalid"), "{}", page.dom);
    assert!(page.dom.contains("not the one the link names"));

    // The right leaf hash at the wrong index (the purchase's), and an index
    // the log does not have.
    let mut wrong = link.clone();
    wrong.index = p_index;
    let mut missing = link.clone();
    missing.index = 1_000_000;
    let (u1, u2) = (url(&base, &wrong), url(&base, &missing));
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            visit("invalid-wrong-index", &u1, 1000),
            visit("invalid-missing-index", &u2, 1000),
        )
    })
    .await
    .expect("chromium thread");
    assert_eq!(a.verdict.as_deref(), Some("invalid"), "{}", a.dom);
    assert_eq!(b.verdict.as_deref(), Some("invalid"), "{}", b.dom);
    assert!(b.dom.contains("has no entry 1000000"));

    // A second log, same origin, another key: its page pins its own key, and
    // the proxy answers with the first log's checkpoints.
    let log_b = LogServer::start("redb", &[]).await;
    assert_eq!(log_b.origin, log.origin, "both logs use the default origin");
    assert_ne!(log_b.verifier_key.to_string(), key);
    let proxied = proxy(log_b.base.clone(), base.clone()).await;
    let u = url(&proxied, &link);
    let page = tokio::task::spawn_blocking(move || visit("invalid-other-key", &u, 1000))
        .await
        .expect("chromium thread");
    assert_eq!(page.verdict.as_deref(), Some("invalid"), "{}", page.dom);
    assert!(
        page.dom.contains("not signed by the pinned log key"),
        "the failure is not said plainly:\n{}",
        page.dom
    );
    assert!(page.dom.contains(&log_b.verifier_key.to_string()));

    // Sanity: the leaf hash helper agrees with the receipt's own field.
    assert_eq!(
        Hash::from_hex(decision["leaf_hash"].as_str().expect("leaf_hash")),
        Some(leaf_hash(&d_leaf))
    );
}
