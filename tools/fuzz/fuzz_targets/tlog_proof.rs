//! tlog-proof files (c2sp.org/tlog-proof): parsing never panics and what
//! parses re-encodes to the same bytes.
#![no_main]
use candor_core::tlog_proof::TlogProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TlogProof::parse(data) {
        assert_eq!(p.to_bytes(), data, "a parsed proof re-encodes to its bytes");
    }
});
