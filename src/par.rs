//! Independent work on all cores, results in input order: the monitor's per-entry
//! checks and leaf hashes, and Ed25519 batch verification split into one batch per
//! core. No I/O; on a target without threads (wasm32) everything runs on the calling
//! thread.

/// Maps `f` over `items` on all cores (the first share on the calling thread) and
/// returns the results in the order of `items`. Each core gets at least
/// `min_share` items, so small inputs stay on this thread.
pub fn map<T, R, F>(items: &[T], min_share: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    // wasm32 reports no parallelism, so it never reaches the scoped threads.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shares = cores.min(items.len() / min_share.max(1)).max(1);
    if shares == 1 {
        return items.iter().map(&f).collect();
    }
    let per = items.len().div_ceil(shares);
    let f = &f;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(per);
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = Vec::with_capacity(items.len());
        out.extend(first.iter().map(f));
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; re-raise it here as if `f` had run inline.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::map;

    #[test]
    fn results_keep_the_input_order_at_every_size() {
        for n in [0usize, 1, 2, 15, 16, 17, 31, 32, 33, 255, 256, 1000] {
            let items: Vec<u64> = (0..n as u64).collect();
            let got = map(&items, 8, |x| x * 3 + 1);
            let want: Vec<u64> = items.iter().map(|x| x * 3 + 1).collect();
            assert_eq!(got, want, "n = {n}");
        }
    }
}
