//! Answers of private lookups from a replica, kept so that a contact seen again costs no
//! OPRF evaluation: by owner name, each with the zone, epoch, shard and buckets it came from,
//! so a replica delta that changes one of those buckets drops it (DESIGN.md section 11),
//! and with the owner's CHANGES digest, so a subscribed zone's NOTIFY drops it too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::changes::PrefixSet;
use crate::name::Name;

/// Where a cached answer's slots were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub epoch: u64,
    pub shard: u32,
    /// Every bucket the lookup opened (both of each spill index); none for a PIR lookup,
    /// whose buckets the resolver never learns (and whose answers are not cached).
    pub buckets: Vec<u32>,
}

/// One cached answer: the SSI RDATAs found (none: not in the zone).
#[derive(Debug, Clone)]
pub struct PrivateAnswer {
    pub records: Vec<Vec<u8>>,
    pub zone: Name,
    pub server: SocketAddr,
    pub source: Source,
}

struct Slot {
    answer: PrivateAnswer,
    expires: Instant,
    digest: u32,
}

pub struct PrivateCache {
    lru: Mutex<LruCache<Name, Slot>>,
    ttl: Duration,
}

impl PrivateCache {
    pub fn new(entries: usize, ttl: Duration) -> PrivateCache {
        let cap = NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        PrivateCache {
            lru: Mutex::new(LruCache::new(cap)),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Name, Slot>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn get(&self, owner: &Name) -> Option<PrivateAnswer> {
        let mut lru = self.lock();
        match lru.get(owner) {
            Some(s) if s.expires > Instant::now() => Some(s.answer.clone()),
            Some(_) => {
                lru.pop(owner);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, owner: Name, answer: PrivateAnswer) {
        let digest = crate::changes::digest32(&owner);
        self.lock().put(
            owner,
            Slot {
                answer,
                expires: Instant::now() + self.ttl,
                digest,
            },
        );
    }

    fn drop_where(&self, doomed: impl Fn(&Slot) -> bool) -> usize {
        let mut lru = self.lock();
        let keys: Vec<Name> = lru
            .iter()
            .filter(|(_, s)| doomed(s))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            lru.pop(k);
        }
        keys.len()
    }

    /// Drops the answers read from any of `buckets` of one shard of `zone`'s epoch.
    pub fn drop_buckets(
        &self,
        zone: &Name,
        epoch: u64,
        shard: u32,
        buckets: &BTreeSet<u32>,
    ) -> usize {
        self.drop_where(|s| {
            let src = &s.answer.source;
            s.answer.zone == *zone
                && src.epoch == epoch
                && src.shard == shard
                && src.buckets.iter().any(|b| buckets.contains(b))
        })
    }

    /// Drops every answer of `zone`, or those whose owner's digest is `listed`.
    pub fn drop_zone_listed(&self, zone: &Name, listed: Option<&PrefixSet>) -> usize {
        self.drop_where(|s| {
            s.answer.zone == *zone && listed.is_none_or(|set| set.contains_digest(s.digest))
        })
    }

    pub fn drop_zone(&self, zone: &Name) -> usize {
        self.drop_zone_listed(zone, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(zone: &Name, shard: u32, buckets: Vec<u32>) -> PrivateAnswer {
        PrivateAnswer {
            records: vec![vec![1, 2, 3]],
            zone: zone.clone(),
            server: "127.0.0.1:53".parse().unwrap(),
            source: Source {
                epoch: 5,
                shard,
                buckets,
            },
        }
    }

    #[test]
    fn a_changed_bucket_drops_exactly_the_answers_read_from_it() {
        let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let c = PrivateCache::new(100, Duration::from_secs(60));
        let a = Name::parse("a.5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let b = Name::parse("b.5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let d = Name::parse("d.5.5.5.1.e164.mimi.arpa.", None).unwrap();
        c.insert(a.clone(), answer(&zone, 0, vec![3, 9]));
        c.insert(b.clone(), answer(&zone, 0, vec![4, 11]));
        c.insert(d.clone(), answer(&zone, 1, vec![9, 2]));
        assert_eq!(c.drop_buckets(&zone, 5, 0, &BTreeSet::from([9, 100])), 1);
        assert!(c.get(&a).is_none());
        assert!(c.get(&b).is_some() && c.get(&d).is_some());
        // Another epoch's buckets are other buckets.
        assert_eq!(c.drop_buckets(&zone, 6, 0, &BTreeSet::from([4])), 0);
        assert_eq!(c.drop_zone(&zone), 2);
    }
}
