//! Signed-note verifier keys (`name+hash+base64`): parsing never panics and a
//! parsed key prints back as the same string.
#![no_main]
use candor::note::VerifierKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = s.parse::<VerifierKey>() {
        assert_eq!(k.to_string(), s, "one encoding per verifier key");
    }
});
