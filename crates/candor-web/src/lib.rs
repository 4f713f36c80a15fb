//! The `/verify` page's verifier: Candor's own receipt verification
//! (`candor_core::receipt`, the code `candor verify` runs), compiled to WebAssembly.
//!
//! The page's JavaScript only fetches: it asks [`plan`] (and, once it has the
//! latest checkpoint, [`consistency_request`]) what the online checks need,
//! fetches exactly that from the log, and hands the raw responses to
//! [`answer`], which runs checks 1–10 of `spec/receipts.md` §3 here — the
//! online ones with `candor_core::receipt::online`, as `candor verify --online`
//! does — under the trust policy pinned in the page, and returns the same
//! plain-language answer as `candor verify`. Every function
//! takes and returns JSON text so that the JavaScript stays a thin shell;
//! a failure to read the input is `{"error": "…"}`.

use candor_core::hash::Hash;
use candor_core::note::VerifierKey;
use candor_core::receipt::online::{self, Fetched, ListedKey, Material};
use candor_core::receipt::{self, CheckName, Receipt, ReceiptLink, verify_receipt_with_policy};
use candor_core::subject::SubjectId;
use candor_core::trust_policy::Policy;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use wasm_bindgen::prelude::*;

// The CLI's plain-language rendering, so that the page and `candor verify` say the
// same thing. The page uses its facts and verdict, not its text rendering.
use candor_core::answer::{self, Answer, Purchase, Status};

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

/// The trust policy pinned in the page (C2SP tlog-policy text; empty for
/// none, when the log runs without witnesses).
fn parse_policy(policy_text: &str) -> Result<Option<Policy>, String> {
    if policy_text.trim().is_empty() {
        return Ok(None);
    }
    Policy::parse(policy_text.as_bytes())
        .map(Some)
        .map_err(|e| format!("the trust policy pinned in this page does not parse: {e}"))
}

/// The pinned trust policy for the page to show:
/// `{"quorum": "2 of w0, w1, w2", "witnesses": [{"name", "key"}, …]}`,
/// `{}` for none, or `{"error"}`.
#[wasm_bindgen]
pub fn policy_summary(policy_text: &str) -> String {
    match parse_policy(policy_text) {
        Ok(None) => "{}".into(),
        Ok(Some(p)) => json!({
            "quorum": p.describe(),
            "requires_cosignatures": p.requires_cosignatures(),
            "witnesses": p.witnesses().iter().map(|w| json!({
                "name": w.name,
                "key": w.key.to_string(),
            })).collect::<Vec<_>>(),
        })
        .to_string(),
        Err(e) => error(e),
    }
}

/// What the online checks 8–10 need fetched for this receipt
/// ([`online::Plan`]): `{"checkpoint_size": N, "company": NAME,
/// "purchases": [INDEX, …]}`, or `{"offline_failed": true}` when an offline
/// check other than the subject's already failed (then nothing more is
/// fetched).
#[wasm_bindgen]
pub fn plan(receipt_json: &str, log_key: &str, policy_text: &str) -> String {
    plan_value(receipt_json, log_key, policy_text)
        .map(|v| v.to_string())
        .unwrap_or_else(error)
}

fn plan_value(receipt_json: &str, log_key: &str, policy_text: &str) -> Result<Value, String> {
    let receipt = Receipt::from_json(receipt_json.as_bytes()).map_err(|e| e.to_string())?;
    let key = parse_key(log_key)?;
    let policy = parse_policy(policy_text)?;
    let v = verify_receipt_with_policy(&receipt, &key, policy.as_ref(), None);
    if v.checks.iter().any(|c| !c.passed) {
        return Ok(json!({ "offline_failed": true }));
    }
    serde_json::to_value(online::Plan::for_verification(&v)).map_err(|e| e.to_string())
}

/// The consistency proof to fetch once the log's latest checkpoint is known
/// ([`online::consistency_range`]): `{"old": O, "new": N}`, or `{}` for none.
#[wasm_bindgen]
pub fn consistency_request(checkpoint_note: &str, log_key: &str, receipt_size: u64) -> String {
    let key = match parse_key(log_key) {
        Ok(k) => k,
        Err(e) => return error(e),
    };
    match online::consistency_range(receipt_size, checkpoint_note.as_bytes(), &key) {
        Some((old, new)) => json!({ "old": old, "new": new }).to_string(),
        None => "{}".into(),
    }
}

/// One HTTP response the page fetched from the log, or why it could not.
#[derive(Debug, Default, Deserialize)]
struct Response {
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
    checkpoint: Option<Response>,
    /// `GET /v1/proof/consistency?old=…&new=…`, as [`consistency_request`] said.
    consistency: Option<Response>,
    /// `GET /v1/companies/{name}`.
    company: Option<Response>,
    /// `GET /v1/receipts/{index}` for each cited purchase, by index.
    #[serde(default)]
    purchases: HashMap<String, Response>,
}

/// A response as the online checks take it: 200 parsed by `parse`, 404, or
/// a failure (a network error, another status, or a body that does not parse).
fn fetched<T>(
    r: Option<&Response>,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<Fetched<T>> {
    let r = r?;
    Some(match r {
        Response { error: Some(e), .. } => Fetched::Failed(e.clone()),
        Response {
            status: 200, body, ..
        } => match parse(body) {
            Ok(t) => Fetched::Got(t),
            Err(e) => Fetched::Failed(format!("the log's {what} is malformed: {e}")),
        },
        Response { status: 404, .. } => Fetched::NotFound,
        Response { status, .. } => Fetched::Failed(format!("the log answered {status}")),
    })
}

/// `GET /v1/proof/consistency` (`spec/api.md`): `{"old", "new", "proof"}`.
fn parse_proof(body: &str, old: u64, new: u64) -> Result<Vec<Hash>, String> {
    let p: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let (o, n) = (
        p.get("old").and_then(Value::as_u64),
        p.get("new").and_then(Value::as_u64),
    );
    if (o, n) != (Some(old), Some(new)) {
        let show = |x: Option<u64>| x.map_or_else(|| "?".to_string(), |x| x.to_string());
        return Err(format!(
            "it is for sizes {} to {}, not {old} to {new}",
            show(o),
            show(n)
        ));
    }
    p.get("proof")
        .and_then(Value::as_array)
        .and_then(|hs| {
            hs.iter()
                .map(|h| h.as_str().and_then(Hash::from_base64))
                .collect()
        })
        .ok_or_else(|| "its proof is not a list of base64 hashes".to_string())
}

/// `GET /v1/companies/{name}` (`spec/api.md`): `{"keys": [{"key_id", "revoked_index"}]}`.
fn parse_keys(body: &str) -> Result<Vec<ListedKey>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("it has no list of keys")?;
    keys.iter()
        .map(|k| {
            Ok(ListedKey {
                key_id: k
                    .get("key_id")
                    .and_then(Value::as_str)
                    .ok_or("a key has no key_id")?
                    .to_string(),
                revoked_index: k.get("revoked_index").and_then(Value::as_u64),
            })
        })
        .collect()
}

impl Online {
    /// The fetched responses as [`online::Material`] for a receipt whose
    /// checkpoint has `receipt_size` entries.
    fn material(&self, key: &VerifierKey, receipt_size: Option<u64>) -> Material {
        let latest = fetched(self.checkpoint.as_ref(), "checkpoint", |b| {
            Ok(b.as_bytes().to_vec())
        });
        let range = match (&latest, receipt_size) {
            (Some(Fetched::Got(note)), Some(size)) => online::consistency_range(size, note, key),
            _ => None,
        };
        let consistency_proof = range.map(|(old, new)| {
            fetched(self.consistency.as_ref(), "consistency proof", |b| {
                parse_proof(b, old, new)
            })
            .unwrap_or_else(|| Fetched::Failed("the consistency proof was not fetched".into()))
        });
        let purchases = self
            .purchases
            .iter()
            .filter_map(|(i, r)| {
                let index = i.parse::<u64>().ok()?;
                let f = fetched(Some(r), "receipt", |b| {
                    Receipt::from_json(b.as_bytes()).map_err(|e| e.to_string())
                })?;
                Some((index, f))
            })
            .collect();
        Material {
            latest_checkpoint: latest,
            consistency_proof,
            company_keys: fetched(
                self.company.as_ref(),
                "list of the company's keys",
                parse_keys,
            ),
            purchases,
        }
    }
}

/// The whole verification of one receipt against the pinned log key and
/// trust policy (empty for none): checks 1–7 (and 3a) on the receipt, 8–10
/// on the responses in `online_json` (see [`Online`]) with the CLI's code
/// ([`online::run`]), and the person's `subject` (empty for none). Returns
/// `candor verify --json`'s answer, with each check's plain description, and
/// `subject_state` `match`/`mismatch` when a subject was checked.
#[wasm_bindgen]
pub fn answer(
    receipt_json: &str,
    log_key: &str,
    policy_text: &str,
    subject: &str,
    online_json: &str,
) -> String {
    answer_value(receipt_json, log_key, policy_text, subject, online_json)
        .map(|v| v.to_string())
        .unwrap_or_else(error)
}

fn answer_value(
    receipt_json: &str,
    log_key: &str,
    policy_text: &str,
    subject: &str,
    online_json: &str,
) -> Result<Value, String> {
    let receipt = Receipt::from_json(receipt_json.as_bytes()).map_err(|e| e.to_string())?;
    let key = parse_key(log_key)?;
    let policy = parse_policy(policy_text)?;
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
    let fetched: Online = if online_json.trim().is_empty() {
        Online::default()
    } else {
        serde_json::from_str(online_json).map_err(|e| format!("online data: {e}"))?
    };

    let mut v = verify_receipt_with_policy(&receipt, &key, policy.as_ref(), id.as_ref());
    let mut cited = online::cited_purchases(v.entry.as_ref());
    let mut problem = None;
    // A subject mismatch does not cast doubt on the disclosure itself, so the
    // facts shown (and the purchases they cite) are still checked online.
    if v.checks
        .iter()
        .all(|c| c.passed || c.name == CheckName::Subject)
    {
        let material = fetched.material(&key, v.checkpoint.as_ref().map(|c| c.size));
        problem = online::run(
            &receipt,
            &key,
            policy.as_ref(),
            &material,
            &mut v,
            &mut cited,
        );
    }
    let purchases: Vec<Purchase> = cited
        .iter()
        .map(|p| Purchase {
            index: p.index,
            leaf_hash: p.leaf_hash.to_hex(),
            verified: p.verified,
            detail: p.detail.clone(),
            entry: p.entry.as_ref().and_then(|e| serde_json::to_value(e).ok()),
        })
        .collect();

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

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
    use candor_core::cosignature::witness_verifier_key;
    use candor_core::note::SignerKey;

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
    fn the_pinned_policy_is_summarised_or_refused() {
        let log = SignerKey::generate("log.example/page").expect("key");
        let ws: Vec<(String, VerifierKey)> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let k = SignerKey::generate(&format!("{n}.example")).expect("key");
                (n.to_string(), witness_verifier_key(&k))
            })
            .collect();
        let text = Policy::threshold_text(&log.verifier(), &ws, 2);
        let v: Value = serde_json::from_str(&policy_summary(&text)).unwrap();
        assert_eq!(v["quorum"], "2 of a, b, c");
        assert_eq!(v["requires_cosignatures"], true);
        assert_eq!(v["witnesses"][1]["name"], "b");
        assert_eq!(v["witnesses"][1]["key"], ws[1].1.to_string());
        assert_eq!(policy_summary("  \n"), "{}");

        // A broken policy in the page stops every verification, never skips it.
        let broken = "witness a not-a-key\nquorum a\n";
        let v: Value = serde_json::from_str(&policy_summary(broken)).unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("policy line 1"),
            "{v}"
        );
        let r = json!({"log": "l", "index": 0, "leaf": "AA==", "tlog_proof": ""}).to_string();
        let key = log.verifier().to_string();
        for out in [plan(&r, &key, broken), answer(&r, &key, broken, "", "")] {
            let v: Value = serde_json::from_str(&out).unwrap();
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("trust policy pinned in this page"),
                "{v}"
            );
        }
    }

    #[test]
    fn consistency_is_asked_only_for_a_larger_tree_signed_by_the_pinned_key() {
        let log = SignerKey::generate("log.example/page").expect("key");
        let cp = Checkpoint {
            origin: "log.example/page".into(),
            size: 9,
            root: candor_core::hash::sha256(b"root"),
            extensions: vec![],
        };
        let note = String::from_utf8(sign_checkpoint(&cp, &log).unwrap()).unwrap();
        let key = log.verifier().to_string();
        let v: Value = serde_json::from_str(&consistency_request(&note, &key, 4)).unwrap();
        assert_eq!(v, json!({"old": 4, "new": 9}));
        assert_eq!(consistency_request(&note, &key, 9), "{}");
        let other = SignerKey::generate("log.example/page").expect("key");
        assert_eq!(
            consistency_request(&note, &other.verifier().to_string(), 4),
            "{}"
        );
        assert!(consistency_request(&note, "nope", 4).contains("error"));
    }

    #[test]
    fn fetched_responses_become_material() {
        let online: Online = serde_json::from_str(
            r#"{"checkpoint": {"error": "offline"},
                "company": {"status": 200, "body": "{\"keys\": [{\"key_id\": \"0a0b0c0d\", \"revoked_index\": 7}]}"},
                "purchases": {"3": {"status": 404, "body": ""}, "4": {"status": 500, "body": ""}}}"#,
        )
        .unwrap();
        let key = SignerKey::generate("log.example/page").unwrap().verifier();
        let m = online.material(&key, Some(2));
        assert_eq!(m.latest_checkpoint, Some(Fetched::Failed("offline".into())));
        assert_eq!(m.consistency_proof, None);
        assert_eq!(
            m.company_keys,
            Some(Fetched::Got(vec![ListedKey {
                key_id: "0a0b0c0d".into(),
                revoked_index: Some(7)
            }]))
        );
        assert_eq!(m.purchases.get(&3), Some(&Fetched::NotFound));
        assert!(matches!(m.purchases.get(&4), Some(Fetched::Failed(e)) if e.contains("500")));
        assert_eq!(
            parse_proof(r#"{"old": 1, "new": 3, "proof": []}"#, 1, 2),
            Err("it is for sizes 1 to 3, not 1 to 2".into())
        );
        assert!(parse_keys(r#"{"name": "x"}"#).is_err());
    }

    #[test]
    fn unreadable_receipts_and_keys_are_errors() {
        let v: Value = serde_json::from_str(&answer("nope", "k", "", "", "")).unwrap();
        assert!(v["error"].as_str().unwrap().contains("not valid JSON"));
        let r = json!({"log": "l", "index": 0, "leaf": "AA==", "tlog_proof": ""}).to_string();
        let v: Value = serde_json::from_str(&answer(&r, "not a key", "", "", "")).unwrap();
        assert!(v["error"].as_str().unwrap().contains("pinned"));
    }
}
