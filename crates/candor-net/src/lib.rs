//! HTTP on both sides for Candor's services, shared so that the server, the monitor
//! and the witness never depend on one another:
//!
//! * [`client`]: the async client of the log's HTTP API (publish, verify, company,
//!   monitor);
//! * [`witness_client`]: the log's side of C2SP tlog-witness, asking witnesses to
//!   cosign;
//! * [`listener`]: the hardened HTTP listener (header and idle time-outs) every
//!   service serves through, and [`shutdown_signal`].

pub mod client;
pub mod listener;
pub mod witness_client;

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
