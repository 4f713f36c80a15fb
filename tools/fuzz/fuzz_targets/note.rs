//! Signed notes (c2sp.org/signed-note): parsing never panics, and what parses
//! re-encodes to a fixed point. (Not necessarily to the input: signature lines
//! are decoded as Go decodes base64, tolerating non-zero trailing bits, and
//! re-encoded canonically; spec/notes.md §"Signature lines".)
#![no_main]
use candor_core::note::{self, Note, SignerKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Note::parse(data) {
        let bytes = n.to_bytes();
        assert_eq!(
            Note::parse(&bytes).as_ref(),
            Ok(&n),
            "re-encoding parses back"
        );
        assert_eq!(
            n.text.as_bytes(),
            &data[..n.text.len()],
            "the text is kept verbatim"
        );
        // Opening with a key that signed none of it must fail, never panic.
        let key = SignerKey::from_seed("fuzz.example/log", [7; 32]).expect("valid name");
        assert!(note::open(data, &[key.verifier()]).is_err());
    }
});
