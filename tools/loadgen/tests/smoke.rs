//! Smoke run of the load generator so it does not rot: a small load against a real
//! server, every receipt verified, then a monitor audit. No timing assertions.

use std::process::Command;

/// Runs the load generator with `args`; returns its standard error and the JSON report
/// (its last line of standard output), failing the test if it did not succeed.
fn run_loadgen(args: &[&str]) -> (String, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_candor-loadgen"))
        .args(args)
        .output()
        .expect("run candor-loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "loadgen failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a report line").to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect("the last line is JSON");
    (stderr, v, last)
}

#[test]
fn loadgen_runs_end_to_end_and_reports_json() {
    let (stderr, v, last) = run_loadgen(&[
        "--entries",
        "2000",
        "--batch",
        "250",
        "--concurrency",
        "4",
        "--limit-secs",
        "0.2",
        "--audit",
    ]);
    assert_eq!(v["entries"], 2000);
    // The log holds the load plus, per registered company, its company_key entry and
    // the data purchase its decisions cite.
    assert_eq!(v["log_size"], 2008);
    for k in [
        "seconds",
        "entries_per_sec",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "bytes_per_entry",
        "server_rss_mb",
        "verify_limit_per_sec",
        "fraction_of_limit",
        "audit_entries_per_sec",
    ] {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0), "{k} in {last}");
    }
    let tail: Vec<f64> = ["p50_ms", "p99_ms", "p999_ms", "max_ms"]
        .iter()
        .filter_map(|k| v[*k].as_f64())
        .collect();
    assert!(
        tail.windows(2).all(|w| w[0] <= w[1]),
        "percentiles in order: {last}"
    );
    // Full entry bundles are stored zstd-compressed, so the disk may hold less than the
    // leaves' own bytes; but every leaf's 32-byte hash is stored as it is.
    let disk = v["bytes_per_entry"].as_f64().expect("a disk figure");
    let leaf = v["leaf_bytes_per_entry"].as_f64().expect("a leaf figure");
    assert!(disk >= 32.0 && leaf > 32.0, "{last}");
    assert!(stderr.contains("all 2000 receipts verify"), "{stderr}");
    // The load is what a real log of this mix holds: the monitor flags only the 1 %
    // special-category purchases (20 of 2,000), nothing dated in the future, back-dated
    // or citing a missing purchase.
    assert!(
        stderr.contains("20 finding(s) so far"),
        "the monitor found more than the special-category purchases: {stderr}"
    );
}

/// A load split into chunks smaller than the run (2,000 entries in chunks of 700:
/// 700, 700, 600; requests of 250 never span two chunks) logs every entry once and
/// every receipt verifies.
#[test]
fn loadgen_in_chunks_logs_and_verifies_every_entry() {
    let (stderr, v, last) = run_loadgen(&[
        "--entries",
        "2000",
        "--chunk",
        "700",
        "--batch",
        "250",
        "--concurrency",
        "4",
        "--companies",
        "3",
        "--limit-secs",
        "0.2",
    ]);
    assert_eq!(v["entries"], 2000);
    assert_eq!(v["chunks"], 3);
    // The load plus, per company, its company_key entry and its setup purchase: no
    // entry lost or logged twice across chunk boundaries.
    assert_eq!(v["log_size"], 2006);
    assert!(stderr.contains("all 2000 receipts verify"), "{stderr}");
    for c in 1..=3 {
        assert!(
            stderr.contains(&format!("chunk {c}/3:")),
            "chunk {c} not reported: {stderr}"
        );
    }
    // One server RSS reading per chunk, none above the kernel's high-water mark.
    let peak = v["server_peak_rss_mb"].as_f64().expect("a peak RSS");
    let by_chunk = v["server_rss_mb_by_chunk"]
        .as_array()
        .expect("RSS by chunk");
    assert_eq!(by_chunk.len(), 3, "{last}");
    for r in by_chunk {
        let r = r.as_f64().expect("an RSS figure");
        assert!(r > 0.0 && r <= peak + 1.0, "{r} vs peak {peak}");
    }
    let sampled = v["server_rss_sampled_max_mb"]
        .as_f64()
        .expect("sampled RSS");
    assert!(sampled > 0.0 && sampled <= peak + 1.0, "{last}");
    assert!(v["presign_seconds"].as_f64().is_some_and(|x| x > 0.0));
    assert_eq!(v["latency_percentiles"], "exact");
}

/// Open loop: a request leaves when its last entry is due, so the run cannot report
/// more than the offered rate (six requests of 500 at 3,000/s take at least a second).
/// A rate that is not a positive, finite number is refused before anything starts.
#[test]
fn loadgen_open_loop_never_reports_more_than_the_offered_rate() {
    let (stderr, v, last) = run_loadgen(&[
        "--entries",
        "3000",
        "--batch",
        "500",
        "--rate",
        "3000",
        "--limit-secs",
        "0.2",
    ]);
    assert!(stderr.contains("all 3000 receipts verify"), "{stderr}");
    assert_eq!(v["offered_rate"], 3000.0, "{last}");
    assert!(v["concurrency"].is_null(), "{last}");
    let seconds = v["seconds"].as_f64().expect("seconds");
    let eps = v["entries_per_sec"].as_f64().expect("entries_per_sec");
    assert!(seconds >= 1.0 && eps <= 3000.0, "{last}");

    for rate in ["0", "-5", "NaN", "inf"] {
        let out = Command::new(env!("CARGO_BIN_EXE_candor-loadgen"))
            .args(["--entries", "10", &format!("--rate={rate}")])
            .output()
            .expect("run candor-loadgen");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--rate {rate} was accepted");
        assert!(
            stderr.contains("--rate must be a positive, finite number")
                && !stderr.contains("panicked"),
            "--rate {rate}: {stderr}"
        );
    }
}
