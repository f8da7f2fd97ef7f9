//! The DP side of private lookups (DESIGN.md section 7, docs/private-lookup.md): per-zone
//! PIR databases built at load and changed in place by the write path within an epoch
//! ([`ZonePirState::update`]), and the OPRF / key-upload / query exchanges carried in EDNS
//! option 65001 over TCP.
//!
//! Nothing here sees an identifier: requests hold blinded OPRF elements, evaluation keys and
//! encrypted queries; the only clear values are the zone, the epoch and the shard number.
//! Logs keep to those.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::name::Name;
use crate::pir::carrier::{ede, PirCfgRecord, Request, Response};
use crate::pir::{oprf, BuildOptions, PirError, Scheme, ZoneDb, ZoneKey};

/// What [`ZonePirState::update`] did.
pub type PirUpdate = crate::pir::UpdateReport;

/// `[pir]` settings of a DP config.
#[derive(Debug, Clone)]
pub struct PirSettings {
    /// The PIR scheme the zones' databases are built for (published in PIRCFG).
    pub scheme: Scheme,
    pub shards: u32,
    pub slot_size: usize,
    /// Threads computing PIR answers; DNS answers keep the rest of the machine.
    pub threads: usize,
    /// PIR queries waiting or running at once; more are refused with BUSY.
    pub max_queue: usize,
    /// Memory for clients' evaluation keys; least recently used keys go first.
    pub key_cache_bytes: usize,
    /// Probes (spill indexes per lookup) every zone publishes at least: headroom for
    /// identifiers that gain records within an epoch (more slots than the published probes
    /// need a new epoch). Each probe costs every lookup two PIR queries.
    pub min_probes: usize,
    /// PIR elements one batch query fetches (two per lookup; 0: single queries only).
    /// Respire only: the zone keeps three bucket copies of its table beside it.
    pub batch: usize,
}

impl Default for PirSettings {
    fn default() -> Self {
        PirSettings {
            // Per lookup about a tenth of MulPIR's bytes, at a similar server time
            // (docs/private-lookup.md).
            scheme: Scheme::Respire,
            shards: 1,
            slot_size: 256,
            threads: 1,
            max_queue: 8,
            key_cache_bytes: 512 << 20,
            min_probes: 1,
            batch: 0,
        }
    }
}

/// A zone's private-lookup database and the PIRCFG record that describes it.
pub struct ZonePir {
    pub db: ZoneDb,
    pub record: PirCfgRecord,
}

impl std::fmt::Debug for ZonePir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZonePir")
            .field("config", self.db.config())
            .finish_non_exhaustive()
    }
}

/// Epochs must differ between any two builds, also two in the same second.
fn next_epoch() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Builds a zone's database for a new epoch. `entries` are (OPRF input, SSI wire RDATAs);
/// the input is the owner name, which the DP knows for every mapping (an email owner holds
/// only a hash of the local part, so the SII itself is not available to the DP).
pub fn build_zone(
    origin: &Name,
    secret: &[u8],
    settings: &PirSettings,
    entries: Vec<(String, Vec<Vec<u8>>)>,
    children: Vec<Name>,
) -> Result<ZonePir, String> {
    let options = BuildOptions {
        shard_count: settings.shards,
        slot_size: settings.slot_size,
        min_probes: settings.min_probes,
        batch: settings.batch,
        ..BuildOptions::default()
    };
    let epoch = next_epoch();
    let count = entries.len();
    if count > 50_000 {
        info!(zone = %origin, identifiers = count, "building the private-lookup database");
    }
    let (db, report) = ZoneDb::build(settings.scheme, origin, secret, epoch, &options, entries)
        .map_err(|e| format!("private-lookup database of {origin}: {e}"))?;
    for (_, e) in &report.rejected {
        // The rejected identifier is the operator's own data; its name stays out of the log.
        warn!(zone = %origin, "an identifier was left out of the private-lookup database: {e}");
    }
    info!(
        zone = %origin,
        scheme = %settings.scheme,
        epoch,
        identifiers = report.identifiers,
        shards = settings.shards,
        memory_mib = report.memory_bytes >> 20,
        seconds = (report.oprf_time + report.table_time + report.pir_time).as_secs_f64(),
        "private-lookup database ready"
    );
    let record = PirCfgRecord {
        config: db.config().clone(),
        probes: u8::try_from(db.probes()).unwrap_or(u8::MAX),
        children,
    };
    Ok(ZonePir { db, record })
}

/// An error answer: RCODE plus extended DNS error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PirFailure {
    pub rcode: hickory_proto::op::ResponseCode,
    pub code: u16,
    pub text: String,
}

fn fail(rcode: hickory_proto::op::ResponseCode, code: u16, text: impl Into<String>) -> PirFailure {
    PirFailure {
        rcode,
        code,
        text: text.into(),
    }
}

type KeyId = (Box<[u8]>, u64, [u8; 16]);

struct Pending {
    chunks: Vec<Option<Vec<u8>>>,
    received: u16,
    bytes: usize,
    started: Instant,
}

/// Evaluation keys by (zone, epoch, key id), bounded by memory.
struct KeyCache {
    lru: LruCache<KeyId, (Arc<ZoneKey>, usize)>,
    bytes: usize,
    limit: usize,
}

impl KeyCache {
    fn insert(&mut self, id: KeyId, key: Arc<ZoneKey>, size: usize) {
        if let Some((_, old)) = self.lru.put(id, (key, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > self.limit {
            match self.lru.pop_lru() {
                Some((_, (_, s))) => self.bytes -= s,
                None => break,
            }
        }
    }
}

/// Uploads in progress at most, and how long one may take.
const MAX_PENDING: usize = 64;
const PENDING_TIMEOUT: Duration = Duration::from_secs(120);

/// What a private-lookup request counts against the client's access class (DESIGN
/// section 10): one per identifier in an OPRF request, one per PIR query; evaluation-key
/// uploads are free (the key cache bounds them). A request that does not parse costs
/// nothing: it is refused anyway.
pub fn lookup_cost(request: &Request) -> u64 {
    match request {
        Request::Oprf { blinded, .. } => oprf::request_count(blinded).map_or(0, |n| n as u64),
        Request::Query { .. } | Request::Replica { .. } => 1,
        Request::Key { .. } => 0,
    }
}

/// Shared state of the private-lookup service of one DP.
pub struct PirService {
    settings: PirSettings,
    keys: Mutex<KeyCache>,
    pending: Mutex<HashMap<KeyId, Pending>>,
    pool: rayon::ThreadPool,
    queue: Arc<Semaphore>,
    pub stats: PirStats,
}

/// The private-lookup work done (`/metrics`).
#[derive(Debug, Default)]
pub struct PirStats {
    /// Identifiers evaluated under the OPRF.
    pub oprf_inputs: AtomicU64,
    /// Evaluation keys received whole and accepted.
    pub keys_accepted: AtomicU64,
    /// PIR queries answered, and refused because the workers' queue was full.
    pub queries: AtomicU64,
    pub busy: AtomicU64,
    /// A worker's time on one PIR query.
    pub query_work: crate::metrics::Latency,
}

impl PirService {
    /// PIR queries queued or being answered now.
    pub fn queued(&self) -> usize {
        self.settings
            .max_queue
            .max(1)
            .saturating_sub(self.queue.available_permits())
    }

    /// Bytes of evaluation keys held.
    pub fn key_bytes(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

impl std::fmt::Debug for PirService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PirService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PirService {
    pub fn new(settings: PirSettings) -> Result<PirService, String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads.max(1))
            .thread_name(|i| format!("mimi-pir-{i}"))
            .build()
            .map_err(|e| format!("cannot start PIR workers: {e}"))?;
        Ok(PirService {
            keys: Mutex::new(KeyCache {
                lru: LruCache::new(NonZeroUsize::MIN.saturating_add(4095)),
                bytes: 0,
                limit: settings.key_cache_bytes,
            }),
            pending: Mutex::new(HashMap::new()),
            queue: Arc::new(Semaphore::new(settings.max_queue.max(1))),
            pool,
            settings,
            stats: PirStats::default(),
        })
    }

    /// Serves one request for `zone` (its cost already charged to the client's access
    /// class: [`lookup_cost`]).
    pub async fn handle(
        &self,
        zone: &Arc<ZonePirState>,
        request: Request,
    ) -> Result<Response, PirFailure> {
        use hickory_proto::op::ResponseCode as R;
        let pir = &zone.pir;
        let epoch = pir.db.config().epoch;
        if request.epoch() != epoch {
            return Err(fail(
                R::ServFail,
                ede::WRONG_EPOCH,
                format!("the zone is at epoch {epoch}: fetch PIRCFG again"),
            ));
        }
        match request {
            Request::Oprf { blinded, .. } => {
                let n = oprf::request_count(&blinded)
                    .map_err(|e| fail(R::FormErr, ede::BAD_REQUEST, e.to_string()))?;
                self.stats
                    .oprf_inputs
                    .fetch_add(n as u64, Ordering::Relaxed);
                pir.db
                    .oprf_evaluate(&blinded)
                    .map(Response::Oprf)
                    .map_err(|e| fail(R::FormErr, ede::BAD_REQUEST, e.to_string()))
            }
            Request::Key {
                key_id,
                index,
                count,
                bytes,
                ..
            } => {
                self.key_chunk(zone, epoch, key_id, index, count, bytes)
                    .await
            }
            Request::Replica { .. } => Err(fail(
                R::FormErr,
                ede::BAD_REQUEST,
                "replica requests ask for type SLOTS (65285)",
            )),
            Request::Query {
                key_id,
                shard,
                query,
                ..
            } => {
                let id = (Box::from(zone.origin.as_wire()), epoch, key_id);
                let key = {
                    let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                    keys.lru.get(&id).map(|(k, _)| k.clone())
                };
                let Some(key) = key else {
                    return Err(fail(
                        R::ServFail,
                        ede::UNKNOWN_KEY,
                        "unknown or evicted evaluation key: upload it again",
                    ));
                };
                let Ok(permit) = self.queue.clone().try_acquire_owned() else {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(fail(
                        R::ServFail,
                        ede::BUSY,
                        "PIR workers busy; try again shortly",
                    ));
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let zone = zone.clone();
                self.pool.spawn(move || {
                    let started = Instant::now();
                    let result = zone.pir.db.answer(shard, &key, &query);
                    drop(permit);
                    let _ = tx.send((result, started.elapsed()));
                });
                match rx.await {
                    Ok((result, work)) => {
                        self.stats.query_work.observe(work);
                        self.stats.queries.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Ok(answer) => Ok(Response::Query(answer)),
                            Err(e) => Err(fail(R::FormErr, ede::BAD_REQUEST, e.to_string())),
                        }
                    }
                    Err(_) => Err(fail(R::ServFail, ede::BUSY, "PIR worker stopped")),
                }
            }
        }
    }

    async fn key_chunk(
        &self,
        zone: &Arc<ZonePirState>,
        epoch: u64,
        key_id: [u8; 16],
        index: u16,
        count: u16,
        bytes: Vec<u8>,
    ) -> Result<Response, PirFailure> {
        use hickory_proto::op::ResponseCode as R;
        let id: KeyId = (Box::from(zone.origin.as_wire()), epoch, key_id);
        let complete = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            pending.retain(|_, p| now.duration_since(p.started) < PENDING_TIMEOUT);
            if !pending.contains_key(&id) && pending.len() >= MAX_PENDING {
                return Err(fail(
                    R::ServFail,
                    ede::BUSY,
                    "too many key uploads in progress; try again shortly",
                ));
            }
            let p = pending.entry(id.clone()).or_insert_with(|| Pending {
                chunks: vec![None; usize::from(count)],
                received: 0,
                bytes: 0,
                started: now,
            });
            if p.chunks.len() != usize::from(count) {
                return Err(fail(
                    R::FormErr,
                    ede::BAD_REQUEST,
                    "chunk count changed during the upload",
                ));
            }
            let slot = &mut p.chunks[usize::from(index)];
            if slot.is_none() {
                p.received += 1;
                p.bytes += bytes.len();
                *slot = Some(bytes);
            }
            if p.bytes > 64 << 20 {
                pending.remove(&id);
                return Err(fail(
                    R::FormErr,
                    ede::BAD_REQUEST,
                    "evaluation key larger than 64 MiB",
                ));
            }
            if p.received < count {
                return Ok(Response::Key {
                    received: p.received,
                    complete: false,
                });
            }
            let p = pending.remove(&id);
            p.map(|p| {
                p.chunks
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect::<Vec<u8>>()
            })
        };
        let Some(key_bytes) = complete else {
            return Err(fail(
                R::ServFail,
                ede::BUSY,
                "upload state lost; upload again",
            ));
        };
        let zone = zone.clone();
        let parsed = tokio::task::spawn_blocking(move || zone.pir.db.parse_key(&key_bytes))
            .await
            .map_err(|_| fail(R::ServFail, ede::BUSY, "key parser stopped"))?
            .map_err(|e| {
                fail(
                    R::FormErr,
                    ede::BAD_REQUEST,
                    format!("evaluation key rejected: {e}"),
                )
            })?;
        let size = ZoneDb::key_memory_bytes(&parsed);
        self.stats.keys_accepted.fetch_add(1, Ordering::Relaxed);
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(parsed), size);
        Ok(Response::Key {
            received: count,
            complete: true,
        })
    }
}

/// A zone's private-lookup state as the handler sees it.
#[derive(Debug)]
pub struct ZonePirState {
    pub origin: Name,
    pub pir: ZonePir,
    /// The zone serial whose content the database reflects: set after each update (which
    /// follows its commit by milliseconds), so a replica holder told of serial S by NOTIFY
    /// knows whether a delta already carries S.
    zone_serial: AtomicU32,
}

impl ZonePirState {
    /// The state of a database built from the zone at `zone_serial`.
    pub fn new(origin: Name, pir: ZonePir, zone_serial: u32) -> ZonePirState {
        ZonePirState {
            origin,
            pir,
            zone_serial: AtomicU32::new(zone_serial),
        }
    }

    pub fn zone_serial(&self) -> u32 {
        self.zone_serial.load(Ordering::Acquire)
    }

    /// Records that the database now reflects the zone at `serial` (after the update that
    /// brought it there, never before).
    pub fn reflects(&self, serial: u32) {
        self.zone_serial.store(serial, Ordering::Release);
    }

    /// Replaces the records of these OPRF inputs (owner names, as [`build_zone`] takes them;
    /// only owners this zone's database holds, not those below a delegation) in the current
    /// epoch: each change carries all current SSI wire RDATAs of its owner, `Vec::new()`
    /// removes the owner. All changes apply or none do. PIRCFG does not change (same epoch,
    /// same probes), so clients keep their configuration and evaluation keys.
    ///
    /// For the zone's single writer, from a blocking thread (it takes milliseconds: OPRF
    /// evaluations, sealing, re-encoding a few PIR plaintexts). PIR queries keep being served
    /// meanwhile from the same database: each query reads one whole snapshot of its shard,
    /// old or new, taken without a lock, and the update publishes its re-encoded plaintexts
    /// with one pointer swap per shard, so neither waits for the other (details at
    /// [`ZonePirDb::update`]).
    ///
    /// [`PirError::NeedsRebuild`] means the change does not fit this epoch (a shard full, a
    /// cuckoo insertion out of evictions, an owner needing more slots than the published
    /// probes): nothing was applied and the old content is still served; build a new epoch
    /// with [`build_zone`] from the full current content and swap it in when ready. Treat
    /// any other error the same way.
    pub fn update(&self, changes: Vec<(String, Vec<Vec<u8>>)>) -> Result<PirUpdate, PirError> {
        let count = changes.len();
        match self.pir.db.update(changes) {
            Ok(report) => {
                for (_, e) in &report.rejected {
                    // As at a build: the owner name stays out of the log.
                    warn!(zone = %self.origin, "an identifier was left out of the private-lookup database: {e}");
                }
                debug!(
                    zone = %self.origin,
                    epoch = self.pir.db.config().epoch,
                    changes = count,
                    buckets = report.buckets_touched,
                    plaintexts = report.plaintexts_reencoded,
                    evictions = report.evictions,
                    ms = report.elapsed.as_secs_f64() * 1e3,
                    "private-lookup database updated"
                );
                Ok(report)
            }
            Err(e) => {
                info!(zone = %self.origin, epoch = self.pir.db.config().epoch, "private-lookup update needs a new epoch: {e}");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pir::{PirConfig, RebuildReason, ZoneClient};

    fn lookup(state: &ZonePirState, input: &str) -> Vec<Vec<u8>> {
        let db = &state.pir.db;
        let config = PirConfig::from_wire(&state.pir.record.config.to_wire()).unwrap();
        let (client, key) = ZoneClient::new(config).unwrap();
        let key = db.parse_key(&key).unwrap();
        let (st, req) = oprf::blind(&[input.as_bytes()]).unwrap();
        let y = st
            .finalize(
                &db.oprf_evaluate(&req).unwrap(),
                &db.config().oprf_public_key,
            )
            .unwrap()[0];
        let probes = u32::from(state.pir.record.probes);
        client
            .lookup_with(&y, probes, |shard, q| db.answer(shard, &key, q))
            .unwrap()
    }

    #[test]
    fn updates_reach_private_lookups_in_the_same_epoch() {
        for scheme in Scheme::built_schemes() {
            updates_reach_private_lookups(scheme);
        }
    }

    fn updates_reach_private_lookups(scheme: Scheme) {
        let origin = Name::parse("5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let settings = PirSettings {
            scheme,
            min_probes: 2,
            ..PirSettings::default()
        };
        let entries: Vec<(String, Vec<Vec<u8>>)> = (0..60u8)
            .map(|i| (format!("{i}.owner."), vec![vec![i; 120]]))
            .collect();
        // Slot positions depend on the epoch (the clock): in a table this small the cuckoo
        // insertion can fail, which asks for a new epoch - a legitimate outcome, so a few
        // epochs are tried for the in-place path this test is about.
        let mut attempt = 0;
        let (state, pircfg, report) = loop {
            attempt += 1;
            let pir =
                build_zone(&origin, &[7u8; 32], &settings, entries.clone(), Vec::new()).unwrap();
            assert_eq!(pir.record.probes, 2);
            assert_eq!(pir.record.config.scheme, scheme.id());
            let state = ZonePirState::new(origin.clone(), pir, 1);
            let pircfg = state.pir.record.encode();
            match state.update(vec![
                ("new.owner.".into(), vec![vec![1u8; 150], vec![2u8; 100]]),
                ("3.owner.".into(), Vec::new()),
                ("4.owner.".into(), vec![vec![44u8; 90]]),
            ]) {
                Ok(report) => break (state, pircfg, report),
                Err(PirError::NeedsRebuild(_)) if attempt < 8 => continue,
                Err(e) => panic!("{scheme}: update failed in {attempt} epochs: {e}"),
            }
        };
        assert_eq!((report.added, report.removed, report.replaced), (1, 1, 1));
        // Same PIRCFG: clients keep their configuration and keys.
        assert_eq!(state.pir.record.encode(), pircfg);
        assert_eq!(
            lookup(&state, "new.owner."),
            vec![vec![1u8; 150], vec![2u8; 100]]
        );
        assert!(lookup(&state, "3.owner.").is_empty());
        assert_eq!(lookup(&state, "4.owner."), vec![vec![44u8; 90]]);
        assert_eq!(lookup(&state, "5.owner."), vec![vec![5u8; 120]]);
        // More slots than the published probes: a new epoch is needed, nothing changes.
        let err = state
            .update(vec![("5.owner.".into(), vec![vec![9u8; 150]; 3])])
            .unwrap_err();
        assert!(matches!(
            err,
            PirError::NeedsRebuild(RebuildReason::TooManySlots { .. })
        ));
        assert_eq!(lookup(&state, "5.owner."), vec![vec![5u8; 120]]);
    }
}
