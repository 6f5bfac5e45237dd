//! The node's content-addressed store of model chunks and manifests, held in memory, and (in
//! [`checkpoint`]) the node's latest model on disk.
//!
//! A [`ChunkStore`] is shared by the network event loop, which serves chunks and manifests to
//! peers synchronously, and the averaging task, which inserts what it fetched and assembles
//! models from it. It is a cheap [`Clone`] handle around one `std::sync::Mutex`: every method
//! takes the lock for a few map operations only. The lock is never held across an `.await`, a
//! hash of chunk data, a copy of chunk data, file or network I/O, or the reassembly of a model,
//! so a lookup from the event loop never waits on anything slow. A poisoned lock (a panic in
//! another thread while holding it) is recovered, never propagated: every operation leaves the
//! maps consistent before it can panic.
//!
//! ## Memory budget and eviction
//! Chunks count against the budget by byte length; a chunk shared by several manifests is held
//! and counted once. Manifests are not counted (they are small next to their chunks) but at
//! most [`MAX_MANIFESTS`] are kept. Every chunk carries a reference count: the number of held
//! manifests that list it (a manifest listing a chunk twice counts once), whether the chunk is
//! held yet or still being fetched. Manifests are kept in least-recently-used order; inserting
//! or [`touching`](ChunkStore::touch) one makes it the most recent. Our own latest model
//! ([`ChunkStore::insert_own`]) is pinned and never evicted.
//!
//! When an insert leaves the chunks over budget, the store evicts, in this order:
//! 1. every held chunk no manifest references (inserted with no manifest, or whose manifest
//!    was evicted while it was being fetched);
//! 2. the least-recently-used unpinned manifest, then every chunk it was the last to
//!    reference; repeated until within budget.
//!
//! If only the pinned manifest is left and its chunks alone exceed the budget, the store goes
//! over budget and logs a warning (once, until it is back within budget). Each eviction costs
//! O(distinct chunks of the evicted manifest).
//!
//! This module does not fetch, serve or decide anything: the network and averaging modules do,
//! and call it.

pub mod checkpoint;

pub use checkpoint::{Checkpoint, CheckpointError, checkpoint_path};

use bytes::Bytes;
use murmur_protocol::{AssembleError, ChunkId, FlatParams, Manifest, ManifestId, Snapshot};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Most manifests kept at once. Manifests are not counted against the byte budget (a typical
/// one is a few KiB, but the protocol allows up to 4 MiB each), so their number is bounded on
/// its own: 64 covers our own model plus the recent models of a few dozen neighbours, and caps
/// the worst case at 256 MiB of manifests.
pub const MAX_MANIFESTS: usize = 64;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk data hashes to {actual}, expected {expected}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    #[error("manifest {id} is not in the store")]
    UnknownManifest { id: ManifestId },
    #[error("manifest {manifest}: chunk #{index} ({chunk}) is not in the store")]
    MissingChunk {
        manifest: ManifestId,
        index: usize,
        chunk: ChunkId,
    },
    #[error("manifest {manifest} does not reassemble: {source}")]
    Assemble {
        manifest: ManifestId,
        #[source]
        source: AssembleError,
    },
}

/// What [`ChunkStore::insert_own`] did. `new_chunks + reused_chunks` is the snapshot's chunk
/// count; a chunk id listed twice in one snapshot is new at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertStats {
    /// Chunks that were not held before.
    pub new_chunks: usize,
    /// Chunks that were already held (shared with another model, or listed earlier).
    pub reused_chunks: usize,
    /// Bytes of the new chunks.
    pub bytes_added: u64,
}

/// A snapshot of the store's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Chunks held.
    pub chunks: usize,
    /// Bytes of the chunks held (each distinct chunk once).
    pub bytes: u64,
    /// Manifests held, the pinned one included.
    pub manifests: usize,
    /// Chunks evicted since the store was created.
    pub evicted_chunks: u64,
    /// The memory budget for chunk bytes.
    pub budget: u64,
}

/// The content-addressed store; clones share the same contents.
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The contents are megabytes of chunk data: show the counters only.
        f.debug_struct("ChunkStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ChunkStore {
    /// An empty store that keeps chunk bytes within `memory_budget_bytes` (except for the pinned
    /// own model, see the module doc).
    pub fn new(memory_budget_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::new(memory_budget_bytes))),
        }
    }

    /// Our own new model: stores its manifest and every chunk and pins it as "own latest"
    /// (never evicted); the previous own manifest is unpinned and becomes the most recently
    /// used of the others. New chunks are copied out of the snapshot's stream (outside the
    /// lock) so that what the budget counts is what is held in memory.
    pub fn insert_own(&self, snapshot: &Snapshot) -> InsertStats {
        let copies = self.copy_missing(snapshot);
        let mut inner = self.lock();
        inner.add_manifest(snapshot.id, &snapshot.manifest, &snapshot.manifest_bytes);
        inner.pin(snapshot.id);
        let mut stats = InsertStats::default();
        for (chunk, copy) in snapshot.chunks.iter().zip(copies) {
            // Decide on the state under this lock: a chunk listed twice, or inserted by
            // another task since the first look, is reused; one evicted since the first look
            // is copied now (rare).
            if inner.holds(&chunk.id) {
                stats.reused_chunks += 1;
                continue;
            }
            inner.add_chunk(chunk.id, copy.unwrap_or_else(|| own_copy(&chunk.data)));
            stats.new_chunks += 1;
            stats.bytes_added += chunk.data.len() as u64;
        }
        inner.enforce_limits();
        stats
    }

    /// A manifest fetched from a peer, already verified by the caller (`decode_manifest` with
    /// the id it was asked for). Insert it before fetching its chunks: they are then
    /// referenced by it and kept. Inserting a manifest already held marks it as recently used.
    pub fn insert_manifest(&self, id: ManifestId, manifest: Manifest, bytes: Bytes) {
        let mut inner = self.lock();
        if inner.manifests.contains_key(&id) {
            inner.touch(&id);
            return;
        }
        inner.add_manifest(id, &manifest, &bytes);
        inner.enforce_limits();
    }

    /// A chunk fetched from a peer. Checks that `data` hashes to `id` first (outside the lock)
    /// and keeps nothing if not. `Ok(true)` if the chunk is new, `Ok(false)` if already held.
    pub fn insert_chunk(&self, id: ChunkId, data: Bytes) -> Result<bool, StoreError> {
        id.verify(&data)
            .map_err(|actual| StoreError::HashMismatch {
                expected: id,
                actual,
            })?;
        if self.has_chunk(&id) {
            return Ok(false);
        }
        // `data` may be a slice of a whole response: keep a copy of just this chunk.
        let data = own_copy(&data);
        let mut inner = self.lock();
        let new = inner.add_chunk(id, data);
        if new {
            inner.enforce_limits();
        }
        Ok(new)
    }

    /// The bytes of one chunk, if held.
    pub fn chunk(&self, id: &ChunkId) -> Option<Bytes> {
        self.lock().chunk(id)
    }

    /// The bytes of several chunks (one lookup per id, `None` where not held), under a single
    /// lock, for answering one request.
    pub fn chunks(&self, ids: &[ChunkId]) -> Vec<Option<Bytes>> {
        let inner = self.lock();
        ids.iter().map(|id| inner.chunk(id)).collect()
    }

    /// Whether a chunk is held.
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.lock().holds(id)
    }

    /// A held manifest and its canonical bytes.
    pub fn manifest(&self, id: &ManifestId) -> Option<(Manifest, Bytes)> {
        let (manifest, bytes) = {
            let inner = self.lock();
            let entry = inner.manifests.get(id)?;
            (Arc::clone(&entry.manifest), entry.bytes.clone())
        };
        // The deep copy (up to 2 MiB of chunk ids) happens outside the lock.
        Some((Manifest::clone(&manifest), bytes))
    }

    /// The canonical bytes of a held manifest (what peers are served).
    pub fn manifest_bytes(&self, id: &ManifestId) -> Option<Bytes> {
        self.lock().manifests.get(id).map(|e| e.bytes.clone())
    }

    /// The chunks of `manifest` not held yet, each with its index in the manifest. A chunk id
    /// listed several times appears once, with its first index.
    pub fn missing(&self, manifest: &Manifest) -> Vec<(usize, ChunkId)> {
        let inner = self.lock();
        let mut seen = HashSet::with_capacity(manifest.chunks.len());
        manifest
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, id)| !inner.holds(id) && seen.insert(**id))
            .map(|(index, id)| (index, *id))
            .collect()
    }

    /// Reassembles a held manifest from held chunks. The chunks are gathered under the lock
    /// (cheap reference-counted handles); [`murmur_protocol::assemble`], which checks every
    /// chunk's length and hash again and decodes the values, runs outside it.
    pub fn assemble(&self, id: &ManifestId) -> Result<FlatParams, StoreError> {
        let (manifest, chunks) = self.gather(id)?;
        murmur_protocol::assemble(&manifest, &chunks).map_err(|source| StoreError::Assemble {
            manifest: *id,
            source,
        })
    }

    /// Marks a manifest as recently used (e.g. when a peer announces it again). Does nothing
    /// for an unknown or the pinned manifest.
    pub fn touch(&self, id: &ManifestId) {
        self.lock().touch(id);
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            chunks: inner.held_chunks,
            bytes: inner.bytes,
            manifests: inner.manifests.len(),
            evicted_chunks: inner.evicted_chunks,
            budget: inner.budget,
        }
    }

    /// A copy of each chunk of `snapshot` not held yet (`None` for those held), made outside
    /// the lock.
    fn copy_missing(&self, snapshot: &Snapshot) -> Vec<Option<Bytes>> {
        let held: Vec<bool> = {
            let inner = self.lock();
            snapshot.chunks.iter().map(|c| inner.holds(&c.id)).collect()
        };
        snapshot
            .chunks
            .iter()
            .zip(held)
            .map(|(c, held)| (!held).then(|| own_copy(&c.data)))
            .collect()
    }

    /// The manifest and the data of each of its chunks, in manifest order.
    fn gather(&self, id: &ManifestId) -> Result<(Arc<Manifest>, Vec<Bytes>), StoreError> {
        let inner = self.lock();
        let entry = inner
            .manifests
            .get(id)
            .ok_or(StoreError::UnknownManifest { id: *id })?;
        let chunks = entry
            .manifest
            .chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| {
                inner.chunk(chunk).ok_or(StoreError::MissingChunk {
                    manifest: *id,
                    index,
                    chunk: *chunk,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Arc::clone(&entry.manifest), chunks))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A copy of `data` in its own allocation, so that holding it keeps nothing else alive.
fn own_copy(data: &Bytes) -> Bytes {
    Bytes::copy_from_slice(data)
}

/// The distinct chunk ids of a manifest, in first-appearance order.
fn distinct_chunks(manifest: &Manifest) -> Vec<ChunkId> {
    let mut seen = HashSet::with_capacity(manifest.chunks.len());
    manifest
        .chunks
        .iter()
        .copied()
        .filter(|id| seen.insert(*id))
        .collect()
}

/// One chunk id known to the store: held, referenced by a held manifest, or both.
#[derive(Debug)]
struct ChunkEntry {
    /// The bytes, once held.
    data: Option<Bytes>,
    /// Held manifests listing this chunk (each manifest once).
    refs: u32,
}

/// One held manifest.
#[derive(Debug)]
struct ManifestEntry {
    manifest: Arc<Manifest>,
    bytes: Bytes,
    /// Its distinct chunk ids, to drop its references in O(its chunks) when evicted.
    distinct: Vec<ChunkId>,
    /// Its key in [`Inner::lru`]; `None` while pinned.
    tick: Option<u64>,
}

/// Everything behind the lock. Invariants: a `chunks` entry exists iff its data is held or
/// `refs > 0`; `refs` counts the held manifests listing the chunk; `orphans` holds exactly
/// the held chunks with `refs == 0`; `bytes` and `held_chunks` sum the held data; every
/// manifest but the pinned one is in `lru` under its `tick`.
#[derive(Debug)]
struct Inner {
    budget: u64,
    chunks: HashMap<ChunkId, ChunkEntry>,
    orphans: HashSet<ChunkId>,
    bytes: u64,
    held_chunks: usize,
    manifests: HashMap<ManifestId, ManifestEntry>,
    /// Unpinned manifests by last use, oldest first.
    lru: BTreeMap<u64, ManifestId>,
    next_tick: u64,
    pinned: Option<ManifestId>,
    evicted_chunks: u64,
    /// Whether the over-budget warning was logged since the store was last within budget.
    warned_over_budget: bool,
}

impl Inner {
    fn new(budget: u64) -> Self {
        Self {
            budget,
            chunks: HashMap::new(),
            orphans: HashSet::new(),
            bytes: 0,
            held_chunks: 0,
            manifests: HashMap::new(),
            lru: BTreeMap::new(),
            next_tick: 0,
            pinned: None,
            evicted_chunks: 0,
            warned_over_budget: false,
        }
    }

    fn chunk(&self, id: &ChunkId) -> Option<Bytes> {
        self.chunks.get(id).and_then(|e| e.data.clone())
    }

    fn holds(&self, id: &ChunkId) -> bool {
        self.chunks.get(id).is_some_and(|e| e.data.is_some())
    }

    fn tick(&mut self) -> u64 {
        let tick = self.next_tick;
        self.next_tick += 1;
        tick
    }

    /// Adds a manifest as the most recently used, referencing its chunks; no-op if held.
    fn add_manifest(&mut self, id: ManifestId, manifest: &Manifest, bytes: &Bytes) {
        if self.manifests.contains_key(&id) {
            return;
        }
        let distinct = distinct_chunks(manifest);
        for chunk in &distinct {
            let entry = self.chunks.entry(*chunk).or_insert(ChunkEntry {
                data: None,
                refs: 0,
            });
            entry.refs += 1;
            if entry.refs == 1 && entry.data.is_some() {
                self.orphans.remove(chunk);
            }
        }
        let tick = self.tick();
        self.lru.insert(tick, id);
        let entry = ManifestEntry {
            manifest: Arc::new(manifest.clone()),
            bytes: bytes.clone(),
            distinct,
            tick: Some(tick),
        };
        self.manifests.insert(id, entry);
    }

    /// Stores a chunk's data; `false` if it was already held.
    fn add_chunk(&mut self, id: ChunkId, data: Bytes) -> bool {
        let entry = self.chunks.entry(id).or_insert(ChunkEntry {
            data: None,
            refs: 0,
        });
        if entry.data.is_some() {
            return false;
        }
        if entry.refs == 0 {
            self.orphans.insert(id);
        }
        self.bytes += data.len() as u64;
        self.held_chunks += 1;
        entry.data = Some(data);
        true
    }

    /// Pins a held manifest as our own latest; the previously pinned one becomes the most
    /// recently used unpinned manifest.
    fn pin(&mut self, id: ManifestId) {
        if self.pinned == Some(id) {
            return;
        }
        if let Some(previous) = self.pinned.take() {
            let tick = self.tick();
            if let Some(entry) = self.manifests.get_mut(&previous) {
                entry.tick = Some(tick);
                self.lru.insert(tick, previous);
            }
        }
        if let Some(entry) = self.manifests.get_mut(&id) {
            if let Some(tick) = entry.tick.take() {
                self.lru.remove(&tick);
            }
            self.pinned = Some(id);
        }
    }

    fn touch(&mut self, id: &ManifestId) {
        let tick = self.tick();
        let Some(entry) = self.manifests.get_mut(id) else {
            return;
        };
        let Some(old) = entry.tick else {
            return; // pinned
        };
        entry.tick = Some(tick);
        self.lru.remove(&old);
        self.lru.insert(tick, *id);
    }

    /// Applies the manifest count limit, then the byte budget (see the module doc).
    fn enforce_limits(&mut self) {
        while self.manifests.len() > MAX_MANIFESTS && self.evict_oldest_manifest() {}
        if self.bytes <= self.budget {
            self.warned_over_budget = false;
            return;
        }
        self.evict_orphans();
        while self.bytes > self.budget && self.evict_oldest_manifest() {}
        if self.bytes <= self.budget {
            self.warned_over_budget = false;
        } else if !self.warned_over_budget {
            self.warned_over_budget = true;
            tracing::warn!(
                bytes = self.bytes,
                budget = self.budget,
                "chunk store over its memory budget with only our own model left; \
                 raise the budget"
            );
        }
    }

    fn evict_orphans(&mut self) {
        for id in std::mem::take(&mut self.orphans) {
            self.drop_data(&id);
        }
    }

    /// Evicts the least-recently-used unpinned manifest and every chunk only it referenced;
    /// `false` if there is none.
    fn evict_oldest_manifest(&mut self) -> bool {
        let Some((_, id)) = self.lru.pop_first() else {
            return false;
        };
        let Some(entry) = self.manifests.remove(&id) else {
            return true;
        };
        for chunk in &entry.distinct {
            let Some(c) = self.chunks.get_mut(chunk) else {
                continue;
            };
            c.refs = c.refs.saturating_sub(1);
            if c.refs == 0 {
                self.drop_data(chunk);
            }
        }
        tracing::debug!(manifest = %id.short(), "evicted manifest from the chunk store");
        true
    }

    /// Removes a chunk with no references (and its data, if held).
    fn drop_data(&mut self, id: &ChunkId) {
        if let Some(entry) = self.chunks.remove(id)
            && let Some(data) = entry.data
        {
            self.bytes -= data.len() as u64;
            self.held_chunks -= 1;
            self.evicted_chunks += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_protocol::TensorSpec;

    /// Chunk size of the test snapshots: 64 bytes = 16 floats per chunk.
    const CHUNK: u32 = 64;

    fn params(values: Vec<f32>) -> FlatParams {
        let n = values.len() as u64;
        FlatParams::from_named(vec![(TensorSpec::f32("w", &[n]), values)]).unwrap()
    }

    /// `chunks` chunks of 16 floats, chunk `i` filled with `base + i`.
    fn model(base: f32, chunks: usize) -> FlatParams {
        params((0..chunks * 16).map(|i| base + (i / 16) as f32).collect())
    }

    fn snap(p: &FlatParams) -> Snapshot {
        Snapshot::build(p, CHUNK).unwrap()
    }

    /// Inserts a snapshot the way a fetcher would: manifest first, then each chunk.
    fn fetch_into(store: &ChunkStore, s: &Snapshot) {
        store.insert_manifest(s.id, s.manifest.clone(), s.manifest_bytes.clone());
        for c in &s.chunks {
            store.insert_chunk(c.id, c.data.clone()).unwrap();
        }
    }

    fn holds_all(store: &ChunkStore, s: &Snapshot) -> bool {
        s.chunks.iter().all(|c| store.has_chunk(&c.id))
    }

    fn holds_none(store: &ChunkStore, s: &Snapshot) -> bool {
        s.chunks.iter().all(|c| !store.has_chunk(&c.id))
    }

    #[test]
    fn insert_own_then_lookups() {
        let store = ChunkStore::new(1 << 20);
        let s = snap(&model(0.0, 4));
        let stats = store.insert_own(&s);
        assert_eq!(
            stats,
            InsertStats {
                new_chunks: 4,
                reused_chunks: 0,
                bytes_added: 256
            }
        );
        for c in &s.chunks {
            assert!(store.has_chunk(&c.id));
            assert_eq!(store.chunk(&c.id).unwrap(), c.data);
        }
        let unknown = ChunkId::of(b"nope");
        let ids = [s.chunks[2].id, unknown];
        assert_eq!(
            store.chunks(&ids),
            vec![Some(s.chunks[2].data.clone()), None]
        );
        let (manifest, bytes) = store.manifest(&s.id).unwrap();
        assert_eq!(manifest, s.manifest);
        assert_eq!(bytes, s.manifest_bytes);
        assert_eq!(store.manifest_bytes(&s.id).unwrap(), s.manifest_bytes);
        assert!(store.manifest(&ManifestId::of(b"nope")).is_none());
        let st = store.stats();
        assert_eq!((st.chunks, st.bytes, st.manifests), (4, 256, 1));
        assert_eq!((st.evicted_chunks, st.budget), (0, 1 << 20));
    }

    #[test]
    fn same_snapshot_twice_reuses_every_chunk() {
        let store = ChunkStore::new(1 << 20);
        let s = snap(&model(0.0, 5));
        store.insert_own(&s);
        let again = store.insert_own(&s);
        assert_eq!(
            again,
            InsertStats {
                new_chunks: 0,
                reused_chunks: 5,
                bytes_added: 0
            }
        );
        assert_eq!(store.stats().bytes, 320);
        assert_eq!(store.stats().manifests, 1);
    }

    #[test]
    fn snapshots_differing_in_one_region_share_chunks() {
        let store = ChunkStore::new(1 << 20);
        let a = model(0.0, 6);
        let mut b = a.clone();
        b.values_mut()[40] = 99.0; // inside chunk #2
        store.insert_own(&snap(&a));
        let stats = store.insert_own(&snap(&b));
        assert_eq!(stats.new_chunks, 1);
        assert_eq!(stats.reused_chunks, 5);
        assert_eq!(stats.bytes_added, 64);
        assert_eq!(store.stats().chunks, 7);
        assert_eq!(store.stats().bytes, 7 * 64);
    }

    #[test]
    fn repeated_chunk_within_one_snapshot_counts_once() {
        let store = ChunkStore::new(1 << 20);
        let s = snap(&params(vec![1.5; 64])); // four identical chunks
        let stats = store.insert_own(&s);
        assert_eq!((stats.new_chunks, stats.reused_chunks), (1, 3));
        assert_eq!(store.stats().bytes, 64);
        assert_eq!(store.assemble(&s.id).unwrap(), params(vec![1.5; 64]));
    }

    #[test]
    fn insert_chunk_rejects_a_wrong_hash_and_keeps_nothing() {
        let store = ChunkStore::new(1 << 20);
        let id = ChunkId::of(b"the right bytes");
        let err = store
            .insert_chunk(id, Bytes::from_static(b"other bytes"))
            .unwrap_err();
        match err {
            StoreError::HashMismatch { expected, actual } => {
                assert_eq!(expected, id);
                assert_eq!(actual, ChunkId::of(b"other bytes"));
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(!store.has_chunk(&id));
        assert!(!store.has_chunk(&ChunkId::of(b"other bytes")));
        assert_eq!(store.stats().chunks, 0);
        assert_eq!(store.stats().bytes, 0);
    }

    #[test]
    fn insert_chunk_reports_new_then_held() {
        let store = ChunkStore::new(1 << 20);
        let data = Bytes::from_static(b"some chunk");
        let id = ChunkId::of(&data);
        assert!(store.insert_chunk(id, data.clone()).unwrap());
        assert!(!store.insert_chunk(id, data.clone()).unwrap());
        assert_eq!(store.chunk(&id).unwrap(), data);
        assert_eq!(store.stats().bytes, data.len() as u64);
    }

    #[test]
    fn missing_lists_exactly_what_is_not_held_and_dedups() {
        let store = ChunkStore::new(1 << 20);
        // Chunks: [A, B, A, C, B] with values chosen so #0 == #2 and #1 == #4.
        let mut values = Vec::new();
        for v in [1.0f32, 2.0, 1.0, 3.0, 2.0] {
            values.extend(std::iter::repeat_n(v, 16));
        }
        let s = snap(&params(values));
        assert_eq!(s.chunks[0].id, s.chunks[2].id);
        assert_eq!(s.chunks[1].id, s.chunks[4].id);
        let all = store.missing(&s.manifest);
        assert_eq!(
            all,
            vec![
                (0, s.chunks[0].id),
                (1, s.chunks[1].id),
                (3, s.chunks[3].id)
            ]
        );
        store.insert_manifest(s.id, s.manifest.clone(), s.manifest_bytes.clone());
        store
            .insert_chunk(s.chunks[1].id, s.chunks[1].data.clone())
            .unwrap();
        assert_eq!(
            store.missing(&s.manifest),
            vec![(0, s.chunks[0].id), (3, s.chunks[3].id)]
        );
        assert!(matches!(
            store.assemble(&s.id),
            Err(StoreError::MissingChunk { index: 0, .. })
        ));
        store
            .insert_chunk(s.chunks[0].id, s.chunks[0].data.clone())
            .unwrap();
        store
            .insert_chunk(s.chunks[3].id, s.chunks[3].data.clone())
            .unwrap();
        assert!(store.missing(&s.manifest).is_empty());
    }

    #[test]
    fn assemble_round_trips_own_and_fetched_models() {
        let store = ChunkStore::new(1 << 20);
        let own = params((0..101).map(|i| i as f32 * 0.5 - 7.0).collect());
        let s = Snapshot::build(&own, 70).unwrap();
        store.insert_own(&s);
        assert_eq!(store.assemble(&s.id).unwrap(), own);

        let theirs = model(3.0, 3);
        let t = snap(&theirs);
        fetch_into(&store, &t);
        assert_eq!(store.assemble(&t.id).unwrap(), theirs);
        assert!(matches!(
            store.assemble(&ManifestId::of(b"unknown")),
            Err(StoreError::UnknownManifest { .. })
        ));
    }

    #[test]
    fn eviction_drops_oldest_unpinned_and_keeps_shared_chunks() {
        // Budget: 10 chunks of 64 bytes.
        let store = ChunkStore::new(640);
        let own = snap(&model(0.0, 4));
        store.insert_own(&own);
        // `a` shares its first two chunks (values 0 and 1) with our own model.
        let a_params = model(0.0, 4);
        let mut a_values = a_params.values().to_vec();
        a_values[32..].iter_mut().for_each(|v| *v += 100.0);
        let a = snap(&params(a_values));
        assert_eq!(a.chunks[..2], own.chunks[..2]);
        fetch_into(&store, &a); // 4 + 2 new = 6 chunks
        let b = snap(&model(200.0, 3)); // 9 chunks
        fetch_into(&store, &b);
        assert_eq!(store.stats().bytes, 9 * 64);
        let c = snap(&model(300.0, 3)); // would be 12 chunks: `a` (oldest) must go
        fetch_into(&store, &c);

        assert!(store.manifest(&a.id).is_none());
        assert!(store.manifest(&b.id).is_some());
        assert!(store.manifest(&c.id).is_some());
        assert!(holds_all(&store, &own), "pinned model evicted");
        assert!(holds_all(&store, &b));
        assert!(holds_all(&store, &c));
        // `a`'s own chunks went, the ones shared with our model stayed.
        assert!(!store.has_chunk(&a.chunks[2].id));
        assert!(!store.has_chunk(&a.chunks[3].id));
        let st = store.stats();
        assert_eq!(st.bytes, 10 * 64);
        assert!(st.bytes <= st.budget);
        assert_eq!(st.evicted_chunks, 2);
        assert_eq!(st.manifests, 3);
    }

    #[test]
    fn touch_changes_which_manifest_is_evicted() {
        let store = ChunkStore::new(6 * 64);
        let a = snap(&model(10.0, 3));
        let b = snap(&model(20.0, 3));
        fetch_into(&store, &a);
        fetch_into(&store, &b);
        store.touch(&a.id); // now `b` is the least recently used
        let c = snap(&model(30.0, 3));
        fetch_into(&store, &c);
        assert!(store.manifest(&a.id).is_some());
        assert!(store.manifest(&b.id).is_none());
        assert!(holds_all(&store, &a));
        assert!(holds_none(&store, &b));
        assert!(holds_all(&store, &c));
        assert!(store.stats().bytes <= 6 * 64);
    }

    #[test]
    fn without_touch_the_oldest_is_evicted() {
        let store = ChunkStore::new(6 * 64);
        let a = snap(&model(10.0, 3));
        let b = snap(&model(20.0, 3));
        fetch_into(&store, &a);
        fetch_into(&store, &b);
        let c = snap(&model(30.0, 3));
        fetch_into(&store, &c);
        assert!(store.manifest(&a.id).is_none());
        assert!(holds_none(&store, &a));
        assert!(holds_all(&store, &b));
    }

    #[test]
    fn pinned_own_model_is_never_evicted_even_over_budget() {
        let store = ChunkStore::new(2 * 64);
        let own = snap(&model(0.0, 4));
        store.insert_own(&own);
        assert!(holds_all(&store, &own));
        let other = snap(&model(50.0, 2));
        fetch_into(&store, &other);
        assert!(holds_all(&store, &own));
        assert!(store.manifest(&other.id).is_none());
        assert!(holds_none(&store, &other));
        let st = store.stats();
        assert_eq!((st.bytes, st.manifests), (4 * 64, 1));
    }

    #[test]
    fn previous_own_model_is_unpinned_and_evictable() {
        let store = ChunkStore::new(4 * 64);
        let first = snap(&model(0.0, 4));
        let second = snap(&model(10.0, 4));
        store.insert_own(&first);
        store.insert_own(&second);
        assert!(store.manifest(&first.id).is_none());
        assert!(holds_none(&store, &first));
        assert!(holds_all(&store, &second));
        assert_eq!(store.stats().bytes, 4 * 64);
    }

    #[test]
    fn chunks_with_no_manifest_are_evicted_first() {
        let store = ChunkStore::new(4 * 64);
        let a = snap(&model(10.0, 3));
        fetch_into(&store, &a);
        let stray = snap(&model(90.0, 1));
        store
            .insert_chunk(stray.chunks[0].id, stray.chunks[0].data.clone())
            .unwrap();
        assert_eq!(store.stats().bytes, 4 * 64);
        // One more referenced chunk: the stray one goes, `a` stays.
        let b = snap(&model(20.0, 1));
        fetch_into(&store, &b);
        assert!(!store.has_chunk(&stray.chunks[0].id));
        assert!(holds_all(&store, &a));
        assert!(holds_all(&store, &b));
        assert_eq!(store.stats().evicted_chunks, 1);
    }

    #[test]
    fn manifest_count_is_bounded() {
        let store = ChunkStore::new(u64::MAX);
        let own = snap(&model(-1.0, 1));
        store.insert_own(&own);
        let snaps: Vec<Snapshot> = (0..MAX_MANIFESTS + 5)
            .map(|i| snap(&model(i as f32 * 10.0, 1)))
            .collect();
        for s in &snaps {
            fetch_into(&store, s);
        }
        let st = store.stats();
        assert_eq!(st.manifests, MAX_MANIFESTS);
        assert!(store.manifest(&own.id).is_some());
        // The oldest six fetched manifests (and their chunks) made room.
        for s in &snaps[..6] {
            assert!(store.manifest(&s.id).is_none());
            assert!(holds_none(&store, s));
        }
        for s in &snaps[6..] {
            assert!(store.manifest(&s.id).is_some());
        }
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let store = ChunkStore::new(1 << 20);
        let s = snap(&model(0.0, 2));
        store.insert_own(&s);
        let handle = store.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = handle.inner.lock().unwrap();
            panic!("poison the store's lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(store.inner.is_poisoned());
        assert_eq!(store.chunk(&s.chunks[0].id).unwrap(), s.chunks[0].data);
        assert_eq!(store.assemble(&s.id).unwrap(), model(0.0, 2));
    }

    #[test]
    fn clones_share_contents_across_threads() {
        let store = ChunkStore::new(1 << 20);
        let snaps: Vec<Snapshot> = (0..4).map(|i| snap(&model(i as f32, 2))).collect();
        std::thread::scope(|scope| {
            for s in &snaps {
                let handle = store.clone();
                scope.spawn(move || fetch_into(&handle, s));
            }
        });
        for s in &snaps {
            assert!(store.missing(&s.manifest).is_empty());
            assert!(store.assemble(&s.id).is_ok());
        }
        assert!(format!("{store:?}").contains("manifests: 4"));
    }
}
