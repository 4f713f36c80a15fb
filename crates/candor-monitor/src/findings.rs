//! Findings: what the monitor reports, one JSON object per line (spec/monitor.md §5).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How serious a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lower-case name used in JSON and in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity {s:?} (expected info, low, medium, high or critical)")
            })
    }
}

/// What kind of problem a finding reports. The JSON name is the snake_case form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    // --- The log as a whole (tlog-tiles / tlog-checkpoint).
    /// The served checkpoint is not a valid note signed by the log key.
    BadCheckpoint,
    /// A checkpoint signed by the log that does not satisfy the `--trust-policy`
    /// (too few valid witness cosignatures).
    WitnessQuorum,
    /// Two signed checkpoints for one origin that cannot both be true.
    SplitView,
    /// The log served a smaller checkpoint than one already verified and the
    /// monitor could not prove the two consistent.
    CheckpointRollback,
    /// A hash tile differs from the hashes recomputed from the verified entries.
    TileMismatch,
    /// An entry bundle's entries do not hash to the tiles and the signed root.
    BundleMismatch,
    /// A tile or bundle that was served partial earlier changed in its verified prefix.
    PartialChanged,
    /// A tile or bundle is malformed (wrong length, bad framing, wrong entry count).
    MalformedData,
    /// The signed root matches neither the entries nor the tiles the log serves.
    RootMismatch,
    // --- Candor entries (spec/entries.md).
    /// A leaf that claims to be a Candor leaf but is not canonical JCS.
    NonCanonicalEntry,
    /// A Candor leaf that fails the entry schema.
    InvalidEntry,
    /// The entry's signature does not verify under the key it names.
    BadSignature,
    /// The entry names a key the log never registered for that company (before it).
    UnregisteredKey,
    /// The entry is signed with a key the log had revoked before the entry.
    RevokedKey,
    /// A cited data purchase does not exist earlier in the log (or its leaf hash differs).
    MissingPurchase,
    /// An entry's own time lies after the time the log logged it.
    FutureTime,
    /// An entry was logged long after the decision or purchase it records.
    Backdated,
    // --- Policy checks (spec/monitor.md §7).
    /// A targeting decision with no legal basis.
    NoLegalBasis,
    /// A targeting decision with no data source.
    NoDataSource,
    /// Profiling (interest, behavioural, look-alike targeting or profiling purposes)
    /// on the legal basis of legitimate interests.
    ProfilingOnLegitimateInterests,
    /// A data purchase that includes special-category (GDPR Art. 9) data.
    SensitivePurchase,
    /// A decision that cites a data purchase made by another company.
    ForeignPurchase,
    /// A company's key was rotated (a second key registered, or one revoked).
    KeyRotation,
    /// A company's daily entry count jumped far above its trailing average.
    VolumeJump,
}

impl Kind {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> String {
        // serde_json of a unit variant is a quoted string; this cannot fail.
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// One finding, as printed on stdout (one JSON object per line) and stored in DIR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    /// The log's origin.
    pub origin: String,
    /// Entry indexes involved (empty for log-level findings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<u64>,
    /// Tree sizes of the checkpoints involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<u64>,
    /// The company concerned, for entry and policy findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// tlog-tiles resources involved (e.g. `tile/0/000.p/15`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// One plain sentence.
    pub message: String,
    /// Machine-checkable detail (for a split view: both signed checkpoints).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub evidence: serde_json::Value,
    /// The day (YYYY-MM-DD, UTC) the finding belongs to: the entry's logged_at
    /// day for entry findings, else the day it was detected.
    pub day: String,
    /// When the monitor detected it (RFC 3339).
    pub detected_at: String,
}

impl Finding {
    /// A finding with the given kind, severity and sentence; the rest empty.
    pub fn new(kind: Kind, severity: Severity, origin: &str, message: impl Into<String>) -> Self {
        let now = now_rfc3339();
        Finding {
            kind,
            severity,
            origin: origin.to_owned(),
            indexes: Vec::new(),
            checkpoints: Vec::new(),
            company: None,
            resources: Vec::new(),
            message: message.into(),
            evidence: serde_json::Value::Null,
            day: now[..10].to_owned(),
            detected_at: now,
        }
    }

    pub fn with_index(mut self, index: u64) -> Self {
        self.indexes.push(index);
        self
    }

    pub fn with_checkpoint(mut self, size: u64) -> Self {
        self.checkpoints.push(size);
        self
    }

    pub fn with_company(mut self, company: &str) -> Self {
        self.company = Some(company.to_owned());
        self
    }

    pub fn with_resource(mut self, path: impl Into<String>) -> Self {
        self.resources.push(path.into());
        self
    }

    pub fn with_evidence(mut self, evidence: serde_json::Value) -> Self {
        self.evidence = evidence;
        self
    }

    /// Sets `day` from an RFC 3339 timestamp (its date part), if it has one.
    pub fn with_day_of(mut self, rfc3339: &str) -> Self {
        if rfc3339.len() >= 10 && rfc3339.is_char_boundary(10) {
            self.day = rfc3339[..10].to_owned();
        }
        self
    }

    /// A stable identity, so that a finding re-detected after a restart (or on the
    /// next polling round) is reported once. Two findings with equal keys are the same.
    pub fn key(&self) -> String {
        let idx: Vec<String> = self.indexes.iter().map(u64::to_string).collect();
        let cps: Vec<String> = self.checkpoints.iter().map(u64::to_string).collect();
        let mut key = format!(
            "{}|{}|{}|{}",
            self.kind,
            idx.join(","),
            cps.join(","),
            self.resources.join(",")
        );
        // Two different split views at the same sizes differ in their roots.
        if let Some(roots) = self.evidence.get("roots") {
            key.push('|');
            key.push_str(&roots.to_string());
        }
        key
    }

    /// The finding as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serializing a struct of strings, integers and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The current time as RFC 3339 UTC with whole seconds.
pub fn now_rfc3339() -> String {
    use candor_core::clock::Clock;
    candor_core::clock::SystemClock.now_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let f = Finding::new(Kind::SplitView, Severity::Critical, "o", "two roots.")
            .with_checkpoint(3)
            .with_checkpoint(3);
        let v: serde_json::Value = serde_json::from_str(&f.to_json_line()).unwrap();
        assert_eq!(v["kind"], "split_view");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["checkpoints"], serde_json::json!([3, 3]));
        assert!(v.get("indexes").is_none());
        let back: Finding = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn severity_order_and_parse() {
        assert!(Severity::Info < Severity::Critical);
        assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
        assert!("severe".parse::<Severity>().is_err());
        assert_eq!(
            Kind::ProfilingOnLegitimateInterests.as_str(),
            "profiling_on_legitimate_interests"
        );
    }

    #[test]
    fn keys_distinguish() {
        let a = Finding::new(Kind::Backdated, Severity::Low, "o", "x").with_index(1);
        let b = Finding::new(Kind::Backdated, Severity::Low, "o", "y").with_index(2);
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), a.clone().key());
    }
}
