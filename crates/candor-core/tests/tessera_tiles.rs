//! A real Tessera-written tlog-tiles log (shared/conformance/tessera-log): our tile
//! paths, bundle decoding, tile data and roots must match it byte for byte.

use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::root_from_leaf_hashes;
use candor_core::tiles::{
    Bundle, Tile, TilePath, decode_bundle, parse_bundle, parse_path, parse_tile_data,
};
use std::path::Path;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/tessera-log"
);

/// The entries listed in the README, in index order.
const ENTRIES: [&str; 15] = [
    "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven", "twelf",
    "threeten", "fourten", "fivten",
];

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(DIR).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Minimal checkpoint reading: origin, size and base64 root are lines 1-3.
fn checkpoint(n: u64) -> (String, u64, Hash) {
    let text = String::from_utf8(read(&format!("checkpoint.{n}"))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    (
        lines[0].to_string(),
        lines[1].parse().unwrap(),
        Hash::from_base64(lines[2]).unwrap(),
    )
}

#[test]
fn tessera_partial_tiles_and_bundles() {
    for n in 1..=15u16 {
        let tile = Tile {
            level: 0,
            index: 0,
            width: n,
        };
        let bundle = Bundle { index: 0, width: n };
        let tile_path = format!("tile/0/000.p/{n}");
        let bundle_path = format!("tile/entries/000.p/{n}");
        assert_eq!(tile.path(), tile_path);
        assert_eq!(bundle.path(), bundle_path);
        assert_eq!(parse_path(&tile_path), Ok(TilePath::Hashes(tile)));
        assert_eq!(parse_path(&bundle_path), Ok(TilePath::Entries(bundle)));

        let entries = decode_bundle(&read(&bundle_path)).unwrap();
        let want: Vec<Vec<u8>> = ENTRIES[..n as usize]
            .iter()
            .map(|e| e.as_bytes().to_vec())
            .collect();
        assert_eq!(entries, want, "bundle {n}");
        assert_eq!(parse_bundle(&read(&bundle_path), bundle).unwrap(), want);

        let hashes = parse_tile_data(&read(&tile_path), n).unwrap();
        let leaves: Vec<Hash> = want.iter().map(|e| leaf_hash(e)).collect();
        assert_eq!(hashes, leaves, "tile {n}");

        let (origin, size, root) = checkpoint(n.into());
        assert_eq!(origin, "example.com/log/testdata");
        assert_eq!(size, u64::from(n));
        assert_eq!(root_from_leaf_hashes(&leaves), root, "root of size {n}");
    }
}

#[test]
fn tessera_latest_checkpoint_and_empty_tree() {
    let (_, size, root) = checkpoint(15);
    assert_eq!(size, 15);
    assert_eq!(
        root.to_base64(),
        "rKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs="
    );
    assert_eq!(read("checkpoint"), read("checkpoint.15"));
    let (_, size0, root0) = checkpoint(0);
    assert_eq!(size0, 0);
    assert_eq!(root_from_leaf_hashes(&[]), root0);
}
