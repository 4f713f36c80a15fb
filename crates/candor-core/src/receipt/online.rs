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
use crate::receipt::{
    CheckName, Receipt, Verification, check_purchase_citation, verify_receipt_with_policy,
};
use crate::trust_policy::Policy;

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
    let Some(signer) = signer.and_then(|s| VerifierKey::parse_recorded(s).ok()) else {
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

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::cosignature::{cosign, witness_verifier_key};
    use crate::entry::{KeyAction, Leaf, SignedEntry, samples};
    use crate::hash::leaf_hash;
    use crate::merkle::MemoryTree;
    use crate::note::{Note, SignerKey};
    use crate::receipt::CompanyKeyProof;
    use crate::tlog_proof::TlogProof;

    const COMPANY: &str = "acme.example";

    /// A log in memory: a company key registration (0), a data purchase (1),
    /// a decision citing it (2) and a later entry (3).
    struct Log {
        key: SignerKey,
        company: SignerKey,
        leaves: Vec<Vec<u8>>,
        tree: MemoryTree,
    }

    impl Log {
        fn new(key: SignerKey) -> Log {
            let company = SignerKey::generate(COMPANY).expect("key");
            let mut log = Log {
                key,
                company,
                leaves: Vec::new(),
                tree: MemoryTree::new(),
            };
            let reg = samples::company_key(
                COMPANY,
                log.company.verifier().verifying_key(),
                KeyAction::Register,
            );
            let (k, id) = (log.key.signing_key().clone(), log.key.key_id());
            log.append(SignedEntry::sign(reg, &k, id).expect("sign"));
            let purchase = log.company_entry(samples::data_purchase(COMPANY));
            let p_hash = leaf_hash(&log.leaves[purchase as usize]);
            let subject = samples::opening("alice@example.org", 1).commitment();
            log.company_entry(samples::targeting_decision_from_purchase(
                COMPANY, subject, purchase, p_hash,
            ));
            log.company_entry(samples::data_purchase(COMPANY));
            log
        }

        fn company_entry(&mut self, e: Entry) -> u64 {
            let (k, id) = (self.company.signing_key().clone(), self.company.key_id());
            self.append(SignedEntry::sign(e, &k, id).expect("sign"))
        }

        fn append(&mut self, e: SignedEntry) -> u64 {
            let leaf = Leaf::new(e, samples::decision_time())
                .to_bytes()
                .expect("leaf");
            self.leaves.push(leaf.clone());
            self.tree.append(leaf_hash(&leaf))
        }

        fn note(&self, size: u64) -> Vec<u8> {
            let cp = Checkpoint {
                origin: self.key.name().to_string(),
                size,
                root: self.tree.root_at(size).expect("root"),
                extensions: vec![],
            };
            sign_checkpoint(&cp, &self.key).expect("sign checkpoint")
        }

        fn receipt(&self, index: u64, size: u64) -> Receipt {
            let proof = TlogProof {
                extra: None,
                index,
                proof: self.tree.inclusion_proof(index, size).expect("proof"),
                checkpoint: self.note(size),
            };
            Receipt {
                log: self.key.name().to_string(),
                index,
                leaf: STANDARD.encode(&self.leaves[index as usize]),
                leaf_hash: None,
                tlog_proof: String::from_utf8(proof.to_bytes()).expect("text"),
                company_key: Some(CompanyKeyProof {
                    index: 0,
                    leaf: STANDARD.encode(&self.leaves[0]),
                    proof: self
                        .tree
                        .inclusion_proof(0, size)
                        .expect("proof")
                        .iter()
                        .map(|h| h.to_base64())
                        .collect(),
                }),
                subject: None,
                disclosure_header: None,
            }
        }

        /// What an honest log serves for the decision's online checks.
        fn material(&self) -> Material {
            Material {
                latest_checkpoint: Some(Fetched::Got(self.note(4))),
                consistency_proof: Some(Fetched::Got(
                    self.tree.consistency_proof(3, 4).expect("proof"),
                )),
                company_keys: Some(Fetched::Got(vec![ListedKey {
                    key_id: hex::encode(self.company.key_id()),
                    revoked_index: None,
                }])),
                purchases: [(1, Fetched::Got(self.receipt(1, 4)))].into(),
            }
        }
    }

    /// Runs checks 1–10 on the decision's receipt (entry 2 of 3).
    fn check(
        log: &Log,
        policy: Option<&Policy>,
        m: &Material,
    ) -> (Verification, Vec<PurchaseCheck>, Option<String>) {
        let r = log.receipt(2, 3);
        let vkey = log.key.verifier();
        let mut v = verify_receipt_with_policy(&r, &vkey, policy, None);
        assert!(v.is_valid(), "{:?}", v.first_failure());
        let mut purchases = cited_purchases(v.entry.as_ref());
        let problem = run(&r, &vkey, policy, m, &mut v, &mut purchases);
        (v, purchases, problem)
    }

    fn detail(v: &Verification, name: CheckName) -> Option<(bool, String)> {
        v.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.passed, c.detail.clone()))
    }

    fn failed(v: &Verification, name: CheckName) -> String {
        match detail(v, name) {
            Some((false, d)) => d,
            other => panic!("{name:?}: expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn an_honest_log_passes_every_online_check() {
        let log = Log::new(SignerKey::generate("log.example/online").expect("key"));
        let vkey = log.key.verifier();
        let v = verify_receipt_with_policy(&log.receipt(2, 3), &vkey, None, None);
        let plan = Plan::for_verification(&v);
        assert_eq!(
            plan,
            Plan {
                checkpoint_size: Some(3),
                company: Some(COMPANY.into()),
                purchases: vec![1],
            }
        );
        assert_eq!(consistency_range(3, &log.note(4), &vkey), Some((3, 4)));
        assert_eq!(consistency_range(3, &log.note(3), &vkey), None);
        let other = SignerKey::generate("log.example/online").expect("key");
        assert_eq!(consistency_range(3, &log.note(4), &other.verifier()), None);

        let (v, purchases, problem) = check(&log, None, &log.material());
        assert_eq!(problem, None);
        assert!(v.is_valid(), "{:?}", v.first_failure());
        for name in [
            CheckName::Consistency,
            CheckName::NotRevoked,
            CheckName::Purchases,
        ] {
            assert!(matches!(detail(&v, name), Some((true, _))), "{name:?}");
        }
        assert_eq!(purchases.len(), 1);
        assert_eq!(purchases[0].verified, Some(true));
        assert!(matches!(purchases[0].entry, Some(Entry::DataPurchase(_))));

        // The same size as the receipt's: no proof needed, the roots must agree.
        let mut same = log.material();
        same.latest_checkpoint = Some(Fetched::Got(log.note(3)));
        same.consistency_proof = None;
        let (v, _, problem) = check(&log, None, &same);
        assert_eq!(problem, None);
        assert!(v.is_valid());
    }

    #[test]
    fn a_dishonest_log_fails_and_an_unreachable_one_is_not_decided() {
        let log = Log::new(SignerKey::generate("log.example/online").expect("key"));

        // A fork with the same key: entry 2 replaced.
        let mut fork = Log::new(log.key.clone());
        fork.leaves.truncate(0);
        fork.tree = MemoryTree::new();
        for (i, leaf) in log.leaves.iter().enumerate() {
            let leaf = if i == 2 {
                log.leaves[3].clone()
            } else {
                leaf.clone()
            };
            fork.leaves.push(leaf.clone());
            fork.tree.append(leaf_hash(&leaf));
        }
        let mut m = log.material();
        m.latest_checkpoint = Some(Fetched::Got(fork.note(4)));
        m.consistency_proof = Some(Fetched::Got(fork.tree.consistency_proof(3, 4).expect("p")));
        let (v, _, _) = check(&log, None, &m);
        assert!(failed(&v, CheckName::Consistency).contains("rewrote its history"));

        let mut m = log.material();
        m.latest_checkpoint = Some(Fetched::Got(log.note(2)));
        let (v, _, _) = check(&log, None, &m);
        assert!(failed(&v, CheckName::Consistency).contains("the log went back"));

        let impostor = SignerKey::generate("log.example/online").expect("key");
        let mut m = log.material();
        m.latest_checkpoint = Some(Fetched::Got(Log::new(impostor).note(4)));
        let (v, _, _) = check(&log, None, &m);
        assert!(failed(&v, CheckName::Consistency).contains("not signed by the pinned log key"));

        let mut m = log.material();
        m.company_keys = Some(Fetched::Got(vec![ListedKey {
            key_id: hex::encode(log.company.key_id()),
            revoked_index: Some(1),
        }]));
        m.purchases.insert(1, Fetched::NotFound);
        let (v, purchases, _) = check(&log, None, &m);
        assert!(failed(&v, CheckName::NotRevoked).contains("revoked at entry 1"));
        assert!(failed(&v, CheckName::Purchases).contains("the log has no entry 1"));
        assert_eq!(purchases[0].verified, Some(false));

        let mut m = log.material();
        m.company_keys = Some(Fetched::NotFound);
        // The log answers entry 3 (a purchase logged after the decision) for 1.
        m.purchases.insert(1, Fetched::Got(log.receipt(3, 4)));
        let (v, _, _) = check(&log, None, &m);
        assert!(failed(&v, CheckName::NotRevoked).contains("does not know the company"));
        assert!(failed(&v, CheckName::Purchases).contains("returned entry 3"));

        // Nothing could be fetched: no check is decided, and the reason is kept.
        let m = Material {
            latest_checkpoint: Some(Fetched::Failed("connection refused".into())),
            ..Material::default()
        };
        let (v, purchases, problem) = check(&log, None, &m);
        let problem = problem.expect("a could-not-check reason");
        assert!(
            problem.starts_with("consistency: cannot fetch latest checkpoint"),
            "{problem}"
        );
        assert!(problem.contains("connection refused"));
        assert_eq!(detail(&v, CheckName::Consistency), None);
        assert_eq!(detail(&v, CheckName::NotRevoked), None);
        assert_eq!(purchases[0].verified, None);
    }

    #[test]
    fn under_a_policy_the_latest_checkpoint_needs_the_quorum() {
        let log = Log::new(SignerKey::generate("log.example/online").expect("key"));
        let witness = SignerKey::generate("witness.example/w").expect("key");
        let policy = Policy::threshold(
            log.key.verifier(),
            vec![("w".into(), witness_verifier_key(&witness))],
            1,
        )
        .expect("policy");
        let cosigned = |note: Vec<u8>| {
            let mut n = Note::parse(&note).expect("note");
            n.signatures
                .push(cosign(&n.text, 1_700_000_000, &witness).expect("cosign"));
            n.to_bytes()
        };
        // The receipt's checkpoint and the purchase's are cosigned too.
        let mut r = log.receipt(2, 3);
        let mut proof = TlogProof::parse(r.tlog_proof.as_bytes()).expect("proof");
        proof.checkpoint = cosigned(proof.checkpoint);
        r.tlog_proof = String::from_utf8(proof.to_bytes()).expect("text");
        let mut purchase = log.receipt(1, 4);
        let mut proof = TlogProof::parse(purchase.tlog_proof.as_bytes()).expect("proof");
        proof.checkpoint = cosigned(proof.checkpoint);
        purchase.tlog_proof = String::from_utf8(proof.to_bytes()).expect("text");

        let vkey = log.key.verifier();
        let run_with = |m: &Material| {
            let mut v = verify_receipt_with_policy(&r, &vkey, Some(&policy), None);
            assert!(v.is_valid(), "{:?}", v.first_failure());
            let mut p = cited_purchases(v.entry.as_ref());
            let problem = run(&r, &vkey, Some(&policy), m, &mut v, &mut p);
            assert_eq!(problem, None);
            v
        };

        let mut m = log.material();
        m.latest_checkpoint = Some(Fetched::Got(cosigned(log.note(4))));
        m.purchases.insert(1, Fetched::Got(purchase));
        let v = run_with(&m);
        assert!(v.is_valid(), "{:?}", v.first_failure());
        let (_, d) = detail(&v, CheckName::Consistency).expect("ran");
        assert!(d.ends_with("today's tree head is cosigned by w"), "{d}");

        // Without the cosignature on the latest checkpoint, or on the purchase's.
        let mut bare = m.clone();
        bare.latest_checkpoint = Some(Fetched::Got(log.note(4)));
        let v = run_with(&bare);
        let d = failed(&v, CheckName::Consistency);
        assert!(d.contains("does not satisfy the trust policy"), "{d}");
        assert!(d.contains("no listed witness cosigned it"), "{d}");
        let mut bare = m;
        bare.purchases.insert(1, Fetched::Got(log.receipt(1, 4)));
        let v = run_with(&bare);
        assert!(failed(&v, CheckName::Purchases).contains("trust policy"));
    }
}
