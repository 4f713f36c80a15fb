//! Receipts and the verification procedure of `spec/receipts.md`.
//!
//! Pure: the CLI, the server, the monitor and the browser page all call
//! [`verify_receipt`], and fetch whatever the online checks need themselves.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, open_checkpoint};
use crate::entry::{Entry, Leaf, verify_signed_message};
use crate::hash::{Hash, leaf_hash};
use crate::merkle::verify_inclusion;
use crate::note::VerifierKey;
use crate::subject::{Opening, Salt, SubjectId, commit};
use crate::tlog_proof::TlogProof;
use crate::trust_policy::Policy;

pub mod online;

/// Proof that the key an entry is signed with was registered on the log
/// (`spec/receipts.md` §1, `company_key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyKeyProof {
    pub index: u64,
    /// Base64 of the `company_key` leaf bytes.
    pub leaf: String,
    /// Base64 hashes of its inclusion proof in the receipt's checkpoint.
    pub proof: Vec<String>,
}

/// The subject opening as a receipt carries it. `id` may be absent in the
/// consumer form, where the person supplies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectOpening {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub salt: String,
}

/// A company receipt (`spec/receipts.md` §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub log: String,
    pub index: u64,
    pub leaf: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    pub tlog_proof: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_key: Option<CompanyKeyProof>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectOpening>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure_header: Option<String>,
}

impl Receipt {
    /// Parses a receipt from JSON, naming what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::Json(e.to_string()))
    }

    /// The exact leaf bytes.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        STANDARD
            .decode(&self.leaf)
            .map_err(|_| ReceiptError::Field("leaf is not valid base64".into()))
    }

    /// Attaches a subject opening (done by the company, never by the log).
    pub fn with_subject(mut self, opening: &Opening) -> Receipt {
        self.subject = Some(SubjectOpening {
            id: Some(opening.id.to_string()),
            salt: opening.salt.to_base64url(),
        });
        self
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt is not valid JSON: {0}")]
    Json(String),
    #[error("receipt field: {0}")]
    Field(String),
    #[error("receipt URL: {0}")]
    Url(String),
}

/// The consumer form of a receipt: what the `#r=` fragment of a verify URL
/// carries (`spec/receipts.md` §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptLink {
    pub index: u64,
    pub leaf_hash: Hash,
    pub salt: Option<Salt>,
}

const LINK_VERSION: &str = "v1";

impl ReceiptLink {
    /// The fragment value after `#r=`.
    pub fn fragment(&self) -> String {
        let mut s = format!(
            "{LINK_VERSION}.{}.{}",
            self.index,
            URL_SAFE_NO_PAD.encode(self.leaf_hash.0)
        );
        if let Some(salt) = &self.salt {
            s.push('.');
            s.push_str(&salt.to_base64url());
        }
        s
    }

    /// The verify URL for a log whose public base URL is `base`.
    pub fn url(&self, base: &str) -> String {
        format!(
            "{}/verify#r={}",
            base.trim_end_matches('/'),
            self.fragment()
        )
    }

    /// The `Disclosure-Receipt` header line (without the trailing CRLF).
    pub fn header(&self, base: &str) -> String {
        format!("Disclosure-Receipt: <{}>", self.url(base))
    }

    /// The footer sentence for the message body.
    pub fn footer(&self, base: &str) -> String {
        format!(
            "Why did you get this message? Check our public disclosure: {}",
            self.url(base)
        )
    }

    /// Parses a fragment value (`v1.INDEX.HASH[.SALT]`).
    pub fn parse_fragment(fragment: &str) -> Result<ReceiptLink, ReceiptError> {
        let bad = |why: &str| ReceiptError::Url(why.to_string());
        let mut parts = fragment.split('.');
        if parts.next() != Some(LINK_VERSION) {
            return Err(bad("unknown receipt link version (expected v1)"));
        }
        let index = parts
            .next()
            .and_then(|s| {
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    None
                } else {
                    s.parse::<u64>().ok()
                }
            })
            .ok_or_else(|| bad("index is not a decimal number"))?;
        let leaf_hash = parts
            .next()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|b| Hash::from_slice(&b))
            .ok_or_else(|| bad("leaf hash is not 32 bytes of base64url"))?;
        let salt = match parts.next() {
            None => None,
            Some(s) => Some(
                Salt::from_base64url(s).map_err(|_| bad("salt is not 32 bytes of base64url"))?,
            ),
        };
        if parts.next().is_some() {
            return Err(bad("trailing data after the salt"));
        }
        Ok(ReceiptLink {
            index,
            leaf_hash,
            salt,
        })
    }

    /// Extracts the link from a verify URL, a `Disclosure-Receipt:` header line
    /// or a bare fragment.
    pub fn parse(input: &str) -> Result<(Option<String>, ReceiptLink), ReceiptError> {
        let mut s = input.trim();
        if let Some(rest) = strip_prefix_ci(s, "Disclosure-Receipt:") {
            s = rest.trim();
        }
        let s = s.trim_start_matches('<').trim_end_matches('>');
        let (base, fragment) = match s.split_once('#') {
            Some((url, frag)) => {
                let base = url
                    .strip_suffix("/verify")
                    .ok_or_else(|| ReceiptError::Url("URL does not end in /verify".into()))?;
                (Some(base.to_string()), frag)
            }
            None => (None, s),
        };
        let value = fragment
            .strip_prefix("r=")
            .ok_or_else(|| ReceiptError::Url("fragment does not start with r=".into()))?;
        Ok((base, ReceiptLink::parse_fragment(value)?))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) {
        let (head, tail) = s.split_at(prefix.len());
        head.eq_ignore_ascii_case(prefix).then_some(tail)
    } else {
        None
    }
}

/// The checks of `spec/receipts.md` §3, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Leaf,
    ProofFormat,
    CheckpointSignature,
    WitnessQuorum,
    Inclusion,
    CompanyKey,
    CompanySignature,
    Subject,
    Consistency,
    NotRevoked,
    Purchases,
}

impl CheckName {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckName::Leaf => "leaf",
            CheckName::ProofFormat => "proof_format",
            CheckName::CheckpointSignature => "checkpoint_signature",
            CheckName::WitnessQuorum => "witness_quorum",
            CheckName::Inclusion => "inclusion",
            CheckName::CompanyKey => "company_key",
            CheckName::CompanySignature => "company_signature",
            CheckName::Subject => "subject",
            CheckName::Consistency => "consistency",
            CheckName::NotRevoked => "not_revoked",
            CheckName::Purchases => "purchases",
        }
    }

    /// A plain-language description of what the check establishes.
    pub fn describe(&self) -> &'static str {
        match self {
            CheckName::Leaf => "the receipt holds a well-formed log entry",
            CheckName::ProofFormat => "the proof is well-formed",
            CheckName::CheckpointSignature => "the log signed the tree head",
            CheckName::WitnessQuorum => "enough independent witnesses cosigned the tree head",
            CheckName::Inclusion => "the entry is in the log",
            CheckName::CompanyKey => "the company's key was registered on the log",
            CheckName::CompanySignature => "the company signed the entry",
            CheckName::Subject => "the message was about you",
            CheckName::Consistency => "the log still holds the entry today",
            CheckName::NotRevoked => "the company's key was not revoked",
            CheckName::Purchases => "the cited data purchases are on the log",
        }
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub passed: bool,
    pub detail: String,
}

/// The outcome of [`verify_receipt`]: every check that ran, and what was
/// learnt along the way.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged_at: Option<String>,
    /// The RFC 6962 hash of the receipt's leaf, once decoded.
    #[serde(skip)]
    pub leaf_hash: Option<Hash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSummary>,
    /// The verifier key that signed the entry, once established.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_key: Option<String>,
    /// The index of the `company_key` entry that registered the signer key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_registered_at: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    pub origin: String,
    pub size: u64,
    pub root: String,
    /// The whole signed checkpoint note, for online consistency checks.
    #[serde(skip)]
    pub note: Vec<u8>,
}

impl Verification {
    /// Valid only if every check that ran passed, and at least the offline
    /// core (leaf to company signature) ran.
    pub fn is_valid(&self) -> bool {
        let ran = |n| self.checks.iter().any(|c| c.name == n);
        self.checks.iter().all(|c| c.passed)
            && ran(CheckName::Inclusion)
            && ran(CheckName::CompanySignature)
    }

    /// The first failed check, if any.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }

    pub fn push(&mut self, name: CheckName, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            passed,
            detail: detail.into(),
        });
    }

    fn pass(&mut self, name: CheckName, detail: impl Into<String>) {
        self.push(name, true, detail);
    }

    fn fail(&mut self, name: CheckName, detail: impl Into<String>) -> &mut Self {
        self.push(name, false, detail);
        self
    }
}

/// Runs the offline checks 1–7 of `spec/receipts.md` §3 against a pinned log
/// key. `subject`, when given, is the person's own identifier; a mismatch fails
/// the verification.
pub fn verify_receipt(
    receipt: &Receipt,
    log_key: &VerifierKey,
    subject: Option<&SubjectId>,
) -> Verification {
    verify_receipt_with_policy(receipt, log_key, None, subject)
}

/// Like [`verify_receipt`]; with a trust `policy` (C2SP tlog-policy) the
/// checkpoint must also satisfy it, which adds check 3a, `witness_quorum`
/// (`spec/receipts.md` §3). The pinned `log_key` is trusted in addition to the
/// policy's logs.
pub fn verify_receipt_with_policy(
    receipt: &Receipt,
    log_key: &VerifierKey,
    policy: Option<&Policy>,
    subject: Option<&SubjectId>,
) -> Verification {
    let mut v = Verification {
        checks: Vec::new(),
        entry: None,
        logged_at: None,
        leaf_hash: None,
        checkpoint: None,
        signer_key: None,
        signer_registered_at: None,
    };

    // 1. leaf
    let Ok(leaf_bytes) = receipt.leaf_bytes() else {
        v.fail(CheckName::Leaf, "the leaf is not valid base64");
        return v;
    };
    let lh = leaf_hash(&leaf_bytes);
    v.leaf_hash = Some(lh);
    if let Some(claimed) = &receipt.leaf_hash
        && Hash::from_hex(claimed) != Some(lh)
    {
        v.fail(
            CheckName::Leaf,
            "the leaf hash in the receipt does not match the leaf bytes",
        );
        return v;
    }
    let (leaf, message) = match Leaf::parse_with_message(&leaf_bytes) {
        Ok(l) => l,
        Err(e) => {
            v.fail(
                CheckName::Leaf,
                format!("the leaf is not a Candor entry: {e}"),
            );
            return v;
        }
    };
    v.entry = Some(leaf.entry.clone());
    v.logged_at = Some(leaf.logged_at.clone());
    v.pass(
        CheckName::Leaf,
        format!("a {} entry by {}", leaf.entry.kind(), leaf.entry.company()),
    );

    // 2. proof_format
    let proof = match TlogProof::parse(receipt.tlog_proof.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            v.fail(
                CheckName::ProofFormat,
                format!("the proof does not parse: {e}"),
            );
            return v;
        }
    };
    if proof.index != receipt.index {
        v.fail(
            CheckName::ProofFormat,
            format!(
                "the proof is for index {} but the receipt says {}",
                proof.index, receipt.index
            ),
        );
        return v;
    }
    v.pass(CheckName::ProofFormat, "c2sp.org/tlog-proof@v1");

    // 3. checkpoint_signature
    let checkpoint = match open_checkpoint(&proof.checkpoint, log_key) {
        Ok((cp, _)) => cp,
        Err(e) => {
            v.fail(
                CheckName::CheckpointSignature,
                format!(
                    "the checkpoint is not signed by the pinned log key {}: {e}",
                    log_key.name()
                ),
            );
            return v;
        }
    };
    if checkpoint.origin != receipt.log {
        v.fail(
            CheckName::CheckpointSignature,
            format!(
                "the receipt names log {:?} but the checkpoint is from {:?}",
                receipt.log, checkpoint.origin
            ),
        );
        return v;
    }
    v.checkpoint = Some(CheckpointSummary {
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root: checkpoint.root.to_base64(),
        note: proof.checkpoint.clone(),
    });
    v.pass(
        CheckName::CheckpointSignature,
        format!("signed by {} at size {}", log_key.name(), checkpoint.size),
    );

    // 3a. witness_quorum
    if let Some(policy) = policy {
        match policy.check_with_logs(&proof.checkpoint, std::slice::from_ref(log_key)) {
            Ok(accepted) => {
                let names: Vec<&str> = accepted.cosigners.iter().map(|c| c.name.as_str()).collect();
                let detail = if policy.requires_cosignatures() {
                    format!("cosigned by {}", names.join(", "))
                } else {
                    "the trust policy requires no cosignatures".to_string()
                };
                v.pass(CheckName::WitnessQuorum, detail);
            }
            Err(e) => {
                v.fail(
                    CheckName::WitnessQuorum,
                    format!("the checkpoint does not satisfy the trust policy: {e}"),
                );
                return v;
            }
        }
    }

    // 4. inclusion
    if let Err(e) = verify_inclusion(
        receipt.index,
        checkpoint.size,
        &lh,
        &proof.proof,
        &checkpoint.root,
    ) {
        v.fail(
            CheckName::Inclusion,
            format!(
                "the entry is not at index {} of the signed tree: {e}",
                receipt.index
            ),
        );
        return v;
    }
    v.pass(
        CheckName::Inclusion,
        format!("entry {} of {}", receipt.index, checkpoint.size),
    );

    // 5. company_key, 6. company_signature
    let signer = match signer_key(receipt, &leaf, &checkpoint, log_key, &mut v) {
        Some(k) => k,
        None => return v,
    };
    match verify_signed_message(signer.verifying_key(), &leaf.signature, &message) {
        Ok(()) => v.pass(
            CheckName::CompanySignature,
            format!("signed by {}", signer.name()),
        ),
        Err(e) => {
            v.fail(
                CheckName::CompanySignature,
                format!("the entry's signature does not verify: {e}"),
            );
            return v;
        }
    }

    // 7. subject
    if let Some(id) = subject {
        check_subject(receipt, &leaf.entry, id, &mut v);
    }
    v
}

/// Establishes the key that must have signed the entry (check 5).
fn signer_key(
    receipt: &Receipt,
    leaf: &Leaf,
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
    v: &mut Verification,
) -> Option<VerifierKey> {
    let log_key_id = hex::encode(log_key.key_id());
    if let Entry::CompanyKey(_) = leaf.entry {
        if leaf.key_id != log_key_id {
            v.fail(
                CheckName::CompanyKey,
                "a company_key entry must be signed by the log key",
            );
            return None;
        }
        v.pass(
            CheckName::CompanyKey,
            "a key registration, signed by the log",
        );
        v.signer_key = Some(log_key.to_string());
        return Some(log_key.clone());
    }
    let Some(ck) = &receipt.company_key else {
        v.fail(
            CheckName::CompanyKey,
            "the receipt does not prove that the company's key was registered",
        );
        return None;
    };
    let fail = |v: &mut Verification, why: String| {
        v.fail(CheckName::CompanyKey, why);
        None
    };
    let Ok(key_leaf_bytes) = STANDARD.decode(&ck.leaf) else {
        return fail(v, "the key registration leaf is not valid base64".into());
    };
    let (key_leaf, key_message) = match Leaf::parse_with_message(&key_leaf_bytes) {
        Ok(l) => l,
        Err(e) => return fail(v, format!("the key registration does not parse: {e}")),
    };
    let Entry::CompanyKey(reg) = &key_leaf.entry else {
        return fail(
            v,
            "the cited key registration is not a company_key entry".into(),
        );
    };
    if reg.action != crate::entry::KeyAction::Register {
        return fail(
            v,
            "the cited key entry is a revocation, not a registration".into(),
        );
    }
    if key_leaf.entry.company() != leaf.entry.company() {
        return fail(
            v,
            format!(
                "the key was registered for {:?}, not {:?}",
                key_leaf.entry.company(),
                leaf.entry.company()
            ),
        );
    }
    if ck.index >= receipt.index {
        return fail(
            v,
            "the key was registered after the entry was logged".into(),
        );
    }
    if key_leaf.key_id != log_key_id
        || verify_signed_message(log_key.verifying_key(), &key_leaf.signature, &key_message)
            .is_err()
    {
        return fail(v, "the key registration is not signed by the log".into());
    }
    let proof: Option<Vec<Hash>> = ck.proof.iter().map(|h| Hash::from_base64(h)).collect();
    let Some(proof) = proof else {
        return fail(v, "the key registration proof has a malformed hash".into());
    };
    if let Err(e) = verify_inclusion(
        ck.index,
        checkpoint.size,
        &leaf_hash(&key_leaf_bytes),
        &proof,
        &checkpoint.root,
    ) {
        return fail(
            v,
            format!("the key registration is not in the signed tree: {e}"),
        );
    }
    let key = match VerifierKey::parse_recorded(&reg.verifier_key) {
        Ok(k) => k,
        Err(e) => return fail(v, format!("the registered key does not parse: {e}")),
    };
    if hex::encode(key.key_id()) != leaf.key_id {
        return fail(
            v,
            format!(
                "the entry is signed with key {} but the cited registration is for key {}",
                leaf.key_id,
                hex::encode(key.key_id())
            ),
        );
    }
    v.pass(
        CheckName::CompanyKey,
        format!("key {} registered at index {}", key.name(), ck.index),
    );
    v.signer_key = Some(key.to_string());
    v.signer_registered_at = Some(ck.index);
    Some(key)
}

fn check_subject(receipt: &Receipt, entry: &Entry, id: &SubjectId, v: &mut Verification) {
    let Entry::TargetingDecision(decision) = entry else {
        v.push(
            CheckName::Subject,
            false,
            format!("a {} entry names no person", entry.kind()),
        );
        return;
    };
    let Some(opening) = &receipt.subject else {
        v.push(
            CheckName::Subject,
            false,
            "not checkable: the receipt carries no subject salt",
        );
        return;
    };
    let Ok(salt) = Salt::from_base64url(&opening.salt) else {
        v.push(CheckName::Subject, false, "the subject salt is malformed");
        return;
    };
    if commit(id, &salt) == decision.subject {
        v.push(CheckName::Subject, true, "the message was about you");
    } else {
        v.push(
            CheckName::Subject,
            false,
            "this message was not about you: the commitment does not open to that identifier",
        );
    }
}

/// Makes the person's receipt from the log's receipt for a link's index:
/// the log must return the very leaf the link names (`spec/receipts.md` §2).
pub fn receipt_for_link(
    log_receipt_json: &[u8],
    link: &ReceiptLink,
) -> Result<Receipt, ReceiptError> {
    let mut receipt = Receipt::from_json(log_receipt_json)?;
    if receipt.index != link.index {
        return Err(ReceiptError::Field(format!(
            "the log returned index {} for a link to index {}",
            receipt.index, link.index
        )));
    }
    if leaf_hash(&receipt.leaf_bytes()?) != link.leaf_hash {
        return Err(ReceiptError::Field(format!(
            "the log's entry {} is not the one the link names",
            link.index
        )));
    }
    receipt.subject = link.salt.as_ref().map(|salt| SubjectOpening {
        id: None,
        salt: salt.to_base64url(),
    });
    Ok(receipt)
}

/// Check 10 of `spec/receipts.md` §3 for one cited purchase: `cited` is the
/// verification of the log's receipt for the cited index.
pub fn check_purchase_citation(
    cited: &Verification,
    cited_receipt_index: u64,
    cited_index: u64,
    cited_leaf_hash_hex: &str,
    company: &str,
    citing_index: u64,
) -> Result<(), String> {
    if !cited.is_valid() {
        let why = cited
            .first_failure()
            .map(|c| c.detail.clone())
            .unwrap_or_else(|| "it did not verify".into());
        return Err(format!(
            "the cited purchase {cited_index} does not verify: {why}"
        ));
    }
    if cited_receipt_index != cited_index {
        return Err(format!(
            "the log returned entry {cited_receipt_index} for cited entry {cited_index}"
        ));
    }
    let Some(entry) = &cited.entry else {
        return Err("the cited entry is missing".into());
    };
    if !matches!(entry, Entry::DataPurchase(_)) {
        return Err(format!(
            "entry {cited_index} is a {}, not a data_purchase",
            entry.kind()
        ));
    }
    if entry.company() != company {
        return Err(format!(
            "entry {cited_index} is a purchase by {}, not by {company}",
            entry.company()
        ));
    }
    if cited_index >= citing_index {
        return Err(format!(
            "the purchase {cited_index} was logged after the decision {citing_index} that cites it"
        ));
    }
    let cited_hash = Hash::from_hex(cited_leaf_hash_hex)
        .ok_or_else(|| "the citation's leaf hash is not 64 hex digits".to_string())?;
    match &cited.leaf_hash {
        Some(h) if *h == cited_hash => Ok(()),
        _ => Err(format!(
            "entry {cited_index} does not have the leaf hash the decision cites"
        )),
    }
}
