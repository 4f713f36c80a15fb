//! `candor serve`: command-line flags, the optional TOML config file, and the resolved
//! settings. A flag beats the config file, which beats the built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::ratelimit::Rate;
use super::witnessing::{
    DEFAULT_WITNESS_RETRY_MS, DEFAULT_WITNESS_TIMEOUT_MS, DEFAULT_WITNESS_WAIT_MS, WitnessConfig,
};
use candor_net::witness_client::WitnessEndpoint;
use candor_store::{DEFAULT_INDEX_FLUSH_ROWS, RedbOptions, StoreKind, StoreOptions};

/// Default data directory.
pub const DEFAULT_DATA: &str = "./candor-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default origin (and log key name) on first start.
pub const DEFAULT_ORIGIN: &str = "candor.local/log";
/// Default maximum entries per sequenced batch. A batch has one fsync'd commit, one
/// signature and a serial part of the sequencer's work, so small batches leave the
/// sequencer, not the CPU, bounding ingest (BENCHMARKS.md, "Ingest").
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// Default time the sequencer waits to fill a batch.
pub const DEFAULT_BATCH_DELAY_MS: u64 = 20;
/// Default maximum entries waiting in the pool.
pub const DEFAULT_POOL_ENTRIES: usize = 100_000;
/// Default maximum lines in one NDJSON submission.
pub const DEFAULT_MAX_BATCH_LINES: usize = 10_000;
/// Default request body limit (an NDJSON batch).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default limit on one JSON entry (one NDJSON line or one `application/json` body).
pub const DEFAULT_MAX_ENTRY_BODY_BYTES: usize = 64 * 1024;
/// Default whole-request time-out.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default idle time of a keep-alive connection, which is also the time a request's
/// headers may take. Above the usual proxy keep-alive (nginx: 75 s is the upper
/// end) would leave idle sockets; far below common client pool idle times (often 90 s)
/// would make clients race the close more often.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

/// Flags of `candor serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the long flags, with `_`
    /// for `-`, e.g. `batch_size = 512`); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: store, log key, admin token, origin [default: ./candor-data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Checkpoint origin and log key name; fixed on first start [default: candor.local/log].
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// Existing signed-note private key (PRIVATE+KEY+…) instead of DATA/log.key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Storage backend: `redb`, `sled` (in the data directory) or a PostgreSQL URL
    /// `postgres://user[:password]@host[:port]/db` [default: redb].
    #[arg(long, value_name = "redb|sled|postgres://…")]
    pub store: Option<String>,
    /// Serve reads only (tiles, proofs, look-ups, receipts) from a shared store, never
    /// sequence: submissions are refused with 405. Follows the sequencer's checkpoint.
    #[arg(long)]
    pub read_only: bool,
    /// Also publish the checkpoint, tiles and entry bundles to object storage:
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///path` (credentials and endpoint from the provider's usual env vars).
    #[arg(long, value_name = "URL")]
    pub tiles: Option<String>,
    /// Maximum entries per sequenced batch [default: 8192].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Milliseconds the sequencer waits to fill a batch, counted from when the oldest
    /// waiting submission was accepted [default: 20].
    #[arg(long, value_name = "MS")]
    pub batch_delay_ms: Option<u64>,
    /// Maximum entries waiting to be sequenced before 429 [default: 100000].
    #[arg(long, value_name = "N")]
    pub pool_entries: Option<usize>,
    /// Maximum lines in one NDJSON submission [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_batch_lines: Option<usize>,
    /// Maximum request body in bytes [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Whole-request time-out in seconds [default: 30].
    #[arg(long, value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Seconds a keep-alive connection may stay idle, and a request's headers may
    /// take, before the connection is closed [default: 60].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Per-company submission rate, e.g. `100/s` [default: unlimited].
    #[arg(long, value_name = "N/s")]
    pub rate_limit: Option<String>,
    /// Per-company burst (bucket size) for --rate-limit [default: N of the rate].
    #[arg(long, value_name = "N")]
    pub rate_burst: Option<u64>,
    /// A witness that must cosign checkpoints before they are published: its
    /// cosignature vkey (`candor witness vkey`) `=` its URL (repeatable).
    #[arg(long = "witness", value_name = "VKEY=URL")]
    pub witness: Vec<String>,
    /// Cosignatures a checkpoint needs before it is published [default: every witness].
    #[arg(long, value_name = "K")]
    pub witness_quorum: Option<usize>,
    /// Time limit of one request to one witness, in milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub witness_timeout_ms: Option<u64>,
    /// Pause between cosigning rounds while witnesses fail, in milliseconds [default: 1000].
    #[arg(long, value_name = "MS")]
    pub witness_retry_ms: Option<u64>,
    /// How long a submission waits for a witnessed checkpoint before 202, in
    /// milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub witness_wait_ms: Option<u64>,
    /// redb: index rows gathered before they are flushed as one sorted run
    /// [default: 131072]. Smaller makes flushes (and crash tests around them) frequent.
    #[arg(long, value_name = "ROWS")]
    pub redb_index_flush_rows: Option<usize>,
    /// redb: records an index merge moves on per append [default: sized to the
    /// appended rows]. Small makes merges span many appends.
    #[arg(long, value_name = "RECORDS")]
    pub redb_index_merge_step: Option<u64>,
}

/// The TOML config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<PathBuf>,
    listen: Option<SocketAddr>,
    origin: Option<String>,
    key: Option<PathBuf>,
    store: Option<String>,
    read_only: Option<bool>,
    tiles: Option<String>,
    batch_size: Option<usize>,
    batch_delay_ms: Option<u64>,
    pool_entries: Option<usize>,
    max_batch_lines: Option<usize>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    rate_limit: Option<String>,
    rate_burst: Option<u64>,
    witness: Option<Vec<String>>,
    witness_quorum: Option<usize>,
    witness_timeout_ms: Option<u64>,
    witness_retry_ms: Option<u64>,
    witness_wait_ms: Option<u64>,
    redb_index_flush_rows: Option<usize>,
    redb_index_merge_step: Option<u64>,
}

/// Fully resolved settings of a running log.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub listen: SocketAddr,
    /// `None`: use the persisted origin, or the default on first start.
    pub origin: Option<String>,
    pub key: Option<PathBuf>,
    pub store: StoreKind,
    /// The connection URL when `store` is [`StoreKind::Postgres`].
    pub store_url: Option<String>,
    /// `--read-only`: serve reads, never sequence.
    pub read_only: bool,
    /// `--tiles`: object storage URL to publish the read API to.
    pub tiles: Option<String>,
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub pool_entries: usize,
    pub max_batch_lines: usize,
    pub max_body_bytes: usize,
    pub max_entry_body_bytes: usize,
    pub request_timeout: Duration,
    /// Keep-alive idle time and header time-out.
    pub idle_timeout: Duration,
    /// Rate and burst, if rate limiting is on.
    pub rate_limit: Option<(Rate, u64)>,
    /// Witnesses and quorum, if the log publishes only witnessed checkpoints.
    pub witnessing: Option<WitnessConfig>,
    /// Tuning of the stores opened from the data directory.
    pub store_options: StoreOptions,
    /// The clock `logged_at` is read from: the host's, or a test's.
    pub clock: candor_core::clock::SharedClock,
}

impl Config {
    /// Merges flags over the config file (if any) over the defaults, and checks ranges.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => load_config_file(path)?,
            None => ConfigFile::default(),
        };
        let store_text = args.store.or(file.store).unwrap_or_else(|| "redb".into());
        let (store, store_url) =
            if store_text.starts_with("postgres://") || store_text.starts_with("postgresql://") {
                (StoreKind::Postgres, Some(store_text))
            } else {
                let kind: StoreKind = store_text.parse().map_err(|e| {
                    anyhow::anyhow!("--store {store_text:?}: {e}, or a postgres:// URL")
                })?;
                (kind, None)
            };
        let listen = match args.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN
                .parse()
                .context("built-in default listen address")?,
        };
        let rate_limit = match args.rate_limit.or(file.rate_limit) {
            Some(text) => {
                let rate: Rate = text.parse().context("--rate-limit")?;
                let burst = args
                    .rate_burst
                    .or(file.rate_burst)
                    .unwrap_or(rate.per_second.ceil() as u64);
                Some((rate, burst.max(1)))
            }
            None => None,
        };
        let witness_texts = if args.witness.is_empty() {
            file.witness.unwrap_or_default()
        } else {
            args.witness
        };
        let witness_quorum = args.witness_quorum.or(file.witness_quorum);
        let witnessing = if witness_texts.is_empty() {
            if witness_quorum.is_some_and(|k| k > 0) {
                anyhow::bail!("--witness-quorum needs at least one --witness");
            }
            None
        } else {
            let endpoints = witness_texts
                .iter()
                .map(|t| t.parse::<WitnessEndpoint>())
                .collect::<Result<Vec<_>, _>>()?;
            let quorum = witness_quorum.unwrap_or(endpoints.len());
            if quorum == 0 || quorum > endpoints.len() {
                anyhow::bail!(
                    "--witness-quorum must be between 1 and the number of witnesses ({}), not {quorum}",
                    endpoints.len()
                );
            }
            let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d).max(1));
            Some(WitnessConfig {
                endpoints,
                quorum,
                timeout: ms(
                    args.witness_timeout_ms.or(file.witness_timeout_ms),
                    DEFAULT_WITNESS_TIMEOUT_MS,
                ),
                retry: ms(
                    args.witness_retry_ms.or(file.witness_retry_ms),
                    DEFAULT_WITNESS_RETRY_MS,
                ),
                wait: ms(
                    args.witness_wait_ms.or(file.witness_wait_ms),
                    DEFAULT_WITNESS_WAIT_MS,
                ),
            })
        };
        let cfg = Config {
            data: args
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            listen,
            origin: args.origin.or(file.origin),
            key: args.key.or(file.key),
            store,
            store_url,
            read_only: args.read_only || file.read_only.unwrap_or(false),
            tiles: args.tiles.or(file.tiles),
            batch_size: args
                .batch_size
                .or(file.batch_size)
                .unwrap_or(DEFAULT_BATCH_SIZE),
            batch_delay: Duration::from_millis(
                args.batch_delay_ms
                    .or(file.batch_delay_ms)
                    .unwrap_or(DEFAULT_BATCH_DELAY_MS),
            ),
            pool_entries: args
                .pool_entries
                .or(file.pool_entries)
                .unwrap_or(DEFAULT_POOL_ENTRIES),
            max_batch_lines: args
                .max_batch_lines
                .or(file.max_batch_lines)
                .unwrap_or(DEFAULT_MAX_BATCH_LINES),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_entry_body_bytes: DEFAULT_MAX_ENTRY_BODY_BYTES,
            request_timeout: Duration::from_secs(
                args.request_timeout_secs
                    .or(file.request_timeout_secs)
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS),
            ),
            idle_timeout: Duration::from_secs(
                args.idle_timeout_secs
                    .or(file.idle_timeout_secs)
                    .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
            ),
            rate_limit,
            witnessing,
            store_options: StoreOptions {
                redb: RedbOptions {
                    index_flush_rows: positive(
                        "--redb-index-flush-rows",
                        args.redb_index_flush_rows.or(file.redb_index_flush_rows),
                    )?
                    .unwrap_or(DEFAULT_INDEX_FLUSH_ROWS),
                    index_merge_step: positive(
                        "--redb-index-merge-step",
                        args.redb_index_merge_step.or(file.redb_index_merge_step),
                    )?,
                },
            },
            clock: candor_core::clock::system(),
        };
        if cfg.batch_size == 0 {
            anyhow::bail!("--batch-size must be at least 1");
        }
        if cfg.max_batch_lines == 0 {
            anyhow::bail!("--max-batch-lines must be at least 1");
        }
        if cfg.pool_entries < cfg.max_batch_lines {
            anyhow::bail!(
                "--pool-entries ({}) must be at least --max-batch-lines ({}), or a full NDJSON batch could never be accepted",
                cfg.pool_entries,
                cfg.max_batch_lines
            );
        }
        if cfg.request_timeout.is_zero() {
            anyhow::bail!("--request-timeout-secs must be at least 1");
        }
        if cfg.idle_timeout.is_zero() {
            anyhow::bail!("--idle-timeout-secs must be at least 1");
        }
        Ok(cfg)
    }
}

fn load_config_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// Runs `candor serve` to completion: builds the tokio runtime, starts the log, and
/// returns after a graceful shutdown (SIGINT/SIGTERM).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("candor-serve")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(super::serve(config, super::shutdown_signal()))
}

/// `value` if it is positive; zero is refused with the flag's name.
fn positive<T: Default + PartialOrd>(flag: &str, value: Option<T>) -> anyhow::Result<Option<T>> {
    match value {
        Some(v) if v <= T::default() => anyhow::bail!("{flag} must be positive"),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candor.toml");
        std::fs::write(
            &path,
            "batch_size = 7\nbatch_delay_ms = 3\nstore = \"sled\"\nrate_limit = \"5/s\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            batch_size: Some(9),
            ..ServeArgs::default()
        };
        let cfg = Config::resolve(args).unwrap();
        assert_eq!(cfg.batch_size, 9);
        assert_eq!(cfg.batch_delay, Duration::from_millis(3));
        assert_eq!(cfg.store, StoreKind::Sled);
        assert_eq!(cfg.rate_limit.map(|(_, b)| b), Some(5));
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.data, PathBuf::from(DEFAULT_DATA));
    }

    #[test]
    fn witnesses_from_flags_or_file_with_a_checked_quorum() {
        let w = |n: &str| {
            let key = candor_core::note::SignerKey::generate(n).unwrap();
            candor_core::cosignature::witness_verifier_key(&key).to_string()
        };
        let (a, b) = (w("w.example/a"), w("w.example/b"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candor.toml");
        std::fs::write(
            &path,
            format!(
                "witness = [\"{a}=http://127.0.0.1:1\", \"{b}=http://127.0.0.1:2/\"]\nwitness_quorum = 1\nwitness_retry_ms = 50\n"
            ),
        )
        .unwrap();
        let cfg = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        let wc = cfg.witnessing.expect("witnessing configured");
        assert_eq!(wc.endpoints.len(), 2);
        assert_eq!(wc.endpoints[1].url, "http://127.0.0.1:2");
        assert_eq!(wc.quorum, 1);
        assert_eq!(wc.retry, Duration::from_millis(50));
        // Flags replace the file's list; the quorum defaults to every witness.
        let cfg = Config::resolve(ServeArgs {
            witness: vec![format!("{a}=http://127.0.0.1:3")],
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(cfg.witnessing.unwrap().quorum, 1);
        for (ws, k) in [
            (vec![a.clone()], Some(2)),
            (vec![], Some(1)),
            (vec![a], Some(0)),
        ] {
            let witness = ws
                .iter()
                .map(|v| format!("{v}=http://127.0.0.1:4"))
                .collect();
            let err = Config::resolve(ServeArgs {
                witness,
                witness_quorum: k,
                ..ServeArgs::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("--witness"), "{err}");
        }
    }

    #[test]
    fn unknown_config_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "batchsize = 7\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("batchsize"), "{err:#}");
        let err = Config::resolve(ServeArgs {
            store: Some("postgres".into()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("postgres"));
        let cfg = Config::resolve(ServeArgs {
            store: Some("postgres://u@127.0.0.1:5432/log".into()),
            read_only: true,
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(cfg.store, StoreKind::Postgres);
        assert_eq!(
            cfg.store_url.as_deref(),
            Some("postgres://u@127.0.0.1:5432/log")
        );
        assert!(cfg.read_only);
        assert!(
            Config::resolve(ServeArgs {
                batch_size: Some(0),
                ..ServeArgs::default()
            })
            .is_err()
        );
    }
}
