//! Hash tile data (c2sp.org/tlog-tiles): the first byte picks a width, the rest is
//! the tile; parsing never panics and accepts exactly width × 32 bytes.
#![no_main]
use candor_core::tiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&w, rest)) = data.split_first() else {
        return;
    };
    let width = u16::from(w) + 1;
    if let Ok(hashes) = tiles::parse_tile_data(rest, width) {
        assert_eq!(hashes.len(), usize::from(width));
        assert_eq!(rest.len(), usize::from(width) * 32);
    }
});
