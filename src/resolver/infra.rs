//! Memory of name servers that did not answer, per zone (Unbound's "infra cache" idea):
//! a server of a zone that timed out, or whose address refused the datagram, is tried after
//! the zone's other servers until its backoff runs out, so one dead server costs a lookup
//! one timeout and later lookups none. The backoff starts at `limits.server_backoff_secs`
//! and doubles with each further failure up to `limits.server_backoff_max_secs`; an answer
//! from the server forgets it. A penalised server is still asked when every other server
//! of the zone has failed too: a zone whose only server is flaky keeps working.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::name::Name;

/// Servers remembered at most (zone and address pairs); the least recently failed go first.
const REMEMBERED: usize = 4096;

/// How long servers that failed are put last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// After the first failure.
    pub first: Duration,
    /// The longest, however often the server failed.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        // Unbound keeps a host's timeout state for 900 s (infra-host-ttl).
        Backoff {
            first: Duration::from_secs(30),
            max: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    /// Failures in a row.
    failures: u32,
    /// Tried last until then.
    until: Instant,
}

/// The servers of each zone that failed recently.
pub struct ServerMemory {
    backoff: Backoff,
    failed: Mutex<LruCache<(Name, IpAddr), Penalty>>,
}

impl ServerMemory {
    pub fn new(backoff: Backoff) -> ServerMemory {
        ServerMemory {
            backoff,
            failed: Mutex::new(LruCache::new(
                NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(Name, IpAddr), Penalty>> {
        // A panic while holding the lock cannot leave the LRU inconsistent for readers.
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every failure.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Records that `ip`, asked as a server of `zone`, timed out or was unreachable.
    pub fn failed(&self, zone: &Name, ip: IpAddr, now: Instant) {
        let mut failed = self.lock();
        let key = (zone.clone(), ip);
        let failures = failed.get(&key).map_or(1, |p| p.failures.saturating_add(1));
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        let wait = self
            .backoff
            .first
            .saturating_mul(factor)
            .min(self.backoff.max);
        failed.put(
            key,
            Penalty {
                failures,
                until: now + wait,
            },
        );
    }

    /// Records that `ip` answered for `zone`: it is no longer penalised.
    pub fn answered(&self, zone: &Name, ip: IpAddr) {
        let mut failed = self.lock();
        if !failed.is_empty() {
            failed.pop(&(zone.clone(), ip));
        }
    }

    /// Until when `ip` is tried last for `zone`, if it is.
    pub fn penalised_until(&self, zone: &Name, ip: IpAddr, now: Instant) -> Option<Instant> {
        let failed = self.lock();
        if failed.is_empty() {
            return None;
        }
        failed
            .peek(&(zone.clone(), ip))
            .map(|p| p.until)
            .filter(|&until| until > now)
    }

    /// Puts the servers of `zone` in the order to try them: those not penalised first, in
    /// the order given (the delegation's), then the penalised ones, the soonest forgiven
    /// first.
    pub fn order(&self, zone: &Name, servers: &mut [IpAddr], now: Instant) {
        if self.lock().is_empty() {
            return;
        }
        // A stable sort keeps the delegation's order among servers that are not penalised.
        servers.sort_by_cached_key(|&ip| self.penalised_until(zone, ip, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        "5.5.5.1.e164.mimi.arpa.".parse().unwrap()
    }

    #[test]
    fn a_failed_server_goes_last_for_its_zone_until_its_backoff_ends() {
        let memory = ServerMemory::new(Backoff {
            first: Duration::from_secs(10),
            max: Duration::from_secs(35),
        });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [192, 0, 2, 1].into(),
            [192, 0, 2, 2].into(),
            [192, 0, 2, 3].into(),
        );
        let now = Instant::now();
        memory.failed(&zone(), a, now);
        let mut order = [a, b, c];
        memory.order(&zone(), &mut order, now);
        assert_eq!(order, [b, c, a]);
        // Another zone on the same address is not affected.
        let other: Name = "e164.mimi.arpa.".parse().unwrap();
        let mut order = [a, b];
        memory.order(&other, &mut order, now);
        assert_eq!(order, [a, b]);
        // Backoff: 10 s, then 20 s, then capped at 35 s.
        assert_eq!(
            memory.penalised_until(&zone(), a, now),
            Some(now + Duration::from_secs(10))
        );
        memory.failed(&zone(), a, now);
        assert_eq!(
            memory.penalised_until(&zone(), a, now),
            Some(now + Duration::from_secs(20))
        );
        memory.failed(&zone(), a, now);
        assert_eq!(
            memory.penalised_until(&zone(), a, now),
            Some(now + Duration::from_secs(35))
        );
        // Two penalised servers: the one forgiven sooner first.
        memory.failed(&zone(), b, now);
        let mut order = [a, b, c];
        memory.order(&zone(), &mut order, now);
        assert_eq!(order, [c, b, a]);
        // Past the backoff the delegation's order is back.
        let later = now + Duration::from_secs(36);
        let mut order = [a, b, c];
        memory.order(&zone(), &mut order, later);
        assert_eq!(order, [a, b, c]);
        // An answer forgets the failures.
        memory.answered(&zone(), b);
        assert_eq!(memory.penalised_until(&zone(), b, now), None);
    }
}
