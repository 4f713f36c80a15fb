//! The read API as objects (`candor serve --tiles URL`): entry bundles and hash tiles
//! written at their C2SP tlog-tiles paths under the URL's prefix, then the checkpoint
//! object. Any static host or CDN in front of the bucket then serves `GET checkpoint`
//! and `GET tile/…` exactly as `candor serve` does (spec/deployment.md §4).
//!
//! Rules (C2SP tlog-tiles: full tiles are immutable, partial tiles are prefixes):
//! - a full tile or bundle is written once, with a conditional create
//!   (`If-None-Match: *` on S3, `PutMode::Create`); if it already exists with the same
//!   bytes (a retry, or a new sequencer redoing a round) that is success, with other
//!   bytes it is an error and publishing stops: the prefix holds another tree;
//! - a partial tile `…/N.p/W` is written (overwritten) at its own path; its bytes are
//!   fixed by W, so an overwrite never changes what a reader saw;
//! - the checkpoint object is replaced only after every tile and bundle it needs is in
//!   place, so a reader that fetches the checkpoint finds all of its tiles.

use std::sync::Arc;

use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
};

use crate::{Store, TileId};
use candor_core::tiles::{self, Bundle, TILE_HEIGHT, TILE_WIDTH, Tile};

/// Objects uploaded at once.
const CONCURRENCY: usize = 8;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "--tiles {0:?}: expected s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path"
    )]
    BadUrl(String),
    #[error("object storage {url}: {detail}")]
    Config { url: String, detail: String },
    #[error("writing {path}: {detail}")]
    Put { path: String, detail: String },
    #[error(
        "{path} already exists with different contents: the object prefix holds another tree; refusing to publish over it"
    )]
    Mismatch { path: String },
    #[error("reading the store: {0}")]
    Store(String),
}

/// An object store location: the store and the prefix the log's paths go under.
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Whether the backend takes HTTP attributes (`Cache-Control`, `Content-Type`).
    attributes: bool,
    /// The URL it was opened from, for messages.
    pub url: String,
}

impl Target {
    /// Opens `url`. S3 reads the standard `AWS_*` variables (`AWS_ENDPOINT_URL`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`),
    /// GCS the `GOOGLE_*` ones and Azure the `AZURE_*` ones (object_store's `from_env`).
    pub fn open(url: &str) -> Result<Target, PublishError> {
        let config = |e: object_store::Error| PublishError::Config {
            url: url.to_string(),
            detail: e.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| PublishError::BadUrl(url.to_string()))?;
        let split = |rest: &str| -> Result<(String, String), PublishError> {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(PublishError::BadUrl(url.to_string()));
            }
            Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
        };
        let (store, prefix, attributes): (Arc<dyn ObjectStore>, String, bool) = match scheme {
            "s3" | "s3a" => {
                let (bucket, prefix) = split(rest)?;
                let s = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(config)?;
                (Arc::new(s), prefix, true)
            }
            "gs" => {
                let (bucket, prefix) = split(rest)?;
                let s = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(config)?;
                (Arc::new(s), prefix, true)
            }
            "az" | "azure" | "abfs" => {
                let (container, prefix) = split(rest)?;
                let s = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(container)
                    .build()
                    .map_err(config)?;
                (Arc::new(s), prefix, true)
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(PublishError::BadUrl(url.to_string()));
                }
                std::fs::create_dir_all(rest).map_err(|e| PublishError::Config {
                    url: url.to_string(),
                    detail: format!("creating {rest}: {e}"),
                })?;
                let s =
                    object_store::local::LocalFileSystem::new_with_prefix(rest).map_err(config)?;
                (Arc::new(s), String::new(), false)
            }
            _ => return Err(PublishError::BadUrl(url.to_string())),
        };
        Ok(Target {
            store,
            prefix,
            attributes,
            url: url.to_string(),
        })
    }

    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn options(
        &self,
        mode: PutMode,
        cache: &'static str,
        content_type: &'static str,
    ) -> PutOptions {
        let mut attributes = Attributes::new();
        if self.attributes {
            attributes.insert(Attribute::CacheControl, cache.into());
            attributes.insert(Attribute::ContentType, content_type.into());
        }
        PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        }
    }

    /// Writes one tile or bundle object (see the module doc for the rules).
    async fn put_tile(&self, rel: String, bytes: Vec<u8>, full: bool) -> Result<(), PublishError> {
        let path = self.path(&rel);
        let (mode, cache) = if full {
            (PutMode::Create, "public, max-age=31536000, immutable")
        } else {
            (PutMode::Overwrite, "public, max-age=5")
        };
        let opts = self.options(mode, cache, "application/octet-stream");
        let put_err = |e: object_store::Error| PublishError::Put {
            path: path.to_string(),
            detail: e.to_string(),
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self
                    .store
                    .get(&path)
                    .await
                    .map_err(put_err)?
                    .bytes()
                    .await
                    .map_err(put_err)?;
                if existing.as_ref() == bytes.as_slice() {
                    Ok(())
                } else {
                    Err(PublishError::Mismatch {
                        path: path.to_string(),
                    })
                }
            }
            Err(e) => Err(put_err(e)),
        }
    }

    /// The checkpoint object, if any.
    pub async fn checkpoint(&self) -> Result<Option<Vec<u8>>, PublishError> {
        let path = self.path("checkpoint");
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| PublishError::Put {
                        path: path.to_string(),
                        detail: e.to_string(),
                    })?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(PublishError::Put {
                path: path.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    pub async fn put_checkpoint(&self, note: Vec<u8>) -> Result<(), PublishError> {
        let path = self.path("checkpoint");
        let opts = self.options(
            PutMode::Overwrite,
            "public, max-age=5",
            "text/plain; charset=utf-8",
        );
        self.store
            .put_opts(&path, PutPayload::from(note), opts)
            .await
            .map(|_| ())
            .map_err(|e| PublishError::Put {
                path: path.to_string(),
                detail: e.to_string(),
            })
    }
}

/// One object to write: path relative to the prefix, bytes, and whether it is full.
type Object = (String, Vec<u8>, bool);

/// Every tile and bundle that differs between the trees of `old` and `new` leaves
/// (C2SP tlog-tiles: a tile of level L at index N has width
/// `min(256, (size >> 8L) - 256N)`), read from the store.
pub fn changed_objects(store: &dyn Store, old: u64, new: u64) -> Result<Vec<Object>, PublishError> {
    let mut out = Vec::new();
    let serr = |e: String| PublishError::Store(e);
    if new == 0 || new <= old {
        return Ok(out);
    }
    // Entry bundles.
    for n in old / TILE_WIDTH..=(new - 1) / TILE_WIDTH {
        let width = (new - n * TILE_WIDTH).min(TILE_WIDTH);
        let raw = store
            .read_bundle(n)
            .map_err(|e| serr(e.to_string()))?
            .ok_or_else(|| serr(format!("entry bundle {n} is not stored")))?;
        let entries = tiles::decode_bundle(&raw).map_err(|e| serr(format!("bundle {n}: {e}")))?;
        if (entries.len() as u64) < width {
            return Err(serr(format!("entry bundle {n} is short in the store")));
        }
        let refs: Vec<&[u8]> = entries[..width as usize]
            .iter()
            .map(Vec::as_slice)
            .collect();
        let bytes = tiles::encode_bundle(&refs).map_err(|e| serr(e.to_string()))?;
        // width <= 256 by the min above.
        let b = Bundle::new(n, width as u16).map_err(|e| serr(e.to_string()))?;
        out.push((b.path(), bytes, b.is_full()));
    }
    // Hash tiles, level by level, while the level has any hash.
    for level in 0u8..=63 {
        let shift = TILE_HEIGHT * u32::from(level);
        if shift >= 64 {
            break;
        }
        let (count_old, count_new) = (old >> shift, new >> shift);
        if count_new == 0 {
            break;
        }
        if count_new == count_old {
            continue;
        }
        for n in count_old / TILE_WIDTH..=(count_new - 1) / TILE_WIDTH {
            let width = (count_new - n * TILE_WIDTH).min(TILE_WIDTH);
            let id = TileId { level, index: n };
            let data = store
                .read_tile(id)
                .map_err(|e| serr(e.to_string()))?
                .ok_or_else(|| serr(format!("tile {level}/{n} is not stored")))?;
            let need = width as usize * 32;
            if data.len() < need {
                return Err(serr(format!("tile {level}/{n} is short in the store")));
            }
            let t = Tile::new(level, n, width as u16).map_err(|e| serr(e.to_string()))?;
            out.push((t.path(), data[..need].to_vec(), t.is_full()));
        }
    }
    Ok(out)
}

/// Publishes the tree from size `old` to the checkpoint `note` of size `new`: every
/// changed tile and bundle first, then the checkpoint.
pub async fn publish_round(
    target: &Target,
    store: Arc<dyn Store>,
    old: u64,
    new: u64,
    note: Vec<u8>,
) -> Result<(), PublishError> {
    let objects = tokio::task::spawn_blocking(move || changed_objects(&*store, old, new))
        .await
        .map_err(|e| PublishError::Store(format!("reader task failed: {e}")))??;
    let results: Vec<Result<(), PublishError>> = futures::stream::iter(objects)
        .map(|(rel, bytes, full)| target.put_tile(rel, bytes, full))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r?;
    }
    target.put_checkpoint(note).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(matches!(
            Target::open("ftp://x/y"),
            Err(PublishError::BadUrl(_))
        ));
        assert!(matches!(
            Target::open("s3:///y"),
            Err(PublishError::BadUrl(_))
        ));
        assert!(matches!(
            Target::open("file://rel"),
            Err(PublishError::BadUrl(_))
        ));
        assert!(matches!(
            Target::open("no-scheme"),
            Err(PublishError::BadUrl(_))
        ));
    }
}
