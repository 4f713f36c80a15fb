//! HTTP handlers and the router (spec/api.md). Reads are served from the latest
//! PUBLISHED checkpoint only, so nothing is visible before it is durable and signed.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tokio::sync::{TryAcquireError, oneshot};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate as _, SizeAbove};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use super::error::ApiError;
use super::metrics::Metrics;
use super::reader::{self, StoreTiles};
use super::registry::{Action, Change, Registry};
use super::sequencer;
use super::state::{AppState, Phase, Receipt, Role, Submission, Validated};
use super::witnessing::{self, Settled};
use candor_core::entry::{Entry, EntryError, SignedEntry};
use candor_core::hash::Hash;
use candor_core::note::VerifierKey;
use candor_core::tiles::{self, TILE_HEIGHT, TILE_WIDTH, TilePath};
use candor_store::TileId;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type App = Arc<AppState>;

/// The whole HTTP API with its middleware.
pub fn router(app: App) -> Router {
    let limits = app.limits.clone();
    let metrics = app.metrics.clone();
    let verify_page = super::web::routes(
        &app.origin,
        &app.verifier_key.to_string(),
        app.trust_policy_text().as_deref(),
    );
    Router::new()
        .merge(verify_page)
        .route("/checkpoint", get(get_checkpoint))
        .route("/tile/{*path}", get(get_tile))
        .route("/healthz", get(healthz))
        .route("/metrics", get(get_metrics))
        .route("/v1/log", get(get_log))
        .route("/v1/entries", get(get_entry_by_hash).post(post_entries))
        .route("/v1/entries/{index}", get(get_entry))
        .route("/v1/proof/inclusion", get(get_inclusion))
        .route("/v1/proof/consistency", get(get_consistency))
        .route("/v1/receipts/{index}", get(get_receipt))
        .route("/v1/companies", axum::routing::post(post_companies))
        .route("/v1/companies/{name}", get(get_company))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this resource".into())
        })
        .with_state(app)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(
            // Tiles and bundles are served byte-exact and uncompressed (static mirrors
            // copy them verbatim); JSON and text are compressed on request, at the
            // fastest level. NDJSON receipts are not: they are mostly base64 of signed
            // leaves and proof hashes (little to gain) and gzip of every batch's
            // receipts cost the sequencing path more CPU than the rest of a receipt.
            CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(
                    SizeAbove::new(512)
                        .and(NotForContentType::const_new("application/octet-stream"))
                        .and(NotForContentType::const_new("application/x-ndjson")),
                ),
        )
        .layer(RequestBodyTimeoutLayer::new(
            limits.request_timeout.min(Duration::from_secs(10)),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout + Duration::from_secs(5),
        ))
        .layer(middleware::from_fn_with_state(metrics, count_status))
        .layer(TraceLayer::new_for_http())
}

async fn count_status(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    metrics.count_response(resp.status().as_u16());
    resp
}

// ---------------------------------------------------------------------------
// Helpers

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

fn query(raw: Option<String>) -> HashMap<String, String> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// A decimal u64 without sign or leading zeros (as in tlog-tiles and checkpoints).
fn parse_u64(what: &str, s: &str) -> Result<u64, ApiError> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::BadRequest(format!("{what} {s:?} is not a decimal integer")))
}

/// A path segment; axum's own rejection (e.g. percent-encoded invalid UTF-8) is
/// answered as a JSON `400 bad_request` like every other error (spec/api.md §6).
fn path_segment(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::BadRequest(format!("malformed path: {}", e.body_text())))
}

fn required_u64(q: &HashMap<String, String>, name: &str) -> Result<u64, ApiError> {
    let v = q
        .get(name)
        .ok_or_else(|| ApiError::BadRequest(format!("query parameter {name} is required")))?;
    parse_u64(name, v)
}

fn with_cache(mut resp: Response, value: &'static str) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    resp
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=5";
const NO_STORE: &str = "no-store";

// ---------------------------------------------------------------------------
// tlog-tiles read API (C2SP tlog-tiles)

async fn get_checkpoint(State(app): State<App>) -> Response {
    if let Some(w) = &app.shared.witnessing
        && !w.is_witnessed()
    {
        return ApiError::Unavailable(
            "no checkpoint of this log has been cosigned by its witness quorum yet; retry".into(),
        )
        .into_response();
    }
    let p = app.shared.published();
    let resp = (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        p.note.as_ref().clone(),
    )
        .into_response();
    with_cache(resp, SHORT)
}

/// Which tiles exist at tree size `size`: a tile of `count` hashes at its level is
/// served full when `(index+1)*256 <= count`, and as any prefix `.p/W` with `W` at
/// most its width at `size` (C2SP tlog-tiles, "Partial tiles").
fn tile_width_at(level: u8, index: u64, size: u64) -> u64 {
    let shift = TILE_HEIGHT as u64 * level as u64;
    let count = if shift >= 64 { 0 } else { size >> shift };
    let start = index.saturating_mul(TILE_WIDTH);
    count.saturating_sub(start).min(TILE_WIDTH)
}

async fn get_tile(
    State(app): State<App>,
    rest: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let rest = path_segment(rest)?;
    let path = format!("tile/{rest}");
    let parsed = tiles::parse_path(&path)
        .map_err(|e| ApiError::BadRequest(format!("malformed tile path {path:?}: {e}")))?;
    let size = app.shared.published().checkpoint.size;
    let store = app.store.clone();
    match parsed {
        TilePath::Hashes(t) => {
            let width = t.width as u64;
            if width == 0 || width > tile_width_at(t.level, t.index, size) {
                return Err(ApiError::NotFound(format!(
                    "tile {path} is not part of the tree of size {size}"
                )));
            }
            let bytes = blocking(move || {
                let b = store
                    .read_tile(TileId {
                        level: t.level,
                        index: t.index,
                    })
                    .map_err(|e| ApiError::Unavailable(format!("reading {path}: {e}")))?
                    .ok_or_else(|| {
                        ApiError::Internal(format!("{path} is missing from the store"))
                    })?;
                let need = width as usize * 32;
                if b.len() < need {
                    return Err(ApiError::Internal(format!("{path} is short in the store")));
                }
                Ok(b[..need].to_vec())
            })
            .await?;
            let cache = if width == TILE_WIDTH {
                IMMUTABLE
            } else {
                SHORT
            };
            Ok(with_cache(octets(bytes), cache))
        }
        TilePath::Entries(b) => {
            let width = b.width as u64;
            if width == 0 || width > tile_width_at(0, b.index, size) {
                return Err(ApiError::NotFound(format!(
                    "entry bundle {path} is not part of the tree of size {size}"
                )));
            }
            let bytes = blocking(move || {
                let raw = store
                    .read_bundle(b.index)
                    .map_err(|e| ApiError::Unavailable(format!("reading {path}: {e}")))?
                    .ok_or_else(|| {
                        ApiError::Internal(format!("{path} is missing from the store"))
                    })?;
                let entries = tiles::decode_bundle(&raw)
                    .map_err(|e| ApiError::Internal(format!("{path} is corrupt: {e}")))?;
                if (entries.len() as u64) < width {
                    return Err(ApiError::Internal(format!("{path} is short in the store")));
                }
                if entries.len() as u64 == width {
                    return Ok(raw);
                }
                let refs: Vec<&[u8]> = entries[..width as usize]
                    .iter()
                    .map(Vec::as_slice)
                    .collect();
                tiles::encode_bundle(&refs).map_err(|e| ApiError::Internal(e.to_string()))
            })
            .await?;
            let cache = if width == TILE_WIDTH {
                IMMUTABLE
            } else {
                SHORT
            };
            Ok(with_cache(octets(bytes), cache))
        }
    }
}

fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

// ---------------------------------------------------------------------------
// JSON read API

async fn healthz(State(app): State<App>) -> Response {
    let running = *app.phase.borrow() == Phase::Running;
    let size = app.shared.published().checkpoint.size;
    let status = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let role = app.role.borrow().as_str();
    let mut body =
        json!({"status": if running { "ok" } else { "shutting_down" }, "size": size, "role": role});
    if let Some(w) = &app.shared.witnessing {
        // Degraded is still 200: the log takes and sequences entries (spec/api.md).
        if running && w.is_degraded() {
            body["status"] = json!("degraded");
        }
        body["witnessing"] = w.health(size);
    }
    with_cache((status, Json(body)).into_response(), NO_STORE)
}

async fn get_metrics(State(app): State<App>) -> Response {
    let waiting = app
        .pool_size
        .saturating_sub(app.pool_permits.available_permits());
    app.metrics
        .pool_entries
        .store(waiting as u64, std::sync::atomic::Ordering::Relaxed);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render()
            + &app
                .shared
                .witnessing
                .as_ref()
                .map(|w| w.render_metrics(app.shared.published().checkpoint.size))
                .unwrap_or_default(),
    )
        .into_response()
}

async fn get_log(State(app): State<App>) -> Response {
    let p = app.shared.published();
    let body = json!({
        "origin": app.origin,
        "verifier_key": app.verifier_key.to_string(),
        "size": p.checkpoint.size,
        "root": p.checkpoint.root.to_base64(),
        "checkpoint": String::from_utf8_lossy(&p.note),
    });
    with_cache(Json(body).into_response(), SHORT)
}

async fn entry_json(app: &App, index: u64) -> Result<Response, ApiError> {
    let size = app.shared.published().checkpoint.size;
    if index >= size {
        return Err(ApiError::NotFound(format!(
            "entry {index} does not exist in the tree of size {size}"
        )));
    }
    let store = app.store.clone();
    let leaf = blocking(move || {
        reader::read_leaf(&*store, index).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    let parsed: Value = serde_json::from_slice(&leaf)
        .map_err(|e| ApiError::Internal(format!("stored leaf {index} is not JSON: {e}")))?;
    let body = json!({
        "index": index,
        "leaf": B64.encode(&leaf),
        "leaf_hash": candor_core::hash::leaf_hash(&leaf).to_hex(),
        "entry": parsed.get("entry"),
        "key_id": parsed.get("key_id"),
        "signature": parsed.get("signature"),
        "logged_at": parsed.get("logged_at"),
    });
    Ok(with_cache(Json(body).into_response(), IMMUTABLE))
}

async fn get_entry(
    State(app): State<App>,
    index: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let index = parse_u64("index", &path_segment(index)?)?;
    entry_json(&app, index).await
}

async fn get_entry_by_hash(
    State(app): State<App>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query(q);
    let hex = q
        .get("leaf_hash")
        .ok_or_else(|| ApiError::BadRequest("query parameter leaf_hash is required".into()))?;
    // "hex" is lower-case (spec/overview.md), so each hash has one spelling.
    let lower = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let h = Hash::from_hex(hex).filter(|_| lower).ok_or_else(|| {
        ApiError::BadRequest(format!("leaf_hash {hex:?} is not 64 lower-case hex digits"))
    })?;
    let store = app.store.clone();
    let found = blocking(move || {
        store
            .lookup_leaf(&h)
            .map_err(|e| ApiError::Unavailable(format!("looking up the leaf hash: {e}")))
    })
    .await?;
    let size = app.shared.published().checkpoint.size;
    match found {
        Some(i) if i < size => entry_json(&app, i).await,
        _ => Err(ApiError::NotFound(format!("no entry with leaf hash {h}"))),
    }
}

/// Checks that `size` is a tree the log has published.
fn check_published(app: &App, size: u64) -> Result<candor_core::hash::Hash, ApiError> {
    let p = app.shared.published();
    if size > p.checkpoint.size {
        return Err(ApiError::NotFound(format!(
            "size {size} exceeds the latest checkpoint's size {}",
            p.checkpoint.size
        )));
    }
    Ok(p.checkpoint.root)
}

async fn get_inclusion(
    State(app): State<App>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query(q);
    let index = required_u64(&q, "index")?;
    let size = required_u64(&q, "size")?;
    if index >= size {
        return Err(ApiError::BadRequest(format!(
            "index {index} is not below size {size}"
        )));
    }
    check_published(&app, size)?;
    let store = app.store.clone();
    let (root, proof) = blocking(move || {
        let t = || StoreTiles {
            store: &*store,
            overlay: None,
        };
        let root = reader::tree_hash(t(), size).map_err(|e| ApiError::Internal(e.to_string()))?;
        let proof = reader::inclusion_proof(t(), index, size)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((root, proof))
    })
    .await?;
    let body = json!({
        "index": index,
        "size": size,
        "root": root.to_base64(),
        "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
    });
    Ok(with_cache(Json(body).into_response(), IMMUTABLE))
}

async fn get_consistency(
    State(app): State<App>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query(q);
    let old = required_u64(&q, "old")?;
    let new = required_u64(&q, "new")?;
    if old == 0 || old > new {
        return Err(ApiError::BadRequest(format!(
            "a consistency proof needs 1 <= old <= new (RFC 9162 §2.1.4); got old {old}, new {new}"
        )));
    }
    check_published(&app, new)?;
    let store = app.store.clone();
    let (old_root, new_root, proof) = blocking(move || {
        let t = || StoreTiles {
            store: &*store,
            overlay: None,
        };
        let err = |e: candor_core::merkle::TreeError| ApiError::Internal(e.to_string());
        let old_root = reader::tree_hash(t(), old).map_err(err)?;
        let new_root = reader::tree_hash(t(), new).map_err(err)?;
        let proof = reader::consistency_proof(t(), old, new).map_err(err)?;
        Ok((old_root, new_root, proof))
    })
    .await?;
    let body = json!({
        "old": old,
        "new": new,
        "old_root": old_root.to_base64(),
        "new_root": new_root.to_base64(),
        "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
    });
    Ok(with_cache(Json(body).into_response(), IMMUTABLE))
}

async fn get_receipt(
    State(app): State<App>,
    index: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let index = parse_u64("index", &path_segment(index)?)?;
    let published = app.shared.published();
    if let Some(w) = &app.shared.witnessing
        && (index >= published.checkpoint.size || !w.is_witnessed())
        && w.sequenced_size().is_some_and(|s| index < s)
    {
        return Ok(w.pending(&[index], published.checkpoint.size));
    }
    if index >= published.checkpoint.size {
        return Err(ApiError::NotFound(format!(
            "entry {index} does not exist in the tree of size {}",
            published.checkpoint.size
        )));
    }
    let store = app.store.clone();
    let registry = app.shared.registry();
    let receipt = blocking(move || {
        let leaf =
            reader::read_leaf(&*store, index).map_err(|e| ApiError::Internal(e.to_string()))?;
        sequencer::build_receipt(&*store, None, &published, &registry, index, leaf)
    })
    .await?;
    Ok(with_cache(Json(receipt).into_response(), NO_STORE))
}

async fn get_company(
    State(app): State<App>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_segment(name)?;
    let registry = app.shared.registry();
    let keys = registry
        .company(&name)
        .ok_or_else(|| ApiError::NotFound(format!("company {name:?} is not registered")))?;
    Ok(with_cache(
        Json(json!({"name": name, "keys": keys})).into_response(),
        NO_STORE,
    ))
}

// ---------------------------------------------------------------------------
// Submissions

#[derive(Clone, Copy, PartialEq)]
enum Media {
    Json,
    Ndjson,
}

fn media_type(headers: &HeaderMap, allow_ndjson: bool) -> Result<Media, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Media::Json),
        "application/x-ndjson" if allow_ndjson => Ok(Media::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(if allow_ndjson {
            format!("Content-Type {ct:?}: expected application/json or application/x-ndjson")
        } else {
            format!("Content-Type {ct:?}: expected application/json")
        })),
    }
}

/// Reads a request body within the body limit and a TOTAL deadline of
/// `min(request timeout, 10 s)`: the body time-out layer bounds only the gap
/// between chunks, so a client trickling a byte at a time would otherwise hold the
/// request open until the whole-request time-out (spec/api.md §6, 408).
async fn read_body(app: &AppState, req: Request) -> Result<Bytes, ApiError> {
    use axum::extract::FromRequest as _;
    let deadline = app.limits.request_timeout.min(Duration::from_secs(10));
    match tokio::time::timeout(deadline, Bytes::from_request(req, &())).await {
        Ok(body) => body.map_err(ApiError::from),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s",
            deadline.as_secs()
        ))),
    }
}

/// Checks one submitted entry (everything but the signature, which the sequencer
/// batch-verifies): JSON syntax (400), the entry schema (422), the company's
/// registration and key (403).
fn validate(bytes: &[u8], registry: &Registry, keys: &mut KeyMemo) -> Result<Validated, ApiError> {
    // Syntax before size: a body over the submission limit that is not even JSON is
    // a syntax fault (400). Below the limit the parse itself reports syntax first.
    if bytes.len() > candor_core::entry::MAX_SUBMISSION_BYTES {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    }
    // Parsing applies every rule of spec/entries.md and canonicalises the entry once;
    // the signed message it returns is reused for the signature, the entry hash and
    // the leaf. Over-deep nesting is a syntax fault too (serde_json's recursion limit).
    let (signed, message) = SignedEntry::parse_json_with_message(bytes).map_err(|e| match e {
        EntryError::Json(_) | EntryError::NotUtf8(_) => ApiError::MalformedJson(e.to_string()),
        e => ApiError::InvalidEntry(e.to_string()),
    })?;
    if signed.entry.kind() == "company_key" {
        return Err(ApiError::Forbidden {
            code: "reserved_kind",
            detail: "company_key entries are made by the log operator through POST /v1/companies"
                .into(),
        });
    }
    sequencer::check_key(registry, &signed)?;
    let key = keys.get(registry, &signed)?;
    finish_validation(signed, message, key, None)
}

/// Registered keys already decoded in this request (decoding an Ed25519 point costs
/// more than the rest of an entry's checks; a batch is usually one company's).
#[derive(Default)]
struct KeyMemo(Vec<(String, String, ed25519_dalek::VerifyingKey)>);

impl KeyMemo {
    fn get(
        &mut self,
        registry: &Registry,
        signed: &SignedEntry,
    ) -> Result<ed25519_dalek::VerifyingKey, ApiError> {
        let company = signed.entry.company();
        if let Some((_, _, k)) = self
            .0
            .iter()
            .find(|(c, id, _)| c == company && *id == signed.key_id)
        {
            return Ok(*k);
        }
        let record = match registry.status(company, &signed.key_id) {
            super::registry::KeyStatus::Active(rec) => rec,
            _ => {
                return Err(ApiError::Internal(
                    "registry changed during validation".into(),
                ));
            }
        };
        let vkey = VerifierKey::parse_recorded(&record.verifier_key).map_err(|e| {
            ApiError::Internal(format!(
                "registered key {} does not parse: {e}",
                record.key_id
            ))
        })?;
        let key = *vkey.verifying_key();
        self.0
            .push((company.to_string(), signed.key_id.clone(), key));
        Ok(key)
    }
}

/// The rest of an entry's checks, given its signed message (`candor-entry/v1\n ‖
/// JCS(entry)`): the signature's form (it is batch-verified with its request's
/// entries or, for small requests, by the sequencer) and the entry hash, SHA-256 of
/// that same message.
fn finish_validation(
    signed: SignedEntry,
    message: Vec<u8>,
    key: ed25519_dalek::VerifyingKey,
    change: Option<Change>,
) -> Result<Validated, ApiError> {
    let mut sig_arr = [0u8; 64];
    match B64.decode_slice(&signed.signature, &mut sig_arr) {
        Ok(64) => {}
        Ok(n) => {
            return Err(ApiError::BadSignature(format!(
                "signature is {n} bytes, an Ed25519 signature is 64"
            )));
        }
        Err(e) => {
            return Err(ApiError::BadSignature(format!(
                "signature is not base64 of 64 bytes: {e}"
            )));
        }
    }
    let entry_hash = candor_core::entry::entry_hash_of_message(&message);
    Ok(Validated {
        signed,
        entry_hash,
        message,
        signature: ed25519_dalek::Signature::from_bytes(&sig_arr),
        key,
        change,
        line: None,
        verified: false,
    })
}

/// Refuses writes on a front end that does not sequence: 405 on `--read-only`
/// (never), 503 on a standby (until it takes over).
fn check_writable(app: &AppState) -> Result<(), ApiError> {
    match *app.role.borrow() {
        Role::Sequencer => Ok(()),
        Role::Standby => Err(ApiError::Unavailable(
            "this server is a standby: another process is the log's sequencer; retry".into(),
        )),
        Role::ReadOnly => Err(ApiError::MethodNotAllowed(
            "this server is a read-only front end (candor serve --read-only); submit to the log's sequencer".into(),
        )),
    }
}

/// Puts validated entries in the pool and waits for their receipts.
async fn enqueue(
    app: &AppState,
    items: Vec<Validated>,
    rate_limited: bool,
) -> Result<Vec<Receipt>, ApiError> {
    if *app.phase.borrow() != Phase::Running {
        return Err(ApiError::Unavailable("the log is shutting down".into()));
    }
    let items = if rate_limited && app.rate_limiter.is_some() {
        // Signatures are checked before a company's bucket is charged, so that
        // anyone forging entries in its name cannot use up its allowance
        // (SECURITY.md, "Rate limits"). The sequencer does not check them again.
        let mut items = items;
        blocking(move || sequencer::verify_submission(&mut items, 1).map(|()| items)).await?
    } else {
        items
    };
    if rate_limited && let Some(rl) = &app.rate_limiter {
        let mut per_company: HashMap<&str, u64> = HashMap::new();
        for it in &items {
            *per_company.entry(it.signed.entry.company()).or_default() += 1;
        }
        for (company, n) in per_company {
            if let Err(r) = rl.check(company, n) {
                let detail = if r.exceeds_burst {
                    format!(
                        "{n} entries for {company:?} exceed the per-company burst; split the request"
                    )
                } else {
                    format!("rate limit for {company:?} exceeded")
                };
                return Err(ApiError::RateLimited {
                    detail,
                    retry_after_secs: r.retry_after_secs,
                });
            }
        }
    }
    let n = u32::try_from(items.len())
        .map_err(|_| ApiError::TooLarge("too many entries in one request".into()))?;
    let permit = match app.pool_permits.clone().try_acquire_many_owned(n) {
        Ok(p) => p,
        Err(TryAcquireError::NoPermits) => {
            return Err(ApiError::PoolFull {
                detail: "the sequencing pool is full".into(),
                retry_after_secs: 1,
            });
        }
        Err(TryAcquireError::Closed) => {
            return Err(ApiError::Unavailable("the log is shutting down".into()));
        }
    };
    let (reply, rx) = oneshot::channel();
    app.pool
        .send(Submission {
            items,
            reply,
            accepted: Instant::now(),
            permit,
        })
        .map_err(|_| ApiError::Unavailable("the sequencer has stopped".into()))?;
    match tokio::time::timeout(app.limits.request_timeout, rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Err(ApiError::Unavailable(
            "the sequencer stopped before answering; resubmit (identical entries are never logged twice)".into(),
        )),
        Err(_) => Err(ApiError::Unavailable(
            "sequencing took too long; resubmit (identical entries are never logged twice)".into(),
        )),
    }
}

async fn post_entries(State(app): State<App>, req: Request) -> Result<Response, ApiError> {
    check_writable(&app)?;
    let headers = req.headers().clone();
    let media = media_type(&headers, true)?;
    let body = read_body(&app, req).await?;
    let registry = app.shared.registry();
    match media {
        Media::Json => {
            if body.len() > app.limits.max_entry_body_bytes {
                return Err(ApiError::TooLarge(format!(
                    "an entry is {} bytes; the limit is {}",
                    body.len(),
                    app.limits.max_entry_body_bytes
                )));
            }
            let v = validate(&body, &registry, &mut KeyMemo::default())?;
            let receipts = enqueue(&app, vec![v], true).await?;
            let mut receipts = match witnessing::settle(&app, receipts).await? {
                Settled::Receipts(r) => r,
                Settled::Pending(pending) => return Ok(pending),
            };
            let receipt = receipts
                .pop()
                .ok_or_else(|| ApiError::Internal("no receipt for the entry".into()))?;
            Ok(with_cache(Json(receipt).into_response(), NO_STORE))
        }
        Media::Ndjson => {
            let limits = app.limits.clone();
            let items = blocking(move || {
                let mut items = Vec::new();
                let mut keys = KeyMemo::default();
                for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                    let line_no = i + 1;
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    if items.len() == limits.max_batch_lines {
                        return Err(ApiError::TooLarge(format!(
                            "more than {} entries in one NDJSON request",
                            limits.max_batch_lines
                        )));
                    }
                    if line.len() > limits.max_entry_body_bytes {
                        return Err(ApiError::TooLarge(format!(
                            "the entry is {} bytes; the limit is {}",
                            line.len(),
                            limits.max_entry_body_bytes
                        ))
                        .at_line(line_no));
                    }
                    let mut v =
                        validate(line, &registry, &mut keys).map_err(|e| e.at_line(line_no))?;
                    v.line = Some(line_no);
                    items.push(v);
                }
                if items.is_empty() {
                    return Err(ApiError::BadRequest(
                        "the NDJSON request holds no entries".into(),
                    ));
                }
                sequencer::verify_submission(&mut items, sequencer::VERIFY_IN_HANDLER_MIN)?;
                Ok(items)
            })
            .await?;
            let receipts = enqueue(&app, items, true).await?;
            let receipts = match witnessing::settle(&app, receipts).await? {
                Settled::Receipts(r) => r,
                Settled::Pending(pending) => return Ok(pending),
            };
            // One receipt per line, in RFC 8785 form: its writer scans strings a word
            // at a time, and a receipt is mostly long base64 strings.
            let mut out = Vec::with_capacity(receipts.len() * 3072);
            for r in receipts {
                candor_core::jcs::to_canonical_into(&r, &mut out)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                out.push(b'\n');
            }
            Ok(with_cache(
                ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response(),
                NO_STORE,
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompanyRequest {
    name: String,
    verifier_key: String,
    action: Action,
}

fn check_admin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("an admin bearer token is required".into()))?;
    // Constant-time comparison: the token must not leak through timing.
    if bool::from(given.trim().as_bytes().ct_eq(app.admin_token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the admin token is wrong".into()))
    }
}

/// The `company_key` entry recording `action` on `key` for company `name`
/// (spec/entries.md), logged at `time`.
fn company_key_entry(
    name: &str,
    key: &VerifierKey,
    action: Action,
    time: &str,
) -> Result<Entry, ApiError> {
    let v = json!({
        "kind": "company_key",
        "company": name,
        "at": time,
        "action": action.as_str(),
        "verifier_key": key.to_string(),
    });
    Entry::parse_value(&v).map_err(|e| ApiError::InvalidEntry(e.to_string()))
}

async fn post_companies(State(app): State<App>, req: Request) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    check_admin(&app, &headers)?;
    check_writable(&app)?;
    media_type(&headers, false)?;
    let body = read_body(&app, req).await?;
    // Syntax first (400, including over-deep nesting), then the schema (422): typed
    // deserialization alone would stop at the first wrong type of a malformed body.
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let req: CompanyRequest =
        serde_json::from_value(value).map_err(|e| ApiError::InvalidEntry(e.to_string()))?;
    let key = VerifierKey::from_str(&req.verifier_key)
        .map_err(|e| ApiError::InvalidEntry(format!("verifier_key is refused: {e}")))?;
    if key.name() != req.name {
        return Err(ApiError::InvalidEntry(format!(
            "the key is named {:?} but the company is {:?}; a company's key name must be its name",
            key.name(),
            req.name
        )));
    }
    let change = Change {
        name: req.name.clone(),
        key: key.clone(),
        action: req.action,
    };
    app.shared
        .registry()
        .check(&change)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    let entry = company_key_entry(&req.name, &key, req.action, &app.shared.clock.now_rfc3339())?;
    let log_vkey = app.log_key.verifier();
    let signed = SignedEntry::sign(entry, app.log_key.signing_key(), log_vkey.key_id())
        .map_err(|e| ApiError::Internal(format!("signing the company_key entry: {e}")))?;
    let message = signed
        .entry
        .signed_message()
        .map_err(|e| ApiError::InvalidEntry(e.to_string()))?;
    let v = finish_validation(signed, message, *log_vkey.verifying_key(), Some(change))?;
    let receipts = enqueue(&app, vec![v], false).await?;
    let mut receipts = match witnessing::settle(&app, receipts).await? {
        Settled::Receipts(r) => r,
        Settled::Pending(pending) => return Ok(pending),
    };
    let receipt = receipts
        .pop()
        .ok_or_else(|| ApiError::Internal("no receipt for the registration".into()))?;
    Ok(with_cache(Json(receipt).into_response(), NO_STORE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_widths_follow_the_tree_size() {
        // Size 70,000 (the tlog-tiles example): 273 full level-0 tiles + .p/112,
        // 1 full level-1 tile + .p/17, level 2 .p/1.
        assert_eq!(tile_width_at(0, 272, 70_000), 256);
        assert_eq!(tile_width_at(0, 273, 70_000), 112);
        assert_eq!(tile_width_at(0, 274, 70_000), 0);
        assert_eq!(tile_width_at(1, 0, 70_000), 256);
        assert_eq!(tile_width_at(1, 1, 70_000), 17);
        assert_eq!(tile_width_at(2, 0, 70_000), 1);
        assert_eq!(tile_width_at(3, 0, 70_000), 0);
        assert_eq!(tile_width_at(63, 0, u64::MAX), 0);
    }

    #[test]
    fn decimal_parsing_is_strict() {
        assert_eq!(parse_u64("i", "0").ok(), Some(0));
        assert_eq!(parse_u64("i", "17").ok(), Some(17));
        assert!(parse_u64("i", "017").is_err());
        assert!(parse_u64("i", "-1").is_err());
        assert!(parse_u64("i", "").is_err());
        assert!(parse_u64("i", "99999999999999999999").is_err());
    }
}
