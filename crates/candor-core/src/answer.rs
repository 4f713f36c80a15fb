//! Plain-language rendering of a verification (`spec/cli.md` §verify, output).
//!
//! A person holding a receipt wants to know who contacted them, when, on which
//! channel, why, with which data, on what legal basis and how to stop it, and
//! then whether the log backs all of that up. [`Answer`] gathers those facts
//! from the verified entry (read as JSON, so that this renders whatever the
//! entry schema holds) and the checks; [`Answer::render_text`] writes them for
//! a person, and the same structure serialized is the `--json` output.

use serde::Serialize;
use serde_json::Value;

use crate::receipt::{Check, CheckName, CheckpointSummary};

/// The verdict, which also decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every check that applies passed (exit 0).
    Valid,
    /// A check failed (exit 1).
    Invalid,
    /// The receipt could not be checked: unreadable input, network failure (exit 2).
    CouldNotCheck,
}

/// A data purchase a targeting decision cites, as far as it was checked.
#[derive(Clone, Debug, Serialize)]
pub struct Purchase {
    pub index: u64,
    /// Hex leaf hash the decision cites.
    pub leaf_hash: String,
    /// `Some(true)` fetched and verified, `Some(false)` fetched and failed,
    /// `None` not fetched (offline).
    pub verified: Option<bool>,
    pub detail: String,
    /// The purchase entry, once fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Value>,
}

/// The facts a person asks about, in plain words.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Facts {
    pub headline: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_used: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_out: Option<String>,
}

/// Everything `candor verify` says about one receipt.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub status: Status,
    /// Why the receipt could not be checked, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The input line, in batch mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    pub facts: Facts,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub purchases: Vec<Purchase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_key: Option<String>,
}

impl Answer {
    /// The verdict from the checks (and a could-not-check problem, if any):
    /// a failed check is definitive even when something else could not be
    /// fetched.
    pub fn decide(checks: &[Check], problem: Option<&str>) -> Status {
        if checks.iter().any(|c| !c.passed) {
            Status::Invalid
        } else if problem.is_some() {
            Status::CouldNotCheck
        } else {
            let ran = |n| checks.iter().any(|c: &Check| c.name == n);
            if ran(CheckName::Inclusion) && ran(CheckName::CompanySignature) {
                Status::Valid
            } else {
                Status::CouldNotCheck
            }
        }
    }

    /// The first failed check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.passed)
    }

    /// The answer for a person.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let verdict = match self.status {
            Status::Valid => {
                "✓ This disclosure is genuine: it is on the public log and every check passed."
                    .to_string()
            }
            Status::Invalid => match self.first_failure() {
                Some(c) if c.name == CheckName::Subject => format!(
                    "✗ This disclosure does NOT check out: {}.",
                    c.detail.trim_end_matches('.')
                ),
                Some(c) => format!(
                    "✗ This disclosure does NOT check out: the {} check failed ({}).",
                    c.name.as_str(),
                    c.detail.trim_end_matches('.')
                ),
                None => "✗ This disclosure does NOT check out.".to_string(),
            },
            Status::CouldNotCheck => format!(
                "? This disclosure could not be checked: {}.",
                self.problem
                    .as_deref()
                    .unwrap_or("not every check could run")
                    .trim_end_matches('.')
            ),
        };
        s.push_str(&verdict);
        s.push_str("\n\n");
        let f = &self.facts;
        let unconfirmed = match self.first_failure() {
            Some(c) => c.name != CheckName::Subject,
            None => self.status != Status::Valid,
        };
        if unconfirmed && !f.headline.is_empty() {
            s.push_str(
                "The details below are only what the receipt claims; they are NOT confirmed.\n\n",
            );
        }
        if !f.headline.is_empty() {
            s.push_str(&f.headline);
            s.push_str("\n\n");
        }
        let mut row = |label: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("  {label:<13}{v}\n"));
            }
        };
        row("Who:", &f.who);
        row("When:", &f.when);
        row("Channel:", &f.channel);
        row("Campaign:", &f.campaign);
        row("Why you:", &f.why);
        let mut list = |label: &str, items: &[String]| {
            if !items.is_empty() {
                s.push_str(&format!("  {label}\n"));
                for i in items {
                    s.push_str(&format!("    • {i}\n"));
                }
            }
        };
        list("Criteria:", &f.criteria);
        list("Data used:", &f.data_used);
        let mut row = |label: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("  {label:<13}{v}\n"));
            }
        };
        row("Legal basis:", &f.legal_basis);
        row("Opt out:", &f.opt_out);
        if !self.checks.is_empty() {
            s.push_str("\nChecks:\n");
            for c in &self.checks {
                let mark = if c.passed { "✓" } else { "✗" };
                s.push_str(&format!(
                    "  {mark} {:<21}{} — {}\n",
                    c.name.as_str(),
                    c.name.describe(),
                    c.detail
                ));
            }
        }
        if let (Some(log), Some(index)) = (&self.log, self.index) {
            s.push_str(&format!("\nLog {log}, entry {index}.\n"));
        }
        s
    }

    /// One line for batch mode.
    pub fn render_line(&self) -> String {
        let what = match (self.line, self.index) {
            (Some(l), Some(i)) => format!("line {l} (entry {i})"),
            (Some(l), None) => format!("line {l}"),
            (None, Some(i)) => format!("entry {i}"),
            (None, None) => "receipt".to_string(),
        };
        match self.status {
            Status::Valid => format!("✓ {what}: valid"),
            Status::Invalid => match self.first_failure() {
                Some(c) => format!("✗ {what}: {} failed: {}", c.name.as_str(), c.detail),
                None => format!("✗ {what}: invalid"),
            },
            Status::CouldNotCheck => format!(
                "? {what}: could not check: {}",
                self.problem.as_deref().unwrap_or("not every check ran")
            ),
        }
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// `2026-11-29T05:31:40Z` → `29 November 2026 at 05:31 UTC`.
pub fn human_time(t: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    match time::OffsetDateTime::parse(t, &Rfc3339) {
        Ok(d) => format!(
            "{} {} {} at {:02}:{:02} UTC",
            d.day(),
            MONTHS[usize::from(u8::from(d.month())) - 1],
            d.year(),
            d.hour(),
            d.minute()
        ),
        Err(_) => t.to_string(),
    }
}

/// Plain words for a vocabulary value: `display_ad` → `display ad`.
fn words(s: &str) -> String {
    s.replace('_', " ")
}

/// GDPR Art. 6(1) legal bases in plain words.
pub fn legal_basis(s: &str) -> String {
    let (plain, point) = match s {
        "consent" => ("your consent", "a"),
        "contract" => ("a contract with you", "b"),
        "legal_obligation" => ("a legal obligation", "c"),
        "vital_interests" => ("vital interests", "d"),
        "public_task" => ("a task in the public interest", "e"),
        "legitimate_interests" => ("the company's legitimate interests", "f"),
        other => return words(other),
    };
    format!("{plain} (GDPR Art. 6(1)({point}))")
}

fn channel(s: &str) -> String {
    match s {
        "email" => "email".into(),
        "sms" => "text message (SMS)".into(),
        "phone" => "phone call".into(),
        "postal" => "post".into(),
        "display_ad" => "display advertisement".into(),
        "social_ad" => "social media advertisement".into(),
        "push" => "push notification".into(),
        other => words(other),
    }
}

/// The `(index, hex leaf hash)` a `purchase` data source cites.
pub fn purchase_ref(source: &Value) -> Option<(u64, String)> {
    let r = source.get("purchase").unwrap_or(source);
    Some((r.get("index")?.as_u64()?, text(r, "leaf_hash")?))
}

/// Builds the facts from a verified entry (as JSON) and what is known of the
/// purchases it cites.
pub fn facts(entry: &Value, logged_at: Option<&str>, purchases: &[Purchase]) -> Facts {
    let company = text(entry, "company").unwrap_or_else(|| "an unnamed company".into());
    let logged = logged_at.map(|t| format!("logged {}", human_time(t)));
    match entry.get("kind").and_then(Value::as_str) {
        Some("targeting_decision") => {
            let ch = text(entry, "channel").map(|c| channel(&c));
            let decided = text(entry, "decided_at");
            let headline = format!(
                "{company} contacted you{}, and disclosed on a public log why.",
                ch.as_deref()
                    .map(|c| format!(" by {c}"))
                    .unwrap_or_default(),
            );
            let when = match (&decided, &logged) {
                (Some(d), Some(l)) => Some(format!("decided {}, {l}", human_time(d))),
                (Some(d), None) => Some(format!("decided {}", human_time(d))),
                (None, l) => l.clone(),
            };
            let campaign = entry.get("campaign").map(|c| {
                let name = text(c, "name").unwrap_or_default();
                let mut s = name;
                if let Some(id) = text(c, "id") {
                    s.push_str(&format!(" ({id})"));
                }
                if let Some(p) = text(c, "purpose") {
                    s.push_str(&format!(" — {p}"));
                }
                s
            });
            let criteria = entry
                .get("criteria")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            let effect = match c.get("effect").and_then(Value::as_str) {
                                Some("exclude") => "excluded",
                                _ => "included",
                            };
                            format!(
                                "{effect} by {}: {}",
                                words(&text(c, "type").unwrap_or_default()),
                                text(c, "rule").unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let data_used = entry
                .get("data_sources")
                .and_then(Value::as_array)
                .map(|ds| ds.iter().map(|d| data_source(d, purchases)).collect())
                .unwrap_or_default();
            let legal = text(entry, "legal_basis").map(|b| {
                let mut s = legal_basis(&b);
                if let Some(r) = text(entry, "consent_ref") {
                    s.push_str(&format!(", consent record {r}"));
                }
                s
            });
            Facts {
                headline,
                who: Some(company),
                when,
                channel: ch,
                campaign,
                why: text(entry, "reason"),
                criteria,
                data_used,
                legal_basis: legal,
                opt_out: text(entry, "opt_out"),
            }
        }
        Some("data_purchase") => {
            let seller = entry.get("seller").map(seller_name).unwrap_or_default();
            let bought = text(entry, "purchased_at");
            Facts {
                headline: format!(
                    "{company} bought personal data from {seller}{}.",
                    bought
                        .as_deref()
                        .map(|t| format!(" on {}", human_time(t)))
                        .unwrap_or_default()
                ),
                who: Some(company),
                when: logged,
                data_used: vec![purchase_line(entry)],
                legal_basis: text(entry, "legal_basis").map(|b| legal_basis(&b)),
                ..Facts::default()
            }
        }
        Some("company_key") => Facts {
            headline: format!(
                "The log operator changed the keys of {company} ({}).",
                text(entry, "action").unwrap_or_else(|| "key change".into())
            ),
            who: Some(company),
            when: logged,
            ..Facts::default()
        },
        _ => Facts {
            headline: format!("An entry by {company}."),
            who: Some(company),
            when: logged,
            ..Facts::default()
        },
    }
}

fn seller_name(s: &Value) -> String {
    match (text(s, "name"), text(s, "domain")) {
        (Some(n), Some(d)) => format!("{n} ({d})"),
        (Some(n), None) => n,
        (None, Some(d)) => d,
        (None, None) => "an unnamed seller".into(),
    }
}

/// "DataCo (dataco.example): contact, interests; 50000 records, observed".
fn purchase_line(p: &Value) -> String {
    let mut s = p.get("seller").map(seller_name).unwrap_or_default();
    let cats: Vec<String> = p
        .get("categories")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).map(words).collect())
        .unwrap_or_default();
    if !cats.is_empty() {
        s.push_str(&format!(": {}", cats.join(", ")));
    }
    if let Some(n) = p.get("records").and_then(Value::as_u64) {
        s.push_str(&format!("; {n} records"));
    }
    if let Some(m) = text(p, "collection_method") {
        s.push_str(&format!(", {}", words(&m)));
    }
    s
}

fn data_source(d: &Value, purchases: &[Purchase]) -> String {
    let desc = text(d, "description").unwrap_or_default();
    match d.get("type").and_then(Value::as_str) {
        Some("purchase") => {
            let Some((index, _)) = purchase_ref(d) else {
                return format!("bought data: {desc} (no log entry cited)");
            };
            match purchases.iter().find(|p| p.index == index) {
                Some(Purchase {
                    verified: Some(true),
                    entry: Some(e),
                    ..
                }) => format!(
                    "bought from {} — {desc} (purchase verified on the log, entry {index})",
                    purchase_line(e)
                ),
                Some(Purchase {
                    verified: Some(false),
                    detail,
                    ..
                }) => format!("bought data: {desc} (entry {index} does NOT check out: {detail})"),
                _ => format!(
                    "bought data: {desc} (purchase logged as entry {index}; check with --online)"
                ),
            }
        }
        Some("first_party") => format!("the company's own data: {desc}"),
        Some(other) => format!("{}: {desc}", words(other)),
        None => desc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_bases_read_plainly() {
        assert_eq!(
            human_time("2026-11-29T05:31:40Z"),
            "29 November 2026 at 05:31 UTC"
        );
        assert_eq!(human_time("garbage"), "garbage");
        assert_eq!(
            legal_basis("legitimate_interests"),
            "the company's legitimate interests (GDPR Art. 6(1)(f))"
        );
        assert_eq!(legal_basis("consent"), "your consent (GDPR Art. 6(1)(a))");
    }

    #[test]
    fn decisions_read_plainly() {
        let e = serde_json::json!({
            "kind": "targeting_decision", "company": "acme.example",
            "decided_at": "2026-11-29T05:31:40Z", "channel": "sms",
            "campaign": {"id": "w26", "name": "Winter sale", "purpose": "marketing"},
            "reason": "You bought shoes.",
            "criteria": [{"type": "customer_list", "rule": "shoe buyers", "effect": "include"},
                         {"type": "geo", "rule": "outside NL", "effect": "exclude"}],
            "data_sources": [{"type": "first_party", "description": "orders"},
                             {"type": "purchase", "description": "interests",
                              "purchase": {"index": 3, "leaf_hash": "00"}}],
            "legal_basis": "consent", "opt_out": "https://acme.example/stop"
        });
        let p = Purchase {
            index: 3,
            leaf_hash: "00".into(),
            verified: Some(true),
            detail: String::new(),
            entry: Some(serde_json::json!({
                "seller": {"name": "DataCo", "domain": "dataco.example"},
                "categories": ["interests", "purchase_history"], "records": 10
            })),
        };
        let f = facts(&e, Some("2026-11-29T05:32:00Z"), &[p]);
        assert_eq!(
            f.headline,
            "acme.example contacted you by text message (SMS), and disclosed on a public log why."
        );
        assert_eq!(
            f.when.as_deref(),
            Some("decided 29 November 2026 at 05:31 UTC, logged 29 November 2026 at 05:32 UTC")
        );
        assert_eq!(f.criteria[1], "excluded by geo: outside NL");
        assert!(f.data_used[1].contains("DataCo (dataco.example): interests, purchase history"));
        assert!(f.data_used[1].contains("verified on the log, entry 3"));
        assert_eq!(
            f.legal_basis.as_deref(),
            Some("your consent (GDPR Art. 6(1)(a))")
        );
        assert_eq!(f.opt_out.as_deref(), Some("https://acme.example/stop"));
    }

    #[test]
    fn verdict_prefers_failure() {
        let ok = |n| Check {
            name: n,
            passed: true,
            detail: String::new(),
        };
        let base = vec![ok(CheckName::Inclusion), ok(CheckName::CompanySignature)];
        assert_eq!(Answer::decide(&base, None), Status::Valid);
        assert_eq!(
            Answer::decide(&base, Some("offline")),
            Status::CouldNotCheck
        );
        let mut bad = base.clone();
        bad.push(Check {
            name: CheckName::Subject,
            passed: false,
            detail: "no".into(),
        });
        assert_eq!(Answer::decide(&bad, Some("network")), Status::Invalid);
        assert_eq!(Answer::decide(&[], None), Status::CouldNotCheck);
    }
}
