//! Property tests for the merkle and tiles modules, cross-checked against an
//! independent implementation (rs_merkle 1.5 with an RFC 6962 hasher).

use candor_core::hash::{Hash, leaf_hash, node_hash, sha256};
use candor_core::merkle::{
    Frontier, MemoryTree, consistency_proof, inclusion_proof, root_from_leaf_hashes, tree_hash,
    verify_consistency, verify_inclusion,
};
use candor_core::tiles::{
    Bundle, Tile, TileHashReader, TilePath, VerifiedTileHashReader, decode_bundle, encode_bundle,
    parse_path, parse_tile_data, read_tile_data, tiles_for_size,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// RFC 6962 interior-node hashing for rs_merkle. Leaves are given to rs_merkle
/// already as RFC 6962 leaf hashes (0x00 prefix applied by us). rs_merkle carries a
/// lone left node up unchanged, which yields the same left-balanced tree as RFC 6962.
#[derive(Clone)]
struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        sha256(data).0
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}

fn leaves(n: u64, seed: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn roots_and_inclusion_proofs_match_rs_merkle(
        size in 1u64..=10_000,
        pick in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let ls = leaves(size, seed);
        let tree = MemoryTree::from_leaf_hashes(&ls);
        let raw: Vec<[u8; 32]> = ls.iter().map(|h| h.0).collect();
        let rs = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&raw);
        let root = tree.root();
        prop_assert_eq!(Some(root.0), rs.root());
        prop_assert_eq!(root_from_leaf_hashes(&ls), root);

        for index in [pick % size, 0, size - 1] {
            let ours = tree.inclusion_proof(index, size).unwrap();
            let theirs: Vec<Hash> = rs
                .proof(&[index as usize])
                .proof_hashes()
                .iter()
                .map(|h| Hash(*h))
                .collect();
            prop_assert_eq!(&ours, &theirs);
            prop_assert!(verify_inclusion(index, size, &ls[index as usize], &ours, &root).is_ok());
        }
    }

    #[test]
    fn frontier_root_equals_memory_tree_root(size in 0u64..2_000, seed in any::<u64>()) {
        let ls = leaves(size, seed);
        let mut f = Frontier::new();
        for l in &ls {
            f.append(*l);
        }
        let tree = MemoryTree::from_leaf_hashes(&ls);
        prop_assert_eq!(f.size(), size);
        prop_assert_eq!(f.root(), tree.root());
        let back: Frontier = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        prop_assert_eq!(back, f);
    }

    #[test]
    fn tile_paths_round_trip(level in 0u8..=63, index in any::<u64>(), width in 1u16..=256) {
        let t = Tile { level, index, width };
        prop_assert_eq!(parse_path(&t.path()), Ok(TilePath::Hashes(t)));
        let b = Bundle { index, width };
        prop_assert_eq!(parse_path(&b.path()), Ok(TilePath::Entries(b)));
    }

    #[test]
    fn small_tile_paths_round_trip(level in 0u8..=8, index in 0u64..5_000, width in 1u16..=256) {
        let t = Tile { level, index, width };
        prop_assert_eq!(parse_path(&t.path()), Ok(TilePath::Hashes(t)));
    }

    /// Whatever the parser accepts is canonical: printing it gives back the input.
    #[test]
    fn accepted_paths_are_canonical(s in "(/)?tile/(entries|[0-9x]{1,3})/([0-9x./p]{1,6}/){0,3}[0-9x.p/]{0,8}") {
        if let Ok(p) = parse_path(&s) {
            let printed = match p {
                TilePath::Hashes(t) => t.path(),
                TilePath::Entries(b) => b.path(),
            };
            prop_assert_eq!(printed, s);
        }
    }

    #[test]
    fn bad_widths_levels_and_groups_are_rejected(
        index in 0u64..1_000_000,
        bad_width in prop_oneof![Just(0u32), 256u32..100_000],
        bad_level in 64u32..100_000,
        short in "[0-9]{1,2}",
        long in "[0-9]{4,6}",
    ) {
        let good = Tile { level: 0, index, width: 256 }.path();
        let idx = good["tile/0/".len()..].to_string();
        let bad = [
            format!("{good}.p/{bad_width}"),
            format!("tile/entries/{idx}.p/{bad_width}"),
            format!("tile/{bad_level}/{idx}"),
            format!("tile/0/{short}"),
            format!("tile/0/{long}"),
            format!("tile/0/{short}/000"),
            format!("tile/0/x{short}/000"),
            format!("/{good}"),
            format!("{good}/"),
            format!("{good}.p/1/junk"),
            format!("{good}.p/01"),
            format!("{good}é"),
            format!("tile/0/x000/{idx}"),
        ];
        for p in &bad {
            prop_assert!(parse_path(p).is_err(), "accepted {}", p);
        }
    }

    #[test]
    fn bundles_round_trip_and_truncation_fails(
        entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..=256),
        cut in any::<prop::sample::Index>(),
    ) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let bytes = encode_bundle(&refs).unwrap();
        prop_assert_eq!(decode_bundle(&bytes).unwrap(), entries.clone());
        // Cutting anywhere except at an entry boundary must fail; at a boundary it
        // yields a strict prefix of the entries.
        let at = cut.index(bytes.len());
        if let Ok(prefix) = decode_bundle(&bytes[..at]) {
            prop_assert!(prefix.len() < entries.len());
            prop_assert_eq!(&prefix[..], &entries[..prefix.len()]);
        }
        // One extra byte is always a truncated next entry.
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(decode_bundle(&longer).is_err());
    }

    #[test]
    fn tile_data_length_must_match_width(width in 1u16..=256, extra in 1usize..32) {
        let data = vec![0u8; usize::from(width) * 32];
        prop_assert_eq!(parse_tile_data(&data, width).unwrap().len(), usize::from(width));
        prop_assert!(parse_tile_data(&data[..data.len() - extra], width).is_err());
        let mut more = data.clone();
        more.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(parse_tile_data(&more, width).is_err());
    }
}

#[test]
fn consistency_proofs_for_all_pairs_up_to_64() {
    let tree = MemoryTree::from_leaf_hashes(&leaves(65, 7));
    let roots: Vec<Hash> = (0..=65).map(|n| tree.root_at(n).unwrap()).collect();
    for n in 0..=64u64 {
        for m in 0..=n {
            if m == 0 {
                assert!(consistency_proof(m, n, &tree).is_err());
                assert!(verify_consistency(m, n, &roots[0], &roots[n as usize], &[]).is_err());
                continue;
            }
            let (r1, r2) = (roots[m as usize], roots[n as usize]);
            let p = consistency_proof(m, n, &tree).unwrap();
            verify_consistency(m, n, &r1, &r2, &p).unwrap_or_else(|e| panic!("{m}->{n}: {e}"));
            for i in 0..p.len() {
                let mut bad = p.clone();
                bad[i].0[31] ^= 0x80;
                assert!(
                    verify_consistency(m, n, &r1, &r2, &bad).is_err(),
                    "{m}->{n} tamper {i}"
                );
            }
            // Wrong roots.
            assert!(verify_consistency(m, n, &leaf_hash(b"x"), &r2, &p).is_err());
            assert!(verify_consistency(m, n, &r1, &leaf_hash(b"x"), &p).is_err());
            // Sizes off by one, each with the true root of that size.
            let rm = |k: u64| roots[k as usize];
            if m > 1 {
                assert!(
                    verify_consistency(m - 1, n, &rm(m - 1), &r2, &p).is_err(),
                    "{m}-1->{n}"
                );
            }
            if m < n {
                assert!(
                    verify_consistency(m + 1, n, &rm(m + 1), &r2, &p).is_err(),
                    "{m}+1->{n}"
                );
            }
            if n > m {
                assert!(
                    verify_consistency(m, n - 1, &r1, &rm(n - 1), &p).is_err(),
                    "{m}->{n}-1"
                );
            }
            assert!(
                verify_consistency(m, n + 1, &r1, &rm(n + 1), &p).is_err(),
                "{m}->{n}+1"
            );
            // Truncated and extended proofs.
            if !p.is_empty() {
                assert!(verify_consistency(m, n, &r1, &r2, &p[..p.len() - 1]).is_err());
                assert!(verify_consistency(m, n, &r1, &r2, &p[1..]).is_err());
            }
            let mut ext = p.clone();
            ext.push(r1);
            assert!(
                verify_consistency(m, n, &r1, &r2, &ext).is_err(),
                "{m}->{n} extended"
            );
            let mut pre = vec![r1];
            pre.extend_from_slice(&p);
            assert!(
                verify_consistency(m, n, &r1, &r2, &pre).is_err(),
                "{m}->{n} prefixed"
            );
        }
    }
}

#[test]
fn inclusion_proofs_for_all_leaves_up_to_64() {
    let ls = leaves(65, 9);
    let tree = MemoryTree::from_leaf_hashes(&ls);
    for n in 1..=64u64 {
        let root = tree.root_at(n).unwrap();
        for i in 0..n {
            let p = inclusion_proof(i, n, &tree).unwrap();
            verify_inclusion(i, n, &ls[i as usize], &p, &root).unwrap();
            let next_root = tree.root_at(n + 1).unwrap();
            assert!(verify_inclusion(i, n + 1, &ls[i as usize], &p, &next_root).is_err());
            if i + 1 < n {
                assert!(verify_inclusion(i + 1, n, &ls[i as usize], &p, &root).is_err());
            }
            let mut ext = p.clone();
            ext.push(root);
            assert!(verify_inclusion(i, n, &ls[i as usize], &ext, &root).is_err());
            if !p.is_empty() {
                assert!(verify_inclusion(i, n, &ls[i as usize], &p[..p.len() - 1], &root).is_err());
            }
        }
    }
}

#[test]
fn tile_hash_reader_matches_memory_tree_across_tile_boundaries() {
    let max = 65_537u64;
    let tree = MemoryTree::from_leaf_hashes(&leaves(max, 3));
    for size in [
        1u64, 2, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537,
    ] {
        // Tiles exactly as a log of this size serves them.
        let tiles: HashMap<Tile, Vec<u8>> = tiles_for_size(size)
            .into_iter()
            .map(|t| (t, read_tile_data(t, &tree).unwrap()))
            .collect();
        let root = tree.root_at(size).unwrap();
        let plain = TileHashReader::new(size, &tiles);
        let verified = VerifiedTileHashReader::new(size, root, &tiles);
        assert_eq!(tree_hash(size, &plain).unwrap(), root, "size {size}");
        assert_eq!(tree_hash(size, &verified).unwrap(), root, "size {size}");
        for index in [0, size / 2, size.saturating_sub(257), size - 1] {
            let want = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(inclusion_proof(index, size, &plain).unwrap(), want);
            assert_eq!(inclusion_proof(index, size, &verified).unwrap(), want);
        }
        for old in [1, size / 3, size.saturating_sub(1)] {
            if old == 0 {
                continue;
            }
            let want = tree.consistency_proof(old, size).unwrap();
            assert_eq!(consistency_proof(old, size, &plain).unwrap(), want);
            assert_eq!(consistency_proof(old, size, &verified).unwrap(), want);
        }
        // A verified reader with the wrong root refuses everything.
        let wrong = VerifiedTileHashReader::new(size, leaf_hash(b"wrong"), &tiles);
        assert!(tree_hash(size, &wrong).is_err());
        assert!(inclusion_proof(0, size, &wrong).is_err());
    }
}
