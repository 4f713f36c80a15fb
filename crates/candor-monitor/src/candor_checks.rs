//! Checks on Candor entries (spec/entries.md; spec/monitor.md §6): canonical form,
//! schema, the company's signature under a key the log registered for it before
//! the entry and had not revoked, cited purchases, plausible times, and the policy
//! checks. Leaves that are not Candor leaves are audited as opaque bytes only.
//!
//! A chunk is checked in two passes. The first ([`Checker::prepare`]) does the work
//! that depends on one entry alone (JSON parse, the RFC 8785 check, the schema, the
//! signed message, the signature's encoding, time and content policy findings, the
//! summary) and runs on all cores. The second, in index order on one thread, does
//! what depends on the entries before it (the key registry, cited purchases, volume
//! counts) and emits every finding in the same order as a one-pass check would.

use super::findings::{Finding, Kind, Severity};
use super::policy::{EntryContext, Policy, VolumeTracker};
use super::state::{CompanyKeys, EntrySummary, IndexBatch, KeyRecord, StateDir, StateError};
use base64::Engine;
use candor_core::entry::json::Json;
use candor_core::entry::{Entry, KeyAction, Leaf};
use candor_core::hash::Hash;
use candor_core::note::VerifierKey;
use ed25519_dalek::{Signature, VerifyingKey};

use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A cheap test for "this leaf claims to be a Candor leaf": a JSON object with
/// `entry` and `logged_at` members, with its text. Only such leaves are held to
/// Candor's rules.
pub fn looks_like_candor_leaf(bytes: &[u8]) -> Option<(Json<'_>, &str)> {
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let v = Json::parse(text).ok()?;
    is_candor_shaped(&v).then_some((v, text))
}

/// The shape that makes a JSON leaf a Candor leaf: an object member `entry` and a
/// member `logged_at` (spec/monitor.md §6.1).
fn is_candor_shaped(v: &Json) -> bool {
    v.get("entry").is_some_and(Json::is_object) && v.get("logged_at").is_some()
}

/// What the chunk checker needs besides the entries.
pub struct Checker<'a> {
    pub policy: &'a Policy,
    pub origin: &'a str,
    pub log_key: &'a VerifierKey,
    pub state: &'a StateDir,
    /// Purchases found by earlier checks whose index rows may not be written yet
    /// (the audit's two chunks before this one: one has its signatures checked, the
    /// other is being saved), in index order.
    pub unsaved: &'a [(u64, Hash, String)],
    /// The monitor's clock, for "logged in the future".
    pub now: OffsetDateTime,
}

/// The part of one leaf's checks that depends on that leaf alone.
pub enum Prepared {
    /// Not a Candor leaf: audited as opaque bytes only.
    Opaque,
    /// A Candor leaf rejected before the stateful checks (its bytes are not
    /// canonical, or it is not a valid entry): its one finding.
    Rejected(Box<Finding>),
    /// A valid Candor leaf, ready for the stateful checks.
    Leaf(Box<PreparedLeaf>),
}

/// A valid Candor leaf with everything computed from it alone.
pub struct PreparedLeaf {
    leaf: Leaf,
    /// The signed message (`ENTRY_SIGNATURE_TAG ||` canonical entry).
    message: Vec<u8>,
    /// `None` if the signature is not a 64-byte Ed25519 signature.
    signature: Option<Signature>,
    /// Purchases the entry cites, (index, leaf hash), in the entry's order.
    cited: Vec<(u64, Hash)>,
    /// The time findings, then the content policy findings.
    own_findings: Vec<Finding>,
    /// Day of `logged_at` since the epoch, for the volume counts.
    day: Option<i64>,
    summary: EntrySummary,
}

/// The company signatures of a chunk, still to verify.
pub struct Unverified(Vec<Pending>);

/// A signature to verify at the end of the chunk (batched).
struct Pending {
    index: u64,
    company: String,
    logged_at: String,
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn days_since_epoch(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

impl Checker<'_> {
    fn entry_finding(
        &self,
        kind: Kind,
        sev: Severity,
        index: u64,
        company: &str,
        logged_at: &str,
        msg: String,
    ) -> Finding {
        let mut f = Finding::new(kind, sev, self.origin, msg)
            .with_index(index)
            .with_day_of(logged_at);
        if !company.is_empty() {
            f = f.with_company(company);
        }
        f
    }

    /// Checks the leaves of one chunk, in index order, updating the key registry
    /// `companies` and the volume counts (an audit point's) and adding index rows and
    /// findings to `out`.
    /// The per-leaf work runs on all cores; the result is that of checking the
    /// leaves one after another.
    pub fn check_chunk(
        &self,
        companies: &mut CompanyKeys,
        volume: &mut VolumeTracker,
        leaves: &[(u64, &[u8], Hash)],
        out: &mut IndexBatch,
    ) -> Result<(), StateError> {
        let unverified = self.check_entries(companies, volume, leaves, out)?;
        self.verify_signatures(unverified, out);
        Ok(())
    }

    /// [`Checker::check_chunk`] in two steps: every check but the company
    /// signatures, which it returns; nothing that follows in the log depends on
    /// them, so the next chunk's checks need not wait for them.
    pub fn check_entries(
        &self,
        companies: &mut CompanyKeys,
        volume: &mut VolumeTracker,
        leaves: &[(u64, &[u8], Hash)],
        out: &mut IndexBatch,
    ) -> Result<Unverified, StateError> {
        // Below this many leaves per core a second thread costs more than it saves.
        const MIN_SHARE: usize = 16;
        let prepared = candor_core::par::map(leaves, MIN_SHARE, |&(index, bytes, _)| {
            self.prepare(index, bytes)
        });
        let mut pending: Vec<Pending> = Vec::new();
        // Registered keys decoded in this chunk (a decode is a base64 decode, a
        // SHA-256 and an Ed25519 point decompression; one company signs many entries).
        let mut keys: HashMap<String, VerifyingKey> = HashMap::new();
        for (&(index, _, leaf_hash), p) in leaves.iter().zip(prepared) {
            match p {
                Prepared::Opaque => {}
                Prepared::Rejected(f) => out.findings.push(*f),
                Prepared::Leaf(p) => self.check_leaf(
                    companies,
                    volume,
                    index,
                    *p,
                    leaf_hash,
                    &mut pending,
                    &mut keys,
                    out,
                )?,
            }
        }
        Ok(Unverified(pending))
    }

    /// The second step of [`Checker::check_chunk`]: verifies the signatures that
    /// [`Checker::check_entries`] left and adds a finding for each bad one.
    pub fn verify_signatures(&self, unverified: Unverified, out: &mut IndexBatch) {
        unverified.verify(self.origin, out);
    }

    /// The checks of the leaf at `index` that depend on its bytes alone.
    pub fn prepare(&self, index: u64, bytes: &[u8]) -> Prepared {
        let Some((value, text)) = looks_like_candor_leaf(bytes) else {
            return self.duplicate_member_leaf(index, bytes);
        };
        let reject = |kind: Kind, message: String| self.rejected(index, &value, kind, message);
        // Parse the value already in hand, getting the signed message with it and
        // whether the bytes are canonical, which is reported first either way.
        let (parsed, canonical) = Leaf::parse_json_checked(&value, text);
        if !canonical {
            return reject(
                Kind::NonCanonicalEntry,
                format!(
                    "Entry {index} is a Candor leaf but its bytes are not the canonical (RFC 8785) form."
                ),
            );
        }
        let (leaf, message) = match parsed {
            Ok(l) => l,
            Err(e) => {
                return reject(
                    Kind::InvalidEntry,
                    format!("Entry {index} is not a valid Candor entry: {e}."),
                );
            }
        };
        let Some(entry_json) = value.get("entry") else {
            // Unreachable: looks_like_candor_leaf checked it is there.
            return Prepared::Opaque;
        };
        let company = leaf.entry.company();
        let logged_at = leaf.logged_at.as_str();
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&leaf.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok());
        let mut own_findings = Vec::new();
        self.check_times(index, company, &leaf.entry, logged_at, &mut own_findings);
        let ctx = EntryContext {
            origin: self.origin,
            index,
            logged_at,
        };
        own_findings.extend(self.policy.check_content(entry_json, &ctx));
        let s = |name: &str| {
            entry_json
                .get(name)
                .and_then(Json::as_str)
                .map(str::to_owned)
        };
        let summary = EntrySummary {
            company: company.to_owned(),
            kind: leaf.entry.kind().to_owned(),
            logged_at: logged_at.to_owned(),
            channel: s("channel"),
            legal_basis: s("legal_basis"),
            seller: entry_json
                .get("seller")
                .and_then(|x| x.get("name"))
                .and_then(Json::as_str)
                .map(str::to_owned),
            categories: entry_json
                .get("categories")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            records: entry_json.get("records").and_then(Json::as_u64),
        };
        let day = parse_time(logged_at).map(days_since_epoch);
        let cited = cited_purchases(entry_json);
        Prepared::Leaf(Box::new(PreparedLeaf {
            leaf,
            message,
            signature,
            cited,
            own_findings,
            day,
            summary,
        }))
    }

    /// A Candor leaf refused before it parses: its one finding, naming its company and
    /// time as far as the raw JSON tells them.
    fn rejected(&self, index: u64, value: &Json, kind: Kind, message: String) -> Prepared {
        let hint = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or("").to_owned();
        Prepared::Rejected(Box::new(self.entry_finding(
            kind,
            Severity::High,
            index,
            &hint(value.get("entry").and_then(|e| e.get("company"))),
            &hint(value.get("logged_at")),
            message,
        )))
    }

    /// Bytes that [`looks_like_candor_leaf`] did not take: opaque, unless they are a
    /// Candor leaf but for duplicate member names, which the entry parser refuses as
    /// JSON (I-JSON). Such a leaf is not canonical, and is reported as such rather
    /// than passed over.
    fn duplicate_member_leaf(&self, index: u64, bytes: &[u8]) -> Prepared {
        if bytes.first() != Some(&b'{') {
            return Prepared::Opaque;
        }
        // serde_json's Value keeps the last of two same-named members.
        let Ok(lenient) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return Prepared::Opaque;
        };
        let value = Json::from_value(&lenient);
        if !is_candor_shaped(&value) {
            return Prepared::Opaque;
        }
        self.rejected(
            index,
            &value,
            Kind::NonCanonicalEntry,
            format!(
                "Entry {index} is a Candor leaf but its bytes are not the canonical (RFC 8785) form: a member name appears twice."
            ),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn check_leaf(
        &self,
        companies: &mut CompanyKeys,
        volume: &mut VolumeTracker,
        index: u64,
        prepared: PreparedLeaf,
        leaf_hash: Hash,
        pending: &mut Vec<Pending>,
        keys: &mut HashMap<String, VerifyingKey>,
        out: &mut IndexBatch,
    ) -> Result<(), StateError> {
        let PreparedLeaf {
            leaf,
            message,
            signature,
            cited,
            own_findings,
            day,
            summary,
        } = prepared;
        let company = summary.company.clone();
        let logged_at = leaf.logged_at.as_str();
        let ctx = EntryContext {
            origin: self.origin,
            index,
            logged_at,
        };
        let Some(signature) = signature else {
            out.findings.push(self.entry_finding(
                Kind::BadSignature,
                Severity::High,
                index,
                &company,
                logged_at,
                format!("Entry {index} by {company} carries a signature that is not a 64-byte Ed25519 signature."),
            ));
            return Ok(());
        };

        if let Entry::CompanyKey(ck) = &leaf.entry {
            // company_key entries are signed by the log's own key (spec/entries.md §5),
            // checked at once because they change who may sign what follows.
            let log_id = hex::encode(self.log_key.key_id());
            let ok = leaf.key_id == log_id
                && candor_core::ed25519_strict::verify(
                    self.log_key.verifying_key(),
                    &message,
                    &signature,
                )
                .is_ok();
            if !ok {
                out.findings.push(self.entry_finding(
                    Kind::BadSignature,
                    Severity::Critical,
                    index,
                    &company,
                    logged_at,
                    format!("Entry {index} registers or revokes a key of {company} but is not signed by the log's key."),
                ));
                return Ok(());
            }
            let (key_id, _) = match ck.key() {
                Ok(k) => k,
                Err(e) => {
                    out.findings.push(self.entry_finding(
                        Kind::InvalidEntry,
                        Severity::High,
                        index,
                        &company,
                        logged_at,
                        format!("Entry {index} carries an unusable key for {company}: {e}."),
                    ));
                    return Ok(());
                }
            };
            let key_id = hex::encode(key_id);
            let active_before = companies.active(&company);
            let keys = companies.companies.entry(company.clone()).or_default();
            let rotation = match ck.action {
                KeyAction::Register => {
                    if !keys
                        .iter()
                        .any(|k| k.key_id == key_id && k.revoked_at.is_none())
                    {
                        keys.push(KeyRecord {
                            key_id: key_id.clone(),
                            verifier_key: ck.verifier_key.clone(),
                            registered_at: index,
                            revoked_at: None,
                        });
                    }
                    (active_before > 0).then(|| {
                        format!("Entry {index} registers another key ({key_id}) for {company}, which already had {active_before} active key(s).")
                    })
                }
                KeyAction::Revoke => {
                    match keys.iter_mut().find(|k| k.key_id == key_id && k.revoked_at.is_none()) {
                        Some(k) => k.revoked_at = Some(index),
                        None => out.findings.push(self.entry_finding(
                            Kind::InvalidEntry,
                            Severity::Medium,
                            index,
                            &company,
                            logged_at,
                            format!("Entry {index} revokes key {key_id} of {company}, which was not registered and active."),
                        )),
                    }
                    Some(format!("Entry {index} revokes key {key_id} of {company}."))
                }
            };
            if let Some(msg) = rotation.filter(|_| self.policy.key_rotation.enabled) {
                out.findings.push(self.entry_finding(
                    Kind::KeyRotation,
                    self.policy.key_rotation.severity,
                    index,
                    &company,
                    logged_at,
                    msg,
                ));
            }
        } else {
            // The company's signature: under a key registered before this entry and
            // not revoked before it.
            let record = companies.companies.get(&company).and_then(|ks| {
                ks.iter()
                    .rev()
                    .find(|k| k.key_id == leaf.key_id && k.registered_at < index)
            });
            match record {
                None => out.findings.push(self.entry_finding(
                    Kind::UnregisteredKey,
                    Severity::High,
                    index,
                    &company,
                    logged_at,
                    format!("Entry {index} by {company} is signed with key {}, which the log had not registered for {company} before it.", leaf.key_id),
                )),
                Some(k) if k.revoked_at.is_some_and(|r| r < index) => out.findings.push(self.entry_finding(
                    Kind::RevokedKey,
                    Severity::High,
                    index,
                    &company,
                    logged_at,
                    format!(
                        "Entry {index} by {company} is signed with key {}, which the log revoked at entry {}.",
                        leaf.key_id,
                        k.revoked_at.unwrap_or_default()
                    ),
                )),
                Some(k) => match decode_key(keys, &k.verifier_key) {
                    Ok(key) => pending.push(Pending {
                        index,
                        company: company.clone(),
                        logged_at: logged_at.to_owned(),
                        message,
                        signature,
                        key,
                    }),
                    Err(e) => out.findings.push(self.entry_finding(
                        Kind::InvalidEntry,
                        Severity::High,
                        index,
                        &company,
                        logged_at,
                        format!("Entry {index}: the registered key {} of {company} does not parse: {e}.", leaf.key_id),
                    )),
                },
            }
        }

        self.check_purchases(index, &company, logged_at, &cited, out)?;
        out.findings.extend(own_findings);
        if let Some(day) = day
            && let Some(f) = volume.record(&self.policy.volume_jump, &company, day, &ctx)
        {
            out.findings.push(f);
        }

        if summary.kind == "data_purchase" {
            out.purchases.push((index, leaf_hash, company));
        }
        out.entries.push((index, summary));
        Ok(())
    }

    /// Each cited purchase must be an earlier `data_purchase` with that leaf hash;
    /// one bought by another company is a policy finding.
    fn check_purchases(
        &self,
        index: u64,
        company: &str,
        logged_at: &str,
        cited_purchases: &[(u64, Hash)],
        out: &mut IndexBatch,
    ) -> Result<(), StateError> {
        for &(cited, hash) in cited_purchases {
            let found = if cited >= index {
                None
            } else if let Some((_, h, c)) =
                find_purchase(&out.purchases, cited).or_else(|| find_purchase(self.unsaved, cited))
            {
                // This chunk's (its rows are pushed in index order) or checked
                // before it but not saved yet: not in the index.
                Some((*h, c.clone()))
            } else {
                self.state.purchase(cited)?
            };
            match found {
                None => out.findings.push(
                    self.entry_finding(
                        Kind::MissingPurchase,
                        Severity::High,
                        index,
                        company,
                        logged_at,
                        format!("Entry {index} by {company} cites a data purchase at entry {cited}, but there is no data purchase there before it."),
                    )
                    .with_index(cited),
                ),
                Some((h, _)) if h != hash => out.findings.push(
                    self.entry_finding(
                        Kind::MissingPurchase,
                        Severity::High,
                        index,
                        company,
                        logged_at,
                        format!("Entry {index} by {company} cites the data purchase at entry {cited} with a leaf hash that does not match it."),
                    )
                    .with_index(cited),
                ),
                Some((_, owner)) if owner != company && self.policy.foreign_purchase.enabled => out.findings.push(
                    self.entry_finding(
                        Kind::ForeignPurchase,
                        self.policy.foreign_purchase.severity,
                        index,
                        company,
                        logged_at,
                        format!("Entry {index} by {company} cites the data purchase at entry {cited}, which {owner} made, not {company}."),
                    )
                    .with_index(cited),
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Times: the entry's own time at most `max_future_secs` after logged_at,
    /// logged_at not in the monitor's future, and long back-dating flagged.
    fn check_times(
        &self,
        index: u64,
        company: &str,
        entry: &Entry,
        logged_at: &str,
        out: &mut Vec<Finding>,
    ) {
        let t = &self.policy.time;
        let (Some(logged), Some(own)) = (parse_time(logged_at), parse_time(entry.time())) else {
            return;
        };
        let slack = time::Duration::seconds(t.max_future_secs);
        if own > logged + slack {
            out.push(self.entry_finding(
                Kind::FutureTime,
                t.future_severity,
                index,
                company,
                logged_at,
                format!("Entry {index} by {company} is dated {}, after the log logged it at {logged_at}.", entry.time()),
            ));
        }
        if logged > self.now + slack {
            out.push(self.entry_finding(
                Kind::FutureTime,
                t.future_severity,
                index,
                company,
                logged_at,
                format!("Entry {index} by {company} says the log logged it at {logged_at}, which is in the future."),
            ));
        }
        if t.backdate_enabled && logged - own > time::Duration::days(t.max_backdate_days) {
            out.push(self.entry_finding(
                Kind::Backdated,
                t.backdate_severity,
                index,
                company,
                logged_at,
                format!(
                    "Entry {index} by {company} was logged {} days after the {} it records (limit {} days).",
                    (logged - own).whole_days(),
                    if entry.kind() == "data_purchase" { "purchase" } else { "decision" },
                    t.max_backdate_days
                ),
            ));
        }
    }
}

impl Unverified {
    /// Verifies the chunk's company signatures in one batch (ed25519 batch
    /// verification); if the batch fails, one by one to name the bad ones, each a
    /// finding of the log `origin`. Needs nothing else of the [`Checker`], so the
    /// audit runs it apart.
    pub fn verify(self, origin: &str, out: &mut IndexBatch) {
        let pending = self.0;
        if pending.is_empty() {
            return;
        }
        let msgs: Vec<&[u8]> = pending.iter().map(|p| p.message.as_slice()).collect();
        let sigs: Vec<Signature> = pending.iter().map(|p| p.signature).collect();
        let keys: Vec<VerifyingKey> = pending.iter().map(|p| p.key).collect();
        if candor_core::entry::verify_batch_parallel(&msgs, &sigs, &keys).is_ok() {
            return;
        }
        for p in &pending {
            if candor_core::ed25519_strict::verify(&p.key, &p.message, &p.signature).is_err() {
                out.findings.push(
                    Finding::new(
                        Kind::BadSignature,
                        Severity::High,
                        origin,
                        format!("Entry {} by {} carries a signature that does not verify under the company's registered key.", p.index, p.company),
                    )
                    .with_index(p.index)
                    .with_company(&p.company)
                    .with_day_of(&p.logged_at),
                );
            }
        }
    }
}

/// The purchase at leaf `index` in `rows`, which are in index order.
fn find_purchase(rows: &[(u64, Hash, String)], index: u64) -> Option<&(u64, Hash, String)> {
    let at = rows.binary_search_by_key(&index, |p| p.0).ok()?;
    rows.get(at)
}

/// The purchases an entry cites under `data_sources[].purchase`, (index, leaf hash),
/// in order. A malformed reference is skipped: the schema check reported it.
fn cited_purchases(entry_json: &Json) -> Vec<(u64, Hash)> {
    let Some(sources) = entry_json.get("data_sources").and_then(Json::as_array) else {
        return Vec::new();
    };
    sources
        .iter()
        .filter_map(|src| {
            let r = src.get("purchase")?;
            Some((
                r.get("index").and_then(Json::as_u64)?,
                r.get("leaf_hash")
                    .and_then(Json::as_str)
                    .and_then(Hash::from_hex)?,
            ))
        })
        .collect()
}

/// A registered verifier key's Ed25519 key, decoded once per chunk.
fn decode_key(
    cache: &mut HashMap<String, VerifyingKey>,
    text: &str,
) -> Result<VerifyingKey, candor_core::note::NoteError> {
    if let Some(k) = cache.get(text) {
        return Ok(*k);
    }
    let k = *VerifierKey::parse_recorded(text)?.verifying_key();
    cache.insert(text.to_owned(), k);
    Ok(k)
}
