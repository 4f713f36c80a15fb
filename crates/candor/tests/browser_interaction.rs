//! The `/verify` page as a person uses it (issue 8), in headless Chromium
//! driven through the DevTools protocol (`browser_cdp`): a receipt pasted
//! from the clipboard (a trusted paste event) and receipt files dropped onto
//! the page; the keyboard alone (Tab reaches every control in reading order,
//! Enter and Space activate them); what a screen reader gets (every control
//! named, the verdict in a live region, the checks a named list); and text
//! contrast (WCAG 2.1 AA, 4.5:1) computed from the rendered colours.
//! Screenshots go to target/browser-screenshots/.

mod browser_cdp;
mod common;

use base64::Engine as _;
use browser_cdp::{AxTree, Browser, contrast, name, parse_rgb, property, role};
use candor_core::entry::samples;
use candor_core::receipt::Receipt;
use common::LogServer;
use serde_json::Value;

const COMPANY: &str = "acme.example";
const ALICE: &str = "alice@example.org";

/// Text the contrast check covers: the main text, the verdict, the facts and
/// the checks, labels, notes and buttons.
const TEXT: &[&str] = &[
    "h1",
    "h2",
    ".intro",
    "#verdict .title",
    "#verdict .sub",
    "#headline",
    "#unconfirmed",
    "#facts dt",
    "#facts dd",
    "ul.checks .what",
    "ul.checks .detail",
    "label",
    ".note",
    "button",
    "#subject-result",
    "code.key",
    "a",
];

/// Every listed text meets WCAG 2.1 AA (1.4.3): 4.5:1 against what it is drawn on.
fn assert_contrast(b: &mut Browser, state: &str) {
    let colours = b.colours(TEXT);
    assert!(colours.len() >= 10, "{state}: too little text found");
    for sel in ["h1", "#verdict .title", ".intro"] {
        assert!(
            colours.iter().any(|c| c.0 == sel),
            "{state}: no {sel} measured"
        );
    }
    for (sel, text, fg, bg) in &colours {
        let ratio = contrast(parse_rgb(fg), parse_rgb(bg));
        assert!(
            ratio >= 4.5,
            "{state}: {sel} {text:?} has contrast {ratio:.2}:1 ({fg} on {bg}), below 4.5:1"
        );
    }
}

/// What a screen reader gets: every control has a name, the verdict is in a
/// polite live region, the checks are a named list of named items.
fn assert_accessible(tree: &AxTree, verdict_text: &str, checks: usize) {
    let controls: Vec<&Value> = tree
        .visible()
        .filter(|n| {
            matches!(
                role(n),
                "button" | "textbox" | "link" | "searchbox" | "combobox" | "checkbox"
            )
        })
        .collect();
    assert!(controls.len() >= 4, "too few controls: {controls:?}");
    for c in &controls {
        assert!(
            !name(c).trim().is_empty(),
            "a {} has no accessible name: {c}",
            role(c)
        );
    }
    for (r, n) in [
        ("textbox", "Your email address or phone number"),
        ("button", "Check"),
        ("textbox", "Paste a receipt"),
        ("button", "Verify"),
    ] {
        assert!(
            controls
                .iter()
                .any(|c| role(c) == r && name(c).starts_with(n)),
            "no {r} named {n:?}"
        );
    }

    let live = tree
        .visible()
        .find(|n| role(n) == "status" && tree.text(n).contains(verdict_text))
        .unwrap_or_else(|| panic!("the verdict {verdict_text:?} is not in a status region"));
    assert_eq!(
        property(live, "live").and_then(Value::as_str),
        Some("polite"),
        "the verdict region is not live: {live}"
    );
    assert_eq!(property(live, "atomic"), Some(&Value::Bool(true)));

    let list = tree
        .visible()
        .find(|n| role(n) == "list" && name(n) == "Each check")
        .expect("the checks are not a list named \"Each check\"");
    let items = tree.children(list);
    assert_eq!(items.len(), checks, "one list item per check");
    for i in items {
        assert_eq!(role(i), "listitem");
        let text = tree.text(i);
        assert!(
            text.starts_with("Passed:") || text.starts_with("Failed:"),
            "a check does not say whether it passed: {text:?}"
        );
        assert!(text.len() > 20, "a check is not described: {text:?}");
    }
}

/// Moves the keyboard's starting point to the top of the page (the heading),
/// as when the page was just opened.
fn to_top(b: &mut Browser) {
    b.eval(
        "(() => { const h = document.querySelector('h1'); h.tabIndex = -1; h.focus(); \
         h.removeAttribute('tabindex'); })()",
    );
}

/// Tabs from the top of the page until focus leaves it; the elements reached.
fn tab_order(b: &mut Browser) -> Vec<String> {
    to_top(b);
    let mut order = Vec::new();
    for _ in 0..12 {
        b.key("Tab");
        let f = b.focused();
        if f == "body" || order.contains(&f) {
            break;
        }
        order.push(f);
    }
    order
}

/// Tabs from the top until `target` has the focus.
fn tab_to(b: &mut Browser, target: &str) {
    to_top(b);
    for _ in 0..12 {
        b.key("Tab");
        if b.focused() == target {
            return;
        }
    }
    panic!("Tab never reached {target}");
}

fn check_count(b: &mut Browser) -> usize {
    b.eval("document.querySelectorAll('#checks li').length")
        .as_u64()
        .expect("count") as usize
}

/// Forgets the verdict, so that the next one is known to be new.
fn reset_verdict(b: &mut Browser) {
    b.eval("delete document.body.dataset.verdict; delete document.body.dataset.subject");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paste_drop_keyboard_screen_reader_contrast() {
    // A log with a company, a data purchase and a decision citing it.
    let log = LogServer::start("redb", &[]).await;
    let acme = log.register_company(COMPANY).await;
    let opening = samples::opening(ALICE, 1);
    let (_, decision) = log
        .submit_decision_citing_new_purchase(&acme, &opening)
        .await;
    // The company's receipt for Alice: the log's receipt and her subject opening.
    let receipt = Receipt::from_json(decision.to_string().as_bytes())
        .expect("receipt")
        .with_subject(&opening);
    let genuine = serde_json::to_string_pretty(&receipt).expect("receipt JSON");
    // A copy with one byte of the leaf flipped.
    let mut tampered = receipt.clone();
    let mut leaf = tampered.leaf_bytes().expect("leaf");
    let at = leaf.len() / 2;
    leaf[at] ^= 0x01;
    tampered.leaf = base64::engine::general_purpose::STANDARD.encode(&leaf);
    let files = tempfile::tempdir().expect("tempdir");
    let genuine_file = files.path().join("receipt.json");
    let tampered_file = files.path().join("tampered-receipt.json");
    std::fs::write(&genuine_file, &genuine).expect("write receipt");
    std::fs::write(
        &tampered_file,
        serde_json::to_string(&tampered).expect("JSON"),
    )
    .expect("write receipt");

    let page = log.url("/verify");
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::start(1000, 1400);
        b.goto(&page);
        b.wait_for(
            "document.querySelector('#verdict .title').textContent.startsWith('Open the link')",
            "the page to start",
        );

        // Keyboard, nothing loaded yet: the controls in reading order.
        assert_eq!(
            tab_order(&mut b),
            ["#subject", "#subject-go", "#paste", "#paste-go"],
            "Tab order before a receipt is loaded"
        );

        // Paste: Ctrl+V with the receipt on the clipboard checks it at once.
        b.paste("#paste", &genuine);
        assert_eq!(b.verdict(), "valid", "{}", b.text());
        assert_eq!(
            b.eval("document.getElementById('paste').value").as_str(),
            Some(genuine.as_str()),
            "the pasted receipt is shown"
        );
        let text = b.text();
        assert!(
            text.contains("A list we bought says you are interested in hiking"),
            "{text}"
        );
        assert!(text.contains("1 purchase verified on the log"), "{text}");
        b.screenshot("interaction-paste-valid");

        let checks = check_count(&mut b);
        assert!(checks >= 9, "{checks} checks listed");
        let tree = b.ax_tree();
        assert_accessible(&tree, "This disclosure is genuine", checks);
        assert_contrast(&mut b, "valid");

        // Keyboard with a receipt shown: the opt-out link comes first.
        let order = tab_order(&mut b);
        assert_eq!(
            order,
            [
                "a:mailto:privacy@acme.example?subject=opt-out",
                "#subject",
                "#subject-go",
                "#paste",
                "#paste-go"
            ],
            "Tab order with a receipt shown"
        );

        // Type the subject, Tab to Check, press Enter.
        tab_to(&mut b, "#subject");
        b.type_text(ALICE);
        b.key("Tab");
        assert_eq!(b.focused(), "#subject-go");
        reset_verdict(&mut b);
        b.key("Enter");
        b.wait_for("document.body.dataset.subject", "the subject check");
        assert_eq!(b.eval("document.body.dataset.subject"), "match");
        assert_eq!(b.verdict(), "valid");
        b.screenshot("interaction-keyboard-subject-match");

        // Tab on to Verify and press Space: the pasted receipt is checked again.
        b.key("Tab");
        assert_eq!(b.focused(), "#paste");
        b.key("Tab");
        assert_eq!(b.focused(), "#paste-go");
        reset_verdict(&mut b);
        b.eval("document.querySelector('#verdict .title').textContent = ''");
        b.key(" ");
        assert_eq!(b.verdict(), "valid");
        assert_eq!(b.eval("document.body.dataset.subject"), "match");
        // And Enter on Verify.
        reset_verdict(&mut b);
        b.key("Enter");
        assert_eq!(b.verdict(), "valid");

        // Drop a tampered receipt file: invalid, said plainly, still accessible.
        b.eval("document.getElementById('subject').value = ''");
        reset_verdict(&mut b);
        b.drop_files("#drop", &[&tampered_file]);
        assert_eq!(b.verdict(), "invalid", "{}", b.text());
        let text = b.text();
        assert!(
            text.contains("This disclosure does NOT check out"),
            "{text}"
        );
        assert!(
            text.contains("the leaf hash in the receipt does not match the leaf bytes"),
            "{text}"
        );
        b.screenshot("interaction-drop-invalid");
        let checks = check_count(&mut b);
        let tree = b.ax_tree();
        assert_accessible(&tree, "This disclosure does NOT check out", checks);
        assert_contrast(&mut b, "invalid");

        // Drop the genuine receipt file: valid again.
        reset_verdict(&mut b);
        b.drop_files("#drop", &[&genuine_file]);
        assert_eq!(b.verdict(), "valid", "{}", b.text());
        assert!(b.text().contains("1 purchase verified on the log"));

        // A phone-sized screen: the same page, no horizontal scrolling.
        let mut phone = Browser::start(360, 800);
        phone.goto(&page);
        phone.paste("#paste", &genuine);
        assert_eq!(phone.verdict(), "valid", "{}", phone.text());
        assert_eq!(
            phone.eval("document.documentElement.scrollWidth <= window.innerWidth"),
            Value::Bool(true),
            "the page scrolls sideways on a phone"
        );
        assert_contrast(&mut phone, "valid on a phone");
        phone.screenshot("interaction-phone-360px-valid");
    })
    .await
    .expect("browser thread");
}
