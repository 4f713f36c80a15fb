//! Tile and entry-bundle paths (c2sp.org/tlog-tiles "Tile paths"): parsing never
//! panics and is canonical (a parsed path prints back as the same string).
#![no_main]
use candor_core::tiles::{self, TilePath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = tiles::parse_path(path) {
        let back = match p {
            TilePath::Hashes(t) => t.path(),
            TilePath::Entries(b) => b.path(),
        };
        assert_eq!(back, path, "a parsed tile path prints back to itself");
    }
});
