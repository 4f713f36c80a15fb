//! Policy checks: what an auditor wants flagged in what companies disclose
//! (spec/monitor.md §7). Configured by a TOML file; every field has a default, so
//! an empty file (or no file) is the default policy.
//!
//! The content checks read the entry's canonical JSON object (the `entry` member of
//! the leaf), so they depend only on the field names of spec/entries.md.

use super::findings::{Finding, Kind, Severity};
use candor_core::entry::json::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Errors reading a policy file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("policy file {path} is not valid: {message}")]
    Parse { path: String, message: String },
}

/// One on/off check with its severity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: Severity,
}

fn yes() -> bool {
    true
}

macro_rules! toggle_default {
    ($name:ident, $sev:expr) => {
        fn $name() -> Toggle {
            Toggle {
                enabled: true,
                severity: $sev,
            }
        }
    };
}
toggle_default!(default_no_data_source, Severity::Medium);
toggle_default!(default_foreign_purchase, Severity::High);
toggle_default!(default_key_rotation, Severity::Info);

/// Decisions without a legal basis that can carry marketing: none stated, consent
/// claimed with no consent record, or a basis that cannot apply to marketing
/// (EDPB Guidelines 2/2019: marketing is not "necessary for a contract"; legal
/// obligation, vital interests and public task do not cover it either).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegalBasisCheck {
    pub enabled: bool,
    pub severity: Severity,
    /// Legal bases treated as no basis for a targeting decision.
    pub insufficient_bases: Vec<String>,
}

impl Default for LegalBasisCheck {
    fn default() -> Self {
        LegalBasisCheck {
            enabled: true,
            severity: Severity::High,
            insufficient_bases: vec![
                "contract".into(),
                "legal_obligation".into(),
                "vital_interests".into(),
                "public_task".into(),
            ],
        }
    }
}

/// Plausibility of entry times (Candor check, thresholds set here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeChecks {
    /// An entry's own time (decided_at, purchased_at) may lie at most this many
    /// seconds after the log's logged_at (clock skew allowance).
    pub max_future_secs: i64,
    pub future_severity: Severity,
    /// Entries logged more than this many days after their own time are flagged.
    pub max_backdate_days: i64,
    pub backdate_enabled: bool,
    pub backdate_severity: Severity,
}

impl Default for TimeChecks {
    fn default() -> Self {
        TimeChecks {
            max_future_secs: 600,
            future_severity: Severity::High,
            max_backdate_days: 30,
            backdate_enabled: true,
            backdate_severity: Severity::Medium,
        }
    }
}

/// Profiling on legitimate interests (IAB TCF v2.2 allows profiling purposes 3–6
/// only with consent; GDPR Art. 21/22 and EDPB guidance point the same way).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilingCheck {
    pub enabled: bool,
    pub severity: Severity,
    /// Decision criteria types that amount to profiling.
    pub criteria_types: Vec<String>,
    /// Case-insensitive substrings that mark a purpose (campaign purpose, purchase
    /// purposes) as profiling.
    pub purpose_keywords: Vec<String>,
}

impl Default for ProfilingCheck {
    fn default() -> Self {
        ProfilingCheck {
            enabled: true,
            severity: Severity::High,
            criteria_types: vec!["interests".into(), "behavioral".into(), "lookalike".into()],
            purpose_keywords: vec!["profil".into(), "personalis".into(), "personaliz".into()],
        }
    }
}

/// Purchases of special-category data (GDPR Art. 9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveCheck {
    pub enabled: bool,
    pub severity: Severity,
    /// Data categories treated as sensitive even when the `sensitive` flags are empty.
    pub categories: Vec<String>,
}

impl Default for SensitiveCheck {
    fn default() -> Self {
        SensitiveCheck {
            enabled: true,
            severity: Severity::Medium,
            categories: vec![
                "health".into(),
                "biometric".into(),
                "genetic".into(),
                "ethnicity".into(),
                "political".into(),
                "religious".into(),
                "union_membership".into(),
                "sexual_orientation".into(),
                "minors".into(),
            ],
        }
    }
}

/// Sudden volume jumps: a company's entries on one day (by logged_at, UTC) exceed
/// `factor` × its average over the previous `window_days` days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeCheck {
    pub enabled: bool,
    pub severity: Severity,
    pub factor: f64,
    pub window_days: u32,
    /// Days of history (with at least one entry) needed before the check applies.
    pub min_history_days: u32,
    /// A day must have at least this many entries to be called a jump.
    pub min_count: u64,
}

impl Default for VolumeCheck {
    fn default() -> Self {
        VolumeCheck {
            enabled: true,
            severity: Severity::Medium,
            factor: 10.0,
            window_days: 7,
            min_history_days: 3,
            min_count: 100,
        }
    }
}

/// The whole policy (the TOML file's top level).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Findings at or above this severity make `candor monitor` exit with code 1.
    #[serde(default = "default_fail")]
    pub fail_severity: Severity,
    #[serde(default)]
    pub time: TimeChecks,
    #[serde(default)]
    pub no_legal_basis: LegalBasisCheck,
    #[serde(default = "default_no_data_source")]
    pub no_data_source: Toggle,
    #[serde(default)]
    pub profiling_on_legitimate_interests: ProfilingCheck,
    #[serde(default)]
    pub sensitive_purchase: SensitiveCheck,
    #[serde(default = "default_foreign_purchase")]
    pub foreign_purchase: Toggle,
    #[serde(default = "default_key_rotation")]
    pub key_rotation: Toggle,
    #[serde(default)]
    pub volume_jump: VolumeCheck,
}

fn default_fail() -> Severity {
    Severity::Info
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fail_severity: default_fail(),
            time: TimeChecks::default(),
            no_legal_basis: LegalBasisCheck::default(),
            no_data_source: default_no_data_source(),
            profiling_on_legitimate_interests: ProfilingCheck::default(),
            sensitive_purchase: SensitiveCheck::default(),
            foreign_purchase: default_foreign_purchase(),
            key_rotation: default_key_rotation(),
            volume_jump: VolumeCheck::default(),
        }
    }
}

impl Policy {
    /// Parses policy TOML text.
    pub fn from_toml(text: &str, path: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if !(p.volume_jump.factor.is_finite() && p.volume_jump.factor > 0.0) {
            return Err(PolicyError::Parse {
                path: path.to_owned(),
                message: "volume_jump.factor must be a positive number".into(),
            });
        }
        if p.time.max_future_secs < 0 || p.time.max_backdate_days < 0 {
            return Err(PolicyError::Parse {
                path: path.to_owned(),
                message: "time thresholds must not be negative".into(),
            });
        }
        Ok(p)
    }

    /// Reads a policy file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Policy, PolicyError> {
        let Some(path) = path else {
            return Ok(Policy::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        Policy::from_toml(&text, &shown)
    }

    /// The default policy as TOML (documentation and `--print-policy`).
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Policy::default()).unwrap_or_default()
    }
}

/// Where an entry sits, for the findings the content checks produce.
pub struct EntryContext<'a> {
    pub origin: &'a str,
    pub index: u64,
    pub logged_at: &'a str,
}

fn str_field<'a>(v: &'a Json, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Json::as_str)
}

fn is_blank(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => true,
        Some(Json::Str(s)) => s.trim().is_empty() || s == "none",
        Some(Json::Array(a)) => a.is_empty(),
        Some(Json::Object(o)) => o.is_empty(),
        _ => false,
    }
}

fn finding(
    ctx: &EntryContext<'_>,
    company: &str,
    kind: Kind,
    sev: Severity,
    msg: String,
) -> Finding {
    Finding::new(kind, sev, ctx.origin, msg)
        .with_index(ctx.index)
        .with_company(company)
        .with_day_of(ctx.logged_at)
}

impl Policy {
    /// The content checks on one entry (its JSON object): no legal basis, no data
    /// source, profiling on legitimate interests, sensitive purchases.
    pub fn check_content(&self, entry: &Json, ctx: &EntryContext<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        let company = str_field(entry, "company").unwrap_or("");
        let kind = str_field(entry, "kind").unwrap_or("");
        let legal_basis = str_field(entry, "legal_basis").unwrap_or("");
        match kind {
            "targeting_decision" => {
                // "No legal basis": none stated, or consent claimed with no
                // reference to the consent record (nothing to show for it).
                let basis_missing = is_blank(entry.get("legal_basis"));
                let consent_unbacked =
                    legal_basis == "consent" && is_blank(entry.get("consent_ref"));
                let insufficient = self
                    .no_legal_basis
                    .insufficient_bases
                    .iter()
                    .any(|b| b == legal_basis);
                if self.no_legal_basis.enabled
                    && (basis_missing || consent_unbacked || insufficient)
                {
                    let what = if basis_missing {
                        "states no legal basis".to_owned()
                    } else if consent_unbacked {
                        "claims consent but cites no consent record (consent_ref)".to_owned()
                    } else {
                        format!("rests on \"{legal_basis}\", which is no legal basis for marketing")
                    };
                    out.push(finding(
                        ctx,
                        company,
                        Kind::NoLegalBasis,
                        self.no_legal_basis.severity,
                        format!(
                            "Entry {} by {company} records a targeting decision that {what}.",
                            ctx.index
                        ),
                    ));
                }
                // "No data source": none named, or purchased data used (a
                // purchased_list criterion) with no purchase among the sources.
                let sources = entry.get("data_sources").and_then(Json::as_array);
                let no_sources = is_blank(entry.get("data_sources"));
                let uses_purchased =
                    entry
                        .get("criteria")
                        .and_then(Json::as_array)
                        .is_some_and(|c| {
                            c.iter()
                                .any(|c| str_field(c, "type") == Some("purchased_list"))
                        });
                let cites_purchase = sources
                    .is_some_and(|s| s.iter().any(|s| str_field(s, "type") == Some("purchase")));
                if self.no_data_source.enabled
                    && (no_sources || (uses_purchased && !cites_purchase))
                {
                    let what = if no_sources {
                        "names no data source"
                    } else {
                        "targets a purchased list but names no data purchase as its source"
                    };
                    out.push(finding(
                        ctx,
                        company,
                        Kind::NoDataSource,
                        self.no_data_source.severity,
                        format!(
                            "Entry {} by {company} records a targeting decision that {what}.",
                            ctx.index
                        ),
                    ));
                }
                let p = &self.profiling_on_legitimate_interests;
                if p.enabled && legal_basis == "legitimate_interests" {
                    let mut why = Vec::new();
                    if let Some(criteria) = entry.get("criteria").and_then(Json::as_array) {
                        for c in criteria {
                            let t = str_field(c, "type").unwrap_or("");
                            let include = str_field(c, "effect").is_none_or(|e| e == "include");
                            if include
                                && p.criteria_types.iter().any(|x| x == t)
                                && !why.contains(&t.to_owned())
                            {
                                why.push(t.to_owned());
                            }
                        }
                    }
                    let purpose = entry
                        .get("campaign")
                        .and_then(|c| str_field(c, "purpose"))
                        .unwrap_or("");
                    if matches_keyword(purpose, &p.purpose_keywords) {
                        why.push(format!("purpose \"{purpose}\""));
                    }
                    if !why.is_empty() {
                        out.push(finding(
                            ctx,
                            company,
                            Kind::ProfilingOnLegitimateInterests,
                            p.severity,
                            format!(
                                "Entry {} by {company} targets people by profiling ({}) on the legal basis of legitimate interests.",
                                ctx.index,
                                why.join(", ")
                            ),
                        ));
                    }
                }
            }
            "data_purchase" => {
                let p = &self.profiling_on_legitimate_interests;
                if p.enabled && legal_basis == "legitimate_interests" {
                    let purposes: Vec<&str> = entry
                        .get("purposes")
                        .and_then(Json::as_array)
                        .map(|a| a.iter().filter_map(Json::as_str).collect())
                        .unwrap_or_default();
                    let hits: Vec<&str> = purposes
                        .into_iter()
                        .filter(|x| matches_keyword(x, &p.purpose_keywords))
                        .collect();
                    if !hits.is_empty() {
                        out.push(finding(
                            ctx,
                            company,
                            Kind::ProfilingOnLegitimateInterests,
                            p.severity,
                            format!(
                                "Entry {} by {company} buys data for profiling ({}) on the legal basis of legitimate interests.",
                                ctx.index,
                                hits.join(", ")
                            ),
                        ));
                    }
                }
                let s = &self.sensitive_purchase;
                if s.enabled {
                    let mut what = sensitive_flags(entry.get("sensitive"));
                    if let Some(cats) = entry.get("categories").and_then(Json::as_array) {
                        for c in cats.iter().filter_map(Json::as_str) {
                            if s.categories.iter().any(|x| x == c) && !what.iter().any(|w| w == c) {
                                what.push(c.to_owned());
                            }
                        }
                    }
                    if !what.is_empty() {
                        let seller = entry
                            .get("seller")
                            .and_then(|x| str_field(x, "name"))
                            .unwrap_or("an unnamed seller");
                        out.push(finding(
                            ctx,
                            company,
                            Kind::SensitivePurchase,
                            s.severity,
                            format!(
                                "Entry {} records {company} buying special-category data ({}) from {seller}.",
                                ctx.index,
                                what.join(", ")
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        out
    }
}

fn matches_keyword(text: &str, keywords: &[String]) -> bool {
    let t = text.to_lowercase();
    keywords
        .iter()
        .any(|k| !k.is_empty() && t.contains(&k.to_lowercase()))
}

/// The special categories a `sensitive` member declares: an array of names, an
/// object of name → true, or a plain `true`.
fn sensitive_flags(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::Bool(true)) => vec!["sensitive".into()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Json::Object(o)) => o
            .iter()
            .filter(|(_, v)| matches!(v, Json::Bool(true)))
            .map(|(k, _)| k.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Per-company daily counts for the volume check, kept in the monitor state.
/// Holds only the trailing window, so it stays small.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeTracker {
    /// company → (day number since 1970-01-01 → entries that day).
    pub days: BTreeMap<String, BTreeMap<i64, u64>>,
    /// company → the last day a jump was reported (one finding per company-day).
    pub reported: BTreeMap<String, i64>,
}

impl VolumeTracker {
    /// Counts one entry of `company` logged on `day`; returns a finding when this
    /// entry makes the day a jump under `check`.
    pub fn record(
        &mut self,
        check: &VolumeCheck,
        company: &str,
        day: i64,
        ctx: &EntryContext<'_>,
    ) -> Option<Finding> {
        let days = self.days.entry(company.to_owned()).or_default();
        let count = {
            let c = days.entry(day).or_insert(0);
            *c += 1;
            *c
        };
        // Drop days that left the window.
        let oldest = day - i64::from(check.window_days);
        days.retain(|d, _| *d >= oldest);
        if !check.enabled || count < check.min_count {
            return None;
        }
        if self.reported.get(company) == Some(&day) {
            return None;
        }
        let history: Vec<u64> = days
            .iter()
            .filter(|(d, _)| **d < day && **d >= oldest)
            .map(|(_, c)| *c)
            .collect();
        if history.len() < check.min_history_days as usize {
            return None;
        }
        // Average over the whole window (days without entries count as zero),
        // but never over more days than the company has existed in the window.
        let first = days.keys().next().copied().unwrap_or(day);
        let span = (day - first).clamp(1, i64::from(check.window_days.max(1)));
        let avg = history.iter().sum::<u64>() as f64 / span as f64;
        if (count as f64) > check.factor * avg {
            self.reported.insert(company.to_owned(), day);
            return Some(finding(
                ctx,
                company,
                Kind::VolumeJump,
                check.severity,
                format!(
                    "{company} logged {count} entries on one day (entry {} reached it), more than {} times its trailing average of {avg:.1} a day.",
                    ctx.index, check.factor
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> EntryContext<'static> {
        EntryContext {
            origin: "o",
            index: 7,
            logged_at: "2026-01-02T00:00:00Z",
        }
    }

    #[test]
    fn empty_file_is_default_and_roundtrips() {
        assert_eq!(Policy::from_toml("", "x").unwrap(), Policy::default());
        let t = Policy::default_toml();
        assert_eq!(Policy::from_toml(&t, "x").unwrap(), Policy::default());
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert!(Policy::from_toml("nope = 1", "x").is_err());
        assert!(Policy::from_toml("[volume_jump]\nfactor = -1.0", "x").is_err());
        let p =
            Policy::from_toml("[key_rotation]\nenabled = false\nseverity = \"low\"", "x").unwrap();
        assert!(!p.key_rotation.enabled);
    }

    #[test]
    fn profiling_fires_only_on_li() {
        let p = Policy::default();
        let mut e = json!({"kind":"targeting_decision","company":"a.example","legal_basis":"legitimate_interests",
            "criteria":[{"type":"interests","rule":"x","effect":"include"}],"data_sources":[{"type":"first_party"}],"consent_ref":"c1",
            "campaign":{"purpose":"newsletter"}});
        let f = p.check_content(&Json::from_value(&e), &ctx());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::ProfilingOnLegitimateInterests);
        e["legal_basis"] = json!("consent");
        assert!(p.check_content(&Json::from_value(&e), &ctx()).is_empty());
    }

    #[test]
    fn sensitive_forms() {
        assert_eq!(
            sensitive_flags(Some(&Json::from_value(&json!(["health"])))),
            vec!["health"]
        );
        assert_eq!(
            sensitive_flags(Some(&Json::from_value(
                &json!({"health": true, "religion": false})
            ))),
            vec!["health"]
        );
        assert!(sensitive_flags(Some(&Json::from_value(&json!([])))).is_empty());
    }

    #[test]
    fn volume_jump() {
        let check = VolumeCheck {
            min_count: 5,
            factor: 3.0,
            ..VolumeCheck::default()
        };
        let mut t = VolumeTracker::default();
        for day in 0..4 {
            for _ in 0..2 {
                assert!(t.record(&check, "a", day, &ctx()).is_none());
            }
        }
        let mut fired = 0;
        for _ in 0..10 {
            if t.record(&check, "a", 4, &ctx()).is_some() {
                fired += 1;
            }
        }
        assert_eq!(fired, 1);
        // Another company with steady volume stays quiet.
        for day in 0..6 {
            for _ in 0..6 {
                assert!(t.record(&check, "b", day, &ctx()).is_none());
            }
        }
    }
}
