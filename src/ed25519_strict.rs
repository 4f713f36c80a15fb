//! Ed25519 verification with exactly the rules of ed25519-dalek's `verify_strict`
//! (RFC 8032 §5.1.7, canonical `S`, and no small-order key or `R`), at the cost of
//! the plain check.
//!
//! `verify_strict` decompresses `R` only to reject a small-order `R`, and the
//! decompression (a square root) costs about a fifth of the verification (25.0
//! against 19.2 µs here, BENCHMARKS.md). The same verdict needs no decompression:
//! the plain check accepts only if the recomputed `R`,
//! compressed, equals the signature's `R` bytes, and compression yields only
//! canonical encodings, so an `R` that does not decode, or decodes non-canonically,
//! is rejected by it anyway; what remains is a canonical encoding of one of the
//! eight small-order points, which are compared byte for byte.
//!
//! [`verify_batch`] checks many signatures with one multiscalar multiplication, as
//! `ed25519_dalek::verify_batch` does, but gathers the terms of each distinct key
//! into one: a log's batch holds thousands of signatures by a handful of keys, so the
//! multiplication has about `n` points instead of `2n`. It decodes the signatures'
//! `R` and hashes their challenges together ([`crate::ed25519_points`],
//! [`crate::sha512_lanes`]: eight at a time where the CPU has AVX-512).

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, SignatureError, Verifier, VerifyingKey};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The canonical encodings of the eight points of order dividing 8.
static SMALL_ORDER_ENCODINGS: LazyLock<[[u8; 32]; 8]> =
    LazyLock::new(|| EIGHT_TORSION.map(|p| p.compress().to_bytes()));

/// Accepts exactly the signatures `key.verify_strict(message, signature)` accepts.
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    if key.is_weak() || SMALL_ORDER_ENCODINGS.contains(signature.r_bytes()) {
        // The same opaque error verify_strict gives.
        return key.verify_strict(message, signature);
    }
    key.verify(message, signature)
}

/// Why a batch was refused. Like any batch verification it does not say which
/// signature is bad: the caller finds it with [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("messages, signatures and keys differ in number")]
    Lengths,
    #[error("a key or a signature breaks the strict rules")]
    Malformed,
    #[error("the batch equation does not hold")]
    Equation,
}

/// Accepts the batch iff, with overwhelming probability, every signature passes the
/// RFC 8032 §5.1.7 equation `[s]B = R + [k]A` (`k = SHA-512(R ‖ A ‖ M)`), and every
/// signature and key passes the strict rules of [`verify`] (canonical `s`, canonical
/// `R` that is not of small order, no small-order key), which are checked one by one.
///
/// The check is `[-Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ_A [Σ_{i signed by A} zᵢkᵢ]A = 0` with
/// 128-bit `zᵢ` drawn from SHA-512 over every `k` and `s` of the batch, so no signer
/// can choose them. It is the equation of `ed25519_dalek::verify_batch` (which draws
/// `z` from a Merlin transcript of the same values), with equal keys' terms summed.
/// Like it, it is not multiplied by the cofactor: a signature whose `R` is off by a
/// small-order point fails single verification but may pass a batch.
pub fn verify_batch(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> Result<(), BatchError> {
    let n = signatures.len();
    if messages.len() != n || keys.len() != n {
        return Err(BatchError::Lengths);
    }
    if n == 0 {
        return Ok(());
    }
    // The distinct keys, in order of first use; `slot[i]` is signature i's.
    let mut distinct: HashMap<[u8; 32], usize> = HashMap::new();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut slot = Vec::with_capacity(n);
    for key in keys {
        let next = key_points.len();
        let at = *distinct.entry(key.to_bytes()).or_insert(next);
        if at == next {
            if key.is_weak() {
                return Err(BatchError::Malformed);
            }
            key_points.push(key.to_edwards());
        }
        slot.push(at);
    }
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(n + 1 + key_points.len());
    points.push(ED25519_BASEPOINT_POINT);

    let mut ss = Vec::with_capacity(n);
    let mut ks = Vec::with_capacity(n);
    let mut seed = Sha512::new();
    seed.update(b"candor ed25519 batch v1");
    seed.update((n as u64).to_le_bytes());
    let r_bytes: Vec<[u8; 32]> = signatures.iter().map(|s| *s.r_bytes()).collect();
    let decoded = crate::ed25519_points::decompress_many(&r_bytes);
    // k = SHA-512(R ‖ A ‖ M) of every signature, eight at a time where the CPU can.
    let challenge_input: Vec<[&[u8]; 3]> = r_bytes
        .iter()
        .zip(keys)
        .zip(messages)
        .map(|((r, key), msg)| [r.as_slice(), key.as_bytes().as_slice(), *msg])
        .collect();
    let challenges = crate::sha512_lanes::sha512_many(&challenge_input);
    for ((sig, r), hash) in signatures.iter().zip(decoded).zip(challenges) {
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes()))
            .ok_or(BatchError::Malformed)?;
        let r = strict_r(sig.r_bytes(), r).ok_or(BatchError::Malformed)?;
        let k = Scalar::from_bytes_mod_order_wide(&hash);
        seed.update(k.as_bytes());
        seed.update(s.as_bytes());
        ss.push(s);
        ks.push(k);
        points.push(r);
    }
    let seed: [u8; 64] = seed.finalize().into();

    let mut scalars: Vec<Scalar> = Vec::with_capacity(n + 1 + key_points.len());
    scalars.push(Scalar::ZERO);
    let mut b = Scalar::ZERO;
    let mut per_key = vec![Scalar::ZERO; key_points.len()];
    let mut block = [0u8; 64];
    for i in 0..n {
        // Four 128-bit z per SHA-512 block.
        if i % 4 == 0 {
            let mut h = Sha512::new();
            h.update(seed);
            h.update((i as u64).to_le_bytes());
            block = h.finalize().into();
        }
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(&block[(i % 4) * 16..(i % 4) * 16 + 16]);
        let z = Scalar::from_bytes_mod_order(z);
        b += z * ss[i];
        per_key[slot[i]] += z * ks[i];
        scalars.push(z);
    }
    scalars[0] = -b;
    scalars.extend(per_key);
    points.extend(key_points);
    if EdwardsPoint::vartime_multiscalar_mul(&scalars, &points).is_identity() {
        Ok(())
    } else {
        Err(BatchError::Equation)
    }
}

/// `R` as [`verify`] accepts it, given what its bytes decode to: its canonical
/// encoding, of a point not of small order. The encodings that decode but are not
/// canonical are `y ≥ p` and `x = 0` with the sign bit set; `x = 0` holds only for
/// two small-order points.
fn strict_r(bytes: &[u8; 32], decoded: Option<EdwardsPoint>) -> Option<EdwardsPoint> {
    // y ≥ p = 2^255 − 19, sign bit ignored: 0x7fff…ffed or above.
    let y_high = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff);
    if y_high && bytes[0] >= 0xed {
        return None;
    }
    let r = decoded?;
    (!is_small_order_y(bytes)).then_some(r)
}

/// Whether a point that decodes from these canonical bytes is of small order. Each
/// `y` has at most the two points `(±x, y)`, and the small-order points come in such
/// pairs (or have `x = 0`), so `y` alone decides; comparing it costs nothing beside
/// the three doublings of `is_small_order`.
fn is_small_order_y(bytes: &[u8; 32]) -> bool {
    static SMALL_ORDER_Y: LazyLock<[[u8; 32]; 8]> = LazyLock::new(|| {
        SMALL_ORDER_ENCODINGS.map(|mut y| {
            y[31] &= 0x7f;
            y
        })
    });
    let mut y = *bytes;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// Same verdict as verify_strict, for valid, tampered and crafted signatures.
    #[test]
    fn agrees_with_verify_strict() {
        let mut cases: Vec<(VerifyingKey, Vec<u8>, Signature)> = Vec::new();
        for seed in 0..16u8 {
            let sk = key(seed);
            let msg = vec![seed; 40 + seed as usize];
            let sig = sk.sign(&msg);
            cases.push((sk.verifying_key(), msg.clone(), sig));
            // Tampered message, R, and S.
            cases.push((sk.verifying_key(), [msg.as_slice(), b"x"].concat(), sig));
            let mut b = sig.to_bytes();
            b[seed as usize % 32] ^= 1;
            cases.push((sk.verifying_key(), msg.clone(), Signature::from_bytes(&b)));
            let mut b = sig.to_bytes();
            b[32 + seed as usize % 31] ^= 1;
            cases.push((sk.verifying_key(), msg.clone(), Signature::from_bytes(&b)));
            // R replaced by each small-order point, S zero and S from the signature.
            for r in SMALL_ORDER_ENCODINGS.iter() {
                for s in [[0u8; 32], sig.s_bytes().to_owned()] {
                    let mut b = [0u8; 64];
                    b[..32].copy_from_slice(r);
                    b[32..].copy_from_slice(&s);
                    cases.push((sk.verifying_key(), msg.clone(), Signature::from_bytes(&b)));
                }
            }
        }
        // A small-order (weak) key with R = identity and S = 0 passes the plain
        // check for any message: verify_strict must reject it, and so must we.
        for r in SMALL_ORDER_ENCODINGS.iter() {
            let Ok(weak) = VerifyingKey::from_bytes(r) else {
                continue;
            };
            let mut b = [0u8; 64];
            b[..32].copy_from_slice(&SMALL_ORDER_ENCODINGS[0]);
            let sig = Signature::from_bytes(&b);
            cases.push((weak, b"anything".to_vec(), sig));
        }
        let mut accepted = 0;
        for (k, m, s) in &cases {
            let strict = k.verify_strict(m, s).is_ok();
            assert_eq!(verify(k, m, s).is_ok(), strict, "key {k:?} sig {s:?}");
            accepted += usize::from(strict);
        }
        assert_eq!(accepted, 16, "exactly the untampered signatures verify");
        // The weak-key case is one the plain check accepts: the guard is needed.
        let weak_plain = cases
            .iter()
            .filter(|(k, m, s)| k.is_weak() && k.verify(m, s).is_ok())
            .count();
        assert!(weak_plain > 0, "some weak-key case passes the plain check");
    }

    #[test]
    fn small_order_encodings_are_the_eight_torsion_points() {
        let set: std::collections::HashSet<_> = SMALL_ORDER_ENCODINGS.iter().collect();
        assert_eq!(set.len(), 8);
        for e in SMALL_ORDER_ENCODINGS.iter() {
            let p = curve25519_dalek::edwards::CompressedEdwardsY(*e)
                .decompress()
                .expect("decodes");
            assert!(p.is_small_order());
        }
        // The identity is (0, 1): y = 1, little-endian.
        assert!(SMALL_ORDER_ENCODINGS.contains(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        }));
    }

    fn batch_of(n: usize, keys: usize) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
        let signers: Vec<SigningKey> = (0..keys).map(|k| key(100 + k as u8)).collect();
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| format!("entry {i}").into_bytes()).collect();
        let sigs = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| signers[i % keys].sign(m))
            .collect();
        let vks = (0..n).map(|i| signers[i % keys].verifying_key()).collect();
        (msgs, sigs, vks)
    }

    fn refs(msgs: &[Vec<u8>]) -> Vec<&[u8]> {
        msgs.iter().map(Vec::as_slice).collect()
    }

    /// Valid batches of every shape pass, as they pass ed25519-dalek's batch.
    #[test]
    fn batch_accepts_valid_batches() {
        for (n, keys) in [
            (1, 1),
            (2, 2),
            (3, 1),
            (7, 3),
            (64, 4),
            (257, 5),
            (100, 100),
        ] {
            let (msgs, sigs, vks) = batch_of(n, keys);
            let m = refs(&msgs);
            assert_eq!(verify_batch(&m, &sigs, &vks), Ok(()), "{n} by {keys}");
            assert!(ed25519_dalek::verify_batch(&m, &sigs, &vks).is_ok());
        }
        assert_eq!(verify_batch(&[], &[], &[]), Ok(()));
    }

    /// One bad signature anywhere fails the batch: a changed message, a signature
    /// under another key, a flipped bit of R or s, or a swapped key.
    #[test]
    fn batch_refuses_any_single_bad_signature() {
        let (msgs, sigs, vks) = batch_of(40, 3);
        for at in [0, 1, 17, 39] {
            let mut m = msgs.clone();
            m[at].push(b'!');
            assert!(
                verify_batch(&refs(&m), &sigs, &vks).is_err(),
                "message {at}"
            );
            for byte in [0, 31, 32, 40] {
                let mut s = sigs.clone();
                let mut b = s[at].to_bytes();
                b[byte] ^= 1;
                s[at] = Signature::from_bytes(&b);
                assert!(
                    verify_batch(&refs(&msgs), &s, &vks).is_err(),
                    "{at} byte {byte}"
                );
            }
            let mut k = vks.clone();
            // A neighbour was signed by another of the three keys.
            k[at] = vks[if at > 0 { at - 1 } else { at + 1 }];
            assert!(verify_batch(&refs(&msgs), &sigs, &k).is_err(), "key {at}");
        }
        // Two signatures swapped between entries of the same key.
        let mut s = sigs.clone();
        s.swap(0, 3);
        assert!(verify_batch(&refs(&msgs), &s, &vks).is_err());
        assert_eq!(
            verify_batch(&refs(&msgs[..3]), &sigs, &vks),
            Err(BatchError::Lengths)
        );
    }

    /// The strict rules hold in a batch too. `R` = identity with `s = k·a` passes
    /// the plain equation (and ed25519-dalek's batch) but not `verify_strict`; a
    /// non-canonical `s` (s + ℓ) and a weak key are refused as well.
    #[test]
    fn batch_applies_the_strict_rules() {
        let (msgs, mut sigs, vks) = batch_of(8, 2);
        let signer = key(100);
        let a = signer.to_scalar();
        let msg = b"forged with R = identity";
        let identity = SMALL_ORDER_ENCODINGS[0];
        let mut h = Sha512::new();
        h.update(identity);
        h.update(signer.verifying_key().as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&identity);
        b[32..].copy_from_slice((k * a).as_bytes());
        let forged = Signature::from_bytes(&b);
        assert!(signer.verifying_key().verify(msg, &forged).is_ok());
        assert!(signer.verifying_key().verify_strict(msg, &forged).is_err());
        assert!(ed25519_dalek::verify_batch(&[msg], &[forged], &[signer.verifying_key()]).is_ok());
        assert_eq!(
            verify_batch(&[msg], &[forged], &[signer.verifying_key()]),
            Err(BatchError::Malformed)
        );

        // s + ℓ: same point equation, non-canonical scalar.
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut ell = [0u8; 32];
        ell[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        ell[31] = 0x10;
        assert_eq!(Scalar::from_bytes_mod_order(ell), Scalar::ZERO);
        let mut b = sigs[0].to_bytes();
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(b[32 + i]) + u16::from(ell[i]) + carry;
            b[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ < 2^256");
        sigs[0] = Signature::from_bytes(&b);
        assert!(vks[0].verify(&msgs[0], &sigs[0]).is_err());
        assert_eq!(
            verify_batch(&refs(&msgs), &sigs, &vks),
            Err(BatchError::Malformed)
        );

        // A weak key with R = identity and s = 0 passes the plain check for anything.
        let weak = VerifyingKey::from_bytes(&SMALL_ORDER_ENCODINGS[0]).expect("decodes");
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&identity);
        let sig = Signature::from_bytes(&b);
        assert!(weak.verify(b"anything", &sig).is_ok());
        assert_eq!(
            verify_batch(&[b"anything"], &[sig], &[weak]),
            Err(BatchError::Malformed)
        );
    }

    fn decode_r(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
        strict_r(bytes, CompressedEdwardsY(*bytes).decompress())
    }

    /// Deciding small order from `y` agrees with `is_small_order` on every point
    /// tried: the eight small-order points with either sign bit, points of large
    /// order, and those plus a small-order point (mixed order, not small).
    #[test]
    fn small_order_is_decided_by_y() {
        let mut points: Vec<EdwardsPoint> = EIGHT_TORSION.to_vec();
        for k in 1..64u64 {
            let p = ED25519_BASEPOINT_POINT * Scalar::from(k * 7919);
            points.push(p);
            points.push(p + EIGHT_TORSION[(k % 8) as usize]);
        }
        let mut small = 0;
        for p in points {
            for flip in [0u8, 0x80] {
                let mut e = p.compress().to_bytes();
                e[31] ^= flip;
                let Some(q) = CompressedEdwardsY(e).decompress() else {
                    continue;
                };
                assert_eq!(
                    is_small_order_y(&e),
                    q.is_small_order(),
                    "{}",
                    hex::encode(e)
                );
                small += usize::from(q.is_small_order());
            }
        }
        assert!(small >= 14, "the small-order points were tried ({small})");
    }

    /// `decode_r` refuses exactly the encodings `verify` cannot accept as `R`.
    #[test]
    fn r_decoding_is_canonical_and_not_small_order() {
        for e in SMALL_ORDER_ENCODINGS.iter() {
            assert!(decode_r(e).is_none());
        }
        // y = p + c for small c: non-canonical spellings of y = c. Where y = c is a
        // point of large order its canonical spelling decodes and this one does not.
        let mut seen_large = 0;
        for c in 0u8..19 {
            let mut canonical = [0u8; 32];
            canonical[0] = c;
            let mut high = [0xffu8; 32];
            high[31] = 0x7f;
            high[0] = 0xed + c;
            assert!(decode_r(&high).is_none(), "y = p + {c}");
            if let Some(p) = CompressedEdwardsY(canonical).decompress()
                && !p.is_small_order()
            {
                assert!(decode_r(&canonical).is_some());
                assert!(CompressedEdwardsY(high).decompress().is_some());
                seen_large += 1;
            }
        }
        assert!(seen_large > 0, "some y < 19 is a point of large order");
        // A real signature's R decodes.
        let sig = key(1).sign(b"m");
        assert!(decode_r(sig.r_bytes()).is_some());
    }
}
