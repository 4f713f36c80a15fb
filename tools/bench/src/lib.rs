//! Benchmarks of Candor's hot paths live in `benches/`; see BENCHMARKS.md for the
//! commands and figures. This library only holds the fixtures they share.

use candor_core::hash::{Hash, sha256};

/// `n` distinct pseudo-random leaf hashes (SHA-256 of the index).
pub fn leaf_hashes(n: u64) -> Vec<Hash> {
    (0..n).map(|i| sha256(&i.to_be_bytes())).collect()
}

/// True when run by `cargo bench` (criterion gets `--bench`); `cargo test` runs each
/// benchmark once in test mode, where the 10^7-leaf fixtures would only waste CI time.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}
