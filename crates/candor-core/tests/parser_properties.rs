//! Property tests of every parser of untrusted bytes (issue 6; the CI-sized twin of
//! the cargo-fuzz targets in tools/fuzz): arbitrary bytes never panic and either
//! parse or give an error; valid values round-trip; and a mutated valid encoding is
//! either refused or is itself the one canonical encoding of what it parses to, so
//! no two encodings of one value are accepted where the specs say canonical.

use candor_core::checkpoint::{Checkpoint, sign_checkpoint};
use candor_core::entry::{Entry, Leaf, SignedEntry, samples};
use candor_core::hash::Hash;
use candor_core::note::{Note, SignerKey, VerifierKey};
use candor_core::receipt::{Receipt, ReceiptLink};
use candor_core::tiles::{self, Bundle, Tile, TilePath};
use candor_core::tlog_proof::TlogProof;
use candor_core::trust_policy::Policy;
use candor_core::witness_protocol::{self as protocol, AddCheckpointRequest};
use proptest::prelude::*;
use std::sync::OnceLock;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn log_key() -> &'static SignerKey {
    static KEY: OnceLock<SignerKey> = OnceLock::new();
    KEY.get_or_init(|| SignerKey::from_seed("example.com/log", [9; 32]).expect("key"))
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn checkpoint() -> impl Strategy<Value = Checkpoint> {
    (
        // Sizes are at most 2^63 - 1 (C2SP tlog-checkpoint, as Go's int64).
        0..=i64::MAX as u64,
        hash(),
        proptest::collection::vec("[a-z][a-z0-9 .:/-]{0,20}[a-z]", 0..3),
    )
        .prop_map(|(size, root, extensions)| Checkpoint {
            origin: "example.com/log".into(),
            size,
            root,
            extensions,
        })
}

/// A mutation of `bytes`: flip, insert or delete one byte at `at` (mod length).
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(a, x)| Mutation::Flip(a, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return vec![0];
    }
    match *m {
        Mutation::Flip(a, x) => {
            let i = a % out.len();
            out[i] ^= x;
        }
        Mutation::Insert(a, b) => out.insert(a % (out.len() + 1), b),
        Mutation::Delete(a) => {
            out.remove(a % out.len());
        }
    }
    out
}

/// Strings whose bytes are close to a valid encoding are what finds parser bugs:
/// arbitrary bytes biased toward the alphabet of the text formats.
fn texty_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[ -~\n]{0,300}".prop_map(String::into_bytes),
        "(old |index |extra |tile/|entries/|x0|\\.p/|\n|— |[0-9]|[A-Za-z+/=]){0,80}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary input never panics any parser.
    #[test]
    fn arbitrary_bytes_never_panic(data in texty_bytes()) {
        let _ = Note::parse(&data);
        let _ = TlogProof::parse(&data);
        let _ = tiles::decode_bundle(&data);
        let _ = tiles::parse_tile_data(&data, 1);
        let _ = SignedEntry::parse_json(&data);
        let _ = Entry::parse_json(&data);
        let _ = Leaf::parse(&data);
        let _ = Receipt::from_json(&data);
        let _ = AddCheckpointRequest::parse(&data);
        let _ = protocol::parse_size_body(&data);
        let _ = Policy::parse(&data);
        if let Ok(s) = std::str::from_utf8(&data) {
            let _ = Checkpoint::parse(s);
            let _ = tiles::parse_path(s);
            let _ = ReceiptLink::parse(s);
            let _ = s.parse::<VerifierKey>();
            let _ = s.parse::<SignerKey>();
        }
    }

    /// Checkpoints: valid ones round-trip through a signed note; a mutated text
    /// that still parses re-encodes to exactly itself (canonical).
    #[test]
    fn checkpoints_roundtrip_and_are_canonical(cp in checkpoint(), m in mutation()) {
        let text = cp.to_text();
        let back = Checkpoint::parse(&text).ok();
        prop_assert_eq!(back.as_ref(), Some(&cp));
        let note = sign_checkpoint(&cp, log_key()).expect("sign");
        let parsed = Note::parse(&note).expect("note parses");
        prop_assert_eq!(parsed.to_bytes(), note.clone());
        prop_assert_eq!(parsed.text, text.clone());
        let bad = apply(text.as_bytes(), &m);
        if let Ok(s) = std::str::from_utf8(&bad)
            && let Ok(c) = Checkpoint::parse(s)
        {
            prop_assert_eq!(c.to_text(), s);
            prop_assert_ne!(&c, &cp);
        }
        let bad = apply(&note, &m);
        if let Ok(n) = Note::parse(&bad) {
            // Signature base64 is decoded as Go does (non-zero trailing bits
            // tolerated, spec/notes.md), so the re-encoding is a fixed point rather
            // than always the input; the signed text is kept verbatim.
            let back = Note::parse(&n.to_bytes()).ok();
            prop_assert_eq!(back.as_ref(), Some(&n));
            prop_assert_eq!(n.text.as_bytes(), &bad[..n.text.len()]);
            prop_assert!(candor_core::checkpoint::open_checkpoint(&bad, &log_key().verifier())
                .map(|(c, _)| c == cp)
                .unwrap_or(true), "a mutated note opened to the same checkpoint");
        }
    }

    /// tlog-proof: round-trips; a mutated proof that parses re-encodes to itself.
    #[test]
    fn tlog_proofs_roundtrip(
        cp in checkpoint(),
        index in 0..=i64::MAX as u64,
        proof in proptest::collection::vec(hash(), 0..8),
        extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        m in mutation(),
    ) {
        let p = TlogProof {
            extra,
            index,
            proof,
            checkpoint: sign_checkpoint(&cp, log_key()).expect("sign"),
        };
        let bytes = p.to_bytes();
        let back = TlogProof::parse(&bytes).ok();
        prop_assert_eq!(back.as_ref(), Some(&p));
        let bad = apply(&bytes, &m);
        if let Ok(q) = TlogProof::parse(&bad) {
            prop_assert_eq!(q.to_bytes(), bad);
            prop_assert_ne!(&q, &p);
        }
    }

    /// Tile paths: every valid tile and bundle path round-trips, and a mutated
    /// path that parses prints back to itself (one path per tile).
    #[test]
    fn tile_paths_roundtrip(
        level in 0u8..=63,
        index in any::<u64>(),
        width in 1u16..=256,
        entries in any::<bool>(),
        m in mutation(),
    ) {
        let path = if entries {
            Bundle::new(index, width).expect("bundle").path()
        } else {
            Tile::new(level, index, width).expect("tile").path()
        };
        let parsed = tiles::parse_path(&path).expect("valid path parses");
        let back = match parsed {
            TilePath::Hashes(t) => t.path(),
            TilePath::Entries(b) => b.path(),
        };
        prop_assert_eq!(&back, &path);
        let bad = apply(path.as_bytes(), &m);
        if let Ok(s) = std::str::from_utf8(&bad)
            && let Ok(p) = tiles::parse_path(s)
        {
            let again = match p {
                TilePath::Hashes(t) => t.path(),
                TilePath::Entries(b) => b.path(),
            };
            prop_assert_eq!(again, s);
        }
    }

    /// Tile data is exactly width × 32 bytes.
    #[test]
    fn tile_data_has_exact_length(hashes in proptest::collection::vec(hash(), 1..=256), m in mutation()) {
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
        let width = hashes.len() as u16;
        prop_assert_eq!(tiles::parse_tile_data(&bytes, width).expect("valid"), hashes);
        let bad = apply(&bytes, &m);
        if bad.len() != bytes.len() {
            prop_assert!(tiles::parse_tile_data(&bad, width).is_err());
        }
    }

    /// Entry bundles round-trip; a mutated bundle that decodes re-encodes to itself.
    #[test]
    fn bundles_roundtrip(
        leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
        m in mutation(),
    ) {
        let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
        let bytes = tiles::encode_bundle(&refs).expect("encode");
        prop_assert_eq!(tiles::decode_bundle(&bytes).expect("decode"), leaves.clone());
        let b = Bundle::new(0, leaves.len() as u16).expect("bundle");
        prop_assert!(tiles::parse_bundle(&bytes, b).is_ok());
        let bad = apply(&bytes, &m);
        if let Ok(d) = tiles::decode_bundle(&bad) {
            let refs: Vec<&[u8]> = d.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(tiles::encode_bundle(&refs).expect("re-encode"), bad);
        }
    }

    /// Entries and leaves: a signed sample round-trips as a submission and as a
    /// leaf; leaves accept only their canonical bytes, so a mutated leaf that
    /// parses is a different leaf with its own single encoding.
    #[test]
    fn entries_and_leaves_roundtrip(n in 0u64..10_000, secs in 946_684_800i64..4_000_000_000, m in mutation()) {
        let key = samples::signing_key("props.example");
        let vkey = candor_core::note::VerifierKey::new(
            "props.example",
            candor_core::note::KeyType::Ed25519,
            key.verifying_key(),
        )
        .expect("vkey");
        let entry = samples::load_targeting_decision("props.example", n);
        let signed = SignedEntry::sign(entry, &key, vkey.key_id()).expect("sign");
        let json = serde_json::to_vec(&signed).expect("json");
        let parsed = SignedEntry::parse_json(&json).expect("submission parses");
        prop_assert_eq!(&parsed, &signed);
        prop_assert!(parsed.verify(&key.verifying_key()).is_ok());
        let t = time::OffsetDateTime::from_unix_timestamp(secs).expect("time");
        let leaf = Leaf::new(signed.clone(), candor_core::entry::format_time(t));
        let bytes = leaf.to_bytes().expect("leaf bytes");
        let back = Leaf::parse(&bytes).ok();
        prop_assert_eq!(back.as_ref(), Some(&leaf));
        let bad = apply(&bytes, &m);
        if let Ok(l) = Leaf::parse(&bad) {
            prop_assert_eq!(l.to_bytes().expect("re-encode"), bad);
            prop_assert_ne!(&l, &leaf);
        }
        // A mutated submission either fails to parse or verifies exactly when it
        // still carries the same signature over the same signed message.
        let bad = apply(&json, &m);
        if let Ok(s) = SignedEntry::parse_json(&bad) {
            let same = s.signature == signed.signature
                && s.entry.signed_message().ok() == signed.entry.signed_message().ok();
            prop_assert_eq!(s.verify(&key.verifying_key()).is_ok(), same);
        }
    }

    /// Witness requests round-trip; a mutated request that parses re-encodes to itself.
    #[test]
    fn witness_requests_roundtrip(
        cp in checkpoint(),
        old in any::<u64>(),
        proof in proptest::collection::vec(hash(), 0..8),
        m in mutation(),
    ) {
        let req = AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: sign_checkpoint(&cp, log_key()).expect("sign"),
        };
        let bytes = req.to_bytes();
        let back = AddCheckpointRequest::parse(&bytes).ok();
        prop_assert_eq!(back.as_ref(), Some(&req));
        let bad = apply(&bytes, &m);
        if let Ok(r) = AddCheckpointRequest::parse(&bad) {
            prop_assert_eq!(r.to_bytes(), bad);
        }
        prop_assert_eq!(protocol::parse_size_body(protocol::format_size_body(old).as_bytes()), Ok(old));
    }

    /// Receipt links round-trip; a mutated fragment that parses prints back to itself.
    #[test]
    fn receipt_links_roundtrip(index in any::<u64>(), h in hash(), salted in any::<bool>(), m in mutation()) {
        let salt = salted.then(|| samples::opening("a@example.com", index).salt);
        let link = ReceiptLink { index, leaf_hash: h, salt };
        let url = link.url("https://log.example");
        let (base, parsed) = ReceiptLink::parse(&url).expect("link parses");
        prop_assert_eq!(base.as_deref(), Some("https://log.example"));
        prop_assert_eq!(&parsed, &link);
        let frag = link.fragment();
        let bad = apply(frag.as_bytes(), &m);
        if let Ok(s) = std::str::from_utf8(&bad)
            && let Ok(l) = ReceiptLink::parse_fragment(s)
        {
            prop_assert_eq!(l.fragment(), s);
        }
    }

    /// Verifier keys print back to themselves; a mutated key that parses too.
    #[test]
    fn verifier_keys_roundtrip(seed in any::<[u8; 32]>(), m in mutation()) {
        let k = SignerKey::from_seed("acme.example", seed).expect("key").verifier();
        let s = k.to_string();
        prop_assert_eq!(s.parse::<VerifierKey>().expect("parses").to_string(), s.clone());
        let bad = apply(s.as_bytes(), &m);
        if let Ok(t) = std::str::from_utf8(&bad)
            && let Ok(v) = t.parse::<VerifierKey>()
        {
            // Keys decode base64 as Go does (spec/notes.md): printing is a fixed point.
            let printed = v.to_string();
            prop_assert_eq!(printed.parse::<VerifierKey>().expect("parses").to_string(), printed);
        }
    }
}

/// Regression (cargo fuzz `note`, crash-394b975c): a signature line whose base64 has
/// non-zero trailing bits parses (as Go's decoder allows, spec/notes.md) and
/// re-encodes canonically to a fixed point, keeping the text verbatim.
#[test]
fn note_with_noncanonical_signature_base64_reencodes_to_a_fixed_point() {
    let input: &[u8] = &[
        10, 10, 36, 62, 36, 62, 10, 10, 226, 128, 148, 32, 46, 226, 128, 156, 35, 32, 114, 48, 47,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
        66, 66, 66, 66, 66, 66, 48, 73, 73, 61, 61, 10,
    ];
    let n = Note::parse(input).expect("parses");
    let bytes = n.to_bytes();
    assert_ne!(bytes, input, "the trailing bits are normalised");
    assert_eq!(Note::parse(&bytes).expect("re-parses"), n);
    assert_eq!(n.to_bytes(), bytes);
}
