//! Per-client token buckets: how private lookups are kept to an app's normal contact sync
//! while bulk enumeration is stopped (draft-rosenberg-mimi-discovery-reqs: rate limits).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at most; past this the fullest (idlest) buckets are forgotten first.
const MAX_CLIENTS: usize = 100_000;

/// A token bucket rate: `burst` tokens, refilled at `per_hour` tokens an hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_hour: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by client address (IPv6 clients by their /64, since one host
/// usually holds a whole /64), or by any other key such as a provider's name.
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

impl RateLimiter<IpAddr> {
    /// Takes `cost` tokens for `ip` at `now`; false (and nothing taken) when it has fewer.
    pub fn allow(&self, ip: IpAddr, cost: f64, now: Instant) -> bool {
        self.allow_key(client_key(ip), cost, now)
    }
}

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    pub fn new(rate: Rate) -> RateLimiter<K> {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens for `key` at `now`; false (and nothing taken) when it has fewer.
    pub fn allow_key(&self, key: K, cost: f64, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS {
            self.forget_full(&mut buckets, now);
        }
        let rate = self.rate;
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_hour / 3600.0).min(rate.burst);
        b.at = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Drops buckets that have refilled completely: forgetting them changes nothing.
    fn forget_full(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        let rate = self.rate;
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate.per_hour / 3600.0 < rate.burst
        });
        if buckets.len() >= MAX_CLIENTS {
            // Still full of active clients: start over rather than grow without bound.
            buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(Rate {
            burst: 3.0,
            per_hour: 3600.0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(rl.allow(ip, 1.0, t0));
        assert!(rl.allow(ip, 1.0, t0));
        assert!(rl.allow(ip, 1.0, t0));
        assert!(!rl.allow(ip, 1.0, t0));
        // Another client has its own bucket.
        assert!(rl.allow("192.0.2.2".parse().unwrap(), 1.0, t0));
        // One token a second.
        assert!(rl.allow(ip, 1.0, t0 + Duration::from_millis(1100)));
        assert!(!rl.allow(ip, 1.0, t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let rl = RateLimiter::new(Rate {
            burst: 1.0,
            per_hour: 1.0,
        });
        let t0 = Instant::now();
        assert!(rl.allow("2001:db8::1".parse().unwrap(), 1.0, t0));
        assert!(!rl.allow("2001:db8::2".parse().unwrap(), 1.0, t0));
        assert!(rl.allow("2001:db8:0:1::1".parse().unwrap(), 1.0, t0));
    }
}
