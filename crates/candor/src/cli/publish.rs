//! `candor publish`: sign a campaign's entries and log them, one receipt a line.
//!
//! The pipeline (`spec/cli.md` §publish):
//! a reader thread parses each input line, draws a fresh subject salt, commits
//! to the identifier locally (the identifier never leaves this machine), signs
//! the entry with the company key, records it in a journal, and hands batches
//! to the async side, which keeps a bounded number of NDJSON submissions in
//! flight and writes the receipts to OUT in input order as they arrive.
//!
//! Resume is exact: OUT records each receipt's input line number, and the
//! journal (`OUT.journal`) records every signed entry *before* it is sent. A
//! resumed run skips receipted lines and re-sends a journaled line byte for
//! byte, so the log's dedup answers with the existing index instead of logging
//! the same decision twice under a new salt.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use candor_core::clock::{Clock, SystemClock};
use candor_core::entry::{Entry, Leaf, SignedEntry};
use candor_core::hash::{Hash, leaf_hash, sha256};
use candor_core::note::{SignerKey, VerifierKey};
use candor_core::receipt::{Receipt, ReceiptLink, verify_receipt};
use candor_core::subject::{Opening, Salt, SubjectId, commit};
use candor_net::client::{Client, ClientError, RetryPolicy, retry};

/// Arguments of `candor publish`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
INPUT is NDJSON, one entry a line, in the entry schema of spec/entries.md but \
without `company` (taken from the key's name) and with `subject` given as the \
identifier itself: {\"email\": \"alice@example.com\"} or {\"phone\": \"+31612345678\"}. \
Blank lines are skipped. Each receipt line in OUT carries `line`, the 1-based \
input line number.

Exit status: 0 every line was published (or was already receipted), 1 some \
lines failed (each is reported on stderr with its line number and reason), \
2 could not run (bad arguments, unreadable key or files, the log refused the \
key or stayed unreachable). After an exit with status 2, rerun with --resume.")]
pub struct PublishArgs {
    /// Base URL of the log's API, e.g. https://log.example.
    #[arg(long, value_name = "URL")]
    pub log: String,
    /// The company's signed-note private key file (`candor keygen`); its name is the company.
    #[arg(long, value_name = "COMPANY_KEY")]
    pub key: PathBuf,
    /// Where to write the receipts, one JSON object a line.
    #[arg(long, value_name = "OUT.ndjson")]
    pub receipts: PathBuf,
    /// Input NDJSON file, or `-` for standard input.
    #[arg(value_name = "INPUT|-", default_value = "-")]
    pub input: String,
    /// Continue an interrupted run: skip lines already receipted in OUT and
    /// re-send journaled lines unchanged.
    #[arg(long)]
    pub resume: bool,
    /// The log's public base URL for the `Disclosure-Receipt` link (default: --log).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The log's verifier key; when given, every receipt is verified before it is written.
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
    /// Entries per NDJSON submission.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_size: u32,
    /// Submissions in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Retries of a submission after a transient failure (connection error, 429, 502–504).
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// No summary line on stderr (the progress bar only ever shows on a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// A failure that stops the whole run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read the company key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("bad --log-key: {0}")]
    LogKey(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "{0} already holds receipts (or a journal from an interrupted run); pass --resume to continue it, or choose another file"
    )]
    WouldOverwrite(String),
    #[error("{path} line {line}: {reason} (OUT is damaged; refusing to guess what was published)")]
    BadOut {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("the log refused the submission: {0}")]
    Refused(ClientError),
    #[error("the log stayed unavailable, giving up (rerun with --resume): {0}")]
    Unavailable(ClientError),
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// One receipt line of OUT: the receipt plus the input line it answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiptLine {
    pub line: u64,
    #[serde(flatten)]
    pub receipt: Receipt,
}

/// One journal record: a signed entry exactly as (about to be) sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalRecord {
    line: u64,
    /// Hex SHA-256 of the input line, so a resumed run notices an edited input.
    input: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Opening>,
    /// The submission body (`SignedEntry` as JSON).
    entry: Value,
}

/// A journal record read back, its entry parsed.
struct Journaled {
    input: String,
    subject: Option<Opening>,
    signed: SignedEntry,
}

/// A line ready to submit.
struct Pending {
    line: u64,
    signed: SignedEntry,
    subject: Option<Opening>,
}

/// Turns one input line into an entry of `company`: checks the shape, commits
/// to the subject with a fresh salt, and validates the result
/// (`spec/cli.md` §publish, input format).
pub fn build_entry(
    line: &str,
    company: &str,
    now: &str,
) -> Result<(Entry, Option<Opening>), String> {
    let mut value: Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(obj) = value.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    // An entry's own time may be left out: it is then `now`, the signing time.
    let time_field = match obj.get("kind").and_then(Value::as_str) {
        Some("company_key") => {
            return Err(
                "company_key entries are made by the log operator (candor company add/revoke)"
                    .into(),
            );
        }
        None if !obj.contains_key("kind") => return Err("missing field `kind`".into()),
        Some("targeting_decision") => Some("decided_at"),
        Some("data_purchase") => Some("purchased_at"),
        _ => None,
    };
    if let Some(field) = time_field {
        obj.entry(field)
            .or_insert_with(|| Value::String(now.to_owned()));
    }
    match obj.get("company") {
        None => {}
        Some(Value::String(c)) if c == company => {}
        Some(_) => {
            return Err(format!(
                "`company` must be left out: it is taken from the key ({company})"
            ));
        }
    }
    obj.insert("company".into(), Value::String(company.to_string()));
    let opening = match obj.remove("subject") {
        None => None,
        Some(s) => {
            let id = subject_id(&s)?;
            let salt = Salt::generate().map_err(|e| format!("cannot draw a salt: {e}"))?;
            let commitment = commit(&id, &salt);
            obj.insert("subject".into(), commitment_value(&commitment));
            Some(Opening { id, salt })
        }
    };
    let entry = Entry::parse_value(&value).map_err(|e| e.to_string())?;
    entry.validate().map_err(|e| e.to_string())?;
    Ok((entry, opening))
}

/// The identifier given as `{"email": …}` or `{"phone": …}`.
fn subject_id(v: &Value) -> Result<SubjectId, String> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or("`subject` must be {\"email\": …} or {\"phone\": …}")?;
    match obj.iter().next() {
        Some((k, Value::String(s))) if k == "email" => {
            SubjectId::email(s).map_err(|e| format!("bad subject email: {e}"))
        }
        Some((k, Value::String(s))) if k == "phone" => {
            SubjectId::phone(s).map_err(|e| format!("bad subject phone: {e}"))
        }
        _ => Err("`subject` must be {\"email\": …} or {\"phone\": …}".into()),
    }
}

/// The commitment as the entry schema writes it (`entries.md` §Subject).
fn commitment_value(h: &Hash) -> Value {
    Value::String(h.to_hex())
}

/// Runs `candor publish`. Exit status (`spec/cli.md` §2.5): `Ok` 0, an
/// [`invalid`](crate::cli::invalid) error 1 (some lines failed), any other
/// error 2 (could not run).
pub fn run(args: &PublishArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let summary = rt.block_on(publish(args))?;
    if !args.quiet {
        eprintln!("{summary}");
    }
    if summary.failed > 0 {
        return Err(crate::cli::invalid(format!(
            "{} input line{} not published (reported above with their line numbers)",
            summary.failed,
            if summary.failed == 1 {
                " was"
            } else {
                "s were"
            }
        )));
    }
    Ok(())
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub published: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "candor publish: {} published, {} already receipted, {} failed",
            self.published, self.skipped, self.failed
        )
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> PublishError {
    PublishError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn journal_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".journal");
    PathBuf::from(s)
}

/// Reads a line-oriented file written by a run that may have been killed: a
/// last line without its newline was cut short and is dropped (and cut off
/// the file, so appends start on a fresh line). Returns the complete lines.
fn read_complete_lines(path: &Path) -> Result<Vec<String>, PublishError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(path, e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| file_err(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if complete < bytes.len() {
        file.set_len(complete as u64)
            .map_err(|e| file_err(path, e))?;
        file.seek(SeekFrom::End(0)).map_err(|e| file_err(path, e))?;
    }
    let text =
        String::from_utf8(bytes[..complete].to_vec()).map_err(|_| file_err(path, "not UTF-8"))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The input line numbers OUT already holds receipts for.
fn receipted_lines(out: &Path) -> Result<HashSet<u64>, PublishError> {
    #[derive(Deserialize)]
    struct LineOnly {
        line: u64,
    }
    let mut done = HashSet::new();
    for (i, l) in read_complete_lines(out)?.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r: LineOnly = serde_json::from_str(l).map_err(|e| PublishError::BadOut {
            path: out.display().to_string(),
            line: i as u64 + 1,
            reason: format!("not a receipt line: {e}"),
        })?;
        done.insert(r.line);
    }
    Ok(done)
}

fn read_journal(path: &Path) -> Result<HashMap<u64, Journaled>, PublishError> {
    let mut map = HashMap::new();
    for (i, l) in read_complete_lines(path)?.iter().enumerate() {
        let bad = |reason: String| PublishError::BadOut {
            path: path.display().to_string(),
            line: i as u64 + 1,
            reason,
        };
        let r: JournalRecord =
            serde_json::from_str(l).map_err(|e| bad(format!("not a journal record: {e}")))?;
        let signed = SignedEntry::parse_value(&r.entry)
            .map_err(|e| bad(format!("the journaled entry does not parse: {e}")))?;
        map.insert(
            r.line,
            Journaled {
                input: r.input,
                subject: r.subject,
                signed,
            },
        );
    }
    Ok(map)
}

fn is_nonempty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Reports a failed line on stderr without disturbing the progress bar.
fn report(pb: &ProgressBar, line: u64, reason: &str) {
    pb.suspend(|| eprintln!("line {line}: {reason}"));
}

async fn publish(args: &PublishArgs) -> Result<Summary, PublishError> {
    let key_text = std::fs::read_to_string(&args.key).map_err(|e| PublishError::Key {
        path: args.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let signer = SignerKey::from_str(key_text.trim()).map_err(|e| PublishError::Key {
        path: args.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let log_key = args
        .log_key
        .as_deref()
        .map(|k| VerifierKey::from_str(k.trim()).map_err(|e| PublishError::LogKey(e.to_string())))
        .transpose()?;
    let client = Client::new(&args.log)?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| client.base().to_string());

    let out = &args.receipts;
    let journal = journal_path(out);
    if !args.resume && (is_nonempty(out) || is_nonempty(&journal)) {
        return Err(PublishError::WouldOverwrite(out.display().to_string()));
    }
    let done = receipted_lines(out)?;
    let journaled = read_journal(&journal)?;

    let input: Box<dyn BufRead + Send> = if args.input == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let p = Path::new(&args.input);
        Box::new(BufReader::new(File::open(p).map_err(|e| file_err(p, e))?))
    };
    let out_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| file_err(out, e))?;
    let journal_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .map_err(|e| file_err(&journal, e))?;

    let pb = progress_bar(&args.input);
    let failed = Arc::new(AtomicU64::new(0));
    let skipped = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Pending>>(args.concurrency as usize);

    // The reader: parse, commit, sign and journal on a plain thread, so that
    // CPU work and blocking reads never stall the submissions in flight.
    let reader = {
        let pb = pb.clone();
        let failed = failed.clone();
        let skipped = skipped.clone();
        let company = signer.verifier().name().to_string();
        let journal_path = journal.clone();
        let batch_size = args.batch_size as usize;
        std::thread::spawn(move || -> Result<(), PublishError> {
            let mut journal_out = BufWriter::new(journal_file);
            let mut batch = Vec::with_capacity(batch_size);
            let send = |batch: Vec<Pending>,
                        journal_out: &mut BufWriter<File>|
             -> Result<bool, PublishError> {
                // The journal is durable before the entries leave, so a
                // killed run can always re-send exactly what it sent.
                journal_out
                    .flush()
                    .map_err(|e| file_err(&journal_path, e))?;
                journal_out
                    .get_ref()
                    .sync_data()
                    .map_err(|e| file_err(&journal_path, e))?;
                Ok(tx.blocking_send(batch).is_ok())
            };
            for (i, line) in input.lines().enumerate() {
                let lineno = i as u64 + 1;
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        // A read error ends the input; lines after it are unknown.
                        return Err(file_err(Path::new("input"), e));
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                if done.contains(&lineno) {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    pb.inc(1);
                    continue;
                }
                let input_hash = sha256(line.as_bytes()).to_hex();
                let pending = match journaled.get(&lineno) {
                    Some(rec) if rec.input == input_hash => Pending {
                        line: lineno,
                        signed: rec.signed.clone(),
                        subject: rec.subject.clone(),
                    },
                    Some(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        pb.inc(1);
                        report(
                            &pb,
                            lineno,
                            "the line changed since the interrupted run, which may already have \
                             logged its earlier version; not publishing it again",
                        );
                        continue;
                    }
                    None => match sign_line(&line, &company, &signer) {
                        Ok((signed, subject)) => {
                            let rec = JournalRecord {
                                line: lineno,
                                input: input_hash,
                                subject: subject.clone(),
                                entry: serde_json::to_value(&signed)
                                    .map_err(|e| file_err(&journal_path, e))?,
                            };
                            serde_json::to_writer(&mut journal_out, &rec)
                                .map_err(|e| file_err(&journal_path, e))?;
                            journal_out
                                .write_all(b"\n")
                                .map_err(|e| file_err(&journal_path, e))?;
                            Pending {
                                line: lineno,
                                signed,
                                subject,
                            }
                        }
                        Err(reason) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            pb.inc(1);
                            report(&pb, lineno, &reason);
                            continue;
                        }
                    },
                };
                batch.push(pending);
                if batch.len() == batch_size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                    if !send(full, &mut journal_out)? {
                        return Ok(()); // the writer stopped; it reports why
                    }
                }
            }
            if !batch.is_empty() {
                send(batch, &mut journal_out)?;
            }
            Ok(())
        })
    };

    let policy = RetryPolicy {
        retries: args.retries,
        ..RetryPolicy::default()
    };
    let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut answers = batches
        .map(|batch: Vec<Pending>| {
            let client = client.clone();
            let pb = pb.clone();
            async move {
                let res = submit(&client, &policy, &pb, &batch).await;
                (batch, res)
            }
        })
        .buffered(args.concurrency as usize);

    let mut writer = BufWriter::new(out_file);
    let mut published = 0u64;
    let mut fatal = None;
    while let Some((batch, res)) = answers.next().await {
        let outcomes = match res {
            Ok(o) => o,
            Err(e) if e.is_transient() => {
                fatal = Some(PublishError::Unavailable(e));
                break;
            }
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                // The key is unknown, revoked or not the company's: every
                // later batch would be refused the same way.
                fatal = Some(PublishError::Refused(e));
                break;
            }
            Err(e) => {
                for p in &batch {
                    failed.fetch_add(1, Ordering::Relaxed);
                    report(&pb, p.line, &format!("not published: {e}"));
                }
                pb.inc(batch.len() as u64);
                continue;
            }
        };
        for (p, outcome) in batch.into_iter().zip(outcomes) {
            pb.inc(1);
            let line = outcome.and_then(|r| finish_receipt(r, &p, &public_url, log_key.as_ref()));
            match line {
                Ok(line) => {
                    serde_json::to_writer(&mut writer, &line)
                        .map_err(std::io::Error::from)
                        .and_then(|()| writer.write_all(b"\n"))
                        .map_err(|e| file_err(out, e))?;
                    published += 1;
                }
                Err(reason) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    report(&pb, p.line, &reason);
                }
            }
        }
        // Receipts reach OUT batch by batch, never held back to the end.
        writer.flush().map_err(|e| file_err(out, e))?;
    }
    drop(answers);
    writer.flush().map_err(|e| file_err(out, e))?;
    writer.get_ref().sync_data().map_err(|e| file_err(out, e))?;
    let read_result = reader
        .join()
        .unwrap_or_else(|_| Err(file_err(Path::new("input"), "the reader thread panicked")));
    pb.finish_and_clear();
    if let Some(e) = fatal {
        return Err(e);
    }
    read_result?;
    // Every journaled line now has its definitive answer in OUT or on stderr.
    std::fs::remove_file(&journal).map_err(|e| file_err(&journal, e))?;
    Ok(Summary {
        published,
        skipped: skipped.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    })
}

/// Submits one batch, retrying transient failures. The log takes a batch all
/// or nothing and names the line it refused (`api.md` §4), so a refused
/// entry is set aside with its reason and the rest is sent again. Errors that
/// concern the whole batch are returned as such.
async fn submit(
    client: &Client,
    policy: &RetryPolicy,
    pb: &ProgressBar,
    batch: &[Pending],
) -> Result<Vec<Result<Receipt, String>>, ClientError> {
    let mut results: Vec<Result<Receipt, String>> =
        vec![Err("not answered".to_string()); batch.len()];
    let mut remaining: Vec<usize> = (0..batch.len()).collect();
    while !remaining.is_empty() {
        let entries: Vec<SignedEntry> =
            remaining.iter().map(|&i| batch[i].signed.clone()).collect();
        let first = batch[remaining[0]].line;
        let last = batch[remaining[remaining.len() - 1]].line;
        let on_retry = |e: &ClientError, wait: Duration| {
            pb.suspend(|| {
                eprintln!(
                    "lines {first}–{last}: {e}; retrying in {:.1}s",
                    wait.as_secs_f64()
                )
            })
        };
        match retry(policy, on_retry, || client.submit_batch(&entries)).await {
            Ok(receipts) => {
                for (&i, r) in remaining.iter().zip(receipts) {
                    results[i] = Ok(r);
                }
                break;
            }
            Err(e) => {
                let blamed = e
                    .line()
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l >= 1 && l <= remaining.len());
                match blamed {
                    Some(l) if !matches!(e.status(), Some(401 | 403)) && !e.is_transient() => {
                        let i = remaining.remove(l - 1);
                        results[i] = Err(format!(
                            "the log refused it: {}: {}",
                            e.code().unwrap_or("error"),
                            e_detail(&e)
                        ));
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(results)
}

/// The log's own words, without the URL and status the Display form adds.
fn e_detail(e: &ClientError) -> String {
    match e {
        ClientError::Status { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

fn sign_line(
    line: &str,
    company: &str,
    signer: &SignerKey,
) -> Result<(SignedEntry, Option<Opening>), String> {
    let now = SystemClock.now_rfc3339();
    let (entry, opening) = build_entry(line, company, &now)?;
    let signed = SignedEntry::sign(entry, signer.signing_key(), signer.verifier().key_id())
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok((signed, opening))
}

/// Checks that the log's receipt is for the entry sent, then adds the subject
/// opening and the consumer header.
fn finish_receipt(
    receipt: Receipt,
    p: &Pending,
    public_url: &str,
    log_key: Option<&VerifierKey>,
) -> Result<ReceiptLine, String> {
    let leaf_bytes = receipt
        .leaf_bytes()
        .map_err(|e| format!("the log's receipt is malformed: {e}"))?;
    let leaf = Leaf::parse(&leaf_bytes)
        .map_err(|e| format!("the log's receipt holds no valid leaf: {e}"))?;
    let same = leaf.signature == p.signed.signature
        && leaf.key_id == p.signed.key_id
        && leaf.entry.entry_hash().ok() == p.signed.entry.entry_hash().ok();
    if !same {
        return Err("the log answered with a receipt for a different entry".into());
    }
    let mut receipt = match &p.subject {
        Some(o) => receipt.with_subject(o),
        None => receipt,
    };
    let link = ReceiptLink {
        index: receipt.index,
        leaf_hash: leaf_hash(&leaf_bytes),
        salt: p.subject.as_ref().map(|o| o.salt.clone()),
    };
    receipt.disclosure_header = Some(link.header(public_url));
    if let Some(k) = log_key {
        let id = p.subject.as_ref().map(|o| &o.id);
        let v = verify_receipt(&receipt, k, id);
        if let Some(c) = v.first_failure() {
            return Err(format!(
                "the log's receipt does not verify: {}: {}",
                c.name.as_str(),
                c.detail
            ));
        }
    }
    Ok(ReceiptLine {
        line: p.line,
        receipt,
    })
}

/// A bar with rate and ETA on a terminal; nothing at all in a pipe.
fn progress_bar(input: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total = if input == "-" {
        None
    } else {
        count_lines(Path::new(input))
    };
    let pb = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} lines ({per_sec}, ETA {eta})"
    } else {
        "{spinner} [{elapsed_precise}] {pos} lines ({per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Non-blank lines of a file, for the bar's length (`None` if unreadable).
fn count_lines(path: &Path) -> Option<u64> {
    let f = File::open(path).ok()?;
    let mut n = 0;
    for l in BufReader::new(f).lines() {
        if !l.ok()?.trim().is_empty() {
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commitment(e: &Entry) -> Option<Hash> {
        match e {
            Entry::TargetingDecision(d) => Some(d.subject),
            _ => None,
        }
    }

    const DECISION: &str = r#"{"kind":"targeting_decision","decided_at":"2026-11-29T05:31:40Z","channel":"email","campaign":{"id":"w26","name":"Winter sale","purpose":"marketing"},"reason":"You bought running shoes from us.","criteria":[{"type":"customer_list","rule":"bought shoes in 2026","effect":"include"}],"data_sources":[{"type":"first_party","description":"our order history"}],"legal_basis":"legitimate_interests","opt_out":"https://acme.example/optout","subject":{"email":" Alice@Example.com "}}"#;

    #[test]
    fn builds_and_commits_locally() {
        let (entry, opening) = build_entry(DECISION, "acme.example", NOW).expect("valid line");
        assert_eq!(entry.company(), "acme.example");
        let opening = opening.expect("a subject");
        assert_eq!(opening.id.to_string(), "email:alice@example.com");
        assert_eq!(commitment(&entry), Some(commit(&opening.id, &opening.salt)));
        // The identifier itself never reaches the entry.
        let bytes = entry.canonical_bytes().expect("canonical");
        assert!(!String::from_utf8_lossy(&bytes).contains("alice"));
        // A fresh salt each time: two entries about one person are unlinkable.
        let (again, _) = build_entry(DECISION, "acme.example", NOW).expect("valid line");
        assert_ne!(commitment(&entry), commitment(&again));
    }

    const NOW: &str = "2031-05-06T07:08:09Z";

    #[test]
    fn a_missing_entry_time_is_the_signing_time() {
        let without = DECISION.replace(r#""decided_at":"2026-11-29T05:31:40Z","#, "");
        assert!(!without.contains("decided_at"));
        let (entry, _) = build_entry(&without, "acme.example", NOW).expect("valid line");
        assert_eq!(entry.time(), NOW);
        // A time given is kept.
        let (entry, _) = build_entry(DECISION, "acme.example", NOW).expect("valid line");
        assert_eq!(entry.time(), "2026-11-29T05:31:40Z");
        let purchase = r#"{"kind":"data_purchase","seller":{"name":"ListCo","domain":"listco.example"},"categories":["contact"],"sensitive":[],"records":10,"collection_method":"declared","legal_basis":"consent","consent_evidence":"double opt-in","purposes":["direct_marketing"],"retention_days":30}"#;
        let (entry, _) = build_entry(purchase, "acme.example", NOW).expect("valid purchase");
        assert_eq!((entry.kind(), entry.time()), ("data_purchase", NOW));
        // A wrong time is still an error, not replaced.
        let bad = DECISION.replace("2026-11-29T05:31:40Z", "yesterday");
        let err = build_entry(&bad, "acme.example", NOW).expect_err("bad time");
        assert!(err.contains("decided_at"), "{err}");
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"kind":"company_key"}"#, "log operator"),
            (r#"{"decided_at":"x"}"#, "kind"),
            (
                &DECISION.replace(r#""kind""#, r#""company":"evil.example","kind""#),
                "taken from the key",
            ),
            (
                &DECISION.replace(r#"{"email":" Alice@Example.com "}"#, r#""alice""#),
                "`subject` must be",
            ),
            (
                &DECISION.replace(
                    r#"{"email":" Alice@Example.com "}"#,
                    r#"{"email":"no-at-sign"}"#,
                ),
                "bad subject email",
            ),
            (
                &DECISION.replace(r#""email","#, r#""carrier_pigeon","#),
                "channel",
            ),
        ];
        for (line, want) in cases {
            let err = build_entry(line, "acme.example", NOW).expect_err(line);
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn complete_lines_drop_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out.ndjson");
        std::fs::write(&p, "{\"line\":1}\n{\"line\":2}\n{\"li").expect("write");
        let done = receipted_lines(&p).expect("read");
        assert_eq!(done, HashSet::from([1, 2]));
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "{\"line\":1}\n{\"line\":2}\n"
        );
        std::fs::write(&p, "{\"line\":1}\ngarbage\n").expect("write");
        assert!(matches!(
            receipted_lines(&p),
            Err(PublishError::BadOut { line: 2, .. })
        ));
    }
}
