//! Trust policy files (tlog-policy syntax): parsing never panics, and checking a
//! junk note against a parsed policy fails cleanly.
#![no_main]
use candor_core::trust_policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::parse(data) {
        assert!(p.check(b"not a note\n").is_err());
    }
});
