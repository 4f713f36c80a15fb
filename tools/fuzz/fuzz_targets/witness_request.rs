//! The tlog-witness add-checkpoint request and 409 size body: parsing never
//! panics and a parsed request re-encodes to the same bytes.
#![no_main]
use candor_core::witness_protocol::{self as protocol, AddCheckpointRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpointRequest::parse(data) {
        assert_eq!(
            req.to_bytes(),
            data,
            "a parsed request re-encodes to its bytes"
        );
    }
    if let Ok(size) = protocol::parse_size_body(data) {
        assert_eq!(protocol::format_size_body(size).as_bytes(), data);
    }
});
