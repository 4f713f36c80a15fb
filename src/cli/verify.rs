//! `candor verify`: check a receipt and say, in plain words, what it proves.
//!
//! Offline it runs checks 1–7 of `spec/receipts.md` §3 ([`verify_receipt`]);
//! with `--online` it also runs checks 8–10 against the log: consistency from
//! the receipt's checkpoint to the latest, that the key was not revoked before
//! the entry, and each cited data purchase. The input is a receipt file (JSON,
//! or NDJSON of many receipts such as `candor publish` writes), the
//! `Disclosure-Receipt` header line, or the verify URL (then the receipt is
//! fetched from the log). See `spec/cli.md` §verify.

use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use crate::cli::answer::{self, Answer, Purchase, Status};
use candor::checkpoint::{Checkpoint, open_checkpoint};
use candor::client::{Client, ClientError, CompanyInfo};
use candor::entry::Entry;
use candor::hash::{Hash, leaf_hash};
use candor::merkle::verify_consistency;
use candor::note::VerifierKey;
use candor::policy::Policy;
use candor::receipt::{
    CheckName, CheckpointSummary, Receipt, ReceiptLink, SubjectOpening, Verification,
    verify_receipt, verify_receipt_with_policy,
};
use candor::subject::SubjectId;

/// Arguments of `candor verify`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
RECEIPT is a receipt file (JSON), an NDJSON file of receipts (one line each, \
as `candor publish` writes; each is checked and reported on one line), `-` for \
standard input, or the `Disclosure-Receipt:` header line or verify URL itself \
(then the receipt is fetched from the log named in the URL, or --log).

Exit status: 0 valid (every check passed), 1 invalid (a check failed; it is \
named), 2 could not check (unreadable input, bad key, network failure, usage \
error).")]
pub struct VerifyArgs {
    /// A receipt file, `-`, or the header line / verify URL.
    #[arg(value_name = "RECEIPT|-", default_value = "-")]
    pub receipt: String,
    /// The log's verifier key (`name+hexid+base64`), or a file holding it. Pin it:
    /// it is never taken from the receipt or the log.
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// Your email address or phone number: checks that the message was about you.
    #[arg(long, value_name = "ID")]
    pub subject: Option<String>,
    /// Also check against the log: still there today (consistency), key not
    /// revoked, cited data purchases genuine.
    #[arg(long)]
    pub online: bool,
    /// The log's base URL (default: the URL the link names).
    #[arg(long, value_name = "URL")]
    pub log: Option<String>,
    /// Print the answer as JSON (NDJSON in batch mode).
    #[arg(long)]
    pub json: bool,
    /// A trust policy file (C2SP tlog-policy: logs, witnesses, quorum). The
    /// receipt's checkpoint must satisfy it (check `witness_quorum`); with
    /// --online, so must the log's latest checkpoint.
    #[arg(long, value_name = "FILE")]
    pub trust_policy: Option<std::path::PathBuf>,
}

/// What the input was.
enum Input {
    /// Receipts, each with its `line` member if it had one.
    Receipts(Vec<(Option<u64>, Receipt)>),
    /// A header line, verify URL or bare fragment.
    Link(Option<String>, ReceiptLink),
}

/// Runs `candor verify`. Exit status (`spec/cli.md` §4.5): `Ok` 0 valid, an
/// [`invalid`](crate::cli::invalid) error 1, any other error 2 (could not check).
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    match rt.block_on(verify(args))? {
        Status::Valid => Ok(()),
        Status::Invalid => Err(crate::cli::invalid("the receipt does not verify")),
        Status::CouldNotCheck => Err(anyhow::anyhow!("the receipt could not be checked")),
    }
}

/// Reads `--log-key`: the key itself, or a file holding it.
pub fn read_log_key(arg: &str) -> Result<VerifierKey, String> {
    let text = if !arg.contains('+') && std::path::Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|e| format!("cannot read {arg}: {e}"))?
    } else {
        arg.to_string()
    };
    VerifierKey::from_str(text.trim()).map_err(|e| format!("bad --log-key: {e}"))
}

/// Reads and parses `--trust-policy`.
pub fn read_trust_policy(path: &std::path::Path) -> Result<Policy, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Policy::parse(&bytes).map_err(|e| format!("bad --trust-policy {}: {e}", path.display()))
}

fn looks_like_link(s: &str) -> bool {
    let t = s.trim();
    t.contains("#r=")
        || t.starts_with("r=v1.")
        || t.len() >= 19 && t[..19].eq_ignore_ascii_case("disclosure-receipt:")
}

fn load_input(arg: &str) -> Result<Input, String> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        s
    } else if looks_like_link(arg) {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).map_err(|e| format!("cannot read {arg}: {e}"))?
    };
    let t = text.trim();
    if !t.starts_with('{') {
        let (base, link) = ReceiptLink::parse(t).map_err(|e| e.to_string())?;
        return Ok(Input::Link(base, link));
    }
    #[derive(Deserialize)]
    struct LineNo {
        line: Option<u64>,
    }
    let line_no = |s: &str| serde_json::from_str::<LineNo>(s).ok().and_then(|l| l.line);
    if let Ok(r) = Receipt::from_json(t.as_bytes()) {
        return Ok(Input::Receipts(vec![(line_no(t), r)]));
    }
    let mut receipts = Vec::new();
    for (i, l) in t.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r = Receipt::from_json(l.as_bytes())
            .map_err(|e| format!("{arg} line {}: not a receipt: {e}", i + 1))?;
        receipts.push((line_no(l), r));
    }
    Ok(Input::Receipts(receipts))
}

async fn verify(args: &VerifyArgs) -> anyhow::Result<Status> {
    let key = read_log_key(&args.log_key).map_err(anyhow::Error::msg)?;
    let policy = args
        .trust_policy
        .as_deref()
        .map(read_trust_policy)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let policy = policy.as_ref();
    let subject = args
        .subject
        .as_deref()
        .map(SubjectId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("bad --subject: {e}"))?;
    let input = load_input(&args.receipt).map_err(anyhow::Error::msg)?;
    let base = match (&args.log, &input) {
        (Some(l), _) => Some(l.clone()),
        (None, Input::Link(b, _)) => b.clone(),
        (None, Input::Receipts(_)) => None,
    };
    let client = base.as_deref().map(Client::new).transpose()?;
    if args.online && client.is_none() {
        anyhow::bail!("--online needs the log's URL: pass --log URL");
    }
    let mut online = client
        .as_ref()
        .filter(|_| args.online)
        .map(|c| Online::new(c, &key, policy));

    match input {
        Input::Link(_, link) => {
            let Some(client) = &client else {
                anyhow::bail!("the link names no log; pass --log URL");
            };
            let answer = match fetch_linked(client, &link).await {
                Ok(receipt) => {
                    check_one(
                        &receipt,
                        None,
                        &key,
                        policy,
                        subject.as_ref(),
                        online.as_mut(),
                    )
                    .await
                }
                Err(LinkError::Network(e)) => could_not(format!("cannot fetch the receipt: {e}")),
                Err(LinkError::Mismatch(a)) => *a,
            };
            print_single(&answer, args.json)
        }
        Input::Receipts(receipts) if receipts.len() == 1 => {
            let (line, receipt) = &receipts[0];
            let answer = check_one(
                receipt,
                *line,
                &key,
                policy,
                subject.as_ref(),
                online.as_mut(),
            )
            .await;
            print_single(&answer, args.json)
        }
        Input::Receipts(receipts) => {
            let (mut valid, mut invalid, mut unknown) = (0u64, 0u64, 0u64);
            for (line, receipt) in &receipts {
                // A company checking its own receipts file: each receipt's
                // subject opening is checked against the identifier it carries.
                let own = receipt
                    .subject
                    .as_ref()
                    .and_then(|s| s.id.as_deref())
                    .and_then(|id| SubjectId::parse(id).ok());
                let id = subject.as_ref().or(own.as_ref());
                let a = check_one(receipt, *line, &key, policy, id, online.as_mut()).await;
                match a.status {
                    Status::Valid => valid += 1,
                    Status::Invalid => invalid += 1,
                    Status::CouldNotCheck => unknown += 1,
                }
                if args.json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!("{}", a.render_line());
                }
            }
            if !args.json {
                println!(
                    "{} receipts: {valid} valid, {invalid} invalid, {unknown} could not be checked",
                    receipts.len()
                );
            }
            Ok(if invalid > 0 {
                Status::Invalid
            } else if unknown > 0 {
                Status::CouldNotCheck
            } else {
                Status::Valid
            })
        }
    }
}

fn print_single(a: &Answer, json: bool) -> anyhow::Result<Status> {
    if json {
        println!("{}", serde_json::to_string_pretty(a)?);
    } else {
        print!("{}", a.render_text());
    }
    Ok(a.status)
}

fn could_not(problem: String) -> Answer {
    Answer {
        status: Status::CouldNotCheck,
        problem: Some(problem),
        line: None,
        log: None,
        index: None,
        facts: answer::Facts::default(),
        checks: Vec::new(),
        purchases: Vec::new(),
        entry: None,
        logged_at: None,
        checkpoint: None,
        signer_key: None,
    }
}

enum LinkError {
    Network(ClientError),
    Mismatch(Box<Answer>),
}

/// Fetches the receipt a link names, checks that the log's entry at that
/// index is the one the link names, and attaches the link's salt
/// (`spec/receipts.md` §2).
async fn fetch_linked(client: &Client, link: &ReceiptLink) -> Result<Receipt, LinkError> {
    let mut receipt = client
        .receipt(link.index)
        .await
        .map_err(|e| match e.status() {
            Some(404) => {
                let mut v = empty_verification();
                v.push(
                    CheckName::Leaf,
                    false,
                    format!("the log has no entry {} (it is smaller)", link.index),
                );
                LinkError::Mismatch(Box::new(from_verification(
                    v,
                    &receipt_stub(link),
                    None,
                    Vec::new(),
                    None,
                )))
            }
            _ => LinkError::Network(e),
        })?;
    let actual = receipt.leaf_bytes().ok().map(|b| leaf_hash(&b));
    if actual != Some(link.leaf_hash) || receipt.index != link.index {
        let mut v = empty_verification();
        v.push(
            CheckName::Leaf,
            false,
            format!(
                "the log's entry {} is not the one the link names (leaf hash differs)",
                link.index
            ),
        );
        return Err(LinkError::Mismatch(Box::new(from_verification(
            v,
            &receipt,
            None,
            Vec::new(),
            None,
        ))));
    }
    if let Some(salt) = &link.salt {
        receipt.subject = Some(SubjectOpening {
            id: None,
            salt: salt.to_string(),
        });
    }
    Ok(receipt)
}

fn receipt_stub(link: &ReceiptLink) -> Receipt {
    Receipt {
        log: String::new(),
        index: link.index,
        leaf: String::new(),
        leaf_hash: Some(link.leaf_hash.to_hex()),
        tlog_proof: String::new(),
        company_key: None,
        subject: None,
        disclosure_header: None,
    }
}

fn empty_verification() -> Verification {
    Verification {
        checks: Vec::new(),
        entry: None,
        logged_at: None,
        checkpoint: None,
        signer_key: None,
        signer_registered_at: None,
        leaf_hash: None,
    }
}

fn from_verification(
    v: Verification,
    receipt: &Receipt,
    line: Option<u64>,
    purchases: Vec<Purchase>,
    problem: Option<String>,
) -> Answer {
    let entry = v.entry.as_ref().and_then(|e| serde_json::to_value(e).ok());
    let facts = entry
        .as_ref()
        .map(|e| answer::facts(e, v.logged_at.as_deref(), &purchases))
        .unwrap_or_default();
    let status = Answer::decide(&v.checks, problem.as_deref());
    Answer {
        status,
        problem,
        line,
        log: (!receipt.log.is_empty()).then(|| receipt.log.clone()),
        index: Some(receipt.index),
        facts,
        checks: v.checks,
        purchases,
        entry,
        logged_at: v.logged_at,
        checkpoint: v.checkpoint,
        signer_key: v.signer_key,
    }
}

/// Runs every check that applies to one receipt.
async fn check_one(
    receipt: &Receipt,
    line: Option<u64>,
    key: &VerifierKey,
    policy: Option<&Policy>,
    subject: Option<&SubjectId>,
    online: Option<&mut Online<'_>>,
) -> Answer {
    let mut v = verify_receipt_with_policy(receipt, key, policy, subject);
    let mut purchases = cited_purchases(v.entry.as_ref());
    let mut problem = None;
    let offline_ok = v.checks.iter().all(|c| c.passed);
    match online {
        Some(o) if offline_ok => {
            o.run(receipt, &mut v, &mut purchases, &mut problem).await;
        }
        _ => {}
    }
    from_verification(v, receipt, line, purchases, problem)
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
                    detail: "not fetched (offline)".into(),
                    entry: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One online check's result.
enum Outcome {
    Pass(String),
    Fail(String),
    CouldNot(String),
}

/// The online checks 8–10, with caches so that a batch of receipts from one
/// log costs a handful of requests.
struct Online<'a> {
    client: &'a Client,
    key: &'a VerifierKey,
    /// `--trust-policy`: the latest checkpoint must satisfy it too.
    policy: Option<&'a Policy>,
    latest: Option<Result<Checkpoint, Outcome>>,
    consistency: HashMap<(u64, String), bool>,
    companies: HashMap<String, CompanyInfo>,
    purchases: HashMap<u64, Purchase>,
}

impl Clone for Outcome {
    fn clone(&self) -> Self {
        match self {
            Outcome::Pass(s) => Outcome::Pass(s.clone()),
            Outcome::Fail(s) => Outcome::Fail(s.clone()),
            Outcome::CouldNot(s) => Outcome::CouldNot(s.clone()),
        }
    }
}

impl<'a> Online<'a> {
    fn new(client: &'a Client, key: &'a VerifierKey, policy: Option<&'a Policy>) -> Online<'a> {
        Online {
            client,
            key,
            policy,
            latest: None,
            consistency: HashMap::new(),
            companies: HashMap::new(),
            purchases: HashMap::new(),
        }
    }

    async fn run(
        &mut self,
        receipt: &Receipt,
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
            let o = self.consistency(&cp).await;
            record(v, CheckName::Consistency, o);
        }
        if let Some(entry) = v.entry.clone()
            && !matches!(entry, Entry::CompanyKey(_))
        {
            let o = self
                .not_revoked(&entry, v.signer_key.as_deref(), receipt.index)
                .await;
            record(v, CheckName::NotRevoked, o);
            if !purchases.is_empty() {
                let o = self
                    .purchases(entry.company(), receipt.index, purchases)
                    .await;
                record(v, CheckName::Purchases, o);
            }
        }
    }

    async fn latest(&mut self) -> Result<Checkpoint, Outcome> {
        if let Some(l) = &self.latest {
            return l.clone();
        }
        let l = match self.client.checkpoint().await {
            Ok(note) => open_checkpoint(&note, self.key)
                .map(|(cp, _)| cp)
                .map_err(|e| {
                    Outcome::Fail(format!(
                        "the log's latest checkpoint is not signed by the pinned key: {e}"
                    ))
                })
                .and_then(|cp| match self.policy {
                    Some(p) => p
                        .check_with_logs(&note, std::slice::from_ref(self.key))
                        .map(|_| cp)
                        .map_err(|e| {
                            Outcome::Fail(format!(
                                "the log's latest checkpoint does not satisfy the trust policy: {e}"
                            ))
                        }),
                    None => Ok(cp),
                }),
            Err(e) => Err(Outcome::CouldNot(format!(
                "cannot fetch the latest checkpoint: {e}"
            ))),
        };
        self.latest = Some(l.clone());
        l
    }

    /// Check 8: the receipt's tree is a prefix of today's (RFC 9162 §2.1.4.2).
    async fn consistency(&mut self, cp: &CheckpointSummary) -> Outcome {
        let latest = match self.latest().await {
            Ok(l) => l,
            Err(o) => return o,
        };
        let Some(old_root) = Hash::from_base64(&cp.root) else {
            return Outcome::Fail("the receipt's checkpoint root is malformed".into());
        };
        let cache_key = (cp.size, cp.root.clone());
        let ok = match self.consistency.get(&cache_key) {
            Some(&ok) => ok,
            None => {
                if latest.size < cp.size {
                    return Outcome::Fail(format!(
                        "the log's latest tree (size {}) is smaller than the receipt's (size {}): the log went back",
                        latest.size, cp.size
                    ));
                }
                let ok = if latest.size == cp.size {
                    latest.root == old_root
                } else {
                    let proof = match self.client.consistency_proof(cp.size, latest.size).await {
                        Ok(p) => p,
                        Err(e) => {
                            return Outcome::CouldNot(format!(
                                "cannot fetch the consistency proof: {e}"
                            ));
                        }
                    };
                    verify_consistency(cp.size, latest.size, &old_root, &latest.root, &proof)
                        .is_ok()
                };
                self.consistency.insert(cache_key, ok);
                ok
            }
        };
        if ok {
            Outcome::Pass(format!(
                "the receipt's tree (size {}) is part of today's tree (size {})",
                cp.size, latest.size
            ))
        } else {
            Outcome::Fail(format!(
                "today's tree (size {}) does not contain the receipt's tree (size {}): the log rewrote its history",
                latest.size, cp.size
            ))
        }
    }

    /// Check 9: the signing key was not revoked at an index lower than the entry's.
    async fn not_revoked(&mut self, entry: &Entry, signer: Option<&str>, index: u64) -> Outcome {
        let Some(signer) = signer.and_then(|s| VerifierKey::from_str(s).ok()) else {
            return Outcome::Fail("the signing key is unknown".into());
        };
        let company = entry.company().to_string();
        if !self.companies.contains_key(&company) {
            match self.client.company(&company).await {
                Ok(info) => {
                    self.companies.insert(company.clone(), info);
                }
                Err(e) if e.status() == Some(404) => {
                    return Outcome::Fail(format!("the log does not know the company {company}"));
                }
                Err(e) => {
                    return Outcome::CouldNot(format!("cannot fetch the company's keys: {e}"));
                }
            }
        }
        let Some(info) = self.companies.get(&company) else {
            return Outcome::CouldNot("the company's keys went missing".into());
        };
        let id = hex::encode(signer.key_id());
        let Some(k) = info.keys.iter().find(|k| k.key_id == id) else {
            return Outcome::Fail(format!("the log does not list key {id} for {company}"));
        };
        match k.revoked_index {
            Some(r) if r < index => Outcome::Fail(format!(
                "the key was revoked at entry {r}, before this entry ({index})"
            )),
            Some(r) => Outcome::Pass(format!(
                "the key was revoked only later, at entry {r}, after this entry"
            )),
            None => Outcome::Pass(format!("key {id} of {company} is still registered")),
        }
    }

    /// Check 10: every cited purchase is a genuine, earlier `data_purchase` of
    /// the same company.
    async fn purchases(
        &mut self,
        company: &str,
        index: u64,
        purchases: &mut [Purchase],
    ) -> Outcome {
        let mut failed = Vec::new();
        for p in purchases.iter_mut() {
            let checked = match self.purchases.get(&p.index) {
                Some(c) => c.clone(),
                None => {
                    let c = match self.check_purchase(p).await {
                        Ok(c) => c,
                        Err(o) => return o,
                    };
                    self.purchases.insert(p.index, c.clone());
                    c
                }
            };
            // Company and order depend on the citing entry, so check them here.
            let mut c = checked;
            if c.verified == Some(true) {
                let buyer = c
                    .entry
                    .as_ref()
                    .and_then(|e| e.get("company"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if c.leaf_hash != p.leaf_hash {
                    c.verified = Some(false);
                    c.detail =
                        format!("entry {} is not the one cited (leaf hash differs)", c.index);
                } else if buyer != company {
                    c.verified = Some(false);
                    c.detail = format!("entry {} is a purchase by {buyer}, not {company}", c.index);
                } else if c.index >= index {
                    c.verified = Some(false);
                    c.detail = format!("entry {} was logged after this decision", c.index);
                }
            }
            if c.verified != Some(true) {
                failed.push(format!("entry {}: {}", c.index, c.detail));
            }
            *p = c;
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

    /// Fetches and verifies one purchase's receipt (checks 1–6). The cited
    /// leaf hash is kept as the actual one, so the caller can compare.
    async fn check_purchase(&self, cited: &Purchase) -> Result<Purchase, Outcome> {
        let r = match self.client.receipt(cited.index).await {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => {
                return Ok(Purchase {
                    verified: Some(false),
                    detail: format!("the log has no entry {}", cited.index),
                    ..cited.clone()
                });
            }
            Err(e) => {
                return Err(Outcome::CouldNot(format!(
                    "cannot fetch purchase entry {}: {e}",
                    cited.index
                )));
            }
        };
        let actual = r
            .leaf_bytes()
            .ok()
            .map(|b| leaf_hash(&b).to_hex())
            .unwrap_or_default();
        let v = verify_receipt(&r, self.key, None);
        let entry = v.entry.as_ref().and_then(|e| serde_json::to_value(e).ok());
        let mut p = Purchase {
            index: cited.index,
            leaf_hash: actual,
            verified: Some(true),
            detail: "verified".into(),
            entry,
        };
        if let Some(c) = v.first_failure() {
            p.verified = Some(false);
            p.detail = format!(
                "its receipt fails the {} check: {}",
                c.name.as_str(),
                c.detail
            );
        } else if !matches!(v.entry, Some(Entry::DataPurchase(_))) || !v.is_valid() {
            p.verified = Some(false);
            p.detail = "it is not a data purchase".into();
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_recognised() {
        assert!(looks_like_link(
            "Disclosure-Receipt: <https://log.example/verify#r=v1.1.AA>"
        ));
        assert!(looks_like_link("disclosure-receipt: <x>"));
        assert!(looks_like_link("https://log.example/verify#r=v1.1.AA"));
        assert!(!looks_like_link("receipts.ndjson"));
        assert!(!looks_like_link("-"));
    }
}
