//! Trust policies in the C2SP tlog-policy format (c2sp.org/tlog-policy): which
//! logs are trusted, which witnesses, and the quorum of witness cosignatures a
//! checkpoint needs. Pure: no I/O.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! ```
//!
//! [`Policy::check`] accepts a checkpoint note only if a listed log signed it
//! and the witnesses that validly cosigned it satisfy the quorum.

use std::collections::HashMap;

use crate::checkpoint::Checkpoint;
use crate::cosignature;
use crate::note::{self, KeyType, Note, NoteError, VerifierKey};

/// The name tlog-policy predefines for "no cosignatures required".
const NONE: &[u8] = b"none";

/// A log listed in a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLog {
    /// The log's signed-note key (type 0x01); its name is the log's origin.
    pub key: VerifierKey,
    /// Optional URL (application specific; for Candor, the log's base URL).
    pub url: Option<String>,
}

/// A witness listed in a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The policy-local name (opaque octets; shown lossily as UTF-8).
    pub name: String,
    /// The witness's cosignature key (type 0x04).
    pub key: VerifierKey,
    /// Optional URL: the witness's tlog-witness submission prefix.
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// What the quorum line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quorum {
    None,
    One(Member),
}

/// A parsed trust policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Quorum,
}

/// A witness cosignature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigner {
    /// The witness's policy name.
    pub name: String,
    /// The cosignature's timestamp (POSIX seconds).
    pub timestamp: u64,
}

/// A checkpoint that satisfies the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The exact note text.
    pub text: String,
    /// Every listed witness whose cosignature verified (policy order).
    pub cosigners: Vec<Cosigner>,
}

/// Errors parsing a policy (with the 1-based line number) or checking a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("policy has no quorum line (exactly one is required)")]
    NoQuorum,
    #[error("malformed checkpoint note: {0}")]
    Note(String),
    #[error("the policy lists no log with origin {0:?}")]
    UnknownLog(String),
    #[error("checkpoint is not signed by a log the policy lists: {0}")]
    LogSignature(String),
    #[error("cosignature by policy witness {witness:?} ({key}) does not verify: {reason}")]
    BadCosignature {
        witness: String,
        key: String,
        reason: String,
    },
    #[error(
        "checkpoint does not satisfy the policy's witness quorum: cosigned by [{}], quorum requires {required}",
        have.join(", ")
    )]
    QuorumNotMet { have: Vec<String>, required: String },
}

fn syntax(line: usize, reason: impl Into<String>) -> PolicyError {
    PolicyError::Syntax {
        line,
        reason: reason.into(),
    }
}

/// A decimal without sign or leading zeros.
fn parse_decimal(s: &[u8]) -> Option<usize> {
    let canonical =
        !s.is_empty() && s.iter().all(u8::is_ascii_digit) && (s == b"0" || s[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_vkey(
    field: &[u8],
    line: usize,
    want: KeyType,
    what: &str,
) -> Result<VerifierKey, PolicyError> {
    let s = std::str::from_utf8(field)
        .map_err(|_| syntax(line, format!("{what} key is not valid UTF-8")))?;
    let key: VerifierKey = s
        .parse()
        .map_err(|e: NoteError| syntax(line, format!("invalid {what} key {s:?}: {e}")))?;
    if key.key_type() != want {
        let hint = match want {
            KeyType::Ed25519 => "log keys must be Ed25519 signed-note keys (type 0x01)",
            KeyType::Cosignature => {
                "witness keys must be Ed25519 cosignature keys (type 0x04, tlog-cosignature); \
                 `candor witness vkey` prints one"
            }
        };
        return Err(syntax(line, format!("{what} key {s:?}: {hint}")));
    }
    Ok(key)
}

fn parse_url(field: Option<&&[u8]>, line: usize) -> Result<Option<String>, PolicyError> {
    field
        .map(|u| String::from_utf8(u.to_vec()).map_err(|_| syntax(line, "URL is not valid UTF-8")))
        .transpose()
}

impl Policy {
    /// Parses a policy file (tlog-policy §"Policy file syntax and structure").
    pub fn parse(text: &[u8]) -> Result<Policy, PolicyError> {
        let mut logs: Vec<PolicyLog> = Vec::new();
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut names: HashMap<Vec<u8>, Member> = HashMap::new();
        let mut quorum: Option<Quorum> = None;

        let body = text.strip_suffix(b"\n").unwrap_or(text);
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            // §"Character set": only tab, newline, 0x20-0x7E and 0x80-0xFF.
            if let Some(&b) = raw.iter().find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(syntax(
                    line_no,
                    format!("control character 0x{b:02x} is not allowed (only tab and newline)"),
                ));
            }
            // §"Structure": items are separated by runs of spaces and tabs.
            let fields: Vec<&[u8]> = raw
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|f| !f.is_empty())
                .collect();
            let Some(&keyword) = fields.first() else {
                continue;
            };
            if keyword.starts_with(b"#") {
                continue;
            }
            match keyword {
                b"log" => {
                    if !(2..=3).contains(&fields.len()) {
                        return Err(syntax(line_no, "expected `log <vkey> [<url>]`"));
                    }
                    let key = parse_vkey(fields[1], line_no, KeyType::Ed25519, "log")?;
                    if logs
                        .iter()
                        .any(|l| l.key.verifying_key() == key.verifying_key())
                    {
                        return Err(syntax(
                            line_no,
                            "duplicate log: the same public key is listed twice",
                        ));
                    }
                    let url = parse_url(fields.get(2), line_no)?;
                    logs.push(PolicyLog { key, url });
                }
                b"witness" => {
                    if !(3..=4).contains(&fields.len()) {
                        return Err(syntax(line_no, "expected `witness <name> <vkey> [<url>]`"));
                    }
                    let name = fields[1];
                    check_new_name(&names, name, line_no)?;
                    let key = parse_vkey(fields[2], line_no, KeyType::Cosignature, "witness")?;
                    if witnesses
                        .iter()
                        .any(|w| w.key.verifying_key() == key.verifying_key())
                    {
                        return Err(syntax(
                            line_no,
                            "duplicate witness: the same public key is listed twice",
                        ));
                    }
                    let url = parse_url(fields.get(3), line_no)?;
                    names.insert(name.to_vec(), Member::Witness(witnesses.len()));
                    witnesses.push(PolicyWitness {
                        name: String::from_utf8_lossy(name).into_owned(),
                        key,
                        url,
                    });
                }
                b"group" => {
                    if fields.len() < 4 {
                        return Err(syntax(
                            line_no,
                            "expected `group <name> all|any|<k> <name>...` with at least one member",
                        ));
                    }
                    let name = fields[1];
                    check_new_name(&names, name, line_no)?;
                    let mut members = Vec::new();
                    for m in &fields[3..] {
                        if *m == NONE {
                            return Err(syntax(line_no, "`none` cannot be a group member"));
                        }
                        let member = *names.get(*m).ok_or_else(|| {
                            syntax(
                                line_no,
                                format!(
                                    "group member {:?} is not a witness or group defined on an earlier line",
                                    String::from_utf8_lossy(m)
                                ),
                            )
                        })?;
                        if members.contains(&member) {
                            return Err(syntax(
                                line_no,
                                format!(
                                    "group member {:?} is listed twice",
                                    String::from_utf8_lossy(m)
                                ),
                            ));
                        }
                        members.push(member);
                    }
                    let n = members.len();
                    let threshold = match fields[2] {
                        b"all" => n,
                        b"any" => 1,
                        k => match parse_decimal(k) {
                            Some(k) if (1..=n).contains(&k) => k,
                            _ => {
                                return Err(syntax(
                                    line_no,
                                    format!(
                                        "group threshold {:?} must be all, any or a decimal k with 1 <= k <= {n}",
                                        String::from_utf8_lossy(k)
                                    ),
                                ));
                            }
                        },
                    };
                    names.insert(name.to_vec(), Member::Group(groups.len()));
                    groups.push(Group {
                        name: String::from_utf8_lossy(name).into_owned(),
                        threshold,
                        members,
                    });
                }
                b"quorum" => {
                    if fields.len() != 2 {
                        return Err(syntax(line_no, "expected `quorum <name>`"));
                    }
                    if quorum.is_some() {
                        return Err(syntax(
                            line_no,
                            "a policy must have exactly one quorum line",
                        ));
                    }
                    quorum = Some(if fields[1] == NONE {
                        Quorum::None
                    } else {
                        Quorum::One(*names.get(fields[1]).ok_or_else(|| {
                            syntax(
                                line_no,
                                format!(
                                    "quorum {:?} is not a witness or group defined on an earlier line",
                                    String::from_utf8_lossy(fields[1])
                                ),
                            )
                        })?)
                    });
                }
                other => {
                    return Err(syntax(
                        line_no,
                        format!(
                            "unknown keyword {:?} (expected log, witness, group or quorum)",
                            String::from_utf8_lossy(other)
                        ),
                    ));
                }
            }
        }
        Ok(Policy {
            logs,
            witnesses,
            groups,
            quorum: quorum.ok_or(PolicyError::NoQuorum)?,
        })
    }

    /// A policy for one log and a flat "k of these witnesses" quorum (k = 0
    /// means `quorum none`), as `candor serve --witness-quorum` uses.
    pub fn threshold(
        log: VerifierKey,
        witnesses: Vec<(String, VerifierKey)>,
        k: usize,
    ) -> Result<Policy, PolicyError> {
        Policy::parse(Policy::threshold_text(&log, &witnesses, k).as_bytes())
    }

    /// The policy file text [`Policy::threshold`] parses.
    pub fn threshold_text(
        log: &VerifierKey,
        witnesses: &[(String, VerifierKey)],
        k: usize,
    ) -> String {
        let mut out = format!("log {log}\n");
        for (name, key) in witnesses {
            out.push_str(&format!("witness {name} {key}\n"));
        }
        if k == 0 {
            out.push_str("quorum none\n");
        } else {
            let names: Vec<&str> = witnesses.iter().map(|(n, _)| n.as_str()).collect();
            out.push_str(&format!("group quorum-group {k} {}\n", names.join(" ")));
            out.push_str("quorum quorum-group\n");
        }
        out
    }

    /// The logs the policy lists.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The witnesses the policy lists.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// True when the quorum is `none` (no cosignatures needed).
    pub fn requires_cosignatures(&self) -> bool {
        self.quorum != Quorum::None
    }

    /// Checks a checkpoint note against the policy (tlog-policy §"What is a
    /// policy?"): it must carry a valid signature of a listed log whose key
    /// name is the checkpoint's origin, and the listed witnesses whose
    /// cosignatures verify (tlog-cosignature) must satisfy the quorum.
    pub fn check(&self, note_bytes: &[u8]) -> Result<Accepted, PolicyError> {
        self.check_with_logs(note_bytes, &[])
    }

    /// Like [`Policy::check`], also trusting `extra_logs` (tlog-policy allows a
    /// policy without logs "where the appropriate log(s) are known from other
    /// context", e.g. a pinned `--log-key`).
    pub fn check_with_logs(
        &self,
        note_bytes: &[u8],
        extra_logs: &[VerifierKey],
    ) -> Result<Accepted, PolicyError> {
        let parsed = Note::parse(note_bytes).map_err(|e| PolicyError::Note(e.to_string()))?;
        let checkpoint =
            Checkpoint::parse(&parsed.text).map_err(|e| PolicyError::Note(e.to_string()))?;
        let mut keys: Vec<VerifierKey> = Vec::new();
        for k in self.logs.iter().map(|l| &l.key).chain(extra_logs) {
            let dup = keys
                .iter()
                .any(|o| o.name() == k.name() && o.key_id() == k.key_id());
            if k.name() == checkpoint.origin && !dup {
                keys.push(k.clone());
            }
        }
        if keys.is_empty() {
            return Err(PolicyError::UnknownLog(checkpoint.origin));
        }
        note::open(note_bytes, &keys).map_err(|e| PolicyError::LogSignature(e.to_string()))?;

        // Which listed witnesses cosigned. signed-note: a signature whose name
        // and key ID match a known key MUST be verified, and a failure SHOULD
        // reject the whole note; unknown signatures are ignored.
        let mut cosigned = vec![None; self.witnesses.len()];
        for sig in &parsed.signatures {
            for (i, w) in self.witnesses.iter().enumerate() {
                if !w.key.matches(sig) {
                    continue;
                }
                let ts =
                    cosignature::verify_cosignature(&parsed.text, sig, &w.key).map_err(|e| {
                        PolicyError::BadCosignature {
                            witness: w.name.clone(),
                            key: w.key.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                cosigned[i].get_or_insert(ts);
            }
        }
        let cosigners: Vec<Cosigner> = self
            .witnesses
            .iter()
            .zip(&cosigned)
            .filter_map(|(w, ts)| {
                ts.map(|timestamp| Cosigner {
                    name: w.name.clone(),
                    timestamp,
                })
            })
            .collect();

        if !self.quorum_met(&cosigned) {
            return Err(PolicyError::QuorumNotMet {
                have: cosigners.iter().map(|c| c.name.clone()).collect(),
                required: self.describe_quorum(),
            });
        }
        Ok(Accepted {
            checkpoint,
            text: parsed.text,
            cosigners,
        })
    }

    /// Evaluates the quorum given which witnesses cosigned. Groups only refer
    /// to earlier definitions, so one pass in definition order suffices.
    fn quorum_met(&self, cosigned: &[Option<u64>]) -> bool {
        let mut group_ok = Vec::with_capacity(self.groups.len());
        let holds = |m: &Member, group_ok: &[bool]| match *m {
            Member::Witness(i) => cosigned[i].is_some(),
            Member::Group(g) => group_ok[g],
        };
        for g in &self.groups {
            let count = g.members.iter().filter(|m| holds(m, &group_ok)).count();
            group_ok.push(count >= g.threshold);
        }
        match self.quorum {
            Quorum::None => true,
            Quorum::One(m) => holds(&m, &group_ok),
        }
    }

    fn describe_quorum(&self) -> String {
        match self.quorum {
            Quorum::None => "nothing".to_string(),
            Quorum::One(Member::Witness(i)) => {
                format!("witness {:?}", self.witnesses[i].name)
            }
            Quorum::One(Member::Group(g)) => {
                let group = &self.groups[g];
                format!(
                    "group {:?} ({} of {} members)",
                    group.name,
                    group.threshold,
                    group.members.len()
                )
            }
        }
    }
}

fn check_new_name(
    names: &HashMap<Vec<u8>, Member>,
    name: &[u8],
    line: usize,
) -> Result<(), PolicyError> {
    if name == NONE {
        return Err(syntax(
            line,
            "the name `none` is predefined and cannot be redefined",
        ));
    }
    if names.contains_key(name) {
        return Err(syntax(
            line,
            format!(
                "name {:?} is already defined",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    Ok(())
}
