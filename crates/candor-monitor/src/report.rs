//! `candor monitor report`: per-company summaries as CSV and JSON, and one
//! self-contained HTML page (inline CSS and SVG, no external assets) with charts:
//! entries per day per company, data categories bought, findings over time
//! (spec/monitor.md §10).

use super::findings::{Finding, Severity};
use super::state::{EntrySummary, MonitorState};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Counts by name, sorted by name.
pub type Counts = BTreeMap<String, u64>;

/// One company's summary.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CompanySummary {
    pub entries: u64,
    pub by_kind: Counts,
    pub by_channel: Counts,
    pub by_legal_basis: Counts,
    pub purchases_by_seller: Counts,
    pub purchases_by_category: Counts,
    pub records_bought: u64,
    pub findings_by_kind: Counts,
    pub findings_by_severity: Counts,
    pub entries_per_day: Counts,
    pub first_logged: Option<String>,
    pub last_logged: Option<String>,
}

/// The whole report's data (also `summary.json`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub origin: String,
    pub tree_size: u64,
    pub generated_at: String,
    pub companies: BTreeMap<String, CompanySummary>,
    /// Findings not tied to a company (the log itself), by kind.
    pub log_findings_by_kind: Counts,
    pub findings: Vec<Finding>,
}

fn bump(c: &mut Counts, k: &str, by: u64) {
    *c.entry(k.to_owned()).or_insert(0) += by;
}

/// Aggregates entry summaries and findings.
pub fn summarize(
    state: Option<&MonitorState>,
    entries: &[(u64, EntrySummary)],
    findings: Vec<Finding>,
) -> Summary {
    let mut s = Summary {
        origin: state.map(|s| s.origin.clone()).unwrap_or_default(),
        tree_size: state.map_or(0, |s| s.verified.size),
        generated_at: super::findings::now_rfc3339(),
        ..Summary::default()
    };
    for (_, e) in entries {
        let c = s.companies.entry(e.company.clone()).or_default();
        c.entries += 1;
        bump(&mut c.by_kind, &e.kind, 1);
        if let Some(ch) = &e.channel {
            bump(&mut c.by_channel, ch, 1);
        }
        if let Some(lb) = &e.legal_basis {
            bump(&mut c.by_legal_basis, lb, 1);
        }
        if e.kind == "data_purchase" {
            bump(
                &mut c.purchases_by_seller,
                e.seller.as_deref().unwrap_or("(unnamed)"),
                1,
            );
            for cat in &e.categories {
                bump(&mut c.purchases_by_category, cat, 1);
            }
            c.records_bought += e.records.unwrap_or(0);
        }
        if e.logged_at.len() >= 10 {
            bump(&mut c.entries_per_day, &e.logged_at[..10], 1);
        }
        if c.first_logged.as_ref().is_none_or(|f| e.logged_at < *f) {
            c.first_logged = Some(e.logged_at.clone());
        }
        if c.last_logged.as_ref().is_none_or(|l| e.logged_at > *l) {
            c.last_logged = Some(e.logged_at.clone());
        }
    }
    for f in &findings {
        match &f.company {
            Some(company) => {
                let c = s.companies.entry(company.clone()).or_default();
                bump(&mut c.findings_by_kind, &f.kind.as_str(), 1);
                bump(&mut c.findings_by_severity, f.severity.as_str(), 1);
            }
            None => bump(&mut s.log_findings_by_kind, &f.kind.as_str(), 1),
        }
    }
    s.findings = findings;
    s
}

/// Quotes a CSV field when needed (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_line(fields: &[&str]) -> String {
    let mut l = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    l.push_str("\r\n");
    l
}

/// The CSV files: name → contents.
pub fn csv_files(s: &Summary) -> Vec<(&'static str, String)> {
    let mut companies = csv_line(&[
        "company",
        "entries",
        "targeting_decisions",
        "data_purchases",
        "company_keys",
        "records_bought",
        "findings",
        "first_logged",
        "last_logged",
    ]);
    let mut breakdown = csv_line(&["company", "dimension", "value", "count"]);
    let mut daily = csv_line(&["company", "day", "entries"]);
    for (name, c) in &s.companies {
        let k = |x: &str| c.by_kind.get(x).copied().unwrap_or(0).to_string();
        companies.push_str(&csv_line(&[
            name,
            &c.entries.to_string(),
            &k("targeting_decision"),
            &k("data_purchase"),
            &k("company_key"),
            &c.records_bought.to_string(),
            &c.findings_by_kind.values().sum::<u64>().to_string(),
            c.first_logged.as_deref().unwrap_or(""),
            c.last_logged.as_deref().unwrap_or(""),
        ]));
        for (dim, counts) in [
            ("kind", &c.by_kind),
            ("channel", &c.by_channel),
            ("legal_basis", &c.by_legal_basis),
            ("seller", &c.purchases_by_seller),
            ("category", &c.purchases_by_category),
            ("finding_kind", &c.findings_by_kind),
            ("finding_severity", &c.findings_by_severity),
        ] {
            for (v, n) in counts {
                breakdown.push_str(&csv_line(&[name, dim, v, &n.to_string()]));
            }
        }
        for (day, n) in &c.entries_per_day {
            daily.push_str(&csv_line(&[name, day, &n.to_string()]));
        }
    }
    let mut findings = csv_line(&[
        "detected_at",
        "day",
        "severity",
        "kind",
        "company",
        "indexes",
        "checkpoints",
        "resources",
        "message",
    ]);
    for f in &s.findings {
        let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        findings.push_str(&csv_line(&[
            &f.detected_at,
            &f.day,
            f.severity.as_str(),
            &f.kind.as_str(),
            f.company.as_deref().unwrap_or(""),
            &join(&f.indexes),
            &join(&f.checkpoints),
            &f.resources.join(" "),
            &f.message,
        ]));
    }
    vec![
        ("companies.csv", companies),
        ("breakdown.csv", breakdown),
        ("daily.csv", daily),
        ("findings.csv", findings),
    ]
}

/// Writes summary.json, the CSV files and report.html into `out`.
pub fn write_report(out: &Path, s: &Summary) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let json = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(out.join("summary.json"), json)?;
    written.push("summary.json".to_owned());
    for (name, body) in csv_files(s) {
        std::fs::write(out.join(name), body)?;
        written.push(name.to_owned());
    }
    std::fs::write(out.join("report.html"), html(s))?;
    written.push("report.html".to_owned());
    Ok(written)
}

// ---------------------------------------------------------------- HTML

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const PALETTE: [&str; 10] = [
    "#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#92400e", "#475569",
];

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Info => "#94a3b8",
        Severity::Low => "#0891b2",
        Severity::Medium => "#d97706",
        Severity::High => "#dc2626",
        Severity::Critical => "#7f1d1d",
    }
}

/// Every day from the first to the last of `days` (YYYY-MM-DD), gaps filled.
fn day_range(days: &BTreeSet<String>) -> Vec<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let parse = |d: &String| time::Date::parse(d, &fmt).ok();
    let (Some(first), Some(last)) = (
        days.iter().next().and_then(parse),
        days.iter().last().and_then(parse),
    ) else {
        return days.iter().cloned().collect();
    };
    let mut out = Vec::new();
    let mut d = first;
    while d <= last && out.len() < 3660 {
        out.push(d.format(&fmt).unwrap_or_default());
        match d.next_day() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

/// Buckets for a day axis: days when the range is short, weeks (labelled by
/// their first day) when it is longer than 92 days, so bars stay readable.
/// Returns the labels and, for each day of `xs`, its bucket.
fn buckets(xs: &[String]) -> (Vec<String>, BTreeMap<String, usize>) {
    let per = if xs.len() > 92 { 7 } else { 1 };
    let mut labels = Vec::new();
    let mut map = BTreeMap::new();
    for (i, d) in xs.iter().enumerate() {
        if i % per == 0 {
            labels.push(d.clone());
        }
        map.insert(d.clone(), labels.len() - 1);
    }
    (labels, map)
}

/// Sums per-day values into buckets.
fn bucketed(map: &BTreeMap<String, usize>, n: usize, per_day: impl Fn(&str) -> u64) -> Vec<u64> {
    let mut v = vec![0; n];
    for (d, b) in map {
        v[*b] += per_day(d);
    }
    v
}

/// A "nice" axis maximum and tick step for a value range 0..=max.
fn nice_axis(max: u64) -> (u64, u64) {
    if max == 0 {
        return (1, 1);
    }
    let raw = max.div_ceil(4).max(1);
    let mag = 10u64.pow(raw.ilog10());
    let step = [1, 2, 5, 10]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10 * mag);
    (max.div_ceil(step) * step, step)
}

/// A stacked bar chart: one bar per x label, one colored segment per series.
fn stacked_bars(
    id: &str,
    title: &str,
    xs: &[String],
    series: &[(String, String, Vec<u64>)],
    unit: &str,
) -> String {
    let (w, h, left, right, top, bottom) = (1000.0, 320.0, 56.0, 16.0, 16.0, 56.0);
    let totals: Vec<u64> = (0..xs.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.2.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let (ymax, step) = nice_axis(totals.iter().copied().max().unwrap_or(0));
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let n = xs.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.8).max(1.0);
    let y = |v: u64| top + plot_h - (v as f64 / ymax as f64) * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    let mut tick = 0;
    while tick <= ymax {
        let ty = y(tick);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x2}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e2e8f0"/><text x="{tx}" y="{ty2:.1}" text-anchor="end" class="tick">{tick}</text>"##,
            x2 = w - right,
            tx = left - 6.0,
            ty2 = ty + 4.0
        );
        tick += step;
    }
    let label_every = (xs.len() / 12).max(1);
    for (i, x) in xs.iter().enumerate() {
        let bx = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut acc = 0u64;
        for (name, color, vals) in series {
            let v = vals.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let (y0, y1) = (y(acc), y(acc + v));
            let _ = write!(
                svg,
                r#"<rect x="{bx:.1}" y="{y1:.1}" width="{bar:.1}" height="{hh:.1}" fill="{color}"><title>{tt}</title></rect>"#,
                hh = (y0 - y1).max(0.5),
                tt = esc(&format!("{x} · {name}: {v} {unit}"))
            );
            acc += v;
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{cx:.1}" y="{ly}" text-anchor="middle" class="tick">{lab}</text>"#,
                cx = bx + bar / 2.0,
                ly = h - bottom + 18.0,
                lab = esc(x.get(5..).unwrap_or(x))
            );
        }
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" x2="{x2}" y1="{by}" y2="{by}" stroke="#64748b"/>"##,
        x2 = w - right,
        by = top + plot_h
    );
    // Legend.
    let mut lx = left;
    for (name, color, _) in series {
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{ly}" width="12" height="12" fill="{color}"/><text x="{tx:.1}" y="{ty}" class="legend">{n}</text>"#,
            ly = h - 22.0,
            tx = lx + 16.0,
            ty = h - 12.0,
            n = esc(name)
        );
        lx += 24.0 + 7.5 * name.chars().count() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar chart of (label, value), largest first.
fn hbars(id: &str, title: &str, items: &[(String, u64)], color: &str) -> String {
    let row = 26.0;
    let (w, left, right) = (1000.0, 220.0, 70.0);
    let h = (items.len().max(1) as f64) * row + 16.0;
    let max = items.iter().map(|i| i.1).max().unwrap_or(1).max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    if items.is_empty() {
        let _ = write!(svg, r#"<text x="10" y="20" class="tick">No data.</text>"#);
    }
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 8.0 + row * i as f64;
        let bw = (w - left - right) * (*v as f64) / max;
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty:.1}" text-anchor="end" class="label">{l}</text><rect x="{left}" y="{y:.1}" width="{bw:.1}" height="{bh}" fill="{color}" rx="2"><title>{l}: {v}</title></rect><text x="{vx:.1}" y="{ty:.1}" class="value">{v}</text>"#,
            lx = left - 8.0,
            ty = y + 15.0,
            bh = row - 8.0,
            l = esc(label),
            vx = left + bw + 6.0
        );
    }
    svg.push_str("</svg>");
    svg
}

fn counts_table(title: &str, c: &Counts) -> String {
    if c.is_empty() {
        return String::new();
    }
    let mut rows: Vec<(&String, &u64)> = c.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut t = format!(
        "<table><thead><tr><th>{}</th><th class=\"n\">count</th></tr></thead><tbody>",
        esc(title)
    );
    for (k, v) in rows {
        let _ = write!(t, "<tr><td>{}</td><td class=\"n\">{v}</td></tr>", esc(k));
    }
    t.push_str("</tbody></table>");
    t
}

const CSS: &str = r#"
:root{--fg:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#0f172a;color:#f8fafc;padding:20px 32px}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:0;color:#cbd5e1}
main{max-width:1100px;margin:0 auto;padding:16px 32px 48px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:16px;margin:0 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px}
.card .v{font-size:26px;font-weight:600}
.card .k{color:var(--muted);font-size:13px}
.chart{width:100%;height:auto;display:block}
.tick{font-size:12px;fill:#475569}
.legend{font-size:12px;fill:#0f172a}
.label{font-size:13px;fill:#0f172a}
.value{font-size:12px;fill:#475569}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:12px;align-items:start}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#f1f5f9}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.sev{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:12px;text-align:center;padding:16px}
"#;

/// The self-contained HTML report.
pub fn html(s: &Summary) -> String {
    let mut h = String::new();
    let total_entries: u64 = s.companies.values().map(|c| c.entries).sum();
    let purchases: u64 = s
        .companies
        .values()
        .map(|c| c.by_kind.get("data_purchase").copied().unwrap_or(0))
        .sum();
    let mut by_sev: BTreeMap<Severity, u64> = BTreeMap::new();
    for f in &s.findings {
        *by_sev.entry(f.severity).or_insert(0) += 1;
    }
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Candor monitor report: {o}</title><style>{CSS}</style></head><body>",
        o = esc(&s.origin)
    );
    let _ = write!(
        h,
        "<header><h1>Candor monitor report</h1><p>Log <strong>{}</strong> · verified tree size {} · generated {}</p></header><main>",
        esc(&s.origin),
        s.tree_size,
        esc(&s.generated_at)
    );
    // Cards.
    h.push_str("<div class=\"cards\" id=\"totals\">");
    let crit_high = by_sev.get(&Severity::Critical).copied().unwrap_or(0)
        + by_sev.get(&Severity::High).copied().unwrap_or(0);
    for (k, v) in [
        ("companies", s.companies.len() as u64),
        ("Candor entries", total_entries),
        ("data purchases", purchases),
        ("findings", s.findings.len() as u64),
        ("critical or high", crit_high),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"v\">{v}</div><div class=\"k\">{k}</div></div>"
        );
    }
    h.push_str("</div>");

    // Chart 1: entries per day per company.
    let mut days: BTreeSet<String> = BTreeSet::new();
    for c in s.companies.values() {
        days.extend(c.entries_per_day.keys().cloned());
    }
    let (xs, xmap) = buckets(&day_range(&days));
    let series: Vec<(String, String, Vec<u64>)> = s
        .companies
        .iter()
        .enumerate()
        .map(|(i, (name, c))| {
            let vals = bucketed(&xmap, xs.len(), |d| {
                c.entries_per_day.get(d).copied().unwrap_or(0)
            });
            (name.clone(), PALETTE[i % PALETTE.len()].to_owned(), vals)
        })
        .collect();
    h.push_str("<section><h2>Entries per day (per week over long periods), by company</h2>");
    if xs.is_empty() {
        h.push_str("<p class=\"empty\">No Candor entries yet.</p>");
    } else {
        h.push_str(&stacked_bars(
            "chart-entries",
            "Entries per day, by company",
            &xs,
            &series,
            "entries",
        ));
    }
    h.push_str("</section>");

    // Chart 2: categories bought.
    let mut cats: Counts = BTreeMap::new();
    for c in s.companies.values() {
        for (k, v) in &c.purchases_by_category {
            bump(&mut cats, k, *v);
        }
    }
    let mut cat_items: Vec<(String, u64)> = cats.into_iter().collect();
    cat_items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    h.push_str("<section><h2>Data categories bought (number of purchases)</h2>");
    h.push_str(&hbars(
        "chart-categories",
        "Data categories bought",
        &cat_items,
        "#059669",
    ));
    h.push_str("</section>");

    // Chart 3: findings over time by severity.
    let fdays: BTreeSet<String> = s.findings.iter().map(|f| f.day.clone()).collect();
    let (fxs, fmap) = buckets(&day_range(&fdays));
    let fseries: Vec<(String, String, Vec<u64>)> = Severity::ALL
        .iter()
        .rev()
        .filter(|sev| by_sev.contains_key(sev))
        .map(|sev| {
            let vals = bucketed(&fmap, fxs.len(), |d| {
                s.findings
                    .iter()
                    .filter(|f| f.severity == *sev && f.day == d)
                    .count() as u64
            });
            (
                sev.as_str().to_owned(),
                severity_color(*sev).to_owned(),
                vals,
            )
        })
        .collect();
    h.push_str("<section><h2>Findings over time (per day, or per week over long periods), by severity</h2>");
    if fxs.is_empty() {
        h.push_str("<p class=\"empty\">No findings.</p>");
    } else {
        h.push_str(&stacked_bars(
            "chart-findings",
            "Findings over time, by severity",
            &fxs,
            &fseries,
            "findings",
        ));
    }
    h.push_str("</section>");

    // Per company.
    for (i, (name, c)) in s.companies.iter().enumerate() {
        let _ = write!(
            h,
            "<section class=\"company\" id=\"company-{i}\"><h2><span class=\"sev\" style=\"background:{}\">&nbsp;</span> {}</h2><p>{} entries · {} records bought · first logged {} · last logged {}</p><div class=\"grid\">",
            PALETTE[i % PALETTE.len()],
            esc(name),
            c.entries,
            c.records_bought,
            esc(c.first_logged.as_deref().unwrap_or("–")),
            esc(c.last_logged.as_deref().unwrap_or("–"))
        );
        for (t, counts) in [
            ("entry kind", &c.by_kind),
            ("channel", &c.by_channel),
            ("legal basis", &c.by_legal_basis),
            ("seller", &c.purchases_by_seller),
            ("data category bought", &c.purchases_by_category),
            ("finding", &c.findings_by_kind),
        ] {
            h.push_str(&counts_table(t, counts));
        }
        h.push_str("</div></section>");
    }

    // Findings table.
    h.push_str("<section><h2>Findings</h2>");
    if s.findings.is_empty() {
        h.push_str("<p class=\"empty\">No findings.</p>");
    } else {
        h.push_str("<table id=\"findings\"><thead><tr><th>day</th><th>severity</th><th>kind</th><th>company</th><th>entries</th><th>what</th></tr></thead><tbody>");
        let mut fs: Vec<&Finding> = s.findings.iter().collect();
        fs.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.day.cmp(&b.day)));
        for f in fs.iter().take(500) {
            let idx = f
                .indexes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(
                h,
                "<tr><td>{}</td><td><span class=\"sev\" style=\"background:{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.day),
                severity_color(f.severity),
                f.severity,
                esc(&f.kind.as_str()),
                esc(f.company.as_deref().unwrap_or("(the log)")),
                esc(&idx),
                esc(&f.message)
            );
        }
        h.push_str("</tbody></table>");
        if fs.len() > 500 {
            let _ = write!(
                h,
                "<p class=\"empty\">{} more in findings.csv.</p>",
                fs.len() - 500
            );
        }
    }
    h.push_str("</section></main><footer>Generated by candor monitor report. Every number comes from entries the monitor verified against the log's signed checkpoints.</footer></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Kind;

    fn sample() -> Summary {
        let e = |c: &str, k: &str, day: &str| EntrySummary {
            company: c.into(),
            kind: k.into(),
            logged_at: format!("{day}T10:00:00Z"),
            channel: (k == "targeting_decision").then(|| "email".into()),
            legal_basis: Some("consent".into()),
            seller: (k == "data_purchase").then(|| "Broker, \"Inc\"".into()),
            categories: if k == "data_purchase" {
                vec!["contact".into(), "health".into()]
            } else {
                vec![]
            },
            records: Some(10),
        };
        let entries = vec![
            (0, e("a.example", "data_purchase", "2026-01-01")),
            (1, e("a.example", "targeting_decision", "2026-01-03")),
            (2, e("b.example", "targeting_decision", "2026-01-03")),
        ];
        let f = Finding::new(
            Kind::SensitivePurchase,
            Severity::Medium,
            "o",
            "<script>x</script>",
        )
        .with_company("a.example")
        .with_index(0);
        summarize(None, &entries, vec![f])
    }

    #[test]
    fn summary_counts() {
        let s = sample();
        let a = &s.companies["a.example"];
        assert_eq!(a.entries, 2);
        assert_eq!(a.purchases_by_category["health"], 1);
        assert_eq!(a.findings_by_kind["sensitive_purchase"], 1);
        assert_eq!(s.companies["b.example"].by_channel["email"], 1);
    }

    #[test]
    fn csv_quotes() {
        let files = csv_files(&sample());
        let breakdown = &files.iter().find(|f| f.0 == "breakdown.csv").unwrap().1;
        assert!(breakdown.contains("a.example,seller,\"Broker, \"\"Inc\"\"\",1\r\n"));
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let h = html(&sample());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(!h.contains("<script"));
        assert!(h.contains("&lt;script&gt;"));
        assert!(
            !h.contains("http://")
                || h.matches("http://")
                    .all(|_| h.contains("xmlns=\"http://www.w3.org/2000/svg\""))
        );
        assert!(!h.contains("src="));
        assert_eq!(h.matches("<svg").count(), 3);
        // The day axis fills the gap day.
        assert!(h.contains("01-02"));
    }
}
