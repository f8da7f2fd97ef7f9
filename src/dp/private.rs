//! The DP side of private lookups (DESIGN.md section 7, docs/private-lookup.md): per-zone
//! PIR databases built at load, and the OPRF / key-upload / query exchanges carried in
//! EDNS option 65001 over TCP.
//!
//! Nothing here sees an identifier: requests hold blinded OPRF elements, evaluation keys and
//! encrypted queries; the only clear values are the zone, the epoch and the shard number.
//! Logs keep to those.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::ratelimit::{Rate, RateLimiter};
use crate::name::Name;
use crate::pir::carrier::{ede, PirCfgRecord, Request, Response};
use crate::pir::{oprf, BuildOptions, MulPir, MulPirKey, PirServer, ZonePirDb};

/// `[pir]` settings of a DP config.
#[derive(Debug, Clone)]
pub struct PirSettings {
    pub shards: u32,
    pub slot_size: usize,
    /// Threads computing PIR answers; DNS answers keep the rest of the machine.
    pub threads: usize,
    /// PIR queries waiting or running at once; more are refused with BUSY.
    pub max_queue: usize,
    pub oprf_rate: Rate,
    pub query_rate: Rate,
    /// Memory for clients' evaluation keys; least recently used keys go first.
    pub key_cache_bytes: usize,
}

impl Default for PirSettings {
    fn default() -> Self {
        PirSettings {
            shards: 1,
            slot_size: 256,
            threads: 1,
            max_queue: 8,
            // A contact sync of a few hundred numbers a day passes; enumerating a number
            // block of 10,000 takes a single client days.
            oprf_rate: Rate {
                burst: 500.0,
                per_hour: 200.0,
            },
            query_rate: Rate {
                burst: 2000.0,
                per_hour: 800.0,
            },
            key_cache_bytes: 512 << 20,
        }
    }
}

/// A zone's private-lookup database and the PIRCFG record that describes it.
pub struct ZonePir {
    pub db: ZonePirDb<MulPir>,
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
        ..BuildOptions::default()
    };
    let epoch = next_epoch();
    let count = entries.len();
    if count > 50_000 {
        info!(zone = %origin, identifiers = count, "building the private-lookup database");
    }
    let (db, report) = ZonePirDb::<MulPir>::build(origin, secret, epoch, &options, entries)
        .map_err(|e| format!("private-lookup database of {origin}: {e}"))?;
    for (_, e) in &report.rejected {
        // The rejected identifier is the operator's own data; its name stays out of the log.
        warn!(zone = %origin, "an identifier was left out of the private-lookup database: {e}");
    }
    info!(
        zone = %origin,
        epoch,
        identifiers = report.identifiers,
        shards = settings.shards,
        memory_mib = report.memory_bytes >> 20,
        seconds = (report.oprf_time + report.table_time + report.pir_time).as_secs_f64(),
        "private-lookup database ready"
    );
    let record = PirCfgRecord {
        config: db.config().clone(),
        probes: u8::try_from(report.max_slots.max(1)).unwrap_or(u8::MAX),
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
    lru: LruCache<KeyId, (Arc<MulPirKey>, usize)>,
    bytes: usize,
    limit: usize,
}

impl KeyCache {
    fn insert(&mut self, id: KeyId, key: Arc<MulPirKey>, size: usize) {
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

/// Shared state of the private-lookup service of one DP.
pub struct PirService {
    settings: PirSettings,
    oprf_limit: RateLimiter,
    query_limit: RateLimiter,
    keys: Mutex<KeyCache>,
    pending: Mutex<HashMap<KeyId, Pending>>,
    pool: rayon::ThreadPool,
    queue: Arc<Semaphore>,
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
            oprf_limit: RateLimiter::new(settings.oprf_rate),
            query_limit: RateLimiter::new(settings.query_rate),
            keys: Mutex::new(KeyCache {
                lru: LruCache::new(NonZeroUsize::MIN.saturating_add(4095)),
                bytes: 0,
                limit: settings.key_cache_bytes,
            }),
            pending: Mutex::new(HashMap::new()),
            queue: Arc::new(Semaphore::new(settings.max_queue.max(1))),
            pool,
            settings,
        })
    }

    /// Serves one request for `zone` from `src`.
    pub async fn handle(
        &self,
        zone: &Arc<ZonePirState>,
        src: IpAddr,
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
        let now = Instant::now();
        match request {
            Request::Oprf { blinded, .. } => {
                let n = oprf::request_count(&blinded)
                    .map_err(|e| fail(R::FormErr, ede::BAD_REQUEST, e.to_string()))?;
                if !self.oprf_limit.allow(src, n as f64, now) {
                    debug!(zone = %zone.origin, "OPRF rate limit reached by a client");
                    return Err(fail(
                        R::Refused,
                        ede::RATE_LIMITED,
                        "OPRF evaluation rate limit reached; try later",
                    ));
                }
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
            Request::Query {
                key_id,
                shard,
                query,
                ..
            } => {
                if !self.query_limit.allow(src, 1.0, now) {
                    debug!(zone = %zone.origin, "PIR query rate limit reached by a client");
                    return Err(fail(
                        R::Refused,
                        ede::RATE_LIMITED,
                        "PIR query rate limit reached; try later",
                    ));
                }
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
                    return Err(fail(
                        R::ServFail,
                        ede::BUSY,
                        "PIR workers busy; try again shortly",
                    ));
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let zone = zone.clone();
                self.pool.spawn(move || {
                    let result = zone.pir.db.answer(shard, &key, &query);
                    drop(permit);
                    let _ = tx.send(result);
                });
                match rx.await {
                    Ok(Ok(answer)) => Ok(Response::Query(answer)),
                    Ok(Err(e)) => Err(fail(R::FormErr, ede::BAD_REQUEST, e.to_string())),
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
        let size = <crate::pir::MulPirServer as PirServer>::key_memory_bytes(&parsed);
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
}

impl ZonePirState {
    /// Placeholder until incremental updates land: every change asks for a new epoch.
    pub fn update(&self, _changes: Vec<(String, Vec<Vec<u8>>)>) -> Result<(), String> {
        Err("incremental updates are not available".into())
    }
}
