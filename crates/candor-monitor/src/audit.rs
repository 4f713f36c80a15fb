//! The audit (spec/monitor.md §3): for each new checkpoint, its signature; its
//! consistency with the last verified checkpoint; and a full audit of the data:
//! every new entry is hashed, the leaf hashes must equal the level-0 tiles, the
//! tiles of every level must equal the hashes recomputed from the entries, and the
//! tree recomputed from the last verified tree plus the new entries must have the
//! signed root. tlog-tiles has no proof endpoint; the recomputation is the proof:
//! the monitor holds the verified tree's right edge (a `merkle::Frontier`), appends
//! the new leaf hashes, and the result can equal the signed root only if the old
//! tree is a prefix of the new one (up to a SHA-256 collision).

use super::candor_checks::{Checker, Unverified};
use super::client::{ClientError, TilesClient};
use super::findings::{Finding, Kind, Severity};
use super::policy::{Policy, VolumeTracker};
use super::splitview::Evidence;
use super::state::CompanyKeys;
use super::state::{IndexBatch, MonitorState, Progress, StateDir, StateError, Suspect};
use bytes::Bytes;
use candor_core::checkpoint::{Checkpoint, open_checkpoint};
use candor_core::clock::SharedClock;
use candor_core::hash::{Hash, leaf_hash, sha256};
use candor_core::merkle::{HashReader, TreeError, root_from_leaf_hashes, tree_hash};
use candor_core::note::VerifierKey;
use candor_core::tiles::{
    Bundle, TILE_WIDTH, Tile, TileReader, VerifiedTileHashReader, bundle_ranges,
};
use futures::StreamExt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, RwLock};

/// Why a round could not be completed ("could not check", exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("tree computation failed: {0}")]
    Tree(String),
    #[error("the last verified checkpoint in the state directory does not verify any more: {0}")]
    StoredCheckpoint(String),
    #[error("tile {0} from the log is malformed and the entries under it could not be checked")]
    Unreadable(String),
    /// A task of the audit ended without its result (a panic: a bug).
    #[error("{0} stopped without a result")]
    Stopped(String),
}

impl From<TreeError> for CheckError {
    fn from(e: TreeError) -> Self {
        CheckError::Tree(e.to_string())
    }
}

/// Prints findings as JSON lines, POSTs them to the alert URL and counts them.
pub struct Sink {
    http: reqwest::Client,
    alert_url: Option<String>,
    /// Findings reported by this process, by severity.
    pub reported: Vec<Finding>,
}

impl Sink {
    pub fn new(http: reqwest::Client, alert_url: Option<String>) -> Self {
        Sink {
            http,
            alert_url,
            reported: Vec::new(),
        }
    }

    /// Reports findings that are new (already deduplicated by the state).
    pub async fn emit(&mut self, findings: Vec<Finding>) {
        for f in findings {
            {
                let mut out = std::io::stdout().lock();
                // A closed stdout must not stop the audit; the finding is stored anyway.
                let _ = writeln!(out, "{}", f.to_json_line());
                let _ = out.flush();
            }
            if let Some(url) = &self.alert_url {
                let mut sent = false;
                for attempt in 0..3u32 {
                    if attempt > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(300 << attempt)).await;
                    }
                    match self.http.post(url).json(&f).send().await {
                        Ok(r) if r.status().is_success() => {
                            sent = true;
                            break;
                        }
                        Ok(r) => eprintln!("monitor: alert to {url} answered HTTP {}", r.status()),
                        Err(e) => eprintln!("monitor: alert to {url} failed: {e}"),
                    }
                }
                if !sent {
                    eprintln!(
                        "monitor: gave up sending a {} alert to {url}; it is in the state directory",
                        f.kind
                    );
                }
            }
            self.reported.push(f);
        }
    }
}

/// A `TileReader` over HTTP. `TileReader` is synchronous (the core does no I/O),
/// so it blocks this worker thread on the async client (multi-thread runtime).
struct HttpTiles {
    client: TilesClient,
    handle: tokio::runtime::Handle,
}

impl TileReader for HttpTiles {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError> {
        tokio::task::block_in_place(|| {
            self.handle.block_on(async {
                let futs = tiles.iter().map(|t| fetch_tile(&self.client, *t));
                futures::future::join_all(futs)
                    .await
                    .into_iter()
                    .map(|r| r.map_err(|e| TreeError::Reader(e.to_string())))
                    .collect()
            })
        })
    }
}

/// Fetches a tile of exactly `width` hashes, falling back to the full tile when a
/// partial one is gone. Returns the raw bytes (checked for length by the caller).
async fn fetch_tile(client: &TilesClient, t: Tile) -> Result<Vec<u8>, ClientError> {
    let full = Tile { width: 256, ..t };
    let mut data = client.partial_or_full(&t.path(), &full.path()).await?;
    let want = usize::from(t.width) * 32;
    if data.len() == 256 * 32 && want < data.len() {
        data.truncate(want);
    }
    Ok(data)
}

/// The hex SHA-256 of a note, used to remember rejected checkpoints.
fn note_id(note: &[u8]) -> String {
    sha256(note).to_hex()
}

/// Everything one monitor run needs.
pub struct Auditor {
    pub client: TilesClient,
    pub http: reqwest::Client,
    pub log_key: VerifierKey,
    pub origin: String,
    pub policy: Arc<Policy>,
    /// `--trust-policy`: checkpoints must satisfy it (witness quorum).
    pub trust_policy: Option<candor_core::trust_policy::Policy>,
    pub dir: Arc<StateDir>,
    pub state: MonitorState,
    pub sink: Sink,
    pub peers: Vec<String>,
    /// Tiles and bundles fetched in parallel.
    pub concurrency: usize,
    /// The latest verified checkpoint, for `--listen`.
    pub served: Arc<RwLock<Option<Vec<u8>>>>,
    /// The clock entry times are checked against (spec/monitor.md, time checks).
    pub clock: SharedClock,
}

impl Auditor {
    fn tiles(&self) -> HttpTiles {
        HttpTiles {
            client: self.client.clone(),
            handle: tokio::runtime::Handle::current(),
        }
    }

    /// Stores findings (deduplicated) and reports the new ones.
    async fn report(&mut self, findings: Vec<Finding>) -> Result<(), CheckError> {
        if findings.is_empty() {
            return Ok(());
        }
        let fresh = self.dir.write_index(&IndexBatch {
            findings,
            ..IndexBatch::default()
        })?;
        self.sink.emit(fresh).await;
        Ok(())
    }

    fn verified_checkpoint(&self) -> Result<Option<(Checkpoint, String)>, CheckError> {
        match &self.state.checkpoint {
            None => Ok(None),
            Some(note) => {
                let (cp, _) = open_checkpoint(note.as_bytes(), &self.log_key)
                    .map_err(|e| CheckError::StoredCheckpoint(e.to_string()))?;
                Ok(Some((cp, note.clone())))
            }
        }
    }

    /// Publishes the verified checkpoint on the monitoring path.
    fn publish(&self) {
        if let (Some(note), Ok(mut w)) = (&self.state.checkpoint, self.served.write()) {
            *w = Some(note.as_bytes().to_vec());
        }
    }

    /// One round: finish an audit under way, audit the log's current checkpoint,
    /// compare with the peers.
    pub async fn round(&mut self) -> Result<(), CheckError> {
        self.publish();
        if let Some(p) = self.state.progress.clone() {
            self.audit_to(p.target.into_bytes()).await?;
        }
        let note = self.client.checkpoint().await?;
        self.consider(note, "the log").await?;
        for peer in self.peers.clone() {
            match super::client::peer_checkpoint(&self.http, &peer, &self.origin).await {
                Ok(note) => self.compare_peer(note, &peer).await?,
                Err(e) => eprintln!("monitor: peer {peer}: {e}"),
            }
        }
        Ok(())
    }

    /// Handles a checkpoint the log served.
    async fn consider(&mut self, note: Vec<u8>, source: &str) -> Result<(), CheckError> {
        let id = note_id(&note);
        if self.state.rejected.contains(&id) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&note).into_owned();
        let cp = match open_checkpoint(&note, &self.log_key) {
            Ok((cp, _)) => cp,
            Err(e) => {
                let f = Finding::new(
                    Kind::BadCheckpoint,
                    Severity::High,
                    &self.origin,
                    format!("The checkpoint served by {source} is not validly signed by the log key: {e}."),
                )
                .with_resource("checkpoint")
                .with_evidence(serde_json::json!({ "checkpoint": text }));
                self.report(vec![f]).await?;
                return Ok(());
            }
        };
        if let Some(tp) = &self.trust_policy
            && let Err(e) = tp.check_with_logs(&note, std::slice::from_ref(&self.log_key))
        {
            // Refused: not audited, not compared, not served to peers.
            let f = Finding::new(
                Kind::WitnessQuorum,
                Severity::High,
                &self.origin,
                format!(
                    "The checkpoint served by {source} (size {}) does not satisfy the trust policy: {e}.",
                    cp.size
                ),
            )
            .with_resource("checkpoint")
            .with_evidence(serde_json::json!({ "checkpoint": text }));
            self.report(vec![f]).await?;
            self.state.rejected.push(id);
            self.dir.save(&self.state)?;
            return Ok(());
        }
        let Some((vcp, vnote)) = self.verified_checkpoint()? else {
            return self.audit_to(note).await;
        };
        if cp.size == vcp.size {
            if cp.root != vcp.root {
                let ev = Evidence::new(&self.log_key, (&vcp, &vnote), (&cp, &text), None);
                self.split_view(ev, &vcp, &cp, source).await?;
                self.state.rejected.push(id);
                self.dir.save(&self.state)?;
            }
            return Ok(());
        }
        if cp.size < vcp.size {
            return self.compare_smaller(&cp, &text, source).await;
        }
        // Growth. First a cheap consistency check from the tiles alone, so a fork
        // is reported with evidence even before the data is audited.
        let tiles = self.tiles();
        let reader = VerifiedTileHashReader::new(cp.size, cp.root, &tiles);
        if vcp.size > 0
            && let Ok(h) = tree_hash(vcp.size, &reader)
            && h != vcp.root
        {
            let ev = Evidence::new(&self.log_key, (&vcp, &vnote), (&cp, &text), Some(&reader));
            self.split_view(ev, &vcp, &cp, source).await?;
            self.state.rejected.push(id);
            self.dir.save(&self.state)?;
            return Ok(());
        }
        self.audit_to(note).await
    }

    /// A checkpoint smaller than the verified one: consistent (a stale mirror or
    /// cache) or a split view, judged from the log's tiles authenticated against
    /// the verified root.
    async fn compare_smaller(
        &mut self,
        cp: &Checkpoint,
        text: &str,
        source: &str,
    ) -> Result<(), CheckError> {
        let Some((vcp, vnote)) = self.verified_checkpoint()? else {
            return Ok(());
        };
        let tiles = self.tiles();
        let reader = VerifiedTileHashReader::new(vcp.size, vcp.root, &tiles);
        match tree_hash(cp.size, &reader) {
            Ok(h) if h == cp.root => {
                eprintln!(
                    "monitor: {source} serves checkpoint size {} (older than the verified {}); it is consistent",
                    cp.size, vcp.size
                );
                Ok(())
            }
            Ok(_) => {
                let ev = Evidence::new(&self.log_key, (cp, text), (&vcp, &vnote), Some(&reader));
                self.split_view(ev, cp, &vcp, source).await
            }
            Err(e) => {
                let f = Finding::new(
                    Kind::CheckpointRollback,
                    Severity::High,
                    &self.origin,
                    format!(
                        "{source} serves a checkpoint of size {} although size {} was verified, and the log's tiles do not let the monitor check the two are consistent ({e}).",
                        cp.size, vcp.size
                    ),
                )
                .with_checkpoint(cp.size)
                .with_checkpoint(vcp.size)
                .with_evidence(serde_json::json!({ "checkpoints": [text, vnote] }));
                self.report(vec![f]).await
            }
        }
    }

    /// A peer's view: any checkpoint it has verified must be consistent with ours.
    async fn compare_peer(&mut self, note: Vec<u8>, peer: &str) -> Result<(), CheckError> {
        let source = format!("peer {peer}");
        let text = String::from_utf8_lossy(&note).into_owned();
        let cp = match open_checkpoint(&note, &self.log_key) {
            Ok((cp, _)) => cp,
            Err(e) => {
                eprintln!(
                    "monitor: {source} serves a checkpoint that does not verify under the log key: {e}"
                );
                return Ok(());
            }
        };
        let Some((vcp, vnote)) = self.verified_checkpoint()? else {
            return Ok(());
        };
        if cp.size == vcp.size {
            if cp.root != vcp.root {
                let ev = Evidence::new(&self.log_key, (&vcp, &vnote), (&cp, &text), None);
                self.split_view(ev, &vcp, &cp, &source).await?;
            }
            Ok(())
        } else if cp.size < vcp.size {
            self.compare_smaller(&cp, &text, &source).await
        } else {
            // The peer saw a larger tree than the log showed us so far; it is
            // compared once the log's checkpoint reaches that size.
            eprintln!(
                "monitor: {source} is ahead (size {} > {}); comparing later",
                cp.size, vcp.size
            );
            Ok(())
        }
    }

    async fn split_view(
        &mut self,
        ev: Result<Evidence, super::splitview::EvidenceError>,
        a: &Checkpoint,
        b: &Checkpoint,
        source: &str,
    ) -> Result<(), CheckError> {
        let evidence = match ev {
            Ok(ev) => serde_json::to_value(&ev).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let f = Finding::new(
            Kind::SplitView,
            Severity::Critical,
            &self.origin,
            format!(
                "The log signed two inconsistent checkpoints: size {} with root {} and size {} with root {} (the second seen via {source}).",
                a.size,
                a.root.to_base64(),
                b.size,
                b.root.to_base64()
            ),
        )
        .with_checkpoint(a.size)
        .with_checkpoint(b.size)
        .with_evidence(evidence);
        self.report(vec![f]).await
    }

    /// Audits from the verified tree (or the progress under way) to `target`.
    async fn audit_to(&mut self, target: Vec<u8>) -> Result<(), CheckError> {
        let text = String::from_utf8_lossy(&target).into_owned();
        let cp = match open_checkpoint(&target, &self.log_key) {
            Ok((cp, _)) => cp,
            Err(e) => return Err(CheckError::StoredCheckpoint(e.to_string())),
        };
        let mut prog = match self.state.progress.take() {
            Some(p) if p.target == text => p,
            _ => Progress {
                target: text.clone(),
                point: self.state.verified.clone(),
                suspects: Vec::new(),
            },
        };
        self.state.progress = Some(prog.clone());
        self.dir.save(&self.state)?;

        let bar = progress_bar(self.state.verified.size, cp.size, prog.point.size);
        let first = prog.point.size / TILE_WIDTH;
        let end = cp.size.div_ceil(TILE_WIDTH);
        let size = cp.size;
        let client = self.client.clone();
        let fetches = futures::stream::iter(first..end)
            .map(move |b| {
                let client = client.clone();
                async move {
                    // Cannot truncate: the width is at most 256.
                    let width = (size - b * TILE_WIDTH).min(TILE_WIDTH) as u16;
                    let bundle = Bundle { index: b, width };
                    let tile = Tile {
                        level: 0,
                        index: b,
                        width,
                    };
                    let full = Bundle {
                        index: b,
                        width: 256,
                    };
                    let (bpath, fpath) = (bundle.path(), full.path());
                    let (bd, td) = futures::join!(
                        client.partial_or_full(&bpath, &fpath),
                        fetch_tile(&client, tile)
                    );
                    (bundle, tile, bd, td)
                }
            })
            .buffered(self.concurrency.max(1));
        // The fetches run in a task of their own, so the next bundles arrive while
        // this one is audited (the audit blocks its thread on the entry checks). They
        // are handed over in bundle order through a bounded channel; the task stops
        // when the audit ends, also on an early return (the guard aborts it).
        let (tx, mut fetched) = tokio::sync::mpsc::channel(self.concurrency.max(1));
        let fetcher = AbortOnDrop(tokio::spawn(async move {
            let mut fetches = std::pin::pin!(fetches);
            while let Some(item) = fetches.next().await {
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }));

        let mut aborted = false;
        // Index rows and findings of the bundles audited since the last chunk ended.
        let mut batch = IndexBatch::default();
        // Their new leaves, whose Candor checks run together when the chunk ends.
        let mut unchecked = Vec::new();
        let mut unsaved = 0;
        // The chunks before this one, still being checked.
        let mut chunks = Chunks::default();
        while let Some((bundle, tile, bd, td)) = fetched.recv().await {
            // Kept whole: the entries are slices of it, not copies.
            let (bd, td) = (Bytes::from(bd?), td?);
            let ok = self
                .audit_bundle(
                    &mut prog,
                    &cp,
                    bundle,
                    tile,
                    &bd,
                    &td,
                    &mut batch,
                    &mut unchecked,
                )
                .await?;
            unsaved += 1;
            bar.set_position(prog.point.size - self.state.verified.size);
            if !ok || unsaved == SAVE_EVERY_BUNDLES {
                let chunk = (std::mem::take(&mut unchecked), std::mem::take(&mut batch));
                self.next_chunk(&mut chunks, &mut prog, &cp, Some(chunk))
                    .await?;
                unsaved = 0;
            }
            if !ok {
                aborted = true;
                break;
            }
        }
        if unsaved > 0 {
            self.next_chunk(&mut chunks, &mut prog, &cp, Some((unchecked, batch)))
                .await?;
        }
        // The last two chunks' checks end and both are saved.
        self.next_chunk(&mut chunks, &mut prog, &cp, None).await?;
        self.next_chunk(&mut chunks, &mut prog, &cp, None).await?;
        drop(fetched);
        drop(fetcher);
        bar.finish_and_clear();
        if !aborted {
            self.check_upper_partials(&mut prog).await?;
        }
        self.finish(prog, cp, text, aborted).await
    }

    /// Moves the chunks along the checks' pipeline, one step, when the audit has
    /// fetched, hashed and rolled up a chunk's bundles (`new`: its leaves and the
    /// findings of its bundles), or `None` to drain the pipeline at the end.
    ///
    /// A chunk's Candor checks run in two steps on the blocking pool, while the audit
    /// goes on with the next chunks' bundles: the entry checks
    /// ([`Checker::check_entries`]), then the company signatures
    /// ([`Checker::verify_signatures`]); then the chunk is saved. The entry checks of
    /// chunk k depend on those of chunk k−1 (they read and update the company keys
    /// and volume counts), the signatures on nothing that follows, so the entry
    /// checks of k run alongside the signatures of k−1 and the save of k−2 (saves
    /// stay in order), and one step's serial part leaves the other core to the other
    /// step. The company keys and volumes are moved out of `prog` into the entry
    /// checks and come back with their result ([`Auditor::checked`]), so each chunk's
    /// checks see them as if every leaf had been checked in order. Cited purchases
    /// are found in the index, which holds every chunk saved, and among the purchases
    /// of the two chunks not saved yet (`Checker::unsaved`).
    async fn next_chunk(
        &mut self,
        chunks: &mut Chunks,
        prog: &mut Progress,
        cp: &Checkpoint,
        new: Option<(Leaves, IndexBatch)>,
    ) -> Result<(), CheckError> {
        let checked = self.checked(chunks.checking.take(), prog).await?;
        let mut unsaved = chunks
            .verifying
            .as_ref()
            .map(|v| v.purchases.clone())
            .unwrap_or_default();
        if let Some((_, c)) = &checked {
            unsaved.extend(c.batch.purchases.iter().cloned());
        }
        if let Some((leaves, batch)) = new {
            chunks.checking = Some(self.check_entries(prog, leaves, batch, unsaved));
        }
        let previous = chunks.verifying.take();
        if let Some((at, c)) = checked {
            chunks.verifying = Some(self.verify_signatures(at, c, cp));
        }
        if let Some(v) = previous {
            let mut done = v
                .task
                .await
                .map_err(|e| CheckError::Stopped(format!("the signature checks: {e}")))?;
            self.save_progress(&mut done, &v.at).await?;
        }
        Ok(())
    }

    /// Starts the entry checks of a chunk (all but the signatures) on the blocking
    /// pool: one parallel parse over up to [`SAVE_EVERY_BUNDLES`] bundles instead of
    /// per bundle, so threads are started less often. See [`Auditor::next_chunk`].
    fn check_entries(
        &self,
        prog: &mut Progress,
        leaves: Leaves,
        mut batch: IndexBatch,
        unsaved: Vec<(u64, Hash, String)>,
    ) -> EntryChecks {
        let mut companies = std::mem::take(&mut prog.point.companies);
        let mut volume = std::mem::take(&mut prog.point.volume);
        let (policy, dir) = (self.policy.clone(), self.dir.clone());
        let (origin, log_key) = (self.origin.clone(), self.log_key.clone());
        let now = self.clock.now();
        let task = tokio::task::spawn_blocking(move || {
            let refs: Vec<(u64, &[u8], Hash)> = leaves
                .iter()
                .map(|(i, bytes, h)| (*i, bytes.as_ref(), *h))
                .collect();
            let checker = Checker {
                policy: &policy,
                origin: &origin,
                log_key: &log_key,
                state: &dir,
                unsaved: &unsaved,
                now,
            };
            let unverified =
                checker.check_entries(&mut companies, &mut volume, &refs, &mut batch)?;
            Ok(CheckedEntries {
                batch,
                unverified,
                companies,
                volume,
            })
        });
        EntryChecks {
            at: prog.clone(),
            task,
        }
    }

    /// Waits for a chunk's entry checks ([`Auditor::check_entries`]) and gives their
    /// company keys and volumes back to `prog`. Returns the progress as of the chunk's
    /// end, with them, and what the checks found.
    async fn checked(
        &self,
        chunk: Option<EntryChecks>,
        prog: &mut Progress,
    ) -> Result<Option<(Progress, CheckedEntries)>, CheckError> {
        let Some(EntryChecks { mut at, task }) = chunk else {
            return Ok(None);
        };
        let mut checked = task
            .await
            .map_err(|e| CheckError::Stopped(format!("the entry checks: {e}")))??;
        at.point.companies = checked.companies.clone();
        at.point.volume = checked.volume.clone();
        prog.point.companies = std::mem::take(&mut checked.companies);
        prog.point.volume = std::mem::take(&mut checked.volume);
        Ok(Some((at, checked)))
    }

    /// Starts verifying a chunk's company signatures on the blocking pool, after its
    /// entry checks: one batch equation per range of signatures over the whole chunk
    /// (larger batches are cheaper per signature). Every finding of the chunk without
    /// a checkpoint then gets `cp`'s size.
    fn verify_signatures(
        &self,
        at: Progress,
        checked: CheckedEntries,
        cp: &Checkpoint,
    ) -> SignatureChecks {
        let CheckedEntries {
            mut batch,
            unverified,
            ..
        } = checked;
        let purchases = batch.purchases.clone();
        let (origin, cp_size) = (self.origin.clone(), cp.size);
        let task = tokio::task::spawn_blocking(move || {
            unverified.verify(&origin, &mut batch);
            for f in &mut batch.findings {
                if f.checkpoints.is_empty() {
                    f.checkpoints.push(cp_size);
                }
            }
            batch
        });
        SignatureChecks {
            at,
            purchases,
            task,
        }
    }

    /// Audits one bundle and its level-0 tile, leaving its new leaves in `unchecked`
    /// for its chunk's checks ([`Auditor::next_chunk`]); returns false if the audit of
    /// this checkpoint cannot go on (both unreadable).
    #[allow(clippy::too_many_arguments)]
    async fn audit_bundle(
        &mut self,
        prog: &mut Progress,
        cp: &Checkpoint,
        bundle: Bundle,
        tile: Tile,
        bundle_data: &Bytes,
        tile_data: &[u8],
        batch: &mut IndexBatch,
        unchecked: &mut Leaves,
    ) -> Result<bool, CheckError> {
        let start = bundle.index * TILE_WIDTH;
        let width = usize::from(bundle.width);
        let known = (prog.point.size - start) as usize; // leaves of this bundle already audited
        let origin = self.origin.clone();

        // The level-0 tile.
        let tile_hashes: Option<Vec<Hash>> = if tile_data.len() == width * 32 {
            Some(
                tile_data
                    .chunks_exact(32)
                    .filter_map(Hash::from_slice)
                    .collect(),
            )
        } else {
            batch.findings.push(
                Finding::new(
                    Kind::MalformedData,
                    Severity::High,
                    &origin,
                    format!(
                        "Tile {} is {} bytes long; a tile of {width} hashes is {} bytes.",
                        tile.path(),
                        tile_data.len(),
                        width * 32
                    ),
                )
                .with_checkpoint(cp.size)
                .with_resource(tile.path()),
            );
            None
        };
        // The bundle.
        let entries: Option<Vec<Bytes>> = match bundle_ranges(bundle_data) {
            Ok(e) if e.len() >= width && (e.len() == width || e.len() == 256) => Some(
                e.into_iter()
                    .take(width)
                    .map(|r| bundle_data.slice(r))
                    .collect(),
            ),
            Ok(e) => {
                batch.findings.push(
                    Finding::new(
                        Kind::MalformedData,
                        Severity::High,
                        &origin,
                        format!(
                            "Entry bundle {} holds {} entries; it should hold {width}.",
                            bundle.path(),
                            e.len()
                        ),
                    )
                    .with_checkpoint(cp.size)
                    .with_resource(bundle.path()),
                );
                None
            }
            Err(e) => {
                batch.findings.push(
                    Finding::new(
                        Kind::MalformedData,
                        Severity::High,
                        &origin,
                        format!("Entry bundle {} is malformed: {e}.", bundle.path()),
                    )
                    .with_checkpoint(cp.size)
                    .with_resource(bundle.path()),
                );
                None
            }
        };
        let leaf_hashes: Vec<Hash> = match (&entries, &tile_hashes) {
            // SHA-256 of each leaf (RFC 6962 §2.1 leaf hash), on this thread: the
            // checks of the chunks before keep both cores busy.
            (Some(e), _) => e.iter().map(|x| leaf_hash(x)).collect(),
            // Without entries the tile's hashes stand in; the root check still
            // proves them, but the entries themselves are unchecked (reported above).
            (None, Some(t)) => t.clone(),
            (None, None) => return Ok(false),
        };

        // Leaves audited before (the bundle was partial then) must not have changed.
        let prev = prog.point.pending.first().cloned().unwrap_or_default();
        for (i, old) in prev.iter().enumerate().take(known) {
            if entries.is_some() && leaf_hashes.get(i) != Some(old) {
                batch.findings.push(
                    Finding::new(
                        Kind::PartialChanged,
                        Severity::Critical,
                        &origin,
                        format!(
                            "Entry {} in bundle {} differs from the entry the log served at that index before.",
                            start + i as u64,
                            bundle.path()
                        ),
                    )
                    .with_index(start + i as u64)
                    .with_checkpoint(cp.size)
                    .with_resource(bundle.path()),
                );
            }
            if let Some(t) = &tile_hashes
                && t.get(i) != Some(old)
            {
                batch.findings.push(
                    Finding::new(
                        Kind::PartialChanged,
                        Severity::Critical,
                        &origin,
                        format!(
                            "Tile {} changed hash {i} (entry {}), which an earlier, partial version of the tile held differently.",
                            tile.path(),
                            start + i as u64
                        ),
                    )
                    .with_index(start + i as u64)
                    .with_checkpoint(cp.size)
                    .with_resource(tile.path()),
                );
            }
        }
        // New leaves: compare with the tile (which one is wrong is decided at the root).
        if let (Some(t), Some(_)) = (&tile_hashes, &entries) {
            for i in known..width {
                if t[i] != leaf_hashes[i] {
                    prog.suspects.push(Suspect {
                        index: start + i as u64,
                        bundle: bundle.path(),
                        tile: tile.path(),
                    });
                }
            }
        }
        // Candor checks on the new entries: later, with the rest of the chunk's.
        if let Some(e) = entries {
            unchecked.extend(
                e.into_iter()
                    .enumerate()
                    .skip(known)
                    .map(|(i, bytes)| (start + i as u64, bytes, leaf_hashes[i])),
            );
        }
        // Grow the tree.
        for h in &leaf_hashes[known..] {
            prog.point.frontier.append(*h);
        }
        prog.point.size = start + width as u64;
        if prog.point.pending.is_empty() {
            prog.point.pending.push(Vec::new());
        }
        prog.point.pending[0] = leaf_hashes;
        self.roll_up(prog, cp.size).await?;
        Ok(true)
    }

    /// When the tile at some level is complete, compare it with the log's full tile
    /// and carry its hash one level up (tlog-tiles: level L+1 holds the MTH of each
    /// full tile of level L).
    async fn roll_up(&mut self, prog: &mut Progress, cp_size: u64) -> Result<(), CheckError> {
        let mut level = 0usize;
        while level < prog.point.pending.len()
            && prog.point.pending[level].len() == TILE_WIDTH as usize
        {
            let hashes = std::mem::take(&mut prog.point.pending[level]);
            let span = 1u64 << (8 * (level as u32 + 1)); // leaves under one full tile
            let index = prog.point.size / span - 1;
            if level > 0 {
                let tile = Tile {
                    level: level as u8,
                    index,
                    width: 256,
                };
                let data = fetch_tile(&self.client, tile).await?;
                self.compare_upper(prog, tile, &hashes, &data, cp_size)
                    .await?;
            }
            let root = root_from_leaf_hashes(&hashes);
            if prog.point.pending.len() <= level + 1 {
                prog.point.pending.push(Vec::new());
            }
            prog.point.pending[level + 1].push(root);
            level += 1;
        }
        Ok(())
    }

    /// Compares an upper-level tile with the hashes computed from the entries.
    async fn compare_upper(
        &mut self,
        prog: &mut Progress,
        tile: Tile,
        want: &[Hash],
        data: &[u8],
        cp_size: u64,
    ) -> Result<(), CheckError> {
        if data.len() != want.len() * 32 {
            let f = Finding::new(
                Kind::MalformedData,
                Severity::High,
                &self.origin,
                format!(
                    "Tile {} is {} bytes long; it should hold {} hashes.",
                    tile.path(),
                    data.len(),
                    want.len()
                ),
            )
            .with_checkpoint(cp_size)
            .with_resource(tile.path());
            return self.report(vec![f]).await;
        }
        let span = 1u64 << (8 * u32::from(tile.level));
        for (i, (w, got)) in want.iter().zip(data.chunks_exact(32)).enumerate() {
            if w.as_bytes() != got {
                prog.suspects.push(Suspect {
                    index: (tile.index * 256 + i as u64) * span,
                    bundle: String::new(),
                    tile: tile.path(),
                });
            }
        }
        Ok(())
    }

    /// At the target size, every upper-level partial tile must hold the hashes
    /// computed so far.
    async fn check_upper_partials(&mut self, prog: &mut Progress) -> Result<(), CheckError> {
        for level in 1..prog.point.pending.len() {
            let want = prog.point.pending[level].clone();
            if want.is_empty() {
                continue;
            }
            let span = 1u64 << (8 * (level as u32 + 1));
            let tile = Tile {
                level: level as u8,
                index: prog.point.size / span,
                // Cannot truncate: a pending level holds fewer than 256 hashes.
                width: want.len() as u16,
            };
            let data = fetch_tile(&self.client, tile).await?;
            let size = prog.point.size;
            self.compare_upper(prog, tile, &want, &data, size).await?;
        }
        Ok(())
    }

    /// Makes the audit's progress durable: first the index rows and findings of the
    /// bundles audited since the last save (so that progress never points past rows
    /// that are not stored), then the progress itself. Findings are reported only
    /// once stored, and only the first time (a bundle re-audited after a kill finds
    /// them stored already).
    async fn save_progress(
        &mut self,
        batch: &mut IndexBatch,
        prog: &Progress,
    ) -> Result<(), CheckError> {
        let fresh = self.dir.write_index(&std::mem::take(batch))?;
        self.sink.emit(fresh).await;
        self.state.progress = Some(prog.clone());
        self.dir.save(&self.state)?;
        Ok(())
    }

    /// Decides the audit: the recomputed root against the signed root.
    async fn finish(
        &mut self,
        prog: Progress,
        cp: Checkpoint,
        text: String,
        aborted: bool,
    ) -> Result<(), CheckError> {
        let root_ok =
            !aborted && prog.point.frontier.root() == cp.root && prog.point.size == cp.size;
        let mut findings = Vec::new();
        if root_ok {
            // The entries reproduce the signed root, so any tile that disagreed is wrong.
            for s in &prog.suspects {
                findings.push(
                    Finding::new(
                        Kind::TileMismatch,
                        Severity::High,
                        &self.origin,
                        format!(
                            "Tile {} holds a wrong hash for entry {}: it does not match the entries, which do reproduce the signed root.",
                            s.tile, s.index
                        ),
                    )
                    .with_index(s.index)
                    .with_checkpoint(cp.size)
                    .with_resource(s.tile.clone()),
                );
            }
            self.state.verified = prog.point;
            self.state.checkpoint = Some(text);
            self.state.progress = None;
            let fresh = self.dir.write_index(&IndexBatch {
                findings,
                ..IndexBatch::default()
            })?;
            self.dir.save(&self.state)?;
            self.publish();
            self.sink.emit(fresh).await;
            return Ok(());
        }

        // The entries do not reproduce the signed root. Do the tiles?
        let vsize = self.state.verified.size;
        let tiles = self.tiles();
        let reader = VerifiedTileHashReader::new(cp.size, cp.root, &tiles);
        let tiles_ok = tree_hash(cp.size, &reader).is_ok();
        let prefix = if tiles_ok && vsize > 0 {
            tree_hash(vsize, &reader).ok()
        } else {
            None
        };
        let verified = self.verified_checkpoint()?;
        match (&verified, prefix) {
            (Some((vcp, vnote)), Some(h)) if h != vcp.root => {
                let ev = Evidence::new(
                    &self.log_key,
                    (vcp, vnote),
                    (&cp, &text),
                    Some(&reader as &dyn HashReader),
                );
                let (vcp, source) = (vcp.clone(), "the log".to_owned());
                self.split_view(ev, &vcp, &cp, &source).await?;
            }
            _ if tiles_ok && !prog.suspects.iter().all(|s| s.bundle.is_empty()) => {
                for s in prog.suspects.iter().filter(|s| !s.bundle.is_empty()) {
                    findings.push(
                        Finding::new(
                            Kind::BundleMismatch,
                            Severity::High,
                            &self.origin,
                            format!(
                                "Entry {} in bundle {} does not hash to tile {}, and the tiles, not the entries, reproduce the signed root.",
                                s.index, s.bundle, s.tile
                            ),
                        )
                        .with_index(s.index)
                        .with_checkpoint(cp.size)
                        .with_resource(s.bundle.clone()),
                    );
                }
            }
            _ => {
                let mut f = Finding::new(
                    Kind::RootMismatch,
                    Severity::Critical,
                    &self.origin,
                    format!(
                        "The checkpoint of size {} has root {}, but neither the log's entries nor its tiles reproduce it from the verified tree of size {vsize}.",
                        cp.size,
                        cp.root.to_base64()
                    ),
                )
                .with_checkpoint(cp.size)
                .with_evidence(serde_json::json!({ "checkpoint": text }));
                for s in &prog.suspects {
                    f = f.with_resource(if s.bundle.is_empty() {
                        s.tile.clone()
                    } else {
                        s.bundle.clone()
                    });
                }
                findings.push(f);
            }
        }
        // Roll back to the verified tree; this checkpoint is not audited again.
        self.state.progress = None;
        self.state.rejected.push(note_id(text.as_bytes()));
        self.dir.truncate_index(vsize)?;
        let fresh = self.dir.write_index(&IndexBatch {
            findings,
            ..IndexBatch::default()
        })?;
        self.dir.save(&self.state)?;
        self.sink.emit(fresh).await;
        Ok(())
    }
}

/// Aborts a task when dropped (a `JoinHandle` alone lets it run on).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// New leaves of a chunk, awaiting their Candor checks: index, bytes, leaf hash.
type Leaves = Vec<(u64, Bytes, Hash)>;

/// The chunks whose Candor checks are under way ([`Auditor::next_chunk`]).
#[derive(Default)]
struct Chunks {
    /// The latest chunk: its entry checks.
    checking: Option<EntryChecks>,
    /// The one before: its signatures.
    verifying: Option<SignatureChecks>,
}

/// A chunk's entry checks, under way ([`Auditor::check_entries`]).
struct EntryChecks {
    /// The progress as of the chunk's end, saved once its checks are done (with
    /// their company keys and volumes).
    at: Progress,
    task: tokio::task::JoinHandle<Result<CheckedEntries, CheckError>>,
}

/// What a chunk's entry checks give back.
struct CheckedEntries {
    batch: IndexBatch,
    unverified: Unverified,
    companies: CompanyKeys,
    volume: VolumeTracker,
}

/// A chunk's signature checks, under way ([`Auditor::verify_signatures`]).
struct SignatureChecks {
    /// The progress as of the chunk's end, with the company keys and volumes.
    at: Progress,
    /// The chunk's purchases, not in the index before it is saved.
    purchases: Vec<(u64, Hash, String)>,
    task: tokio::task::JoinHandle<IndexBatch>,
}

/// Bundles in one chunk: audited between two durable saves of the index and the
/// progress. Each save is a redb commit and an fsync'd state file; once per bundle
/// they cost more than auditing the bundle. A chunk is saved when its checks are
/// done, while the next ones are audited, so a monitor killed between saves
/// re-audits at most three times this many bundles (12,288 entries).
const SAVE_EVERY_BUNDLES: usize = 16;

/// A progress bar with rate and ETA, on a terminal only.
fn progress_bar(base: u64, target: u64, at: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || target <= base {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(target - base);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} auditing [{bar:40}] {human_pos}/{human_len} entries  {per_sec}  ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_position(at.saturating_sub(base));
    bar
}

#[cfg(test)]
mod tests {
    //! The audit against a log served in this process (the server's router on
    //! loopback, the log on the in-memory store).

    use super::*;
    use candor_server::state::Role;
    use candor_server::testing::{Log, app_state};
    use candor_store::Store as _;

    /// Serves `log` on 127.0.0.1:0; its base URL.
    async fn serve(log: &Log) -> String {
        let app = Arc::new(app_state(
            log.store.clone(),
            &log.key,
            log.core.shared(),
            Role::ReadOnly,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = candor_server::routes::router(app);
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    /// One audit round of the log at `base`; the checkpoint the monitor accepted and
    /// every finding it recorded.
    async fn audit(log: &Log, base: &str) -> (Option<String>, Vec<Finding>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let state_dir = StateDir::open(dir.path()).expect("state dir");
        let key = log.key.verifier();
        let origin = key.name().to_string();
        let state = state_dir
            .load_for(&origin, &key.to_string())
            .expect("monitor state");
        let http = super::super::client::http_client().expect("http client");
        let mut auditor = Auditor {
            client: TilesClient::new(http.clone(), base).expect("tiles client"),
            http: http.clone(),
            log_key: key,
            origin,
            policy: Arc::new(Policy::default()),
            trust_policy: None,
            dir: Arc::new(state_dir),
            state,
            sink: Sink::new(http, None),
            peers: Vec::new(),
            concurrency: 2,
            served: Arc::new(RwLock::new(None)),
            clock: candor_core::clock::system(),
        };
        auditor.round().await.expect("an audit round");
        let accepted = auditor.state.checkpoint.clone();
        drop(auditor);
        let (_, db) = StateDir::open_read(dir.path()).expect("read state");
        let findings = super::super::state::read_findings(&db).expect("findings");
        (accepted, findings)
    }

    fn log_with_entries() -> Log {
        let mut log = Log::new();
        let subs = (1..=5).map(|n| vec![log.entry(n)]).collect();
        assert!(log.submit(subs).iter().all(Result::is_ok));
        log
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_log_passes_the_audit() {
        let log = log_with_entries();
        let base = serve(&log).await;
        let (accepted, findings) = audit(&log, &base).await;
        let published = log.core.shared().published();
        assert_eq!(
            accepted.as_deref().map(str::as_bytes),
            Some(&published.note[..])
        );
        let serious: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity >= Severity::High)
            .collect();
        assert!(serious.is_empty(), "{serious:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tampered_bundle_is_detected() {
        let log = log_with_entries();
        let bundle = log.store.read_bundle(0).unwrap().expect("bundle 0");
        let mut forged = bundle.clone();
        let last = forged.len() - 2;
        forged[last] ^= 1;
        log.store.tamper_bundle(0, forged);
        let base = serve(&log).await;
        let (accepted, findings) = audit(&log, &base).await;
        assert!(
            findings.iter().any(|f| f.severity >= Severity::High),
            "{findings:?}"
        );
        assert_ne!(
            accepted.as_deref().map(str::as_bytes),
            Some(&log.core.shared().published().note[..]),
            "a log serving tampered data is not vouched for"
        );
    }
}
