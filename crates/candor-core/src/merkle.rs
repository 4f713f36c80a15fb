//! Merkle trees as RFC 6962 / RFC 9162 §2.1 define them, stored with the
//! "stored hash" numbering of Go's `golang.org/x/mod/sumdb/tlog`.
//!
//! A tree of `n` leaves is kept as the sequence of hashes of all its *complete*
//! subtrees, in the order in which they become complete: leaf 0, leaf 1, the
//! node over leaves 0..2, leaf 2, leaf 3, the node over 2..4, the node over
//! 0..4, and so on. Every hash is written once and never changes, so the
//! sequence is append-only. Tree roots and proofs for any size `<= n` are then
//! computed by reading O(log n) stored hashes through [`HashReader`].
//!
//! Proof verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
//! (consistency) step by step. See `spec/merkle.md`.

use crate::hash::{HASH_SIZE, Hash, empty_root, node_hash};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Errors from reading a tree or producing a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A leaf index is not below the tree size.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof was asked for sizes that do not satisfy 0 < old <= new.
    #[error(
        "invalid tree sizes for a consistency proof: old {old}, new {new} (need 0 < old <= new)"
    )]
    InvalidSizes { old: u64, new: u64 },
    /// A reader was asked for a stored hash it does not hold.
    #[error("stored hash {index} is not available")]
    HashNotStored { index: u64 },
    /// A stored-hash index or tree size does not fit the 64-bit numbering.
    #[error("stored hash index overflows 64 bits")]
    IndexOverflow,
    /// A reader returned a different number of hashes than it was asked for.
    #[error("hash reader returned {got} hashes, expected {want}")]
    ReaderCount { want: usize, got: usize },
    /// Tile data was malformed or failed authentication.
    #[error("tile error: {0}")]
    Tile(String),
    /// Any other failure of the underlying storage (carried as text).
    #[error("hash reader failed: {0}")]
    Reader(String),
}

/// Errors from verifying a proof. Any error means "not proven".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Inclusion: the leaf index is not below the tree size (RFC 9162 §2.1.3.2 step 1).
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// Consistency: the old size is zero; a proof from the empty tree is meaningless.
    #[error("consistency proofs from an empty tree are not defined")]
    OldSizeZero,
    /// Consistency: the old size is larger than the new size.
    #[error("old tree size {old} is larger than new tree size {new}")]
    OldSizeGreater { old: u64, new: u64 },
    /// Consistency: equal sizes need an empty proof.
    #[error("consistency proof between equal sizes must be empty, got {len} hashes")]
    NonEmptyProofForEqualSizes { len: usize },
    /// The proof has more hashes than the sizes allow.
    #[error("proof has too many hashes")]
    ProofTooLong,
    /// The proof has fewer hashes than the sizes require (including an empty proof).
    #[error("proof has too few hashes")]
    ProofTooShort,
    /// The recomputed root differs from the expected one.
    #[error("recomputed root {computed} does not match expected root {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
    /// Consistency: the recomputed old root differs from the expected old root.
    #[error("recomputed old root {computed} does not match expected old root {expected}")]
    OldRootMismatch { computed: Hash, expected: Hash },
    /// Consistency with equal sizes: the two roots differ.
    #[error("trees of equal size have different roots")]
    RootsDiffer,
    /// A hash given as bytes is not 32 bytes long.
    #[error("{what} is {len} bytes long, expected {HASH_SIZE}")]
    BadHashLength { what: &'static str, len: usize },
}

/// Read access to stored hashes by stored-hash index (see [`stored_hash_index`]).
pub trait HashReader {
    /// Returns the hashes at `indexes`, in the same order. Implementations must
    /// return exactly `indexes.len()` hashes or an error.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError>;
}

impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or(TreeError::HashNotStored { index: i })
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        self.as_slice().read_hashes(indexes)
    }
}

impl HashReader for HashMap<u64, Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        indexes
            .iter()
            .map(|i| {
                self.get(i)
                    .copied()
                    .ok_or(TreeError::HashNotStored { index: *i })
            })
            .collect()
    }
}

/// Reads `indexes` and checks the reader kept its side of the contract.
fn read_checked(r: &dyn HashReader, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
    let hashes = r.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TreeError::ReaderCount {
            want: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

/// Like [`stored_hash_index`], but returns `None` instead of overflowing.
pub fn checked_stored_hash_index(level: u32, n: u64) -> Option<u64> {
    if level >= 64 {
        return None;
    }
    // The hash (level, n) is stored right after the last leaf of its subtree,
    // leaf m = (n+1)·2^level − 1, is stored, followed by `level` interior nodes
    // completed by that leaf. Leaf m is stored at index Σ_k⌊m/2^k⌋ = 2m − popcount(m).
    let next = n.checked_add(1)?;
    if next.leading_zeros() < level {
        return None;
    }
    let m = (next << level) - 1;
    let leaf = u64::try_from(2u128 * u128::from(m) - u128::from(m.count_ones())).ok()?;
    leaf.checked_add(u64::from(level))
}

/// The stored-hash index of the hash of the complete subtree at `level`
/// (0 = leaves) with index `n` within that level, i.e. MTH(D[n·2^level : (n+1)·2^level])
/// (Go tlog `StoredHashIndex`).
///
/// Returns `u64::MAX`, which is never a valid index of a 64-bit tree, if the
/// result does not fit in 64 bits; use [`checked_stored_hash_index`] to detect that.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    checked_stored_hash_index(level, n).unwrap_or(u64::MAX)
}

/// Stored index of leaf `m`: 2m − popcount(m), computed without overflow.
fn leaf_stored_index(m: u64) -> u128 {
    2 * u128::from(m) - u128::from(m.count_ones())
}

/// Inverse of [`stored_hash_index`]: the (level, n) of the hash stored at `index`
/// (Go tlog `SplitStoredHashIndex`).
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // Find the last leaf m stored at or before `index`; the hashes after it are the
    // interior nodes it completed, level 1, 2, ... Leaf m sits at 2m − popcount(m),
    // which is within 64 of 2m, so starting at index/2 takes few steps.
    let target = u128::from(index);
    let mut m = index / 2;
    while m < u64::MAX && leaf_stored_index(m + 1) <= target {
        m += 1;
    }
    // Cannot truncate: the difference is at most the number of trailing ones of m (< 64).
    let level = (target - leaf_stored_index(m)) as u32;
    (level, m >> level)
}

/// The number of hashes stored for a tree of `size` leaves (Go tlog `StoredHashCount`).
/// It is also the stored-hash index of leaf `size`.
pub fn stored_hash_count(size: u64) -> u64 {
    // Cannot truncate: 2·size − popcount(size) < 2^64 for size < 2^63; larger trees
    // saturate, which no 64-bit store could hold anyway.
    u64::try_from(leaf_stored_index(size)).unwrap_or(u64::MAX)
}

/// The hashes to append to the stored hashes of a tree of `n` leaves when leaf `n`
/// (with RFC 6962 leaf hash `leaf_hash`) is added: the leaf hash followed by every
/// interior node it completes (Go tlog `StoredHashesForRecordHash`).
/// `r` must hold the stored hashes of the tree of size `n`.
pub fn stored_hashes(n: u64, leaf_hash: Hash, r: &dyn HashReader) -> Result<Vec<Hash>, TreeError> {
    // Leaf n completes one subtree per trailing one bit of n: the left siblings are
    // the subtrees (level i, index (n >> i) − 1) for i in 0..trailing_ones(n).
    let completes = n.trailing_ones();
    let mut indexes = Vec::with_capacity(completes as usize);
    for level in 0..completes {
        let idx =
            checked_stored_hash_index(level, (n >> level) - 1).ok_or(TreeError::IndexOverflow)?;
        indexes.push(idx);
    }
    let siblings = read_checked(r, &indexes)?;
    let mut out = Vec::with_capacity(siblings.len() + 1);
    let mut h = leaf_hash;
    out.push(h);
    for left in &siblings {
        h = node_hash(left, &h);
        out.push(h);
    }
    Ok(out)
}

/// A range of leaves `[lo, hi)` whose MTH is needed for a proof.
#[derive(Clone, Copy, Debug)]
struct Span {
    lo: u64,
    hi: u64,
}

/// The largest power of two strictly less than `n` (n >= 2): RFC 9162's split point k.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Appends the stored-hash indexes of the complete subtrees that make up `span`,
/// left to right. `span.lo` is always a multiple of a power of two >= the span's
/// width for the spans RFC 9162's recursions produce, so greedy largest-first
/// decomposition yields aligned, complete subtrees.
fn span_indexes(span: Span, out: &mut Vec<u64>) -> Result<usize, TreeError> {
    let (mut lo, hi) = (span.lo, span.hi);
    let mut count = 0;
    while lo < hi {
        let level = 63 - (hi - lo).leading_zeros();
        if lo & ((1u64 << level) - 1) != 0 {
            return Err(TreeError::Reader(format!(
                "internal error: unaligned subtree [{lo}, {hi})"
            )));
        }
        out.push(checked_stored_hash_index(level, lo >> level).ok_or(TreeError::IndexOverflow)?);
        lo += 1u64 << level;
        count += 1;
    }
    Ok(count)
}

/// Folds the complete-subtree hashes of a span, left to right, into its MTH:
/// the rightmost subtrees are the smallest, so combine from the right.
fn fold_right(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    match iter.next() {
        None => empty_root(),
        Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Reads, in one call, every stored hash needed for `spans` and returns each span's MTH.
fn span_hashes(spans: &[Span], r: &dyn HashReader) -> Result<Vec<Hash>, TreeError> {
    let mut indexes = Vec::new();
    let mut counts = Vec::with_capacity(spans.len());
    for s in spans {
        counts.push(span_indexes(*s, &mut indexes)?);
    }
    let hashes = read_checked(r, &indexes)?;
    let mut out = Vec::with_capacity(spans.len());
    let mut at = 0;
    for c in counts {
        out.push(fold_right(&hashes[at..at + c]));
        at += c;
    }
    Ok(out)
}

/// The Merkle Tree Hash of the first `size` leaves, MTH(D[0:size]) (RFC 9162 §2.1.1),
/// from at most 64 stored hashes (Go tlog `TreeHash`).
pub fn tree_hash(size: u64, r: &dyn HashReader) -> Result<Hash, TreeError> {
    if size == 0 {
        return Ok(empty_root());
    }
    let h = span_hashes(&[Span { lo: 0, hi: size }], r)?;
    Ok(h[0])
}

/// The stored-hash indexes of the complete subtrees whose roots, folded from the
/// right, give MTH(D[0:size]): one per set bit of `size`, largest first.
pub fn tree_hash_indexes(size: u64) -> Result<Vec<u64>, TreeError> {
    let mut out = Vec::new();
    span_indexes(Span { lo: 0, hi: size }, &mut out)?;
    Ok(out)
}

/// RFC 9162 §2.1.3.1 PATH(m, D[lo:hi]) as spans, in proof order (leaf upwards).
fn inclusion_spans(m: u64, lo: u64, hi: u64, out: &mut Vec<Span>) {
    if hi - lo <= 1 {
        return;
    }
    let k = split_point(hi - lo);
    if m < lo + k {
        inclusion_spans(m, lo, lo + k, out);
        out.push(Span { lo: lo + k, hi });
    } else {
        inclusion_spans(m, lo + k, hi, out);
        out.push(Span { lo, hi: lo + k });
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b) as spans, with `m` an absolute size.
fn consistency_spans(m: u64, lo: u64, hi: u64, b: bool, out: &mut Vec<Span>) {
    if m == hi {
        if !b {
            out.push(Span { lo, hi });
        }
        return;
    }
    let k = split_point(hi - lo);
    if m <= lo + k {
        consistency_spans(m, lo, lo + k, b, out);
        out.push(Span { lo: lo + k, hi });
    } else {
        consistency_spans(m, lo + k, hi, false, out);
        out.push(Span { lo, hi: lo + k });
    }
}

/// The inclusion proof (audit path) for leaf `index` in the tree of `size` leaves,
/// ordered from the leaf upwards (RFC 9162 §2.1.3.1; Go tlog `ProveRecord`).
pub fn inclusion_proof(index: u64, size: u64, r: &dyn HashReader) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let mut spans = Vec::new();
    inclusion_spans(index, 0, size, &mut spans);
    span_hashes(&spans, r)
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` leaves
/// (RFC 9162 §2.1.4.1; Go tlog `ProveTree`). Needs 0 < old <= new; equal sizes give
/// an empty proof.
pub fn consistency_proof(old: u64, new: u64, r: &dyn HashReader) -> Result<Vec<Hash>, TreeError> {
    if old == 0 || old > new {
        return Err(TreeError::InvalidSizes { old, new });
    }
    if old == new {
        return Ok(Vec::new());
    }
    let mut spans = Vec::new();
    consistency_spans(old, 0, new, true, &mut spans);
    span_hashes(&spans, r)
}

/// Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2 specifies.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(index, size, leaf_hash, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Runs RFC 9162 §2.1.3.2 steps 1-5 and returns the root the proof leads to.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    // Step 1.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Steps 2-3.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if snode == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                // fnode == snode here: skip the levels where this node had no right sibling.
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    if snode != 0 {
        return Err(ProofError::ProofTooShort);
    }
    Ok(r)
}

/// Verifies a consistency proof between the tree of `old` leaves with root `old_root`
/// and the tree of `new` leaves with root `new_root`, as RFC 9162 §2.1.4.2 specifies.
///
/// Edge cases: `old == 0` is always an error (a proof from the empty tree proves
/// nothing); `old > new` is an error; `old == new` needs an empty proof and equal roots.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old == 0 {
        return Err(ProofError::OldSizeZero);
    }
    if old > new {
        return Err(ProofError::OldSizeGreater { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes { len: proof.len() });
        }
        if old_root != new_root {
            return Err(ProofError::RootsDiffer);
        }
        return Ok(());
    }
    // Step 1.
    if proof.is_empty() {
        return Err(ProofError::ProofTooShort);
    }
    // Step 2: a power-of-two old tree is itself a node of the new tree, and the
    // proof omits its hash.
    let (first, rest): (Hash, &[Hash]) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // Step 3.
    let (mut fnode, mut snode) = (old - 1, new - 1);
    // Step 4.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (first, first);
    // Step 6.
    for c in rest {
        if snode == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            computed: fr,
            expected: *old_root,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            computed: sr,
            expected: *new_root,
        });
    }
    Ok(())
}

fn hash_from_bytes(what: &'static str, bytes: &[u8]) -> Result<Hash, ProofError> {
    Hash::from_slice(bytes).ok_or(ProofError::BadHashLength {
        what,
        len: bytes.len(),
    })
}

/// [`verify_inclusion`] for callers holding untrusted byte strings (e.g. JSON from
/// an RFC 6962 API): any value that is not exactly 32 bytes is an error.
pub fn verify_inclusion_bytes(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[&[u8]],
    root: &[u8],
) -> Result<(), ProofError> {
    let leaf = hash_from_bytes("leaf hash", leaf_hash)?;
    let root = hash_from_bytes("root", root)?;
    let proof = proof
        .iter()
        .map(|p| hash_from_bytes("proof hash", p))
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(index, size, &leaf, &proof, &root)
}

/// [`verify_consistency`] for callers holding untrusted byte strings. As in
/// transparency-dev/merkle, when `old == new` the two roots are only compared byte
/// for byte (their length is not checked); otherwise every value must be 32 bytes.
pub fn verify_consistency_bytes(
    old: u64,
    new: u64,
    old_root: &[u8],
    new_root: &[u8],
    proof: &[&[u8]],
) -> Result<(), ProofError> {
    if old != 0 && old == new {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes { len: proof.len() });
        }
        if old_root != new_root {
            return Err(ProofError::RootsDiffer);
        }
        return Ok(());
    }
    let old_root = hash_from_bytes("old root", old_root)?;
    let new_root = hash_from_bytes("new root", new_root)?;
    let proof = proof
        .iter()
        .map(|p| hash_from_bytes("proof hash", p))
        .collect::<Result<Vec<_>, _>>()?;
    verify_consistency(old, new, &old_root, &new_root, &proof)
}

/// MTH(D[0:n]) computed directly from the leaf hashes (RFC 9162 §2.1.1), for small
/// inputs such as a tile's bottom row. Uses O(log n) memory.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for l in leaves {
        f.append(*l);
    }
    f.root()
}

/// A whole tree in memory: every stored hash in a `Vec`, indexed by stored-hash index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    size: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// A tree holding `leaves` (RFC 6962 leaf hashes) in order.
    pub fn from_leaf_hashes(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in leaves {
            t.append(*l);
        }
        t
    }

    /// Appends a leaf hash and returns the new leaf's index.
    pub fn append(&mut self, leaf_hash: Hash) -> u64 {
        let n = self.size;
        // Leaf n completes one subtree per trailing one bit of n; its left siblings
        // are all already stored, so no read can fail.
        let mut h = leaf_hash;
        self.hashes.push(h);
        for level in 0..n.trailing_ones() {
            let left = self.hashes[stored_hash_index(level, (n >> level) - 1) as usize];
            h = node_hash(&left, &h);
            self.hashes.push(h);
        }
        self.size += 1;
        n
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// All stored hashes, indexed by stored-hash index.
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        if index >= self.size {
            return None;
        }
        self.hashes
            .get(stored_hash_index(0, index) as usize)
            .copied()
    }

    /// MTH of the whole tree.
    pub fn root(&self) -> Hash {
        // Cannot fail: the tree holds every stored hash for its own size.
        self.root_at(self.size).unwrap_or_else(|_| empty_root())
    }

    /// MTH of the first `size` leaves (a previous version of the tree).
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError> {
        if size > self.size {
            return Err(TreeError::IndexOutOfRange {
                index: size,
                size: self.size,
            });
        }
        tree_hash(size, self)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves (size <= self.size()).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        if size > self.size {
            return Err(TreeError::IndexOutOfRange {
                index: size,
                size: self.size,
            });
        }
        inclusion_proof(index, size, self)
    }

    /// Consistency proof from size `old` to size `new` (new <= self.size()).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        if new > self.size {
            return Err(TreeError::InvalidSizes { old, new });
        }
        consistency_proof(old, new, self)
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        self.hashes.read_hashes(indexes)
    }
}

/// The right edge of a tree: the roots of its maximal complete subtrees, largest
/// first, one per set bit of the size. Enough to append leaves and compute the
/// root in O(log n) space, e.g. for a monitor that does not keep the whole tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FrontierRepr", into = "FrontierRepr")]
pub struct Frontier {
    size: u64,
    /// Complete-subtree roots, largest (leftmost) first.
    hashes: Vec<Hash>,
}

/// Serialized form of a [`Frontier`]: `{"size": n, "hashes": ["<base64>", ...]}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontierRepr {
    size: u64,
    hashes: Vec<String>,
}

impl From<Frontier> for FrontierRepr {
    fn from(f: Frontier) -> FrontierRepr {
        FrontierRepr {
            size: f.size,
            hashes: f.hashes.iter().map(Hash::to_base64).collect(),
        }
    }
}

/// Why a serialized [`Frontier`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontierError {
    /// The number of hashes is not popcount(size).
    #[error("frontier of size {size} needs {want} hashes, got {got}")]
    WrongHashCount { size: u64, want: u32, got: usize },
    /// A hash is not valid base64 of 32 bytes.
    #[error("frontier hash {index} is not base64 of 32 bytes")]
    BadHash { index: usize },
}

impl TryFrom<FrontierRepr> for Frontier {
    type Error = FrontierError;
    fn try_from(r: FrontierRepr) -> Result<Frontier, FrontierError> {
        let hashes = r
            .hashes
            .iter()
            .enumerate()
            .map(|(index, s)| Hash::from_base64(s).ok_or(FrontierError::BadHash { index }))
            .collect::<Result<Vec<_>, _>>()?;
        Frontier::from_parts(r.size, hashes)
    }
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Builds a frontier from a size and its complete-subtree roots (largest first).
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Frontier, FrontierError> {
        if hashes.len() != size.count_ones() as usize {
            return Err(FrontierError::WrongHashCount {
                size,
                want: size.count_ones(),
                got: hashes.len(),
            });
        }
        Ok(Frontier { size, hashes })
    }

    /// Reads the frontier of the tree of `size` leaves from stored hashes.
    pub fn from_reader(size: u64, r: &dyn HashReader) -> Result<Frontier, TreeError> {
        let indexes = tree_hash_indexes(size)?;
        let hashes = read_checked(r, &indexes)?;
        Ok(Frontier { size, hashes })
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf_hash: Hash) {
        // Each trailing one bit of the old size is a complete subtree that the new
        // leaf's subtree now merges with.
        let mut h = leaf_hash;
        for _ in 0..self.size.trailing_ones() {
            match self.hashes.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break, // unreachable: hashes.len() == popcount(size)
            }
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MTH of the tree.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes)
    }

    /// The complete-subtree roots, largest (leftmost) first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    /// MTH straight from the RFC 9162 §2.1.1 recursion.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn stored_hash_index_matches_go_layout() {
        // Leaf 0, leaf 1, node(0..2), leaf 2, leaf 3, node(2..4), node(0..4), leaf 4.
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
        assert_eq!(stored_hash_index(0, 3), 4);
        assert_eq!(stored_hash_index(1, 1), 5);
        assert_eq!(stored_hash_index(2, 0), 6);
        assert_eq!(stored_hash_index(0, 4), 7);
        assert_eq!(stored_hash_count(0), 0);
        assert_eq!(stored_hash_count(1), 1);
        assert_eq!(stored_hash_count(2), 3);
        assert_eq!(stored_hash_count(4), 7);
        assert_eq!(stored_hash_count(5), 8);
    }

    #[test]
    fn split_inverts_index() {
        let mut seen = 0u64;
        for n in 0..2000u64 {
            // Every stored hash for leaves < n appears exactly once, in order.
            let t = n.trailing_ones();
            for level in 0..=t {
                let idx = stored_hash_index(level, n >> level);
                assert_eq!(idx, seen, "level {level} n {n}");
                assert_eq!(split_stored_hash_index(idx), (level, n >> level));
                seen += 1;
            }
            assert_eq!(stored_hash_count(n + 1), seen);
        }
        // Large values do not overflow.
        let big = stored_hash_index(5, (1 << 50) + 7);
        assert_eq!(split_stored_hash_index(big), (5, (1 << 50) + 7));
        assert_eq!(checked_stored_hash_index(64, 0), None);
        assert_eq!(checked_stored_hash_index(1, u64::MAX), None);
        assert_eq!(stored_hash_index(0, u64::MAX), u64::MAX);
        let (l, n) = split_stored_hash_index(u64::MAX - 1);
        assert_eq!(stored_hash_index(l, n), u64::MAX - 1);
    }

    #[test]
    fn tree_hash_matches_recursive_definition() {
        let t = tree(70);
        let leaves: Vec<Hash> = (0..70).map(|i| t.leaf_hash(i).unwrap()).collect();
        for n in 0..=70u64 {
            let want = mth(&leaves[..n as usize]);
            assert_eq!(t.root_at(n).unwrap(), want, "size {n}");
            assert_eq!(root_from_leaf_hashes(&leaves[..n as usize]), want);
        }
        assert_eq!(t.root(), mth(&leaves));
        assert!(t.root_at(71).is_err());
    }

    #[test]
    fn proofs_verify_and_reject_mutations() {
        let t = tree(33);
        for n in 1..=33u64 {
            let root = t.root_at(n).unwrap();
            for i in 0..n {
                let p = t.inclusion_proof(i, n).unwrap();
                let leaf = t.leaf_hash(i).unwrap();
                verify_inclusion(i, n, &leaf, &p, &root).unwrap();
                assert!(verify_inclusion(i, n, &leaf_hash(b"x"), &p, &root).is_err());
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j].0[0] ^= 1;
                    assert!(verify_inclusion(i, n, &leaf, &bad, &root).is_err());
                }
                let mut longer = p.clone();
                longer.push(leaf);
                assert_eq!(
                    verify_inclusion(i, n, &leaf, &longer, &root),
                    Err(ProofError::ProofTooLong)
                );
                if !p.is_empty() {
                    assert_eq!(
                        verify_inclusion(i, n, &leaf, &p[1..], &root),
                        Err(ProofError::ProofTooShort)
                    );
                }
            }
            for m in 1..=n {
                let p = t.consistency_proof(m, n).unwrap();
                let old = t.root_at(m).unwrap();
                verify_consistency(m, n, &old, &root, &p).unwrap();
                if m < n {
                    assert!(verify_consistency(m, n, &root, &root, &p).is_err());
                }
            }
        }
    }

    #[test]
    fn rfc_edge_cases() {
        let t = tree(4);
        let r = t.root();
        let leaf = t.leaf_hash(0).unwrap();
        assert_eq!(
            verify_inclusion(4, 4, &leaf, &[], &r),
            Err(ProofError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert!(verify_inclusion(0, 0, &leaf, &[], &r).is_err());
        // Single-leaf tree: empty proof, root is the leaf hash.
        verify_inclusion(0, 1, &leaf, &[], &leaf).unwrap();
        assert_eq!(
            verify_consistency(0, 0, &r, &r, &[]),
            Err(ProofError::OldSizeZero)
        );
        assert_eq!(
            verify_consistency(0, 4, &r, &r, &[]),
            Err(ProofError::OldSizeZero)
        );
        assert!(matches!(
            verify_consistency(5, 4, &r, &r, &[]),
            Err(ProofError::OldSizeGreater { .. })
        ));
        verify_consistency(4, 4, &r, &r, &[]).unwrap();
        assert_eq!(
            verify_consistency(4, 4, &r, &leaf, &[]),
            Err(ProofError::RootsDiffer)
        );
        assert!(matches!(
            verify_consistency(4, 4, &r, &r, &[leaf]),
            Err(ProofError::NonEmptyProofForEqualSizes { len: 1 })
        ));
        let old = t.root_at(2).unwrap();
        assert_eq!(
            verify_consistency(2, 4, &old, &r, &[]),
            Err(ProofError::ProofTooShort)
        );
        assert_eq!(
            consistency_proof(0, 4, &t),
            Err(TreeError::InvalidSizes { old: 0, new: 4 })
        );
        assert_eq!(consistency_proof(3, 3, &t), Ok(vec![]));
        assert!(inclusion_proof(4, 4, &t).is_err());
        assert_eq!(
            verify_inclusion_bytes(0, 1, b"short", &[], leaf.as_bytes()),
            Err(ProofError::BadHashLength {
                what: "leaf hash",
                len: 5
            })
        );
        verify_consistency_bytes(1, 1, b"same", b"same", &[]).unwrap();
        assert!(verify_consistency_bytes(0, 0, b"same", b"same", &[]).is_err());
    }

    #[test]
    fn readers_report_missing_hashes_and_bad_counts() {
        let hashes = vec![leaf_hash(b"a")];
        assert_eq!(
            tree_hash(2, &hashes),
            Err(TreeError::HashNotStored { index: 2 })
        );
        let mut map = HashMap::new();
        map.insert(0u64, leaf_hash(b"a"));
        assert_eq!(tree_hash(1, &map), Ok(leaf_hash(b"a")));
        struct Short;
        impl HashReader for Short {
            fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, TreeError> {
                Ok(vec![])
            }
        }
        assert_eq!(
            tree_hash(3, &Short),
            Err(TreeError::ReaderCount { want: 2, got: 0 })
        );
    }

    #[test]
    fn stored_hashes_match_memory_tree() {
        let t = tree(40);
        let mut stored: Vec<Hash> = Vec::new();
        for i in 0..40u64 {
            let more = stored_hashes(i, t.leaf_hash(i).unwrap(), &stored).unwrap();
            stored.extend(more);
            assert_eq!(stored.len() as u64, stored_hash_count(i + 1));
        }
        assert_eq!(stored, t.stored());
    }

    #[test]
    fn frontier_matches_tree_and_serde_validates() {
        let mut t = MemoryTree::new();
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for i in 0..300u64 {
            t.append(leaf_hash(&i.to_le_bytes()));
            f.append(leaf_hash(&i.to_le_bytes()));
            assert_eq!(f.root(), t.root());
            assert_eq!(f.size(), t.size());
            assert_eq!(Frontier::from_reader(t.size(), &t).unwrap(), f);
        }
        let json = serde_json::to_string(&f).unwrap();
        let back: Frontier = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Frontier>(r#"{"size":3,"hashes":[]}"#).is_err());
        assert!(serde_json::from_str::<Frontier>(r#"{"size":1,"hashes":["AAAA"]}"#).is_err());
        assert!(serde_json::from_str::<Frontier>(r#"{"size":0,"hashes":[],"extra":1}"#).is_err());
    }
}
