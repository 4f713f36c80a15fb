//! `candor verify`: check a receipt and say, in plain words, what it proves.
//!
//! Offline it runs checks 1–7 of `spec/receipts.md` §3
//! ([`verify_receipt_with_policy`]); with `--online` it fetches what checks
//! 8–10 need (consistency from the receipt's checkpoint to the latest, that the
//! key was not revoked before the entry, each cited data purchase) and runs
//! them with `candor_core::receipt::online`, the code the `/verify` page runs. The input is a receipt file (JSON,
//! or NDJSON of many receipts such as `candor publish` writes), the
//! `Disclosure-Receipt` header line, or the verify URL (then the receipt is
//! fetched from the log). See `spec/cli.md` §verify.

use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

use serde::Deserialize;

use candor_core::answer::{self, Answer, Purchase, Status};
use candor_core::hash::{Hash, leaf_hash};
use candor_core::note::VerifierKey;
use candor_core::receipt::online::{self, Fetched, ListedKey, Material, Plan, PurchaseCheck};
use candor_core::receipt::{
    CheckName, Receipt, ReceiptLink, SubjectOpening, Verification, verify_receipt_with_policy,
};
use candor_core::subject::SubjectId;
use candor_core::trust_policy::Policy;
use candor_net::client::{Client, ClientError};

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
        .map(|c| Online::new(c, &key));

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
    let mut purchases = online::cited_purchases(v.entry.as_ref());
    let mut problem = None;
    let offline_ok = v.checks.iter().all(|c| c.passed);
    if let Some(o) = online
        && offline_ok
    {
        let material = o.fetch(&Plan::for_verification(&v)).await;
        problem = online::run(receipt, key, policy, &material, &mut v, &mut purchases);
    }
    let fetched = online_ran(&v);
    let purchases = purchases
        .iter()
        .map(|p| answer_purchase(p, fetched))
        .collect();
    from_verification(v, receipt, line, purchases, problem)
}

/// Whether check 10 ran (else the purchases were not fetched).
fn online_ran(v: &Verification) -> bool {
    v.checks.iter().any(|c| c.name == CheckName::Purchases)
}

/// A purchase as the answer shows it.
fn answer_purchase(p: &PurchaseCheck, fetched: bool) -> Purchase {
    Purchase {
        index: p.index,
        leaf_hash: p.leaf_hash.to_hex(),
        verified: p.verified,
        detail: if fetched || p.verified.is_some() {
            p.detail.clone()
        } else {
            "not fetched (offline)".into()
        },
        entry: p.entry.as_ref().and_then(|e| serde_json::to_value(e).ok()),
    }
}

/// What a client call gave, as the online checks take it.
fn fetched<T>(r: Result<T, ClientError>) -> Fetched<T> {
    match r {
        Ok(t) => Fetched::Got(t),
        Err(e) if e.status() == Some(404) => Fetched::NotFound,
        Err(e) => Fetched::Failed(e.to_string()),
    }
}

/// Fetches what the online checks 8–10 (`candor_core::receipt::online`) need,
/// with caches so that a batch of receipts from one log costs a handful of
/// requests. The checks themselves run in the pure core, as on the page.
struct Online<'a> {
    client: &'a Client,
    key: &'a VerifierKey,
    /// `GET /checkpoint`, fetched once per run: a batch is checked against
    /// one latest tree.
    latest: Option<Fetched<Vec<u8>>>,
    proofs: HashMap<(u64, u64), Fetched<Vec<Hash>>>,
    companies: HashMap<String, Fetched<Vec<ListedKey>>>,
    purchases: HashMap<u64, Fetched<Receipt>>,
}

/// Keeps answers, but not failures: a later receipt may fetch again.
fn cache<K: std::hash::Hash + Eq, T: Clone>(
    map: &mut HashMap<K, Fetched<T>>,
    k: K,
    f: &Fetched<T>,
) {
    if !matches!(f, Fetched::Failed(_)) {
        map.insert(k, f.clone());
    }
}

impl<'a> Online<'a> {
    fn new(client: &'a Client, key: &'a VerifierKey) -> Online<'a> {
        Online {
            client,
            key,
            latest: None,
            proofs: HashMap::new(),
            companies: HashMap::new(),
            purchases: HashMap::new(),
        }
    }

    async fn fetch(&mut self, plan: &Plan) -> Material {
        let mut m = Material::default();
        if let Some(size) = plan.checkpoint_size {
            if self.latest.is_none() {
                self.latest = Some(fetched(self.client.checkpoint().await));
            }
            if let Some(Fetched::Got(note)) = &self.latest
                && let Some((old, new)) = online::consistency_range(size, note, self.key)
            {
                let proof = match self.proofs.get(&(old, new)) {
                    Some(p) => p.clone(),
                    None => {
                        let p = fetched(self.client.consistency_proof(old, new).await);
                        cache(&mut self.proofs, (old, new), &p);
                        p
                    }
                };
                m.consistency_proof = Some(proof);
            }
            m.latest_checkpoint = self.latest.clone();
        }
        if let Some(company) = &plan.company {
            let keys = match self.companies.get(company) {
                Some(k) => k.clone(),
                None => {
                    let k = match fetched(self.client.company(company).await) {
                        Fetched::Got(info) => Fetched::Got(
                            info.keys
                                .into_iter()
                                .map(|k| ListedKey {
                                    key_id: k.key_id,
                                    revoked_index: k.revoked_index,
                                })
                                .collect(),
                        ),
                        Fetched::NotFound => Fetched::NotFound,
                        Fetched::Failed(e) => Fetched::Failed(e),
                    };
                    cache(&mut self.companies, company.clone(), &k);
                    k
                }
            };
            m.company_keys = Some(keys);
        }
        for &index in &plan.purchases {
            let r = match self.purchases.get(&index) {
                Some(r) => r.clone(),
                None => {
                    let r = fetched(self.client.receipt(index).await);
                    cache(&mut self.purchases, index, &r);
                    r
                }
            };
            m.purchases.insert(index, r);
        }
        m
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
