//! A zone's private-lookup database (DP side) and the client-side steps of a lookup.
//!
//! DP: [`ZonePirDb::build`] takes `(OPRF input, [SSI wire RDATA])` pairs, evaluates
//! the OPRF on each input with the zone's key for the epoch, seals the records into slots, places
//! the slots of each shard in a cuckoo table and preprocesses the tables for PIR. It then
//! answers OPRF requests ([`ZonePirDb::oprf_evaluate`]) and PIR queries ([`ZonePirDb::answer`])
//! and publishes [`ZonePirDb::config`] (the PIR part of PIRCFG).
//!
//! Client: [`ZonePirClient::new`] from the published [`PirConfig`] (keys to upload once per
//! zone and epoch), then per identifier and spill index a [`Probe`] (shard in clear, two buckets
//! hidden), two PIR queries, and [`ZonePirClient::open`] on the two responses.
//! [`ZonePirClient::lookup_with`] runs that loop over any transport.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::RngCore;
use rayon::prelude::*;

use super::db::{self, Chunk, TableLayout};
use super::keyword::{KeywordSource, SlotKeys};
use super::mulpir::MulPir;
use super::oprf::{self, OprfKey, OprfOutput};
use super::scheme::{DbShape, IndexPir, PirClient, PirServer};
use super::{PirError, Reader, PIR_VERSION};
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
    pub oprf_public_key: [u8; oprf::ELEMENT_LEN],
}

/// Bytes of [`PirConfig::to_wire`].
pub const CONFIG_LEN: usize = 63;

impl PirConfig {
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONFIG_LEN);
        out.extend_from_slice(&[PIR_VERSION, self.scheme, self.params, 0]);
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
        let _flags = r.u8("flags")?;
        let config = PirConfig {
            scheme,
            params,
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

    /// The PIR database shape: one element per bucket.
    pub fn shape(&self) -> DbShape {
        let l = self.layout();
        DbShape {
            num_elements: l.buckets as usize,
            element_size: l.bucket_size(),
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
    /// Evictions allowed per cuckoo insertion before the build restarts with a new seed.
    pub max_evictions: usize,
    /// Seeds tried before giving up.
    pub max_attempts: u32,
    /// Most slots one identifier may take (spill indexes).
    pub max_spill: usize,
    /// First table seed; `None` picks a random one.
    pub table_seed: Option<u64>,
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
            table_seed: None,
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

/// A zone's private-lookup database for one epoch.
pub struct ZonePirDb<P: IndexPir = MulPir> {
    config: PirConfig,
    oprf: OprfKey,
    shards: Vec<P::Server>,
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
    /// The epoch must change whenever the content does (it keys the OPRF and the
    /// keywords). Identifiers that cannot be stored are reported, not fatal.
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
            let placed: Option<Vec<Vec<Option<u32>>>> = per_shard
                .par_iter()
                .map(|(items, _)| {
                    let choices: Vec<[u32; 2]> = items
                        .iter()
                        .map(|it| KeywordSource::new(&it.y, epoch).buckets(it.index, seed, buckets))
                        .collect();
                    db::place(&layout, &choices, options.max_evictions, seed)
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
        };
        let mut shards = Vec::with_capacity(per_shard.len());
        for ((_, bytes), placement) in per_shard.into_iter().zip(placements) {
            let table = db::materialise(&layout, &placement, &bytes);
            drop(bytes);
            let server = P::Server::load(&shape, &table)?;
            report.memory_bytes += server.memory_bytes();
            shards.push(server);
        }
        report.pir_time = started.elapsed();

        let config = PirConfig {
            scheme: P::SCHEME_ID,
            params: super::mulpir::PARAMS_ID,
            epoch,
            shard_count: options.shard_count,
            slot_size,
            bucket_slots,
            buckets,
            table_seed,
            oprf_public_key: oprf.public_key(),
        };
        Ok((
            ZonePirDb {
                config,
                oprf,
                shards,
            },
            report,
        ))
    }

    pub fn config(&self) -> &PirConfig {
        &self.config
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

    /// Resident bytes of all preprocessed shards.
    pub fn memory_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.memory_bytes()).sum()
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

/// A client's PIR state for one zone and epoch.
pub struct ZonePirClient<P: IndexPir = MulPir> {
    config: PirConfig,
    client: P::Client,
}

impl<P: IndexPir> ZonePirClient<P> {
    /// Makes fresh PIR keys for the zone's published config. Returns the client and the
    /// evaluation-key bytes to upload (once per zone and epoch; use fresh keys per zone so
    /// DPs cannot link a client's lookups across zones).
    pub fn new(config: PirConfig) -> Result<(ZonePirClient<P>, Vec<u8>), PirError> {
        if config.scheme != P::SCHEME_ID {
            return Err(PirError::Param(format!(
                "zone uses PIR scheme {}, this client speaks {} ({})",
                config.scheme,
                P::SCHEME_ID,
                P::NAME
            )));
        }
        config.layout().validate()?;
        let (client, key) = P::Client::setup(&config.shape())?;
        Ok((ZonePirClient { config, client }, key))
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
        let source = KeywordSource::new(y, self.config.epoch);
        Probe {
            shard: source.shard(self.config.shard_count),
            index,
            buckets: source.buckets(index, self.config.table_seed, self.config.buckets),
            keys: source.slot_keys(index),
        }
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
        db::open(&probe.keys, &[&a, &b], &self.config.layout())
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
        let (db, report) = ZonePirDb::<MulPir>::build(&zone, &SECRET, 7, options, entries).unwrap();
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
        key: &<MulPirServerOf as PirServer>::Key,
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

    type MulPirServerOf = <MulPir as IndexPir>::Server;

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
        let (client, key_bytes) = ZonePirClient::<MulPir>::new(config).unwrap();
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
            ZonePirDb::<MulPir>::build(&zone, &SECRET, 1, &options, entries).unwrap();
        assert_eq!(report.identifiers, 1);
        assert_eq!(report.rejected.len(), 2);
        assert!(db.memory_bytes() > 0);
        assert!(matches!(
            db.answer(
                5,
                &db.parse_key(&ZonePirClient::<MulPir>::new(db.config().clone()).unwrap().1)
                    .unwrap(),
                &[]
            ),
            Err(PirError::NoSuchShard { .. })
        ));
    }
}
