//! Smoke run of the load generator so it does not rot: a small load against a real
//! server, every receipt verified, then a monitor audit. No timing assertions.

use std::process::Command;

#[test]
fn loadgen_runs_end_to_end_and_reports_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_candor-loadgen"))
        .args([
            "--entries",
            "2000",
            "--batch",
            "250",
            "--concurrency",
            "4",
            "--limit-secs",
            "0.2",
            "--audit",
        ])
        .output()
        .expect("run candor-loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a report line");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(v["entries"], 2000);
    // The log holds the load plus, per registered company, its company_key entry and
    // the data purchase its decisions cite.
    assert_eq!(v["log_size"], 2008);
    for k in [
        "seconds",
        "entries_per_sec",
        "p50_ms",
        "p99_ms",
        "bytes_per_entry",
        "server_rss_mb",
        "verify_limit_per_sec",
        "fraction_of_limit",
        "audit_entries_per_sec",
    ] {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {last}");
    }
    // On disk there is at least every leaf once.
    assert!(v["bytes_per_entry"].as_f64() >= v["leaf_bytes_per_entry"].as_f64());
    assert!(stderr.contains("all 2000 receipts verify"), "{stderr}");
    // The load is what a real log of this mix holds: the monitor flags only the 1 %
    // special-category purchases (20 of 2,000), nothing dated in the future, back-dated
    // or citing a missing purchase.
    assert!(
        stderr.contains("20 finding(s) so far"),
        "the monitor found more than the special-category purchases: {stderr}"
    );
}
