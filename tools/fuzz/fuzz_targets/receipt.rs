//! Receipts (spec/receipts.md) and receipt links: parsing never panics; a parsed
//! link's fragment parses back to the same link.
#![no_main]
use candor_core::receipt::{Receipt, ReceiptLink};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Receipt::from_json(data) {
        let _ = r.leaf_bytes();
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok((_, link)) = ReceiptLink::parse(s)
    {
        let frag = link.fragment();
        let value = frag.as_str();
        assert_eq!(ReceiptLink::parse_fragment(value).as_ref(), Ok(&link));
    }
});
