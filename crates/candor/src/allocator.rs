//! The process's allocator, declared by each binary that runs the server: the
//! `candor` command, and the load generator, which runs `candor serve` inside its own
//! executable, so that both measure the same server.
//!
//! jemalloc, not glibc's malloc: the server allocates and frees megabytes per request
//! on many threads, where glibc's malloc costs ingest (BENCHMARKS.md, "Allocator").

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (its `malloc_conf`, read at start-up). Two arenas instead of
/// four per core, and a background thread that returns pages unused for 200 ms, which
/// lowers the server's peak at the same ingest rate (BENCHMARKS.md, "Allocator").
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 69] =
    b"background_thread:true,narenas:2,dirty_decay_ms:200,muzzy_decay_ms:0\0";
