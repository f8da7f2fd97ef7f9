//! The app provider's resolver: iterative, caching and verifying.
//!
//! `Resolver::lookup` walks the discovery tree from the configured root servers with
//! QNAME minimisation (RFC 9156), follows referrals (glue only from the referring zone's
//! bailiwick), verifies every SSI record against the trust file (DESIGN.md section 5),
//! caches verified answers, negative answers and delegations, and applies the context
//! policy. A lookup is bounded in referrals and queries, so a broken or hostile tree
//! ends in an error rather than a loop.

pub mod cache;
pub mod config;
pub mod control;
pub mod infra;
pub mod invalidate;
pub mod metrics;
pub mod minimise;
pub mod private;
pub mod replica;
pub mod secure;
pub mod server;
pub mod stats;
pub mod transport;
pub mod wire;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData as HRData, Record, RecordType};
use thiserror::Error;
use tracing::{debug, warn};

use self::cache::{Answer, Cache, Delegation, Entry, Hit, Negative};
pub use self::config::ResolverConfig;
use self::secure::Security;
pub use self::stats::{RejectReason, ResolverStats};
use crate::dnssec::validate::{Bogus, ZoneKeys};
use crate::dnssec::{TYPE_DNSKEY, TYPE_DS};
use crate::name::Name;
use crate::record::{
    verify_against, ApKey, Context, KeyError, Ssi, TrustStore, TYPE_APKEY, TYPE_SSI,
};
use crate::sii::{Sii, SiiError};

const TYPE_NS: u16 = 2;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// TTL on stale answers (RFC 8767 section 4 suggests 30 seconds).
const STALE_TTL: u32 = 30;

/// One verified mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub owner: Name,
    pub ssi: Ssi,
    /// Seconds the mapping may be cached, from when it was fetched.
    pub ttl: u32,
}

/// A record that was dropped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub provider: String,
    pub ssi: String,
    pub reason: String,
    pub kind: RejectReason,
}

/// Why an identifier is not discoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// The owner name does not exist in the tree (NXDOMAIN).
    NoSuchName,
    /// The name exists but holds no valid mapping (NODATA, or only withdrawn ones).
    NoMappings,
    /// Mappings exist, none for the asked context.
    NoneForContext(Context),
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotFound::NoSuchName => f.write_str("no such name in the tree"),
            NotFound::NoMappings => f.write_str("no mappings for this identifier"),
            NotFound::NoneForContext(c) => write!(f, "no mapping for context {c}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Valid mappings for the policy, sorted by priority.
    Found(Vec<Mapping>),
    NotDiscoverable(NotFound),
}

/// The result of one lookup, with where it came from.
#[derive(Debug, Clone)]
pub struct LookupResult {
    pub owner: Name,
    pub outcome: Outcome,
    /// The zone and server that gave the final answer.
    pub zone: Option<Name>,
    pub server: Option<SocketAddr>,
    pub from_cache: bool,
    /// Served from an expired cache entry because the zone's servers were unreachable.
    pub stale: bool,
    /// Queries this lookup sent.
    pub queries: u32,
    pub elapsed: Duration,
    /// Records at the name that failed verification.
    pub rejected: Vec<Rejection>,
    /// Seconds this result may still be cached by whoever receives it.
    pub ttl: u32,
    /// For a negative answer, the zone's SOA (TTL already min(SOA TTL, MINIMUM)).
    pub soa: Option<Arc<Record>>,
}

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("invalid identifier: {0}")]
    InvalidIdentifier(#[from] SiiError),
    #[error("{name} is outside the discovery tree {apex}")]
    OutsideTree { name: Name, apex: Name },
    #[error("no server of zone {zone} answered: {}", .tried.join("; "))]
    NoServerAnswered { zone: Name, tried: Vec<String> },
    #[error("the servers of zone {zone} answered badly: {}", .details.join("; "))]
    BadAnswer { zone: Name, details: Vec<String> },
    #[error("every record at {owner} failed verification: {}", .rejected.iter().map(|r| format!("{} ({}): {}", r.ssi, r.provider, r.reason)).collect::<Vec<_>>().join("; "))]
    AllRejected {
        owner: Name,
        rejected: Vec<Rejection>,
    },
    #[error("no answer for {owner} within {after:?} (limits.lookup_deadline_ms)")]
    Deadline { owner: Name, after: Duration },
    #[error("more than {limit} referrals: the tree is too deep or loops")]
    TooDeep { limit: u32 },
    #[error("more than {limit} queries for one lookup")]
    TooManyQueries { limit: u32 },
    #[error("private lookup in {zone} failed: {reason}")]
    Private { zone: Name, reason: String },
    #[error("zone {zone} moved to a new private-lookup epoch during the lookup")]
    EpochChanged { zone: Name },
    #[error("no address for any name server of {zone}: {detail}")]
    NoServerAddress { zone: Name, detail: String },
    #[error("DNSSEC: the answer from zone {zone} is bogus: {step}")]
    Bogus { zone: Name, step: Bogus },
}

impl ResolveError {
    /// The RFC 8914 extended error a DNS answer for this failure carries, if any.
    pub fn extended_error(&self) -> Option<u16> {
        match self {
            ResolveError::Bogus { .. } => Some(crate::ede::DNSSEC_BOGUS),
            _ => None,
        }
    }
}

/// What the tree said about a name, before verification.
enum Resolved {
    Records {
        records: Vec<Record>,
        zone: Name,
        server: SocketAddr,
        /// Validated from the trust anchor (DNSSEC).
        secure: bool,
    },
    Negative {
        kind: Negative,
        ttl: u32,
        zone: Name,
        server: SocketAddr,
        soa: Option<Box<Record>>,
    },
}

/// One reply, classified.
enum Reply {
    Answer(Vec<Record>),
    Referral {
        cut: Name,
        ns: Vec<Name>,
        glue: Vec<(Name, IpAddr)>,
        ttl: u32,
    },
    NoData {
        ttl: u32,
        soa: Option<Box<Record>>,
    },
    NxDomain {
        ttl: u32,
        soa: Option<Box<Record>>,
    },
}

/// What one question to one server came to.
enum Attempt {
    Reply(Reply, Box<Message>, SocketAddr),
    /// Worth another try (`limits.retries`).
    TimedOut,
    /// Not worth another try: a bad answer, a refused datagram.
    Failed,
}

/// Why the servers of a zone asked so far gave no usable reply.
#[derive(Default)]
struct Failures {
    timeouts: Vec<String>,
    bad: Vec<String>,
    no_address: Vec<String>,
}

impl Failures {
    fn into_error(self, zone: &Name) -> ResolveError {
        let Failures {
            mut timeouts,
            mut bad,
            no_address,
        } = self;
        if !bad.is_empty() {
            bad.extend(timeouts);
            return ResolveError::BadAnswer {
                zone: zone.clone(),
                details: bad,
            };
        }
        if timeouts.is_empty() {
            return ResolveError::NoServerAddress {
                zone: zone.clone(),
                detail: no_address.join("; "),
            };
        }
        timeouts.extend(no_address);
        ResolveError::NoServerAnswered {
            zone: zone.clone(),
            tried: timeouts,
        }
    }
}

/// Appends the addresses of `more` that `list` does not hold yet.
fn add_new(list: &mut Vec<IpAddr>, more: &[IpAddr]) {
    for ip in more {
        if !list.contains(ip) {
            list.push(*ip);
        }
    }
}

/// Per-lookup budget.
struct Walk {
    queries: u32,
    referrals: u32,
    /// Name servers whose addresses are being looked up, to stop glueless cycles.
    resolving: Vec<Name>,
}

impl Walk {
    /// Counts one more step down the tree (a referral or a side trip for an NS address).
    fn referral(&mut self, limits: &config::Limits) -> Result<(), ResolveError> {
        self.referrals += 1;
        if self.referrals > limits.max_referrals {
            return Err(ResolveError::TooDeep {
                limit: limits.max_referrals,
            });
        }
        Ok(())
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub struct Resolver {
    config: ResolverConfig,
    trust: TrustStore,
    cache: Cache,
    pub stats: ResolverStats,
    pir_keys: private::KeyStore,
    /// How DPs are reached (`[upstream]`): DoT connections kept across lookups, TSIG.
    upstream: transport::Upstream,
    /// Subscribed zones: NOTIFY and CHANGES from their DPs (DESIGN 8.3).
    pub invalidation: invalidate::Invalidation,
    /// Encrypted replicas of zones' slot tables (`[replica]`, DESIGN 11).
    pub replicas: replica::Replicas,
    /// Answers of private lookups, dropped when their buckets change.
    pub private_cache: private::PrivateCache,
    /// Servers that timed out, tried last for their zone for a while.
    pub servers: infra::ServerMemory,
}

use crate::sys::unix_now;

impl Resolver {
    pub fn new(config: ResolverConfig, trust: TrustStore) -> Resolver {
        let cache = Cache::new(config.cache.entries);
        let upstream = transport::Upstream::new(config.port, &config.upstream);
        let replicas = replica::Replicas::new(config.replica.clone());
        let private_cache = private::PrivateCache::new(config.cache.entries, config.cache.max_ttl);
        let servers = infra::ServerMemory::new(config.limits.server_backoff);
        Resolver {
            servers,
            upstream,
            config,
            trust,
            cache,
            stats: ResolverStats::default(),
            pir_keys: private::KeyStore::default(),
            invalidation: invalidate::Invalidation::default(),
            replicas,
            private_cache,
        }
    }

    /// Builds a resolver from a config file, loading its trust file.
    pub fn from_config_file(path: &std::path::Path) -> Result<Resolver, ResolverSetupError> {
        let config = ResolverConfig::load(path)?;
        let trust = TrustStore::load(&config.trust)?;
        let invalidation =
            invalidate::Invalidation::load(&config.subscriptions, &path.display().to_string())?;
        let mut resolver = Resolver::new(config, trust);
        resolver.invalidation = invalidation;
        Ok(resolver)
    }

    /// Empties the cache (answers, denials, delegations, addresses, child lists, private
    /// lookups) and forgets which servers failed: the next lookup starts from the roots, as
    /// `unbound-control flush_zone` plus `flush_infra all` would make Unbound's.
    pub fn flush(&self) {
        self.cache.clear();
        self.private_cache.clear();
        self.servers.clear();
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The transport to DPs, with its counters.
    pub fn upstream(&self) -> &transport::Upstream {
        &self.upstream
    }

    /// Finds the mappings of an identifier under `context` (None: the configured default).
    pub async fn lookup(
        &self,
        sii: &Sii,
        context: Option<Context>,
    ) -> Result<LookupResult, ResolveError> {
        let owner = sii.owner_name(&self.config.apex)?;
        self.lookup_name(&owner, context).await
    }

    /// Like `lookup`, for an owner name already computed.
    pub async fn lookup_name(
        &self,
        owner: &Name,
        context: Option<Context>,
    ) -> Result<LookupResult, ResolveError> {
        self.stats.lookups.fetch_add(1, Relaxed);
        let r = self.resolve_name(owner, context).await;
        self.stats.count_outcome(&r);
        r
    }

    async fn resolve_name(
        &self,
        owner: &Name,
        context: Option<Context>,
    ) -> Result<LookupResult, ResolveError> {
        let started = Instant::now();
        let context = context.unwrap_or(self.config.context);
        if !owner.is_subdomain_of(&self.config.apex) {
            return Err(ResolveError::OutsideTree {
                name: owner.clone(),
                apex: self.config.apex.clone(),
            });
        }
        let mut stale_entry = None;
        match self.cache.answer(owner, started) {
            Some(Hit::Fresh(entry, left)) => {
                self.stats.cache_hits.fetch_add(1, Relaxed);
                let mut r = self.result_from(owner, entry, context, true, false, 0, started);
                r.ttl = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
                return Ok(r);
            }
            Some(Hit::Stale(entry, ago))
                if self.config.cache.serve_stale && ago <= self.config.cache.stale_window =>
            {
                stale_entry = Some(entry);
            }
            _ => {}
        }
        self.stats.cache_misses.fetch_add(1, Relaxed);
        let mut walk = Walk {
            queries: 0,
            referrals: 0,
            resolving: Vec::new(),
        };
        // One bound on the whole walk, whatever a hostile delegation does with timeouts,
        // retries and name servers.
        let deadline = self.config.limits.lookup_deadline;
        let resolved = tokio::time::timeout(deadline, self.iterate(owner, TYPE_SSI, &mut walk))
            .await
            .unwrap_or_else(|_| {
                Err(ResolveError::Deadline {
                    owner: owner.clone(),
                    after: deadline,
                })
            });
        self.stats
            .queries_sent
            .fetch_add(u64::from(walk.queries), Relaxed);
        let resolved = match (resolved, stale_entry) {
            (Ok(r), _) => r,
            (
                Err(e @ (ResolveError::NoServerAnswered { .. } | ResolveError::Deadline { .. })),
                Some(entry),
            ) => {
                warn!(%owner, "serving stale answer: {e}");
                let mut r =
                    self.result_from(owner, entry, context, true, true, walk.queries, started);
                r.ttl = STALE_TTL;
                return Ok(r);
            }
            (Err(e), _) => return Err(e),
        };
        let ttl;
        let entry = match resolved {
            Resolved::Negative {
                kind,
                ttl: neg_ttl,
                zone,
                server,
                soa,
            } => {
                ttl =
                    Duration::from_secs(u64::from(neg_ttl)).min(self.config.cache.max_negative_ttl);
                let entry = Entry::Negative {
                    kind,
                    zone,
                    server,
                    soa: soa.map(|s| Arc::new(*s)),
                };
                self.cache
                    .put_answer(owner, entry.clone(), ttl, Instant::now());
                entry
            }
            Resolved::Records {
                records,
                zone,
                server,
                secure,
            } => {
                // Keys from the tree vouch only for answers the tree itself vouched for.
                let tree = if secure {
                    let left = deadline.saturating_sub(started.elapsed());
                    tokio::time::timeout(left, self.fetch_tree_keys(&records, &mut walk))
                        .await
                        .unwrap_or_else(|_| {
                            Err(ResolveError::Deadline {
                                owner: owner.clone(),
                                after: deadline,
                            })
                        })?;
                    self.tree_keys(&records)
                } else {
                    None
                };
                let (mappings, rejected) = self.verify(owner, &records, tree.as_ref());
                if mappings.is_empty() && !rejected.is_empty() {
                    return Err(ResolveError::AllRejected {
                        owner: owner.clone(),
                        rejected,
                    });
                }
                // With no mapping left (all withdrawn), the records' own TTL still applies.
                let min = mappings
                    .iter()
                    .map(|m| m.ttl)
                    .min()
                    .or_else(|| records.iter().map(|r| r.ttl).min())
                    .unwrap_or(0);
                ttl = Duration::from_secs(u64::from(min)).min(self.config.cache.max_ttl);
                let entry = Entry::Answer(Answer {
                    mappings: Arc::new(mappings),
                    rejected: Arc::new(rejected),
                    zone,
                    server,
                });
                self.cache
                    .put_answer(owner, entry.clone(), ttl, Instant::now());
                entry
            }
        };
        let mut r = self.result_from(owner, entry, context, false, false, walk.queries, started);
        r.ttl = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    fn result_from(
        &self,
        owner: &Name,
        entry: Entry,
        context: Context,
        from_cache: bool,
        stale: bool,
        queries: u32,
        started: Instant,
    ) -> LookupResult {
        let mut soa = None;
        let (outcome, zone, server, rejected) = match entry {
            Entry::Negative {
                kind,
                zone,
                server,
                soa: s,
            } => {
                let nf = match kind {
                    Negative::NoSuchName => NotFound::NoSuchName,
                    Negative::NoMappings => NotFound::NoMappings,
                };
                soa = s;
                (
                    Outcome::NotDiscoverable(nf),
                    Some(zone),
                    Some(server),
                    Vec::new(),
                )
            }
            Entry::Answer(a) => {
                let picked: Vec<Mapping> = a
                    .mappings
                    .iter()
                    .filter(|m| m.ssi.context.matches(context))
                    .cloned()
                    .collect();
                let outcome = if !picked.is_empty() {
                    Outcome::Found(picked)
                } else if a.mappings.is_empty() {
                    Outcome::NotDiscoverable(NotFound::NoMappings)
                } else {
                    Outcome::NotDiscoverable(NotFound::NoneForContext(context))
                };
                (
                    outcome,
                    Some(a.zone),
                    Some(a.server),
                    a.rejected.as_ref().clone(),
                )
            }
            Entry::Delegation(_)
            | Entry::Addresses(_)
            | Entry::InZone(_)
            | Entry::Children(_)
            | Entry::Security(_)
            | Entry::ProviderKeys { .. } => (
                Outcome::NotDiscoverable(NotFound::NoMappings),
                None,
                None,
                Vec::new(),
            ),
        };
        LookupResult {
            owner: owner.clone(),
            outcome,
            zone,
            server,
            from_cache,
            stale,
            queries,
            elapsed: started.elapsed(),
            rejected,
            ttl: 0,
            soa,
        }
    }

    /// Verifies SSI records at `owner` under this resolver's trust store, or `tree` (the
    /// trust store with keys from the tree) when given ([`accept`]); each mapping's TTL is
    /// capped as the cache caps it.
    fn verify(
        &self,
        owner: &Name,
        records: &[Record],
        tree: Option<&TrustStore>,
    ) -> (Vec<Mapping>, Vec<Rejection>) {
        let trust = tree.unwrap_or(&self.trust);
        let (mut mappings, rejected) = accept(owner, records, trust, unix_now());
        self.stats.count_rejected(&rejected);
        let cap = u32::try_from(self.config.cache.max_ttl.as_secs()).unwrap_or(u32::MAX);
        for m in &mut mappings {
            m.ttl = m.ttl.min(cap);
        }
        (mappings, rejected)
    }

    fn root_delegation(&self) -> Arc<Delegation> {
        Arc::new(Delegation {
            zone: self.config.apex.clone(),
            servers: vec![(self.config.apex.clone(), self.config.roots.clone())],
        })
    }

    /// Resolves (`target`, `qtype`) iteratively from the closest known zone cut. With a
    /// trust anchor, every reply from a secure zone is validated before it is used
    /// ([`secure`]), and the answer says whether it was.
    fn iterate<'a>(
        &'a self,
        target: &'a Name,
        qtype: u16,
        walk: &'a mut Walk,
    ) -> BoxFuture<'a, Result<Resolved, ResolveError>> {
        Box::pin(async move {
            let apex = &self.config.apex;
            if !target.is_subdomain_of(apex) {
                return Err(ResolveError::OutsideTree {
                    name: target.clone(),
                    apex: apex.clone(),
                });
            }
            // A DS set is the parent's: its walk starts above the name.
            let start = match qtype {
                TYPE_DS => target.parent().unwrap_or_else(|| target.clone()),
                _ => target.clone(),
            };
            let mut zone = self
                .cache
                .closest_delegation(&start, Instant::now())
                .filter(|d| d.zone.is_subdomain_of(apex))
                .unwrap_or_else(|| self.root_delegation());
            let target_labels = target.label_count();
            let limits = &self.config.limits;
            let mut minimiser =
                minimise::Minimiser::new(limits.max_minimise_count, limits.minimise_one_label);
            // Labels of the target known to lie in the current zone, below no cut.
            let mut known = zone.zone.label_count();
            loop {
                let labels_now = self.next_question(&zone.zone, target, known, &mut minimiser);
                let qname = suffix_with_labels(target, labels_now);
                let final_step = labels_now == target_labels;
                // RFC 9156: intermediate steps ask for NS, which also finds zone cuts.
                let qt = if final_step { qtype } else { TYPE_NS };
                let keys = self.zone_keys(&zone, walk).await?;
                let (mut reply, server, message) = self.ask_zone(&zone, &qname, qt, walk).await?;
                if let Some(keys) = &keys {
                    // A server of this zone that also serves a zone below it answered from
                    // there: go on in that zone, whose keys its parent proves.
                    if let Some(below) =
                        secure::answered_from_below(&message, &zone.zone, &qname, qt)
                    {
                        walk.referral(&self.config.limits)?;
                        zone = Arc::new(Delegation {
                            zone: below.clone(),
                            servers: zone.servers.clone(),
                        });
                        known = below.label_count();
                        continue;
                    }
                    reply = self.check_reply(keys, reply, &message, &qname, qt, final_step)?;
                }
                match reply {
                    Reply::Answer(records) if final_step => {
                        return Ok(Resolved::Records {
                            records,
                            zone: zone.zone.clone(),
                            server,
                            secure: keys.is_some(),
                        })
                    }
                    Reply::Answer(records) => {
                        // An authoritative NS answer below the current zone: a cut served
                        // by the same servers. Continue there.
                        walk.referral(&self.config.limits)?;
                        if keys.is_none() {
                            let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
                            let ttl =
                                Duration::from_secs(u64::from(ttl)).min(self.config.cache.max_ttl);
                            self.put_insecure(&qname, ttl);
                        }
                        zone = Arc::new(Delegation {
                            zone: qname.clone(),
                            servers: zone.servers.clone(),
                        });
                        known = labels_now;
                    }
                    Reply::Referral { cut, ns, glue, ttl } => {
                        walk.referral(&self.config.limits)?;
                        let d = Delegation::from_referral(cut.clone(), ns, &glue);
                        let ttl =
                            Duration::from_secs(u64::from(ttl)).min(self.config.cache.max_ttl);
                        self.cache.put_delegation(d.clone(), ttl, Instant::now());
                        match &keys {
                            Some(keys) => {
                                let child =
                                    secure::check_referral(keys, &message, &cut, unix_now32())
                                        .map_err(|step| bogus(&zone.zone, step))?;
                                self.cache.put_security(&cut, child, ttl, Instant::now());
                            }
                            None => self.put_insecure(&cut, ttl),
                        }
                        known = cut.label_count();
                        zone = Arc::new(d);
                    }
                    Reply::NoData { ttl, soa } if final_step => {
                        return Ok(Resolved::Negative {
                            kind: Negative::NoMappings,
                            ttl,
                            zone: zone.zone.clone(),
                            server,
                            soa,
                        })
                    }
                    Reply::NoData { ttl, .. } => {
                        // The name exists in this zone and is no cut; so are the names
                        // between it and the zone, or the server would have referred.
                        let ttl = Duration::from_secs(u64::from(ttl))
                            .min(self.config.cache.max_negative_ttl);
                        if !ttl.is_zero() {
                            self.cache
                                .put_in_zone(&qname, &zone.zone, ttl, Instant::now());
                        }
                        known = labels_now;
                    }
                    // RFC 8020: nothing exists below a name that does not exist.
                    Reply::NxDomain { ttl, soa } => {
                        return Ok(Resolved::Negative {
                            kind: Negative::NoSuchName,
                            ttl,
                            zone: zone.zone.clone(),
                            server,
                            soa,
                        })
                    }
                }
            }
        })
    }

    /// Validates a reply from a secure zone (`keys`): an answer's RRSIGs, a denial's SOA
    /// and NSEC records (a compact NXNAME denial becomes NXDOMAIN), and, for a referral,
    /// that the DS set or its absence is proved (checked where the referral is followed).
    fn check_reply(
        &self,
        keys: &ZoneKeys,
        reply: Reply,
        message: &Message,
        qname: &Name,
        qtype: u16,
        final_step: bool,
    ) -> Result<Reply, ResolveError> {
        let now = unix_now32();
        let bogus = |step| bogus(&keys.zone, step);
        match reply {
            Reply::Answer(records) => {
                // An NS answer on the way down comes from the zone below, which proves
                // itself when the walk gets there.
                if final_step {
                    secure::check_answer(keys, message, qname, qtype, now).map_err(bogus)?;
                }
                Ok(Reply::Answer(records))
            }
            Reply::NoData { ttl, soa } => {
                match secure::check_denial(keys, message, qname, qtype, now).map_err(bogus)? {
                    true => Ok(Reply::NxDomain { ttl, soa }),
                    false => Ok(Reply::NoData { ttl, soa }),
                }
            }
            Reply::NxDomain { ttl, soa } => {
                secure::check_denial(keys, message, qname, qtype, now).map_err(bogus)?;
                Ok(Reply::NxDomain { ttl, soa })
            }
            r @ Reply::Referral { .. } => Ok(r),
        }
    }

    /// Remembers that `zone` is insecure (below an insecure zone), so no walk asks for its
    /// DS set.
    fn put_insecure(&self, zone: &Name, ttl: Duration) {
        if self.config.dnssec.is_some() {
            self.cache
                .put_security(zone, Security::Insecure, ttl, Instant::now());
        }
    }

    /// The keys of `zone` when it is secure, None when it is insecure or nothing is
    /// validated: from the cache, else proved now - its DS set from the trust anchor, a
    /// referral, or a walk to its parent; then its DNSKEY set from its servers.
    fn zone_keys<'a>(
        &'a self,
        zone: &'a Delegation,
        walk: &'a mut Walk,
    ) -> BoxFuture<'a, Result<Option<Arc<ZoneKeys>>, ResolveError>> {
        Box::pin(async move {
            let Some(anchor) = &self.config.dnssec else {
                return Ok(None);
            };
            let security = match self.cache.security(&zone.zone, Instant::now()) {
                Some(s) => s,
                None if zone.zone == anchor.zone => Security::Ds(anchor.ds.clone().into()),
                None => self.find_ds(&zone.zone, walk).await?,
            };
            let ds = match security {
                Security::Secure(keys) => return Ok(Some(keys)),
                Security::Insecure => return Ok(None),
                Security::Ds(ds) => ds,
            };
            let (_, _, message) = self.ask_zone(zone, &zone.zone, TYPE_DNSKEY, walk).await?;
            let set = secure::set_of(&message.answers, &zone.zone, TYPE_DNSKEY);
            let keys = Arc::new(
                ZoneKeys::prove(&set, &ds, unix_now32()).map_err(|s| bogus(&zone.zone, s))?,
            );
            let ttl = message
                .answers
                .iter()
                .filter(|r| u16::from(r.record_type()) == TYPE_DNSKEY)
                .map(|r| r.ttl)
                .min()
                .unwrap_or(0);
            let ttl = Duration::from_secs(u64::from(ttl)).min(self.config.cache.max_ttl);
            self.cache.put_security(
                &zone.zone,
                Security::Secure(keys.clone()),
                ttl,
                Instant::now(),
            );
            Ok(Some(keys))
        })
    }

    /// What the parent of `zone` says of its DS set, when no referral told the walk:
    /// a validated DS set, or insecure (proved absent, or an insecure parent).
    async fn find_ds(&self, zone: &Name, walk: &mut Walk) -> Result<Security, ResolveError> {
        let (security, ttl, cap) = match self.iterate(zone, TYPE_DS, walk).await? {
            Resolved::Records {
                records,
                secure: true,
                ..
            } => (
                Security::Ds(
                    records
                        .iter()
                        .filter_map(crate::zone::update::canonical_rdata)
                        .collect(),
                ),
                records.iter().map(|r| r.ttl).min().unwrap_or(0),
                self.config.cache.max_ttl,
            ),
            Resolved::Records { records, .. } => (
                Security::Insecure,
                records.iter().map(|r| r.ttl).min().unwrap_or(0),
                self.config.cache.max_ttl,
            ),
            Resolved::Negative { ttl, .. } => {
                (Security::Insecure, ttl, self.config.cache.max_negative_ttl)
            }
        };
        let ttl = Duration::from_secs(u64::from(ttl)).min(cap);
        self.cache
            .put_security(zone, security.clone(), ttl, Instant::now());
        Ok(security)
    }

    /// The providers of the SSI records in `records` that the trust file does not list.
    fn unlisted_providers(&self, records: &[Record]) -> Vec<Name> {
        let mut providers: Vec<Name> = Vec::new();
        for r in records {
            if let HRData::Unknown { rdata, .. } = &r.data {
                if let Ok(ssi) = Ssi::from_wire(&rdata.anything) {
                    if !self.trust.is_trusted(&ssi.provider) && !providers.contains(&ssi.provider) {
                        providers.push(ssi.provider);
                    }
                }
            }
        }
        providers
    }

    /// With a trust anchor, fetches (into the cache) the APKEY sets of the providers of
    /// `records` that the trust file does not list and the cache does not hold.
    async fn fetch_tree_keys(
        &self,
        records: &[Record],
        walk: &mut Walk,
    ) -> Result<(), ResolveError> {
        if self.config.dnssec.is_none() {
            return Ok(());
        }
        for provider in self.unlisted_providers(records) {
            let Some(owner) = apkey_owner(&provider, &self.config.apex) else {
                continue;
            };
            if self.cache.provider_keys(&owner, Instant::now()).is_none() {
                self.fetch_provider_keys(&owner, walk).await?;
            }
        }
        Ok(())
    }

    /// With a validated tree, the trust store for `records`: the trust file, plus for each
    /// provider it does not list the keys of its APKEY records under `ap.<apex>` that the
    /// cache holds. None when the trust file alone applies (no validation, or every
    /// provider listed).
    fn tree_keys(&self, records: &[Record]) -> Option<TrustStore> {
        self.config.dnssec.as_ref()?;
        let providers = self.unlisted_providers(records);
        if providers.is_empty() {
            return None;
        }
        let mut store = self.trust.clone();
        for provider in providers {
            let keys = apkey_owner(&provider, &self.config.apex)
                .and_then(|owner| self.cache.provider_keys(&owner, Instant::now()));
            for key in keys.iter().flat_map(|k| k.iter()) {
                store.add(provider.clone(), *key);
            }
        }
        Some(store)
    }

    /// The keys of the APKEY set at `owner`, when it validates and each key is within its
    /// validity window now; none otherwise. Cached either way.
    async fn fetch_provider_keys(
        &self,
        owner: &Name,
        walk: &mut Walk,
    ) -> Result<Arc<[ed25519_dalek::VerifyingKey]>, ResolveError> {
        let now = unix_now();
        let (keys, zone, ttl) = match self.iterate(owner, TYPE_APKEY, walk).await? {
            Resolved::Records {
                records,
                zone,
                secure,
                ..
            } => {
                let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
                let keys: Vec<_> = records
                    .iter()
                    .filter(|_| secure)
                    .filter_map(|r| match &r.data {
                        HRData::Unknown { rdata, .. } => ApKey::from_wire(&rdata.anything).ok(),
                        _ => None,
                    })
                    .filter(|k| k.not_before <= now && now <= k.not_after)
                    .filter_map(|k| k.verifying_key().ok())
                    .collect();
                if !secure {
                    warn!(%owner, "APKEY records from an insecure zone are not trusted");
                }
                let ttl = Duration::from_secs(u64::from(ttl)).min(self.config.cache.max_ttl);
                (keys, zone, ttl)
            }
            Resolved::Negative { ttl, zone, .. } => (
                Vec::new(),
                zone,
                Duration::from_secs(u64::from(ttl)).min(self.config.cache.max_negative_ttl),
            ),
        };
        let keys: Arc<[ed25519_dalek::VerifyingKey]> = keys.into();
        self.cache
            .put_provider_keys(owner, keys.clone(), zone, ttl, Instant::now());
        Ok(keys)
    }

    /// The labels of the walk's next question to the servers of `zone`, when `known`
    /// labels of `target` are known to lie in it (see `minimise`): past the names below
    /// `known` that the zone already answered NODATA for (RFC 9156 section 3 step 5),
    /// then to the next cut or the target when the zone's child list is known, else as
    /// many labels as the minimiser allows.
    fn next_question(
        &self,
        zone: &Name,
        target: &Name,
        known: usize,
        minimiser: &mut minimise::Minimiser,
    ) -> usize {
        let target_labels = target.label_count();
        if known >= target_labels {
            // The target is the zone's own name.
            minimiser.count_known();
            return target_labels;
        }
        let now = Instant::now();
        let known = (known + 1..target_labels)
            .rev()
            .find(|&l| {
                self.cache
                    .in_zone(&suffix_with_labels(target, l), zone, now)
            })
            .unwrap_or(known);
        if let Some(children) = self.cache.children(zone, now) {
            minimiser.count_known();
            return children
                .iter()
                .filter(|c| target.is_subdomain_of(c))
                .map(Name::label_count)
                .filter(|&l| l > known)
                .min()
                .unwrap_or(target_labels);
        }
        minimiser.next(known, target_labels)
    }

    /// Asks the servers of `zone` until one gives a usable reply: first every server whose
    /// address is at hand (glue, or cached), those that failed recently last
    /// ([`infra::ServerMemory`]); then, only if none answered, the name servers without
    /// glue, each looked up when reached; then once more each server that timed out, up
    /// to `limits.retries` times.
    async fn ask_zone(
        &self,
        zone: &Delegation,
        qname: &Name,
        qtype: u16,
        walk: &mut Walk,
    ) -> Result<(Reply, SocketAddr, Box<Message>), ResolveError> {
        let now = Instant::now();
        let mut failures = Failures::default();
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut glueless = Vec::new();
        for (ns_name, glue) in &zone.servers {
            let addrs = match (glue.is_empty(), self.cache.addresses(ns_name, now)) {
                (false, _) => glue.clone(),
                (true, Some(Hit::Fresh(Entry::Addresses(a), _))) => a.to_vec(),
                (true, _) => {
                    glueless.push(ns_name);
                    continue;
                }
            };
            add_new(&mut ips, &addrs);
        }
        self.servers.order(&zone.zone, &mut ips, now);
        let mut glueless = glueless.into_iter();
        let mut timed_out = Vec::new();
        let mut next = 0;
        loop {
            let Some(&ip) = ips.get(next) else {
                let Some(ns_name) = glueless.next() else {
                    break;
                };
                match self.addresses_of(ns_name, zone, walk).await {
                    Ok(addrs) => {
                        let mut fresh = Vec::new();
                        for ip in addrs {
                            if !ips.contains(&ip) && !fresh.contains(&ip) {
                                fresh.push(ip);
                            }
                        }
                        self.servers.order(&zone.zone, &mut fresh, Instant::now());
                        ips.extend(fresh);
                    }
                    Err(
                        e @ (ResolveError::TooManyQueries { .. } | ResolveError::TooDeep { .. }),
                    ) => return Err(e),
                    Err(e) => failures.no_address.push(format!("{ns_name}: {e}")),
                }
                continue;
            };
            next += 1;
            match self
                .ask_server(zone, ip, qname, qtype, walk, &mut failures)
                .await?
            {
                Attempt::Reply(reply, message, server) => return Ok((reply, server, message)),
                Attempt::TimedOut => timed_out.push(ip),
                Attempt::Failed => {}
            }
        }
        // Retries only after every server had its first try, so one that swallows
        // queries does not hold up the others.
        for _ in 0..self.config.limits.retries {
            for ip in std::mem::take(&mut timed_out) {
                match self
                    .ask_server(zone, ip, qname, qtype, walk, &mut failures)
                    .await?
                {
                    Attempt::Reply(reply, message, server) => return Ok((reply, server, message)),
                    Attempt::TimedOut => timed_out.push(ip),
                    Attempt::Failed => {}
                }
            }
        }
        Err(failures.into_error(&zone.zone))
    }

    /// One question to one server of `zone`, counted against the walk's budget; a
    /// server that times out or cannot be reached is remembered for the zone.
    async fn ask_server(
        &self,
        zone: &Delegation,
        ip: IpAddr,
        qname: &Name,
        qtype: u16,
        walk: &mut Walk,
        failures: &mut Failures,
    ) -> Result<Attempt, ResolveError> {
        let limits = &self.config.limits;
        walk.queries += 1;
        if walk.queries > limits.max_queries {
            return Err(ResolveError::TooManyQueries {
                limit: limits.max_queries,
            });
        }
        let server = self.upstream.server_addr(ip);
        debug!(%server, %qname, qtype, "query");
        match self
            .upstream
            .exchange(
                ip,
                qname,
                qtype,
                limits.timeout,
                self.config.dnssec.is_some(),
            )
            .await
        {
            Ok((reply, _stream)) => {
                self.servers.answered(&zone.zone, ip);
                match classify(&reply, &zone.zone, qname, qtype) {
                    Ok(r) => Ok(Attempt::Reply(r, Box::new(reply), server)),
                    Err(why) => {
                        failures.bad.push(format!("{server}: {why}"));
                        Ok(Attempt::Failed)
                    }
                }
            }
            // An answer whose TSIG fails is as bad as a wrong one.
            Err(e @ transport::ExchangeError::Tsig(_)) => {
                failures.bad.push(format!("{server}: {e}"));
                Ok(Attempt::Failed)
            }
            Err(transport::ExchangeError::Timeout) => {
                debug!(zone = %zone.zone, %server, "timed out: tried last for a while");
                self.servers.failed(&zone.zone, ip, Instant::now());
                failures.timeouts.push(format!("{server}: timed out"));
                Ok(Attempt::TimedOut)
            }
            Err(e) => {
                // Refused connection and the like: retrying will not help.
                self.servers.failed(&zone.zone, ip, Instant::now());
                failures.timeouts.push(format!("{server}: {e}"));
                Ok(Attempt::Failed)
            }
        }
    }

    /// Addresses of a name server that came without glue, resolved through the tree.
    async fn addresses_of(
        &self,
        ns: &Name,
        zone: &Delegation,
        walk: &mut Walk,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        if ns.is_subdomain_of(&zone.zone) {
            // In the zone it serves but no glue: unreachable by definition.
            return Err(ResolveError::NoServerAddress {
                zone: zone.zone.clone(),
                detail: format!("{ns} lies inside the zone and came without glue"),
            });
        }
        if let Some(Hit::Fresh(Entry::Addresses(a), _)) = self.cache.addresses(ns, Instant::now()) {
            return Ok(a.to_vec());
        }
        if walk.resolving.contains(ns) {
            return Err(ResolveError::NoServerAddress {
                zone: zone.zone.clone(),
                detail: format!(
                    "{ns} needs itself to be found (a cycle of name servers without glue)"
                ),
            });
        }
        // Each glueless name server is a side trip down the tree: count it as a referral
        // so the depth limit bounds nested ones.
        walk.referral(&self.config.limits)?;
        walk.resolving.push(ns.clone());
        let result = self.resolve_addresses(ns, walk).await;
        walk.resolving.pop();
        let (out, ttl) = result?;
        if out.is_empty() {
            return Err(ResolveError::NoServerAddress {
                zone: zone.zone.clone(),
                detail: format!("{ns} has no address"),
            });
        }
        let ttl = Duration::from_secs(u64::from(ttl)).min(self.config.cache.max_ttl);
        self.cache
            .put_addresses(ns, out.clone(), ttl, Instant::now());
        Ok(out)
    }

    /// A records of a name server, then AAAA only when there is no A; with the lowest TTL.
    async fn resolve_addresses(
        &self,
        ns: &Name,
        walk: &mut Walk,
    ) -> Result<(Vec<IpAddr>, u32), ResolveError> {
        let mut out = Vec::new();
        let mut ttl = u32::MAX;
        for qt in [TYPE_A, TYPE_AAAA] {
            if let Resolved::Records { records, .. } = self.iterate(ns, qt, walk).await? {
                for r in &records {
                    match &r.data {
                        HRData::A(a) => out.push(IpAddr::V4(a.0)),
                        HRData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                        _ => continue,
                    }
                    ttl = ttl.min(r.ttl);
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Ok((out, ttl))
    }
}

fn bogus(zone: &Name, step: Bogus) -> ResolveError {
    ResolveError::Bogus {
        zone: zone.clone(),
        step,
    }
}

/// Now as RRSIG times count it (RFC 4034 section 3.1.5: serial arithmetic on 32 bits).
fn unix_now32() -> u32 {
    unix_now() as u32
}

/// Where an app provider's APKEY records live: `<provider>.ap.<apex>`.
pub fn apkey_owner(provider: &Name, apex: &Name) -> Option<Name> {
    let ap = Name::from_labels([&b"ap"[..]], apex).ok()?;
    Name::from_labels(provider.labels(), &ap).ok()
}

/// The last `labels` labels of `name`.
fn suffix_with_labels(name: &Name, labels: usize) -> Name {
    let total = name.label_count();
    name.suffixes()
        .nth(total.saturating_sub(labels))
        .map(Name::from_wire_trusted)
        .unwrap_or_else(|| name.clone())
}

/// The SOA of a negative answer with its TTL set to min(SOA TTL, MINIMUM), the time
/// the denial may be cached (RFC 2308 section 5); no SOA means no caching.
fn negative_soa(reply: &Message) -> (u32, Option<Box<Record>>) {
    reply
        .authorities
        .iter()
        .find_map(|r| match &r.data {
            HRData::SOA(soa) => {
                let mut r = r.clone();
                r.ttl = r.ttl.min(soa.minimum);
                Some((r.ttl, Some(Box::new(r))))
            }
            _ => None,
        })
        .unwrap_or((0, None))
}

/// Classifies a reply from a server of `zone` to (`qname`, `qtype`).
/// The acceptance rule (DESIGN section 5) for the SSI records at `owner`, as every
/// lookup here applies it - iterative, private, and `mimi lookup --server`: each record's
/// signature under a trusted key, owner binding, SSI host and validity now (failures come
/// back as rejections, logged); then [`select`].
pub fn accept(
    owner: &Name,
    records: &[Record],
    trust: &TrustStore,
    now: u64,
) -> (Vec<Mapping>, Vec<Rejection>) {
    let mut valid: Vec<(Ssi, u32)> = Vec::new();
    let mut rejected = Vec::new();
    let mut reject = |provider: String, ssi: String, kind: RejectReason, reason: String| {
        warn!(%owner, %provider, %ssi, "record rejected: {reason}");
        rejected.push(Rejection {
            provider,
            ssi,
            reason,
            kind,
        });
    };
    for r in records {
        let bytes = match &r.data {
            HRData::Unknown { rdata, .. } => &rdata.anything[..],
            _ => {
                reject(
                    String::new(),
                    String::new(),
                    RejectReason::Malformed,
                    "not SSI record data".into(),
                );
                continue;
            }
        };
        let ssi = match Ssi::from_wire(bytes) {
            Ok(s) => s,
            Err(e) => {
                reject(
                    String::new(),
                    String::new(),
                    RejectReason::Malformed,
                    format!("malformed: {e}"),
                );
                continue;
            }
        };
        match Name::from_hickory(&r.name) {
            Ok(n) if n == *owner => {}
            _ => {
                reject(
                    ssi.provider.to_string(),
                    ssi.uri.clone(),
                    RejectReason::WrongOwner,
                    format!("owner {} is not {owner}", r.name),
                );
                continue;
            }
        }
        if let Err(e) = verify_against(&ssi, owner, trust, now) {
            reject(
                ssi.provider.to_string(),
                ssi.uri.clone(),
                RejectReason::of(&e),
                e.to_string(),
            );
            continue;
        }
        let ttl = r
            .ttl
            .min(u32::try_from(ssi.not_after.saturating_sub(now)).unwrap_or(u32::MAX));
        valid.push((ssi, ttl));
    }
    (select(owner, valid), rejected)
}

/// The selection step of the acceptance rule, for records already verified: per provider
/// only the highest `seq` stands, and a tombstone there withdraws the provider's mapping;
/// the rest sorted by priority (then provider).
pub fn select(owner: &Name, valid: Vec<(Ssi, u32)>) -> Vec<Mapping> {
    let mut newest: std::collections::HashMap<Name, u64> = std::collections::HashMap::new();
    for (s, _) in &valid {
        let e = newest.entry(s.provider.clone()).or_insert(s.seq);
        *e = (*e).max(s.seq);
    }
    let mut mappings: Vec<Mapping> = Vec::new();
    for (ssi, ttl) in valid {
        let top = newest.get(&ssi.provider).copied().unwrap_or(ssi.seq);
        if ssi.seq < top {
            debug!(%owner, provider = %ssi.provider, "seq {} superseded by {top}", ssi.seq);
            continue;
        }
        if ssi.withdrawn {
            debug!(%owner, provider = %ssi.provider, "mapping withdrawn at seq {}", ssi.seq);
            continue;
        }
        mappings.push(Mapping {
            owner: owner.clone(),
            ssi,
            ttl,
        });
    }
    mappings
        .sort_by(|a, b| (a.ssi.priority, &a.ssi.provider).cmp(&(b.ssi.priority, &b.ssi.provider)));
    mappings
}

/// Classifies a reply's bytes as an iterative lookup would (fuzzing entry point): true
/// when it is usable (an answer, a referral, a denial), false when it is refused.
pub fn classify_reply_bytes(bytes: &[u8], zone: &Name, qname: &Name, qtype: u16) -> bool {
    Message::from_vec(bytes)
        .ok()
        .is_some_and(|m| classify(&m, zone, qname, qtype).is_ok())
}

fn classify(reply: &Message, zone: &Name, qname: &Name, qtype: u16) -> Result<Reply, String> {
    let rcode = reply.metadata.response_code;
    if rcode == ResponseCode::NXDomain {
        let (ttl, soa) = negative_soa(reply);
        return Ok(Reply::NxDomain { ttl, soa });
    }
    if rcode != ResponseCode::NoError {
        return Err(format!("answered {rcode}"));
    }
    let same = |n: &hickory_proto::rr::Name| Name::from_hickory(n).is_ok_and(|n| n == *qname);
    let answers: Vec<Record> = reply
        .answers
        .iter()
        .filter(|r| u16::from(r.record_type()) == qtype && same(&r.name))
        .cloned()
        .collect();
    if !answers.is_empty() {
        if !reply.metadata.authoritative {
            return Err("answer without the AA flag".into());
        }
        return Ok(Reply::Answer(answers));
    }
    // An authoritative denial may carry the zone's own NS beside its SOA (RFC 2308
    // section 2.2): that is NODATA, not a referral.
    let of_zone = |r: &&Record| Name::from_hickory(&r.name).is_ok_and(|n| n == *zone);
    let nodata_form = reply.metadata.authoritative
        && reply
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA && of_zone(&r));
    let ns: Vec<&Record> = reply
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::NS)
        .filter(|r| !(nodata_form && of_zone(r)))
        .collect();
    if let Some(first) = ns.first() {
        let cut = Name::from_hickory(&first.name).map_err(|e| format!("bad NS owner: {e}"))?;
        if cut == *zone || !cut.is_subdomain_of(zone) {
            return Err(format!("referral to {cut}, which is not below {zone}"));
        }
        if !qname.is_subdomain_of(&cut) {
            return Err(format!("referral to {cut}, which does not contain {qname}"));
        }
        let mut targets = Vec::new();
        let mut ttl = u32::MAX;
        for r in &ns {
            if Name::from_hickory(&r.name).ok().as_ref() != Some(&cut) {
                continue;
            }
            if let HRData::NS(t) = &r.data {
                if let Ok(t) = Name::from_hickory(&t.0) {
                    targets.push(t);
                    ttl = ttl.min(r.ttl);
                }
            }
        }
        if targets.is_empty() {
            return Err(format!("referral to {cut} without name servers"));
        }
        // Glue only for the delegation's name servers and only inside the referring
        // zone's bailiwick, so a server cannot plant addresses for other names.
        let glue = reply
            .additionals
            .iter()
            .filter_map(|r| {
                let n = Name::from_hickory(&r.name).ok()?;
                if !n.is_subdomain_of(zone) || !targets.contains(&n) {
                    return None;
                }
                match &r.data {
                    HRData::A(a) => Some((n, IpAddr::V4(a.0))),
                    HRData::AAAA(a) => Some((n, IpAddr::V6(a.0))),
                    _ => None,
                }
            })
            .collect();
        return Ok(Reply::Referral {
            cut,
            ns: targets,
            glue,
            ttl,
        });
    }
    if reply.metadata.authoritative {
        let (ttl, soa) = negative_soa(reply);
        return Ok(Reply::NoData { ttl, soa });
    }
    Err("neither an answer, a referral nor an authoritative denial (lame server?)".into())
}

/// Errors building a resolver from files.
#[derive(Debug, Error)]
pub enum ResolverSetupError {
    #[error(transparent)]
    Config(#[from] crate::dp::ConfigError),
    #[error(transparent)]
    Trust(#[from] KeyError),
    #[error(transparent)]
    Subscription(#[from] invalidate::SubscriptionKeyError),
}
