//! Independent work on all cores, results in input order: the monitor's per-entry
//! checks and leaf hashes, and Ed25519 batch verification split into one batch per
//! core. No I/O; on a target without threads (wasm32) everything runs on the calling
//! thread.

use std::ops::Range;

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

/// Splits `0..len` into one contiguous range per core (each at least `min_share`
/// long, so small inputs make one range on this thread), calls `f` once per range
/// on its own thread (the first on the calling thread), and returns the results in
/// range order. For work that shares state within a run: a batch equation per
/// share, a memo per run of neighbouring items.
pub fn map_ranges<R, F>(len: usize, min_share: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(Range<usize>) -> R + Sync,
{
    let shares = cores().min(len / min_share.max(1)).max(1);
    if shares == 1 {
        return vec![f(0..len)];
    }
    let per = len.div_ceil(shares);
    let ranges: Vec<Range<usize>> = (0..len)
        .step_by(per)
        .map(|lo| lo..(lo + per).min(len))
        .collect();
    let f = &f;
    std::thread::scope(|scope| {
        let mut ranges = ranges.into_iter();
        let first = ranges.next().unwrap_or(0..0);
        let handles: Vec<_> = ranges.map(|r| scope.spawn(move || f(r))).collect();
        let mut out = Vec::with_capacity(shares);
        out.push(f(first));
        for h in handles {
            match h.join() {
                Ok(r) => out.push(r),
                // A panic in `f` is a bug; re-raise it here as if `f` had run inline.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        out
    })
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
        for n in [0usize, 1, 63, 64, 127, 128, 129, 1000] {
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
