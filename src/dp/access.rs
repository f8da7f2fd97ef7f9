//! Access classes (DESIGN section 10, docs/security.md): who is asking, and how much they
//! may ask. A client is anonymous (counted by address, IPv6 by /64) unless it proves an
//! app provider's identity: a client certificate whose SPKI hash a `[[client]]` entry
//! names (mutual TLS), or a TSIG key a `[[client]]` entry names (plain queries). Each
//! class has a daily quota and a burst; public queries, OPRF evaluations and PIR queries
//! all count against it. For identified providers the DP also counts the signals of
//! enumeration: distinct names asked and the share of NXDOMAIN answers, per day.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use thiserror::Error;
use tracing::warn;

use super::ratelimit::{Bucket, Rate, RateLimiter, Shortfall};
use crate::name::Name;
use crate::signed::WireError;
use crate::tsig::TsigKey;

/// A class's allowance, in lookups (see [`super::private::lookup_cost`] for what a
/// private lookup counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quota {
    Unlimited,
    /// `per_day` lookups in any day window, at most `burst` at once; `per_day` 0 serves
    /// nothing.
    Daily {
        per_day: u64,
        burst: u64,
    },
}

impl Quota {
    fn rate(self) -> Option<Rate> {
        match self {
            Quota::Unlimited => None,
            Quota::Daily { per_day, burst } => Some(Rate::daily(per_day as f64, burst as f64)),
        }
    }

    fn describe(self) -> String {
        match self {
            Quota::Unlimited => "unlimited".into(),
            Quota::Daily { per_day, burst } => format!("{per_day} a day, burst {burst}"),
        }
    }
}

/// Anonymous clients by default: enough for the 50 lookups a day per user the
/// private-discovery draft asks for (section 8.4) from a few dozen users behind one
/// address, a private lookup counting three; a number block of 10,000 takes one address
/// a day to walk.
pub const DEFAULT_ANONYMOUS: Quota = Quota::Daily {
    per_day: 10_000,
    burst: 1_000,
};

/// `[access]` of a DP config.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub anonymous: Quota,
    /// An identity asking for more distinct names than this in a day is logged at WARN.
    pub warn_distinct_names: u64,
    /// ... as is one whose share of NXDOMAIN answers in a day passes this, once it has
    /// asked `warn_min_queries`.
    pub warn_nxdomain_share: f64,
    pub warn_min_queries: u64,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            anonymous: DEFAULT_ANONYMOUS,
            warn_distinct_names: 1_000_000,
            warn_nxdomain_share: 0.5,
            warn_min_queries: 1_000,
        }
    }
}

/// One `[[client]]` entry: an app provider's identity and its quota.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    pub provider: Name,
    /// SPKI pins (base64 SHA-256) of the provider's client certificates.
    pub pins: Vec<String>,
    /// Key file (BIND format) that signs the provider's plain queries.
    pub tsig: Option<PathBuf>,
    pub quota: Quota,
    /// Where the entry is (`file:line`), for messages.
    pub at: String,
}

#[derive(Debug, Error)]
pub enum AccessError {
    #[error("{at}: [[client]] {provider}: {source}")]
    Key {
        provider: Name,
        at: String,
        #[source]
        source: Box<crate::record::KeyError>,
    },
    #[error("{at}: [[client]] {provider}: TSIG key {key} is also the key of [[client]] {other}")]
    SharedKey {
        provider: Name,
        at: String,
        key: Name,
        other: Name,
    },
    #[error("{at}: [[client]] {provider}: pin {pin} is also a pin of [[client]] {other}")]
    SharedPin {
        provider: Name,
        at: String,
        pin: String,
        other: Name,
    },
}

/// Why a request was refused by its class.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AccessRefusal {
    #[error("{who}: quota of {per_day} lookups a day used up; try later")]
    Day { who: String, per_day: u64 },
    #[error("{who}: more than {burst} lookups at once; try again shortly")]
    Burst { who: String, burst: u64 },
    #[error(
        "anonymous lookups are not served here: identify with a client certificate or a TSIG key"
    )]
    NoAnonymous,
}

impl WireError for AccessRefusal {
    fn rcode(&self) -> ResponseCode {
        ResponseCode::Refused
    }

    fn ede_code(&self) -> u16 {
        match self {
            AccessRefusal::NoAnonymous => crate::ede::PROHIBITED,
            _ => crate::ede::RATE_LIMITED,
        }
    }
}

/// Distinct names seen, estimated by HyperLogLog (Flajolet, Fusy, Gandouet, Meunier
/// 2007) in 16 KiB whatever the count: about 0.8% standard error. Below five times the
/// register count the raw estimate is biased (the paper's small-range problem, which
/// HLL++ mends with tables); linear counting over the empty registers is used there.
#[derive(Debug, Clone)]
struct DistinctNames {
    registers: Box<[u8; REGISTERS]>,
}

const REGISTER_BITS: u32 = 14;
const REGISTERS: usize = 1 << REGISTER_BITS;

impl DistinctNames {
    fn new() -> DistinctNames {
        DistinctNames {
            registers: Box::new([0; REGISTERS]),
        }
    }

    fn add(&mut self, hash: u64) {
        let index = (hash >> (64 - REGISTER_BITS)) as usize;
        // The rank of the first one bit in the rest; the sentinel bounds it.
        let rest = (hash << REGISTER_BITS) | (1 << (REGISTER_BITS - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        let r = &mut self.registers[index];
        *r = (*r).max(rank);
    }

    fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let (sum, zeros) = self.registers.iter().fold((0.0, 0u32), |(s, z), &r| {
            (s + 2f64.powi(-i32::from(r)), z + u32::from(r == 0))
        });
        if zeros > 0 {
            let linear = m * (m / f64::from(zeros)).ln();
            if linear <= 5.0 * m {
                return linear.round() as u64;
            }
        }
        (alpha * m * m / sum).round() as u64
    }

    fn clear(&mut self) {
        self.registers.fill(0);
    }
}

/// One identity's enumeration signals in the current day window.
#[derive(Debug)]
struct Signals {
    window: Instant,
    distinct: DistinctNames,
    queries: u64,
    nxdomain: u64,
    warned_distinct: bool,
    warned_nxdomain: bool,
}

/// The counters of one identified provider, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassReport {
    pub provider: Name,
    pub quota: Quota,
    pub lookups: u64,
    pub refused: u64,
    /// In the current day window.
    pub distinct_names: u64,
    pub queries_today: u64,
    pub nxdomain_today: u64,
}

/// One identified provider's class.
#[derive(Debug)]
pub struct Class {
    pub provider: Name,
    quota: Quota,
    bucket: Mutex<Option<Bucket>>,
    signals: Mutex<Signals>,
    lookups: AtomicU64,
    refused: AtomicU64,
}

impl Class {
    fn new(provider: Name, quota: Quota, now: Instant) -> Class {
        Class {
            provider,
            bucket: Mutex::new(quota.rate().map(|r| Bucket::full(&r, now))),
            quota,
            signals: Mutex::new(Signals {
                window: now,
                distinct: DistinctNames::new(),
                queries: 0,
                nxdomain: 0,
                warned_distinct: false,
                warned_nxdomain: false,
            }),
            lookups: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// Who sent a request, once identified.
#[derive(Debug, Clone)]
pub enum Client {
    Anonymous(IpAddr),
    Provider(Arc<Class>),
}

impl Client {
    /// The provider's name; None for anonymous clients.
    pub fn provider(&self) -> Option<&Name> {
        match self {
            Client::Anonymous(_) => None,
            Client::Provider(c) => Some(&c.provider),
        }
    }
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The DP's access classes: built from the config, rebuilt on reload (keeping what each
/// class has used).
#[derive(Debug)]
pub struct Access {
    settings: AccessSettings,
    /// Anonymous clients' buckets; None when unlimited.
    anonymous: Option<Arc<RateLimiter<IpAddr>>>,
    classes: Vec<Arc<Class>>,
    by_pin: HashMap<String, usize>,
    /// TSIG keys of the classes, and the class of each.
    keys: Vec<TsigKey>,
    key_class: Vec<usize>,
    refused_anonymous: Arc<AtomicU64>,
    hasher: std::collections::hash_map::RandomState,
}

impl Access {
    /// Builds the classes of `entries`; `previous` (on reload) hands over the counters of
    /// providers that stay and of anonymous clients.
    pub fn new(
        settings: AccessSettings,
        entries: &[ClientEntry],
        previous: Option<&Access>,
    ) -> Result<Access, AccessError> {
        let now = Instant::now();
        let mut classes: Vec<Arc<Class>> = Vec::new();
        let mut by_pin = HashMap::new();
        let mut keys: Vec<TsigKey> = Vec::new();
        let mut key_class: Vec<usize> = Vec::new();
        for e in entries {
            let index = classes.len();
            let kept = previous
                .and_then(|p| p.classes.iter().find(|c| c.provider == e.provider))
                .filter(|c| c.quota == e.quota);
            classes.push(match kept {
                Some(c) => c.clone(),
                None => Arc::new(Class::new(e.provider.clone(), e.quota, now)),
            });
            for pin in &e.pins {
                if let Some(&other) = by_pin.get(pin) {
                    let other: &Arc<Class> = &classes[other];
                    return Err(AccessError::SharedPin {
                        provider: e.provider.clone(),
                        at: e.at.clone(),
                        pin: pin.clone(),
                        other: other.provider.clone(),
                    });
                }
                by_pin.insert(pin.clone(), index);
            }
            if let Some(path) = &e.tsig {
                let key = TsigKey::load(path).map_err(|source| AccessError::Key {
                    provider: e.provider.clone(),
                    at: e.at.clone(),
                    source: Box::new(source),
                })?;
                if let Some(i) = keys.iter().position(|k| k.name == key.name) {
                    return Err(AccessError::SharedKey {
                        provider: e.provider.clone(),
                        at: e.at.clone(),
                        key: key.name.clone(),
                        other: classes[key_class[i]].provider.clone(),
                    });
                }
                keys.push(key);
                key_class.push(index);
            }
        }
        let anonymous = settings.anonymous.rate().map(|rate| {
            match previous.and_then(|p| p.anonymous.as_ref()) {
                Some(a) if a.rate() == rate => a.clone(),
                _ => Arc::new(RateLimiter::new(rate)),
            }
        });
        Ok(Access {
            settings,
            anonymous,
            classes,
            by_pin,
            keys,
            key_class,
            refused_anonymous: previous
                .map(|p| p.refused_anonymous.clone())
                .unwrap_or_default(),
            hasher: previous.map(|p| p.hasher.clone()).unwrap_or_default(),
        })
    }

    /// The TSIG keys that identify providers on plain queries.
    pub fn keys(&self) -> &[TsigKey] {
        &self.keys
    }

    /// The client that signed with `keys()[key]`.
    pub fn by_key(&self, key: usize) -> Option<Client> {
        let class = self.key_class.get(key)?;
        Some(Client::Provider(self.classes[*class].clone()))
    }

    /// The client behind a connection: the provider whose pin the client certificate
    /// carries, else anonymous (a stranger's certificate gives no more than none).
    pub fn identify(&self, src: IpAddr, pin: Option<&str>) -> Client {
        match pin.and_then(|p| self.by_pin.get(p)) {
            Some(&i) => Client::Provider(self.classes[i].clone()),
            None => Client::Anonymous(src),
        }
    }

    /// Counts `cost` lookups against the client's class at `now`, or says why not.
    pub fn charge(&self, client: &Client, cost: u64, now: Instant) -> Result<(), AccessRefusal> {
        let Err(shortfall) = self.take(client, cost, now) else {
            return Ok(());
        };
        let refusal = |shortfall: Shortfall, who: String, quota: Quota| match (shortfall, quota) {
            (Shortfall::Day, Quota::Daily { per_day, .. }) => AccessRefusal::Day { who, per_day },
            (_, Quota::Daily { burst, .. }) => AccessRefusal::Burst { who, burst },
            (_, Quota::Unlimited) => AccessRefusal::Burst { who, burst: 0 },
        };
        Err(match (client, shortfall) {
            (Client::Anonymous(_), None) => {
                self.refused_anonymous.fetch_add(1, Relaxed);
                AccessRefusal::NoAnonymous
            }
            (Client::Anonymous(ip), Some(s)) => {
                self.refused_anonymous.fetch_add(1, Relaxed);
                refusal(s, format!("anonymous client {ip}"), self.settings.anonymous)
            }
            (Client::Provider(class), s) => {
                class.refused.fetch_add(1, Relaxed);
                refusal(
                    s.unwrap_or(Shortfall::Burst),
                    format!("provider {}", class.provider),
                    class.quota,
                )
            }
        })
    }

    /// `charge` for the fast path: true when the lookups were counted. A refusal is
    /// neither counted nor described here: the general path, which answers it, does both.
    pub fn try_charge(&self, client: &Client, cost: u64, now: Instant) -> bool {
        self.take(client, cost, now).is_ok()
    }

    /// Takes `cost` from the client's quota; on a shortfall (None: no anonymous lookups
    /// at all) nothing is taken.
    fn take(&self, client: &Client, cost: u64, now: Instant) -> Result<(), Option<Shortfall>> {
        if cost == 0 {
            return Ok(());
        }
        match client {
            Client::Anonymous(ip) => {
                if let Quota::Daily { per_day: 0, .. } = self.settings.anonymous {
                    return Err(None);
                }
                match &self.anonymous {
                    Some(limiter) => limiter.take(*ip, cost as f64, now).map_err(Some),
                    None => Ok(()),
                }
            }
            Client::Provider(class) => {
                if let (Some(rate), Some(bucket)) = (
                    class.quota.rate(),
                    &mut *class.bucket.lock().unwrap_or_else(|p| p.into_inner()),
                ) {
                    bucket.take(&rate, cost as f64, now).map_err(Some)?;
                }
                class.lookups.fetch_add(cost, Relaxed);
                Ok(())
            }
        }
    }

    /// Counts an answered query of an identified provider for the enumeration signals,
    /// and warns (once a day window) when one passes its threshold. `qname` is the
    /// lowercase wire form.
    pub fn observe(&self, client: &Client, qname: &[u8], nxdomain: bool, now: Instant) {
        let Client::Provider(class) = client else {
            return;
        };
        let hash = self.hasher.hash_one(qname);
        let mut s = class.signals.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(s.window) >= DAY {
            s.window = now;
            s.distinct.clear();
            s.queries = 0;
            s.nxdomain = 0;
            s.warned_distinct = false;
            s.warned_nxdomain = false;
        }
        s.distinct.add(hash);
        s.queries += 1;
        s.nxdomain += u64::from(nxdomain);
        let settings = &self.settings;
        // The estimate costs a pass over the registers: look only now and then.
        if !s.warned_distinct && s.queries.is_multiple_of(1024) {
            let distinct = s.distinct.estimate();
            if distinct > settings.warn_distinct_names {
                s.warned_distinct = true;
                warn!(provider = %class.provider, distinct, "possible enumeration: more distinct names asked today than access.warn_distinct_names");
            }
        }
        if !s.warned_nxdomain && s.queries >= settings.warn_min_queries {
            let share = s.nxdomain as f64 / s.queries as f64;
            if share > settings.warn_nxdomain_share {
                s.warned_nxdomain = true;
                warn!(provider = %class.provider, share, queries = s.queries, "possible enumeration: NXDOMAIN share today above access.warn_nxdomain_share");
            }
        }
    }

    /// Requests refused to anonymous clients.
    pub fn refused_anonymous(&self) -> u64 {
        self.refused_anonymous.load(Relaxed)
    }

    /// Each identified provider's counters.
    pub fn report(&self) -> Vec<ClassReport> {
        self.classes
            .iter()
            .map(|c| {
                let s = c.signals.lock().unwrap_or_else(|p| p.into_inner());
                ClassReport {
                    provider: c.provider.clone(),
                    quota: c.quota,
                    lookups: c.lookups.load(Relaxed),
                    refused: c.refused.load(Relaxed),
                    distinct_names: s.distinct.estimate(),
                    queries_today: s.queries,
                    nxdomain_today: s.nxdomain,
                }
            })
            .collect()
    }

    /// One line per class, for the summary on SIGUSR1.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "access anonymous quota={} refused={}",
            self.settings.anonymous.describe(),
            self.refused_anonymous()
        )];
        for r in self.report() {
            lines.push(format!(
                "access provider={} quota={} lookups={} refused={} distinct_names_today={} nxdomain_today={}/{}",
                r.provider,
                r.quota.describe(),
                r.lookups,
                r.refused,
                r.distinct_names,
                r.nxdomain_today,
                r.queries_today
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn n(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn entry(provider: &str, pins: &[&str], quota: Quota) -> ClientEntry {
        ClientEntry {
            provider: n(provider),
            pins: pins.iter().map(|p| p.to_string()).collect(),
            tsig: None,
            quota,
            at: "dp.toml:1".into(),
        }
    }

    #[test]
    fn a_provider_gets_exactly_its_quota_in_a_day() {
        let q = 1000;
        let access = Access::new(
            AccessSettings::default(),
            &[entry(
                "ap.example.",
                &["pin"],
                Quota::Daily {
                    per_day: q,
                    burst: 100,
                },
            )],
            None,
        )
        .unwrap();
        let client = access.identify("127.0.0.1".parse().unwrap(), Some("pin"));
        let t0 = Instant::now();
        // A client asking ten times a minute, all day: the burst goes first, the refill
        // carries it on, and the day's cap stops it at exactly q.
        let mut granted = 0;
        let mut day_refusals = 0;
        for minute in 0..1440u64 {
            let now = t0 + Duration::from_secs(minute * 60);
            for _ in 0..10 {
                match access.charge(&client, 1, now) {
                    Ok(()) => granted += 1,
                    Err(AccessRefusal::Day { .. }) => day_refusals += 1,
                    Err(_) => {}
                }
            }
        }
        assert_eq!(granted, q);
        assert!(day_refusals > 0);
        // The next day window starts afresh.
        let next = t0 + Duration::from_secs(86_400 + 60);
        assert!(access.charge(&client, 1, next).is_ok());
        assert_eq!(access.report()[0].lookups, q + 1);
    }

    #[test]
    fn classes_are_separate_and_strangers_are_anonymous() {
        let quota = Quota::Daily {
            per_day: 5,
            burst: 5,
        };
        let access = Access::new(
            AccessSettings {
                anonymous: Quota::Daily {
                    per_day: 2,
                    burst: 2,
                },
                ..AccessSettings::default()
            },
            &[
                entry("a.example.", &["pa"], quota),
                entry("b.example.", &["pb"], quota),
            ],
            None,
        )
        .unwrap();
        let ip = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let a = access.identify(ip, Some("pa"));
        let b = access.identify(ip, Some("pb"));
        let stranger = access.identify(ip, Some("unknown"));
        assert!(matches!(stranger, Client::Anonymous(_)));
        for _ in 0..5 {
            access.charge(&a, 1, now).unwrap();
        }
        let e = access.charge(&a, 1, now).unwrap_err();
        assert_eq!(e.ede_code(), crate::ede::RATE_LIMITED);
        assert_eq!(e.rcode(), ResponseCode::Refused);
        access.charge(&b, 1, now).unwrap();
        access.charge(&stranger, 2, now).unwrap();
        assert!(access.charge(&stranger, 1, now).is_err());
        assert_eq!(access.refused_anonymous(), 1);
        assert_eq!(access.report()[0].refused, 1);
    }

    #[test]
    fn no_anonymous_service_is_prohibited() {
        let access = Access::new(
            AccessSettings {
                anonymous: Quota::Daily {
                    per_day: 0,
                    burst: 0,
                },
                ..AccessSettings::default()
            },
            &[],
            None,
        )
        .unwrap();
        let c = access.identify("192.0.2.1".parse().unwrap(), None);
        let e = access.charge(&c, 1, Instant::now()).unwrap_err();
        assert_eq!(e, AccessRefusal::NoAnonymous);
        assert_eq!(e.ede_code(), crate::ede::PROHIBITED);
    }

    #[test]
    fn reload_keeps_what_was_used() {
        let quota = Quota::Daily {
            per_day: 3,
            burst: 3,
        };
        let entries = [entry("a.example.", &["pa"], quota)];
        let first = Access::new(AccessSettings::default(), &entries, None).unwrap();
        let now = Instant::now();
        let a = first.identify("192.0.2.1".parse().unwrap(), Some("pa"));
        for _ in 0..3 {
            first.charge(&a, 1, now).unwrap();
        }
        let second = Access::new(AccessSettings::default(), &entries, Some(&first)).unwrap();
        let a = second.identify("192.0.2.1".parse().unwrap(), Some("pa"));
        assert!(second.charge(&a, 1, now).is_err());
    }

    #[test]
    fn a_pin_names_one_provider() {
        let q = Quota::Unlimited;
        let e = Access::new(
            AccessSettings::default(),
            &[
                entry("a.example.", &["p"], q),
                entry("b.example.", &["p"], q),
            ],
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("pin p is also a pin of [[client]] a.example."),
            "{e}"
        );
    }

    #[test]
    fn distinct_estimates_stay_close_through_the_small_range() {
        // Below, across and above the switch from linear counting (5 x 16,384).
        let hasher = std::collections::hash_map::RandomState::new();
        for n in [100u32, 5_000, 40_000, 80_000, 90_000, 300_000] {
            let mut d = DistinctNames::new();
            for i in 0..n {
                d.add(hasher.hash_one(i));
            }
            let err = (d.estimate() as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.05, "estimate {} for {n}", d.estimate());
        }
    }

    #[test]
    fn distinct_names_and_nxdomain_share_are_counted() {
        let access = Access::new(
            AccessSettings::default(),
            &[entry("a.example.", &["pa"], Quota::Unlimited)],
            None,
        )
        .unwrap();
        let a = access.identify("192.0.2.1".parse().unwrap(), Some("pa"));
        let now = Instant::now();
        for i in 0..20_000u32 {
            // 10,000 names, each asked twice; one in four does not exist.
            let name = format!("n{}", i % 10_000);
            access.observe(&a, name.as_bytes(), i % 4 == 0, now);
        }
        let r = &access.report()[0];
        assert_eq!(r.queries_today, 20_000);
        assert_eq!(r.nxdomain_today, 5_000);
        let err = (r.distinct_names as f64 - 10_000.0).abs() / 10_000.0;
        assert!(err < 0.05, "estimate {} for 10,000", r.distinct_names);
        // Anonymous clients are not tracked by name.
        access.observe(
            &Client::Anonymous("192.0.2.9".parse().unwrap()),
            b"x",
            true,
            now,
        );
        assert_eq!(access.report()[0].queries_today, 20_000);
    }
}
