//! Independent work on all cores, results in input order: the monitor's per-entry
//! checks and leaf hashes, and Ed25519 batch verification split into one batch per
//! core. No I/O; on a target without threads (wasm32) everything runs on the calling
//! thread.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Maps `f` over `items` on all cores (the first share on the calling thread) and
/// returns the results in the order of `items`. Each core gets at least
/// `min_share` items, so small inputs stay on this thread.
pub fn map<T, R, F>(items: &[T], min_share: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    map_ranges(items.len(), min_share, |range| {
        items[range].iter().map(&f).collect::<Vec<R>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// The cores this process may use, read once: the standard library reads the cgroup
/// files on every call, which showed in profiles of the sequencer.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // wasm32 reports no parallelism, so it never reaches the scoped threads.
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Contiguous ranges per thread in [`map_ranges`]: threads take them in turn, so
/// one that the OS preempts (for the caller's other work or another process) holds
/// up a small range instead of a whole share of the input.
const RANGES_PER_THREAD: usize = 4;

/// Splits `0..len` into contiguous ranges (each at least `min_share` long, so small
/// inputs make one range on this thread), calls `f` once per range on one thread per
/// core (the calling thread among them; each takes the next range when it is done
/// with one), and returns the results in range order. For work that shares state
/// within a run: a batch equation per range, a memo per run of neighbouring items.
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
    let ranges: Vec<Range<usize>> = (0..count)
        .map(|i| i * len / count..(i + 1) * len / count)
        .collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(r) = ranges.get(i) else {
                return done;
            };
            done.push((i, f(r.clone())));
        }
    };
    let work = &work;
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for h in handles {
            match h.join() {
                Ok(r) => all.extend(r),
                // A panic in `f` is a bug; re-raise it here as if `f` had run inline.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        all
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
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
