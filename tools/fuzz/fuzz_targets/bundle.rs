//! Entry bundles (c2sp.org/tlog-tiles "Log entries"): decoding never panics and
//! what decodes re-encodes to the same bytes.
#![no_main]
use candor_core::tiles::{self, Bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = tiles::decode_bundle(data) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        assert_eq!(tiles::encode_bundle(&refs).ok().as_deref(), Some(data));
        let width = u16::try_from(entries.len()).expect("at most 256 entries");
        let bundle = Bundle::new(0, width).expect("a decoded bundle has 1..=256 entries");
        assert!(tiles::parse_bundle(data, bundle).is_ok());
    }
});
