//! SHA-512 (FIPS 180-4 §6.4) of many messages at once: eight side by side, one per
//! 64-bit lane of AVX-512, where the CPU has it.
//!
//! Ed25519 verification hashes `R ‖ A ‖ M` for every signature (RFC 8032 §5.1.7), and
//! in a batch those hashes are independent: after the square roots of `R`
//! ([`crate::ed25519_points`]) they were the largest single cost of the monitor's
//! audit (BENCHMARKS.md, "Ed25519 verification"). One SHA-512 is a chain of 80 dependent
//! rounds per block that a single message cannot spread over vector lanes; eight
//! messages can, and AVX-512 has the 64-bit rotations and three-input logic the
//! rounds need. Messages of different lengths share the rounds of their longest: a
//! lane whose message has ended keeps its state. `CANDOR_ED25519_PORTABLE` keeps it
//! on the sha2 crate ([`crate::ed25519_points::portable_requested`]).

use sha2::{Digest, Sha512};

/// `SHA-512(parts[0] ‖ parts[1] ‖ …)` of each message, in order.
pub fn sha512_many(messages: &[[&[u8]; 3]]) -> Vec<[u8; 64]> {
    #[cfg(target_arch = "x86_64")]
    if lanes::usable() {
        let mut out = Vec::with_capacity(messages.len());
        for group in messages.chunks(lanes::LANES) {
            // SAFETY: `usable` checked that the CPU has the features `hash8` is
            // compiled for.
            out.extend(unsafe { lanes::hash8(group) });
        }
        return out;
    }
    sha512_each(messages)
}

/// One at a time, by the sha2 crate.
pub fn sha512_each(messages: &[[&[u8]; 3]]) -> Vec<[u8; 64]> {
    messages
        .iter()
        .map(|parts| {
            let mut h = Sha512::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().into()
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod lanes {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub const LANES: usize = 8;
    const BLOCK: usize = 128;

    /// FIPS 180-4 §4.2.3: the first 64 bits of the fractional parts of the cube roots
    /// of the first 80 primes.
    const K: [u64; 80] = [
        0x428a2f98d728ae22,
        0x7137449123ef65cd,
        0xb5c0fbcfec4d3b2f,
        0xe9b5dba58189dbbc,
        0x3956c25bf348b538,
        0x59f111f1b605d019,
        0x923f82a4af194f9b,
        0xab1c5ed5da6d8118,
        0xd807aa98a3030242,
        0x12835b0145706fbe,
        0x243185be4ee4b28c,
        0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f,
        0x80deb1fe3b1696b1,
        0x9bdc06a725c71235,
        0xc19bf174cf692694,
        0xe49b69c19ef14ad2,
        0xefbe4786384f25e3,
        0x0fc19dc68b8cd5b5,
        0x240ca1cc77ac9c65,
        0x2de92c6f592b0275,
        0x4a7484aa6ea6e483,
        0x5cb0a9dcbd41fbd4,
        0x76f988da831153b5,
        0x983e5152ee66dfab,
        0xa831c66d2db43210,
        0xb00327c898fb213f,
        0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2,
        0xd5a79147930aa725,
        0x06ca6351e003826f,
        0x142929670a0e6e70,
        0x27b70a8546d22ffc,
        0x2e1b21385c26c926,
        0x4d2c6dfc5ac42aed,
        0x53380d139d95b3df,
        0x650a73548baf63de,
        0x766a0abb3c77b2a8,
        0x81c2c92e47edaee6,
        0x92722c851482353b,
        0xa2bfe8a14cf10364,
        0xa81a664bbc423001,
        0xc24b8b70d0f89791,
        0xc76c51a30654be30,
        0xd192e819d6ef5218,
        0xd69906245565a910,
        0xf40e35855771202a,
        0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8,
        0x1e376c085141ab53,
        0x2748774cdf8eeb99,
        0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63,
        0x4ed8aa4ae3418acb,
        0x5b9cca4f7763e373,
        0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc,
        0x78a5636f43172f60,
        0x84c87814a1f0ab72,
        0x8cc702081a6439ec,
        0x90befffa23631e28,
        0xa4506cebde82bde9,
        0xbef9a3f7b2c67915,
        0xc67178f2e372532b,
        0xca273eceea26619c,
        0xd186b8c721c0c207,
        0xeada7dd6cde0eb1e,
        0xf57d4f7fee6ed178,
        0x06f067aa72176fba,
        0x0a637dc5a2c898a6,
        0x113f9804bef90dae,
        0x1b710b35131c471b,
        0x28db77f523047d84,
        0x32caab7b40c72493,
        0x3c9ebe0a15c9bebc,
        0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6,
        0x597f299cfc657e2a,
        0x5fcb6fab3ad6faec,
        0x6c44198c4a475817,
    ];

    /// FIPS 180-4 §5.3.5: the initial hash value.
    const H0: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];

    /// The CPU has the features [`hash8`] is compiled for.
    pub fn cpu_has_features() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// The CPU has AVX-512F and the results match the sha2 crate's; decided once.
    pub fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            // SAFETY: the feature was just detected.
            !crate::ed25519_points::portable_requested()
                && cpu_has_features()
                && unsafe { self_test() }
        })
    }

    /// Lengths around every padding case (one block, two blocks, the 112-byte edge).
    #[target_feature(enable = "avx512f")]
    unsafe fn self_test() -> bool {
        let data: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
        let messages: Vec<[&[u8]; 3]> = [0usize, 1, 111, 112, 127, 128, 129, 239, 240, 600]
            .iter()
            .map(|&n| [&data[..n.min(32)], &data[..0], &data[n.min(32)..n]])
            .collect();
        let ours = messages
            .chunks(LANES)
            .flat_map(|g| unsafe { hash8(g) })
            .collect::<Vec<_>>();
        ours == super::sha512_each(&messages)
    }

    /// Each message padded (FIPS 180-4 §5.1.2): the bytes, 0x80, zeros, and the
    /// length in bits as a 128-bit big-endian number, to a whole number of blocks.
    fn padded(parts: &[&[u8]; 3]) -> Vec<u8> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let blocks = (len + 1 + 16).div_ceil(BLOCK);
        let mut out = Vec::with_capacity(blocks * BLOCK);
        for p in parts {
            out.extend_from_slice(p);
        }
        out.push(0x80);
        out.resize(blocks * BLOCK - 16, 0);
        out.extend_from_slice(&((len as u128) * 8).to_be_bytes());
        out
    }

    #[target_feature(enable = "avx512f")]
    fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
        _mm512_ternarylogic_epi64::<0x96>(a, b, c)
    }

    #[target_feature(enable = "avx512f")]
    fn add(a: __m512i, b: __m512i) -> __m512i {
        _mm512_add_epi64(a, b)
    }

    /// Up to eight messages.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn hash8(messages: &[[&[u8]; 3]]) -> Vec<[u8; 64]> {
        debug_assert!(messages.len() <= LANES);
        let padded: Vec<Vec<u8>> = messages.iter().map(padded).collect();
        let blocks: Vec<usize> = padded.iter().map(|p| p.len() / BLOCK).collect();
        let most = blocks.iter().copied().max().unwrap_or(0);
        let mut state: [__m512i; 8] = std::array::from_fn(|i| _mm512_set1_epi64(H0[i] as i64));
        for b in 0..most {
            // Lanes whose message has this block; the others keep their state.
            let active = blocks
                .iter()
                .enumerate()
                .filter(|&(_, &n)| b < n)
                .fold(0u8, |m, (j, _)| m | (1 << j));
            // The block's sixteen words, big-endian, lane by lane.
            let mut words = [[0u64; LANES]; 16];
            for (j, p) in padded.iter().enumerate() {
                if b < blocks[j] {
                    let block = &p[b * BLOCK..(b + 1) * BLOCK];
                    for (t, w) in block.chunks_exact(8).enumerate() {
                        let mut be = [0u8; 8];
                        be.copy_from_slice(w);
                        words[t][j] = u64::from_be_bytes(be);
                    }
                }
            }
            let mut w: [__m512i; 80] = [_mm512_setzero_si512(); 80];
            for t in 0..16 {
                // SAFETY: reads 64 bytes from an array of 8 u64.
                w[t] = unsafe { _mm512_loadu_si512(words[t].as_ptr().cast()) };
            }
            // §6.4.2 step 1: the message schedule.
            for t in 16..80 {
                let x = w[t - 15];
                let s0 = xor3(
                    _mm512_ror_epi64::<1>(x),
                    _mm512_ror_epi64::<8>(x),
                    _mm512_srli_epi64::<7>(x),
                );
                let y = w[t - 2];
                let s1 = xor3(
                    _mm512_ror_epi64::<19>(y),
                    _mm512_ror_epi64::<61>(y),
                    _mm512_srli_epi64::<6>(y),
                );
                w[t] = add(add(s1, w[t - 7]), add(s0, w[t - 16]));
            }
            // Steps 2–4: the 80 rounds.
            let [mut a, mut bb, mut c, mut d, mut e, mut f, mut g, mut h] = state;
            for t in 0..80 {
                let big_s1 = xor3(
                    _mm512_ror_epi64::<14>(e),
                    _mm512_ror_epi64::<18>(e),
                    _mm512_ror_epi64::<41>(e),
                );
                // Ch(e, f, g) = e ? f : g.
                let ch = _mm512_ternarylogic_epi64::<0xca>(e, f, g);
                let kw = add(_mm512_set1_epi64(K[t] as i64), w[t]);
                let t1 = add(add(h, big_s1), add(ch, kw));
                let big_s0 = xor3(
                    _mm512_ror_epi64::<28>(a),
                    _mm512_ror_epi64::<34>(a),
                    _mm512_ror_epi64::<39>(a),
                );
                // Maj(a, b, c): the majority of each bit.
                let maj = _mm512_ternarylogic_epi64::<0xe8>(a, bb, c);
                let t2 = add(big_s0, maj);
                h = g;
                g = f;
                f = e;
                e = add(d, t1);
                d = c;
                c = bb;
                bb = a;
                a = add(t1, t2);
            }
            for (s, v) in state.iter_mut().zip([a, bb, c, d, e, f, g, h]) {
                *s = _mm512_mask_add_epi64(*s, active, *s, v);
            }
        }
        let mut words = [[0u64; LANES]; 8];
        for (i, s) in state.iter().enumerate() {
            // SAFETY: writes 64 bytes into an array of 8 u64.
            unsafe { _mm512_storeu_si512(words[i].as_mut_ptr().cast(), *s) };
        }
        (0..messages.len())
            .map(|j| {
                let mut digest = [0u8; 64];
                for (i, chunk) in digest.chunks_exact_mut(8).enumerate() {
                    chunk.copy_from_slice(&words[i][j].to_be_bytes());
                }
                digest
            })
            .collect()
    }
}

/// Whether this CPU has what the eight-lane path needs (AVX-512F), whether or not
/// it is used.
pub fn fast_path_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        lanes::cpu_has_features()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`sha512_many`] runs eight messages at a time on this machine.
pub fn vectorised() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        lanes::usable()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The lane results whether or not the self-test accepted them.
    fn lane_results(messages: &[[&[u8]; 3]]) -> Vec<[u8; 64]> {
        #[cfg(target_arch = "x86_64")]
        if lanes::cpu_has_features() {
            return messages
                .chunks(lanes::LANES)
                // SAFETY: the feature was just detected.
                .flat_map(|g| unsafe { lanes::hash8(g) })
                .collect();
        }
        eprintln!("no AVX-512F: comparing the sha2 crate with itself");
        sha512_many(messages)
    }

    /// Fails where AVX-512F is present but the lanes are not used (unless the
    /// portable path was asked for): a refused self-test must not pass unseen.
    #[test]
    fn reports_which_path_runs() {
        if crate::ed25519_points::portable_requested() {
            assert!(
                !vectorised(),
                "CANDOR_ED25519_PORTABLE set but the lanes run"
            );
        } else if fast_path_supported() {
            assert!(
                vectorised(),
                "AVX-512F present but the self-test refused it"
            );
        } else {
            eprintln!(
                "no AVX-512F: the tests below compare the sha2 crate with itself and do \
                 not test the eight-lane path"
            );
        }
    }

    /// FIPS 180-2 appendix C: "abc" and the 112-byte two-block message.
    #[test]
    fn known_answers() {
        let two = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
        let got = lane_results(&[[b"a", b"b", b"c"], [two, b"", b""]]);
        assert_eq!(
            hex::encode(got[0]),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            hex::encode(got[1]),
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
        );
    }

    #[test]
    fn every_length_to_three_blocks_agrees() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 31 + 7) as u8).collect();
        let messages: Vec<[&[u8]; 3]> = (0..=400)
            .map(|n| [&data[..n / 3], &data[n / 3..n / 2], &data[n / 2..n]])
            .collect();
        assert_eq!(lane_results(&messages), sha512_each(&messages));
        assert_eq!(sha512_many(&messages), sha512_each(&messages));
        for n in 0..=17 {
            assert_eq!(lane_results(&messages[..n]), sha512_each(&messages[..n]));
        }
    }

    proptest! {
        #[test]
        fn random_messages_agree(
            messages in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..1500)),
                0..20,
            )
        ) {
            let parts: Vec<[&[u8]; 3]> = messages
                .iter()
                .map(|(a, b, c)| [a.as_slice(), b.as_slice(), c.as_slice()])
                .collect();
            prop_assert_eq!(lane_results(&parts), sha512_each(&parts));
        }
    }
}
