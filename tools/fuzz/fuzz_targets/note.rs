//! Signed notes (c2sp.org/signed-note): parsing never panics, and what parses
//! re-encodes to the same bytes (one encoding per note).
#![no_main]
use candor::note::{self, Note, SignerKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Note::parse(data) {
        assert_eq!(n.to_bytes(), data, "a parsed note re-encodes to its bytes");
        // Opening with a key that signed none of it must fail, never panic.
        let key = SignerKey::from_seed("fuzz.example/log", [7; 32]).expect("valid name");
        assert!(note::open(data, &[key.verifier()]).is_err());
    }
});
