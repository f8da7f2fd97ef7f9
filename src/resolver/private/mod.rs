//! The client side of private lookups (DESIGN.md sections 7 and 11): find each
//! identifier's zone through the tree without asking any DP for more of the owner name than
//! the zone's own name, then at that zone's DP one OPRF evaluation per identifier (up to 64
//! in a request) and either a local lookup in the encrypted replica the resolver holds or
//! PIR queries, and verify the records found in the slots.
//!
//! A batch (contact sync) groups its identifiers by zone: one connection, OPRF requests of
//! up to 64 identifiers, then the replica or PIR per identifier; results in input order.

mod cache;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::rr::{RData as HRData, Record, RecordType};
use tracing::debug;

use self::session::{upload, upload_if_new, Refusal, Session};
use super::cache::Delegation;
use super::{LookupResult, NotFound, Outcome, ResolveError, Resolver, Walk, TYPE_NS};
use crate::name::Name;
use crate::pir::carrier::{self, ede, PirCfgRecord, Request, Response};
use crate::pir::oprf::{self, OprfOutput};
use crate::pir::{Chunk, ZoneClient};
use crate::record::{Context, TYPE_PIRCFG};
use crate::sii::Sii;

pub use self::cache::{PrivateAnswer, PrivateCache, Source};

/// Identifiers in one OPRF request (the DP accepts up to 64).
pub const OPRF_BATCH: usize = 64;

/// A batch query is used for several identifiers whose PIR elements fill at least
/// 1/BATCH_FILL of it: a batch of capacity `c` costs the DP about `1.5c` bucket queries, each
/// over about `2/c` of the table plus a fixed expansion. At 2^20 slots 64 lookups cost 27 s
/// in a batch against 2.8 s each alone; on tiny zones the fixed part dominates and a batch
/// pays only when well filled (`tools/bench/pir.sh`).
const BATCH_FILL: usize = 2;

/// One PIR query's context: where it goes and how a refusal reads.
struct Ask<'a> {
    zone: &'a Name,
    epoch: u64,
    keys: &'a KeySet,
    shard: u32,
    refused: &'a (dyn Fn(Refusal) -> ResolveError + Sync),
}

impl Ask<'_> {
    /// Sends one PIR query and returns the DP's response; an unknown or evicted key is
    /// uploaded (again) once and the query asked once more.
    async fn query(
        &self,
        session: &mut Session<'_>,
        query: Vec<u8>,
        uploaded: &mut bool,
    ) -> Result<Vec<u8>, ResolveError> {
        let request = Request::Query {
            epoch: self.epoch,
            key_id: self.keys.key_id,
            shard: self.shard,
            query,
        };
        let mut answer = session.exchange(&request).await?;
        if matches!(&answer, Err(r) if r.code == Some(ede::UNKNOWN_KEY)) && !*uploaded {
            upload(session, self.epoch, self.keys).await?;
            *uploaded = true;
            answer = session.exchange(&request).await?;
        }
        match answer {
            Ok(Response::Query(bytes)) => Ok(bytes),
            Ok(_) => Err(private_error(
                self.zone,
                "unexpected response to a PIR query",
            )),
            Err(r) => Err((self.refused)(r)),
        }
    }
}

/// What a PIR lookup found from its opened chunks (none: the identifier is absent).
fn pir_fetched(
    zone: &Name,
    epoch: u64,
    shard: u32,
    chunks: &[Chunk],
) -> Result<Fetched, ResolveError> {
    let records = if chunks.is_empty() {
        Vec::new()
    } else {
        crate::pir::db::assemble(chunks).map_err(|e| private_error(zone, e))?
    };
    Ok(Fetched {
        records,
        source: Source {
            epoch,
            shard,
            buckets: Vec::new(),
        },
        replica_generation: None,
    })
}

/// A client's PIR keys for one zone and epoch, with the id of the uploaded copy.
pub(super) struct KeySet {
    client: ZoneClient,
    key_bytes: Vec<u8>,
    key_id: [u8; 16],
    /// Set once a DP has acknowledged the whole key.
    sent: std::sync::atomic::AtomicBool,
}

/// PIR keys by (zone, epoch): made and uploaded once, reused by later lookups.
#[derive(Default)]
pub(super) struct KeyStore {
    keys: Mutex<HashMap<(Name, u64), Arc<KeySet>>>,
}

fn private_error(zone: &Name, reason: impl std::fmt::Display) -> ResolveError {
    ResolveError::Private {
        zone: zone.clone(),
        reason: reason.to_string(),
    }
}

/// What one walk step learnt, kept for the rest of a batch.
#[derive(Clone)]
enum Step {
    Referral(Arc<Delegation>),
    NoSuchName,
    Other,
}

/// PIRCFG records and referrals seen by the walks of one batch, so that 300 identifiers in
/// three zones cost the walk of three.
#[derive(Default)]
struct WalkMemo {
    pircfg: HashMap<Name, Option<PirCfgRecord>>,
    steps: HashMap<Name, Step>,
}

/// The zone found for an identifier.
type Found = (Arc<Delegation>, PirCfgRecord);

/// A zone's identifiers in a batch: each distinct owner with the inputs (index, walk
/// queries) that name it.
type Members = Vec<(Name, Vec<(usize, u32)>)>;

/// One identifier's slots, fetched.
struct Fetched {
    records: Vec<Vec<u8>>,
    source: Source,
    /// From a replica at this generation (None: by PIR).
    replica_generation: Option<u64>,
}

impl Resolver {
    /// A private lookup: the DPs learn the zones on the way and, at the last one, a shard
    /// number (PIR) or nothing but one OPRF evaluation (replica); never the identifier.
    /// Finds exactly what `lookup` finds.
    pub async fn lookup_private(
        &self,
        sii: &Sii,
        context: Option<Context>,
    ) -> Result<LookupResult, ResolveError> {
        // One bound on the whole lookup (the walk, the OPRF and the PIR exchanges), as for
        // public lookups.
        let deadline = self.config.limits.lookup_deadline;
        let lookup = self.lookup_private_batch(std::slice::from_ref(sii), context);
        match tokio::time::timeout(deadline, lookup).await {
            Ok(mut r) => r.pop().unwrap_or_else(|| {
                Err(private_error(
                    &self.config.apex,
                    "the batch lost its lookup",
                ))
            }),
            Err(_) => Err(ResolveError::Deadline {
                owner: sii.owner_name(&self.config.apex)?,
                after: deadline,
            }),
        }
    }

    /// Private lookups of many identifiers (a contact sync): results in input order, each
    /// exactly what [`Resolver::lookup_private`] gives for it.
    pub async fn lookup_private_batch(
        &self,
        siis: &[Sii],
        context: Option<Context>,
    ) -> Vec<Result<LookupResult, ResolveError>> {
        self.lookup_private_batch_with(siis, context, &|_| {}).await
    }

    /// As [`Resolver::lookup_private_batch`], calling `progress(n)` as `n` more results
    /// are ready.
    pub async fn lookup_private_batch_with(
        &self,
        siis: &[Sii],
        context: Option<Context>,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Vec<Result<LookupResult, ResolveError>> {
        let context = context.unwrap_or(self.config.context);
        let mut results: Vec<Option<Result<LookupResult, ResolveError>>> =
            (0..siis.len()).map(|_| None).collect();
        let mut memo = WalkMemo::default();
        // Per zone, in order of first use: the zone, its PIRCFG, and each distinct owner
        // with the inputs (index, walk queries) that name it - a contact list may repeat
        // one, and each owner costs one OPRF evaluation.
        let mut groups: BTreeMap<usize, (Found, Members)> = BTreeMap::new();
        let mut group_of: HashMap<Name, usize> = HashMap::new();
        for (i, sii) in siis.iter().enumerate() {
            let started = Instant::now();
            let owner = match sii.owner_name(&self.config.apex) {
                Ok(o) => o,
                Err(e) => {
                    results[i] = Some(Err(e.into()));
                    progress(1);
                    continue;
                }
            };
            if let Some(hit) = self.private_cache.get(&owner) {
                self.stats
                    .cache_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                results[i] = Some(self.private_result(owner, &hit, context, 0, started, true));
                progress(1);
                continue;
            }
            self.stats
                .cache_misses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut walk = Walk {
                queries: 0,
                referrals: 0,
                resolving: Vec::new(),
            };
            match self.find_zone_memo(&owner, &mut walk, &mut memo).await {
                Ok(Ok(found)) => {
                    let next = group_of.len();
                    let g = *group_of.entry(found.0.zone.clone()).or_insert(next);
                    let members = &mut groups.entry(g).or_insert_with(|| (found, Vec::new())).1;
                    match members.iter_mut().find(|(o, _)| *o == owner) {
                        Some((_, inputs)) => inputs.push((i, walk.queries)),
                        None => members.push((owner, vec![(i, walk.queries)])),
                    }
                }
                Ok(Err(nf)) => {
                    results[i] = Some(Ok(not_discoverable(owner, nf, walk.queries, started)));
                    progress(1);
                }
                Err(e) => {
                    results[i] = Some(Err(e));
                    progress(1);
                }
            }
        }
        for (_, (found, members)) in groups {
            let started = Instant::now();
            let owners: Vec<Name> = members.iter().map(|(o, _)| o.clone()).collect();
            let mut outcome = self.fetch_group(&found, &owners).await;
            if matches!(outcome, Err(ResolveError::EpochChanged { .. })) {
                // The DP moved to a new epoch since PIRCFG was read: read it again, once.
                let mut fresh = WalkMemo::default();
                let mut walk = Walk {
                    queries: 0,
                    referrals: 0,
                    resolving: Vec::new(),
                };
                outcome = match self.find_zone_memo(&owners[0], &mut walk, &mut fresh).await {
                    Ok(Ok(again)) => self.fetch_group(&again, &owners).await,
                    Ok(Err(_)) => outcome,
                    Err(e) => Err(e),
                };
            }
            match outcome {
                Ok((fetched, server, exchanges)) => {
                    let per = exchanges / owners.len().max(1) as u32;
                    for ((owner, inputs), f) in members.into_iter().zip(fetched) {
                        let generation = f.as_ref().ok().and_then(|f| f.replica_generation);
                        let answer = f.map(|f| PrivateAnswer {
                            records: f.records,
                            zone: found.0.zone.clone(),
                            server,
                            source: f.source,
                        });
                        for (n, (i, walked)) in inputs.into_iter().enumerate() {
                            let result = match &answer {
                                Ok(a) => self.private_result(
                                    owner.clone(),
                                    a,
                                    context,
                                    walked + per,
                                    started,
                                    n > 0,
                                ),
                                Err(e) => Err(private_error(&found.0.zone, e)),
                            };
                            results[i] = Some(result);
                            progress(1);
                        }
                        // Only a replica's answers are kept: its deltas say when one
                        // changes. A PIR answer is not (the DP tells nothing of changes to
                        // a resolver that holds no table), so the next lookup asks again.
                        // ... and only when no delta landed since it was read (the delta
                        // would have dropped it, had it been cached already).
                        let current = self.replicas.get(&found.0.zone).map(|r| r.generation());
                        match answer {
                            Ok(a) if generation.is_some() && generation == current => {
                                self.private_cache.insert(owner, a)
                            }
                            _ => {}
                        }
                    }
                }
                // One identifier keeps the error as it is; several each get its text.
                Err(e) if members.len() == 1 && members[0].1.len() == 1 => {
                    results[members[0].1[0].0] = Some(Err(e));
                    progress(1);
                }
                Err(e) => {
                    let text = e.to_string();
                    for (_, inputs) in members {
                        for (i, _) in inputs {
                            results[i] = Some(Err(private_error(&found.0.zone, &text)));
                            progress(1);
                        }
                    }
                }
            }
        }
        let results: Vec<Result<LookupResult, ResolveError>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(private_error(&self.config.apex, "not looked up"))))
            .collect();
        self.stats
            .lookups
            .fetch_add(results.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for r in &results {
            self.stats.count_outcome(r);
        }
        results
    }

    /// The lookup result of fetched (or cached) slots: every record verified against the
    /// owner exactly as a public lookup does, then the context applied.
    fn private_result(
        &self,
        owner: Name,
        answer: &PrivateAnswer,
        context: Context,
        queries: u32,
        started: Instant,
        from_cache: bool,
    ) -> Result<LookupResult, ResolveError> {
        let ttl = self.config.cache.max_ttl.as_secs().min(u64::from(u32::MAX)) as u32;
        let records: Vec<Record> = answer
            .records
            .iter()
            .map(|w| {
                Record::from_rdata(
                    owner.to_hickory(),
                    ttl,
                    HRData::Unknown {
                        code: RecordType::from(crate::record::TYPE_SSI),
                        rdata: hickory_proto::rr::rdata::NULL::with(w.clone()),
                    },
                )
            })
            .collect();
        // Keys from the tree only as cached: fetching one here would tell the tree's root
        // which provider's mapping this private lookup found.
        let tree = self.tree_keys(&records);
        let (mappings, rejected) = self.verify(&owner, &records, tree.as_ref());
        if mappings.is_empty() && !rejected.is_empty() {
            return Err(ResolveError::AllRejected { owner, rejected });
        }
        let outcome = if records.is_empty() {
            Outcome::NotDiscoverable(NotFound::NoSuchName)
        } else {
            let picked: Vec<_> = mappings
                .iter()
                .filter(|m| m.ssi.context.matches(context))
                .cloned()
                .collect();
            if !picked.is_empty() {
                Outcome::Found(picked)
            } else if mappings.is_empty() {
                Outcome::NotDiscoverable(NotFound::NoMappings)
            } else {
                Outcome::NotDiscoverable(NotFound::NoneForContext(context))
            }
        };
        Ok(LookupResult {
            owner,
            outcome,
            zone: Some(answer.zone.clone()),
            server: Some(answer.server),
            from_cache,
            stale: false,
            queries,
            elapsed: started.elapsed(),
            rejected,
            ttl: 0,
            soa: None,
        })
    }

    /// Walks from the root to the zone that holds `owner`, asking each zone for its PIRCFG
    /// and only for the delegations it lists. A zone without PIRCFG gets one minimised
    /// question, and private lookup stops there rather than reveal more labels.
    pub(super) async fn find_private_zone(
        &self,
        owner: &Name,
        walk: &mut Walk,
    ) -> Result<Result<Found, NotFound>, ResolveError> {
        self.find_zone_memo(owner, walk, &mut WalkMemo::default())
            .await
    }

    async fn find_zone_memo(
        &self,
        owner: &Name,
        walk: &mut Walk,
        memo: &mut WalkMemo,
    ) -> Result<Result<Found, NotFound>, ResolveError> {
        let mut zone = self.root_delegation();
        loop {
            let cfg = match memo.pircfg.get(&zone.zone) {
                Some(c) => c.clone(),
                None => {
                    let cfg_name =
                        carrier::pir_name(&zone.zone).map_err(|e| private_error(&zone.zone, e))?;
                    let cfg = match self.ask_zone(&zone, &cfg_name, TYPE_PIRCFG, walk).await? {
                        (super::Reply::Answer(records), _, _) => {
                            records.iter().find_map(|r| match &r.data {
                                HRData::Unknown { rdata, .. } => {
                                    PirCfgRecord::decode(&rdata.anything)
                                        .ok()
                                        .map(|c| (c, r.ttl))
                                }
                                _ => None,
                            })
                        }
                        _ => None,
                    };
                    // The child list tells public walks where the zone's cuts are, so they
                    // can ask for the next cut or the owner name straight away.
                    let cfg = cfg.map(|(cfg, ttl)| {
                        let ttl = std::time::Duration::from_secs(u64::from(ttl))
                            .min(self.config.cache.max_ttl);
                        self.cache.put_children(
                            &zone.zone,
                            cfg.children.clone(),
                            ttl,
                            Instant::now(),
                        );
                        cfg
                    });
                    memo.pircfg.insert(zone.zone.clone(), cfg.clone());
                    cfg
                }
            };
            let next_label = owner.label_count().min(zone.zone.label_count() + 1);
            let step_name = match &cfg {
                Some(cfg) => match cfg.children.iter().find(|c| owner.is_subdomain_of(c)) {
                    Some(child) => child.clone(),
                    None => return Ok(Ok((zone, cfg.clone()))),
                },
                None => super::suffix_with_labels(owner, next_label),
            };
            let step = match memo.steps.get(&step_name) {
                Some(s) => s.clone(),
                None => {
                    walk.referral(&self.config.limits)?;
                    let s = match self.ask_zone(&zone, &step_name, TYPE_NS, walk).await? {
                        (super::Reply::Referral { cut, ns, glue, .. }, _, _) => {
                            Step::Referral(Arc::new(Delegation::from_referral(cut, ns, &glue)))
                        }
                        (super::Reply::NxDomain { .. }, _, _) => Step::NoSuchName,
                        _ => Step::Other,
                    };
                    memo.steps.insert(step_name, s.clone());
                    s
                }
            };
            match step {
                Step::Referral(d) => zone = d,
                Step::NoSuchName => return Ok(Err(NotFound::NoSuchName)),
                Step::Other => {
                    return Err(private_error(
                        &zone.zone,
                        "the zone publishes no PIRCFG, so it offers no private lookups",
                    ))
                }
            }
        }
    }

    /// The slots of `owners` (all in one zone) from one server of the zone, trying the
    /// next server when one fails as a whole.
    async fn fetch_group(
        &self,
        (zone, cfg): &Found,
        owners: &[Name],
    ) -> Result<(Vec<Result<Fetched, ResolveError>>, SocketAddr, u32), ResolveError> {
        let z = &zone.zone;
        let mut last_err = None;
        let mut walk = Walk {
            queries: 0,
            referrals: 0,
            resolving: Vec::new(),
        };
        for (ns, glue) in &zone.servers {
            let addrs = if glue.is_empty() {
                match self.addresses_of(ns, zone, &mut walk).await {
                    Ok(a) => a,
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                }
            } else {
                glue.clone()
            };
            for ip in addrs {
                let server = self.upstream.server_addr(ip);
                match self.fetch_at(owners, z, cfg, ip).await {
                    Ok((fetched, n)) => return Ok((fetched, server, n)),
                    Err(e @ ResolveError::EpochChanged { .. }) => return Err(e),
                    Err(e) => {
                        debug!(zone = %z, %server, "private lookup failed here: {e}");
                        last_err = Some(e);
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| private_error(z, "no server to ask")))
    }

    /// OPRF for every owner (requests of up to [`OPRF_BATCH`]), then each owner's slots
    /// from the replica when the resolver holds one of this epoch, else by PIR, over one
    /// connection to the server at `ip`.
    async fn fetch_at(
        &self,
        owners: &[Name],
        zone: &Name,
        cfg: &PirCfgRecord,
        ip: IpAddr,
    ) -> Result<(Vec<Result<Fetched, ResolveError>>, u32), ResolveError> {
        let epoch = cfg.config.epoch;
        let mut session =
            Session::open(&self.upstream, ip, zone, self.config.limits.timeout).await?;
        let server = session.server;
        let refused = |r: Refusal| {
            if r.code == Some(ede::WRONG_EPOCH) {
                ResolveError::EpochChanged { zone: zone.clone() }
            } else {
                private_error(zone, format!("{server} refused: {}", r.text))
            }
        };

        // OPRF: y = F(k, owner) without the DP seeing the owner.
        let mut ys: Vec<OprfOutput> = Vec::with_capacity(owners.len());
        for chunk in owners.chunks(OPRF_BATCH) {
            let inputs: Vec<String> = chunk.iter().map(Name::to_string).collect();
            let refs: Vec<&[u8]> = inputs.iter().map(|s| s.as_bytes()).collect();
            let (state, blinded) = oprf::blind(&refs).map_err(|e| private_error(zone, e))?;
            match session.exchange(&Request::Oprf { epoch, blinded }).await? {
                Ok(Response::Oprf(evaluated)) => {
                    let out = state
                        .finalize(&evaluated, &cfg.config.oprf_public_key)
                        .map_err(|e| private_error(zone, e))?;
                    if out.len() != chunk.len() {
                        return Err(private_error(zone, "the OPRF answered for another count"));
                    }
                    ys.extend(out);
                }
                Ok(_) => {
                    return Err(private_error(
                        zone,
                        "unexpected response to an OPRF request",
                    ))
                }
                Err(r) => return Err(refused(r)),
            }
        }

        let replica = self.replicas.for_lookup(zone, &cfg.config);
        // Read before the slots: a change applied after this makes the answers uncacheable.
        let generation = replica.as_ref().map(|r| r.generation());
        // Batch queries pay when the batch is well filled: each costs one query per PIR
        // bucket, about 1.5 x its capacity.
        if replica.is_none() {
            let keys = self.pir_keys(zone, cfg)?;
            let size = keys.client.batch_size();
            let elements = ys.len() * 2 * usize::from(cfg.probes.max(1));
            if size >= 2 && ys.len() > 1 && elements * BATCH_FILL >= size {
                let fetched = self
                    .pir_fetch_batch(&mut session, zone, cfg, &keys, &ys, &refused)
                    .await?;
                let exchanges = session.exchanges;
                session.close();
                return Ok((fetched, exchanges));
            }
        }
        let mut fetched = Vec::with_capacity(ys.len());
        for y in &ys {
            fetched.push(match &replica {
                Some(replica) => {
                    self.replicas
                        .stats
                        .lookups
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    replica
                        .lookup(y)
                        .map(|hit| Fetched {
                            records: hit.records,
                            source: Source {
                                epoch,
                                shard: hit.shard,
                                buckets: hit.buckets,
                            },
                            replica_generation: generation,
                        })
                        .map_err(|e| private_error(zone, e))
                }
                // An error of the exchange fails the group (the rest would fail too); one
                // of the identifier's slots fails only that identifier.
                None => self.pir_fetch(&mut session, zone, cfg, y, &refused).await?,
            });
        }
        let exchanges = session.exchanges;
        session.close();
        Ok((fetched, exchanges))
    }

    /// The PIR part of one identifier's lookup: the two bucket queries of every spill index
    /// up to the zone's published probes, present or absent, one mapping or several, so the
    /// exchanges look the same on the wire.
    async fn pir_fetch(
        &self,
        session: &mut Session<'_>,
        zone: &Name,
        cfg: &PirCfgRecord,
        y: &OprfOutput,
        refused: &(dyn Fn(Refusal) -> ResolveError + Sync),
    ) -> Result<Result<Fetched, ResolveError>, ResolveError> {
        let epoch = cfg.config.epoch;
        let keys = self.pir_keys(zone, cfg)?;
        let mut uploaded = upload_if_new(session, epoch, &keys).await?;
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut done = false;
        let mut index = 0u32;
        let mut shard = 0;
        let probes = u32::from(cfg.probes.max(1));
        while !done || index < probes {
            let probe = keys.client.probe(y, index);
            shard = probe.shard;
            let queries = keys
                .client
                .queries(&probe)
                .map_err(|e| private_error(zone, e))?;
            let mut responses = Vec::with_capacity(2);
            for query in queries {
                let ask = Ask {
                    zone,
                    epoch,
                    keys: &keys,
                    shard: probe.shard,
                    refused,
                };
                responses.push(ask.query(session, query, &mut uploaded).await?);
            }
            if !done {
                let failures = keys.client.decode_failures();
                let opened = match keys.client.open(&probe, [&responses[0], &responses[1]]) {
                    Ok(o) => o,
                    Err(e) => return Ok(Err(private_error(zone, e))),
                };
                if keys.client.decode_failures() != failures {
                    self.stats
                        .pir_decode_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                match opened {
                    None if index == 0 => done = true,
                    None => {
                        return Ok(Err(private_error(
                            zone,
                            format!("spill slot {index} is missing"),
                        )))
                    }
                    Some(chunk) => {
                        done = !chunk.more_after(index);
                        chunks.push(chunk);
                    }
                }
            }
            index += 1;
            if index as usize > crate::pir::db::MAX_SPILL {
                break;
            }
        }
        Ok(pir_fetched(zone, epoch, shard, &chunks))
    }

    /// The PIR part of many identifiers' lookups in batch queries (the zone's PIRCFG offers
    /// them): every spill index up to the published probes of every identifier, grouped into
    /// batches of one query per PIR bucket, so the DP sees only how many batches there were.
    /// An identifier whose records run past the published probes is finished by
    /// [`Resolver::pir_fetch`].
    async fn pir_fetch_batch(
        &self,
        session: &mut Session<'_>,
        zone: &Name,
        cfg: &PirCfgRecord,
        keys: &KeySet,
        ys: &[OprfOutput],
        refused: &(dyn Fn(Refusal) -> ResolveError + Sync),
    ) -> Result<Vec<Result<Fetched, ResolveError>>, ResolveError> {
        let epoch = cfg.config.epoch;
        let mut uploaded = upload_if_new(session, epoch, keys).await?;
        let per = u32::from(cfg.probes.max(1));
        let probes: Vec<_> = ys
            .iter()
            .flat_map(|y| (0..per).map(|i| keys.client.probe(y, i)))
            .collect();
        let batches = keys
            .client
            .batch_probes(&probes)
            .map_err(|e| private_error(zone, e))?;
        let failures = keys.client.decode_failures();
        let mut opened: Vec<Option<Result<Option<Chunk>, crate::pir::PirError>>> =
            (0..probes.len()).map(|_| None).collect();
        for batch in &batches {
            let ask = Ask {
                zone,
                epoch,
                keys,
                shard: batch.shard,
                refused,
            };
            let mut responses = Vec::with_capacity(batch.queries.len());
            for query in &batch.queries {
                responses.push(ask.query(session, query.clone(), &mut uploaded).await?);
            }
            let refs: Vec<&[u8]> = responses.iter().map(Vec::as_slice).collect();
            let results = keys
                .client
                .open_batch(&probes, batch, &refs)
                .map_err(|e| private_error(zone, e))?;
            for (&i, r) in batch.members.iter().zip(results) {
                opened[i] = Some(r);
            }
        }
        self.stats
            .pir_batches
            .fetch_add(batches.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .pir_batched_lookups
            .fetch_add(ys.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let failed = keys.client.decode_failures() - failures;
        self.stats
            .pir_decode_failures
            .fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::with_capacity(ys.len());
        for (n, y) in ys.iter().enumerate() {
            let mine = &mut opened[n * per as usize..(n + 1) * per as usize];
            let shard = probes[n * per as usize].shard;
            let mut chunks = Vec::new();
            let mut outcome = Ok(true);
            for (index, slot) in mine.iter_mut().enumerate() {
                match slot.take() {
                    None => outcome = Err("a probe was left out of every batch".to_string()),
                    Some(Err(e)) => outcome = Err(e.to_string()),
                    Some(Ok(None)) if index == 0 => outcome = Ok(false),
                    Some(Ok(None)) => outcome = Err(format!("spill slot {index} is missing")),
                    Some(Ok(Some(chunk))) => {
                        let more = chunk.more_after(index as u32);
                        chunks.push(chunk);
                        if more {
                            continue;
                        }
                        outcome = Ok(false);
                    }
                }
                break;
            }
            out.push(match outcome {
                Err(e) => Err(private_error(zone, e)),
                // Records past the published probes: fetch this one alone, to its end.
                Ok(true) => self.pir_fetch(session, zone, cfg, y, refused).await?,
                Ok(false) => pir_fetched(zone, epoch, shard, &chunks),
            });
        }
        Ok(out)
    }

    /// The PIR keys for (zone, epoch): fresh per zone, so DPs cannot link a client's
    /// lookups across zones; made once and reused.
    fn pir_keys(&self, zone: &Name, cfg: &PirCfgRecord) -> Result<Arc<KeySet>, ResolveError> {
        let id = (zone.clone(), cfg.config.epoch);
        let mut keys = self.pir_keys.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = keys.get(&id) {
            return Ok(k.clone());
        }
        keys.retain(|(z, _), _| z != zone);
        let (client, key_bytes) =
            ZoneClient::new(cfg.config.clone()).map_err(|e| private_error(zone, e))?;
        let set = Arc::new(KeySet {
            client,
            key_bytes,
            key_id: rand::random(),
            sent: std::sync::atomic::AtomicBool::new(false),
        });
        keys.insert(id, set.clone());
        Ok(set)
    }
}

fn not_discoverable(owner: Name, nf: NotFound, queries: u32, started: Instant) -> LookupResult {
    LookupResult {
        owner,
        outcome: Outcome::NotDiscoverable(nf),
        zone: None,
        server: None,
        from_cache: false,
        stale: false,
        queries,
        elapsed: started.elapsed(),
        rejected: Vec::new(),
        ttl: 0,
        soa: None,
    }
}
