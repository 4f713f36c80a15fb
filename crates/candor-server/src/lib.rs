//! The Candor log server (`candor serve`): durable batched sequencing on an embedded
//! store, the C2SP tlog-tiles read API and the submission API over HTTP (spec/api.md).
//!
//! One module per concern: `config` (flags and TOML), `datadir` (origin, key, token),
//! `edge` (the tree's right edge and new tiles), `reader` (reading tiles, leaves and
//! proofs from the store), `registry` (company keys), `sequencer` (the single writer),
//! `state` (what the others share), `routes` (HTTP handlers), `web` (the `/verify` page),
//! `error`, `metrics`, `ratelimit`.

pub mod config;
pub mod datadir;
pub mod edge;
pub mod error;
pub mod follower;
pub mod metrics;
pub mod ratelimit;
pub mod reader;
pub mod registry;
pub mod routes;
pub mod sequencer;
pub mod state;
pub mod testing;
pub mod tiles_publisher;
pub mod web;
pub mod witnessing;

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Semaphore, mpsc, watch};

pub use config::{Config, ServeArgs, run};

use candor_core::note::{SignerKey, VerifierKey};
use candor_net::listener;
pub use candor_net::shutdown_signal;
use candor_store::postgres::{SequencerLock, redact_url};
use candor_store::{Store, StoreKind, open_postgres, open_store_with};
use sequencer::{BatchConfig, Core};
use state::{Phase, Role, Shared, Submission};

/// How often a read-only front end or a standby re-reads the stored checkpoint, and a
/// standby retries the sequencer lock.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Everything a late start of the sequencer (a standby's promotion) needs.
struct Promotion {
    store: Arc<dyn Store>,
    key: SignerKey,
    origin: String,
    vkey: VerifierKey,
    url: String,
    rx: mpsc::UnboundedReceiver<Submission>,
    batch: BatchConfig,
    tiles: Option<String>,
}

/// Starts the object-storage publisher for a sequencer, if `--tiles` was given.
fn start_publisher(
    tiles: Option<&str>,
    store: &Arc<dyn Store>,
    shared: &Arc<Shared>,
    vkey: &VerifierKey,
    phase: &watch::Receiver<Phase>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(url) = tiles else { return Ok(None) };
    let target = candor_store::object_tiles::Target::open(url)?;
    Ok(Some(tokio::spawn(tiles_publisher::run(
        target,
        store.clone(),
        shared.clone(),
        vkey.clone(),
        phase.clone(),
    ))))
}

/// Tries the sequencer lock on a blocking thread.
async fn try_lock(url: &str) -> anyhow::Result<Option<SequencerLock>> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || SequencerLock::try_acquire(&url))
        .await
        .context("taking the sequencer lock")?
        .map_err(|e| anyhow::anyhow!("taking the sequencer lock: {e}"))
}

/// A standby (or read-only front end): follows the store until the phase is Finished;
/// a standby also retries the sequencer lock and, once it holds it, becomes the
/// sequencer (loads the durable state, signs if needed, runs the sequencer, publishes).
async fn follow(
    shared: Arc<Shared>,
    role_tx: watch::Sender<Role>,
    mut phase: watch::Receiver<Phase>,
    fatal: watch::Sender<Option<String>>,
    promotion: Option<Promotion>,
    store: Arc<dyn Store>,
    vkey: VerifierKey,
) {
    loop {
        if *phase.borrow() == Phase::Finished {
            return;
        }
        if let Some(p) = &promotion {
            match try_lock(&p.url).await {
                Ok(Some(lock)) => {
                    let Some(p) = promotion else { return };
                    promote(p, lock, shared, role_tx, phase, fatal).await;
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        let (st, sh, vk) = (store.clone(), shared.clone(), vkey.clone());
        match tokio::task::spawn_blocking(move || follower::refresh(&*st, &vk, &sh)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("following the stored checkpoint: {e}"),
            Err(e) => tracing::warn!("following the stored checkpoint: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {},
            _ = phase.wait_for(|p| *p == Phase::Finished) => return,
        }
    }
}

/// Runs the sequencer while holding `lock`; a lost lock shuts the server down.
async fn promote(
    p: Promotion,
    lock: SequencerLock,
    shared: Arc<Shared>,
    role_tx: watch::Sender<Role>,
    phase: watch::Receiver<Phase>,
    fatal: watch::Sender<Option<String>>,
) {
    tracing::info!("took the sequencer lock: sequencing");
    let (st, sh) = (p.store.clone(), shared.clone());
    let (key, origin) = (p.key, p.origin);
    let core =
        match tokio::task::spawn_blocking(move || Core::open_shared(st, key, origin, sh)).await {
            Ok(Ok(core)) => core,
            Ok(Err(e)) => {
                let _ = fatal.send(Some(format!("refusing to sequence: {e}")));
                return;
            }
            Err(e) => {
                let _ = fatal.send(Some(format!("opening the log state: {e}")));
                return;
            }
        };
    let mut lost = lock.lost();
    let watch_fatal = fatal.clone();
    let watcher = tokio::spawn(async move {
        if lost.wait_for(|l| *l).await.is_ok() {
            let _ = watch_fatal.send(Some(
                "lost the PostgreSQL session holding the sequencer lock; stopping so that \
                 another process can sequence"
                    .into(),
            ));
        }
    });
    // With --witness, the cosigning task takes over from the stored (last witnessed)
    // checkpoint that `open_shared` started from; the witnesses learn that this
    // process's checkpoints extend the tree they cosigned through their 409 answers.
    if let Some(w) = shared.witnessing.clone() {
        tokio::spawn(witnessing::run(
            w,
            p.store.clone(),
            shared.clone(),
            phase.clone(),
        ));
    }
    let publisher = match start_publisher(p.tiles.as_deref(), &p.store, &shared, &p.vkey, &phase) {
        Ok(h) => h,
        Err(e) => {
            let _ = fatal.send(Some(format!("{e:#}")));
            None
        }
    };
    let _ = role_tx.send(Role::Sequencer);
    sequencer::run(core, p.rx, phase, p.batch).await;
    if let Some(h) = publisher {
        let _ = h.await;
    }
    watcher.abort();
    // Released only now: nothing of this process sequences any more.
    drop(lock);
}

/// Standard error for diagnostics, ignoring write errors: when stderr goes to a full
/// disk, tracing-subscriber reports a failed write with `eprintln!`, which panics and
/// would stop whichever task was logging (the sequencer included). A lost log line is
/// better than a stopped log.
pub struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Runs the log until `shutdown` resolves, then shuts down gracefully: stops accepting
/// connections, completes the batch in hand, refuses what is still pooled with 503,
/// and returns once every acknowledged entry is durable (it always is: receipts are
/// only sent after the store's fsync).
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| LossyStderr)
        .try_init();

    let identity = datadir::load_or_create(
        &config.data,
        config.origin.as_deref(),
        config.key.as_deref(),
    )?;
    let kind = config.store;
    let store_desc = match &config.store_url {
        Some(url) => redact_url(url),
        None => format!("{kind} in {}", config.data.display()),
    };
    let store: Arc<dyn Store> = match (kind, config.store_url.clone()) {
        (StoreKind::Postgres, Some(url)) => {
            tokio::task::spawn_blocking(move || open_postgres(&url))
                .await
                .context("opening the store")?
                .with_context(|| format!("opening the store {store_desc}"))?
        }
        (StoreKind::Postgres, None) => anyhow::bail!("--store postgres needs a postgres:// URL"),
        _ => {
            let data = config.data.clone();
            let options = config.store_options;
            tokio::task::spawn_blocking(move || open_store_with(kind, &data, options))
                .await
                .context("opening the store")?
                .with_context(|| format!("opening the {kind} store in {}", config.data.display()))?
        }
    };
    let vkey = identity.key.verifier();
    // The admin handler signs company_key entries with its own copy of the key.
    let admin_key: SignerKey = identity
        .key
        .to_string()
        .parse()
        .map_err(|e| anyhow::anyhow!("copying the log key: {e}"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let origin = identity.origin.clone();

    // Who sequences: an embedded store is this process's alone; on PostgreSQL only the
    // holder of the sequencer lock does, the others wait as standbys.
    let mut lock = None;
    let mut role = if config.read_only {
        Role::ReadOnly
    } else if let Some(url) = &config.store_url {
        lock = try_lock(url).await?;
        if lock.is_some() {
            Role::Sequencer
        } else {
            Role::Standby
        }
    } else {
        Role::Sequencer
    };
    // A front end that does not sequence starts from the sequencer's first checkpoint;
    // a standby that gets the lock while waiting for it sequences itself.
    let mut initial = None;
    while role != Role::Sequencer {
        let (st, vk) = (store.clone(), vkey.clone());
        let loaded = tokio::task::spawn_blocking(move || follower::load(&*st, &vk))
            .await
            .context("reading the stored checkpoint")?
            .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
        if loaded.is_some() {
            initial = loaded;
            break;
        }
        if role == Role::Standby
            && let Some(url) = &config.store_url
            && let Some(l) = try_lock(url).await?
        {
            lock = Some(l);
            role = Role::Sequencer;
            break;
        }
        tracing::info!("waiting for the sequencer's first checkpoint in the store");
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
    let (role_tx, role_rx) = watch::channel(role);
    let (fatal_tx, mut fatal_rx) = watch::channel::<Option<String>>(None);

    let (tx, rx) = mpsc::unbounded_channel();
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let batch = BatchConfig {
        max_entries: config.batch_size,
        delay: config.batch_delay,
    };

    // A sequencer and a standby (which may become one) publish only witnessed
    // checkpoints with --witness; a read-only front end serves what the store holds,
    // which in witness mode is only ever a witnessed checkpoint.
    let witnessing = match (&config.witnessing, role) {
        (Some(w), Role::Sequencer | Role::Standby) => Some(Arc::new(
            state::Witnessing::new(w.clone(), &vkey).context("configuring witnesses")?,
        )),
        _ => None,
    };
    let (shared, task) = if role == Role::Sequencer {
        let core_store = store.clone();
        let core_key = identity.key;
        let core_metrics = metrics.clone();
        let core_witnessing = witnessing.clone();
        let core_clock = config.clock.clone();
        let core = tokio::task::spawn_blocking(move || {
            Core::open_witnessed(
                core_store,
                core_key,
                origin,
                core_metrics,
                core_witnessing,
                core_clock,
            )
        })
        .await
        .context("opening the log state")?
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
        let shared = core.shared();
        if let Some(w) = witnessing {
            tokio::spawn(witnessing::run(
                w,
                store.clone(),
                shared.clone(),
                phase_rx.clone(),
            ));
        }
        let publisher =
            start_publisher(config.tiles.as_deref(), &store, &shared, &vkey, &phase_rx)?;
        let lost = lock.as_ref().map(SequencerLock::lost);
        let watch_fatal = fatal_tx.clone();
        let seq_phase = phase_rx.clone();
        let task = tokio::spawn(async move {
            let watcher = lost.map(|mut lost| {
                tokio::spawn(async move {
                    if lost.wait_for(|l| *l).await.is_ok() {
                        let _ = watch_fatal.send(Some(
                            "lost the PostgreSQL session holding the sequencer lock; stopping \
                             so that another process can sequence"
                                .into(),
                        ));
                    }
                })
            });
            sequencer::run(core, rx, seq_phase, batch).await;
            if let Some(h) = publisher {
                let _ = h.await;
            }
            if let Some(w) = watcher {
                w.abort();
            }
            // Released only after the sequencer stopped.
            drop(lock);
        });
        (shared, task)
    } else {
        let Some((published, registry)) = initial else {
            anyhow::bail!("internal: a follower started without a checkpoint");
        };
        let shared = follower::shared(
            published,
            registry,
            metrics.clone(),
            witnessing,
            config.clock.clone(),
        );
        let promotion = match (&config.store_url, role) {
            (Some(url), Role::Standby) => Some(Promotion {
                store: store.clone(),
                key: identity.key,
                origin,
                vkey: vkey.clone(),
                url: url.clone(),
                rx,
                batch,
                tiles: config.tiles.clone(),
            }),
            _ => None,
        };
        let task = tokio::spawn(follow(
            shared.clone(),
            role_tx,
            phase_rx.clone(),
            fatal_tx.clone(),
            promotion,
            store.clone(),
            vkey.clone(),
        ));
        (shared, task)
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;

    let app = Arc::new(state::AppState {
        origin: identity.origin.clone(),
        verifier_key: vkey.clone(),
        log_key: admin_key,
        admin_token: identity.admin_token,
        store,
        shared,
        metrics,
        pool: tx,
        pool_permits: Arc::new(Semaphore::new(config.pool_entries)),
        pool_size: config.pool_entries,
        phase: phase_rx,
        role: role_rx,
        rate_limiter: config
            .rate_limit
            .map(|(rate, burst)| ratelimit::RateLimiter::new(rate, burst)),
        limits: state::Limits {
            max_batch_lines: config.max_batch_lines,
            max_body_bytes: config.max_body_bytes,
            max_entry_body_bytes: config.max_entry_body_bytes,
            request_timeout: config.request_timeout,
        },
    });
    let router = routes::router(app);

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "origin: {}", identity.origin)?;
        writeln!(out, "verifier key: {vkey}")?;
        writeln!(out, "admin token: {}", identity.token_path.display())?;
        writeln!(out, "store: {store_desc}")?;
        writeln!(out, "role: {}", role.as_str())?;
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, role = role.as_str(), "serving");

    let drain_tx = phase_tx.clone();
    let mut fatal_wait = fatal_rx.clone();
    listener::serve(
        listener,
        router,
        listener::Timeouts {
            first_byte: listener::first_byte_timeout(config.request_timeout),
            idle: config.idle_timeout,
        },
        async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown requested: draining"),
                _ = fatal_wait.wait_for(Option::is_some) => {
                    tracing::error!("stopping: draining");
                }
            }
            let _ = drain_tx.send(Phase::Draining);
        },
    )
    .await;
    let _ = phase_tx.send(Phase::Finished);
    task.await.context("waiting for the sequencer")?;
    tracing::info!("stopped");
    if let Some(why) = fatal_rx.borrow_and_update().clone() {
        anyhow::bail!("{why}");
    }
    Ok(())
}
