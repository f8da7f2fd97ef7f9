//! Per-client token buckets: how private lookups are kept to an app's normal contact sync
//! while bulk enumeration is stopped (draft-rosenberg-mimi-discovery-reqs: rate limits).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at most; past this the fullest (idlest) buckets are forgotten first.
const MAX_CLIENTS: usize = 100_000;

/// A token bucket rate: `burst` tokens, refilled at `per_hour` tokens an hour; with
/// `per_day`, also at most that many tokens taken in any one day window (a window opens
/// at a client's first request and lasts 24 hours).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_hour: f64,
    pub per_day: Option<f64>,
}

impl Rate {
    /// `burst` tokens refilled at `per_hour`, no daily cap.
    pub fn hourly(burst: f64, per_hour: f64) -> Rate {
        Rate {
            burst,
            per_hour,
            per_day: None,
        }
    }

    /// A daily quota: `per_day` tokens a day, refilled evenly over the day, at most
    /// `burst` at once.
    pub fn daily(per_day: f64, burst: f64) -> Rate {
        Rate {
            burst,
            per_hour: per_day / 24.0,
            per_day: Some(per_day),
        }
    }
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// What stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The bucket is empty for now.
    Burst,
    /// The day window's quota is used up.
    Day,
}

/// One client's tokens.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    /// Start of the current day window and what was taken in it.
    window: Instant,
    used: f64,
}

impl Bucket {
    pub fn full(rate: &Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
            window: now,
            used: 0.0,
        }
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_hour / 3600.0).min(rate.burst);
        self.at = now;
        if now.saturating_duration_since(self.window) >= DAY {
            self.window = now;
            self.used = 0.0;
        }
    }

    /// Takes `cost` tokens at `now`; nothing is taken when they are not all there.
    pub fn take(&mut self, rate: &Rate, cost: f64, now: Instant) -> Result<(), Shortfall> {
        self.refill(rate, now);
        if rate.per_day.is_some_and(|day| self.used + cost > day) {
            return Err(Shortfall::Day);
        }
        if self.tokens < cost {
            return Err(Shortfall::Burst);
        }
        self.tokens -= cost;
        self.used += cost;
        Ok(())
    }

    /// Whether forgetting this bucket would change nothing: full, and nothing counted
    /// against a daily cap.
    fn is_idle(&self, rate: &Rate, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= rate.burst && (rate.per_day.is_none() || b.used == 0.0)
    }
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
        self.take(ip, cost, now).is_ok()
    }

    /// As `allow`, saying what stopped the request.
    pub fn take(&self, ip: IpAddr, cost: f64, now: Instant) -> Result<(), Shortfall> {
        self.take_key(client_key(ip), cost, now)
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
        self.take_key(key, cost, now).is_ok()
    }

    /// As `allow_key`, saying what stopped the request.
    pub fn take_key(&self, key: K, cost: f64, now: Instant) -> Result<(), Shortfall> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS {
            self.forget_idle(&mut buckets, now);
        }
        let rate = self.rate;
        buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(&rate, now))
            .take(&rate, cost, now)
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Drops buckets whose clients are idle: forgetting them changes nothing.
    fn forget_idle(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        let rate = self.rate;
        buckets.retain(|_, b| !b.is_idle(&rate, now));
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
        let rl = RateLimiter::new(Rate::hourly(3.0, 3600.0));
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
        let rl = RateLimiter::new(Rate::hourly(1.0, 1.0));
        let t0 = Instant::now();
        assert!(rl.allow("2001:db8::1".parse().unwrap(), 1.0, t0));
        assert!(!rl.allow("2001:db8::2".parse().unwrap(), 1.0, t0));
        assert!(rl.allow("2001:db8:0:1::1".parse().unwrap(), 1.0, t0));
    }
}
