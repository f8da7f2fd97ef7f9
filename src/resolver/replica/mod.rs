//! Encrypted replicas held by the resolver (DESIGN.md section 11, docs/private-lookup.md
//! "Encrypted replicas"): for the zones `[replica]` names, a copy of the DP's slot tables
//! on disk, memory-mapped, kept current with deltas (on the DP's NOTIFY, and every
//! `poll_secs`), so a private lookup there costs the DP one OPRF evaluation and no PIR.
//!
//! The tables are AEAD ciphertexts under keys only the DP's rate-limited OPRF yields: a
//! replica tells its holder nothing that as many OPRF evaluations would not.

pub mod file;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{RData, RecordType};
use thiserror::Error;
use tracing::{debug, info, warn};

use self::file::{ReplicaFileError, ShardFile};
use super::transport::{Connection, ExchangeError};
use super::Resolver;
use crate::changes::SERIAL_OPTION;
use crate::name::Name;
use crate::pir::carrier::{self, ede, Request};
use crate::pir::oprf::OprfOutput;
use crate::pir::replica::{Mode, RunHeader, SlotsRecord};
use crate::pir::zone::{PirConfig, Probe};
use crate::pir::{db, Chunk, PirError};
use crate::record::TYPE_SLOTS;
use crate::tsig::TsigMac;

/// A replica not brought up to date for this many polls is not used for lookups.
const STALE_POLLS: u32 = 3;

/// How long one message of a run may take to arrive.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// After a NOTIFY for serial S, how often and how many times to ask again while the DP's
/// table does not reflect S yet (it is updated just after the commit).
const CATCH_UP_PAUSE: Duration = Duration::from_millis(50);
const CATCH_UP_TRIES: u32 = 60;

/// `[replica]` of the resolver's config.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// Where the replicas live (one directory per zone).
    pub dir: PathBuf,
    /// Disk for all replicas together; a zone that does not fit uses PIR.
    pub max_bytes: u64,
    /// Zones to replicate by name.
    pub zones: Vec<Name>,
    /// And every zone whose table has at least this many slots (all shards).
    pub min_slots: Option<u64>,
    /// Ask every replicated zone's DP for a delta this often (NOTIFY makes it sooner).
    pub poll: Duration,
}

impl ReplicaSettings {
    /// Whether a zone with this config is to be replicated.
    pub fn wants(&self, zone: &Name, config: &PirConfig) -> bool {
        let slots = u64::from(config.shard_count)
            * u64::from(config.buckets)
            * u64::from(config.bucket_slots);
        self.zones.contains(zone) || self.min_slots.is_some_and(|m| slots >= m)
    }
}

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error("the resolver's config has no [replica] section")]
    NotConfigured,
    #[error("zone {zone} offers no private lookups here: {reason}")]
    NoZone { zone: Name, reason: String },
    #[error("zone {zone}: a replica of {need} bytes does not fit [replica] max_mib ({used} of {max} bytes in use)")]
    TooBig {
        zone: Name,
        need: u64,
        used: u64,
        max: u64,
    },
    #[error(transparent)]
    File(#[from] ReplicaFileError),
    #[error("replica of {zone} from {server}: {source}")]
    Exchange {
        zone: Name,
        server: SocketAddr,
        #[source]
        source: ExchangeError,
    },
    #[error("{server} refused the replica of {zone}: {rcode} ({text})")]
    Refused {
        zone: Name,
        server: SocketAddr,
        rcode: ResponseCode,
        text: String,
    },
    #[error("zone {zone} moved to a new epoch: fetch PIRCFG and download again")]
    EpochChanged { zone: Name },
    #[error("replica of {zone}: a delta from serial {from} for a replica at {at:?}")]
    Gap {
        zone: Name,
        from: u32,
        at: Option<u32>,
    },
    #[error("replica of {zone} from {server}: {reason}")]
    Malformed {
        zone: Name,
        server: SocketAddr,
        reason: String,
    },
    #[error("replica of {zone}: {0}", zone = .1)]
    Pir(PirError, Name),
    #[error(transparent)]
    Resolve(#[from] Box<super::ResolveError>),
}

/// Counters of the replicas.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Whole tables received (a shard each).
    pub full_runs: AtomicU64,
    pub delta_runs: AtomicU64,
    pub buckets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Private lookups answered from a replica.
    pub lookups: AtomicU64,
    pub failures: AtomicU64,
}

/// One zone's replica: every shard of one epoch.
pub struct ZoneReplica {
    pub zone: Name,
    pub config: PirConfig,
    /// The DP it came from, asked for the deltas.
    server: IpAddr,
    shards: Vec<ArcSwap<ShardFile>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Counts the changes applied; an answer read before a change is not cached after it.
    generation: AtomicU64,
    /// When the DP last brought it up to date (a download, a delta, an empty delta).
    synced: Mutex<Instant>,
}

impl std::fmt::Debug for ZoneReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneReplica")
            .field("zone", &self.zone)
            .field("epoch", &self.config.epoch)
            .finish_non_exhaustive()
    }
}

/// What a replica lookup found: the record stream and where it lay.
pub struct ReplicaHit {
    pub records: Vec<Vec<u8>>,
    pub shard: u32,
    pub buckets: Vec<u32>,
}

impl ZoneReplica {
    /// Opens the slots of the identifier whose OPRF output is `y`, locally.
    pub fn lookup(&self, y: &OprfOutput) -> Result<ReplicaHit, PirError> {
        let layout = self.config.layout();
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut buckets = Vec::new();
        let mut shard = 0;
        for index in 0..db::MAX_SPILL as u32 {
            let probe = Probe::new(&self.config, y, index);
            shard = probe.shard;
            let file = self
                .shards
                .get(probe.shard as usize)
                .ok_or(PirError::NoSuchShard {
                    shard: probe.shard,
                    count: self.shards.len() as u32,
                })?
                .load();
            let (a, b) = file
                .read_pair(probe.buckets[0], probe.buckets[1])
                .ok_or_else(|| PirError::malformed("replica", "bucket outside the table"))?;
            buckets.extend(probe.buckets);
            match probe.open(&layout, [&a, &b])? {
                None if index == 0 => break,
                None => {
                    return Err(PirError::malformed(
                        "record stream",
                        format!("spill index {index} is missing"),
                    ))
                }
                Some(chunk) => {
                    let more = chunk.more_after(index);
                    chunks.push(chunk);
                    if !more {
                        break;
                    }
                }
            }
        }
        let records = if chunks.is_empty() {
            Vec::new()
        } else {
            db::assemble(&chunks)?
        };
        Ok(ReplicaHit {
            records,
            shard,
            buckets,
        })
    }

    /// Changes applied so far (see [`Resolver::lookup_private_batch`]'s cache).
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// How long since the DP last brought it up to date.
    pub fn age(&self) -> Duration {
        self.synced
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX)
    }
}

enum Held {
    Ready(Arc<ZoneReplica>),
    /// A download is under way.
    Busy,
}

/// The replicas of one resolver.
#[derive(Default)]
pub struct Replicas {
    settings: Option<ReplicaSettings>,
    zones: Mutex<HashMap<Name, Held>>,
    /// Zones seen in lookups that should be replicated and are not (yet): the maintenance
    /// task downloads them.
    wanted: Mutex<BTreeSet<Name>>,
    wake: tokio::sync::Notify,
    pub stats: ReplicaStats,
}

impl Replicas {
    pub fn new(settings: Option<ReplicaSettings>) -> Replicas {
        Replicas {
            settings,
            ..Replicas::default()
        }
    }

    pub fn settings(&self) -> Option<&ReplicaSettings> {
        self.settings.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Name, Held>> {
        self.zones.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ready replica of `zone` for exactly this config (epoch); when the zone should
    /// have one and has none, it is noted for the maintenance task.
    pub fn for_lookup(&self, zone: &Name, config: &PirConfig) -> Option<Arc<ZoneReplica>> {
        let settings = self.settings.as_ref()?;
        if let Some(Held::Ready(r)) = self.lock().get(zone) {
            // A copy its DP has not brought up to date for STALE_POLLS polls may miss
            // changes: PIR answers meanwhile (the next successful refresh restores it).
            if r.config == *config && r.age() <= settings.poll * STALE_POLLS {
                return Some(r.clone());
            }
        }
        if settings.wants(zone, config) {
            let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            if wanted.insert(zone.clone()) {
                self.wake.notify_one();
            }
        }
        None
    }

    /// The replica of `zone`, if one is ready.
    pub fn get(&self, zone: &Name) -> Option<Arc<ZoneReplica>> {
        match self.lock().get(zone) {
            Some(Held::Ready(r)) => Some(r.clone()),
            _ => None,
        }
    }

    /// Each ready replica: (zone, bytes on disk, serial of its first shard).
    pub fn sizes(&self) -> Vec<(Name, u64, u32)> {
        let mut out: Vec<(Name, u64, u32)> = self
            .lock()
            .iter()
            .filter_map(|(z, h)| match h {
                Held::Ready(r) => {
                    let bytes = u64::from(r.config.shard_count) * file::file_bytes(&r.config);
                    let serial = r.shards.first().map_or(0, |s| s.load().serial());
                    Some((z.clone(), bytes, serial))
                }
                Held::Busy => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Bytes the ready replicas take, without `except`'s.
    fn used_bytes(&self, except: &Name) -> u64 {
        self.lock()
            .iter()
            .filter(|(z, _)| *z != except)
            .map(|(_, h)| match h {
                Held::Ready(r) => u64::from(r.config.shard_count) * file::file_bytes(&r.config),
                Held::Busy => 0,
            })
            .sum()
    }
}

/// The directory of a zone's replica files.
fn zone_dir(settings: &ReplicaSettings, zone: &Name) -> PathBuf {
    let text = zone.to_string();
    let name = text.trim_end_matches('.');
    settings
        .dir
        .join(if name.is_empty() { "root" } else { name })
}

/// Where a ready run's buckets go.
type Sink<'a> = &'a mut (dyn FnMut(&RunHeader, &[(u32, &[u8])]) -> Result<(), ReplicaError> + Send);

/// A shard file being brought up to date, and whether lookups read it meanwhile.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// Not served yet (a download, a file reopened from disk): runs are written as they
    /// arrive.
    Building(&'a ShardFile),
    /// Served: a delta is written under one lock once it is whole, so no lookup sees half
    /// of it (a slot moved between buckets in neither); a whole table goes to a new file
    /// that replaces the served one when complete.
    Serving(&'a ShardFile),
}

/// What bringing a shard up to date did.
struct Synced {
    /// Buckets the deltas changed (every bucket when a whole table came instead).
    changed: BTreeSet<u32>,
    /// A new file holding the whole table, to serve instead of the old one.
    replacement: Option<ShardFile>,
}

impl Resolver {
    /// Downloads (or reopens from disk and brings up to date) the replica of `zone`: walks
    /// the tree to the zone for its PIRCFG and servers, then asks them for every shard.
    pub async fn replicate(&self, zone: &Name) -> Result<Arc<ZoneReplica>, ReplicaError> {
        let settings = self
            .replicas
            .settings
            .clone()
            .ok_or(ReplicaError::NotConfigured)?;
        let mut walk = super::Walk {
            queries: 0,
            referrals: 0,
            resolving: Vec::new(),
        };
        let (delegation, cfg) = match self
            .find_private_zone(zone, &mut walk)
            .await
            .map_err(Box::new)?
        {
            Ok((d, c)) if d.zone == *zone => (d, c),
            Ok((d, _)) => {
                return Err(ReplicaError::NoZone {
                    zone: zone.clone(),
                    reason: format!("the name lies in zone {}", d.zone),
                })
            }
            Err(nf) => {
                return Err(ReplicaError::NoZone {
                    zone: zone.clone(),
                    reason: format!("{nf:?}"),
                })
            }
        };
        {
            let mut zones = self.replicas.lock();
            if let Some(Held::Ready(r)) = zones.get(zone) {
                if r.config == cfg.config {
                    return Ok(r.clone());
                }
            }
            if matches!(zones.get(zone), Some(Held::Busy)) {
                return Err(ReplicaError::NoZone {
                    zone: zone.clone(),
                    reason: "a download is already under way".into(),
                });
            }
            zones.insert(zone.clone(), Held::Busy);
        }
        let mut last = None;
        let mut result = None;
        'servers: for (ns, glue) in &delegation.servers {
            let addrs = if glue.is_empty() {
                match self.addresses_of(ns, &delegation, &mut walk).await {
                    Ok(a) => a,
                    Err(e) => {
                        last = Some(ReplicaError::Resolve(Box::new(e)));
                        continue;
                    }
                }
            } else {
                glue.clone()
            };
            for ip in addrs {
                match self.download(&settings, zone, &cfg.config, ip).await {
                    Ok(r) => {
                        result = Some(r);
                        break 'servers;
                    }
                    Err(e) => {
                        warn!(%zone, server = %ip, "replica download failed: {e}");
                        last = Some(e);
                    }
                }
            }
        }
        let mut zones = self.replicas.lock();
        match result {
            Some(r) => {
                zones.insert(zone.clone(), Held::Ready(r.clone()));
                drop(zones);
                self.private_cache.drop_zone(zone);
                self.replicas
                    .wanted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(zone);
                Ok(r)
            }
            None => {
                zones.remove(zone);
                self.replicas.stats.failures.fetch_add(1, Relaxed);
                Err(last.unwrap_or_else(|| ReplicaError::NoZone {
                    zone: zone.clone(),
                    reason: "no server to ask".into(),
                }))
            }
        }
    }

    /// Every shard of `zone` from the DP at `ip`, each reopened from disk when a complete
    /// file of this epoch is there, then brought up to date with a delta.
    async fn download(
        &self,
        settings: &ReplicaSettings,
        zone: &Name,
        config: &PirConfig,
        ip: IpAddr,
    ) -> Result<Arc<ZoneReplica>, ReplicaError> {
        let need = u64::from(config.shard_count) * file::file_bytes(config);
        let used = self.replicas.used_bytes(zone);
        if used + need > settings.max_bytes {
            return Err(ReplicaError::TooBig {
                zone: zone.clone(),
                need,
                used,
                max: settings.max_bytes,
            });
        }
        let dir = zone_dir(settings, zone);
        std::fs::create_dir_all(&dir).map_err(|source| ReplicaFileError::Io {
            path: dir.clone(),
            source,
        })?;
        let started = Instant::now();
        let mut shards = Vec::with_capacity(config.shard_count as usize);
        let mut keep = BTreeSet::new();
        for shard in 0..config.shard_count {
            let path = dir.join(format!("{}-{shard}.slots", config.epoch));
            keep.insert(path.clone());
            let file = match ShardFile::open(&path, zone, config, shard) {
                Ok(f) => {
                    debug!(%zone, shard, serial = f.serial(), "replica reopened from disk");
                    self.sync_shard(
                        zone,
                        config,
                        ip,
                        Target::Building(&f),
                        Some(f.serial()),
                        None,
                    )
                    .await?;
                    f
                }
                Err(_) => {
                    // Whole under a temporary name, then renamed: a crash mid-download
                    // leaves no file that looks complete.
                    let tmp = path.with_extension("slots.tmp");
                    let mut f = ShardFile::create(&tmp, zone, config, shard)?;
                    self.sync_shard(zone, config, ip, Target::Building(&f), None, None)
                        .await?;
                    f.rename(&path)?;
                    f
                }
            };
            shards.push(ArcSwap::from_pointee(file));
        }
        // Files of other epochs are of no use any more.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if !keep.contains(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        info!(%zone, epoch = config.epoch, shards = config.shard_count, mib = need >> 20, seconds = started.elapsed().as_secs_f64(), "replica ready");
        Ok(Arc::new(ZoneReplica {
            zone: zone.clone(),
            config: config.clone(),
            server: ip,
            shards,
            refreshing: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            synced: Mutex::new(Instant::now()),
        }))
    }

    /// Brings one shard file up to date from `since` (None: the whole table). A whole
    /// table is read while the DP keeps changing it, so it is followed by a delta from its
    /// serial. With `want`, repeats (briefly) until the table reflects that zone serial.
    async fn sync_shard(
        &self,
        zone: &Name,
        config: &PirConfig,
        ip: IpAddr,
        target: Target<'_>,
        mut since: Option<u32>,
        want: Option<u32>,
    ) -> Result<Synced, ReplicaError> {
        let (file, serving) = match target {
            Target::Building(f) => (f, false),
            Target::Serving(f) => (f, true),
        };
        let shard = file.shard();
        let initial = since.is_none();
        let mut changed = BTreeSet::new();
        let mut replacement: Option<ShardFile> = None;
        let mut tries = 0;
        loop {
            tries += 1;
            // Where this run's buckets go: a replacement being built is not served yet.
            let (dest, served) = match &replacement {
                Some(r) => (r, false),
                None => (file, serving),
            };
            let mut written = Vec::new();
            let mut pending: Vec<(u32, Vec<u8>)> = Vec::new();
            let mut fresh: Option<ShardFile> = None;
            let fresh_path = file.path().with_extension("slots.new");
            let mut sink = |h: &RunHeader, items: &[(u32, &[u8])]| -> Result<(), ReplicaError> {
                written.extend(items.iter().map(|(i, _)| *i));
                if !served {
                    dest.write_buckets(items.iter().copied())?;
                } else if h.mode == Mode::Delta {
                    pending.extend(items.iter().map(|(i, b)| (*i, b.to_vec())));
                } else {
                    if fresh.is_none() {
                        fresh = Some(ShardFile::create(&fresh_path, zone, config, shard)?);
                    }
                    if let Some(f) = &fresh {
                        f.write_buckets(items.iter().copied())?;
                    }
                }
                Ok(())
            };
            let header = match self
                .fetch_run(zone, config, ip, shard, since, &mut sink)
                .await
            {
                Ok(h) => h,
                // Not a continuation of what the replica holds: the whole table again.
                Err(ReplicaError::Gap { .. }) if since.is_some() && tries < CATCH_UP_TRIES => {
                    since = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let stats = &self.replicas.stats;
            match header.mode {
                Mode::Full => {
                    stats.full_runs.fetch_add(1, Relaxed);
                    match fresh {
                        Some(f) => {
                            f.commit(header.to, header.zone_serial)?;
                            replacement = Some(f);
                        }
                        None => dest.commit(header.to, header.zone_serial)?,
                    }
                    if !initial {
                        // The DP's log no longer reached the replica: any bucket may
                        // have changed.
                        changed.extend(0..config.buckets);
                    }
                    since = Some(header.to);
                    continue;
                }
                Mode::Delta => {
                    stats.delta_runs.fetch_add(1, Relaxed);
                    if served {
                        dest.write_buckets(pending.iter().map(|(i, b)| (*i, &b[..])))?;
                    }
                    dest.commit(header.to, header.zone_serial)?;
                    changed.extend(written);
                }
            }
            since = Some(header.to);
            let behind = want.is_some_and(|w| serial_lt(header.zone_serial, w));
            if !behind || tries >= CATCH_UP_TRIES {
                return Ok(Synced {
                    changed,
                    replacement,
                });
            }
            tokio::time::sleep(CATCH_UP_PAUSE).await;
        }
    }

    /// Applies the DP's changes to the replica of `zone`, if there is one; `want` is the
    /// zone serial a NOTIFY announced. Cached private answers from a changed bucket go.
    pub async fn refresh_replica(
        &self,
        zone: &Name,
        want: Option<u32>,
    ) -> Result<(), ReplicaError> {
        let Some(replica) = self.replicas.get(zone) else {
            return Ok(());
        };
        let _one = replica.refreshing.lock().await;
        let started = Instant::now();
        for (shard, slot) in replica.shards.iter().enumerate() {
            let file = slot.load_full();
            let outcome = self
                .sync_shard(
                    zone,
                    &replica.config,
                    replica.server,
                    Target::Serving(&file),
                    Some(file.serial()),
                    want,
                )
                .await;
            match outcome {
                Ok(Synced {
                    changed,
                    replacement,
                }) => {
                    if let Some(mut whole) = replacement {
                        whole.rename(file.path())?;
                        slot.store(Arc::new(whole));
                    }
                    if !changed.is_empty() {
                        // Answers being read now may predate the change: not cached.
                        replica.generation.fetch_add(1, Relaxed);
                        let dropped = self.private_cache.drop_buckets(
                            zone,
                            replica.config.epoch,
                            shard as u32,
                            &changed,
                        );
                        debug!(%zone, shard, buckets = changed.len(), dropped, serial = slot.load().serial(), "replica delta applied");
                    }
                }
                Err(ReplicaError::EpochChanged { .. }) => {
                    info!(%zone, "replica's epoch is over: downloading the new one");
                    self.replicas.lock().remove(zone);
                    self.private_cache.drop_zone(zone);
                    let mut wanted = self
                        .replicas
                        .wanted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    wanted.insert(zone.clone());
                    self.replicas.wake.notify_one();
                    return Err(ReplicaError::EpochChanged { zone: zone.clone() });
                }
                Err(e) => {
                    self.replicas.stats.failures.fetch_add(1, Relaxed);
                    return Err(e);
                }
            }
        }
        if let Ok(mut synced) = replica.synced.lock() {
            *synced = started;
        }
        Ok(())
    }

    /// One SLOTS exchange: the request, then the run of messages until its end record;
    /// buckets go to `sink` as they arrive. Checks that the run is this zone's, epoch's
    /// and shard's, that a delta starts at `since`, and that it is whole.
    async fn fetch_run(
        &self,
        zone: &Name,
        config: &PirConfig,
        ip: IpAddr,
        shard: u32,
        since: Option<u32>,
        sink: Sink<'_>,
    ) -> Result<RunHeader, ReplicaError> {
        let upstream = &self.upstream;
        let server = upstream.server_addr(ip);
        let malformed = |reason: String| ReplicaError::Malformed {
            zone: zone.clone(),
            server,
            reason,
        };
        let exchange = |source| ReplicaError::Exchange {
            zone: zone.clone(),
            server,
            source,
        };
        let qname = carrier::pir_name(zone).map_err(|e| malformed(e.to_string()))?;
        let id: u16 = rand::random();
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            qname.to_hickory(),
            RecordType::from(TYPE_SLOTS),
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        let request = Request::Replica {
            epoch: config.epoch,
            shard,
        };
        edns.options_mut()
            .insert(EdnsOption::Unknown(carrier::EDNS_OPTION, request.encode()));
        if let Some(s) = since {
            edns.options_mut()
                .insert(EdnsOption::Unknown(SERIAL_OPTION, s.to_be_bytes().to_vec()));
        }
        msg.set_edns(edns);
        let mut bytes = msg.to_vec().map_err(|e| malformed(e.to_string()))?;
        let mac = upstream.sign(&mut bytes).map_err(exchange)?;
        let mut held: Option<Connection> = None;
        let mut frame = upstream
            .request(&mut held, ip, &bytes, FRAME_TIMEOUT)
            .await
            .map_err(exchange)?;
        // Every message of a signed run is signed, each MAC covering the previous one.
        let mut prior: Option<TsigMac> = None;
        let mut header: Option<RunHeader> = None;
        let mut received = 0u32;
        let stats = &self.replicas.stats;
        loop {
            stats.bytes_received.fetch_add(frame.len() as u64, Relaxed);
            if let (Some(key), Some(mac)) = (upstream.tsig_key(), &mac) {
                let now = crate::sys::unix_now();
                let checked = match &prior {
                    None => match crate::tsig::find_tsig(&frame) {
                        Ok(None) if header.is_none() => None,
                        _ => Some(crate::tsig::verify_response(&frame, key, mac, now)),
                    },
                    Some(p) => Some(crate::tsig::verify_response_continuation(
                        &frame, key, p, now,
                    )),
                };
                if let Some(c) = checked {
                    prior = Some(c.map_err(|e| exchange(ExchangeError::Tsig(e)))?);
                }
            }
            let reply = Message::from_vec(&frame).map_err(|e| malformed(e.to_string()))?;
            if reply.metadata.id != id {
                return Err(malformed("a reply to another query".into()));
            }
            if reply.metadata.response_code != ResponseCode::NoError {
                let ede = crate::ede::of_reply(&reply);
                if ede.as_ref().is_some_and(|(c, _)| *c == ede::WRONG_EPOCH) {
                    return Err(ReplicaError::EpochChanged { zone: zone.clone() });
                }
                return Err(ReplicaError::Refused {
                    zone: zone.clone(),
                    server,
                    rcode: reply.metadata.response_code,
                    text: ede.map(|(_, t)| t).unwrap_or_default(),
                });
            }
            for r in &reply.answers {
                let RData::Unknown { code, rdata } = &r.data else {
                    continue;
                };
                if u16::from(*code) != TYPE_SLOTS {
                    continue;
                }
                let record = SlotsRecord::decode(&rdata.anything)
                    .map_err(|e| ReplicaError::Pir(e, zone.clone()))?;
                match (record, &header) {
                    (SlotsRecord::Start(h), None) => {
                        check_header(&h, config, shard).map_err(malformed)?;
                        // A delta must start where the replica stands.
                        if h.mode == Mode::Delta && Some(h.from) != since {
                            return Err(ReplicaError::Gap {
                                zone: zone.clone(),
                                from: h.from,
                                at: since,
                            });
                        }
                        header = Some(h);
                    }
                    (SlotsRecord::Buckets(run), Some(h)) => {
                        if run.bucket_size() != h.bucket_size as usize {
                            return Err(malformed("buckets of another size".into()));
                        }
                        let items: Vec<(u32, &[u8])> = run.iter().collect();
                        received += items.len() as u32;
                        if received > h.count {
                            return Err(malformed(format!(
                                "more than the {} buckets announced",
                                h.count
                            )));
                        }
                        stats
                            .buckets_received
                            .fetch_add(items.len() as u64, Relaxed);
                        sink(h, &items)?;
                    }
                    (SlotsRecord::End(end), Some(h)) => {
                        if end != *h || received != h.count {
                            return Err(malformed(format!(
                                "the run ended after {received} of {} buckets",
                                h.count
                            )));
                        }
                        if let Some(conn) = held.take() {
                            upstream.release(conn);
                        }
                        return Ok(end);
                    }
                    _ => return Err(malformed("records out of order".into())),
                }
            }
            let conn = held
                .as_mut()
                .ok_or_else(|| malformed("the connection is gone".into()))?;
            frame = upstream
                .next_frame(conn, FRAME_TIMEOUT)
                .await
                .map_err(exchange)?;
        }
    }
}

fn check_header(h: &RunHeader, config: &PirConfig, shard: u32) -> Result<(), String> {
    if h.epoch != config.epoch || h.shard != shard {
        return Err(format!(
            "a run of epoch {} shard {} for epoch {} shard {shard}",
            h.epoch, h.shard, config.epoch
        ));
    }
    if h.buckets != config.buckets || h.bucket_size as usize != config.layout().bucket_size() {
        return Err("a table of another shape than PIRCFG's".into());
    }
    Ok(())
}

/// RFC 1982 comparison of zone serials.
fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// Keeps the replicas current: downloads the zones lookups found wanting, and asks every
/// replica's DP for a delta each `poll` (NOTIFY from subscribed DPs comes sooner, through
/// the invalidation feed). Runs until the resolver is dropped elsewhere; spawn it.
pub async fn maintain(resolver: Arc<Resolver>) {
    let Some(poll) = resolver.replicas.settings.as_ref().map(|s| s.poll) else {
        return;
    };
    let mut tick = tokio::time::interval(poll);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let held: Vec<Name> = resolver.replicas.lock().iter().filter(|(_, h)| matches!(h, Held::Ready(_))).map(|(z, _)| z.clone()).collect();
                for zone in held {
                    if let Err(e) = resolver.refresh_replica(&zone, None).await {
                        warn!(%zone, "replica refresh: {e}");
                    }
                }
            }
            _ = resolver.replicas.wake.notified() => {}
        }
        let wanted: Vec<Name> = resolver
            .replicas
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for zone in wanted {
            match resolver.replicate(&zone).await {
                Ok(r) => info!(%zone, epoch = r.config.epoch, "replicating"),
                Err(e) => {
                    warn!(%zone, "replica: {e}");
                    // Tried; a later lookup asks again.
                    resolver
                        .replicas
                        .wanted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&zone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_rfc_1982_order() {
        assert!(serial_lt(1, 2));
        assert!(!serial_lt(2, 2));
        assert!(!serial_lt(3, 2));
        assert!(serial_lt(u32::MAX, 0));
    }
}
