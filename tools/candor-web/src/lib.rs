//! The `/verify` page's verifier: Candor's own receipt verification
//! (`candor::receipt`, the code `candor verify` runs), compiled to WebAssembly.
//!
//! The page's JavaScript only fetches: it asks [`plan`] what the online checks
//! need, fetches exactly that from the log, and hands the raw responses to
//! [`answer`], which runs checks 1–10 of `spec/receipts.md` §3 here and
//! returns the same plain-language answer as `candor verify`. Every function
//! takes and returns JSON text so that the JavaScript stays a thin shell;
//! a failure to read the input is `{"error": "…"}`.

use candor::checkpoint::open_checkpoint;
use candor::entry::Entry;
use candor::hash::Hash;
use candor::merkle::verify_consistency;
use candor::note::VerifierKey;
use candor::receipt::{self, CheckName, Receipt, ReceiptLink, Verification, verify_receipt};
use candor::subject::SubjectId;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use wasm_bindgen::prelude::*;

/// The CLI's plain-language rendering (`src/cli/answer.rs`), compiled in as
/// is so that the page and `candor verify` say the same thing. The page uses
/// its facts and verdict, not its text rendering.
#[allow(dead_code)]
#[path = "../../../src/cli/answer.rs"]
mod answer;

use answer::{Answer, Purchase, Status};

fn error(msg: impl std::fmt::Display) -> String {
    json!({ "error": msg.to_string() }).to_string()
}

fn parse_key(log_key: &str) -> Result<VerifierKey, String> {
    log_key
        .trim()
        .parse()
        .map_err(|e| format!("the log key pinned in this page does not parse: {e}"))
}

/// Recognises what a person pasted or dropped: a receipt (JSON), or a verify
/// URL, `Disclosure-Receipt:` header line, or bare `r=`/`v1.` fragment.
/// Returns `{"receipt": {...}}` or `{"link": {"fragment", "index", "base"}}`.
#[wasm_bindgen]
pub fn parse_input(text: &str) -> String {
    parse_input_value(text).unwrap_or_else(error)
}

fn parse_input_value(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("nothing to check: paste a receipt or a verify link".into());
    }
    if t.starts_with('{') {
        let r = Receipt::from_json(t.as_bytes()).map_err(|e| e.to_string())?;
        let v = serde_json::to_value(&r).map_err(|e| e.to_string())?;
        return Ok(json!({ "receipt": v }).to_string());
    }
    // A fragment may carry further parameters (`&subject=` in tests); the
    // link ends at the first `&`.
    let t = t.split('&').next().unwrap_or(t);
    let parsed = if t.starts_with("v1.") {
        ReceiptLink::parse_fragment(t).map(|l| (None, l))
    } else {
        ReceiptLink::parse(t)
    };
    let (base, link) =
        parsed.map_err(|e| format!("this is neither a receipt nor a verify link ({e})"))?;
    Ok(json!({
        "link": { "fragment": link.fragment(), "index": link.index, "base": base }
    })
    .to_string())
}

/// Parses the `r=` value of a verify URL's fragment.
#[wasm_bindgen]
pub fn parse_link(fragment: &str) -> String {
    match ReceiptLink::parse_fragment(fragment) {
        Ok(link) => json!({
            "index": link.index,
            "leaf_hash": link.leaf_hash.to_hex(),
            "salt": link.salt.as_ref().map(|s| s.to_base64url()),
        })
        .to_string(),
        Err(e) => error(e),
    }
}

/// Turns the log's receipt for a link's index into the person's receipt:
/// checks that the log returned the very leaf the link names and attaches
/// the link's salt (`spec/receipts.md` §2).
#[wasm_bindgen]
pub fn receipt_from_link(log_receipt_json: &str, fragment: &str) -> String {
    let link = match ReceiptLink::parse_fragment(fragment) {
        Ok(l) => l,
        Err(e) => return error(e),
    };
    match receipt::receipt_for_link(log_receipt_json.as_bytes(), &link) {
        Ok(r) => serde_json::to_string(&r).unwrap_or_else(error),
        Err(e) => error(e),
    }
}

/// What the online checks 8–10 need fetched for this receipt:
/// `{"checkpoint_size": N, "company": NAME, "purchases": [INDEX, …]}`, or
/// `{"offline_failed": true}` when an offline check already failed (then
/// nothing more is fetched, as in `candor verify`).
#[wasm_bindgen]
pub fn plan(receipt_json: &str, log_key: &str) -> String {
    let receipt = match Receipt::from_json(receipt_json.as_bytes()) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let key = match parse_key(log_key) {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    let v = verify_receipt(&receipt, &key, None);
    if v.checks.iter().any(|c| !c.passed) {
        return json!({ "offline_failed": true }).to_string();
    }
    let company = match &v.entry {
        Some(Entry::CompanyKey(_)) | None => None,
        Some(e) => Some(e.company().to_string()),
    };
    json!({
        "checkpoint_size": v.checkpoint.as_ref().map(|c| c.size),
        "company": company,
        "purchases": cited_purchases(v.entry.as_ref()).iter().map(|p| p.index).collect::<Vec<_>>(),
    })
    .to_string()
}

/// One HTTP response the page fetched from the log, or why it could not.
#[derive(Debug, Default, Deserialize)]
struct Fetched {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    body: String,
    #[serde(default)]
    error: Option<String>,
}

/// Everything the page fetched for the online checks (see [`plan`]).
#[derive(Debug, Default, Deserialize)]
struct Online {
    /// `GET /checkpoint`.
    checkpoint: Option<Fetched>,
    /// `GET /v1/proof/consistency?old=…&new=…`, when the log has grown.
    consistency: Option<Fetched>,
    /// `GET /v1/companies/{name}`.
    company: Option<Fetched>,
    /// `GET /v1/receipts/{index}` for each cited purchase, by index.
    #[serde(default)]
    purchases: HashMap<String, Fetched>,
}

/// The whole verification of one receipt against the pinned log key:
/// checks 1–7 on the receipt, 8–10 on the fetched material in
/// `online_json` (see [`Online`]), and the person's `subject` (empty for
/// none). Returns `candor verify --json`'s answer, with each check's plain
/// description, and `subject_state` `match`/`mismatch` when a subject was
/// checked.
#[wasm_bindgen]
pub fn answer(receipt_json: &str, log_key: &str, subject: &str, online_json: &str) -> String {
    answer_value(receipt_json, log_key, subject, online_json)
        .map(|v| v.to_string())
        .unwrap_or_else(error)
}

fn answer_value(
    receipt_json: &str,
    log_key: &str,
    subject: &str,
    online_json: &str,
) -> Result<Value, String> {
    let receipt = Receipt::from_json(receipt_json.as_bytes()).map_err(|e| e.to_string())?;
    let key = parse_key(log_key)?;
    let subject = subject.trim();
    let (id, subject_error) = if subject.is_empty() {
        (None, None)
    } else {
        match SubjectId::parse(subject) {
            Ok(id) => (Some(id), None),
            Err(e) => (
                None,
                Some(format!(
                    "that is not an email address or a phone number in international form (+…): {e}"
                )),
            ),
        }
    };
    let online: Online = if online_json.trim().is_empty() {
        Online::default()
    } else {
        serde_json::from_str(online_json).map_err(|e| format!("online data: {e}"))?
    };

    let mut v = verify_receipt(&receipt, &key, id.as_ref());
    let mut purchases = cited_purchases(v.entry.as_ref());
    let mut problem = None;
    // A subject mismatch does not cast doubt on the disclosure itself, so the
    // facts shown (and the purchases they cite) are still checked online.
    if v.checks
        .iter()
        .all(|c| c.passed || c.name == CheckName::Subject)
    {
        run_online(
            &receipt,
            &key,
            &online,
            &mut v,
            &mut purchases,
            &mut problem,
        );
    }

    let entry = v.entry.as_ref().and_then(|e| serde_json::to_value(e).ok());
    let mut facts = entry
        .as_ref()
        .map(|e| answer::facts(e, v.logged_at.as_deref(), &purchases))
        .unwrap_or_default();
    // The CLI's hint for unfetched purchases names a flag; on the page they
    // are unfetched only because an earlier check failed.
    for d in &mut facts.data_used {
        *d = d.replace("; check with --online)", "; not checked)");
    }
    let status = Answer::decide(&v.checks, problem.as_deref());
    let subject_state = v
        .checks
        .iter()
        .find(|c| c.name == CheckName::Subject)
        .map(|c| if c.passed { "match" } else { "mismatch" });
    let checks: Vec<Value> = v
        .checks
        .iter()
        .map(|c| {
            json!({
                "name": c.name.as_str(),
                "description": c.name.describe(),
                "passed": c.passed,
                "detail": c.detail,
            })
        })
        .collect();
    let a = Answer {
        status,
        problem,
        line: None,
        log: (!receipt.log.is_empty()).then(|| receipt.log.clone()),
        index: Some(receipt.index),
        facts,
        checks: v.checks,
        purchases,
        entry,
        logged_at: v.logged_at,
        checkpoint: v.checkpoint,
        signer_key: v.signer_key,
    };
    let mut out = serde_json::to_value(&a).map_err(|e| e.to_string())?;
    out["checks"] = Value::Array(checks);
    out["subject_state"] = json!(subject_state);
    out["subject_error"] = json!(subject_error);
    out["verdict"] = json!(match status {
        Status::Valid => "valid",
        Status::Invalid => "invalid",
        Status::CouldNotCheck => "could_not_check",
    });
    Ok(out)
}

/// The purchases a targeting decision cites, not yet checked.
fn cited_purchases(entry: Option<&Entry>) -> Vec<Purchase> {
    let Some(value) = entry.and_then(|e| serde_json::to_value(e).ok()) else {
        return Vec::new();
    };
    value
        .get("data_sources")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter(|d| d.get("type").and_then(Value::as_str) == Some("purchase"))
                .filter_map(answer::purchase_ref)
                .map(|(index, leaf_hash)| Purchase {
                    index,
                    leaf_hash,
                    verified: None,
                    detail: "not fetched".into(),
                    entry: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One online check's result: `CouldNot` makes the verdict "could not
/// check" rather than a failure (network trouble is not the receipt's fault).
enum Outcome {
    Pass(String),
    Fail(String),
    CouldNot(String),
}

/// The body of a fetched response that answered 200.
fn ok_body<'a>(f: Option<&'a Fetched>, what: &str) -> Result<&'a str, Outcome> {
    match f {
        None => Err(Outcome::CouldNot(format!("{what} was not fetched"))),
        Some(Fetched { error: Some(e), .. }) => {
            Err(Outcome::CouldNot(format!("cannot fetch {what}: {e}")))
        }
        Some(Fetched {
            status: 200, body, ..
        }) => Ok(body),
        Some(Fetched { status, .. }) => Err(Outcome::CouldNot(format!(
            "the log answered {status} for {what}"
        ))),
    }
}

/// Checks 8–10 of `spec/receipts.md` §3 on what the page fetched.
fn run_online(
    receipt: &Receipt,
    key: &VerifierKey,
    online: &Online,
    v: &mut Verification,
    purchases: &mut [Purchase],
    problem: &mut Option<String>,
) {
    let mut record = |v: &mut Verification, name: CheckName, o: Outcome| match o {
        Outcome::Pass(d) => v.push(name, true, d),
        Outcome::Fail(d) => v.push(name, false, d),
        Outcome::CouldNot(d) => {
            problem.get_or_insert_with(|| format!("{}: {d}", name.as_str()));
        }
    };
    if let Some(cp) = v.checkpoint.clone() {
        let o = consistency(key, online, cp.size, &cp.root);
        record(v, CheckName::Consistency, o);
    }
    if let Some(entry) = v.entry.clone()
        && !matches!(entry, Entry::CompanyKey(_))
    {
        let o = not_revoked(online, &entry, v.signer_key.as_deref(), receipt.index);
        record(v, CheckName::NotRevoked, o);
        if !purchases.is_empty() {
            let o = check_purchases(key, online, entry.company(), receipt.index, purchases);
            record(v, CheckName::Purchases, o);
        }
    }
}

/// Check 8: the receipt's tree is a prefix of the log's latest tree
/// (RFC 9162 §2.1.4.2), whose checkpoint must be signed by the pinned key.
fn consistency(key: &VerifierKey, online: &Online, size: u64, root_b64: &str) -> Outcome {
    let note = match ok_body(online.checkpoint.as_ref(), "the latest checkpoint") {
        Ok(b) => b,
        Err(o) => return o,
    };
    let latest = match open_checkpoint(note.as_bytes(), key) {
        Ok((cp, _)) => cp,
        Err(e) => {
            return Outcome::Fail(format!(
                "the log's latest checkpoint is not signed by the pinned key: {e}"
            ));
        }
    };
    let Some(old_root) = Hash::from_base64(root_b64) else {
        return Outcome::Fail("the receipt's checkpoint root is malformed".into());
    };
    if latest.size < size {
        return Outcome::Fail(format!(
            "the log's latest tree (size {}) is smaller than the receipt's (size {size}): the log went back",
            latest.size
        ));
    }
    let ok = if latest.size == size {
        latest.root == old_root
    } else {
        let body = match ok_body(online.consistency.as_ref(), "the consistency proof") {
            Ok(b) => b,
            Err(o) => return o,
        };
        let parsed: Option<Vec<Hash>> = serde_json::from_str::<Value>(body)
            .ok()
            .filter(|p| {
                p.get("old").and_then(Value::as_u64) == Some(size)
                    && p.get("new").and_then(Value::as_u64) == Some(latest.size)
            })
            .and_then(|p| {
                p.get("proof")?
                    .as_array()?
                    .iter()
                    .map(|h| h.as_str().and_then(Hash::from_base64))
                    .collect()
            });
        let Some(proof) = parsed else {
            return Outcome::Fail(format!(
                "the log's consistency proof from size {size} to {} is malformed",
                latest.size
            ));
        };
        verify_consistency(size, latest.size, &old_root, &latest.root, &proof).is_ok()
    };
    if ok {
        Outcome::Pass(format!(
            "the receipt's tree (size {size}) is part of today's tree (size {})",
            latest.size
        ))
    } else {
        Outcome::Fail(format!(
            "today's tree (size {}) does not contain the receipt's tree (size {size}): the log rewrote its history",
            latest.size
        ))
    }
}

/// Check 9: the signing key was not revoked at an index lower than the entry's.
fn not_revoked(online: &Online, entry: &Entry, signer: Option<&str>, index: u64) -> Outcome {
    let company = entry.company();
    let Some(signer) = signer.and_then(|s| s.parse::<VerifierKey>().ok()) else {
        return Outcome::Fail("the signing key is unknown".into());
    };
    let body = match online.company.as_ref() {
        Some(Fetched { status: 404, .. }) => {
            return Outcome::Fail(format!("the log does not know the company {company}"));
        }
        f => match ok_body(f, "the company's keys") {
            Ok(b) => b,
            Err(o) => return o,
        },
    };
    let Ok(info) = serde_json::from_str::<Value>(body) else {
        return Outcome::CouldNot("the log's list of the company's keys is not JSON".into());
    };
    let id = hex::encode(signer.key_id());
    let Some(k) = info.get("keys").and_then(Value::as_array).and_then(|ks| {
        ks.iter()
            .find(|k| k.get("key_id").and_then(Value::as_str) == Some(&id))
    }) else {
        return Outcome::Fail(format!("the log does not list key {id} for {company}"));
    };
    match k.get("revoked_index").and_then(Value::as_u64) {
        Some(r) if r < index => Outcome::Fail(format!(
            "the company's key was revoked at entry {r}, before this entry ({index})"
        )),
        Some(r) => Outcome::Pass(format!(
            "the key was revoked only later, at entry {r}, after this entry"
        )),
        None => Outcome::Pass(format!("key {id} of {company} is still registered")),
    }
}

/// Check 10: each cited purchase is a genuine `data_purchase` of the same
/// company, logged earlier, with the cited leaf hash (its receipt passes
/// checks 1–6 against the pinned key).
fn check_purchases(
    key: &VerifierKey,
    online: &Online,
    company: &str,
    index: u64,
    purchases: &mut [Purchase],
) -> Outcome {
    let mut failed = Vec::new();
    for p in purchases.iter_mut() {
        let what = format!("purchase entry {}", p.index);
        let fetched = online.purchases.get(&p.index.to_string());
        if let Some(Fetched { status: 404, .. }) = fetched {
            p.verified = Some(false);
            p.detail = format!("the log has no entry {}", p.index);
            failed.push(format!("entry {}: {}", p.index, p.detail));
            continue;
        }
        let body = match ok_body(fetched, &what) {
            Ok(b) => b,
            Err(o) => return o,
        };
        let r = match Receipt::from_json(body.as_bytes()) {
            Ok(r) => r,
            Err(e) => return Outcome::CouldNot(format!("the log's receipt for {what}: {e}")),
        };
        let cv = verify_receipt(&r, key, None);
        p.entry = cv.entry.as_ref().and_then(|e| serde_json::to_value(e).ok());
        match receipt::check_purchase_citation(&cv, r.index, p.index, &p.leaf_hash, company, index)
        {
            Ok(()) => {
                p.verified = Some(true);
                p.detail = "verified".into();
            }
            Err(why) => {
                p.verified = Some(false);
                p.detail = why;
                failed.push(format!("entry {}: {}", p.index, p.detail));
            }
        }
    }
    if failed.is_empty() {
        Outcome::Pass(format!(
            "{} purchase{} verified on the log",
            purchases.len(),
            if purchases.len() == 1 { "" } else { "s" }
        ))
    } else {
        Outcome::Fail(failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_recognised() {
        let frag = "v1.7.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for text in [
            frag.to_string(),
            format!("r={frag}"),
            format!("https://log.example/verify#r={frag}"),
            format!("Disclosure-Receipt: <https://log.example/verify#r={frag}>"),
            format!("{frag}&subject=email:a@b.example"),
        ] {
            let v: Value = serde_json::from_str(&parse_input(&text)).unwrap();
            assert_eq!(v["link"]["index"], 7, "{text}: {v}");
            assert_eq!(v["link"]["fragment"], frag, "{text}");
        }
        let v: Value =
            serde_json::from_str(&parse_input("https://log.example/verify#r=v1.7.AA")).unwrap();
        assert!(v["error"].as_str().unwrap().contains("leaf hash"), "{v}");
        let v: Value = serde_json::from_str(&parse_input("{\"log\": 1}")).unwrap();
        assert!(v["error"].as_str().unwrap().contains("JSON"), "{v}");
        let v: Value = serde_json::from_str(&parse_input("   ")).unwrap();
        assert!(v.get("error").is_some());
    }

    #[test]
    fn unreadable_receipts_and_keys_are_errors() {
        let v: Value = serde_json::from_str(&answer("nope", "k", "", "")).unwrap();
        assert!(v["error"].as_str().unwrap().contains("not valid JSON"));
        let r = json!({"log": "l", "index": 0, "leaf": "AA==", "tlog_proof": ""}).to_string();
        let v: Value = serde_json::from_str(&answer(&r, "not a key", "", "")).unwrap();
        assert!(v["error"].as_str().unwrap().contains("pinned"));
    }
}
