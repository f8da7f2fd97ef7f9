//! The resolver's cache: verified answers, negative answers (RFC 2308), delegations by
//! zone cut, and what walks learnt about where the cuts are not (names a zone answered
//! NODATA for, and zones' PIRCFG child lists), in one LRU bounded by entries. Expired
//! entries stay until evicted so they can be served stale (RFC 8767) when a zone's servers
//! are all unreachable. An answer entry also keeps, once the DNS listener has answered from
//! it, the listener's response sections in wire form (`super::wire`), which go with the
//! entry.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use hickory_proto::rr::Record;

use super::secure::Security;
use super::wire::WireAnswer;
use super::{Mapping, Rejection};
use crate::changes::PrefixSet;
use crate::name::Name;

/// A zone cut: the zone's name servers and the addresses known for them.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub zone: Name,
    pub servers: Vec<(Name, Vec<IpAddr>)>,
}

impl Delegation {
    /// The delegation a referral describes: each name server with its glue addresses.
    pub fn from_referral(zone: Name, ns: Vec<Name>, glue: &[(Name, IpAddr)]) -> Delegation {
        let servers = ns
            .into_iter()
            .map(|n| {
                let addrs = glue
                    .iter()
                    .filter(|(g, _)| *g == n)
                    .map(|(_, a)| *a)
                    .collect();
                (n, addrs)
            })
            .collect();
        Delegation { zone, servers }
    }
}

/// Why a name has no mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negative {
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// NODATA: the name exists but has no SSI records.
    NoMappings,
}

/// A verified answer: all valid mappings at a name, before any policy is applied.
#[derive(Debug, Clone)]
pub struct Answer {
    pub mappings: Arc<Vec<Mapping>>,
    /// Records at the name that failed verification, for reporting.
    pub rejected: Arc<Vec<Rejection>>,
    pub zone: Name,
    pub server: SocketAddr,
}

#[derive(Debug, Clone)]
pub enum Entry {
    Answer(Answer),
    Negative {
        kind: Negative,
        zone: Name,
        server: SocketAddr,
        /// The SOA of the denial, passed on by the DNS listener.
        soa: Option<Arc<Record>>,
    },
    Delegation(Arc<Delegation>),
    /// Addresses of a name server that came without glue.
    Addresses(Arc<[IpAddr]>),
    /// A name that exists in this zone and is no zone cut: the zone answered NODATA for
    /// its NS (RFC 9156 section 3 step 5 lets a walk go past it without asking again).
    InZone(Name),
    /// Every delegation of a zone (the child list of its PIRCFG record).
    Children(Arc<[Name]>),
    /// What DNSSEC proved of a zone (its keys, its DS set, or that it is insecure).
    Security(Security),
    /// An app provider's keys from its APKEY records in a validated tree (empty: it has
    /// none, or they expired), and the zone that served them.
    ProviderKeys {
        keys: Arc<[ed25519_dalek::VerifyingKey]>,
        zone: Name,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Answer = 1,
    Delegation = 2,
    Addresses = 3,
    InZone = 4,
    Children = 5,
    Security = 6,
    ProviderKeys = 7,
}

/// Wire name followed by the kind byte: a plain byte string, so lookups borrow a key
/// built on the stack instead of allocating one.
type Key = Box<[u8]>;

fn key_into<'b>(wire: &[u8], kind: Kind, buf: &'b mut [u8; 256]) -> &'b [u8] {
    buf[..wire.len()].copy_from_slice(wire);
    buf[wire.len()] = kind as u8;
    &buf[..=wire.len()]
}

struct Slot {
    entry: Entry,
    expires: Instant,
    /// First 32 bits of SHA-256 over the name (crate::changes), so invalidation tests
    /// a CHANGES list against each entry without hashing under the lock.
    digest: u32,
    /// The DNS listener's wire form of an answer entry (`Cache::wire_answer`).
    wire: WireForm,
}

/// Made the first time the listener answers from an entry, not when the entry is cached:
/// lookups through the library or `mimi lookup`, and entries the listener never serves,
/// do not pay for it, and the walk that caches entries stays unaware of the listener.
enum WireForm {
    NotYet,
    Built(Arc<WireAnswer>),
    /// Could not be made: the entry is left to the general path.
    Unusable,
}

/// What a cache read found.
pub enum Hit {
    Fresh(Entry, Duration),
    /// Expired `ago`, kept for serve-stale.
    Stale(Entry, Duration),
}

pub struct Cache {
    lru: Mutex<LruCache<Key, Slot>>,
}

impl Cache {
    pub fn new(entries: usize) -> Cache {
        let cap = NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Cache {
            lru: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Key, Slot>> {
        // A panic while holding the lock cannot leave the LRU inconsistent for readers.
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, name: &Name, kind: Kind, now: Instant) -> Option<Hit> {
        let mut buf = [0u8; 256];
        let key = key_into(name.as_wire(), kind, &mut buf);
        let mut lru = self.lock();
        let slot = lru.get(key)?;
        Some(if slot.expires > now {
            Hit::Fresh(slot.entry.clone(), slot.expires - now)
        } else {
            Hit::Stale(slot.entry.clone(), now - slot.expires)
        })
    }

    fn put(&self, name: &Name, kind: Kind, entry: Entry, ttl: Duration, now: Instant) {
        let slot = Slot {
            entry,
            expires: now + ttl,
            digest: crate::changes::digest32(name),
            wire: WireForm::NotYet,
        };
        let mut buf = [0u8; 256];
        let key = key_into(name.as_wire(), kind, &mut buf);
        self.lock().put(key.into(), slot);
    }

    /// The cached answer (positive or negative) for an owner name.
    pub fn answer(&self, name: &Name, now: Instant) -> Option<Hit> {
        self.get(name, Kind::Answer, now)
    }

    pub fn put_answer(&self, name: &Name, entry: Entry, ttl: Duration, now: Instant) {
        self.put(name, Kind::Answer, entry, ttl, now);
    }

    /// The DNS listener's wire form of the fresh answer (positive or negative) cached for
    /// `owner` (lowercase wire form), with the time it has left; `build` makes it from the
    /// entry the first time. None when no fresh answer is cached (an expired one is the
    /// general path's, for serve-stale) or it has no wire form. No allocation once built.
    pub fn wire_answer(
        &self,
        owner: &[u8],
        now: Instant,
        build: impl FnOnce(&Entry) -> Option<WireAnswer>,
    ) -> Option<(Arc<WireAnswer>, Duration)> {
        if owner.len() > crate::name::MAX_WIRE_LEN {
            return None;
        }
        let mut buf = [0u8; 256];
        let key = key_into(owner, Kind::Answer, &mut buf);
        let mut lru = self.lock();
        let slot = lru.get_mut(key)?;
        if slot.expires <= now {
            return None;
        }
        if let WireForm::NotYet = slot.wire {
            // Built under the lock, once, so it is the wire form of this very entry: a
            // replaced or invalidated entry takes its wire form with it.
            slot.wire =
                build(&slot.entry).map_or(WireForm::Unusable, |w| WireForm::Built(Arc::new(w)));
        }
        match &slot.wire {
            WireForm::Built(w) => Some((w.clone(), slot.expires - now)),
            WireForm::NotYet | WireForm::Unusable => None,
        }
    }

    /// The deepest fresh delegation at or above `name`.
    pub fn closest_delegation(&self, name: &Name, now: Instant) -> Option<Arc<Delegation>> {
        let mut buf = [0u8; 256];
        let mut lru = self.lock();
        for suffix in name.suffixes() {
            if let Some(slot) = lru.get(key_into(suffix, Kind::Delegation, &mut buf)) {
                if slot.expires > now {
                    if let Entry::Delegation(d) = &slot.entry {
                        return Some(d.clone());
                    }
                }
            }
        }
        None
    }

    pub fn put_delegation(&self, d: Delegation, ttl: Duration, now: Instant) {
        let zone = d.zone.clone();
        self.put(
            &zone,
            Kind::Delegation,
            Entry::Delegation(Arc::new(d)),
            ttl,
            now,
        );
    }

    /// The cached addresses of a name server.
    pub fn addresses(&self, name: &Name, now: Instant) -> Option<Hit> {
        self.get(name, Kind::Addresses, now)
    }

    pub fn put_addresses(&self, name: &Name, addrs: Vec<IpAddr>, ttl: Duration, now: Instant) {
        self.put(
            name,
            Kind::Addresses,
            Entry::Addresses(addrs.into()),
            ttl,
            now,
        );
    }

    /// Whether `name` is known (fresh) to lie in `zone` without being a cut.
    pub fn in_zone(&self, name: &Name, zone: &Name, now: Instant) -> bool {
        matches!(
            self.get(name, Kind::InZone, now),
            Some(Hit::Fresh(Entry::InZone(z), _)) if z == *zone
        )
    }

    pub fn put_in_zone(&self, name: &Name, zone: &Name, ttl: Duration, now: Instant) {
        self.put(name, Kind::InZone, Entry::InZone(zone.clone()), ttl, now);
    }

    /// The delegations of `zone`, when its child list is known (fresh).
    pub fn children(&self, zone: &Name, now: Instant) -> Option<Arc<[Name]>> {
        match self.get(zone, Kind::Children, now) {
            Some(Hit::Fresh(Entry::Children(c), _)) => Some(c),
            _ => None,
        }
    }

    pub fn put_children(&self, zone: &Name, children: Vec<Name>, ttl: Duration, now: Instant) {
        self.put(
            zone,
            Kind::Children,
            Entry::Children(children.into()),
            ttl,
            now,
        );
    }

    /// What DNSSEC proved of `zone`, while fresh.
    pub fn security(&self, zone: &Name, now: Instant) -> Option<Security> {
        match self.get(zone, Kind::Security, now) {
            Some(Hit::Fresh(Entry::Security(s), _)) => Some(s),
            _ => None,
        }
    }

    pub fn put_security(&self, zone: &Name, security: Security, ttl: Duration, now: Instant) {
        self.put(zone, Kind::Security, Entry::Security(security), ttl, now);
    }

    /// The keys of the provider whose APKEY owner name is `owner`, while fresh.
    pub fn provider_keys(
        &self,
        owner: &Name,
        now: Instant,
    ) -> Option<Arc<[ed25519_dalek::VerifyingKey]>> {
        match self.get(owner, Kind::ProviderKeys, now) {
            Some(Hit::Fresh(Entry::ProviderKeys { keys, .. }, _)) => Some(keys),
            _ => None,
        }
    }

    pub fn put_provider_keys(
        &self,
        owner: &Name,
        keys: Arc<[ed25519_dalek::VerifyingKey]>,
        zone: Name,
        ttl: Duration,
        now: Instant,
    ) {
        let entry = Entry::ProviderKeys { keys, zone };
        self.put(owner, Kind::ProviderKeys, entry, ttl, now);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Drops every entry of `zone` - answers and denials it gave (fresh or stale), and
    /// delegations and name-server addresses below its apex - whose name's digest prefix
    /// `listed` holds (None: every entry of the zone). Returns how many went.
    pub fn invalidate(&self, zone: &Name, listed: Option<&PrefixSet>) -> usize {
        let mut lru = self.lock();
        let doomed: Vec<Key> = lru
            .iter()
            .filter(|(key, slot)| {
                // Any change of a zone may add or remove a delegation, which the listed
                // names would not show at the zone's own name: its child list goes.
                if let Entry::Children(_) = &slot.entry {
                    return key
                        .split_last()
                        .is_some_and(|(_, wire)| wire == zone.as_wire());
                }
                if listed.is_some_and(|set| !set.contains_digest(slot.digest)) {
                    return false;
                }
                match &slot.entry {
                    Entry::Answer(a) => a.zone == *zone,
                    Entry::Negative { zone: z, .. }
                    | Entry::InZone(z)
                    | Entry::ProviderKeys { zone: z, .. } => z == zone,
                    Entry::Children(_) => false,
                    // A zone's keys may have rolled; its children's DS sets may have changed.
                    Entry::Security(_) => key
                        .split_last()
                        .map(|(_, wire)| Name::from_wire_trusted(wire))
                        .is_some_and(|n| n.is_subdomain_of(zone)),
                    Entry::Delegation(_) | Entry::Addresses(_) => key
                        .split_last()
                        .map(|(_, wire)| Name::from_wire_trusted(wire))
                        .is_some_and(|n| n != *zone && n.is_subdomain_of(zone)),
                }
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            lru.pop(key);
        }
        doomed.len()
    }
}
