//! Independent work on all cores, results in input order: the monitor's per-entry
//! checks and leaf hashes, and Ed25519 batch verification split into one batch per
//! range. Rayon's pool does the scheduling; on wasm32 (no threads) everything runs on
//! the calling thread.

use std::ops::Range;

#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

/// Maps `f` over `items` on all cores and returns the results in the order of
/// `items`. No task gets fewer than `min_share` items, so small inputs stay on the
/// calling thread.
pub fn map<T, R, F>(items: &[T], min_share: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    if cores() == 1 || items.len() < 2 * min_share.max(1) {
        return items.iter().map(f).collect();
    }
    #[cfg(not(target_arch = "wasm32"))]
    return items.par_iter().with_min_len(min_share).map(&f).collect();
    #[cfg(target_arch = "wasm32")]
    items.iter().map(f).collect()
}

/// The cores this process may use, read once: the standard library reads the cgroup
/// files on every call, which showed in profiles of the sequencer.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Ranges per core in [`map_ranges`]: with a few per core, one that the OS preempts
/// holds up a small range instead of a whole share of the input.
const RANGES_PER_THREAD: usize = 4;

/// Splits `0..len` into contiguous ranges (each at least `min_share` long, so small
/// inputs make one range on the calling thread), calls `f` once per range on all
/// cores, and returns the results in range order. For work that shares state within
/// a run: a batch equation per range, a memo per run of neighbouring items.
pub fn map_ranges<R, F>(len: usize, min_share: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(Range<usize>) -> R + Sync,
{
    let most = len / min_share.max(1);
    let threads = cores().min(most).max(1);
    if threads == 1 {
        return vec![f(0..len)];
    }
    // Balanced: each range is at least len / count >= min_share long.
    let count = (threads * RANGES_PER_THREAD).min(most);
    let range = |i: usize| i * len / count..(i + 1) * len / count;
    #[cfg(not(target_arch = "wasm32"))]
    return (0..count).into_par_iter().map(|i| f(range(i))).collect();
    #[cfg(target_arch = "wasm32")]
    (0..count).map(|i| f(range(i))).collect()
}
#[cfg(test)]
mod tests {
    use super::{map, map_ranges};

    #[test]
    fn results_keep_the_input_order_at_every_size() {
        for n in [0usize, 1, 2, 15, 16, 17, 31, 32, 33, 255, 256, 1000] {
            let items: Vec<u64> = (0..n as u64).collect();
            let got = map(&items, 8, |x| x * 3 + 1);
            let want: Vec<u64> = items.iter().map(|x| x * 3 + 1).collect();
            assert_eq!(got, want, "n = {n}");
        }
    }

    #[test]
    fn ranges_cover_the_input_once_in_order() {
        for n in [0usize, 1, 63, 64, 127, 128, 129, 1000, 4095, 4096, 65_537] {
            let ranges = map_ranges(n, 64, |r| r);
            let covered: Vec<usize> = ranges.iter().cloned().flatten().collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>(), "n = {n}");
            assert!(
                ranges.len() == 1 || ranges.iter().all(|r| r.len() >= 64),
                "n = {n}"
            );
        }
    }
}
