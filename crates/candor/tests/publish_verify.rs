//! End to end: `candor company`, `candor publish`, `candor receipt header` and
//! `candor verify`, run as the real binary against a real `candor serve` over
//! loopback (`spec/cli.md`).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const COMPANY: &str = "acme.example";

fn candor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_candor"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run candor")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A log (the shared `candor serve` harness) with one company registered
/// through `candor company add`.
struct Setup {
    rt: tokio::runtime::Runtime,
    log: common::LogServer,
    dir: tempfile::TempDir,
    company_key: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let log = rt.block_on(common::LogServer::start("redb", &[]));
        let dir = tempfile::tempdir().expect("tempdir");
        let company_key = dir.path().join("acme.key");
        let o = run(candor()
            .args(["keygen", "--name", COMPANY, "--out"])
            .arg(&company_key));
        assert_eq!(code(&o), 0, "keygen: {}", stderr(&o));
        let vkey = std::fs::read_to_string(dir.path().join("acme.key.pub")).expect("pub key");
        let o = run(candor()
            .args(["company", "add", "--log", &log.base, "--token-file"])
            .arg(log.data.join("admin.token"))
            .args(["--name", COMPANY, "--vkey", vkey.trim()]));
        assert_eq!(code(&o), 0, "company add: {}", stderr(&o));
        assert!(stdout(&o).contains("registered key"), "{}", stdout(&o));
        Setup {
            rt,
            log,
            dir,
            company_key,
        }
    }

    fn url(&self) -> String {
        self.log.base.clone()
    }

    fn vkey(&self) -> String {
        self.log.verifier_key.to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn publish(&self, input: &Path, out: &Path, extra: &[&str]) -> Output {
        run(candor()
            .args(["publish", "--log", &self.url(), "--key"])
            .arg(&self.company_key)
            .arg("--receipts")
            .arg(out)
            .args(extra)
            .arg(input))
    }

    fn verify(&self, args: &[&str]) -> Output {
        run(candor()
            .arg("verify")
            .args(args)
            .args(["--log-key", &self.vkey()]))
    }

    fn log_size(&self) -> u64 {
        let v = self.rt.block_on(self.log.get_json("/v1/log"));
        v["size"].as_u64().expect("size")
    }
}

/// An entry time `secs_ago` seconds before now.
fn ago(secs_ago: u64) -> String {
    candor_core::entry::format_time(
        time::OffsetDateTime::now_utc() - time::Duration::seconds(secs_ago as i64),
    )
}

/// A valid targeting decision input line (no `company`; `subject` is the identifier).
/// Even `n` leave `decided_at` out: `candor publish` dates them when it signs them.
fn decision(n: u64, purchase: Option<(u64, &str)>) -> Value {
    let mut sources = vec![json!({"type": "first_party", "description": "our order history"})];
    if let Some((index, leaf_hash)) = purchase {
        sources.push(
            json!({"type": "purchase", "description": "outdoor-interest list",
                            "purchase": {"index": index, "leaf_hash": leaf_hash}}),
        );
    }
    let mut v = json!({
        "kind": "targeting_decision",
        "channel": "email",
        "campaign": {"id": "w26", "name": "Winter sale", "purpose": "Announce the winter sale"},
        "reason": format!("You bought running shoes from us (order {n})."),
        "criteria": [{"type": "customer_list", "rule": "bought shoes in 2026", "effect": "include"},
                     {"type": "geo", "rule": "outside the Netherlands", "effect": "exclude"}],
        "data_sources": sources,
        "legal_basis": "legitimate_interests",
        "opt_out": "https://acme.example/optout",
        "subject": {"email": format!("user{n}@example.com")}
    });
    if n % 2 == 1 {
        v["decided_at"] = json!(ago(n % 3600));
    }
    v
}

fn purchase() -> Value {
    json!({
        "kind": "data_purchase",
        "purchased_at": ago(7 * 86_400),
        "seller": {"name": "ListCo Data B.V.", "domain": "listco.example"},
        "categories": ["contact", "interests"],
        "sensitive": [],
        "records": 250000,
        "collection_method": "declared",
        "legal_basis": "consent",
        "consent_evidence": "double opt-in on listco.example/signup",
        "purposes": ["direct_marketing"],
        "retention_days": 365
    })
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).expect("create input");
    for l in lines {
        writeln!(f, "{l}").expect("write input");
    }
}

fn read_receipts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read receipts")
        .lines()
        .map(|l| serde_json::from_str(l).expect("receipt line is JSON"))
        .collect()
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).expect("encode")).expect("write");
}

/// Flips one bit of the base64 member `field` at decoded byte `at`.
fn flip_b64(s: &str, at: usize) -> String {
    let mut b = STANDARD.decode(s).expect("base64");
    let at = at.min(b.len() - 1);
    b[at] ^= 0x01;
    STANDARD.encode(b)
}

/// The verdict and the first failed check of `candor verify --json`.
fn verdict(o: &Output) -> (i32, String, Option<String>) {
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("verify --json output: {e}: {}{}", stdout(o), stderr(o)));
    let failed = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().expect("name").to_string());
    (
        code(o),
        v["status"].as_str().expect("status").to_string(),
        failed,
    )
}

/// Publishes one data purchase and 1,000 decisions citing it, then verifies
/// them every way the CLI offers.
#[test]
fn publish_thousand_and_verify() {
    let s = Setup::new();
    // A data purchase first, so the decisions can cite it.
    let pin = s.path("purchase.ndjson");
    let pout = s.path("purchase-receipts.ndjson");
    write_lines(&pin, &[purchase().to_string()]);
    let o = s.publish(&pin, &pout, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let p = &read_receipts(&pout)[0];
    let p_index = p["index"].as_u64().expect("index");
    let p_hash = p["leaf_hash"].as_str().expect("leaf_hash").to_string();

    let input = s.path("campaign.ndjson");
    let out = s.path("receipts.ndjson");
    let lines: Vec<String> = (0..1000)
        .map(|n| decision(n, (n % 10 == 0).then_some((p_index, p_hash.as_str()))).to_string())
        .collect();
    write_lines(&input, &lines);
    let before = s.log_size();
    let started = ago(1);
    let o = s.publish(&input, &out, &["--batch-size", "100"]);
    let finished = ago(0);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1000 published, 0 already receipted, 0 failed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.log_size(), before + 1000);
    let receipts = read_receipts(&out);
    assert_eq!(receipts.len(), 1000);
    // In input order, one per line, each with the subject opening and header.
    for (i, r) in receipts.iter().enumerate() {
        assert_eq!(r["line"], i as u64 + 1);
        assert_eq!(r["subject"]["id"], format!("email:user{i}@example.com"));
        let header = r["disclosure_header"].as_str().expect("header");
        assert!(header.starts_with(&format!("Disclosure-Receipt: <{}/verify#r=v1.", s.url())));
        // The identifier itself is never on the log.
        let leaf = String::from_utf8(
            STANDARD
                .decode(r["leaf"].as_str().expect("leaf"))
                .expect("b64"),
        )
        .expect("utf8");
        assert!(!leaf.contains("example.com\""), "{leaf}");
        // A line without `decided_at` is dated when it was signed (spec/cli.md §2.5);
        // the others keep theirs.
        let leaf: Value = serde_json::from_str(&leaf).expect("leaf JSON");
        let decided = leaf["entry"]["decided_at"].as_str().expect("decided_at");
        if i % 2 == 0 {
            assert!(
                started.as_str() <= decided && decided <= finished.as_str(),
                "line {}: {decided} not within {started}..{finished}",
                i + 1
            );
            assert!(decided <= leaf["logged_at"].as_str().expect("logged_at"));
        } else {
            assert_eq!(decided, lines[i].parse::<Value>().unwrap()["decided_at"]);
        }
    }

    // Every receipt offline, in one batch command.
    let outs = out.to_str().expect("path");
    let o = s.verify(&[outs]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("1000 receipts: 1000 valid, 0 invalid"),
        "{}",
        stdout(&o)
    );
    // And online: consistency, revocation and the cited purchase for each.
    let o = s.verify(&[outs, "--online", "--log", &s.url(), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let answers: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson answer"))
        .collect();
    assert_eq!(answers.len(), 1000);
    for a in &answers {
        assert_eq!(a["status"], "valid", "{a}");
        let names: Vec<&str> = a["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        for want in [
            "leaf",
            "inclusion",
            "checkpoint_signature",
            "company_key",
            "company_signature",
            "subject",
            "consistency",
            "not_revoked",
        ] {
            assert!(names.contains(&want), "{want} missing in {names:?}");
        }
        if a["line"].as_u64().expect("line") % 10 == 1 {
            assert!(names.contains(&"purchases"), "{names:?}");
            assert_eq!(a["purchases"][0]["verified"], true);
        }
    }

    // A sample, one receipt at a time, offline and online.
    for i in (0..1000).step_by(20) {
        let f = s.path(&format!("r{i}.json"));
        write_json(&f, &receipts[i]);
        let fs = f.to_str().expect("path");
        let o = s.verify(&[fs]);
        assert_eq!(code(&o), 0, "{}", stdout(&o));
        let o = s.verify(&[fs, "--online", "--log", &s.url()]);
        assert_eq!(code(&o), 0, "{}", stdout(&o));
        let text = stdout(&o);
        assert!(text.contains("✓ This disclosure is genuine"), "{text}");
        assert!(
            text.contains("acme.example contacted you by email"),
            "{text}"
        );
        assert!(text.contains("✓ consistency"), "{text}");
        if i % 10 == 0 {
            assert!(
                text.contains("ListCo Data B.V. (listco.example): contact, interests"),
                "{text}"
            );
            assert!(text.contains("✓ purchases"), "{text}");
        }
    }

    // The person: right identifier passes, wrong fails naming `subject`.
    let f = s.path("r7.json");
    write_json(&f, &receipts[7]);
    let fs = f.to_str().expect("path");
    let o = s.verify(&[fs, "--subject", "USER7@example.com", "--json"]);
    assert_eq!(verdict(&o), (0, "valid".into(), None));
    let o = s.verify(&[fs, "--subject", "user8@example.com", "--json"]);
    assert_eq!(verdict(&o), (1, "invalid".into(), Some("subject".into())));
    let o = s.verify(&[fs, "--subject", "user8@example.com"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("not about you"), "{}", stdout(&o));

    // The consumer forms: header line and URL, fetched from the log.
    let o = run(candor().args(["receipt", "header", fs]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let mut two = text.lines();
    let header = two.next().expect("header line");
    let footer = two.next().expect("footer line");
    assert_eq!(
        header,
        receipts[7]["disclosure_header"].as_str().expect("header")
    );
    let url = footer
        .strip_prefix("Why did you get this message? Check our public disclosure: ")
        .expect("footer sentence");
    for form in [header, url] {
        let o = s.verify(&[form, "--subject", "user7@example.com", "--json"]);
        assert_eq!(verdict(&o), (0, "valid".into(), None), "{form}");
        let o = s.verify(&[form, "--subject", "user6@example.com", "--json"]);
        assert_eq!(
            verdict(&o),
            (1, "invalid".into(), Some("subject".into())),
            "{form}"
        );
        let o = s.verify(&[form, "--online", "--json"]);
        assert_eq!(verdict(&o), (0, "valid".into(), None), "{form}");
    }
    // A link whose leaf hash is not the log's entry at that index.
    let wrong = url.replace("#r=v1.8.", "#r=v1.9.").replace(
        &format!("#r=v1.{}.", receipts[7]["index"]),
        &format!("#r=v1.{}.", receipts[8]["index"]),
    );
    let o = s.verify(&[&wrong, "--json"]);
    assert_eq!(verdict(&o), (1, "invalid".into(), Some("leaf".into())));

    // One flipped byte in each place fails with the right check named.
    let r = &receipts[7];
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut t = r.clone();
    t["leaf"] = flip_b64(r["leaf"].as_str().expect("leaf"), 40).into();
    cases.push(("leaf", t, "leaf"));
    let proof = r["tlog_proof"].as_str().expect("tlog_proof");
    let mut lines: Vec<String> = proof.split('\n').map(str::to_string).collect();
    // c2sp.org/tlog-proof@v1, index N, then the proof hashes.
    lines[2] = flip_b64(&lines[2], 5);
    let mut t = r.clone();
    t["tlog_proof"] = lines.join("\n").into();
    cases.push(("proof hash", t, "inclusion"));
    let mut lines: Vec<String> = proof.split('\n').map(str::to_string).collect();
    let sig_line = lines
        .iter()
        .rposition(|l| l.starts_with("— "))
        .expect("signature line");
    let (prefix, sig) = lines[sig_line].rsplit_once(' ').expect("sig");
    lines[sig_line] = format!("{prefix} {}", flip_b64(sig, 20));
    let mut t = r.clone();
    t["tlog_proof"] = lines.join("\n").into();
    cases.push(("checkpoint signature", t, "checkpoint_signature"));
    let blank = proof
        .split('\n')
        .position(str::is_empty)
        .expect("blank line");
    let mut lines: Vec<String> = proof.split('\n').map(str::to_string).collect();
    lines[blank + 3] = flip_b64(&lines[blank + 3], 3); // origin, size, root
    let mut t = r.clone();
    t["tlog_proof"] = lines.join("\n").into();
    cases.push(("checkpoint root", t, "checkpoint_signature"));
    let mut t = r.clone();
    t["company_key"]["proof"][0] = flip_b64(
        r["company_key"]["proof"][0]
            .as_str()
            .expect("company key proof"),
        9,
    )
    .into();
    cases.push(("company key proof", t, "company_key"));
    let mut t = r.clone();
    let salt = r["subject"]["salt"].as_str().expect("salt");
    let mut salt_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(salt)
        .expect("salt b64url");
    salt_bytes[0] ^= 1;
    t["subject"]["salt"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(salt_bytes)
        .into();
    cases.push(("subject salt", t, "subject"));
    for (what, tampered, check) in cases {
        let f = s.path("tampered.json");
        write_json(&f, &tampered);
        let o = s.verify(&[
            f.to_str().expect("path"),
            "--subject",
            "user7@example.com",
            "--json",
        ]);
        assert_eq!(
            verdict(&o),
            (1, "invalid".into(), Some(check.into())),
            "flipped byte in the {what}"
        );
    }
}

/// `--resume` after a SIGKILL sends nothing twice.
#[test]
fn resume_after_kill_sends_nothing_twice() {
    let s = Setup::new();
    let n = 3000u64;
    let input = s.path("big.ndjson");
    let out = s.path("big-receipts.ndjson");
    write_lines(
        &input,
        &(0..n)
            .map(|i| decision(i, None).to_string())
            .collect::<Vec<_>>(),
    );
    let before = s.log_size();
    let mut child = candor()
        .args(["publish", "--log", &s.url(), "--key"])
        .arg(&s.company_key)
        .arg("--receipts")
        .arg(&out)
        .args(["--batch-size", "20", "--concurrency", "4"])
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn publish");
    // Kill it once some receipts are out but (surely) not all.
    let start = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 200 || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        still_running,
        "publish finished before it could be interrupted"
    );
    let partial = read_receipts_tolerant(&out);
    assert!(partial < n as usize, "{partial} receipts before the kill");
    assert!(s.path("big-receipts.ndjson.journal").exists());

    // Without --resume the command refuses to touch OUT.
    let o = s.publish(&input, &out, &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));

    let o = s.publish(&input, &out, &["--resume", "--batch-size", "20"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("already receipted"), "{}", stderr(&o));
    assert_eq!(
        s.log_size(),
        before + n,
        "the log holds every line exactly once"
    );
    let receipts = read_receipts(&out);
    let mut per_line: HashMap<u64, usize> = HashMap::new();
    let mut indices = std::collections::HashSet::new();
    for r in &receipts {
        *per_line
            .entry(r["line"].as_u64().expect("line"))
            .or_default() += 1;
        assert!(
            indices.insert(r["index"].as_u64().expect("index")),
            "index twice"
        );
    }
    assert_eq!(per_line.len(), n as usize);
    assert!(
        per_line.values().all(|&c| c == 1),
        "a line has two receipts"
    );
    assert!(
        !s.path("big-receipts.ndjson.journal").exists(),
        "journal removed when done"
    );
    let o = s.verify(&[out.to_str().expect("path")]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

/// Counts complete receipt lines (the last may be torn by the kill).
fn read_receipts_tolerant(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter(|l| serde_json::from_str::<Value>(l).is_ok())
                .count()
        })
        .unwrap_or(0)
}

/// Bad lines are reported with their numbers; the rest is published (exit 1).
#[test]
fn bad_lines_reported_rest_published() {
    let s = Setup::new();
    let mut lines: Vec<String> = (0..10).map(|n| decision(n, None).to_string()).collect();
    lines[2] = "{not json".into();
    let mut missing = decision(50, None);
    missing.as_object_mut().expect("object").remove("channel");
    lines[4] = missing.to_string();
    let mut bad_email = decision(51, None);
    bad_email["subject"] = json!({"email": "no-at-sign"});
    lines[6] = bad_email.to_string();
    let mut other = decision(52, None);
    other["company"] = json!("evil.example");
    lines[8] = other.to_string();
    lines.insert(9, String::new()); // a blank line is skipped
    let input = s.path("bad.ndjson");
    let out = s.path("bad-receipts.ndjson");
    write_lines(&input, &lines);
    let before = s.log_size();
    let o = s.publish(&input, &out, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    for (line, why) in [
        (3, "not valid JSON"),
        (5, "channel"),
        (7, "email"),
        (9, "taken from the key"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("line {line}: ")) && l.contains(why)),
            "line {line} ({why}) not reported in:\n{err}"
        );
    }
    assert!(
        err.contains("6 published, 0 already receipted, 4 failed"),
        "{err}"
    );
    let receipts = read_receipts(&out);
    let got: Vec<u64> = receipts
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(got, vec![1, 2, 4, 6, 8, 11]);
    assert_eq!(s.log_size(), before + 6);

    // From standard input too, with the same reports.
    let out2 = s.path("stdin-receipts.ndjson");
    let mut child = candor()
        .args(["publish", "--log", &s.url(), "--key"])
        .arg(&s.company_key)
        .arg("--receipts")
        .arg(&out2)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{}\n{{}}\n", decision(99, None)).as_bytes())
        .expect("write stdin");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line 2: missing field `kind`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read_receipts(&out2).len(), 1);
}

/// Exit 2 when the receipt cannot be checked, and for an unreachable log.
#[test]
fn could_not_check_is_exit_two() {
    let s = Setup::new();
    let f = s.path("garbage.json");
    std::fs::write(&f, "{\"not\": \"a receipt\"}").expect("write");
    let o = s.verify(&[f.to_str().expect("path")]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = s
        .verify(&["https://127.0.0.1:1/verify#r=v1.0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    assert_eq!(code(&o), 2, "{}{}", stdout(&o), stderr(&o));
    let o = run(candor()
        .args(["publish", "--log", "http://127.0.0.1:1", "--key"])
        .arg(&s.company_key)
        .arg("--receipts")
        .arg(s.path("x.ndjson"))
        .arg(s.path("missing-input.ndjson")));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

/// The README's tour, as a user runs it: the example campaign (which carries no
/// dates) is published, a receipt verified online, and a monitor that audits the
/// log from the start finds nothing, on whatever day this runs (CI also runs it a
/// year ahead under faketime).
#[test]
fn readme_tour_ends_with_a_clean_monitor() {
    let s = Setup::new();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/examples/campaign.ndjson");
    let text = std::fs::read_to_string(&example).expect("example campaign");
    assert!(
        !text.contains("decided_at"),
        "the example must work on any day"
    );
    let out = s.path("receipts.ndjson");
    let o = s.publish(&example, &out, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let receipts = read_receipts(&out);
    assert_eq!(receipts.len(), text.lines().count());

    let first = s.path("receipt.json");
    write_json(&first, &receipts[0]);
    let o = run(candor().args(["receipt", "header"]).arg(&first));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Disclosure-Receipt: <"),
        "{}",
        stdout(&o)
    );
    let fs = first.to_str().expect("path");
    let o = s.verify(&[
        fs,
        "--subject",
        "alice@example.com",
        "--online",
        "--log",
        &s.url(),
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("✓ This disclosure is genuine"),
        "{}",
        stdout(&o)
    );

    let state = s.path("mon");
    let o = run(candor()
        .args([
            "monitor",
            "--log",
            &s.url(),
            "--log-key",
            &s.vkey(),
            "--once",
            "--state",
        ])
        .arg(&state));
    assert_eq!(
        code(&o),
        0,
        "monitor found something:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).trim().is_empty(), "findings: {}", stdout(&o));
    let report = s.path("report");
    let o = run(candor()
        .args(["monitor", "report", "--state"])
        .arg(&state)
        .arg("--out")
        .arg(&report));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let summary = std::fs::read_to_string(report.join("summary.json")).expect("summary.json");
    let summary: Value = serde_json::from_str(&summary).expect("report JSON");
    assert_eq!(summary["tree_size"], receipts.len() as u64 + 1, "{summary}");
    assert_eq!(summary["findings"], json!([]), "{summary}");
}
