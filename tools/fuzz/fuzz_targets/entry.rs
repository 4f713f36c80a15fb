//! Submissions (spec/entries.md): `SignedEntry::parse_json` never panics, and an
//! accepted entry has a canonical form that parses back to the same value.
#![no_main]
use candor_core::entry::{Entry, SignedEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = SignedEntry::parse_json(data) {
        let canon = s
            .entry
            .canonical_bytes()
            .expect("a parsed entry canonicalizes");
        let again = Entry::parse_json(&canon).expect("canonical bytes parse");
        assert_eq!(again, s.entry);
        let _ = s.entry.entry_hash();
        let _ = s.key_id_bytes();
    }
    let _ = Entry::parse_json(data);
});
