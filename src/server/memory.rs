//! Gives heap memory that the allocator keeps but no longer uses back to the kernel.
//!
//! glibc's malloc keeps freed chunks in its per-thread arenas and returns only the top
//! of each heap. The server allocates and frees megabytes per request (bodies, parsed
//! entries, receipts) on several threads, so free memory piled up and the resident size
//! grew with the log although nothing in the server did: with 1.7 million entries
//! logged, `malloc_info` showed a 672 MB heap of which 514 MB were free, and RSS grew by
//! about 100 MB per million entries (BENCHMARKS.md, "Memory"). `malloc_trim(0)` releases
//! the free pages inside every arena (glibc 2.8 and later); calling it once a second
//! keeps the resident size near what is in use.
//!
//! glibc also gives each thread that meets a locked arena a new one, up to eight per
//! core, and free memory is kept per arena: limiting the server to two arenas halved
//! its peak resident size at 10^5 entries (268 to 144 MB) at the same ingest rate
//! (BENCHMARKS.md, "Memory").

use std::sync::Once;
use std::time::Duration;

/// How often the heap is trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Arenas glibc may create (M_ARENA_MAX).
const ARENAS: i32 = 2;

/// Limits glibc's malloc to [`ARENAS`] arenas. Call before the process starts its
/// threads: arenas already created stay. A no-op where the allocator is not glibc's.
pub(crate) fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a parameter of the allocator; it has no
        // preconditions. It returns 0 on failure, and then the default stays.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) } == 0 {
            tracing::warn!("could not limit malloc arenas; the default stays");
        }
    }
}

/// Starts the trimming thread once per process; a no-op where the allocator is not
/// glibc's.
pub(crate) fn start_trimming() {
    static START: Once = Once::new();
    START.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let spawned = std::thread::Builder::new()
                .name("malloc-trim".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(TRIM_EVERY);
                        // SAFETY: malloc_trim takes the allocator's own locks and may be
                        // called from any thread at any time; it has no preconditions.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("not trimming the heap (starting a thread failed): {e}");
            }
        }
    });
}
