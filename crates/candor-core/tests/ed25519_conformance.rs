//! Candor's Ed25519 rule (spec/entries.md §7.1) against published vectors and a
//! maintained ZIP-215 implementation, alone and in batches at every position.
//!
//! Vectors: `shared/conformance/ed25519/` (Wycheproof's 151 cases, and the 12 cases of
//! "Taming the many EdDSAs"). Reference: `ed25519-zebra` (ZIP-215, the cofactored
//! equation) behind encoding checks written here independently of Candor's.
//!
//! Each run goes through one path of `src/ed25519_points.rs` and
//! `src/sha512_lanes.rs`: the eight-lane fast path where the CPU has AVX-512 IFMA, or
//! the portable one with `CANDOR_ED25519_PORTABLE=1`. tools/test.sh runs this file
//! both ways; [`path_under_test`] fails a run that claims the fast path without it.

use candor_core::ed25519_strict::{self, BatchError};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha512};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/ed25519"
);

/// Which path this run tests, failing where that is not the path that runs: with
/// `CANDOR_ED25519_PORTABLE` the portable one; else on a CPU with AVX-512 IFMA the
/// fast one (a self-test that refuses it fails here, it does not fall back unseen).
/// Without IFMA the run compares the portable path with itself and says so, and
/// `CANDOR_REQUIRE_FAST_PATH=1` (tools/test.sh) makes that a failure.
fn path_under_test() -> &'static str {
    use candor_core::ed25519_points;
    use candor_core::sha512_lanes;
    if ed25519_points::portable_requested() {
        assert!(!ed25519_points::vectorised() && !sha512_lanes::vectorised());
        return "portable (CANDOR_ED25519_PORTABLE)";
    }
    if ed25519_points::fast_path_supported() {
        assert!(
            ed25519_points::vectorised(),
            "AVX-512 IFMA present but the fast path's self-test refused it"
        );
        assert!(
            sha512_lanes::vectorised(),
            "the SHA-512 lanes' self-test failed"
        );
        return "fast (AVX-512 IFMA)";
    }
    assert!(
        std::env::var_os("CANDOR_REQUIRE_FAST_PATH").is_none_or(|v| v == "0"),
        "CANDOR_REQUIRE_FAST_PATH is set but this CPU has no AVX-512 IFMA"
    );
    eprintln!(
        "NOTE: no AVX-512 IFMA on this CPU: the portable path is compared with itself; \
         this run does not test the fast path"
    );
    "portable (no IFMA)"
}

#[test]
fn the_path_under_test_is_the_one_that_runs() {
    eprintln!("ed25519 path under test: {}", path_under_test());
}

/// One verification case as the vectors give it: bytes of any length.
struct Case {
    name: String,
    key: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
}

/// The key and signature, if they are what Candor's parsers pass on to verification:
/// 32 bytes that decode to a point, and 64 bytes. Anything else never reaches it.
fn parsed(c: &Case) -> Option<(VerifyingKey, Signature)> {
    let key = VerifyingKey::from_bytes(&<[u8; 32]>::try_from(c.key.as_slice()).ok()?).ok()?;
    let sig = Signature::from_bytes(&<[u8; 64]>::try_from(c.sig.as_slice()).ok()?);
    Some((key, sig))
}

fn single(c: &Case) -> bool {
    parsed(c).is_some_and(|(k, s)| ed25519_strict::verify(&k, &c.msg, &s).is_ok())
}

/// Fifteen valid signatures by three keys, to fill batches.
fn fillers() -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
    let keys: Vec<SigningKey> = (0..3)
        .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..15)
        .map(|i| format!("filler {i}").into_bytes())
        .collect();
    let sigs = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 3].sign(m))
        .collect();
    let vks = (0..15).map(|i| keys[i % 3].verifying_key()).collect();
    (msgs, sigs, vks)
}

/// The case at each of the 16 positions of a batch of 16 gets its single verdict.
fn batches_agree(c: &Case) {
    let Some((key, sig)) = parsed(c) else {
        return;
    };
    let alone = ed25519_strict::verify(&key, &c.msg, &sig).is_ok();
    let (msgs, sigs, keys) = fillers();
    for at in 0..16 {
        let mut m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let (mut s, mut k) = (sigs.clone(), keys.clone());
        m.insert(at, &c.msg);
        s.insert(at, sig);
        k.insert(at, key);
        let batch = ed25519_strict::verify_batch(&m, &s, &k);
        assert_ne!(batch, Err(BatchError::Random));
        assert_eq!(
            batch.is_ok(),
            alone,
            "{} at position {at}: {batch:?}",
            c.name
        );
    }
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("{field}"))).expect("hex")
}

fn read_json(name: &str) -> Value {
    let path = format!("{DIR}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("JSON")
}

/// Wycheproof: each case's expected result, alone and at every position of a batch.
#[test]
fn wycheproof_vectors_single_and_in_batches() {
    eprintln!("path: {}", path_under_test());
    let doc = read_json("ed25519_test.json");
    let mut cases = 0;
    let mut valid = 0;
    for group in doc["testGroups"].as_array().expect("groups") {
        let key = hex_field(&group["publicKey"], "pk");
        for t in group["tests"].as_array().expect("tests") {
            let c = Case {
                name: format!("wycheproof {} {:?}", t["tcId"], t["flags"]),
                key: key.clone(),
                msg: hex_field(t, "msg"),
                sig: hex_field(t, "sig"),
            };
            let want = t["result"] == "valid";
            assert_eq!(single(&c), want, "{}", c.name);
            batches_agree(&c);
            cases += 1;
            valid += usize::from(want);
        }
    }
    assert_eq!(cases, 151);
    assert_eq!(
        cases,
        doc["numberOfTests"].as_u64().expect("count") as usize
    );
    assert!(valid > 80, "{valid} valid cases");
}

/// "Taming the many EdDSAs": Candor's verdicts, with why.
#[test]
fn speccheck_cases_single_and_in_batches() {
    eprintln!("path: {}", path_under_test());
    // 0-2: small-order A or R (refused by rule 3). 3: plain valid signature with
    // mixed-order A and R. 4, 5: valid only under the cofactored equation (the cases
    // a cofactorless batch and a cofactorless single check disagree on). 6, 7: S ≥ ℓ.
    // 8, 9: non-canonical R; 10, 11: non-canonical A (rule 2).
    let want = [
        false, false, false, true, true, true, false, false, false, false, false, false,
    ];
    let doc = read_json("speccheck_cases.json");
    let cases = doc.as_array().expect("array");
    assert_eq!(cases.len(), 12);
    for (i, v) in cases.iter().enumerate() {
        let c = Case {
            name: format!("speccheck case {i}"),
            key: hex_field(v, "pub_key"),
            msg: hex_field(v, "message"),
            sig: hex_field(v, "signature"),
        };
        assert_eq!(single(&c), want[i], "{}", c.name);
        batches_agree(&c);
        // Candor's verdict is ZIP-215's behind the encoding checks.
        assert_eq!(single(&c), reference(&c), "{}", c.name);
    }
    // Case 5 is the one of issue #23: refused by the cofactorless single check.
    let c5 = &cases[5];
    let (key, sig) = parsed(&Case {
        name: String::new(),
        key: hex_field(c5, "pub_key"),
        msg: vec![],
        sig: hex_field(c5, "signature"),
    })
    .expect("case 5 parses");
    assert!(key.verify_strict(&hex_field(c5, "message"), &sig).is_err());
}

/// The rule's encoding checks, written from RFC 8032 independently of Candor's byte
/// comparisons: S below ℓ; A and R decode, re-encode to the same bytes, and are not
/// of small order.
fn strict_encodings(key: &[u8], sig: &[u8]) -> bool {
    let point_ok = |b: &[u8]| {
        let Ok(b) = <[u8; 32]>::try_from(b) else {
            return false;
        };
        CompressedEdwardsY(b)
            .decompress()
            .is_some_and(|p| p.compress().to_bytes() == b && !p.is_small_order())
    };
    sig.len() == 64
        && point_ok(key)
        && point_ok(&sig[..32])
        && Option::<Scalar>::from(Scalar::from_canonical_bytes(
            sig[32..].try_into().expect("32 bytes"),
        ))
        .is_some()
}

/// ZIP-215 (ed25519-zebra) behind the independent encoding checks.
fn reference(c: &Case) -> bool {
    if !strict_encodings(&c.key, &c.sig) {
        return false;
    }
    let Ok(key) = ed25519_zebra::VerificationKey::try_from(c.key.as_slice()) else {
        return false;
    };
    let sig = ed25519_zebra::Signature::from_bytes(&c.sig.as_slice().try_into().expect("64"));
    key.verify(&sig, &c.msg).is_ok()
}

fn challenge(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(m);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// What the property test does to an honest signature.
#[derive(Debug, Clone, Copy)]
enum Twist {
    Honest,
    /// `R = [r]B + T`, `s` made for that `R`.
    TorsionR(usize),
    /// `A = [a]B + T`, signed with `a`.
    TorsionKey(usize),
    Both(usize, usize),
    /// One bit of the signature flipped.
    Flip(usize),
    /// `s + ℓ`.
    SPlusEll,
    /// `R` a small-order point and `s = k·a` (passes the plain equation).
    SmallR(usize),
    /// `R` spelled with `y + p` where that decodes.
    HighR,
    /// The signature for another message.
    OtherMessage,
}

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        Just(Twist::Honest),
        (0..8usize).prop_map(Twist::TorsionR),
        (0..8usize).prop_map(Twist::TorsionKey),
        (0..8usize, 0..8usize).prop_map(|(a, b)| Twist::Both(a, b)),
        (0..512usize).prop_map(Twist::Flip),
        Just(Twist::SPlusEll),
        (0..8usize).prop_map(Twist::SmallR),
        Just(Twist::HighR),
        Just(Twist::OtherMessage),
    ]
}

const ELL: [u8; 32] = {
    let mut l = [0u8; 32];
    let low = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14,
    ];
    let mut i = 0;
    while i < 16 {
        l[i] = low[i];
        i += 1;
    }
    l[31] = 0x10;
    l
};

/// A signature by the key of `seed` over `msg`, twisted; the key bytes and signature.
fn make(seed: [u8; 32], nonce: [u8; 32], msg: &[u8], t: Twist) -> ([u8; 32], [u8; 64]) {
    let sk = SigningKey::from_bytes(&seed);
    let a = sk.to_scalar();
    let r = Scalar::from_bytes_mod_order(nonce);
    let (key_t, r_t) = match t {
        Twist::TorsionKey(i) => (EIGHT_TORSION[i], EIGHT_TORSION[0]),
        Twist::TorsionR(i) => (EIGHT_TORSION[0], EIGHT_TORSION[i]),
        Twist::Both(i, j) => (EIGHT_TORSION[i], EIGHT_TORSION[j]),
        _ => (EIGHT_TORSION[0], EIGHT_TORSION[0]),
    };
    let key: EdwardsPoint = ED25519_BASEPOINT_POINT * a + key_t;
    let key = key.compress().to_bytes();
    let mut big_r = (ED25519_BASEPOINT_POINT * r + r_t).compress().to_bytes();
    if let Twist::SmallR(i) = t {
        big_r = EIGHT_TORSION[i].compress().to_bytes();
    }
    let signed_msg: &[u8] = if matches!(t, Twist::OtherMessage) {
        b"another message"
    } else {
        msg
    };
    let k = challenge(&big_r, &key, signed_msg);
    let s = match t {
        Twist::SmallR(_) => k * a,
        _ => r + k * a,
    };
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    match t {
        Twist::Flip(bit) => sig[bit / 8] ^= 1 << (bit % 8),
        Twist::SPlusEll => {
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(sig[32 + i]) + u16::from(ELL[i]) + carry;
                sig[32 + i] = v as u8;
                carry = v >> 8;
            }
        }
        Twist::HighR => {
            // y + p < 2^255 only for y < 19; otherwise keep the canonical R.
            let mut y = big_r;
            y[31] &= 0x7f;
            if y[1..].iter().all(|&b| b == 0) && y[0] < 19 {
                let sign = big_r[31] & 0x80;
                let mut high = [0xffu8; 32];
                high[0] = 0xed + y[0];
                high[31] = 0x7f | sign;
                sig[..32].copy_from_slice(&high);
            }
        }
        _ => {}
    }
    (key, sig)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Differential: Candor's verdict equals ZIP-215's behind the encoding checks, for
    /// honest, torsion-twisted, tampered and malformed signatures, and the verdict of a
    /// batch holding the signature at any position equals the single one.
    #[test]
    fn candor_is_zip215_behind_strict_encodings(
        seed in any::<[u8; 32]>(),
        nonce in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        t in twist(),
        at in 0..9usize,
    ) {
        let (key, sig) = make(seed, nonce, &msg, t);
        let c = Case { name: format!("{t:?}"), key: key.to_vec(), msg: msg.clone(), sig: sig.to_vec() };
        let candor = single(&c);
        prop_assert_eq!(candor, reference(&c), "{:?}", t);
        if matches!(t, Twist::Honest | Twist::TorsionR(_) | Twist::TorsionKey(_) | Twist::Both(..)) {
            prop_assert!(candor, "{:?} is valid", t);
        }
        if let Some((k, s)) = parsed(&c) {
            let (msgs, sigs, keys) = fillers();
            let mut m: Vec<&[u8]> = msgs[..8].iter().map(Vec::as_slice).collect();
            let (mut ss, mut ks) = (sigs[..8].to_vec(), keys[..8].to_vec());
            m.insert(at, &msg);
            ss.insert(at, s);
            ks.insert(at, k);
            prop_assert_eq!(ed25519_strict::verify_batch(&m, &ss, &ks).is_ok(), candor, "{:?} at {}", t, at);
        }
    }
}
