//! Signed-note verifier keys (`name+hash+base64`): parsing never panics and a
//! parsed key prints as a fixed point (base64 is decoded as Go does, so a
//! non-canonical input prints canonically: spec/notes.md).
#![no_main]
use candor_core::note::VerifierKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = s.parse::<VerifierKey>() {
        let printed = k.to_string();
        let again: VerifierKey = printed.parse().expect("a printed key parses");
        assert_eq!(again.to_string(), printed, "printing is a fixed point");
        assert_eq!(again.key_id(), k.key_id());
    }
});
