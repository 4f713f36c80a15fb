//! The three v1 entry kinds, their vocabularies and limits (spec/entries.md §3–§5).

use super::EntryError;
use super::fields::{Field, Obj, check_opt_out, invalid, vocab};
use crate::hash::{Hash, sha256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

// ---- limits (UTF-8 bytes for strings, element counts for lists) ----

/// `campaign.id`.
pub const MAX_CAMPAIGN_ID: usize = 128;
/// `campaign.name`, `seller.name`, `upstream[].name`.
pub const MAX_NAME: usize = 200;
/// `campaign.purpose`, `criteria[].rule`, `data_sources[].description`.
pub const MAX_SHORT_TEXT: usize = 500;
/// `reason`, `consent_evidence`.
pub const MAX_LONG_TEXT: usize = 1000;
/// `consent_ref`.
pub const MAX_CONSENT_REF: usize = 256;
/// `criteria`: 1..=32 elements.
pub const MAX_CRITERIA: usize = 32;
/// `data_sources`: 1..=16 elements.
pub const MAX_DATA_SOURCES: usize = 16;
/// `upstream`: 1..=16 elements when present.
pub const MAX_UPSTREAM: usize = 16;
/// `seller.registry_ids`: 1..=16 members when present.
pub const MAX_REGISTRY_IDS: usize = 16;
/// Registry id names: 1..=32 bytes of `a-z`, `0-9`, `_`.
pub const MAX_REGISTRY_NAME: usize = 32;
/// Registry id values.
pub const MAX_REGISTRY_VALUE: usize = 128;
/// `retention_days` upper bound (about a century).
pub const MAX_RETENTION_DAYS: u64 = 36_500;
/// `verifier_key`.
pub const MAX_VERIFIER_KEY: usize = 512;

// ---- vocabularies ----

vocab! {
    /// How the person was contacted or reached.
    Channel {
        Email = "email", Sms = "sms", Phone = "phone", Postal = "postal",
        DisplayAd = "display_ad", SocialAd = "social_ad", Push = "push", Other = "other",
    }
}

vocab! {
    /// Kind of targeting parameter (DSA Art. 26(1)(d), Art. 39(2)(e); the groups of
    /// Google's Ads Transparency Center plus purchased lists and lookalikes).
    CriterionType {
        CustomerList = "customer_list", PurchasedList = "purchased_list",
        Demographic = "demographic", Geo = "geo", Interests = "interests",
        Behavioral = "behavioral", Contextual = "contextual", Lookalike = "lookalike",
    }
}

vocab! {
    /// Whether a criterion selected people in or out (DSA Art. 39(2)(e): "included
    /// and excluded").
    Effect { Include = "include", Exclude = "exclude" }
}

vocab! {
    /// Where the data used for a decision came from (GDPR Art. 14(2)(f)).
    SourceType { FirstParty = "first_party", Purchase = "purchase" }
}

vocab! {
    /// GDPR Art. 6(1)(a)–(f).
    LegalBasis {
        Consent = "consent", Contract = "contract", LegalObligation = "legal_obligation",
        VitalInterests = "vital_interests", PublicTask = "public_task",
        LegitimateInterests = "legitimate_interests",
    }
}

vocab! {
    /// Data categories of a purchase (GDPR Art. 14(1)(d); spec/entries.md §4.2).
    Category {
        Contact = "contact", Demographic = "demographic", Interests = "interests",
        Location = "location", PreciseLocation = "precise_location",
        PurchaseHistory = "purchase_history", Financial = "financial", Health = "health",
        Biometric = "biometric", Political = "political", Religious = "religious",
        SexualOrientation = "sexual_orientation", Ethnicity = "ethnicity",
        UnionMembership = "union_membership", Genetic = "genetic", Minors = "minors",
        DeviceIds = "device_ids", Browsing = "browsing", Other = "other",
    }
}

vocab! {
    /// GDPR Art. 9(1) special categories of personal data.
    SpecialCategory {
        Ethnicity = "ethnicity", Political = "political", Religious = "religious",
        UnionMembership = "union_membership", Genetic = "genetic", Biometric = "biometric",
        Health = "health", SexualOrientation = "sexual_orientation",
    }
}

vocab! {
    /// How the seller obtained the data (Kantara consent receipt "collectionMethod";
    /// the declared / observed / inferred taxonomy of data origin).
    CollectionMethod {
        Declared = "declared", Observed = "observed", Inferred = "inferred", Modeled = "modeled",
    }
}

vocab! {
    /// Purposes the buyer may use the data for (spec/entries.md §4.3; mapped to IAB
    /// TCF v2.2 purposes where one exists).
    Purpose {
        DirectMarketing = "direct_marketing", AdTargeting = "ad_targeting",
        Profiling = "profiling", ContentPersonalisation = "content_personalisation",
        Measurement = "measurement", AudienceResearch = "audience_research",
        ProductDevelopment = "product_development", IdentityResolution = "identity_resolution",
        FraudPrevention = "fraud_prevention", Resale = "resale",
    }
}

vocab! {
    /// What a `company_key` entry does.
    KeyAction { Register = "register", Revoke = "revoke" }
}

impl Category {
    /// The GDPR Art. 9(1) special category this data category is, if any.
    pub fn special(self) -> Option<SpecialCategory> {
        SpecialCategory::from_name(self.as_str())
    }
}

// ---- hex serialization of hashes ----

fn ser_hex<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_hex())
}

fn ser_opt_hex<S: Serializer>(h: &Option<Hash>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(h) => s.serialize_str(&h.to_hex()),
        None => s.serialize_none(),
    }
}

// ---- targeting_decision ----

/// Why a company contacted or showed an ad to one person (spec/entries.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetingDecision {
    pub company: String,
    pub decided_at: String,
    pub channel: Channel,
    pub campaign: Campaign,
    pub reason: String,
    pub criteria: Vec<Criterion>,
    pub data_sources: Vec<DataSource>,
    pub legal_basis: LegalBasis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_ref: Option<String>,
    pub opt_out: String,
    /// Subject commitment (crate::subject::commit), 64 hex on the wire.
    #[serde(serialize_with = "ser_hex")]
    pub subject: Hash,
}

/// The campaign a decision belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub purpose: String,
}

/// One targeting parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Criterion {
    #[serde(rename = "type")]
    pub criterion_type: CriterionType,
    pub rule: String,
    pub effect: Effect,
}

/// One source of the data used for the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataSource {
    #[serde(rename = "type")]
    pub source_type: SourceType,
    pub description: String,
    /// Required iff `source_type` is `purchase`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchase: Option<PurchaseRef>,
}

/// Points at the `data_purchase` entry on the same log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurchaseRef {
    /// Leaf index of the purchase entry.
    pub index: u64,
    /// RFC 9162 leaf hash (SHA-256(0x00 || leaf bytes)) of that entry's leaf.
    #[serde(serialize_with = "ser_hex")]
    pub leaf_hash: Hash,
}

pub(super) const TD_FIELDS: &[&str] = &[
    "kind",
    "company",
    "decided_at",
    "channel",
    "campaign",
    "reason",
    "criteria",
    "data_sources",
    "legal_basis",
    "consent_ref",
    "opt_out",
    "subject",
];

impl TargetingDecision {
    pub(super) fn parse(o: &Obj) -> Result<TargetingDecision, EntryError> {
        let company = o.req("company")?.dns_name()?;
        let decided_at = o.req("decided_at")?.time()?;
        let channel = o.req("channel")?.vocab()?;
        let c = o.req("campaign")?;
        let co = c.obj(&["id", "name", "purpose"])?;
        let campaign = Campaign {
            id: co.req("id")?.text(MAX_CAMPAIGN_ID)?,
            name: co.req("name")?.text(MAX_NAME)?,
            purpose: co.req("purpose")?.text(MAX_SHORT_TEXT)?,
        };
        let reason = o.req("reason")?.text(MAX_LONG_TEXT)?;
        let mut criteria = Vec::new();
        for f in o.req("criteria")?.array(1, MAX_CRITERIA)? {
            let co = f.obj(&["type", "rule", "effect"])?;
            criteria.push(Criterion {
                criterion_type: co.req("type")?.vocab()?,
                rule: co.req("rule")?.text(MAX_SHORT_TEXT)?,
                effect: co.req("effect")?.vocab()?,
            });
        }
        let mut data_sources = Vec::new();
        for f in o.req("data_sources")?.array(1, MAX_DATA_SOURCES)? {
            data_sources.push(parse_source(&f)?);
        }
        let legal_basis = o.req("legal_basis")?.vocab()?;
        let consent_ref = o
            .opt("consent_ref")
            .map(|f| f.text(MAX_CONSENT_REF))
            .transpose()?;
        if legal_basis == LegalBasis::Consent && consent_ref.is_none() {
            // GDPR Art. 7(1): the controller must be able to demonstrate consent.
            return Err(invalid(
                &o.path_of("consent_ref"),
                "is required when legal_basis is consent",
            ));
        }
        let of = o.req("opt_out")?;
        let opt_out = of.str()?.to_string();
        // The path is spelled out only to name a fault: checked again with it then.
        if check_opt_out("", &opt_out).is_err() {
            check_opt_out(&of.path(), &opt_out)?;
        }
        let subject = o.req("subject")?.hash_hex()?;
        Ok(TargetingDecision {
            company,
            decided_at,
            channel,
            campaign,
            reason,
            criteria,
            data_sources,
            legal_basis,
            consent_ref,
            opt_out,
            subject,
        })
    }
}

fn parse_source(f: &Field) -> Result<DataSource, EntryError> {
    let so = f.obj(&["type", "description", "purchase"])?;
    let source_type = so.req("type")?.vocab()?;
    let description = so.req("description")?.text(MAX_SHORT_TEXT)?;
    let purchase = match (source_type, so.opt("purchase")) {
        (SourceType::Purchase, None) => {
            return Err(invalid(
                &so.path_of("purchase"),
                "is required when type is purchase",
            ));
        }
        (SourceType::Purchase, Some(p)) => {
            let po = p.obj(&["index", "leaf_hash"])?;
            Some(PurchaseRef {
                index: po.req("index")?.u64()?,
                leaf_hash: po.req("leaf_hash")?.hash_hex()?,
            })
        }
        (SourceType::FirstParty, Some(p)) => {
            return Err(invalid(&p.path(), "only allowed when type is purchase"));
        }
        (SourceType::FirstParty, None) => None,
    };
    Ok(DataSource {
        source_type,
        description,
        purchase,
    })
}

// ---- data_purchase ----

/// A company's purchase of personal data (spec/entries.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataPurchase {
    /// The buyer.
    pub company: String,
    pub purchased_at: String,
    pub seller: Party,
    pub categories: Vec<Category>,
    /// Exactly the Art. 9 categories among `categories`, in any order.
    pub sensitive: Vec<SpecialCategory>,
    pub records: u64,
    pub collection_method: CollectionMethod,
    pub legal_basis: LegalBasis,
    pub consent_evidence: String,
    pub purposes: Vec<Purpose>,
    pub retention_days: u32,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_hex"
    )]
    pub contract_hash: Option<Hash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Vec<Upstream>>,
}

/// The seller: name, DNS domain and optional data-broker registry ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Party {
    pub name: String,
    pub domain: String,
    /// Registry name → id, e.g. `{"ca_cppa": "...", "vt": "..."}`; non-empty if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_ids: Option<BTreeMap<String, String>>,
}

/// An earlier party in the chain the data passed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub name: String,
    pub domain: String,
}

pub(super) const DP_FIELDS: &[&str] = &[
    "kind",
    "company",
    "purchased_at",
    "seller",
    "categories",
    "sensitive",
    "records",
    "collection_method",
    "legal_basis",
    "consent_evidence",
    "purposes",
    "retention_days",
    "contract_hash",
    "upstream",
];

impl DataPurchase {
    pub(super) fn parse(o: &Obj) -> Result<DataPurchase, EntryError> {
        let company = o.req("company")?.dns_name()?;
        let purchased_at = o.req("purchased_at")?.time()?;
        let sf = o.req("seller")?;
        let so = sf.obj(&["name", "domain", "registry_ids"])?;
        let seller = Party {
            name: so.req("name")?.text(MAX_NAME)?,
            domain: so.req("domain")?.dns_name()?,
            registry_ids: so
                .opt("registry_ids")
                .map(|f| parse_registry_ids(&f))
                .transpose()?,
        };
        let cf = o.req("categories")?;
        let categories: Vec<Category> = cf.vocab_set(1)?;
        let sf = o.req("sensitive")?;
        let sensitive: Vec<SpecialCategory> = sf.vocab_set(0)?;
        // Consistency rule (spec/entries.md §4.2): `sensitive` lists exactly the
        // Art. 9 categories present in `categories`.
        for c in &categories {
            if let Some(s) = c.special()
                && !sensitive.contains(&s)
            {
                return Err(invalid(
                    &sf.path(),
                    format!(
                        "must list {s:?} because categories contains it (GDPR Art. 9 special category)",
                        s = s.as_str()
                    ),
                ));
            }
        }
        for s in &sensitive {
            if !categories.iter().any(|c| c.special() == Some(*s)) {
                return Err(invalid(
                    &sf.path(),
                    format!("lists {:?} but categories does not contain it", s.as_str()),
                ));
            }
        }
        let records = o.req("records")?.u64_in(1, crate::jcs::MAX_SAFE_INTEGER)?;
        let collection_method = o.req("collection_method")?.vocab()?;
        let legal_basis = o.req("legal_basis")?.vocab()?;
        let consent_evidence = o.req("consent_evidence")?.text(MAX_LONG_TEXT)?;
        let purposes = o.req("purposes")?.vocab_set(1)?;
        // Bounded by MAX_RETENTION_DAYS, so the conversion cannot fail.
        let retention_days = o.req("retention_days")?.u64_in(1, MAX_RETENTION_DAYS)? as u32;
        let contract_hash = o.opt("contract_hash").map(|f| f.hash_hex()).transpose()?;
        let upstream = match o.opt("upstream") {
            None => None,
            Some(f) => {
                let mut v = Vec::new();
                for u in f.array(1, MAX_UPSTREAM)? {
                    let uo = u.obj(&["name", "domain"])?;
                    v.push(Upstream {
                        name: uo.req("name")?.text(MAX_NAME)?,
                        domain: uo.req("domain")?.dns_name()?,
                    });
                }
                Some(v)
            }
        };
        Ok(DataPurchase {
            company,
            purchased_at,
            seller,
            categories,
            sensitive,
            records,
            collection_method,
            legal_basis,
            consent_evidence,
            purposes,
            retention_days,
            contract_hash,
            upstream,
        })
    }
}

fn parse_registry_ids(f: &Field) -> Result<BTreeMap<String, String>, EntryError> {
    let mut map: Vec<_> =
        f.v.as_object()
            .ok_or_else(|| EntryError::WrongType {
                field: f.path(),
                expected: "an object",
                found: f.v.type_name(),
            })?
            .iter()
            .collect();
    // Checked in name order, so the first fault reported does not depend on layout.
    map.sort_by(|a, b| a.0.cmp(&b.0));
    if map.is_empty() || map.len() > MAX_REGISTRY_IDS {
        return Err(invalid(
            &f.path(),
            format!("must have 1..={MAX_REGISTRY_IDS} members (omit it when there are none)"),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let path = format!("{}.{k}", f.path());
        if k.is_empty()
            || k.len() > MAX_REGISTRY_NAME
            || !k
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        {
            return Err(invalid(
                &path,
                format!("registry name must be 1..={MAX_REGISTRY_NAME} of a-z, 0-9, _"),
            ));
        }
        let value = Field::at(v, &path).text(MAX_REGISTRY_VALUE)?;
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

// ---- company_key ----

/// Registers or revokes a company's signing key; signed by the log's key
/// (spec/entries.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompanyKey {
    pub company: String,
    pub action: KeyAction,
    /// C2SP signed-note verifier key `name+hexid+base64(0x01||pubkey)`, name == company.
    pub verifier_key: String,
    pub at: String,
}

pub(super) const CK_FIELDS: &[&str] = &["kind", "company", "action", "verifier_key", "at"];

impl CompanyKey {
    pub(super) fn parse(o: &Obj) -> Result<CompanyKey, EntryError> {
        let company = o.req("company")?.dns_name()?;
        let action = o.req("action")?.vocab()?;
        let vf = o.req("verifier_key")?;
        let verifier_key = vf.str()?.to_string();
        check_verifier_key(&vf.path(), &verifier_key, &company)?;
        let at = o.req("at")?.time()?;
        Ok(CompanyKey {
            company,
            action,
            verifier_key,
            at,
        })
    }

    /// A `company_key` entry for `key`, writing its signed-note verifier key.
    pub fn new(company: &str, action: KeyAction, key: &VerifyingKey, at: &str) -> CompanyKey {
        CompanyKey {
            company: company.to_string(),
            action,
            verifier_key: verifier_key_string(company, key),
            at: at.to_string(),
        }
    }

    /// The Ed25519 key and its signed-note key ID, from `verifier_key`.
    pub fn key(&self) -> Result<([u8; 4], VerifyingKey), EntryError> {
        check_verifier_key("verifier_key", &self.verifier_key, &self.company)
    }
}

/// C2SP signed-note key ID of an Ed25519 key: SHA-256(name || "\n" || 0x01 || key)[:4].
/// (The same computation as `note::key_id` with type 0x01; repeated here so entries
/// do not depend on the note module.)
pub fn ed25519_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut msg = Vec::with_capacity(name.len() + 34);
    msg.extend_from_slice(name.as_bytes());
    msg.push(b'\n');
    msg.push(0x01);
    msg.extend_from_slice(key.as_bytes());
    let h = sha256(&msg);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

/// The signed-note verifier key text `name+hexid+base64(0x01 || key)`.
pub fn verifier_key_string(name: &str, key: &VerifyingKey) -> String {
    let mut blob = vec![0x01];
    blob.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(ed25519_key_id(name, key)),
        STANDARD.encode(blob)
    )
}

/// Checks a signed-note Ed25519 verifier key (C2SP signed-note, "Verifier keys"):
/// `name+8hex+base64`, name == `company`, the base64 decodes to 0x01 || 32-byte key,
/// the key is a valid Ed25519 point and the key ID matches.
fn check_verifier_key(
    path: &str,
    s: &str,
    company: &str,
) -> Result<([u8; 4], VerifyingKey), EntryError> {
    let bad = |reason: String| invalid(path, reason);
    if s.len() > MAX_VERIFIER_KEY {
        return Err(bad(format!("longer than {MAX_VERIFIER_KEY} bytes")));
    }
    // The name cannot contain '+', but the base64 may: split at the first two only.
    let mut parts = s.splitn(3, '+');
    let (name, id, b64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(i), Some(b)) => (n, i, b),
        _ => {
            return Err(bad(
                "not a signed-note verifier key name+keyid+base64".into()
            ));
        }
    };
    if name != company {
        return Err(bad(format!(
            "key name {name:?} differs from company {company:?}"
        )));
    }
    if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad(format!("key ID {id:?} is not 8 lower-case hex digits")));
    }
    let blob = STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("key data is not base64: {e}")))?;
    if blob.len() != 33 || blob[0] != 0x01 {
        return Err(bad(
            "key data must be 33 bytes: 0x01 (Ed25519) then the 32-byte public key".into(),
        ));
    }
    let mut raw = [0u8; 32];
    raw.copy_from_slice(&blob[1..]);
    let key =
        VerifyingKey::from_bytes(&raw).map_err(|_| bad("not a valid Ed25519 public key".into()))?;
    let want = ed25519_key_id(name, &key);
    if hex::encode(want) != id {
        return Err(bad(format!(
            "key ID {id} does not match the key (want {})",
            hex::encode(want)
        )));
    }
    Ok((want, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::fields::check_dns_name;

    #[test]
    fn special_categories_are_exactly_art9() {
        let specials: Vec<&str> = Category::ALL
            .iter()
            .filter_map(|c| c.special())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(specials.len(), SpecialCategory::ALL.len());
        for s in SpecialCategory::ALL {
            assert!(Category::from_name(s.as_str()).is_some());
        }
    }

    #[test]
    fn dns_names() {
        for ok in ["acme.example", "a-b.c0.example", "x.y"] {
            check_dns_name("company", ok).unwrap();
        }
        for bad in [
            "acme",
            "Acme.example",
            "-a.example",
            "a-.example",
            "a..example",
            "1.2.3.4",
            "acme.example.",
            "ac me.example",
            "ácme.example",
            &format!("{}.example", "a".repeat(64)),
        ] {
            assert!(check_dns_name("company", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn opt_out_forms() {
        for ok in [
            "https://acme.example/opt-out",
            "https://acme.example:8443",
            "mailto:privacy@acme.example?subject=opt-out",
        ] {
            check_opt_out("opt_out", ok).unwrap();
        }
        for bad in [
            "http://acme.example",
            "https://",
            "https://u@acme.example/",
            "mailto:nobody",
            "https://acme.example/a b",
            "ftp://acme.example",
        ] {
            assert!(check_opt_out("opt_out", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verifier_key_round_trip_and_checks() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let vk = sk.verifying_key();
        let s = verifier_key_string("acme.example", &vk);
        let (id, key) = check_verifier_key("verifier_key", &s, "acme.example").unwrap();
        assert_eq!(key, vk);
        assert_eq!(id, ed25519_key_id("acme.example", &vk));
        assert!(check_verifier_key("k", &s, "other.example").is_err());
        let (head, tail) = s.split_at(s.len() - 4);
        let flipped = format!("{head}{}", if tail == "AAAA" { "BBBB" } else { "AAAA" });
        assert!(check_verifier_key("k", &flipped, "acme.example").is_err());
    }
}
