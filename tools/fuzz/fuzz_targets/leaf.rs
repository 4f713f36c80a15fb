//! Leaves (spec/entries.md §8): `Leaf::parse` never panics and accepts only the
//! canonical RFC 8785 bytes (what parses re-encodes to the same bytes).
#![no_main]
use candor_core::entry::Leaf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(leaf) = Leaf::parse(data) {
        assert_eq!(
            leaf.to_bytes().ok().as_deref(),
            Some(data),
            "one byte form per leaf"
        );
    }
});
