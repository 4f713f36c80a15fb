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

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::{Signature, SignatureError, Verifier, VerifyingKey};
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
