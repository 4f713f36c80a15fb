//! RFC 6962 / RFC 9162 §2.1 hashing: the one hash type every other module shares.

use sha2::{Digest, Sha256};
use std::fmt;

/// Length in bytes of a SHA-256 hash.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// Parses standard base64 (with padding), the encoding of checkpoints and proofs.
    pub fn from_base64(s: &str) -> Option<Hash> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        Hash::from_slice(&bytes)
    }

    /// Parses lower- or upper-case hex.
    /// 64 hex digits, either case. A table look-up per digit, without branches
    /// per digit: entries carry several hashes and the log and the monitor parse
    /// them all.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let digits: &[u8; 2 * HASH_SIZE] = s.as_bytes().try_into().ok()?;
        let mut out = [0u8; HASH_SIZE];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            bad |= (hi | lo) & 0x80;
            *o = (hi << 4) | (lo & 0x0f);
        }
        (bad == 0).then_some(Hash(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; HASH_SIZE]>::try_from(bytes).ok().map(Hash)
    }

    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }
}

/// Each byte's value as a hex digit, or 0x80 if it is not one.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        t[b'A' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Plain SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Hash(Sha256::digest(data).into())
}

/// MTH({}) = SHA-256() (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// SHA-256 initial hash value (FIPS 180-4 §5.3.3).
const SHA256_H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256(0x01 || left || right) (RFC 9162 §2.1.1).
///
/// The input is always 65 bytes, so its two padded blocks (FIPS 180-4 §5.1.1: a 1 bit,
/// zeros, the 64-bit bit length) are laid out here and handed to sha2's block function
/// directly: interior hashes are most of the work of a proof on the tile path, and the
/// streaming hasher's buffering cost about a third as much again.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut blocks = [[0u8; 64]; 2];
    blocks[0][0] = 0x01;
    blocks[0][1..33].copy_from_slice(&left.0);
    blocks[0][33..].copy_from_slice(&right.0[..31]);
    blocks[1][0] = right.0[31];
    blocks[1][1] = 0x80;
    blocks[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = SHA256_H0;
    sha2::block_api::compress256(&mut state, &blocks);
    let mut out = [0u8; HASH_SIZE];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_hex_takes_64_digits_of_either_case_and_nothing_else() {
        let h = sha256(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        let good = h.to_hex();
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{}g", &good[..63]),
            format!("{}é", &good[..62]),
            format!(" {}", &good[..63]),
            format!("{}:", &good[..63]),
            format!("{}/", &good[..63]),
            format!("{}@", &good[..63]),
            format!("{}`", &good[..63]),
        ] {
            assert_eq!(Hash::from_hex(&bad), None, "{bad:?}");
        }
        // Every byte value in every position agrees with the hex crate.
        for pos in [0usize, 1, 33, 63] {
            for b in 0u8..=127 {
                let mut t = good.clone().into_bytes();
                t[pos] = b;
                let t = String::from_utf8(t).expect("ASCII");
                let mut want = [0u8; 32];
                let want = hex::decode_to_slice(&t, &mut want)
                    .ok()
                    .map(|()| Hash(want));
                assert_eq!(Hash::from_hex(&t), want, "{t:?}");
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_and_node_use_distinct_prefixes() {
        // RFC 6962 reference tree: leaf hash of the empty string.
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let a = leaf_hash(b"a");
        assert_ne!(node_hash(&a, &a), sha256(&[a.0, a.0].concat()));
    }

    #[test]
    fn node_hash_equals_streaming_sha256() {
        let mut left = leaf_hash(b"left");
        for i in 0..64u8 {
            let right = leaf_hash(&[i]);
            let mut h = Sha256::new();
            h.update([0x01]);
            h.update(left.0);
            h.update(right.0);
            let want = Hash(h.finalize().into());
            assert_eq!(node_hash(&left, &right), want);
            left = want;
        }
    }

    #[test]
    fn encodings_round_trip_and_reject_wrong_length() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("00"), None);
        assert_eq!(Hash::from_base64("not base64!"), None);
    }
}
