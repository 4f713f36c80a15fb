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
        "not enough witnesses cosigned the checkpoint: {}; the policy requires {required}",
        if have.is_empty() { "no listed witness cosigned it".to_string() } else { format!("cosigned by {} only", have.join(", ")) }
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
                required: self.describe(),
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

    /// The quorum in plain words, naming the witnesses: `no witness
    /// cosignatures`, `w1`, `2 of w0, w1, w2`, `all of (2 of a, b, c), (any of d, e)`.
    /// The `/verify` page shows it next to the policy text.
    pub fn describe(&self) -> String {
        match self.quorum {
            Quorum::None => "no witness cosignatures".to_string(),
            Quorum::One(m) => self.describe_member(m),
        }
    }

    fn describe_member(&self, m: Member) -> String {
        match m {
            Member::Witness(i) => self.witnesses[i].name.clone(),
            Member::Group(g) => {
                let group = &self.groups[g];
                let n = group.members.len();
                let how = if n == 1 {
                    String::new()
                } else if group.threshold == n {
                    "all of ".to_string()
                } else if group.threshold == 1 {
                    "any of ".to_string()
                } else {
                    format!("{} of ", group.threshold)
                };
                let members: Vec<String> = group
                    .members
                    .iter()
                    .map(|&m| match m {
                        Member::Group(_) if n > 1 => format!("({})", self.describe_member(m)),
                        _ => self.describe_member(m),
                    })
                    .collect();
                format!("{how}{}", members.join(", "))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::cosignature::{cosign, witness_verifier_key};
    use crate::hash::sha256;
    use crate::note::{NoteSignature, SignerKey};

    struct Fixture {
        log: SignerKey,
        witnesses: Vec<SignerKey>,
    }

    impl Fixture {
        fn new(n: usize) -> Fixture {
            Fixture {
                log: SignerKey::generate("log.example/policy").expect("key"),
                witnesses: (0..n)
                    .map(|i| SignerKey::generate(&format!("w{i}.example")).expect("key"))
                    .collect(),
            }
        }

        fn wkey(&self, i: usize) -> VerifierKey {
            witness_verifier_key(&self.witnesses[i])
        }

        fn text(&self) -> String {
            Checkpoint {
                origin: self.log.name().to_string(),
                size: 42,
                root: sha256(b"root"),
                extensions: vec![],
            }
            .to_text()
        }

        /// The checkpoint signed by the log and cosigned by `cosigners`.
        fn note(&self, cosigners: &[usize]) -> Vec<u8> {
            let cp = Checkpoint::parse(&self.text()).expect("checkpoint");
            let signed = sign_checkpoint(&cp, &self.log).expect("sign");
            let mut note = Note::parse(&signed).expect("note");
            for &i in cosigners {
                note.signatures.push(
                    cosign(&note.text, 1_700_000_000 + i as u64, &self.witnesses[i])
                        .expect("cosign"),
                );
            }
            note.to_bytes()
        }
    }

    fn err_line(text: &str) -> usize {
        match Policy::parse(text.as_bytes()) {
            Err(PolicyError::Syntax { line, .. }) => line,
            other => panic!("expected a syntax error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_example_with_nested_groups() {
        let f = Fixture::new(6);
        let text = format!(
            "# example policy\nlog {log}\n\nwitness X1 {}\nwitness X2 {}\n  witness\tX3 {} https://x3.example/\n\
             group X-witnesses 2 X1 X2 X3\n\nwitness Y1 {}\nwitness Y2 {}\nwitness Y3 {}\n\
             group Y-witnesses any Y1 Y2 Y3\n\ngroup X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
            f.wkey(0),
            f.wkey(1),
            f.wkey(2),
            f.wkey(3),
            f.wkey(4),
            f.wkey(5),
            log = f.log.verifier()
        );
        let p = Policy::parse(text.as_bytes()).expect("parses");
        assert_eq!(p.logs().len(), 1);
        assert_eq!(p.witnesses().len(), 6);
        assert_eq!(p.witnesses()[2].url.as_deref(), Some("https://x3.example/"));
        assert!(p.requires_cosignatures());

        // Two X and one Y: accepted, cosigners listed in policy order.
        let ok = p.check(&f.note(&[4, 0, 2])).expect("quorum met");
        let names: Vec<&str> = ok.cosigners.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["X1", "X3", "Y2"]);
        assert_eq!(ok.cosigners[0].timestamp, 1_700_000_000);
        assert_eq!(ok.checkpoint.size, 42);

        assert_eq!(
            p.describe(),
            "all of (2 of X1, X2, X3), (any of Y1, Y2, Y3)"
        );
        // Three X but no Y, or one X and all Y: rejected.
        for set in [&[0, 1, 2][..], &[0, 3, 4, 5]] {
            match p.check(&f.note(set)) {
                Err(e @ PolicyError::QuorumNotMet { .. }) => {
                    assert!(
                        e.to_string().ends_with(
                            "the policy requires all of (2 of X1, X2, X3), (any of Y1, Y2, Y3)"
                        ),
                        "{e}"
                    );
                }
                other => panic!("{set:?}: expected QuorumNotMet, got {other:?}"),
            }
        }
    }

    #[test]
    fn k_of_n_threshold_helper() {
        let f = Fixture::new(3);
        let ws: Vec<(String, VerifierKey)> = (0..3).map(|i| (format!("w{i}"), f.wkey(i))).collect();
        let p = Policy::threshold(f.log.verifier(), ws.clone(), 2).expect("policy");
        assert!(p.check(&f.note(&[0, 2])).is_ok());
        assert!(p.check(&f.note(&[0, 1, 2])).is_ok());
        assert!(matches!(
            p.check(&f.note(&[1])),
            Err(PolicyError::QuorumNotMet { .. })
        ));
        // A duplicated cosignature line does not count twice.
        let mut note = Note::parse(&f.note(&[1])).expect("note");
        let dup = note.signatures[1].clone();
        note.signatures.push(dup);
        assert!(p.check(&note.to_bytes()).is_err());

        assert_eq!(p.describe(), "2 of w0, w1, w2");
        let none = Policy::threshold(f.log.verifier(), ws, 0).expect("policy");
        assert_eq!(none.describe(), "no witness cosignatures");
        assert!(!none.requires_cosignatures());
        assert!(none.check(&f.note(&[])).is_ok());
    }

    #[test]
    fn log_signature_is_required() {
        let f = Fixture::new(1);
        let p = Policy::parse(format!("witness a {}\nquorum a\n", f.wkey(0)).as_bytes())
            .expect("policy without logs");
        // No log listed: only a pinned log key makes the checkpoint acceptable.
        assert!(matches!(
            p.check(&f.note(&[0])),
            Err(PolicyError::UnknownLog(_))
        ));
        assert!(
            p.check_with_logs(&f.note(&[0]), &[f.log.verifier()])
                .is_ok()
        );

        // Signed by another key with the log's name: rejected.
        let impostor = SignerKey::generate("log.example/policy").expect("key");
        let p = Policy::parse(
            format!(
                "log {}\nwitness a {}\nquorum a\n",
                impostor.verifier(),
                f.wkey(0)
            )
            .as_bytes(),
        )
        .expect("policy");
        assert!(matches!(
            p.check(&f.note(&[0])),
            Err(PolicyError::LogSignature(_))
        ));
        assert!(matches!(p.check(b"not a note"), Err(PolicyError::Note(_))));
    }

    #[test]
    fn a_bad_cosignature_from_a_listed_witness_rejects_the_note() {
        let f = Fixture::new(2);
        let p = Policy::parse(
            format!(
                "log {}\nwitness a {}\nwitness b {}\ngroup g any a b\nquorum g\n",
                f.log.verifier(),
                f.wkey(0),
                f.wkey(1)
            )
            .as_bytes(),
        )
        .expect("policy");
        let mut note = Note::parse(&f.note(&[0, 1])).expect("note");
        let last = note.signatures.len() - 1;
        let sig: &mut NoteSignature = &mut note.signatures[last];
        sig.signature[20] ^= 1;
        assert!(matches!(
            p.check(&note.to_bytes()),
            Err(PolicyError::BadCosignature { .. })
        ));
        // A signature from an unknown witness is ignored.
        let stranger = SignerKey::generate("stranger.example").expect("key");
        let mut note = Note::parse(&f.note(&[0])).expect("note");
        note.signatures
            .push(cosign(&note.text, 5, &stranger).expect("cosign"));
        assert!(p.check(&note.to_bytes()).is_ok());
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let f = Fixture::new(2);
        let (l, a, b) = (f.log.verifier(), f.wkey(0), f.wkey(1));
        assert_eq!(Policy::parse(b"# nothing\n"), Err(PolicyError::NoQuorum));
        assert_eq!(err_line("quorum none\nquorum none\n"), 2);
        assert_eq!(err_line("quorum w\n"), 1);
        assert_eq!(err_line(&format!("quorum a\nwitness a {a}\n")), 1);
        assert_eq!(err_line(&format!("witness none {a}\nquorum none\n")), 1);
        assert_eq!(
            err_line(&format!("witness a {a}\nwitness a {b}\nquorum a\n")),
            2
        );
        assert_eq!(
            err_line(&format!("witness a {a}\nwitness b {a}\nquorum a\n")),
            2
        );
        assert_eq!(err_line(&format!("log {l}\nlog {l}\nquorum none\n")), 2);
        // Wrong key types: a 0x01 key as a witness, a 0x04 key as a log.
        assert_eq!(err_line(&format!("witness a {l}\nquorum a\n")), 1);
        assert_eq!(err_line(&format!("log {a}\nquorum none\n")), 1);
        assert_eq!(err_line("log not-a-key\nquorum none\n"), 1);
        let ws = format!("witness a {a}\nwitness b {b}\n");
        assert_eq!(err_line(&format!("{ws}group g 3 a b\nquorum g\n")), 3);
        assert_eq!(err_line(&format!("{ws}group g 0 a b\nquorum g\n")), 3);
        assert_eq!(err_line(&format!("{ws}group g 01 a b\nquorum g\n")), 3);
        assert_eq!(err_line(&format!("{ws}group g any\nquorum none\n")), 3);
        assert_eq!(err_line(&format!("{ws}group g any a a\nquorum g\n")), 3);
        assert_eq!(err_line(&format!("{ws}group g any a none\nquorum g\n")), 3);
        assert_eq!(err_line(&format!("{ws}group g any a c\nquorum g\n")), 3);
        assert_eq!(err_line(&format!("{ws}group a any b\nquorum a\n")), 3);
        assert_eq!(err_line(&format!("{ws}frobnicate\nquorum none\n")), 3);
        assert_eq!(err_line("quorum none\r\n"), 1);
        assert_eq!(err_line("quorum none extra\n"), 1);
        assert_eq!(err_line(&format!("witness a {a} url extra\nquorum a\n")), 1);
        // Tabs, surrounding whitespace, comments and a missing final newline are fine.
        let ok = format!("\t# c\n {ws} group\tg\tall a b  \nquorum g");
        assert!(Policy::parse(ok.as_bytes()).is_ok());
    }
}
