//! The `/verify` page's verifier: Candor's own receipt verification
//! (`candor::receipt`), compiled to WebAssembly. Every function takes and
//! returns JSON text so that the page's JavaScript stays a thin shell.

use candor::receipt::{self, Receipt, ReceiptLink};
use candor::subject::SubjectId;
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

fn error(msg: impl std::fmt::Display) -> String {
    json!({ "error": msg.to_string() }).to_string()
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
/// the link's salt.
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

/// Runs the verification procedure of `spec/receipts.md` §3 against the
/// pinned log key. `subject` is empty or the person's email or phone.
#[wasm_bindgen]
pub fn verify(receipt_json: &str, log_key: &str, subject: &str) -> String {
    let receipt = match Receipt::from_json(receipt_json.as_bytes()) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let key = match log_key.trim().parse() {
        Ok(k) => k,
        Err(e) => return error(format!("the pinned log key does not parse: {e}")),
    };
    let subject = subject.trim();
    let id = if subject.is_empty() {
        None
    } else {
        match SubjectId::parse(subject) {
            Ok(id) => Some(id),
            Err(e) => return error(format!("that is not an email address or phone number: {e}")),
        }
    };
    let v = receipt::verify_receipt(&receipt, &key, id.as_ref());
    report(&v)
}

/// Checks a data purchase that an entry cites: `purchase_receipt_json` is the
/// log's receipt for the cited index.
#[wasm_bindgen]
pub fn verify_purchase(
    purchase_receipt_json: &str,
    log_key: &str,
    cited_index: f64,
    cited_leaf_hash: &str,
    company: &str,
    citing_index: f64,
) -> String {
    let receipt = match Receipt::from_json(purchase_receipt_json.as_bytes()) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let key = match log_key.trim().parse() {
        Ok(k) => k,
        Err(e) => return error(format!("the pinned log key does not parse: {e}")),
    };
    let v = receipt::verify_receipt(&receipt, &key, None);
    let citation = receipt::check_purchase_citation(
        &v,
        receipt.index,
        cited_index as u64,
        cited_leaf_hash,
        company,
        citing_index as u64,
    );
    let mut out: Value = serde_json::from_str(&report(&v)).unwrap_or(Value::Null);
    out["citation_ok"] = json!(citation.is_ok());
    if let Err(why) = citation {
        out["citation_error"] = json!(why);
    }
    out.to_string()
}

fn report(v: &receipt::Verification) -> String {
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
    json!({
        "valid": v.is_valid(),
        "checks": checks,
        "entry": v.entry,
        "logged_at": v.logged_at,
        "checkpoint": v.checkpoint,
        "signer_key": v.signer_key,
    })
    .to_string()
}
