//! A zone's private-lookup database (DP side) and the client-side steps of a lookup.
//!
//! DP: [`ZonePirDb::build`] takes `(OPRF input, [SSI wire RDATA])` pairs, evaluates
//! the OPRF on each input with the zone's key for the epoch, seals the records into slots, places
//! the slots of each shard in a cuckoo table and preprocesses the tables for PIR. It then
//! answers OPRF requests ([`ZonePirDb::oprf_evaluate`]) and PIR queries ([`ZonePirDb::answer`])
//! and publishes [`ZonePirDb::config`] (the PIR part of PIRCFG). Within the epoch,
//! [`ZonePirDb::update`] replaces the records of some identifiers in place while queries go
//! on (fresh nonces, cuckoo insertion, only the touched PIR plaintexts re-encoded), or says
//! that the change needs a rebuild in a new epoch.
//!
//! Client: [`ZonePirClient::new`] from the published [`PirConfig`] (keys to upload once per
//! zone and epoch), then per identifier and spill index a [`Probe`] (shard in clear, two buckets
//! hidden), two PIR queries, and [`ZonePirClient::open`] on the two responses.
//! [`ZonePirClient::lookup_with`] runs that loop over any transport.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;

use super::batch::BatchPlan;
use super::db::{self, Chunk, LiveTable, TableLayout};
use super::keyword::{KeywordSource, SlotKeys, TAG_LEN};
use super::oprf::{self, OprfKey, OprfOutput};
use super::replica::ShardLog;
use super::respire::index::Respire;
use super::scheme::{DbShape, IndexPir, PirClient, PirServer};
use super::{PirError, Reader, RebuildReason, PIR_VERSION};
use crate::name::Name;

/// The public private-lookup parameters of a zone (the PIR part of PIRCFG).
///
/// Wire format (63 bytes, big endian): `u8 version || u8 scheme || u8 parameter set ||
/// u8 flags (0) || u64 epoch || u32 shard count || u16 slot size || u8 bucket slots ||
/// u32 buckets per shard || u64 table seed || [32] OPRF public key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PirConfig {
    pub scheme: u8,
    pub params: u8,
    pub epoch: u64,
    pub shard_count: u32,
    pub slot_size: u16,
    pub bucket_slots: u8,
    pub buckets: u32,
    pub table_seed: u64,
    /// Log2 of the most elements one batch query fetches ([`super::batch`]); 0 when the DP
    /// takes single queries only. Carried in the byte earlier versions left zero.
    pub batch_log: u8,
    pub oprf_public_key: [u8; oprf::ELEMENT_LEN],
}

/// Bytes of [`PirConfig::to_wire`].
pub const CONFIG_LEN: usize = 63;

impl PirConfig {
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONFIG_LEN);
        out.extend_from_slice(&[PIR_VERSION, self.scheme, self.params, self.batch_log]);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.shard_count.to_be_bytes());
        out.extend_from_slice(&self.slot_size.to_be_bytes());
        out.push(self.bucket_slots);
        out.extend_from_slice(&self.buckets.to_be_bytes());
        out.extend_from_slice(&self.table_seed.to_be_bytes());
        out.extend_from_slice(&self.oprf_public_key);
        out
    }

    pub fn from_wire(wire: &[u8]) -> Result<PirConfig, PirError> {
        let mut r = Reader::new(wire, "PIR config");
        let version = r.u8("version")?;
        if version != PIR_VERSION {
            return Err(PirError::Version {
                what: "PIR config",
                got: version,
                supported: PIR_VERSION,
            });
        }
        let scheme = r.u8("scheme")?;
        let params = r.u8("parameter set")?;
        let batch_log = r.u8("batch")?;
        if batch_log > 16 {
            return Err(PirError::malformed(
                "PIR config",
                format!("batches of 2^{batch_log} elements"),
            ));
        }
        let config = PirConfig {
            scheme,
            params,
            batch_log,
            epoch: r.u64("epoch")?,
            shard_count: r.u32("shard count")?,
            slot_size: r.u16("slot size")?,
            bucket_slots: r.u8("bucket slots")?,
            buckets: r.u32("buckets")?,
            table_seed: r.u64("table seed")?,
            oprf_public_key: r.array("OPRF public key")?,
        };
        r.finish()?;
        if config.shard_count == 0 {
            return Err(PirError::malformed("PIR config", "zero shards"));
        }
        config
            .layout()
            .validate()
            .map_err(|e| PirError::malformed("PIR config", e.to_string()))?;
        Ok(config)
    }

    /// The cuckoo-table shape shared by every shard.
    pub fn layout(&self) -> TableLayout {
        TableLayout {
            slot_size: self.slot_size as usize,
            bucket_slots: self.bucket_slots as usize,
            buckets: self.buckets,
        }
    }

    /// Most elements one batch query fetches (0: none).
    pub fn batch(&self) -> usize {
        match self.batch_log {
            0 => 0,
            log => 1 << log,
        }
    }

    /// The PIR database shape: one element per bucket.
    pub fn shape(&self) -> DbShape {
        let l = self.layout();
        DbShape {
            num_elements: l.buckets as usize,
            element_size: l.bucket_size(),
            batch: self.batch(),
        }
    }
}

/// How the DP builds a zone's database.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Shards (each its own PIR database; the client reveals which one it queries).
    pub shard_count: u32,
    pub slot_size: usize,
    /// Slots per bucket (a bucket is one PIR element; 4 or more keeps load 0.9 buildable).
    pub bucket_slots: usize,
    /// Target fraction of occupied slots in the fullest shard.
    pub load: f64,
    /// Evictions allowed per cuckoo insertion before the build restarts with a new seed (and,
    /// within an epoch, before an update gives up and asks for a rebuild).
    pub max_evictions: usize,
    /// Seeds tried before giving up.
    pub max_attempts: u32,
    /// Most slots one identifier may take (spill indexes).
    pub max_spill: usize,
    /// Probes (spill indexes every lookup fetches) to publish at least, even when no
    /// identifier needs that many yet: headroom for updates within the epoch, since an
    /// update whose identifier needs more slots than the published probes needs a rebuild.
    /// Clamped to `max_spill`.
    pub min_probes: usize,
    /// First table seed; `None` picks a random one.
    pub table_seed: Option<u64>,
    /// Elements one batch query may fetch (a power of two; 0: single queries only). Only
    /// schemes with batch queries (Respire) take it; it copies the database three times.
    pub batch: usize,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            shard_count: 1,
            slot_size: 256,
            bucket_slots: 4,
            load: 0.9,
            max_evictions: 500,
            max_attempts: 16,
            max_spill: 16,
            min_probes: 1,
            table_seed: None,
            batch: 0,
        }
    }
}

/// What a build did (for the DP's logs; names no identifier except rejected ones).
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub identifiers: usize,
    pub slots_used: usize,
    /// Identifiers that needed more than one slot.
    pub spilled: usize,
    /// The most slots any one identifier needed: clients fetch this many probes for every
    /// lookup, so the number of exchanges does not tell present from absent.
    pub max_slots: usize,
    /// The probes to publish: `max_slots`, raised to `min_probes`.
    pub probes: usize,
    /// Identifiers left out, with the reason (too many records, duplicate, bad input).
    pub rejected: Vec<(String, PirError)>,
    pub attempts: u32,
    pub table_seed: u64,
    pub max_shard_load: f64,
    pub oprf_time: Duration,
    pub table_time: Duration,
    pub pir_time: Duration,
    pub memory_bytes: usize,
}

/// One sealed slot waiting for its place.
struct Item {
    y: OprfOutput,
    index: u32,
}

/// An identifier's shard and sealed slots, or why it was left out.
type Sealed = Result<(u32, Vec<(Item, Vec<u8>)>), (String, PirError)>;

/// What an [`ZonePirDb::update`] did (for the DP's logs; names no identifier except rejected
/// ones).
#[derive(Debug, Clone, Default)]
pub struct UpdateReport {
    /// Changes applied (one per OPRF input, duplicates included).
    pub entries: usize,
    /// Inputs that were absent and now have records.
    pub added: usize,
    /// Inputs whose records were replaced.
    pub replaced: usize,
    /// Inputs whose records were removed.
    pub removed: usize,
    /// Removals of inputs that were not in the database (nothing to do).
    pub absent: usize,
    pub slots_removed: usize,
    /// Slots sealed (each with a fresh nonce) and inserted.
    pub slots_sealed: usize,
    /// Slots moved to their other bucket by cuckoo insertion (bytes unchanged).
    pub evictions: usize,
    /// Buckets (PIR elements) whose bytes changed, over all shards.
    pub buckets_touched: usize,
    /// PIR plaintexts re-encoded (MulPIR: six buckets each).
    pub plaintexts_reencoded: usize,
    /// Inputs that cannot be stored (too many records, bad input): left out, as a build
    /// leaves them out; their old slots are removed.
    pub rejected: Vec<(String, PirError)>,
    /// OPRF evaluation and sealing.
    pub seal_time: Duration,
    /// Cuckoo removals and insertions.
    pub table_time: Duration,
    /// Re-encoding the touched plaintexts.
    pub encode_time: Duration,
    /// Swapping the new plaintexts in.
    pub swap_time: Duration,
    pub elapsed: Duration,
}

/// A shard's table serial and its changed buckets `(index, bytes)`, for a replica.
pub type ReplicaDelta = (u32, Vec<(u32, Vec<u8>)>);

/// A zone's private-lookup database for one epoch.
///
/// Queries ([`ZonePirDb::answer`]) and updates ([`ZonePirDb::update`]) both take `&self` and
/// may run at the same time from different threads; see [`ZonePirDb::update`] for how they
/// stay out of each other's way.
pub struct ZonePirDb<P: IndexPir = Respire> {
    config: PirConfig,
    oprf: OprfKey,
    shards: Vec<P::Server>,
    /// Spill indexes every lookup fetches (published in PIRCFG); fixed for the epoch.
    probes: usize,
    max_spill: usize,
    /// The writer's copy of every shard's cuckoo table.
    live: Mutex<Live>,
}

/// The state only updates touch, behind the writer lock.
struct Live {
    tables: Vec<LiveTable>,
    /// Per shard, the buckets each update touched (the deltas of encrypted replicas).
    logs: Vec<ShardLog>,
    max_evictions: usize,
    rng: StdRng,
}

/// One change prepared outside the writer lock: where the input's old slots may be, and its
/// new slots sealed.
struct Change {
    input: usize,
    shard: u32,
    /// Buckets and tag of every spill index an old version may use (`0..probes`).
    old: Vec<([u32; 2], [u8; TAG_LEN])>,
    /// New sealed slots with their buckets.
    new: Vec<([u32; 2], Vec<u8>)>,
    /// Why the new records cannot be stored (the old ones still go).
    rejected: Option<PirError>,
}

impl<P: IndexPir> std::fmt::Debug for ZonePirDb<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZonePirDb")
            .field("config", &self.config)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<P: IndexPir> ZonePirDb<P> {
    /// Builds the database of `zone` for `epoch` from `(OPRF input, [SSI wire RDATA])` pairs
    /// (the OPRF input is the identifier string the clients blind, e.g. the normalised SII).
    /// Within the epoch, content changes only through [`ZonePirDb::update`]. Identifiers that
    /// cannot be stored are reported, not fatal.
    pub fn build<I>(
        zone: &Name,
        zone_secret: &[u8],
        epoch: u64,
        options: &BuildOptions,
        entries: I,
    ) -> Result<(ZonePirDb<P>, BuildReport), PirError>
    where
        I: IntoIterator<Item = (String, Vec<Vec<u8>>)>,
    {
        if options.shard_count == 0 {
            return Err(PirError::Param("zero shards".into()));
        }
        if !(0.05..=0.99).contains(&options.load) {
            return Err(PirError::Param(format!(
                "load {} outside 0.05..=0.99",
                options.load
            )));
        }
        let batch_log = match options.batch {
            0 => 0,
            b if b.is_power_of_two() && b <= 1 << 16 => b.trailing_zeros() as u8,
            b => {
                return Err(PirError::Param(format!(
                    "batches of {b} elements (a power of two up to 2^16, or 0)"
                )))
            }
        };
        let slot_size = u16::try_from(options.slot_size)
            .map_err(|_| PirError::Param(format!("slot size {}", options.slot_size)))?;
        let bucket_slots = u8::try_from(options.bucket_slots)
            .map_err(|_| PirError::Param(format!("bucket of {} slots", options.bucket_slots)))?;
        let probe_layout = TableLayout {
            slot_size: options.slot_size,
            bucket_slots: options.bucket_slots,
            buckets: 2,
        };
        probe_layout.validate()?;
        let mut report = BuildReport::default();
        let oprf = OprfKey::derive(zone_secret, zone, epoch)?;

        // Deduplicate, then OPRF + seal in parallel.
        let mut seen = HashSet::new();
        let mut unique = Vec::new();
        for (sii, records) in entries {
            if records.is_empty() {
                continue;
            }
            if !seen.insert(sii.clone()) {
                report.rejected.push((
                    sii,
                    PirError::Param("listed twice; the first entry is kept".into()),
                ));
                continue;
            }
            unique.push((sii, records));
        }
        let started = Instant::now();
        let sealed: Vec<Sealed> = unique
            .par_iter()
            .map(|(sii, records)| {
                let fail = |e: PirError| (sii.clone(), e);
                let y = oprf.evaluate_direct(sii.as_bytes()).map_err(fail)?;
                let payloads = db::encode_payloads(sii, records, &probe_layout, options.max_spill)
                    .map_err(fail)?;
                let source = KeywordSource::new(&y, epoch);
                let shard = source.shard(options.shard_count);
                let mut slots = Vec::with_capacity(payloads.len());
                for (i, p) in payloads.iter().enumerate() {
                    let keys = source.slot_keys(i as u32);
                    let slot = db::seal(&keys, p, options.slot_size).map_err(fail)?;
                    slots.push((Item { y, index: i as u32 }, slot));
                }
                Ok((shard, slots))
            })
            .collect();
        report.oprf_time = started.elapsed();

        let mut per_shard: Vec<(Vec<Item>, Vec<u8>)> = (0..options.shard_count)
            .map(|_| (Vec::new(), Vec::new()))
            .collect();
        for r in sealed {
            match r {
                Ok((shard, slots)) => {
                    report.identifiers += 1;
                    report.max_slots = report.max_slots.max(slots.len());
                    if slots.len() > 1 {
                        report.spilled += 1;
                    }
                    let (items, bytes) = &mut per_shard[shard as usize];
                    for (item, slot) in slots {
                        report.slots_used += 1;
                        items.push(item);
                        bytes.extend_from_slice(&slot);
                    }
                }
                Err(rejected) => report.rejected.push(rejected),
            }
        }

        // One table shape for all shards, sized for the fullest.
        let fullest = per_shard.iter().map(|(i, _)| i.len()).max().unwrap_or(0);
        let slots = ((fullest as f64 / options.load).ceil() as usize).max(2 * options.bucket_slots);
        let buckets = u32::try_from(slots.div_ceil(options.bucket_slots))
            .map_err(|_| PirError::Param(format!("{slots} slots in one shard")))?;
        let layout = TableLayout {
            slot_size: options.slot_size,
            bucket_slots: options.bucket_slots,
            buckets,
        };
        layout.validate()?;
        report.max_shard_load = fullest as f64 / layout.slots() as f64;

        let started = Instant::now();
        let first_seed = options
            .table_seed
            .unwrap_or_else(|| rand::rngs::OsRng.next_u64());
        let mut placements = None;
        for attempt in 0..options.max_attempts.max(1) {
            let seed = first_seed.wrapping_add(u64::from(attempt));
            report.attempts = attempt + 1;
            type Placed = (Vec<Option<u32>>, Vec<[u32; 2]>);
            let placed: Option<Vec<Placed>> = per_shard
                .par_iter()
                .map(|(items, _)| {
                    let choices: Vec<[u32; 2]> = items
                        .iter()
                        .map(|it| KeywordSource::new(&it.y, epoch).buckets(it.index, seed, buckets))
                        .collect();
                    db::place(&layout, &choices, options.max_evictions, seed).map(|p| (p, choices))
                })
                .collect();
            if let Some(p) = placed {
                placements = Some((seed, p));
                break;
            }
        }
        let (table_seed, placements) = placements.ok_or(PirError::CuckooFailed {
            attempts: options.max_attempts.max(1),
            seed: first_seed.wrapping_add(u64::from(options.max_attempts.max(1) - 1)),
        })?;
        report.table_seed = table_seed;
        report.table_time = started.elapsed();

        let started = Instant::now();
        let shape = DbShape {
            num_elements: buckets as usize,
            element_size: layout.bucket_size(),
            batch: options.batch,
        };
        let mut shards = Vec::with_capacity(per_shard.len());
        let mut tables = Vec::with_capacity(per_shard.len());
        for (shard, ((_, bytes), (placement, choices))) in
            per_shard.into_iter().zip(placements).enumerate()
        {
            let table = LiveTable::new(shard as u32, layout, &placement, &choices, &bytes)?;
            drop(bytes);
            let server = P::Server::load(&shape, table.bytes())?;
            report.memory_bytes += server.memory_bytes() + table.memory_bytes();
            shards.push(server);
            tables.push(table);
        }
        report.pir_time = started.elapsed();
        let max_spill = options.max_spill.clamp(1, db::MAX_SPILL);
        report.probes = report
            .max_slots
            .max(options.min_probes.min(max_spill))
            .max(1);

        let config = PirConfig {
            scheme: P::SCHEME_ID,
            params: P::PARAMS_ID,
            epoch,
            shard_count: options.shard_count,
            slot_size,
            bucket_slots,
            buckets,
            table_seed,
            batch_log,
            oprf_public_key: oprf.public_key(),
        };
        Ok((
            ZonePirDb {
                config,
                oprf,
                shards,
                probes: report.probes,
                max_spill,
                live: Mutex::new(Live {
                    logs: (0..options.shard_count)
                        .map(|_| ShardLog::new((buckets as usize / 4).max(16)))
                        .collect(),
                    tables,
                    max_evictions: options.max_evictions,
                    rng: StdRng::seed_from_u64(OsRng.next_u64()),
                }),
            },
            report,
        ))
    }

    pub fn config(&self) -> &PirConfig {
        &self.config
    }

    /// Spill indexes every lookup of this epoch fetches (PIRCFG's `probes`).
    pub fn probes(&self) -> usize {
        self.probes
    }

    /// Replaces the records of the given OPRF inputs within the current epoch: each change
    /// carries all current records of its input, an empty list removes the input. Changes
    /// apply in order (a later change of the same input wins), and all or none of them do.
    ///
    /// What happens: the OPRF of every input is evaluated with the epoch's key and its slots
    /// are sealed, each under a fresh random nonce (in parallel, without any lock); then,
    /// under the writer lock, the input's old slots (found by tag in the two buckets of each
    /// spill index `0..probes`) become random bytes and the new slots go in by cuckoo
    /// insertion with at most `max_evictions` evictions each. An evicted slot moves to its
    /// other bucket with its bytes as they are (its content did not change, so it is not
    /// sealed again). Only the PIR plaintexts holding a touched bucket are re-encoded, and
    /// they are swapped into each shard's server at once.
    ///
    /// Concurrency: queries never take the writer lock. Each query reads one immutable
    /// snapshot of its shard's encoded database, taken lock-free when its pass over the
    /// database starts and kept until it ends; an update builds the re-encoded plaintexts
    /// beside the served ones and publishes them with one atomic pointer swap per shard. A
    /// query therefore sees each plaintext wholly old or wholly new, a 1-second query never
    /// delays the writer, and the writer never delays a query. The writer lock (held for the
    /// table changes, the re-encoding and the swap: milliseconds) only orders concurrent
    /// updates, which should come from the zone's single writer anyway.
    ///
    /// Between two queries of one lookup (two buckets, further spill indexes) an update may
    /// land: the lookup then sees slots of both versions. Every slot is authentic either way;
    /// a spilled identifier's chunks carry the stream id of their sealing, so a mix is an
    /// error ([`db::assemble`]), not a splice, and a slot moved between its buckets may be
    /// missed by that one lookup (reported absent; the next lookup finds it).
    ///
    /// Errors: [`PirError::NeedsRebuild`] when the change does not fit the epoch (a shard
    /// would be full, an insertion runs out of evictions, or an input needs more slots than
    /// the epoch's published probes): nothing is applied, the database keeps serving the old
    /// content, and the caller builds a new epoch (with [`ZonePirDb::build`]). An input
    /// whose records cannot be stored at all (more than `max_spill` slots, a record over
    /// 65535 bytes, an input the OPRF refuses) is reported in [`UpdateReport::rejected`]
    /// and left out, as a build leaves it out. Any other error is internal; rebuild then too.
    pub fn update<I>(&self, changes: I) -> Result<UpdateReport, PirError>
    where
        I: IntoIterator<Item = (String, Vec<Vec<u8>>)>,
    {
        let started = Instant::now();
        let changes: Vec<(String, Vec<Vec<u8>>)> = changes.into_iter().collect();
        let mut report = UpdateReport {
            entries: changes.len(),
            ..UpdateReport::default()
        };
        let prepared: Vec<Result<Change, PirError>> = changes
            .par_iter()
            .enumerate()
            .map(|(i, (input, records))| self.prepare_change(i, input, records))
            .collect();
        let mut ready = Vec::with_capacity(prepared.len());
        for (p, (input, _)) in prepared.into_iter().zip(&changes) {
            match p {
                Ok(c) => ready.push(c),
                Err(e @ PirError::NeedsRebuild(_)) => return Err(e),
                // The OPRF refused the input: it cannot be in the database either.
                Err(e) => report.rejected.push((input.clone(), e)),
            }
        }
        report.seal_time = started.elapsed();

        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Live {
            tables,
            logs,
            max_evictions,
            rng,
        } = &mut *guard;
        let clock = Instant::now();
        let mut txns: Vec<db::TableTxn<'_>> = tables.iter_mut().map(LiveTable::begin).collect();
        let slots = self.config.layout().slots();
        for change in ready {
            let Some(txn) = txns.get_mut(change.shard as usize) else {
                return Err(PirError::Internal(format!(
                    "updating shard {}",
                    change.shard
                )));
            };
            let mut found = 0;
            for (buckets, tag) in &change.old {
                for b in buckets {
                    for pos in txn.table().find(*b, tag) {
                        txn.remove(pos)?;
                        found += 1;
                    }
                }
            }
            report.slots_removed += found;
            match (found > 0, change.new.is_empty()) {
                (true, true) => report.removed += 1,
                (true, false) => report.replaced += 1,
                (false, false) => report.added += 1,
                (false, true) => report.absent += 1,
            }
            let needed = txn.table().used() + change.new.len();
            if needed > slots {
                return Err(PirError::NeedsRebuild(RebuildReason::ShardFull {
                    shard: change.shard,
                    needed,
                    slots,
                }));
            }
            for (buckets, slot) in &change.new {
                txn.insert(*buckets, slot, *max_evictions, rng)?;
                report.slots_sealed += 1;
            }
            if let Some(e) = change.rejected {
                report.rejected.push((changes[change.input].0.clone(), e));
            }
        }
        report.evictions = txns.iter().map(|t| t.evictions()).sum();
        report.table_time = clock.elapsed();

        // Re-encode every touched shard before swapping any, so an encoding failure changes
        // nothing.
        let clock = Instant::now();
        let mut updates = Vec::new();
        for (shard, txn) in txns.iter().enumerate() {
            if txn.touched().is_empty() {
                continue;
            }
            let touched: Vec<usize> = txn.touched().iter().map(|&b| b as usize).collect();
            report.buckets_touched += touched.len();
            let update = self.shards[shard].prepare_update(txn.table().bytes(), &touched)?;
            updates.push((shard, update, txn.touched().clone()));
        }
        report.encode_time = clock.elapsed();

        let clock = Instant::now();
        let mut txns: Vec<Option<db::TableTxn<'_>>> = txns.into_iter().map(Some).collect();
        for (shard, update, touched) in updates {
            // Cannot fail while the writer lock is held (nobody else commits); if it did, the
            // shards swapped so far keep their new content and the rest roll back.
            report.plaintexts_reencoded += self.shards[shard].commit_update(update)?;
            if let Some(txn) = txns.get_mut(shard).and_then(Option::take) {
                txn.commit();
                if let Some(log) = logs.get_mut(shard) {
                    log.record(touched);
                }
            }
        }
        for txn in txns.into_iter().flatten() {
            // Untouched shards: nothing to undo or keep.
            txn.commit();
        }
        report.swap_time = clock.elapsed();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// OPRF, keywords and sealed slots of one change (no lock).
    fn prepare_change(
        &self,
        input: usize,
        name: &str,
        records: &[Vec<u8>],
    ) -> Result<Change, PirError> {
        let epoch = self.config.epoch;
        let y = self.oprf.evaluate_direct(name.as_bytes())?;
        let source = KeywordSource::new(&y, epoch);
        let shard = source.shard(self.config.shard_count);
        let old = (0..self.probes as u32)
            .map(|i| {
                (
                    source.buckets(i, self.config.table_seed, self.config.buckets),
                    source.slot_keys(i).tag,
                )
            })
            .collect();
        let mut change = Change {
            input,
            shard,
            old,
            new: Vec::new(),
            rejected: None,
        };
        if records.is_empty() {
            return Ok(change);
        }
        let layout = self.config.layout();
        let payloads = match db::encode_payloads(name, records, &layout, self.max_spill) {
            Ok(p) => p,
            Err(e) => {
                change.rejected = Some(e);
                return Ok(change);
            }
        };
        if payloads.len() > self.probes {
            return Err(PirError::NeedsRebuild(RebuildReason::TooManySlots {
                needed: payloads.len(),
                probes: self.probes,
            }));
        }
        for (i, p) in payloads.iter().enumerate() {
            let i = i as u32;
            let slot = db::seal(&source.slot_keys(i), p, layout.slot_size)?;
            let buckets = source.buckets(i, self.config.table_seed, self.config.buckets);
            change.new.push((buckets, slot));
        }
        Ok(change)
    }

    /// Evaluates an OPRF request (rate-limit before calling: [`oprf::request_count`]).
    pub fn oprf_evaluate(&self, request: &[u8]) -> Result<Vec<u8>, PirError> {
        self.oprf.evaluate(request)
    }

    fn shard(&self, shard: u32) -> Result<&P::Server, PirError> {
        self.shards
            .get(shard as usize)
            .ok_or(PirError::NoSuchShard {
                shard,
                count: self.shards.len() as u32,
            })
    }

    /// Parses and validates a client's uploaded evaluation key (valid for every shard).
    pub fn parse_key(&self, key: &[u8]) -> Result<<P::Server as PirServer>::Key, PirError> {
        self.shard(0)?.parse_key(key)
    }

    /// Answers one PIR query against `shard`.
    pub fn answer(
        &self,
        shard: u32,
        key: &<P::Server as PirServer>::Key,
        query: &[u8],
    ) -> Result<Vec<u8>, PirError> {
        self.shard(shard)?.answer(key, query)
    }

    /// Answers several queries against `shard` in one pass over its database (for example
    /// the two bucket queries of a lookup, or concurrent queries of several clients).
    pub fn answer_batch(
        &self,
        shard: u32,
        items: &[(&<P::Server as PirServer>::Key, &[u8])],
    ) -> Vec<Result<Vec<u8>, PirError>> {
        match self.shard(shard) {
            Ok(server) => server.answer_batch(items),
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// The PIR server of one shard (diagnostics, benchmarks).
    pub fn shard_server(&self, shard: u32) -> Option<&P::Server> {
        self.shards.get(shard as usize)
    }

    pub fn query_len(&self) -> usize {
        self.shards.first().map(|s| s.query_len()).unwrap_or(0)
    }

    pub fn response_len(&self) -> usize {
        self.shards.first().map(|s| s.response_len()).unwrap_or(0)
    }

    /// Resident bytes of all preprocessed shards and of the writer's tables.
    pub fn memory_bytes(&self) -> usize {
        let live = self
            .live
            .lock()
            .map(|l| l.tables.iter().map(LiveTable::memory_bytes).sum())
            .unwrap_or(0);
        self.shards.iter().map(|s| s.memory_bytes()).sum::<usize>() + live
    }

    /// Bytes of buckets `first..first + count` of a shard's table with the shard's table
    /// serial, read together under the writer lock (a replica's full download, in pieces).
    pub fn replica_buckets(
        &self,
        shard: u32,
        first: u32,
        count: u32,
    ) -> Result<(u32, Vec<u8>), PirError> {
        self.with_shard_table(shard, |table, log| {
            let size = table.layout().bucket_size();
            let start = first as usize * size;
            let end = (first as usize + count as usize) * size;
            let bytes = table.bytes().get(start..end).ok_or_else(|| {
                PirError::malformed(
                    "replica request",
                    format!(
                        "buckets {first}..{} of {}",
                        first + count,
                        self.config.buckets
                    ),
                )
            })?;
            Ok((log.serial(), bytes.to_vec()))
        })
    }

    /// Runs `f` on a shard's table and change log under the writer lock.
    fn with_shard_table<T>(
        &self,
        shard: u32,
        f: impl FnOnce(&LiveTable, &ShardLog) -> Result<T, PirError>,
    ) -> Result<T, PirError> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match (
            live.tables.get(shard as usize),
            live.logs.get(shard as usize),
        ) {
            (Some(table), Some(log)) => f(table, log),
            _ => Err(PirError::NoSuchShard {
                shard,
                count: self.shards.len() as u32,
            }),
        }
    }

    /// The buckets of a shard changed since table serial `from`, with their current bytes and
    /// the serial they bring a replica to, read together under the writer lock. `None` when
    /// the log no longer reaches `from`, or the delta would hold more than `max` buckets:
    /// the replica then needs the whole table.
    pub fn replica_delta(
        &self,
        shard: u32,
        from: u32,
        max: usize,
    ) -> Result<Option<ReplicaDelta>, PirError> {
        self.with_shard_table(shard, |table, log| {
            let Some(changed) = log.since(from).filter(|c| c.len() <= max) else {
                return Ok(None);
            };
            let size = table.layout().bucket_size();
            let buckets = changed
                .into_iter()
                .filter_map(|b| {
                    let start = b as usize * size;
                    let bytes = table.bytes().get(start..start + size)?;
                    Some((b, bytes.to_vec()))
                })
                .collect();
            Ok(Some((log.serial(), buckets)))
        })
    }

    /// The sealed slot of spill `index` of `input` as the writer holds it.
    #[cfg(test)]
    fn slot_of(&self, input: &str, index: u32) -> Option<Vec<u8>> {
        let y = self.oprf.evaluate_direct(input.as_bytes()).ok()?;
        let source = KeywordSource::new(&y, self.config.epoch);
        let shard = source.shard(self.config.shard_count) as usize;
        let tag = source.slot_keys(index).tag;
        let live = self.live.lock().ok()?;
        let table = live.tables.get(shard)?;
        source
            .buckets(index, self.config.table_seed, self.config.buckets)
            .iter()
            .flat_map(|&b| table.find(b, &tag))
            .next()
            .and_then(|pos| table.slot(pos).map(<[u8]>::to_vec))
    }

    /// Occupied slots of all shards.
    #[cfg(test)]
    fn used_slots(&self) -> usize {
        self.live
            .lock()
            .map(|l| l.tables.iter().map(LiveTable::used).sum())
            .unwrap_or(0)
    }

    /// The writer's copy of a shard's table.
    #[cfg(test)]
    fn table_bytes(&self, shard: usize) -> Vec<u8> {
        self.live
            .lock()
            .map(|l| l.tables[shard].bytes().to_vec())
            .unwrap_or_default()
    }
}

/// Where to look for one spill index of one identifier.
#[derive(Clone)]
pub struct Probe {
    /// Sent in clear with the queries.
    pub shard: u32,
    pub index: u32,
    /// The two cuckoo buckets (PIR element indexes); never sent.
    pub buckets: [u32; 2],
    keys: SlotKeys,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("shard", &self.shard)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// Where spill `index` of the identifier whose OPRF output is `y` lies in a zone with
    /// this config. Needs no PIR keys: a replica holder opens the buckets itself.
    pub fn new(config: &PirConfig, y: &OprfOutput, index: u32) -> Probe {
        let source = KeywordSource::new(y, config.epoch);
        Probe {
            shard: source.shard(config.shard_count),
            index,
            buckets: source.buckets(index, config.table_seed, config.buckets),
            keys: source.slot_keys(index),
        }
    }

    /// Opens the probe's slot from the bytes of its two buckets: `None` when absent.
    pub fn open(
        &self,
        layout: &TableLayout,
        buckets: [&[u8]; 2],
    ) -> Result<Option<Chunk>, PirError> {
        db::open(&self.keys, &buckets, layout)
    }
}

/// One batch query's worth of probes (all of one shard), with its queries.
#[derive(Debug)]
pub struct ProbeBatch {
    pub shard: u32,
    /// Indexes into the probes given to [`ZonePirClient::batch_probes`].
    pub members: Vec<usize>,
    /// The distinct PIR elements (cuckoo buckets) fetched, increasing.
    elements: Vec<usize>,
    plan: BatchPlan,
    /// One per PIR batch bucket, in order; every one is sent.
    pub queries: Vec<Vec<u8>>,
}

/// A client's PIR state for one zone and epoch.
pub struct ZonePirClient<P: IndexPir = Respire> {
    config: PirConfig,
    client: P::Client,
    /// PIR answers whose slot carried the probe's tag but failed authentication (see
    /// [`ZonePirClient::open`]).
    decode_failures: AtomicU64,
}

impl<P: IndexPir> ZonePirClient<P> {
    /// Makes fresh PIR keys for the zone's published config. Returns the client and the
    /// evaluation-key bytes to upload (once per zone and epoch; use fresh keys per zone so
    /// DPs cannot link a client's lookups across zones).
    pub fn new(config: PirConfig) -> Result<(ZonePirClient<P>, Vec<u8>), PirError> {
        if config.scheme != P::SCHEME_ID || config.params != P::PARAMS_ID {
            return Err(PirError::Param(format!(
                "zone uses PIR scheme {} parameter set {}, this client speaks {} set {} ({})",
                config.scheme,
                config.params,
                P::SCHEME_ID,
                P::PARAMS_ID,
                P::NAME
            )));
        }
        config.layout().validate()?;
        let (client, key) = P::Client::setup(&config.shape())?;
        Ok((
            ZonePirClient {
                config,
                client,
                decode_failures: AtomicU64::new(0),
            },
            key,
        ))
    }

    pub fn config(&self) -> &PirConfig {
        &self.config
    }

    /// The scheme's client (diagnostics, benchmarks).
    pub fn pir_client(&self) -> &P::Client {
        &self.client
    }

    /// The probe for spill `index` of the identifier whose OPRF output is `y`.
    pub fn probe(&self, y: &OprfOutput, index: u32) -> Probe {
        Probe::new(&self.config, y, index)
    }

    /// The two PIR queries of a probe (send both, to `probe.shard`).
    pub fn queries(&self, probe: &Probe) -> Result<[Vec<u8>; 2], PirError> {
        Ok([
            self.client.query(probe.buckets[0] as usize)?,
            self.client.query(probe.buckets[1] as usize)?,
        ])
    }

    /// Decodes the two responses and opens the probe's slot: `None` when absent.
    pub fn open(&self, probe: &Probe, responses: [&[u8]; 2]) -> Result<Option<Chunk>, PirError> {
        let a = self
            .client
            .decode(probe.buckets[0] as usize, responses[0])?;
        let b = self
            .client
            .decode(probe.buckets[1] as usize, responses[1])?;
        self.open_decoded(probe, [&a, &b])
    }

    /// Opens the probe's slot from its two buckets as PIR decoded them.
    ///
    /// A lattice scheme's answer decrypts wrongly with a small probability (Respire: noise
    /// beyond its margin). A slot whose tag survived but whose ciphertext does not verify is
    /// counted ([`ZonePirClient::decode_failures`]) and reported as absent, as the caller
    /// can do nothing else with it; a garbled tag already looks absent.
    fn open_decoded(&self, probe: &Probe, buckets: [&[u8]; 2]) -> Result<Option<Chunk>, PirError> {
        match self.open_buckets(probe, buckets) {
            Err(PirError::SlotAuth) => {
                self.decode_failures.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            other => other,
        }
    }

    /// Most PIR elements one batch query fetches (0: the zone takes single queries only).
    pub fn batch_size(&self) -> usize {
        self.config.batch()
    }

    /// Batch queries for `probes`: grouped by shard, each group's distinct buckets in
    /// batches of at most [`ZonePirClient::batch_size`] elements. Send every query of a
    /// batch to its shard (one per PIR bucket), then give the responses, in order, to
    /// [`ZonePirClient::open_batch`].
    pub fn batch_probes(&self, probes: &[Probe]) -> Result<Vec<ProbeBatch>, PirError> {
        let size = self.batch_size();
        if size < 2 {
            return Err(PirError::Param("the zone takes no batch queries".into()));
        }
        let mut shards: Vec<u32> = probes.iter().map(|p| p.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut out = Vec::new();
        for shard in shards {
            let members: Vec<usize> = (0..probes.len())
                .filter(|&i| probes[i].shard == shard)
                .collect();
            // Whole probes per batch, so a probe's two buckets come back together.
            let mut pending: Vec<Vec<usize>> =
                members.chunks(size / 2).map(<[usize]>::to_vec).collect();
            while let Some(group) = pending.pop() {
                let mut elements: Vec<usize> = group
                    .iter()
                    .flat_map(|&i| probes[i].buckets.map(|b| b as usize))
                    .collect();
                elements.sort_unstable();
                elements.dedup();
                match self.client.batch_queries(&elements) {
                    Ok((plan, queries)) => out.push(ProbeBatch {
                        shard,
                        members: group,
                        elements,
                        plan,
                        queries,
                    }),
                    // Cuckoo placement found no room: two smaller batches.
                    Err(PirError::BatchPlacement { .. }) if group.len() > 1 => {
                        let (a, b) = group.split_at(group.len() / 2);
                        pending.push(a.to_vec());
                        pending.push(b.to_vec());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Opens every probe of `batch` from the responses to its queries (in order): one
    /// result per member, in [`ProbeBatch::members`] order.
    pub fn open_batch(
        &self,
        probes: &[Probe],
        batch: &ProbeBatch,
        responses: &[&[u8]],
    ) -> Result<Vec<Result<Option<Chunk>, PirError>>, PirError> {
        let decoded = self.client.batch_decode(&batch.plan, responses)?;
        let element = |b: u32| -> Result<&[u8], PirError> {
            let at = batch
                .elements
                .binary_search(&(b as usize))
                .map_err(|_| PirError::Internal(format!("bucket {b} not in its batch")))?;
            Ok(&decoded[at])
        };
        batch
            .members
            .iter()
            .map(|&i| {
                let probe = probes
                    .get(i)
                    .ok_or_else(|| PirError::Internal(format!("batch names probe {i}")))?;
                Ok(self.open_decoded(
                    probe,
                    [element(probe.buckets[0])?, element(probe.buckets[1])?],
                ))
            })
            .collect()
    }

    /// PIR answers that decoded to a slot failing authentication, counted as misses.
    pub fn decode_failures(&self) -> u64 {
        self.decode_failures.load(Ordering::Relaxed)
    }

    /// Opens the probe's slot from the bytes of its two buckets (decoded PIR answers, or the
    /// buckets of an encrypted replica of the table): `None` when absent.
    pub fn open_buckets(
        &self,
        probe: &Probe,
        buckets: [&[u8]; 2],
    ) -> Result<Option<Chunk>, PirError> {
        probe.open(&self.config.layout(), buckets)
    }

    /// The whole PIR part of a lookup over any transport: `fetch(shard, query)` returns the
    /// DP's response. Fetches spill indexes 0, 1, ... until the slots say the stream is
    /// complete, and keeps issuing probes up to `pad_to` indexes so the number of rounds does
    /// not reveal how many slots the identifier has. Returns the SSI wire RDATAs (empty: the
    /// identifier is not in the zone); the caller verifies each with `record::verify_against`.
    pub fn lookup_with<F>(
        &self,
        y: &OprfOutput,
        pad_to: u32,
        mut fetch: F,
    ) -> Result<Vec<Vec<u8>>, PirError>
    where
        F: FnMut(u32, &[u8]) -> Result<Vec<u8>, PirError>,
    {
        let mut chunks = Vec::new();
        let mut done = false;
        let mut index = 0u32;
        while !done || index < pad_to {
            let probe = self.probe(y, index);
            let [qa, qb] = self.queries(&probe)?;
            let ra = fetch(probe.shard, &qa)?;
            let rb = fetch(probe.shard, &qb)?;
            if !done {
                match self.open(&probe, [&ra, &rb])? {
                    None if index == 0 => done = true,
                    None => {
                        return Err(PirError::malformed(
                            "record stream",
                            format!("spill index {index} is missing"),
                        ))
                    }
                    Some(chunk) => {
                        done = !chunk.more_after(index);
                        chunks.push(chunk);
                    }
                }
            }
            index += 1;
            if index as usize > db::MAX_SPILL {
                break;
            }
        }
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        db::assemble(&chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{verify_against, Context, Method, ProviderKey, Ssi, TrustStore};
    use crate::sii::Sii;

    const SECRET: [u8; 32] = [42u8; 32];

    fn apex() -> Name {
        Name::parse("mimi.arpa.", None).unwrap()
    }

    fn signed(sii: &Sii, key: &ProviderKey, user: &str, seq: u64) -> Ssi {
        let mut ssi = Ssi {
            version: 1,
            context: Context::Any,
            withdrawn: false,
            priority: 10,
            seq,
            not_before: 1_700_000_000,
            not_after: 1_900_000_000,
            method: Method::SmsOtp,
            verified_at: 1_700_000_000,
            provider: key.provider.clone(),
            uri: format!(
                "mimi://{}/u/{user}",
                key.provider.to_string().trim_end_matches('.')
            ),
            key_id: key.key_id(),
            signature: [0u8; 64],
        };
        ssi.sign(&sii.owner_name(&apex()).unwrap(), &key.signing);
        ssi
    }

    struct Fixture {
        db: ZonePirDb,
        trust: TrustStore,
        expected: Vec<(Sii, Vec<Vec<u8>>)>,
    }

    /// `options` with Respire's table (one 256-byte slot per bucket, [`super::super::Scheme::table`]).
    /// Loads the tests give for MulPIR's 4-slot buckets (0.85-0.9) scale to 0.4-0.45: one-slot
    /// cuckoo tables fail above 0.5.
    fn respire(options: &BuildOptions) -> BuildOptions {
        let mut o = options.clone();
        let load = o.load;
        super::super::Scheme::Respire.table(&mut o);
        o.load = (load * 0.5).min(o.load);
        o
    }

    fn fixture(options: &BuildOptions) -> Fixture {
        let provider = Name::parse("signal.example.", None).unwrap();
        let key = ProviderKey::generate(provider.clone());
        let mut trust = TrustStore::new();
        trust.add(provider, key.verifying_key());
        let mut entries = Vec::new();
        let mut expected = Vec::new();
        for i in 0..300u32 {
            let sii = Sii::parse(&format!("+1555{:07}", 1_000_000 + i), None).unwrap();
            // Most identifiers have one mapping; every 50th has many (spill).
            let n = if i % 50 == 7 { 5 } else { 1 };
            let records: Vec<Vec<u8>> = (0..n)
                .map(|k| signed(&sii, &key, &format!("user{i}-{k}"), k as u64).to_wire())
                .collect();
            entries.push((sii.to_string(), records.clone()));
            expected.push((sii, records));
        }
        let zone = Name::parse("1.e164.mimi.arpa.", None).unwrap();
        let (db, report) =
            ZonePirDb::<Respire>::build(&zone, &SECRET, 7, &respire(options), entries).unwrap();
        assert_eq!(report.identifiers, 300);
        assert!(report.spilled >= 6);
        assert!(report.rejected.is_empty());
        Fixture {
            db,
            trust,
            expected,
        }
    }

    fn private_lookup(
        f: &Fixture,
        client: &ZonePirClient,
        key: &RespireKey,
        sii: &Sii,
        sizes: &mut Vec<(usize, usize)>,
    ) -> Vec<Vec<u8>> {
        let input = sii.to_string();
        let (state, request) = oprf::blind(&[input.as_bytes()]).unwrap();
        let response = f.db.oprf_evaluate(&request).unwrap();
        let config = PirConfig::from_wire(&f.db.config().to_wire()).unwrap();
        let y = state.finalize(&response, &config.oprf_public_key).unwrap()[0];
        client
            .lookup_with(&y, 2, |shard, query| {
                let r = f.db.answer(shard, key, query)?;
                sizes.push((query.len(), r.len()));
                Ok(r)
            })
            .unwrap()
    }

    #[test]
    fn private_lookup_finds_exactly_the_records_and_verifies() {
        let options = BuildOptions {
            shard_count: 2,
            table_seed: Some(5),
            ..BuildOptions::default()
        };
        let f = fixture(&options);
        let config = PirConfig::from_wire(&f.db.config().to_wire()).unwrap();
        assert_eq!(&config, f.db.config());
        let (client, key_bytes) = ZonePirClient::<Respire>::new(config).unwrap();
        let key = f.db.parse_key(&key_bytes).unwrap();
        let mut sizes = Vec::new();
        // A spilled identifier, an ordinary one, and one that is not in the zone.
        for idx in [7usize, 10, 57] {
            let (sii, records) = &f.expected[idx];
            let got = private_lookup(&f, &client, &key, sii, &mut sizes);
            assert_eq!(&got, records, "{sii}");
            let owner = sii.owner_name(&apex()).unwrap();
            for rdata in &got {
                let ssi = Ssi::from_wire(rdata).unwrap();
                verify_against(&ssi, &owner, &f.trust, 1_800_000_000).unwrap();
            }
        }
        let absent = Sii::parse("+15559999999", None).unwrap();
        assert!(private_lookup(&f, &client, &key, &absent, &mut sizes).is_empty());
        // Same request and response sizes for present and absent identifiers.
        let (q, r) = sizes[0];
        assert!(sizes.iter().all(|&s| s == (q, r)), "{sizes:?}");
        assert_eq!(q, f.db.query_len());
        assert_eq!(r, f.db.response_len());
    }

    #[test]
    fn records_copied_to_another_identifier_fail_verification() {
        // The slot opens for the asker only; records inside still carry their own owner.
        let f = fixture(&BuildOptions {
            table_seed: Some(1),
            ..BuildOptions::default()
        });
        let (sii_a, records_a) = &f.expected[1];
        let (sii_b, _) = &f.expected[2];
        let ssi = Ssi::from_wire(&records_a[0]).unwrap();
        let owner_b = sii_b.owner_name(&apex()).unwrap();
        assert!(verify_against(&ssi, &owner_b, &f.trust, 1_800_000_000).is_err());
        let owner_a = sii_a.owner_name(&apex()).unwrap();
        assert!(verify_against(&ssi, &owner_a, &f.trust, 1_800_000_000).is_ok());
    }

    #[test]
    fn config_round_trips_and_rejects_garbage() {
        let c = PirConfig {
            scheme: 1,
            params: 1,
            epoch: 99,
            shard_count: 4,
            slot_size: 256,
            bucket_slots: 4,
            buckets: 1000,
            table_seed: 77,
            batch_log: 7,
            oprf_public_key: [3u8; 32],
        };
        let w = c.to_wire();
        assert_eq!(w.len(), CONFIG_LEN);
        assert_eq!(PirConfig::from_wire(&w).unwrap(), c);
        assert!(PirConfig::from_wire(&w[..62]).is_err());
        let mut bad = w.clone();
        bad[0] = 9;
        assert!(PirConfig::from_wire(&bad).is_err());
        let mut zero_shards = c.clone();
        zero_shards.shard_count = 0;
        assert!(PirConfig::from_wire(&zero_shards.to_wire()).is_err());
    }

    #[test]
    fn build_reports_rejected_identifiers() {
        let zone = Name::parse("example.com.email.mimi.arpa.", None).unwrap();
        let entries = vec![
            ("a@example.com".to_string(), vec![vec![1u8; 100]]),
            ("a@example.com".to_string(), vec![vec![2u8; 100]]),
            ("b@example.com".to_string(), vec![vec![3u8; 200]; 40]),
            ("c@example.com".to_string(), vec![]),
        ];
        let options = BuildOptions {
            table_seed: Some(3),
            max_spill: 4,
            ..BuildOptions::default()
        };
        let (db, report) =
            ZonePirDb::<Respire>::build(&zone, &SECRET, 1, &respire(&options), entries).unwrap();
        assert_eq!(report.identifiers, 1);
        assert_eq!(report.rejected.len(), 2);
        assert!(db.memory_bytes() > 0);
        assert!(matches!(
            db.answer(
                5,
                &db.parse_key(
                    &ZonePirClient::<Respire>::new(db.config().clone())
                        .unwrap()
                        .1
                )
                .unwrap(),
                &[]
            ),
            Err(PirError::NoSuchShard { .. })
        ));
    }

    // Incremental updates. Small tables (about 2^11 slots) and synthetic records keep these
    // fast; the whole PIR path (OPRF, Respire queries and answers, client open) is real.

    type Expected = std::collections::BTreeMap<String, Vec<Vec<u8>>>;

    fn random_records(rng: &mut StdRng, n: usize) -> Vec<Vec<u8>> {
        use rand::Rng;
        (0..n)
            .map(|_| {
                let mut r = vec![0u8; rng.gen_range(60..150)];
                rng.fill_bytes(&mut r);
                r
            })
            .collect()
    }

    fn small_zone(n: usize, options: &BuildOptions, rng: &mut StdRng) -> (ZonePirDb, Expected) {
        let mut expected = Expected::new();
        for i in 0..n {
            // Every tenth identifier has two records (two slots).
            let records = random_records(rng, 1 + usize::from(i % 10 == 3));
            expected.insert(format!("+1555{:07}", i), records);
        }
        let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let entries: Vec<_> = expected.clone().into_iter().collect();
        let (db, report) =
            ZonePirDb::<Respire>::build(&zone, &SECRET, 11, &respire(options), entries).unwrap();
        assert_eq!(report.identifiers, n);
        assert!(report.rejected.is_empty());
        (db, expected)
    }

    fn y_of<P: IndexPir>(db: &ZonePirDb<P>, input: &str) -> OprfOutput {
        let (state, request) = oprf::blind(&[input.as_bytes()]).unwrap();
        let response = db.oprf_evaluate(&request).unwrap();
        state
            .finalize(&response, &db.config().oprf_public_key)
            .unwrap()[0]
    }

    /// The records the client gets from the opened chunks of probes `0..`, as `lookup_with`
    /// reassembles them.
    fn reassemble(opened: Vec<Option<Chunk>>) -> Result<Vec<Vec<u8>>, PirError> {
        let mut chunks = Vec::new();
        for (i, c) in opened.into_iter().enumerate() {
            match c {
                None if i == 0 => return Ok(Vec::new()),
                None => break,
                Some(c) => {
                    let more = c.more_after(i as u32);
                    chunks.push(c);
                    if !more {
                        break;
                    }
                }
            }
        }
        db::assemble(&chunks)
    }

    /// Batch queries (Respire): every present identifier's records and every absent one's
    /// absence, from batches that put several lookups' buckets in one query per PIR bucket,
    /// before and after an update within the epoch.
    #[test]
    fn batched_lookups_equal_the_records() {
        let mut rng = StdRng::seed_from_u64(21);
        let options = BuildOptions {
            bucket_slots: 1,
            load: 0.45,
            batch: 16,
            max_spill: 4,
            min_probes: 2,
            table_seed: Some(5),
            ..BuildOptions::default()
        };
        let mut expected = Expected::new();
        for i in 0..30 {
            expected.insert(
                format!("+1555{:07}", i),
                random_records(&mut rng, 1 + usize::from(i % 10 == 3)),
            );
        }
        let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let entries: Vec<_> = expected.clone().into_iter().collect();
        let (db, _) = ZonePirDb::<Respire>::build(&zone, &SECRET, 11, &options, entries).unwrap();
        assert_eq!(db.config().batch(), 16);
        let (client, key) = ZonePirClient::<Respire>::new(db.config().clone()).unwrap();
        let key = db.parse_key(&key).unwrap();
        let lookup = |inputs: &[String], expected: &Expected| {
            let probes_per = db.probes() as u32;
            let config = db.config();
            let probes: Vec<Probe> = inputs
                .iter()
                .flat_map(|input| {
                    let y = y_of(&db, input);
                    (0..probes_per).map(move |i| Probe::new(config, &y, i))
                })
                .collect();
            let batches = client.batch_probes(&probes).unwrap();
            assert!(batches.len() >= probes.len() / 8);
            let mut opened: Vec<Option<Option<Chunk>>> = vec![None; probes.len()];
            for batch in &batches {
                let responses: Vec<Vec<u8>> = batch
                    .queries
                    .iter()
                    .map(|q| db.answer(batch.shard, &key, q).unwrap())
                    .collect();
                let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
                for (&i, r) in batch
                    .members
                    .iter()
                    .zip(client.open_batch(&probes, batch, &refs).unwrap())
                {
                    opened[i] = Some(r.unwrap());
                }
            }
            for (n, input) in inputs.iter().enumerate() {
                let at = n * probes_per as usize;
                let chunks = opened[at..at + probes_per as usize]
                    .iter()
                    .map(|o| o.clone().expect("every probe answered"))
                    .collect();
                let got = reassemble(chunks).unwrap();
                assert_eq!(&got, expected.get(input).unwrap_or(&Vec::new()), "{input}");
            }
        };
        let mut inputs: Vec<String> = expected.keys().cloned().collect();
        inputs.extend((0..4).map(|i| format!("+1666{:07}", i)));
        lookup(&inputs, &expected);
        let changed = "+15550000007".to_string();
        let records = random_records(&mut rng, 1);
        db.update([(changed.clone(), records.clone())]).unwrap();
        expected.insert(changed.clone(), records);
        lookup(&[changed, inputs[3].clone(), inputs[33].clone()], &expected);
        assert_eq!(client.decode_failures(), 0);
    }

    /// Every listed input looked up with the client's probe/open against `expected` (absent:
    /// empty). The buckets come from the table the PIR database is encoded from (the replica
    /// path: a Respire query per bucket would take minutes); every 25th input's buckets are
    /// also fetched through real PIR queries, whose decoded answers must equal those bytes
    /// and whose opening must give the same records.
    fn check_all(db: &ZonePirDb, inputs: &[(&String, Vec<Vec<u8>>)]) {
        assert_eq!(db.config().shard_count, 1);
        let (client, key) = ZonePirClient::<Respire>::new(db.config().clone()).unwrap();
        let key = db.parse_key(&key).unwrap();
        let buckets = db.config().buckets;
        let (_, table) = db.replica_buckets(0, 0, buckets).unwrap();
        let size = table.len() / buckets as usize;
        let bucket = |b: u32| &table[b as usize * size..(b as usize + 1) * size];
        let t = Instant::now();
        let mut fetched = 0;
        for (n, (input, records)) in inputs.iter().enumerate() {
            let y = y_of(db, input);
            let probes: Vec<Probe> = (0..db.probes() as u32)
                .map(|i| client.probe(&y, i))
                .collect();
            let opened = probes
                .iter()
                .map(|p| {
                    let [a, b] = p.buckets;
                    client.open_buckets(p, [bucket(a), bucket(b)]).unwrap()
                })
                .collect();
            assert_eq!(&reassemble(opened).unwrap(), records, "{input}");
            if n % 25 == 0 {
                let opened = probes
                    .iter()
                    .map(|p| {
                        let answers = p.buckets.map(|b| {
                            let query = client.pir_client().query(b as usize).unwrap();
                            let answer = db.answer(0, &key, &query).unwrap();
                            let decoded = client.pir_client().decode(b as usize, &answer).unwrap();
                            assert_eq!(decoded, bucket(b), "bucket {b}");
                            answer
                        });
                        fetched += 2;
                        client.open(p, [&answers[0], &answers[1]]).unwrap()
                    })
                    .collect();
                assert_eq!(&reassemble(opened).unwrap(), records, "{input} through PIR");
            }
        }
        eprintln!(
            "check_all: {} inputs, {fetched} PIR answers, in {:?}",
            inputs.len(),
            t.elapsed()
        );
    }

    /// All probes of one lookup answered in one batch (one pass, one snapshot).
    fn batched_lookup(
        db: &ZonePirDb,
        client: &ZonePirClient,
        key: &RespireKey,
        y: &OprfOutput,
    ) -> Result<Vec<Vec<u8>>, PirError> {
        let probes: Vec<Probe> = (0..db.probes() as u32)
            .map(|i| client.probe(y, i))
            .collect();
        let queries: Vec<[Vec<u8>; 2]> = probes
            .iter()
            .map(|p| client.queries(p))
            .collect::<Result<_, _>>()?;
        let items: Vec<(&RespireKey, &[u8])> = queries
            .iter()
            .flat_map(|[a, b]| [(key, &a[..]), (key, &b[..])])
            .collect();
        let answers = db
            .answer_batch(probes[0].shard, &items)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let opened = probes
            .iter()
            .enumerate()
            .map(|(i, p)| client.open(p, [&answers[2 * i], &answers[2 * i + 1]]))
            .collect::<Result<Vec<_>, _>>()?;
        reassemble(opened)
    }

    fn update_options() -> BuildOptions {
        BuildOptions {
            table_seed: Some(9),
            min_probes: 2,
            ..BuildOptions::default()
        }
    }

    use crate::pir::respire::index::RespireKey;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn random_updates_keep_every_lookup_exact_within_the_epoch() {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(1);
        // Built at load 0.85: the adds of the run take it to about 0.9.
        let options = BuildOptions {
            load: 0.85,
            ..update_options()
        };
        let (db, mut expected) = small_zone(800, &options, &mut rng);
        let config = db.config().clone();
        let before = db.table_bytes(0);
        assert_eq!(db.probes(), 2);
        let mut removed = std::collections::BTreeSet::new();
        let mut next = 800usize;
        let (mut evictions, mut buckets, mut plaintexts) = (0, 0, 0);
        let mut times = Vec::new();
        for op in 0..200 {
            let names: Vec<String> = expected.keys().cloned().collect();
            let pick = |rng: &mut StdRng| names[rng.gen_range(0..names.len())].clone();
            // One change per update mostly, every tenth a batch of three.
            let mut changes = Vec::new();
            for _ in 0..if op % 10 == 0 { 3 } else { 1 } {
                let r = rng.gen_range(0..20);
                let change = if r < 7 {
                    next += 1;
                    let n = rng.gen_range(1..=2);
                    (format!("+1555{:07}", next), random_records(&mut rng, n))
                } else if r < 14 {
                    let n = rng.gen_range(1..=2);
                    (pick(&mut rng), random_records(&mut rng, n))
                } else {
                    (pick(&mut rng), Vec::new())
                };
                changes.push(change);
            }
            let report = db
                .update(changes.clone())
                .unwrap_or_else(|e| panic!("op {op}, {} slots used: {e}", db.used_slots()));
            assert!(report.rejected.is_empty());
            assert_eq!(report.entries, changes.len());
            assert_eq!(
                report.added + report.replaced + report.removed + report.absent,
                changes.len()
            );
            for (name, records) in changes {
                if records.is_empty() {
                    expected.remove(&name);
                    removed.insert(name);
                } else {
                    removed.remove(&name);
                    expected.insert(name, records);
                }
            }
            evictions += report.evictions;
            buckets += report.buckets_touched;
            plaintexts += report.plaintexts_reencoded;
            assert!(report.plaintexts_reencoded <= report.buckets_touched);
            times.push(report.elapsed);
        }
        // Same epoch, same published configuration: clients keep their keys.
        assert_eq!(db.config(), &config);
        assert_ne!(db.table_bytes(0), before);
        assert!(evictions > 0, "the table was full enough to evict");
        times.sort();
        eprintln!(
            "200 updates at {} buckets, load {:.3}: {evictions} evictions, {buckets} buckets \
             touched, {plaintexts} plaintexts re-encoded, median {:?}, max {:?}",
            config.buckets,
            db.used_slots() as f64 / config.layout().slots() as f64,
            times[times.len() / 2],
            times[times.len() - 1]
        );
        let mut inputs: Vec<(&String, Vec<Vec<u8>>)> =
            expected.iter().map(|(k, v)| (k, v.clone())).collect();
        inputs.extend(removed.iter().map(|k| (k, Vec::new())));
        let never = "+15559999999".to_string();
        inputs.push((&never, Vec::new()));
        check_all(&db, &inputs);
    }

    #[test]
    fn a_slot_sealed_again_gets_a_fresh_nonce_and_ciphertext() {
        let mut rng = StdRng::seed_from_u64(2);
        let (db, expected) = small_zone(100, &update_options(), &mut rng);
        let (name, records) = expected.iter().next().unwrap();
        let old = db.slot_of(name, 0).unwrap();
        let report = db.update(vec![(name.clone(), records.clone())]).unwrap();
        assert_eq!(report.replaced, 1);
        let new = db.slot_of(name, 0).unwrap();
        let prefix = db::SLOT_PREFIX_LEN;
        assert_eq!(old[..TAG_LEN], new[..TAG_LEN], "same identifier: same tag");
        assert_ne!(old[TAG_LEN..prefix], new[TAG_LEN..prefix], "fresh nonce");
        assert_ne!(old[prefix..], new[prefix..], "different ciphertext");
        assert_eq!(old.len(), new.len());
        check_all(&db, &[(name, records.clone())]);
    }

    #[test]
    fn a_change_that_does_not_fit_needs_a_rebuild_and_changes_nothing() {
        let mut rng = StdRng::seed_from_u64(3);
        let options = BuildOptions {
            load: 0.9,
            ..update_options()
        };
        let (db, expected) = small_zone(300, &options, &mut rng);
        let before = db.table_bytes(0);
        let (first, _) = expected.iter().next().unwrap();
        // More slots than the epoch's two probes (in a batch with a change that would fit).
        let changes = vec![
            (first.clone(), Vec::new()),
            ("+15550000001".to_string(), vec![vec![7u8; 150]; 4]),
        ];
        assert!(matches!(
            db.update(changes),
            Err(PirError::NeedsRebuild(RebuildReason::TooManySlots {
                needed: 4,
                probes: 2
            }))
        ));
        // More entries than the table holds.
        let flood: Vec<_> = (0..200)
            .map(|i| (format!("+1666{i:07}"), random_records(&mut rng, 1)))
            .collect();
        let err = db.update(flood).unwrap_err();
        assert!(
            matches!(
                err,
                PirError::NeedsRebuild(
                    RebuildReason::ShardFull { .. } | RebuildReason::CuckooFailed { .. }
                )
            ),
            "{err}"
        );
        // Nothing changed: the writer's table and every lookup are as before.
        assert_eq!(db.table_bytes(0), before);
        let inputs: Vec<(&String, Vec<Vec<u8>>)> =
            expected.iter().map(|(k, v)| (k, v.clone())).collect();
        let flood0 = "+16660000000".to_string();
        let mut inputs = inputs;
        inputs.push((&flood0, Vec::new()));
        check_all(&db, &inputs);
        // A rejected input (over max_spill) is left out, and its old records go with it.
        let report = db
            .update(vec![(first.clone(), vec![vec![1u8; 200]; 80])])
            .unwrap();
        assert_eq!(report.rejected.len(), 1);
        assert_eq!((report.removed, report.slots_sealed), (1, 0));
        assert!(report.slots_removed >= 1);
        check_all(&db, &[(first, Vec::new())]);
    }

    #[test]
    fn queries_during_updates_see_old_or_new_content() {
        let mut rng = StdRng::seed_from_u64(4);
        let (db, expected) = small_zone(500, &update_options(), &mut rng);
        let mut names = expected.keys();
        let (moving, stable) = (names.next().unwrap().clone(), names.next().unwrap().clone());
        let stable_records = expected[&stable].clone();
        // Versions 0..: one or two slots each, so the spill count changes too.
        let versions: Vec<Vec<Vec<u8>>> = (0..12)
            .map(|v| {
                (0..1 + v % 2)
                    .map(|k| {
                        let mut r = vec![v as u8; 100 + k];
                        r[0] = 0xee;
                        r
                    })
                    .collect()
            })
            .collect();
        db.update(vec![(moving.clone(), versions[0].clone())])
            .unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        // Reader iterations, so that each update waits for both readers to look again
        // (a fixed pause raced the readers on a loaded machine).
        let progress = std::sync::atomic::AtomicUsize::new(0);
        let seen = std::sync::Mutex::new(Vec::new());
        let ready = std::sync::Barrier::new(3);
        std::thread::scope(|scope| {
            for reader in 0..2 {
                let (db, done, seen, ready, progress) = (&db, &done, &seen, &ready, &progress);
                let (moving, stable, versions) = (&moving, &stable, &versions);
                let stable_records = &stable_records;
                scope.spawn(move || {
                    let (client, key) = ZonePirClient::<Respire>::new(db.config().clone()).unwrap();
                    let key = db.parse_key(&key).unwrap();
                    let (ym, ys) = (y_of(db, moving), y_of(db, stable));
                    let mut last = 0usize;
                    let mut lookups = 0;
                    let mut distinct = 0;
                    ready.wait();
                    while !done.load(std::sync::atomic::Ordering::Relaxed) || lookups < 2 {
                        // Batched: all queries of a lookup read one snapshot.
                        let got = batched_lookup(db, &client, &key, &ym).unwrap();
                        let v = versions
                            .iter()
                            .position(|v| v == &got)
                            .unwrap_or_else(|| panic!("reader {reader}: not a version: {got:?}"));
                        assert!(v >= last, "reader {reader} went back from {last} to {v}");
                        distinct += usize::from(v != last);
                        last = v;
                        assert_eq!(
                            &batched_lookup(db, &client, &key, &ys).unwrap(),
                            stable_records
                        );
                        // One query after the other (as over DNS): each slot is old or new,
                        // the records whole; a lookup straddling an update may miss (absent)
                        // or see two versions (an error), never other records.
                        match client.lookup_with(&ym, 2, |shard, q| db.answer(shard, &key, q)) {
                            Ok(got) if got.is_empty() => {}
                            Ok(got) => assert!(versions.contains(&got), "{got:?}"),
                            Err(PirError::Malformed { .. }) => {}
                            Err(e) => panic!("reader {reader}: {e}"),
                        }
                        lookups += 1;
                        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // After the last update, the last version.
                    let got = batched_lookup(db, &client, &key, &ym).unwrap();
                    assert_eq!(versions.last(), Some(&got));
                    last = versions.len() - 1;
                    seen.lock().unwrap().push((reader, lookups, distinct, last));
                });
            }
            ready.wait();
            for v in versions.iter().skip(1) {
                let start = progress.load(std::sync::atomic::Ordering::Relaxed);
                let deadline = Instant::now() + Duration::from_secs(20);
                while progress.load(std::sync::atomic::Ordering::Relaxed) < start + 2
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                db.update(vec![(moving.clone(), v.clone())]).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let seen = seen.into_inner().unwrap();
        eprintln!("readers (id, lookups, versions changed, last version seen): {seen:?}");
        assert!(seen
            .iter()
            .all(|&(_, n, _, last)| n >= 2 && last == versions.len() - 1));
        // The readers really ran during the updates.
        assert!(
            seen.iter().any(|&(_, _, changed, _)| changed >= 2),
            "{seen:?}"
        );
    }
}
