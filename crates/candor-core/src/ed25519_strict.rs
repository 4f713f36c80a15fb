//! Candor's one Ed25519 verification rule (spec/entries.md §7), for every Ed25519
//! signature Candor checks: company entries, checkpoints and other signed notes,
//! witness cosignatures. Single ([`verify`]) and batch ([`verify_batch`])
//! verification apply the same rule and so give the same verdict on every signature.
//!
//! The rule (RFC 8032 §5.1.7 with its cofactored equation, the equation of ZIP-215):
//!
//! 1. `s` is canonical: `s < ℓ` (RFC 8032 §5.1.7 step 1);
//! 2. `A` and `R` are canonical encodings (RFC 8032 §5.1.3: `y < p`, and no sign bit
//!    on `x = 0`), and neither is a point of small order;
//! 3. `[8]([s]B − R − [k]A) = 0` with `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! Rule 3 multiplies by the cofactor, so a small-order part of `R` or `A` never
//! decides a verdict. Without it (`[s]B = R + [k]A`, as before) a signature whose
//! `R` is off by a point `T` of order 2, 4 or 8 fails single verification but passes
//! a random-linear-combination batch whenever the batch's `z` is a multiple of
//! `ord(T)`: batch and single verification then disagree (issue #23).
//!
//! [`verify`] first tries the cofactorless equation, which needs no decoding of `R`
//! (compare the recomputed `R` with the signature's bytes): it holds for every
//! honestly made signature, and when it holds the cofactored one does too. Only
//! otherwise does it decode `R` and check `[8](R' − R) = 0`, so honest signatures
//! cost what they cost before.
//!
//! [`verify_batch`] checks many signatures with one multiscalar multiplication, as
//! `ed25519_dalek::verify_batch` does, but gathers the terms of each distinct key
//! into one: a log's batch holds thousands of signatures by a handful of keys, so the
//! multiplication has about `n` points instead of `2n`. It decodes the signatures'
//! `R` and hashes their challenges together ([`crate::ed25519_points`],
//! [`crate::sha512_lanes`]: eight at a time where the CPU has AVX-512 IFMA).
//!
//! Keys are admitted (registered as a company's key, configured as a log's or a
//! witness's) only if they are also torsion-free ([`check_admissible_key`]).

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, SignatureError, VerifyingKey};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The canonical encodings of the eight points of order dividing 8.
static SMALL_ORDER_ENCODINGS: LazyLock<[[u8; 32]; 8]> =
    LazyLock::new(|| EIGHT_TORSION.map(|p| p.compress().to_bytes()));

/// Why a public key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Ed25519 public key is not a canonical encoding (RFC 8032 §5.1.3)")]
    NotCanonical,
    #[error("the Ed25519 public key is a point of small order")]
    SmallOrder,
    #[error(
        "the Ed25519 public key is not torsion-free (it has a component of small order); \
         Candor admits only keys [a]B, as every RFC 8032 key generator makes them"
    )]
    NotTorsionFree,
}

/// The rule's checks on a public key: a canonical encoding of a point not of small
/// order. Any signature under a key that fails them is invalid.
pub fn check_key(key: &VerifyingKey) -> Result<(), KeyError> {
    if !canonical_y(key.as_bytes()) {
        return Err(KeyError::NotCanonical);
    }
    // The encodings with x = 0 and the sign bit set are not canonical either; both
    // points with x = 0 are of small order, so this refuses them too.
    if is_small_order_y(key.as_bytes()) {
        return Err(KeyError::SmallOrder);
    }
    Ok(())
}

/// What Candor admits as a key (company, log or witness key): [`check_key`], and
/// torsion-free (`[ℓ]A = 0`), as every key made from a seed by RFC 8032 §5.1.5 is.
/// Verification does not ask for it, so signatures by a key admitted before this
/// check keep their verdicts; it keeps keys with a small-order part out of the log.
pub fn check_admissible_key(key: &VerifyingKey) -> Result<(), KeyError> {
    check_key(key)?;
    if !key.to_edwards().is_torsion_free() {
        return Err(KeyError::NotTorsionFree);
    }
    Ok(())
}

/// Whether `key` and `signature` pass the rule's encoding checks (1 and 2), which
/// come before the equation.
pub fn strict_encodings(key: &VerifyingKey, signature: &Signature) -> bool {
    check_key(key).is_ok()
        && Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes())).is_some()
        && canonical_y(signature.r_bytes())
        && !is_small_order_y(signature.r_bytes())
}

/// Verifies one signature by the rule.
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    if !strict_encodings(key, signature) {
        return Err(SignatureError::new());
    }
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
        .ok_or_else(SignatureError::new)?;
    let r_bytes = signature.r_bytes();
    let k = challenge(r_bytes, key.as_bytes(), message);
    // R' = [s]B − [k]A.
    let r_prime = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-key.to_edwards(), &s);
    // R' = R exactly: the cofactored equation holds too.
    if r_prime.compress().as_bytes() == r_bytes {
        return Ok(());
    }
    let r = CompressedEdwardsY(*r_bytes)
        .decompress()
        .ok_or_else(SignatureError::new)?;
    if (r_prime - r).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SignatureError::new())
    }
}

/// `SHA-512(R ‖ A ‖ M) mod ℓ` (RFC 8032 §5.1.7 step 2).
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Why a batch was refused. Like any batch verification it does not say which
/// signature is bad: the caller finds it with [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("messages, signatures and keys differ in number")]
    Lengths,
    #[error("a key or a signature breaks the encoding rules")]
    Malformed,
    #[error("the batch equation does not hold")]
    Equation,
    #[error("the operating system's random source failed")]
    Random,
}

/// Accepts the batch iff, except with probability below 2^-128, every signature
/// passes [`verify`].
///
/// The encoding checks are made one by one. The equation is
/// `[8]([-Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ_A [Σ_{i signed by A} zᵢkᵢ]A) = 0`, the sum of the
/// signatures' cofactored equations with random 128-bit weights `zᵢ`: if every
/// signature passes, each term is a point of small order and the cofactor clears
/// them, so the batch passes whatever the `zᵢ`; if one fails, its term has a part of
/// order ℓ that the others cancel for at most one `zᵢ` in 2^128.
///
/// The `zᵢ` come from SHA-512 over 32 bytes of the operating system's random source
/// and every `k` and `s` of the batch: nobody can predict them, not even someone who
/// knows the whole batch, and a weak random source alone does not make them so.
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
            check_key(key).map_err(|_| BatchError::Malformed)?;
            key_points.push(key.to_edwards());
        }
        slot.push(at);
    }
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(n + 1 + key_points.len());
    points.push(ED25519_BASEPOINT_POINT);

    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|_| BatchError::Random)?;
    let mut ss = Vec::with_capacity(n);
    let mut ks = Vec::with_capacity(n);
    let mut seed = Sha512::new();
    seed.update(b"candor ed25519 batch v2");
    seed.update(random);
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
    let sum = EdwardsPoint::vartime_multiscalar_mul(&scalars, &points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(BatchError::Equation)
    }
}

/// Whether the bytes' `y` (sign bit aside) is below p = 2^255 − 19: RFC 8032
/// §5.1.3's "if the y-coordinate is >= p, decoding fails".
fn canonical_y(bytes: &[u8; 32]) -> bool {
    // y ≥ p: 0x7fff…ffed or above, little-endian.
    let y_high = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff);
    !(y_high && bytes[0] >= 0xed)
}

/// `R` as the rule accepts it, given what its bytes decode to: its canonical
/// encoding, of a point not of small order. The encodings that decode but are not
/// canonical are `y ≥ p` and `x = 0` with the sign bit set; `x = 0` holds only for
/// two small-order points.
fn strict_r(bytes: &[u8; 32], decoded: Option<EdwardsPoint>) -> Option<EdwardsPoint> {
    if !canonical_y(bytes) {
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
    use ed25519_dalek::{Signer, SigningKey, Verifier};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// `T` of each order: EIGHT_TORSION[j] has order 8 / gcd(j, 8).
    fn torsion(order: usize) -> EdwardsPoint {
        EIGHT_TORSION[8 / order]
    }

    /// A signature by `sk` over `msg` whose `R` is `[r]B + T` and whose `s` is
    /// computed for that `R`, as a signer holding the key can make it.
    fn sign_with_torsion_r(sk: &SigningKey, msg: &[u8], t: EdwardsPoint, r: u64) -> Signature {
        let r = Scalar::from(r) * Scalar::from(0x9e37_79b9_7f4a_7c15u64);
        let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
        let k = challenge(big_r.as_bytes(), sk.verifying_key().as_bytes(), msg);
        let s = r + k * sk.to_scalar();
        Signature::from_components(big_r.to_bytes(), s.to_bytes())
    }

    /// Every signature `verify_strict` accepts, the rule accepts; on valid, tampered
    /// and crafted signatures the rule refuses what verify_strict refuses, except a
    /// signature whose `R` is off by a small-order point, which the cofactored
    /// equation accepts.
    #[test]
    fn accepts_whatever_verify_strict_accepts() {
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

        // R off by T of each small order: refused by verify_strict (cofactorless),
        // accepted by the rule.
        let sk = key(7);
        for order in [2, 4, 8] {
            let sig = sign_with_torsion_r(&sk, b"m", torsion(order), 5);
            assert!(sk.verifying_key().verify_strict(b"m", &sig).is_err());
            assert!(
                verify(&sk.verifying_key(), b"m", &sig).is_ok(),
                "order {order}"
            );
            assert!(verify(&sk.verifying_key(), b"m!", &sig).is_err());
        }
    }

    #[test]
    fn small_order_encodings_are_the_eight_torsion_points() {
        let set: std::collections::HashSet<_> = SMALL_ORDER_ENCODINGS.iter().collect();
        assert_eq!(set.len(), 8);
        for e in SMALL_ORDER_ENCODINGS.iter() {
            let p = CompressedEdwardsY(*e).decompress().expect("decodes");
            assert!(p.is_small_order());
        }
        // The identity is (0, 1): y = 1, little-endian.
        assert!(SMALL_ORDER_ENCODINGS.contains(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        }));
        for order in [2usize, 4, 8] {
            let t = torsion(order);
            let mut p = t;
            for i in 1..order {
                assert!(!p.is_identity(), "[{i}]T, order {order}");
                p += t;
            }
            assert!(p.is_identity(), "[{order}]T");
        }
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

    /// Batch and single verification agree on signatures whose `R` is off by a
    /// point of order 2, 4 or 8, at every position of batches of several sizes: both
    /// accept the honest ones and refuse those whose `s` belongs to another message.
    /// A batch equation without the cofactor passes the honest ones only when its
    /// random `z` is a multiple of ord(T) (half the time for order 2), so over these
    /// 177 batches it would fail this test all but never.
    #[test]
    fn torsion_in_r_gets_the_same_verdict_in_batch_and_alone() {
        let sk = key(42);
        let vk = sk.verifying_key();
        for order in [2usize, 4, 8] {
            for n in [1usize, 2, 8, 16, 32] {
                let (mut msgs, mut sigs, mut vks) = batch_of(n, 3);
                for at in 0..n {
                    let (m0, s0, k0) = (msgs[at].clone(), sigs[at], vks[at]);
                    msgs[at] = format!("torsion {order} at {at} of {n}").into_bytes();
                    vks[at] = vk;
                    sigs[at] = sign_with_torsion_r(&sk, &msgs[at], torsion(order), at as u64 + 1);
                    assert!(verify(&vk, &msgs[at], &sigs[at]).is_ok());
                    assert_eq!(
                        verify_batch(&refs(&msgs), &sigs, &vks),
                        Ok(()),
                        "order {order}, {at} of {n}"
                    );
                    // The same R with the s of another message: invalid in both.
                    let other = sign_with_torsion_r(&sk, b"other", torsion(order), at as u64 + 1);
                    let mut bad = sigs[at].to_bytes();
                    bad[32..].copy_from_slice(other.s_bytes());
                    sigs[at] = Signature::from_bytes(&bad);
                    assert!(verify(&vk, &msgs[at], &sigs[at]).is_err());
                    assert_eq!(
                        verify_batch(&refs(&msgs), &sigs, &vks),
                        Err(BatchError::Equation),
                        "bad, order {order}, {at} of {n}"
                    );
                    (msgs[at], sigs[at], vks[at]) = (m0, s0, k0);
                }
            }
        }
    }

    /// A key `A = [a]B + T` with a small-order part `T`: its signatures fail the
    /// cofactorless equation unless `k ≡ 0 mod ord(T)` (so every batch holding one
    /// used to be checked one by one), and pass the rule alone and in batches. It is
    /// not admissible as a key.
    #[test]
    fn key_with_torsion_verifies_in_batches_and_is_not_admissible() {
        let sk = key(9);
        let a = sk.to_scalar();
        for order in [2usize, 4, 8] {
            let point = ED25519_BASEPOINT_POINT * a + torsion(order);
            let vk = VerifyingKey::from_bytes(point.compress().as_bytes()).expect("decodes");
            assert_eq!(check_key(&vk), Ok(()));
            assert_eq!(check_admissible_key(&vk), Err(KeyError::NotTorsionFree));
            let (mut msgs, mut sigs, mut vks) = batch_of(16, 2);
            let mut cofactorless_failures = 0;
            for at in 0..16 {
                let msg = format!("mixed {order} {at}").into_bytes();
                let r = Scalar::from(1000 + at as u64);
                let big_r = (ED25519_BASEPOINT_POINT * r).compress();
                let k = challenge(big_r.as_bytes(), vk.as_bytes(), &msg);
                let sig = Signature::from_components(big_r.to_bytes(), (r + k * a).to_bytes());
                assert!(verify(&vk, &msg, &sig).is_ok());
                cofactorless_failures += usize::from(vk.verify(&msg, &sig).is_err());
                msgs[at] = msg;
                sigs[at] = sig;
                vks[at] = vk;
                assert_eq!(verify_batch(&refs(&msgs), &sigs, &vks), Ok(()));
            }
            assert!(cofactorless_failures > 0, "order {order}");
        }
        // Keys made from seeds are admissible.
        for seed in 0..8 {
            assert_eq!(check_admissible_key(&key(seed).verifying_key()), Ok(()));
        }
    }

    /// The encoding rules hold in a batch too. `R` = identity with `s = k·a` passes
    /// the equation (and ed25519-dalek's batch) but not the rule; a non-canonical `s`
    /// (s + ℓ), a weak key and a non-canonical key are refused as well.
    #[test]
    fn batch_applies_the_encoding_rules() {
        let (msgs, mut sigs, vks) = batch_of(8, 2);
        let signer = key(100);
        let a = signer.to_scalar();
        let msg = b"forged with R = identity";
        let identity = SMALL_ORDER_ENCODINGS[0];
        let k = challenge(&identity, signer.verifying_key().as_bytes(), msg);
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(&identity);
        b[32..].copy_from_slice((k * a).as_bytes());
        let forged = Signature::from_bytes(&b);
        assert!(signer.verifying_key().verify(msg, &forged).is_ok());
        assert!(verify(&signer.verifying_key(), msg, &forged).is_err());
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
        assert!(verify(&vks[0], &msgs[0], &sigs[0]).is_err());
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
        assert_eq!(check_key(&weak), Err(KeyError::SmallOrder));
        assert_eq!(
            verify_batch(&[b"anything"], &[sig], &[weak]),
            Err(BatchError::Malformed)
        );
    }

    /// Keys spelled with `y ≥ p` decode (curve25519-dalek reduces `y`), but are not
    /// canonical: the rule refuses them, alone and in a batch.
    #[test]
    fn non_canonical_keys_are_refused() {
        let mut refused = 0;
        for c in 0u8..19 {
            let mut high = [0xffu8; 32];
            high[31] = 0x7f;
            high[0] = 0xed + c;
            for sign in [0u8, 0x80] {
                let mut e = high;
                e[31] |= sign;
                let Ok(vk) = VerifyingKey::from_bytes(&e) else {
                    continue;
                };
                assert_eq!(check_key(&vk), Err(KeyError::NotCanonical), "y = p + {c}");
                let sig = Signature::from_bytes(&[1; 64]);
                assert!(verify(&vk, b"m", &sig).is_err());
                assert_eq!(
                    verify_batch(&[b"m"], &[sig], &[vk]),
                    Err(BatchError::Malformed)
                );
                refused += 1;
            }
        }
        assert!(refused > 0, "some y = p + c decodes");
        // x = 0 with the sign bit: a non-canonical spelling of the identity.
        let mut e = SMALL_ORDER_ENCODINGS[0];
        e[31] |= 0x80;
        let vk = VerifyingKey::from_bytes(&e).expect("decodes");
        assert!(check_key(&vk).is_err());
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

    /// `decode_r` refuses exactly the encodings the rule cannot accept as `R`.
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
