//! The online checks 8–10 of `spec/receipts.md` §3 (consistency, not_revoked,
//! purchases) on material the caller fetched from the log.
//!
//! Pure, like the rest of [`crate::receipt`]: `candor verify --online` fetches
//! with its HTTP client, the `/verify` page with the browser's `fetch`, and
//! both hand the responses to [`run`], so that the CLI and the page decide
//! with the same code. [`Plan`] says what to fetch; [`consistency_range`]
//! which consistency proof, once the latest checkpoint is known.
//!
//! With a trust policy (C2SP tlog-policy, `spec/witness.md` §7) the log's
//! latest checkpoint must satisfy it too, and each cited purchase's receipt
//! passes check 3a as well as 1–6.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::entry::Entry;
use crate::hash::Hash;
use crate::merkle::verify_consistency;
use crate::note::VerifierKey;
use crate::policy::Policy;
use crate::receipt::{
    CheckName, Receipt, Verification, check_purchase_citation, verify_receipt_with_policy,
};

/// What asking the log for one resource gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched<T> {
    /// The log answered with the resource.
    Got(T),
    /// The log answered 404: it does not have the resource.
    NotFound,
    /// It could not be fetched: a network error, another status, or a body
    /// that does not parse. Not the receipt's fault, so the verdict becomes
    /// "could not check" rather than "invalid".
    Failed(String),
}

/// One key of a company as the log lists it (`GET /v1/companies/{name}`,
/// `spec/api.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    /// Hex key ID (signed-note key hash) of the company's verifier key.
    pub key_id: String,
    /// Index of the `company_key` entry that revoked it, if any.
    pub revoked_index: Option<u64>,
}

/// Everything fetched for the online checks of one receipt; `None` means it
/// was not fetched (see [`Plan`]).
#[derive(Clone, Debug, Default)]
pub struct Material {
    /// `GET /checkpoint`: the log's latest checkpoint note, as served.
    pub latest_checkpoint: Option<Fetched<Vec<u8>>>,
    /// `GET /v1/proof/consistency?old=O&new=N` for the range
    /// [`consistency_range`] names: the proof's hashes.
    pub consistency_proof: Option<Fetched<Vec<Hash>>>,
    /// `GET /v1/companies/{name}` for the entry's company.
    pub company_keys: Option<Fetched<Vec<ListedKey>>>,
    /// `GET /v1/receipts/{index}` for each cited purchase, by index.
    pub purchases: BTreeMap<u64, Fetched<Receipt>>,
}

/// What the online checks need fetched for a receipt that passed the offline
/// checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The receipt checkpoint's size: fetch `/checkpoint`, then the proof
    /// [`consistency_range`] names.
    pub checkpoint_size: Option<u64>,
    /// Fetch this company's keys.
    pub company: Option<String>,
    /// Fetch the log's receipt for each of these indexes.
    pub purchases: Vec<u64>,
}

impl Plan {
    /// The plan for a verification of checks 1–7 ([`verify_receipt_with_policy`]).
    pub fn for_verification(v: &Verification) -> Plan {
        let company = match &v.entry {
            Some(Entry::CompanyKey(_)) | None => None,
            Some(e) => Some(e.company().to_string()),
        };
        Plan {
            checkpoint_size: v.checkpoint.as_ref().map(|c| c.size),
            company,
            purchases: cited_purchases(v.entry.as_ref())
                .iter()
                .map(|p| p.index)
                .collect(),
        }
    }
}

/// A data purchase a targeting decision cites, and what check 10 found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseCheck {
    /// The cited leaf index.
    pub index: u64,
    /// The cited RFC 6962 leaf hash.
    pub leaf_hash: Hash,
    /// `Some(true)` fetched and verified, `Some(false)` fetched and failed,
    /// `None` not checked.
    pub verified: Option<bool>,
    /// What was found, in plain words.
    pub detail: String,
    /// The purchase entry, once its receipt passed checks 1–6.
    pub entry: Option<Entry>,
}

/// The purchases a targeting decision cites (its `data_sources` of type
/// `purchase`), not yet checked; none for other entries.
pub fn cited_purchases(entry: Option<&Entry>) -> Vec<PurchaseCheck> {
    let Some(Entry::TargetingDecision(d)) = entry else {
        return Vec::new();
    };
    d.data_sources
        .iter()
        .filter_map(|s| s.purchase.as_ref())
        .map(|p| PurchaseCheck {
            index: p.index,
            leaf_hash: p.leaf_hash,
            verified: None,
            detail: "not checked".into(),
            entry: None,
        })
        .collect()
}

/// The consistency proof to fetch, `(old, new)`, once the latest checkpoint
/// is known: none when it does not open with the pinned key (check 8 fails
/// without a proof) or when the trees are the same size (no proof needed).
pub fn consistency_range(
    receipt_size: u64,
    latest_note: &[u8],
    log_key: &VerifierKey,
) -> Option<(u64, u64)> {
    let (latest, _) = open_checkpoint(latest_note, log_key).ok()?;
    (latest.size > receipt_size).then_some((receipt_size, latest.size))
}

/// One online check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Pass(String),
    Fail(String),
    /// Could not be decided (see [`Fetched::Failed`]).
    CouldNot(String),
}

/// The resource, or the outcome when the log did not give it.
fn got<'a, T>(f: Option<&'a Fetched<T>>, what: &str) -> Result<&'a T, Outcome> {
    match f {
        Some(Fetched::Got(t)) => Ok(t),
        Some(Fetched::NotFound) => Err(Outcome::CouldNot(format!("the log has no {what}"))),
        Some(Fetched::Failed(e)) => Err(Outcome::CouldNot(format!("cannot fetch {what}: {e}"))),
        None => Err(Outcome::CouldNot(format!("{what} was not fetched"))),
    }
}

/// Runs checks 8–10 on `material` and appends them to `v`, which must hold
/// checks 1–7 of `receipt` against the same `log_key` and `policy`. Fills in
/// `purchases` (from [`cited_purchases`]). Returns why a check could not be
/// decided, if one could not; such a check is not appended.
pub fn run(
    receipt: &Receipt,
    log_key: &VerifierKey,
    policy: Option<&Policy>,
    material: &Material,
    v: &mut Verification,
    purchases: &mut [PurchaseCheck],
) -> Option<String> {
    let mut problem: Option<String> = None;
    let mut record = |v: &mut Verification, name: CheckName, o: Outcome| match o {
        Outcome::Pass(d) => v.push(name, true, d),
        Outcome::Fail(d) => v.push(name, false, d),
        Outcome::CouldNot(d) => {
            problem.get_or_insert_with(|| format!("{}: {d}", name.as_str()));
        }
    };
    if let Some(cp) = v.checkpoint.clone() {
        let o = consistency(log_key, policy, material, cp.size, &cp.root);
        record(v, CheckName::Consistency, o);
    }
    if let Some(entry) = v.entry.clone()
        && !matches!(entry, Entry::CompanyKey(_))
    {
        let o = not_revoked(material, &entry, v.signer_key.as_deref(), receipt.index);
        record(v, CheckName::NotRevoked, o);
        if !purchases.is_empty() {
            let o = check_purchases(
                log_key,
                policy,
                material,
                entry.company(),
                receipt.index,
                purchases,
            );
            record(v, CheckName::Purchases, o);
        }
    }
    problem
}

/// The log's latest checkpoint, which must be signed by the pinned key and
/// satisfy the trust policy; with a policy that requires cosignatures, also
/// who cosigned it.
fn latest_checkpoint(
    log_key: &VerifierKey,
    policy: Option<&Policy>,
    note: &[u8],
) -> Result<(Checkpoint, Option<Vec<String>>), Outcome> {
    let (cp, _) = open_checkpoint(note, log_key).map_err(|e| {
        Outcome::Fail(format!(
            "the log's latest checkpoint is not signed by the pinned log key: {e}"
        ))
    })?;
    let cosigners = match policy {
        Some(p) => {
            let accepted = p
                .check_with_logs(note, std::slice::from_ref(log_key))
                .map_err(|e| {
                    Outcome::Fail(format!(
                        "the log's latest checkpoint does not satisfy the trust policy: {e}"
                    ))
                })?;
            p.requires_cosignatures()
                .then(|| accepted.cosigners.into_iter().map(|c| c.name).collect())
        }
        None => None,
    };
    Ok((cp, cosigners))
}

/// Check 8: the receipt's tree is a prefix of the log's latest tree
/// (RFC 9162 §2.1.4.2), whose checkpoint must pass [`latest_checkpoint`].
fn consistency(
    log_key: &VerifierKey,
    policy: Option<&Policy>,
    material: &Material,
    size: u64,
    root_b64: &str,
) -> Outcome {
    let note = match got(material.latest_checkpoint.as_ref(), "latest checkpoint") {
        Ok(n) => n,
        Err(o) => return o,
    };
    let (latest, cosigners) = match latest_checkpoint(log_key, policy, note) {
        Ok(l) => l,
        Err(o) => return o,
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
        let proof = match got(material.consistency_proof.as_ref(), "consistency proof") {
            Ok(p) => p,
            Err(o) => return o,
        };
        verify_consistency(size, latest.size, &old_root, &latest.root, proof).is_ok()
    };
    if !ok {
        return Outcome::Fail(format!(
            "today's tree (size {}) does not contain the receipt's tree (size {size}): the log rewrote its history",
            latest.size
        ));
    }
    let witnessed = match cosigners {
        Some(names) => format!("; today's tree head is cosigned by {}", names.join(", ")),
        None => String::new(),
    };
    Outcome::Pass(format!(
        "the receipt's tree (size {size}) is part of today's tree (size {}){witnessed}",
        latest.size
    ))
}

/// Check 9: the signing key was not revoked at an index lower than the entry's.
fn not_revoked(material: &Material, entry: &Entry, signer: Option<&str>, index: u64) -> Outcome {
    let company = entry.company();
    let Some(signer) = signer.and_then(|s| s.parse::<VerifierKey>().ok()) else {
        return Outcome::Fail("the signing key is unknown".into());
    };
    let keys = match &material.company_keys {
        Some(Fetched::NotFound) => {
            return Outcome::Fail(format!("the log does not know the company {company}"));
        }
        f => match got(f.as_ref(), "list of the company's keys") {
            Ok(k) => k,
            Err(o) => return o,
        },
    };
    let id = hex::encode(signer.key_id());
    let Some(k) = keys.iter().find(|k| k.key_id == id) else {
        return Outcome::Fail(format!("the log does not list key {id} for {company}"));
    };
    match k.revoked_index {
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
/// company, logged earlier, with the cited leaf hash; its receipt passes
/// checks 1–6 (and 3a under a policy) against the pinned key.
fn check_purchases(
    log_key: &VerifierKey,
    policy: Option<&Policy>,
    material: &Material,
    company: &str,
    index: u64,
    purchases: &mut [PurchaseCheck],
) -> Outcome {
    let mut failed = Vec::new();
    for p in purchases.iter_mut() {
        let what = format!("receipt for purchase entry {}", p.index);
        let r = match material.purchases.get(&p.index) {
            Some(Fetched::NotFound) => {
                p.verified = Some(false);
                p.detail = format!("the log has no entry {}", p.index);
                failed.push(format!("entry {}: {}", p.index, p.detail));
                continue;
            }
            f => match got(f, &what) {
                Ok(r) => r,
                Err(o) => return o,
            },
        };
        let cv = verify_receipt_with_policy(r, log_key, policy, None);
        p.entry = cv.entry.clone();
        match check_purchase_citation(&cv, r.index, p.index, &p.leaf_hash.to_hex(), company, index)
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
