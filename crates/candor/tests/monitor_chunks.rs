//! The monitor's entry checks give the same result whether a chunk is checked at
//! once (its per-entry work split over all cores), one entry at a time (all on one
//! thread), or in small chunks each checked while the previous one is saved (as the
//! audit does): the same findings in the same order, the same index rows, the same
//! key registry and volume counts.

use candor_core::entry::{self, DataPurchase, Entry, KeyAction, Leaf, SignedEntry, samples};
use candor_core::hash::{Hash, leaf_hash, sha256};
use candor_core::note::SignerKey;
use candor_monitor::candor_checks::{Checker, Unverified};
use candor_monitor::policy::Policy;
use candor_monitor::state::{AuditPoint, IndexBatch, StateDir};
use time::OffsetDateTime;

fn at(secs_ago: i64) -> String {
    entry::format_time(OffsetDateTime::now_utc() - time::Duration::seconds(secs_ago))
}

fn leaf_bytes(e: Entry, key: &ed25519_dalek::SigningKey, id: [u8; 4], logged_at: &str) -> Vec<u8> {
    let signed = SignedEntry::sign(e, key, id).expect("sign");
    Leaf::new(signed, logged_at.to_owned())
        .to_bytes()
        .expect("leaf bytes")
}

/// A chunk of 300 leaves with every kind of outcome the per-entry pass produces:
/// key registrations (signed by the log), decisions, purchases, decisions citing a
/// purchase of this chunk and one of another company, special-category purchases,
/// an entry dated in the future, an unregistered key, a non-canonical leaf, an
/// invalid Candor leaf and opaque leaves.
fn chunk(log: &SignerKey) -> Vec<Vec<u8>> {
    let (log_sk, log_id) = (log.signing_key().clone(), log.key_id());
    let companies = ["a.example", "b.example"];
    let keys: Vec<_> = companies
        .iter()
        .map(|c| {
            let k = samples::signing_key(c);
            let id = entry::ed25519_key_id(c, &k.verifying_key());
            (k, id)
        })
        .collect();
    let stranger = samples::signing_key("stranger");
    let stranger_id = entry::ed25519_key_id("a.example", &stranger.verifying_key());
    let mut leaves = Vec::new();
    let mut purchases: Vec<(u64, Hash)> = Vec::new();
    for (c, (k, _)) in companies.iter().zip(&keys) {
        let e = samples::company_key(c, &k.verifying_key(), KeyAction::Register);
        leaves.push(leaf_bytes(e, &log_sk, log_id, &at(7200)));
    }
    while leaves.len() < 300 {
        let i = leaves.len() as u64;
        let c = (i % 2) as usize;
        let (company, (k, id)) = (companies[c], &keys[c]);
        let t = at(3600);
        let bytes = match i % 23 {
            0 => {
                // Not canonical: a space after the opening brace.
                let mut b = leaf_bytes(samples::load_targeting_decision(company, i), k, *id, &t);
                b.insert(1, b' ');
                b
            }
            1 => br#"{"entry":{"company":"a.example","kind":"nothing"},"logged_at":"x"}"#.to_vec(),
            2 => format!("opaque leaf {i}").into_bytes(),
            3 => leaf_bytes(
                samples::load_targeting_decision(company, i),
                &stranger,
                stranger_id,
                &t,
            ),
            4 | 5 => {
                let mut e = if i % 23 == 4 {
                    samples::data_purchase(company)
                } else {
                    samples::sensitive_data_purchase(company)
                };
                if let Entry::DataPurchase(DataPurchase {
                    records,
                    contract_hash,
                    purchased_at,
                    ..
                }) = &mut e
                {
                    *records = 100 + i;
                    *contract_hash = Some(sha256(&i.to_be_bytes()));
                    *purchased_at = at(4000);
                }
                let b = leaf_bytes(e, k, *id, &t);
                purchases.push((i, leaf_hash(&b)));
                b
            }
            6..=8 if !purchases.is_empty() => {
                // Cite the latest purchase (of either company) or a missing one.
                let (pi, ph) = purchases[purchases.len() - 1];
                let cited = if i % 23 == 8 { (pi + 1, ph) } else { (pi, ph) };
                let subject = samples::opening(&format!("p{i}@example.org"), i).commitment();
                let mut e =
                    samples::targeting_decision_from_purchase(company, subject, cited.0, cited.1);
                if let Entry::TargetingDecision(td) = &mut e {
                    td.decided_at = at(3700);
                }
                leaf_bytes(e, k, *id, &t)
            }
            9 => {
                let mut e = samples::load_targeting_decision(company, i);
                if let Entry::TargetingDecision(td) = &mut e {
                    td.decided_at = at(-86_400);
                }
                leaf_bytes(e, k, *id, &t)
            }
            _ => {
                let mut e = samples::load_targeting_decision(company, i);
                if let Entry::TargetingDecision(td) = &mut e {
                    td.decided_at = at(3700);
                }
                leaf_bytes(e, k, *id, &t)
            }
        };
        leaves.push(bytes);
    }
    leaves
}

/// How the leaves are checked.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// As one chunk.
    Whole,
    /// One leaf at a time, into one batch, with nothing saved in between.
    OneAtATime,
    /// As the audit does: in chunks of this many leaves, each chunk's entries checked
    /// while the two before it are not saved yet (their signatures are being checked
    /// or they are being saved), so their purchases are handed over as `unsaved`.
    Pipelined(usize),
}

fn check(log: &SignerKey, leaves: &[Vec<u8>], mode: Mode) -> (IndexBatch, AuditPoint) {
    check_at(log, leaves, mode, OffsetDateTime::now_utc())
}

/// [`check`] by a monitor whose clock shows `now`.
fn check_at(
    log: &SignerKey,
    leaves: &[Vec<u8>],
    mode: Mode,
    now: OffsetDateTime,
) -> (IndexBatch, AuditPoint) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(dir.path()).expect("state dir");
    let policy = Policy::default();
    let log_key = log.verifier();
    let checker = |unsaved: &'static [(u64, Hash, String)]| Checker {
        policy: &policy,
        origin: log.name(),
        log_key: &log_key,
        state: &state,
        unsaved,
        now,
    };
    let rows: Vec<(u64, &[u8], Hash)> = leaves
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64, b.as_slice(), leaf_hash(b)))
        .collect();
    let mut point = AuditPoint::empty();
    let mut out = IndexBatch::default();
    let p = &mut point;
    match mode {
        Mode::Whole => checker(&[])
            .check_chunk(&mut p.companies, &mut p.volume, &rows, &mut out)
            .expect("check"),
        Mode::OneAtATime => {
            for r in &rows {
                checker(&[])
                    .check_chunk(
                        &mut p.companies,
                        &mut p.volume,
                        std::slice::from_ref(r),
                        &mut out,
                    )
                    .expect("check");
            }
        }
        Mode::Pipelined(size) => {
            // Chunks checked but not saved, oldest first: at most two, as in the
            // audit (the entry checks of chunk k run alongside the signature checks
            // of k−1 and the save of k−2).
            let mut waiting: std::collections::VecDeque<(IndexBatch, Unverified)> =
                Default::default();
            let checker = checker(&[]);
            for rows in rows.chunks(size) {
                let unsaved: Vec<_> = waiting
                    .iter()
                    .flat_map(|(b, _)| b.purchases.iter().cloned())
                    .collect();
                let mut this = IndexBatch::default();
                let unverified = Checker {
                    unsaved: &unsaved,
                    ..checker
                }
                .check_entries(&mut p.companies, &mut p.volume, rows, &mut this)
                .expect("check");
                waiting.push_back((this, unverified));
                if waiting.len() > 2
                    && let Some((mut b, u)) = waiting.pop_front()
                {
                    checker.verify_signatures(u, &mut b);
                    state.write_index(&b).expect("save");
                    append(&mut out, b);
                }
            }
            for (mut b, u) in waiting {
                checker.verify_signatures(u, &mut b);
                append(&mut out, b);
            }
        }
    }
    (out, point)
}

fn append(to: &mut IndexBatch, from: IndexBatch) {
    to.purchases.extend(from.purchases);
    to.entries.extend(from.entries);
    to.findings.extend(from.findings);
}

#[test]
fn a_chunk_checked_on_all_cores_equals_one_entry_at_a_time() {
    let log = SignerKey::from_seed("log.example/chunks", samples::signing_key("log").to_bytes())
        .expect("log key");
    let leaves = chunk(&log);
    let (whole, p_whole) = check(&log, &leaves, Mode::Whole);

    // The chunk exercises every outcome, so the comparison means something.
    let kinds: std::collections::BTreeSet<String> =
        whole.findings.iter().map(|f| f.kind.to_string()).collect();
    for k in [
        "non_canonical_entry",
        "invalid_entry",
        "unregistered_key",
        "missing_purchase",
        "future_time",
        "sensitive_purchase",
    ] {
        assert!(kinds.contains(k), "no {k} finding in {kinds:?}");
    }
    assert!(whole.purchases.len() >= 20, "{}", whole.purchases.len());
    assert!(whole.entries.len() >= 250, "{}", whole.entries.len());

    // Findings carry the time they were made; the runs are seconds apart.
    let undated = |fs: &[candor_monitor::findings::Finding]| -> Vec<_> {
        fs.iter()
            .cloned()
            .map(|mut f| {
                f.detected_at.clear();
                f
            })
            .collect()
    };
    // A decision cites the latest purchase, 1 to 4 leaves before it. In chunks of 1,
    // 2 and 3 that purchase is in the same chunk, in one of the two before it (not
    // saved yet: `unsaved`) or in an older one (the index).
    for mode in [
        Mode::OneAtATime,
        Mode::Pipelined(1),
        Mode::Pipelined(2),
        Mode::Pipelined(3),
    ] {
        let (other, p_other) = check(&log, &leaves, mode);
        let name = format!("{mode:?}");
        assert_eq!(
            whole.findings.len(),
            other.findings.len(),
            "{name}: number of findings"
        );
        assert_eq!(undated(&whole.findings), undated(&other.findings), "{name}");
        assert_eq!(whole.entries, other.entries, "{name}");
        assert_eq!(whole.purchases, other.purchases, "{name}");
        assert_eq!(
            serde_json::to_value(&p_whole).expect("json"),
            serde_json::to_value(&p_other).expect("json"),
            "{name}"
        );
    }
}

/// The time checks (spec/monitor.md §6.2 step 4) at their edges, by a monitor whose
/// clock is a year ahead: each limit is inclusive, one second past it is a finding.
#[test]
fn time_limits_are_inclusive_on_any_clock() {
    use time::Duration;
    let log = SignerKey::from_seed("log.example/times", samples::signing_key("log").to_bytes())
        .expect("log key");
    let now = samples::sample_now() + Duration::days(366);
    let (logged, policy) = (now - Duration::hours(1), Policy::default());
    let (future, backdate) = (
        Duration::seconds(policy.time.max_future_secs),
        Duration::days(policy.time.max_backdate_days),
    );
    let t = entry::format_time;
    let company = "a.example";
    let key = samples::signing_key(company);
    let id = entry::ed25519_key_id(company, &key.verifying_key());
    let registration = samples::company_key(company, &key.verifying_key(), KeyAction::Register);
    let mut leaves = vec![leaf_bytes(
        samples::dated(registration, &t(logged)),
        log.signing_key(),
        log.key_id(),
        &t(logged),
    )];
    // (the entry's own time, logged_at, the finding expected)
    let one = Duration::seconds(1);
    let cases = [
        (logged - backdate, logged, None),
        (logged - backdate - one, logged, Some("backdated")),
        (logged + future, logged, None),
        (logged + future + one, logged, Some("future_time")),
        (now, now + future, None),
        (now, now + future + one, Some("future_time")),
    ];
    for (n, (own, at, _)) in cases.iter().enumerate() {
        let e = samples::dated(
            samples::load_targeting_decision(company, n as u64),
            &t(*own),
        );
        leaves.push(leaf_bytes(e, &key, id, &t(*at)));
    }
    let (out, _) = check_at(&log, &leaves, Mode::Whole, now);
    let mut got: Vec<(u64, String)> = out
        .findings
        .iter()
        .map(|f| (f.indexes[0], f.kind.to_string()))
        .collect();
    got.sort();
    let want: Vec<(u64, String)> = cases
        .iter()
        .enumerate()
        .filter_map(|(n, (_, _, k))| k.map(|k| (n as u64 + 1, k.to_owned())))
        .collect();
    assert_eq!(got, want);
    // The same leaves on today's clock: entries logged a year ahead are in its future.
    let (today, _) = check_at(&log, &leaves, Mode::Whole, OffsetDateTime::now_utc());
    assert!(today.findings.len() > want.len());
}
