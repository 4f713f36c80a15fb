//! The Candor log server (`candor serve`): durable batched sequencing on an embedded
//! store, the C2SP tlog-tiles read API and the submission API over HTTP (spec/api.md).
//!
//! One module per concern: `config` (flags and TOML), `datadir` (origin, key, token),
//! `edge` (the tree's right edge and new tiles), `reader` (reading tiles, leaves and
//! proofs from the store), `registry` (company keys), `sequencer` (the single writer),
//! `routes` (HTTP handlers), `web` (the `/verify` page), `error`, `metrics`, `ratelimit`.

pub mod config;
pub mod datadir;
pub mod edge;
pub mod error;
pub mod metrics;
pub mod ratelimit;
pub mod reader;
pub mod registry;
pub mod routes;
pub mod sequencer;
pub mod web;
pub mod witnessing;

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Semaphore, mpsc, watch};

pub use config::{Config, ServeArgs, run};

use crate::note::SignerKey;
use crate::store::open_store;
use sequencer::{BatchConfig, Core, Phase};

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
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
        .with_writer(std::io::stderr)
        .try_init();

    let identity = datadir::load_or_create(
        &config.data,
        config.origin.as_deref(),
        config.key.as_deref(),
    )?;
    let data = config.data.clone();
    let kind = config.store;
    let store = tokio::task::spawn_blocking(move || open_store(kind, &data))
        .await
        .context("opening the store")?
        .with_context(|| format!("opening the {kind} store in {}", config.data.display()))?;
    let vkey = identity.key.verifier();
    // The admin handler signs company_key entries with its own copy of the key.
    let admin_key: SignerKey = identity
        .key
        .to_string()
        .parse()
        .map_err(|e| anyhow::anyhow!("copying the log key: {e}"))?;
    let metrics = Arc::new(metrics::Metrics::new());
    let origin = identity.origin.clone();
    let core_store = store.clone();
    let core_key = identity.key;
    let core_metrics = metrics.clone();
    let witnessing = match &config.witnessing {
        Some(w) => Some(Arc::new(
            witnessing::Witnessing::new(w.clone(), &vkey).context("configuring witnesses")?,
        )),
        None => None,
    };
    let core_witnessing = witnessing.clone();
    let core = tokio::task::spawn_blocking(move || {
        Core::open_witnessed(core_store, core_key, origin, core_metrics, core_witnessing)
    })
    .await
    .context("opening the log state")?
    .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let shared = core.shared();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;

    let (tx, rx) = mpsc::unbounded_channel();
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let batch = BatchConfig {
        max_entries: config.batch_size,
        delay: config.batch_delay,
    };
    let sequencer = tokio::spawn(sequencer::run(core, rx, phase_rx.clone(), batch));
    if let Some(w) = witnessing {
        tokio::spawn(witnessing::run(
            w,
            store.clone(),
            shared.clone(),
            phase_rx.clone(),
        ));
    }

    let app = Arc::new(routes::AppState {
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
        rate_limiter: config
            .rate_limit
            .map(|(rate, burst)| ratelimit::RateLimiter::new(rate, burst)),
        limits: routes::Limits {
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
        writeln!(out, "store: {kind} in {}", config.data.display())?;
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "serving");

    let drain_tx = phase_tx.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            let _ = drain_tx.send(Phase::Draining);
        })
        .await
        .context("serving HTTP")?;
    let _ = phase_tx.send(Phase::Finished);
    sequencer.await.context("waiting for the sequencer")?;
    tracing::info!("stopped");
    Ok(())
}
