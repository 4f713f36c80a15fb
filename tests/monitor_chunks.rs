//! The monitor's entry checks give the same result whether a chunk is checked at
//! once (its per-entry work split over all cores) or one entry at a time (all on
//! one thread): the same findings in the same order, the same index rows, the same
//! key registry and volume counts.

use candor::entry::{self, DataPurchase, Entry, KeyAction, Leaf, SignedEntry, samples};
use candor::hash::{Hash, leaf_hash, sha256};
use candor::monitor::candor_checks::Checker;
use candor::monitor::policy::Policy;
use candor::monitor::state::{AuditPoint, IndexBatch, StateDir};
use candor::note::SignerKey;
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

fn check(log: &SignerKey, leaves: &[Vec<u8>], one_at_a_time: bool) -> (IndexBatch, AuditPoint) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::open(dir.path()).expect("state dir");
    let policy = Policy::default();
    let log_key = log.verifier();
    let checker = Checker {
        policy: &policy,
        origin: log.name(),
        log_key: &log_key,
        state: &state,
        now: OffsetDateTime::now_utc(),
    };
    let rows: Vec<(u64, &[u8], Hash)> = leaves
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64, b.as_slice(), leaf_hash(b)))
        .collect();
    let mut point = AuditPoint::empty();
    let mut out = IndexBatch::default();
    if one_at_a_time {
        for r in &rows {
            checker
                .check_chunk(&mut point, std::slice::from_ref(r), &mut out)
                .expect("check");
        }
    } else {
        checker
            .check_chunk(&mut point, &rows, &mut out)
            .expect("check");
    }
    (out, point)
}

#[test]
fn a_chunk_checked_on_all_cores_equals_one_entry_at_a_time() {
    let log = SignerKey::from_seed("log.example/chunks", samples::signing_key("log").to_bytes())
        .expect("log key");
    let leaves = chunk(&log);
    let (whole, p_whole) = check(&log, &leaves, false);
    let (single, p_single) = check(&log, &leaves, true);

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

    // Findings carry the time they were made; the two runs are seconds apart.
    let undated = |fs: &[candor::monitor::findings::Finding]| -> Vec<_> {
        fs.iter()
            .cloned()
            .map(|mut f| {
                f.detected_at.clear();
                f
            })
            .collect()
    };
    assert_eq!(undated(&whole.findings), undated(&single.findings));
    assert_eq!(whole.entries, single.entries);
    assert_eq!(whole.purchases, single.purchases);
    assert_eq!(
        serde_json::to_value(&p_whole).expect("json"),
        serde_json::to_value(&p_single).expect("json")
    );
}
