//! Every vector in shared/conformance/signed-note/vectors.json (Go sumdb/note).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_core::note::{self, Note, NoteSignature, SignerKey, VerifierKey};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/signed-note/vectors.json"
);

fn load() -> Value {
    let text = std::fs::read_to_string(VECTORS).expect("read vectors.json");
    serde_json::from_str(&text).expect("parse vectors.json")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn verifiers(v: &Value) -> Vec<VerifierKey> {
    strings(&v["verifiers"])
        .iter()
        .map(|k| k.parse().expect("vector verifier parses"))
        .collect()
}

/// The note bytes: `note_base64` is always present and authoritative.
fn note_bytes(v: &Value) -> Vec<u8> {
    let bytes = STANDARD
        .decode(v["note_base64"].as_str().expect("note_base64"))
        .expect("base64");
    if let Some(s) = v["note"].as_str() {
        assert_eq!(s.as_bytes(), bytes, "note and note_base64 agree");
    }
    bytes
}

fn ids(sigs: &[NoteSignature]) -> Vec<String> {
    sigs.iter().map(NoteSignature::signer_id).collect()
}

#[test]
fn keys_parse_and_round_trip() {
    let d = load();
    let keys = d["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    for k in keys {
        let v: VerifierKey = k["vkey"].as_str().unwrap().parse().unwrap();
        let s: SignerKey = k["skey"].as_str().unwrap().parse().unwrap();
        assert_eq!(v.name(), k["name"].as_str().unwrap());
        assert_eq!(hex::encode(v.key_id()), k["key_id"].as_str().unwrap());
        assert_eq!(s.verifier(), v);
        assert_eq!(v.to_string(), k["vkey"].as_str().unwrap());
        assert_eq!(s.to_string(), k["skey"].as_str().unwrap());
    }
}

#[test]
fn valid_notes_open_with_expected_signers() {
    let d = load();
    let valid = d["valid"].as_array().expect("valid");
    assert_eq!(valid.len(), 6);
    for v in valid {
        let id = v["id"].as_str().unwrap();
        let msg = note_bytes(v);
        let opened = note::open(&msg, &verifiers(v)).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(opened.note.text, v["text"].as_str().unwrap(), "{id}");
        assert_eq!(
            ids(&opened.verified),
            strings(&v["expect_verified"]),
            "{id}"
        );
        assert_eq!(
            ids(&opened.unverified),
            strings(&v["expect_unverified"]),
            "{id}"
        );
    }
}

#[test]
fn signing_reproduces_every_signature_line() {
    let d = load();
    let signers: Vec<SignerKey> = d["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["skey"].as_str().unwrap().parse().unwrap())
        .collect();
    let (mut matched, mut corrupted) = (0, 0);
    for v in d["valid"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        let text = v["text"].as_str().unwrap();
        let parsed = Note::parse(&note_bytes(v)).unwrap();
        let verified = strings(&v["expect_verified"]);
        for sig in &parsed.signatures {
            let Some(s) = signers.iter().find(|s| s.verifier().matches(sig)) else {
                panic!("{id}: no skey for {}", sig.signer_id());
            };
            let line = s.sign(text.as_bytes()).to_line();
            if line == sig.to_line() {
                matched += 1;
            } else {
                // Only a line Go leaves unchecked (unknown signer) may be
                // corrupted: the one mangled EnochRoot line.
                assert!(!verified.contains(&sig.signer_id()), "{id}: {line}");
                assert_eq!(id, "duplicate-signature-lines");
                corrupted += 1;
            }
        }
        // The single-signer note is byte-for-byte reproducible as a whole.
        if parsed.signatures.len() == 1 {
            let s = signers
                .iter()
                .find(|s| s.verifier().matches(&parsed.signatures[0]))
                .unwrap();
            assert_eq!(note::sign(text, &[s]).unwrap(), note_bytes(v), "{id}");
        }
    }
    // 12 signature lines in all; one is deliberately corrupted.
    assert_eq!((matched, corrupted), (11, 1));
}

#[test]
fn invalid_notes_rejected() {
    let d = load();
    let invalid = d["invalid_notes"].as_array().expect("invalid_notes");
    assert_eq!(invalid.len(), 13);
    for v in invalid {
        let id = v["id"].as_str().unwrap();
        let msg = note_bytes(v);
        let result = note::open(&msg, &verifiers(v));
        assert!(result.is_err(), "{id} ({}) was accepted", v["reason"]);
    }
}

#[test]
fn invalid_vkeys_rejected() {
    let d = load();
    let invalid = d["invalid_vkeys"].as_array().expect("invalid_vkeys");
    assert_eq!(invalid.len(), 7);
    for v in invalid {
        let k = v["vkey"].as_str().unwrap();
        assert!(
            k.parse::<VerifierKey>().is_err(),
            "{k} ({}) parsed",
            v["reason"]
        );
    }
}
