//! `--listen ADDR`: serves the monitor's latest verified checkpoint on the
//! tlog-witness monitoring path, `GET /<hex sha256(origin)>/checkpoint`, so that
//! monitors (and anyone) can compare views (C2SP tlog-witness, "Monitoring").

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
struct Served {
    origin_id: String,
    checkpoint: Arc<RwLock<Option<Vec<u8>>>>,
}

async fn get_checkpoint(State(s): State<Served>, Path(id): Path<String>) -> Response {
    if id != s.origin_id {
        return (StatusCode::NOT_FOUND, "unknown origin\n").into_response();
    }
    let note = s.checkpoint.read().ok().and_then(|c| c.clone());
    match note {
        Some(note) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            note,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no checkpoint verified yet\n").into_response(),
    }
}

/// The router for one origin.
pub fn router(origin: &str, checkpoint: Arc<RwLock<Option<Vec<u8>>>>) -> Router {
    let s = Served {
        origin_id: candor_core::hash::sha256(origin.as_bytes()).to_hex(),
        checkpoint,
    };
    Router::new()
        .route("/{id}/checkpoint", get(get_checkpoint))
        .with_state(s)
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn spawn(
    addr: &str,
    origin: &str,
    checkpoint: Arc<RwLock<Option<Vec<u8>>>>,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(origin, checkpoint);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("monitor: monitoring path server stopped: {e}");
        }
    });
    Ok(bound)
}
