//! Decoding many Ed25519 points at once (RFC 8032 §5.1.3), with exactly the
//! results of `CompressedEdwardsY::decompress`.
//!
//! Batch verification decodes every signature's `R`, and each decoding is a square
//! root: an exponentiation of 254 squarings that nothing can share between points,
//! done one point at a time by curve25519-dalek (about a fifth of the monitor's CPU,
//! BENCHMARKS.md). On a CPU with AVX-512 IFMA this module runs eight of them side by
//! side, one per 64-bit lane, with the 52-bit multiply-adds of IFMA.
//!
//! curve25519-dalek has no public way to build a point from its coordinates, so the
//! results are written into its `EdwardsPoint`, four field elements of five 51-bit
//! limbs, by [`std::mem::transmute`]. Every bit pattern of twenty `u64` is a value of
//! that type, so no layout can make this undefined; a wrong guess at the field order
//! would give wrong points, and a self-test on first use compares the results with
//! curve25519-dalek's own decoding and keeps to the latter unless they agree. That
//! layout is private to curve25519-dalek, so Cargo.toml pins its exact version.
//!
//! Setting `CANDOR_ED25519_PORTABLE` (to anything but `0` or nothing) keeps this
//! module and [`crate::sha512_lanes`] on their portable paths, so that tests can run
//! both paths on one machine ([`portable_requested`]).

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};

/// The points `encodings` decode to, as `CompressedEdwardsY::decompress` gives them.
pub fn decompress_many(encodings: &[[u8; 32]]) -> Vec<Option<EdwardsPoint>> {
    #[cfg(target_arch = "x86_64")]
    if ifma::usable() {
        let mut out = Vec::with_capacity(encodings.len());
        for group in encodings.chunks(ifma::LANES) {
            // SAFETY: `usable` checked that the CPU has the features `decompress8`
            // is compiled for.
            out.extend(unsafe { ifma::decompress8(group) });
        }
        return out;
    }
    decompress_each(encodings)
}

/// One at a time, by curve25519-dalek.
pub fn decompress_each(encodings: &[[u8; 32]]) -> Vec<Option<EdwardsPoint>> {
    encodings
        .iter()
        .map(|e| CompressedEdwardsY(*e).decompress())
        .collect()
}

/// Whether [`decompress_many`] runs eight points at a time on this machine.
pub fn vectorised() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        ifma::usable()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has what the eight-lane path needs (AVX-512 F, DQ and IFMA),
/// whether or not it is used: where it holds and [`portable_requested`] does not,
/// [`vectorised`] must hold, or the self-test refused the fast path.
pub fn fast_path_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        ifma::cpu_has_features()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `CANDOR_ED25519_PORTABLE` asks for the portable paths of this module and
/// of [`crate::sha512_lanes`] (set, and neither empty nor `0`); read once.
pub fn portable_requested() -> bool {
    static PORTABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PORTABLE.get_or_init(|| {
        std::env::var_os("CANDOR_ED25519_PORTABLE").is_some_and(|v| !v.is_empty() && v != "0")
    })
}

/// Field elements mod p = 2^255 − 19 as five limbs of radix 2^51, little-endian,
/// the representation of curve25519-dalek's 64-bit backend.
#[cfg(target_arch = "x86_64")]
mod limbs {
    pub type Fe = [u64; 5];
    pub const MASK: u64 = (1 << 51) - 1;
    /// p's limbs.
    const P: Fe = [MASK - 18, MASK, MASK, MASK, MASK];

    /// The low 255 bits of `bytes`, unreduced, as curve25519-dalek's `from_bytes`.
    pub fn from_bytes(bytes: &[u8; 32]) -> Fe {
        let load = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        [
            load(0) & MASK,
            (load(6) >> 3) & MASK,
            (load(12) >> 6) & MASK,
            (load(19) >> 1) & MASK,
            (load(24) >> 12) & MASK,
        ]
    }

    /// The unique representative below p of a value whose limbs are below 2^62.
    pub fn canonical(a: Fe) -> Fe {
        let mut l = a;
        // Two carry passes: after the first every limb is below 2^51 + 19·2^11, after
        // the second below 2^51 + 1 (l[0] below 2^51 + 19), so the value is below 2p.
        for _ in 0..2 {
            let c: [u64; 5] = std::array::from_fn(|i| l[i] >> 51);
            for limb in &mut l {
                *limb &= MASK;
            }
            l[0] += 19 * c[4];
            for i in 1..5 {
                l[i] += c[i - 1];
            }
        }
        // Subtract p once if the value is at least p, which adding 19 shows as a carry
        // out of bit 255.
        let mut q = (l[0] + 19) >> 51;
        for &limb in &l[1..] {
            q = (limb + q) >> 51;
        }
        l[0] += 19 * q;
        for i in 0..4 {
            l[i + 1] += l[i] >> 51;
            l[i] &= MASK;
        }
        l[4] &= MASK;
        l
    }

    /// −a, for `a` in canonical form (every limb below 2^51).
    pub fn negate_canonical(a: Fe) -> Fe {
        // 2p's limbs are all at least 2^52 − 38 > 2^51, so no limb goes negative.
        canonical(std::array::from_fn(|i| 2 * P[i] - a[i]))
    }

    pub fn add(a: Fe, b: Fe) -> Fe {
        std::array::from_fn(|i| a[i] + b[i])
    }

    pub fn is_zero(a: Fe) -> bool {
        canonical(a) == [0; 5]
    }

    /// The low bit of the canonical value: RFC 8032's "negative".
    pub fn is_negative(a: Fe) -> bool {
        canonical(a)[0] & 1 == 1
    }
}

#[cfg(target_arch = "x86_64")]
mod ifma {
    use super::limbs::{self, Fe};
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub const LANES: usize = 8;

    /// d = −121665/121666, the curve constant (RFC 8032 §5.1), and √−1.
    const EDWARDS_D: Fe = [
        929955233495203,
        466365720129213,
        1662059464998953,
        2033849074728123,
        1442794654840575,
    ];
    const SQRT_M1: Fe = [
        1718705420411056,
        234908883556509,
        2233514472574048,
        2117202627021982,
        765476049583133,
    ];

    /// The CPU has the features [`decompress8`] is compiled for.
    pub fn cpu_has_features() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512ifma")
            && is_x86_feature_detected!("avx512dq")
    }

    /// The CPU has IFMA and the results match curve25519-dalek's (see the module
    /// comment); decided once.
    pub fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            // SAFETY: the features were just detected.
            !super::portable_requested() && cpu_has_features() && unsafe { self_test() }
        })
    }

    /// Compares with curve25519-dalek on points with every sign and root case, and
    /// on encodings that do not decode.
    #[target_feature(enable = "avx512f,avx512ifma,avx512dq")]
    unsafe fn self_test() -> bool {
        let mut encodings: Vec<[u8; 32]> = (1u64..12)
            .map(|k| {
                (ED25519_BASEPOINT_POINT * Scalar::from(k))
                    .compress()
                    .to_bytes()
            })
            .collect();
        encodings.push(
            (-ED25519_BASEPOINT_POINT * Scalar::from(977u64))
                .compress()
                .to_bytes(),
        );
        encodings.push([0; 32]);
        encodings.push([2; 32]);
        encodings.push({
            let mut one = [0; 32];
            one[0] = 1;
            one
        });
        encodings.push([0xff; 32]);
        let ours = encodings
            .chunks(LANES)
            .flat_map(|g| unsafe { decompress8(g) })
            .collect::<Vec<_>>();
        encodings.iter().zip(ours).all(|(e, ours)| {
            let theirs = CompressedEdwardsY(*e).decompress();
            match (ours, theirs) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a == b
                        && a.compress() == b.compress()
                        && (a + a).compress() == (b + b).compress()
                        && (a * Scalar::from(7u64)).compress()
                            == (b * Scalar::from(7u64)).compress()
                }
                _ => false,
            }
        })
    }

    /// Eight field elements, limb `i` of lane `j` in lane `j` of `self.0[i]`; every
    /// limb below 2^52, which IFMA's multiplier requires (it ignores the bits above).
    #[derive(Clone, Copy)]
    struct Fe8([__m512i; 5]);

    impl Fe8 {
        #[target_feature(enable = "avx512f")]
        fn splat(a: Fe) -> Fe8 {
            Fe8(std::array::from_fn(|i| _mm512_set1_epi64(a[i] as i64)))
        }

        #[target_feature(enable = "avx512f")]
        fn load(lanes: &[Fe; LANES]) -> Fe8 {
            Fe8(std::array::from_fn(|i| {
                let limb: [u64; LANES] = std::array::from_fn(|j| lanes[j][i]);
                // SAFETY: reads 64 bytes from an array of 8 u64.
                unsafe { _mm512_loadu_si512(limb.as_ptr().cast()) }
            }))
        }

        #[target_feature(enable = "avx512f")]
        fn store(self) -> [Fe; LANES] {
            let mut limbs = [[0u64; LANES]; 5];
            for (i, limb) in limbs.iter_mut().enumerate() {
                // SAFETY: writes 64 bytes into an array of 8 u64.
                unsafe { _mm512_storeu_si512(limb.as_mut_ptr().cast(), self.0[i]) };
            }
            std::array::from_fn(|j| std::array::from_fn(|i| limbs[i][j]))
        }
    }

    /// Limbs below 2^63 to limbs below 2^51 + 2^17: one carry step per limb, all at
    /// once, the carry out of the top limb coming back as ×19 (2^255 ≡ 19).
    #[target_feature(enable = "avx512f,avx512dq")]
    fn carry(z: [__m512i; 5]) -> Fe8 {
        let mask = _mm512_set1_epi64(limbs::MASK as i64);
        let c: [__m512i; 5] = std::array::from_fn(|i| _mm512_srli_epi64::<51>(z[i]));
        let top = _mm512_mullo_epi64(c[4], _mm512_set1_epi64(19));
        Fe8(std::array::from_fn(|i| {
            let low = _mm512_and_si512(z[i], mask);
            _mm512_add_epi64(low, if i == 0 { top } else { c[i - 1] })
        }))
    }

    /// Folds the ten column sums of a product (column k at weight 2^(51k), each
    /// below 2^58) into five limbs: 2^255 ≡ 19.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn reduce(z: [__m512i; 10]) -> Fe8 {
        let n19 = _mm512_set1_epi64(19);
        carry(std::array::from_fn(|k| {
            _mm512_add_epi64(z[k], _mm512_mullo_epi64(z[k + 5], n19))
        }))
    }

    /// a·b. A product of limbs is split by IFMA at bit 52: its low part lands in
    /// column i+j, its high part at 2^(51(i+j)+52), twice the weight of column i+j+1.
    #[target_feature(enable = "avx512f,avx512ifma,avx512dq")]
    fn mul(a: &Fe8, b: &Fe8) -> Fe8 {
        let zero = _mm512_setzero_si512();
        let mut lo = [zero; 10];
        let mut hi = [zero; 10];
        for i in 0..5 {
            for j in 0..5 {
                lo[i + j] = _mm512_madd52lo_epu64(lo[i + j], a.0[i], b.0[j]);
                hi[i + j + 1] = _mm512_madd52hi_epu64(hi[i + j + 1], a.0[i], b.0[j]);
            }
        }
        // Each column has at most five products: lo, hi < 5·2^52, z < 15·2^52.
        reduce(std::array::from_fn(|k| {
            _mm512_add_epi64(lo[k], _mm512_slli_epi64::<1>(hi[k]))
        }))
    }

    /// a², with each cross product computed once: of weight 1 (low parts of the
    /// squares), 2 (high parts of squares, low parts of cross products) or 4 (high
    /// parts of cross products).
    #[target_feature(enable = "avx512f,avx512ifma,avx512dq")]
    fn square(a: &Fe8) -> Fe8 {
        let zero = _mm512_setzero_si512();
        let mut w1 = [zero; 10];
        let mut w2 = [zero; 10];
        let mut w4 = [zero; 10];
        for i in 0..5 {
            w1[2 * i] = _mm512_madd52lo_epu64(w1[2 * i], a.0[i], a.0[i]);
            w2[2 * i + 1] = _mm512_madd52hi_epu64(w2[2 * i + 1], a.0[i], a.0[i]);
            for j in i + 1..5 {
                w2[i + j] = _mm512_madd52lo_epu64(w2[i + j], a.0[i], a.0[j]);
                w4[i + j + 1] = _mm512_madd52hi_epu64(w4[i + j + 1], a.0[i], a.0[j]);
            }
        }
        // Per column at most 3 terms in each: z < (1 + 2·3 + 4·3)·2^52 < 2^57.
        reduce(std::array::from_fn(|k| {
            let w24 = _mm512_add_epi64(w2[k], _mm512_slli_epi64::<1>(w4[k]));
            _mm512_add_epi64(w1[k], _mm512_slli_epi64::<1>(w24))
        }))
    }

    #[target_feature(enable = "avx512f,avx512ifma,avx512dq")]
    fn pow2k(a: &Fe8, k: u32) -> Fe8 {
        let mut x = *a;
        for _ in 0..k {
            x = square(&x);
        }
        x
    }

    /// a^((p−5)/8), by curve25519-dalek's addition chain (bits 251..2 and 0).
    #[target_feature(enable = "avx512f,avx512ifma,avx512dq")]
    fn pow_p58(a: &Fe8) -> Fe8 {
        let t0 = square(a);
        let t1 = pow2k(&t0, 2);
        let t2 = mul(a, &t1);
        let t3 = mul(&t0, &t2);
        let t4 = square(&t3);
        let t5 = mul(&t2, &t4);
        let t7 = mul(&pow2k(&t5, 5), &t5);
        let t9 = mul(&pow2k(&t7, 10), &t7);
        let t11 = mul(&pow2k(&t9, 20), &t9);
        let t13 = mul(&pow2k(&t11, 10), &t7);
        let t15 = mul(&pow2k(&t13, 50), &t13);
        let t17 = mul(&pow2k(&t15, 100), &t15);
        let t19 = mul(&pow2k(&t17, 50), &t13);
        mul(a, &pow2k(&t19, 2))
    }

    /// a + b − c, for limbs below 2^52: 4p's limbs exceed 2^52, so none underflows.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn add_sub(a: &Fe8, b: &Fe8, c: &Fe8) -> Fe8 {
        let four_p: Fe = [
            4 * (limbs::MASK - 18),
            4 * limbs::MASK,
            4 * limbs::MASK,
            4 * limbs::MASK,
            4 * limbs::MASK,
        ];
        carry(std::array::from_fn(|i| {
            let s = _mm512_add_epi64(a.0[i], b.0[i]);
            let s = _mm512_add_epi64(s, _mm512_set1_epi64(four_p[i] as i64));
            _mm512_sub_epi64(s, c.0[i])
        }))
    }

    /// Up to eight points, as curve25519-dalek's `decompress` (its step 1 and 2,
    /// and `sqrt_ratio_i`) would give them.
    #[target_feature(enable = "avx512f,avx512ifma,avx512dq")]
    pub unsafe fn decompress8(encodings: &[[u8; 32]]) -> Vec<Option<EdwardsPoint>> {
        debug_assert!(encodings.len() <= LANES);
        let mut y_lanes = [[0u64; 5]; LANES];
        for (lane, e) in y_lanes.iter_mut().zip(encodings) {
            *lane = limbs::from_bytes(e);
        }
        let zero = Fe8::splat([0; 5]);
        let one = Fe8::splat([1, 0, 0, 0, 0]);
        let y = Fe8::load(&y_lanes);
        let yy = square(&y);
        let u = add_sub(&yy, &zero, &one); // y² − 1
        let v = add_sub(&mul(&yy, &Fe8::splat(EDWARDS_D)), &one, &zero); // d·y² + 1
        // sqrt(u/v) as r = u·v³·(u·v⁷)^((p−5)/8), then v·r² = ±u or ±u·√−1.
        let v3 = mul(&square(&v), &v);
        let v7 = mul(&square(&v3), &v);
        let r = mul(&mul(&u, &v3), &pow_p58(&mul(&u, &v7)));
        let check = mul(&v, &square(&r));
        let i = Fe8::splat(SQRT_M1);
        let ri = mul(&r, &i);
        let ry = mul(&r, &y);
        let riy = mul(&ri, &y);
        let [u, check, r, ri, ry, riy] = [u, check, r, ri, ry, riy].map(|x| x.store());

        encodings
            .iter()
            .enumerate()
            .map(|(j, e)| {
                let correct = limbs::canonical(check[j]) == limbs::canonical(u[j]);
                let flipped = limbs::is_zero(limbs::add(check[j], u[j]));
                if !(correct || flipped) {
                    // u/v is not a square (or v = 0): not a point's y.
                    return None;
                }
                // v·r² = −u: the root is r·√−1.
                let (x, t) = if flipped {
                    (ri[j], riy[j])
                } else {
                    (r[j], ry[j])
                };
                let (x, t) = (limbs::canonical(x), limbs::canonical(t));
                // dalek takes the non-negative root, then negates it if the sign bit is
                // set: x keeps its sign iff that sign is the bit's. T = X·Y follows X.
                let sign = e[31] >> 7 == 1;
                let (x, t) = if limbs::is_negative(x) == sign {
                    (x, t)
                } else {
                    (limbs::negate_canonical(x), limbs::negate_canonical(t))
                };
                let coordinates: [Fe; 4] = [x, y_lanes[j], [1, 0, 0, 0, 0], t];
                // SAFETY: 20 u64 to a type of 20 u64 in the 64-bit backend (the size
                // is checked by `transmute`); any bit pattern is valid for both, and
                // `usable`'s self-test confirmed the order (X, Y, Z, T).
                Some(unsafe { std::mem::transmute::<[Fe; 4], EdwardsPoint>(coordinates) })
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[target_feature(enable = "avx512f")]
        fn lanes(a: Fe) -> Fe8 {
            Fe8::splat(a)
        }

        #[target_feature(enable = "avx512f")]
        fn value(a: Fe8) -> Fe {
            limbs::canonical(a.store()[0])
        }

        /// The constants are what they claim: d·121666 = −121665, (√−1)² = −1.
        #[test]
        fn constants_hold() {
            if !cpu_has_features() {
                return;
            }
            unsafe {
                let d = lanes(EDWARDS_D);
                let lhs = value(mul(&d, &lanes([121666, 0, 0, 0, 0])));
                assert_eq!(lhs, limbs::negate_canonical([121665, 0, 0, 0, 0]));
                let i = lanes(SQRT_M1);
                assert_eq!(value(square(&i)), limbs::negate_canonical([1, 0, 0, 0, 0]));
                assert_eq!(value(mul(&i, &i)), value(square(&i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use proptest::prelude::*;

    /// The vectorised results whether or not the self-test accepted them, so that a
    /// fault shows here and not only as a silent fallback.
    fn vectorised_results(encodings: &[[u8; 32]]) -> Vec<Option<EdwardsPoint>> {
        #[cfg(target_arch = "x86_64")]
        if ifma::cpu_has_features() {
            return encodings
                .chunks(ifma::LANES)
                // SAFETY: the features were just detected.
                .flat_map(|g| unsafe { ifma::decompress8(g) })
                .collect();
        }
        eprintln!("no AVX-512 IFMA: comparing curve25519-dalek's decoding with itself");
        decompress_many(encodings)
    }

    fn agree(encodings: &[[u8; 32]]) {
        assert_eq!(decompress_many(encodings).len(), encodings.len());
        let ours = vectorised_results(encodings);
        let theirs = decompress_each(encodings);
        assert_eq!(ours.len(), encodings.len());
        for ((e, a), b) in encodings.iter().zip(&ours).zip(&theirs) {
            match (a, b) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    assert_eq!(a, b, "{}", hex::encode(e));
                    assert_eq!(a.compress(), b.compress());
                    let k = Scalar::from(123_456_789u64);
                    assert_eq!((a * k).compress(), (b * k).compress());
                    assert_eq!(
                        (a + ED25519_BASEPOINT_POINT).compress(),
                        (b + ED25519_BASEPOINT_POINT).compress()
                    );
                }
                _ => panic!(
                    "{}: ours {} theirs {}",
                    hex::encode(e),
                    a.is_some(),
                    b.is_some()
                ),
            }
        }
    }

    /// This machine's CI has AVX-512 IFMA: fail if the fast path is not taken there
    /// (unless the portable one was asked for), so that a self-test refusing it shows
    /// here and not only as a silent fallback.
    #[test]
    fn reports_which_path_runs() {
        if portable_requested() {
            assert!(
                !vectorised(),
                "CANDOR_ED25519_PORTABLE set but the fast path runs"
            );
        } else if fast_path_supported() {
            assert!(vectorised(), "IFMA present but the self-test refused it");
        } else {
            eprintln!(
                "no AVX-512 IFMA: the tests below compare curve25519-dalek's decoding \
                 with itself and do not test the eight-lane path"
            );
        }
    }

    #[test]
    fn edge_encodings_agree() {
        let mut e: Vec<[u8; 32]> = Vec::new();
        for p in EIGHT_TORSION {
            let c = p.compress().to_bytes();
            e.push(c);
            let mut s = c;
            s[31] ^= 0x80;
            e.push(s);
        }
        // y = 0, 1, p − 1, p, p + 1, 2^255 − 1 and their sign-bit twins.
        let p = {
            let mut b = [0xff; 32];
            b[0] = 0xed;
            b[31] = 0x7f;
            b
        };
        for low in [0u8, 1, 0xec, 0xed, 0xee, 0xff] {
            let mut b = if low >= 0xec { p } else { [0; 32] };
            b[0] = low;
            e.push(b);
            b[31] |= 0x80;
            e.push(b);
        }
        for k in 1..40u64 {
            let b = (ED25519_BASEPOINT_POINT * Scalar::from(k))
                .compress()
                .to_bytes();
            e.push(b);
            let mut n = b;
            n[31] ^= 0x80;
            e.push(n);
        }
        // Every length from 0 to 17, so partly filled groups of eight are covered.
        for n in 0..=17 {
            agree(&e[..n]);
        }
        agree(&e);
    }

    proptest! {
        #[test]
        fn random_bytes_agree(bytes in proptest::collection::vec(any::<[u8; 32]>(), 1..40)) {
            agree(&bytes);
        }

        #[test]
        fn random_points_agree(seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..40)) {
            let points: Vec<[u8; 32]> = seeds
                .iter()
                .map(|s| (ED25519_BASEPOINT_POINT * Scalar::from_bytes_mod_order(*s)).compress().to_bytes())
                .collect();
            agree(&points);
        }
    }
}
