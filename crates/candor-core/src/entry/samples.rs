//! Sample data for tests, documentation and the load generator.
//!
//! Every builder returns a realistic entry that passes [`Entry::validate`]. The
//! deterministic keys and salts here are derived from public labels: they are
//! sample data, never to be used for anything real.

use super::*;
use crate::subject::{Opening, Salt, SubjectId};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The clock's time when the samples were first used in this process, whole
/// seconds: every sample is dated relative to it, so that samples are equal within
/// a run and plausible on any day (no entry a monitor would call back-dated or from
/// the future).
static SAMPLE_NOW: LazyLock<OffsetDateTime> = LazyLock::new(|| {
    use crate::clock::Clock;
    let now = crate::clock::SystemClock.now();
    now.replace_nanosecond(0).unwrap_or(now)
});

/// The time the sample decisions are dated: when this process first used a sample.
pub fn sample_now() -> OffsetDateTime {
    *SAMPLE_NOW
}

/// [`sample_now`] moved by `d`, as an entry time.
fn sample_time(d: time::Duration) -> String {
    format_time(sample_now() + d)
}

/// A decision's time: the sample time itself.
pub fn decision_time() -> String {
    sample_time(time::Duration::ZERO)
}

/// `entry` with its own time (`decided_at`, `purchased_at` or `at`) set to `t`.
pub fn dated(mut entry: Entry, t: &str) -> Entry {
    match &mut entry {
        Entry::TargetingDecision(td) => td.decided_at = t.to_owned(),
        Entry::DataPurchase(dp) => dp.purchased_at = t.to_owned(),
        Entry::CompanyKey(ck) => ck.at = t.to_owned(),
    }
    entry
}

/// A deterministic Ed25519 signing key derived from `label` (SHA-256 of the label as
/// seed). Sample data only.
pub fn signing_key(label: &str) -> SigningKey {
    SigningKey::from_bytes(&sha256(format!("candor-sample-key/{label}").as_bytes()).0)
}

/// A deterministic subject opening for `email` (salt derived from the address and
/// `n`). Sample data only: real openings use [`Opening::generate`].
pub fn opening(email: &str, n: u64) -> Opening {
    let id = match SubjectId::email(email) {
        Ok(id) => id,
        // Fall back to a fixed valid address for nonsense input; samples never fail.
        Err(_) => SubjectId::Email("someone@example.com".into()),
    };
    let salt = Salt(sha256(format!("candor-sample-salt/{id}/{n}").as_bytes()).0);
    Opening { id, salt }
}

/// An e-mail targeting decision based on the company's own customer data.
pub fn targeting_decision(company: &str, subject: Hash) -> Entry {
    Entry::TargetingDecision(TargetingDecision {
        company: company.to_string(),
        decided_at: decision_time(),
        channel: Channel::Email,
        campaign: Campaign {
            id: "2026-winter-boots".into(),
            name: "Winter boots sale".into(),
            purpose: "Announce the winter boots sale to recent customers".into(),
        },
        reason: "You bought hiking boots from us in the last 12 months and we deliver to your \
                 area, where it usually snows in winter."
            .into(),
        criteria: vec![
            Criterion {
                criterion_type: CriterionType::CustomerList,
                rule: "Bought footwear in the last 12 months".into(),
                effect: Effect::Include,
            },
            Criterion {
                criterion_type: CriterionType::Geo,
                rule: "Delivery address in NL, BE or DE".into(),
                effect: Effect::Include,
            },
            Criterion {
                criterion_type: CriterionType::Behavioral,
                rule: "Unsubscribed from promotional e-mail".into(),
                effect: Effect::Exclude,
            },
        ],
        data_sources: vec![DataSource {
            source_type: SourceType::FirstParty,
            description: format!("Order history of the {company} web shop"),
            purchase: None,
        }],
        legal_basis: LegalBasis::LegitimateInterests,
        consent_ref: None,
        opt_out: format!("https://{company}/privacy/opt-out"),
        subject,
    })
}

/// A postal-mail targeting decision that used a purchased list, pointing at the
/// `data_purchase` entry at `purchase_index` with leaf hash `purchase_leaf_hash`.
pub fn targeting_decision_from_purchase(
    company: &str,
    subject: Hash,
    purchase_index: u64,
    purchase_leaf_hash: Hash,
) -> Entry {
    Entry::TargetingDecision(TargetingDecision {
        company: company.to_string(),
        decided_at: decision_time(),
        channel: Channel::Postal,
        campaign: Campaign {
            id: "2026-q4-catalogue".into(),
            name: "Winter catalogue".into(),
            purpose: "Send the printed winter catalogue to new prospects".into(),
        },
        reason: "A list we bought says you are interested in hiking and live in Utrecht.".into(),
        criteria: vec![
            Criterion {
                criterion_type: CriterionType::PurchasedList,
                rule: "On the outdoor-interest list bought from listco.example".into(),
                effect: Effect::Include,
            },
            Criterion {
                criterion_type: CriterionType::Interests,
                rule: "Interest: hiking".into(),
                effect: Effect::Include,
            },
            Criterion {
                criterion_type: CriterionType::CustomerList,
                rule: "Already a customer".into(),
                effect: Effect::Exclude,
            },
        ],
        data_sources: vec![
            DataSource {
                source_type: SourceType::Purchase,
                description: "Outdoor-interest mailing list from listco.example".into(),
                purchase: Some(PurchaseRef {
                    index: purchase_index,
                    leaf_hash: purchase_leaf_hash,
                }),
            },
            DataSource {
                source_type: SourceType::FirstParty,
                description: "Our customer list, used only to exclude customers".into(),
                purchase: None,
            },
        ],
        legal_basis: LegalBasis::Consent,
        consent_ref: Some("listco.example consent record LC-2026-0042-77812".into()),
        opt_out: format!("mailto:privacy@{company}?subject=opt-out"),
        subject,
    })
}

/// A data purchase by `company` of a consented interest list from `listco.example`.
pub fn data_purchase(company: &str) -> Entry {
    let mut registry_ids = BTreeMap::new();
    registry_ids.insert("ca_cppa".to_string(), "DBR-2024-000123".to_string());
    registry_ids.insert("vt".to_string(), "DB-0456".to_string());
    Entry::DataPurchase(DataPurchase {
        company: company.to_string(),
        // A week before the decisions that cite it.
        purchased_at: sample_time(-time::Duration::days(7)),
        seller: Party { name: "ListCo Data B.V.".into(), domain: "listco.example".into(), registry_ids: Some(registry_ids) },
        categories: vec![Category::Contact, Category::Demographic, Category::Interests, Category::Location],
        sensitive: vec![],
        records: 250_000,
        collection_method: CollectionMethod::Declared,
        legal_basis: LegalBasis::Consent,
        consent_evidence: "Double opt-in on listco.example/signup, consent text v3 of 2026-01-15 \
                           naming outdoor retailers; per-record consent IDs in annex B of the contract"
            .into(),
        purposes: vec![Purpose::DirectMarketing, Purpose::AdTargeting],
        retention_days: 365,
        contract_hash: Some(sha256(b"sample contract ListCo / buyer, 2026-10-01")),
        upstream: Some(vec![Upstream { name: "Survey Panel Co".into(), domain: "surveypanel.example".into() }]),
    })
}

/// A data purchase that includes Art. 9 health data (so `sensitive` is non-empty).
pub fn sensitive_data_purchase(company: &str) -> Entry {
    Entry::DataPurchase(DataPurchase {
        company: company.to_string(),
        purchased_at: sample_time(-time::Duration::days(8)),
        seller: Party {
            name: "Wellness Panels Ltd".into(),
            domain: "wellnesspanels.example".into(),
            registry_ids: None,
        },
        categories: vec![Category::Contact, Category::Health, Category::Minors],
        sensitive: vec![SpecialCategory::Health],
        records: 1_200,
        collection_method: CollectionMethod::Inferred,
        legal_basis: LegalBasis::Consent,
        consent_evidence: "Explicit consent (GDPR Art. 9(2)(a)) in the panel app, record IDs WP-*"
            .into(),
        purposes: vec![Purpose::Profiling],
        retention_days: 90,
        contract_hash: None,
        upstream: None,
    })
}

/// The log operator's `company_key` entry registering or revoking `key` for `company`.
pub fn company_key(company: &str, key: &VerifyingKey, action: KeyAction) -> Entry {
    // A day before the sample decisions.
    Entry::CompanyKey(CompanyKey::new(
        company,
        action,
        key,
        &sample_time(-time::Duration::days(1)),
    ))
}

/// The `n`-th entry of a deterministic stream of distinct targeting decisions for
/// load generation: channel, campaign, time and subject vary with `n`.
pub fn load_targeting_decision(company: &str, n: u64) -> Entry {
    let subject = opening(&format!("user{n}@example.com"), n).commitment();
    let mut entry = targeting_decision(company, subject);
    if let Entry::TargetingDecision(td) = &mut entry {
        td.channel = Channel::ALL[(n % Channel::ALL.len() as u64) as usize];
        td.campaign.id = format!("load-{}", n % 97);
        // Spread over the 20 days before the sample time, inside the monitor's
        // 30-day back-dating limit.
        td.decided_at = sample_time(-time::Duration::seconds((n % 1_728_000) as i64));
    }
    entry
}
