//! Checkpoint note texts (c2sp.org/tlog-checkpoint): parsing never panics and
//! is canonical (what parses re-encodes to the same text).
#![no_main]
use candor_core::checkpoint::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(
            cp.to_text(),
            text,
            "a parsed checkpoint re-encodes to its text"
        );
    }
});
