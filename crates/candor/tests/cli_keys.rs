//! `candor keygen` and `candor note verify` through the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use candor_core::note::{SignerKey, VerifierKey};

const BIN: &str = env!("CARGO_BIN_EXE_candor");
const CHECKPOINT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/tessera-log/checkpoint"
);
const LOG_VKEY: &str =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn candor");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for candor")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

#[test]
fn keygen_writes_private_and_public_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("log.key");
    let out_s = out.to_str().unwrap();
    let o = run(
        &["keygen", "--name", "candor.example/log", "--out", out_s],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let printed = stdout(&o);
    let vkey: VerifierKey = printed.trim().parse().expect("stdout is a vkey");
    assert_eq!(vkey.name(), "candor.example/log");
    let pub_text = std::fs::read_to_string(dir.path().join("log.key.pub")).unwrap();
    assert_eq!(pub_text, printed);
    let skey: SignerKey = std::fs::read_to_string(&out)
        .unwrap()
        .trim()
        .parse()
        .expect("private key parses");
    assert_eq!(skey.verifier(), vkey);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // No silent overwrite; --force replaces the pair (and keeps 0600).
    let before = std::fs::read(&out).unwrap();
    let o = run(
        &["keygen", "--name", "candor.example/log", "--out", out_s],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let o = run(
        &[
            "keygen",
            "--name",
            "candor.example/log",
            "--out",
            out_s,
            "--force",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&out).unwrap(), before);

    // The generated key signs notes that `note verify` accepts, given the
    // .pub file as --key.
    let skey: SignerKey = std::fs::read_to_string(&out)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let note = candor_core::note::sign("hello\n", &[&skey]).unwrap();
    let pub_path = dir.path().join("log.key.pub");
    let o = run(
        &["note", "verify", "--key", pub_path.to_str().unwrap()],
        Some(&note),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("verified {}\n", skey.verifier().signer_id())
    );
}

#[test]
fn keygen_rejects_bad_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let o = run(
        &[
            "keygen",
            "--name",
            "has space",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid key name"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn note_verify_accepts_the_tessera_checkpoint() {
    let expected = "origin example.com/log/testdata\nsize 15\n\
                    root rKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs=\n\
                    verified example.com/log/testdata+33d7b496\n";
    // From a file argument.
    let o = run(&["note", "verify", "--key", LOG_VKEY, CHECKPOINT], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    // From stdin, explicit '-'.
    let bytes = std::fs::read(CHECKPOINT).unwrap();
    let o = run(&["note", "verify", "--key", LOG_VKEY, "-"], Some(&bytes));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    // With an extra unrelated key, still fine.
    let other = SignerKey::from_seed("other.example", [2; 32])
        .unwrap()
        .verifier();
    let o = run(
        &[
            "note",
            "verify",
            "--key",
            &other.to_string(),
            "--key",
            LOG_VKEY,
            CHECKPOINT,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
}

#[test]
fn note_verify_rejects_wrong_key_and_garbage() {
    // A different key with the same name: the signature is from an unknown key.
    let wrong = SignerKey::from_seed("example.com/log/testdata", [3; 32])
        .unwrap()
        .verifier()
        .to_string();
    let o = run(&["note", "verify", "--key", &wrong, CHECKPOINT], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("no signature from a known key"),
        "{}",
        stderr(&o)
    );

    // A tampered checkpoint: the known key's signature fails.
    let tampered = std::fs::read_to_string(CHECKPOINT)
        .unwrap()
        .replacen("\n15\n", "\n16\n", 1);
    let o = run(
        &["note", "verify", "--key", LOG_VKEY],
        Some(tampered.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid signature"), "{}", stderr(&o));

    // Garbage input.
    for garbage in [&b"garbage\n"[..], b"", b"\xff\xfe\n\n\xe2\x80\x94 x y\n"] {
        let o = run(&["note", "verify", "--key", LOG_VKEY], Some(garbage));
        assert_eq!(o.status.code(), Some(1), "{garbage:?}");
        assert!(stderr(&o).contains("malformed note"), "{}", stderr(&o));
    }

    // Usage problems exit 2: bad key, missing file, no key at all.
    let o = run(&["note", "verify", "--key", "not-a-key", CHECKPOINT], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not-a-key"), "{}", stderr(&o));
    let o = run(
        &["note", "verify", "--key", LOG_VKEY, "/nonexistent/cp"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/cp"), "{}", stderr(&o));
    let o = run(&["note", "verify", CHECKPOINT], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn note_verify_reports_witness_cosignatures() {
    let log = SignerKey::from_seed("candor.example/log", [4; 32]).unwrap();
    let witness = SignerKey::from_seed("witness.example/w", [5; 32]).unwrap();
    let wkey = candor_core::cosignature::witness_verifier_key(&witness);
    let cp = candor_core::checkpoint::Checkpoint {
        origin: "candor.example/log".into(),
        size: 3,
        root: candor_core::hash::leaf_hash(b"r"),
        extensions: vec![],
    };
    let signed = candor_core::checkpoint::sign_checkpoint(&cp, &log).unwrap();
    let cosigned =
        candor_core::cosignature::add_cosignature(&signed, 1_700_000_000, &witness).unwrap();
    let o = run(
        &[
            "note",
            "verify",
            "--key",
            &log.verifier().to_string(),
            "--key",
            &wkey.to_string(),
        ],
        Some(&cosigned),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("origin candor.example/log\nsize 3\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "verified {} cosignature time 1700000000\n",
            wkey.signer_id()
        )),
        "{out}"
    );
    // Only the log key known: the cosignature is listed as unverified.
    let o = run(
        &["note", "verify", "--key", &log.verifier().to_string()],
        Some(&cosigned),
    );
    assert!(o.status.success());
    assert!(stdout(&o).contains(&format!("unverified {}\n", wkey.signer_id())));
}
