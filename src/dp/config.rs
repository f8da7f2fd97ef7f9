//! The DP's configuration file (TOML); see docs/dp.md. Every error names the file and,
//! where it comes from a value, the line.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::access::{AccessSettings, ClientEntry, Quota};
use toml::Spanned;

use crate::config::{from_toml, line_of, read_config, RawTls};
pub use crate::config::{parse_listen, ConfigError, TlsSettings, DNS_PORT};
use crate::name::Name;
pub use crate::net::Limits;
use crate::sii::DEFAULT_APEX;

#[derive(Debug, Clone)]
pub struct ZoneConfig {
    pub origin: Name,
    pub file: PathBuf,
    /// Line of the config where the zone is declared, for messages.
    pub line: usize,
    /// The zone's DNSSEC signer (`dnssec_key`, docs/dnssec.md); None: served unsigned.
    pub dnssec: Option<std::sync::Arc<crate::dnssec::ZoneSigner>>,
}

/// `[zone_directory]`: a directory of zone files, `<origin>.zone` each (docs/dp.md).
#[derive(Debug, Clone)]
pub struct ZoneDirectory {
    pub path: PathBuf,
    /// How often the directory is listed for added and removed files.
    pub scan_interval: Duration,
}

/// An address block, such as 127.0.0.0/8 or ::1/128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bytes: &[u8], prefix: u8) -> impl Iterator<Item = u8> + '_ {
            bytes.iter().enumerate().map(move |(i, b)| {
                let bits = (prefix as usize).saturating_sub(i * 8).min(8);
                if bits == 0 {
                    0
                } else {
                    b & (0xffu8 << (8 - bits))
                }
            })
        }
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                masked(&a.octets(), self.prefix).eq(masked(&b.octets(), self.prefix))
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                masked(&a.octets(), self.prefix).eq(masked(&b.octets(), self.prefix))
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Net { addr, prefix })
    }
}

#[derive(Debug, Clone)]
pub struct DpConfig {
    pub path: PathBuf,
    pub apex: Name,
    pub listen: Vec<SocketAddr>,
    /// Trust file: the app providers' keys this DP accepts mappings under.
    pub trust: PathBuf,
    pub zones: Vec<ZoneConfig>,
    /// DNS over TLS (`[tls]`); None when not offered.
    pub tls: Option<TlsSettings>,
    /// Where Prometheus scrapes `/metrics` (`[metrics] listen`); None: no endpoint.
    pub metrics: Option<SocketAddr>,
    /// The control socket of `mimi ctl` (`[control] socket`); None: signals only.
    pub control: Option<PathBuf>,
    /// More zones, one file each, added and removed while serving (`[zone_directory]`).
    pub zone_directory: Option<ZoneDirectory>,
    /// Who may transfer zones (AXFR/IXFR).
    pub axfr_allow: Vec<Net>,
    /// TSIG key files (BIND format); when any is given, a transfer needs a valid TSIG
    /// with one of them, and its answer is signed (docs/security.md).
    pub axfr_keys: Vec<PathBuf>,
    /// Secondaries told of every new serial with DNS NOTIFY (RFC 1996).
    pub notify: Vec<SocketAddr>,
    pub limits: Limits,
    /// Private lookups (`[pir]`); None when not offered.
    pub pir: Option<super::private::PirSettings>,
    /// Serve records that fail the checks instead of refusing them. Only for testing
    /// resolvers against a misbehaving DP (`mimi demo` uses it); never in production.
    pub serve_invalid_records: bool,
    /// The journal and the zone-file rewrites (`[journal]`).
    pub journal: JournalSettings,
    /// App providers allowed to publish by DNS UPDATE (`[[update]]`), each bound to a key.
    pub updaters: Vec<Updater>,
    /// Keys of the zones' operator (`[[operator]]`): releases and delegations (porting)
    /// by DNS UPDATE on a live DP (docs/lifecycle.md).
    pub operators: Vec<OperatorKey>,
    /// Limits on DNS UPDATE (`[updates]`).
    pub updates: UpdateLimits,
    /// Resolvers told of every new serial by TSIG-signed NOTIFY, which may then ask
    /// CHANGES (`[[subscriber]]`, DESIGN 8.3).
    pub subscribers: Vec<Subscriber>,
    /// Digest width of CHANGES answers (`[changes] digest_bits`).
    pub changes_bits: u8,
    /// Quotas of anonymous clients and the enumeration warnings (`[access]`).
    pub access: super::access::AccessSettings,
    /// App providers' identities and quotas (`[[client]]`).
    pub clients: Vec<super::access::ClientEntry>,
}

/// One `[[subscriber]]` entry: a resolver that wants to hear of changes.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Where NOTIFY goes.
    pub address: SocketAddr,
    /// Key file (BIND format) signing the NOTIFY and authenticating its CHANGES requests.
    pub tsig: PathBuf,
    pub line: usize,
}

/// `[journal]`: where each zone's journal lives and how much of it is kept.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    /// Directory of the journals (`<origin>journal` each); None: beside each zone file,
    /// as `<zone file>.journal`.
    pub dir: Option<PathBuf>,
    /// Diffs kept for IXFR after the zone file is rewritten.
    pub depth: usize,
    /// The zone file is rewritten from the served version this often while it changes...
    pub flush_interval: Duration,
    /// ... or after this many changed records, whichever comes first.
    pub flush_changes: usize,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            dir: None,
            depth: 1000,
            flush_interval: Duration::from_secs(60),
            flush_changes: 100_000,
        }
    }
}

/// One `[[update]]` entry: a TSIG key that speaks for one app provider.
#[derive(Debug, Clone)]
pub struct Updater {
    pub provider: Name,
    /// Key file in the BIND format (`mimi key tsig generate`).
    pub tsig: PathBuf,
    pub line: usize,
}

/// One `[[operator]]` entry: a TSIG key that speaks for the operator of this DP's zones
/// (the number or domain authority).
#[derive(Debug, Clone)]
pub struct OperatorKey {
    /// Key file in the BIND format (`mimi key tsig generate`).
    pub tsig: PathBuf,
    pub line: usize,
}

/// `[updates]`: bounds on what app providers may send.
#[derive(Debug, Clone)]
pub struct UpdateLimits {
    /// Records in one UPDATE.
    pub max_records: usize,
    /// UPDATE messages per second per provider (token bucket refill) ...
    pub per_second: f64,
    /// ... and the bucket's size.
    pub burst: f64,
    /// Longest `not_after - verified_at` accepted: an AP must re-verify at least this often,
    /// so a released number leaves a DP that never sees the release within this time.
    pub max_validity: Duration,
}

/// A month and a day: the requirements draft wants a released number gone within a
/// month (section 11); a day of slack for an AP that re-verifies monthly.
pub const DEFAULT_MAX_VALIDITY_DAYS: u64 = 31;

impl Default for UpdateLimits {
    fn default() -> Self {
        UpdateLimits {
            max_records: 1000,
            per_second: 200.0,
            burst: 1000.0,
            max_validity: Duration::from_secs(DEFAULT_MAX_VALIDITY_DAYS * 86400),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    apex: Option<Spanned<String>>,
    listen: Spanned<Vec<Spanned<String>>>,
    trust: Spanned<String>,
    #[serde(default)]
    serve_invalid_records: bool,
    #[serde(default, rename = "zone")]
    zones: Vec<RawZone>,
    zone_directory: Option<RawZoneDirectory>,
    tls: Option<RawTls>,
    metrics: Option<crate::config::RawMetrics>,
    control: Option<crate::config::RawControl>,
    #[serde(default)]
    axfr: RawAxfr,
    #[serde(default)]
    limits: RawLimits,
    pir: Option<RawPir>,
    #[serde(default)]
    journal: RawJournal,
    #[serde(default, rename = "update")]
    updaters: Vec<RawUpdater>,
    #[serde(default, rename = "operator")]
    operators: Vec<RawOperator>,
    #[serde(default)]
    updates: RawUpdates,
    #[serde(default, rename = "subscriber")]
    subscribers: Vec<RawSubscriber>,
    #[serde(default)]
    changes: RawChanges,
    #[serde(default)]
    access: RawAccess,
    #[serde(default, rename = "client")]
    clients: Vec<RawClient>,
    #[serde(default)]
    dnssec: RawDnssec,
}

/// A number of lookups a day, or "unlimited".
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawQuota {
    Count(u64),
    Word(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    anonymous_lookups_per_day: Option<Spanned<RawQuota>>,
    anonymous_burst: Option<Spanned<u64>>,
    warn_distinct_names: Option<Spanned<u64>>,
    warn_nxdomain_share: Option<Spanned<f64>>,
    warn_min_queries: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    provider: Spanned<String>,
    #[serde(default)]
    spki: Vec<Spanned<String>>,
    tsig: Option<Spanned<String>>,
    lookups_per_day: Spanned<RawQuota>,
    burst: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscriber {
    address: Spanned<String>,
    tsig: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawChanges {
    digest_bits: Option<Spanned<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    dir: Option<Spanned<String>>,
    depth: Option<Spanned<usize>>,
    flush_interval_secs: Option<Spanned<u64>>,
    flush_changes: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdater {
    provider: Spanned<String>,
    tsig: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    tsig: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpdates {
    max_records: Option<Spanned<usize>>,
    per_second: Option<Spanned<f64>>,
    burst: Option<Spanned<f64>>,
    max_validity_days: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPir {
    #[serde(default = "yes")]
    enabled: bool,
    shards: Option<Spanned<u32>>,
    scheme: Option<Spanned<String>>,
    slot_size: Option<Spanned<usize>>,
    batch_lookups: Option<Spanned<usize>>,
    threads: Option<Spanned<usize>>,
    max_queue: Option<Spanned<usize>>,
    // Replaced by the access classes; named here to say so.
    oprf_burst: Option<Spanned<toml::Value>>,
    oprf_per_hour: Option<Spanned<toml::Value>>,
    queries_burst: Option<Spanned<toml::Value>>,
    queries_per_hour: Option<Spanned<toml::Value>>,
    key_cache_mib: Option<Spanned<usize>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: Spanned<String>,
    file: Spanned<String>,
    dnssec_key: Option<Spanned<String>>,
    /// Keys in the DNSKEY set that do not sign (a rollover's next or previous key).
    dnssec_publish: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDnssec {
    signature_lifetime_days: Option<Spanned<u32>>,
    refresh_days: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZoneDirectory {
    path: Spanned<String>,
    scan_interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAxfr {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    udp_payload: Option<Spanned<u16>>,
    tcp_connections: Option<Spanned<usize>>,
    tcp_idle_timeout_secs: Option<Spanned<u64>>,
    max_request_bytes: Option<Spanned<usize>>,
    udp_threads: Option<Spanned<usize>>,
}

impl DpConfig {
    pub fn load(path: &Path) -> Result<DpConfig, ConfigError> {
        Self::parse(&read_config(path)?, path)
    }

    /// Parses config text; relative paths in it are relative to `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<DpConfig, ConfigError> {
        let file = path.display().to_string();
        let at = |span: std::ops::Range<usize>, message: String| ConfigError::At {
            file: file.clone(),
            line: line_of(text, span.start),
            message,
        };
        let raw: Raw = from_toml(text, &file)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = |s: &Spanned<String>, what: &str| {
            Name::parse(s.get_ref(), Some(&Name::root()))
                .map_err(|e| at(s.span(), format!("{what}: {e}")))
        };
        let apex = match &raw.apex {
            Some(a) => name(a, "apex")?,
            None => Name::parse(DEFAULT_APEX, None).map_err(|e| ConfigError::File {
                file: file.clone(),
                message: e.to_string(),
            })?,
        };
        if raw.listen.get_ref().is_empty() {
            return Err(at(
                raw.listen.span(),
                "listen needs at least one address".into(),
            ));
        }
        let mut listen = Vec::new();
        for l in raw.listen.get_ref() {
            let addr = parse_listen(l.get_ref(), DNS_PORT).map_err(|m| at(l.span(), m))?;
            if listen.contains(&addr) {
                return Err(at(l.span(), format!("{addr} is listed twice")));
            }
            listen.push(addr);
        }
        let days = |v: &Option<Spanned<u32>>, default: u32, what: &str| match v {
            None => Ok(default),
            Some(d) if (1..=365).contains(d.get_ref()) => Ok(d.get_ref() * 86400),
            Some(d) => Err(at(d.span(), format!("dnssec.{what} must be 1 to 365"))),
        };
        let lifetime = days(
            &raw.dnssec.signature_lifetime_days,
            crate::dnssec::signer::DEFAULT_LIFETIME,
            "signature_lifetime_days",
        )?;
        let refresh = days(
            &raw.dnssec.refresh_days,
            crate::dnssec::signer::DEFAULT_REFRESH,
            "refresh_days",
        )?;
        if let Some(r) = &raw.dnssec.refresh_days {
            if refresh >= lifetime {
                return Err(at(
                    r.span(),
                    "dnssec.refresh_days must be less than signature_lifetime_days".into(),
                ));
            }
        }
        let mut zones: Vec<ZoneConfig> = Vec::new();
        for z in &raw.zones {
            let origin = name(&z.origin, "zone origin")?;
            if zones.iter().any(|o| o.origin == origin) {
                return Err(at(
                    z.origin.span(),
                    format!("zone {origin} is configured twice"),
                ));
            }
            let zone_key = |path: &Spanned<String>, what: &str| {
                let key = crate::dnssec::DnssecKey::load(&dir.join(path.get_ref()))
                    .map_err(|e| at(path.span(), format!("{what}: {e}")))?;
                if key.zone != origin {
                    return Err(at(
                        path.span(),
                        format!("{what} is a key of {}, not of {origin}", key.zone),
                    ));
                }
                Ok(key)
            };
            let dnssec = match (&z.dnssec_key, &z.dnssec_publish) {
                (Some(path), publish) => {
                    let key = zone_key(path, "dnssec_key")?;
                    let mut published: Vec<crate::dnssec::DnssecKey> = Vec::new();
                    for p in publish.iter().flat_map(|p| p.get_ref()) {
                        let k = zone_key(p, "dnssec_publish")?;
                        let same =
                            |o: &crate::dnssec::DnssecKey| o.dnskey_rdata() == k.dnskey_rdata();
                        if same(&key) || published.iter().any(same) {
                            return Err(at(
                                p.span(),
                                format!("dnssec_publish: key {} is listed twice", k.key_tag()),
                            ));
                        }
                        published.push(k);
                    }
                    Some(std::sync::Arc::new(
                        crate::dnssec::ZoneSigner::with_published(
                            key, published, lifetime, refresh,
                        ),
                    ))
                }
                (None, Some(p)) => {
                    return Err(at(
                        p.span(),
                        "dnssec_publish needs dnssec_key (the key that signs)".into(),
                    ))
                }
                (None, None) => None,
            };
            zones.push(ZoneConfig {
                origin,
                file: dir.join(z.file.get_ref()),
                line: line_of(text, z.origin.span().start),
                dnssec,
            });
        }
        let zone_directory = match &raw.zone_directory {
            Some(d) => {
                let mut scan_interval = Duration::from_millis(1000);
                if let Some(v) = &d.scan_interval_ms {
                    if *v.get_ref() == 0 {
                        return Err(at(
                            v.span(),
                            "zone_directory.scan_interval_ms must be at least 1".into(),
                        ));
                    }
                    scan_interval = Duration::from_millis(*v.get_ref());
                }
                Some(ZoneDirectory {
                    path: dir.join(d.path.get_ref()),
                    scan_interval,
                })
            }
            None => None,
        };
        if zones.is_empty() && zone_directory.is_none() {
            return Err(ConfigError::File {
                file,
                message: "no [[zone]] and no [zone_directory] configured: nothing to serve".into(),
            });
        }
        let axfr_allow = raw
            .axfr
            .allow
            .iter()
            .map(|a| {
                a.get_ref()
                    .parse::<Net>()
                    .map_err(|m| at(a.span(), format!("axfr.allow: {m}")))
            })
            .collect::<Result<_, _>>()?;
        let notify = raw
            .axfr
            .notify
            .iter()
            .map(|a| {
                parse_listen(a.get_ref(), DNS_PORT)
                    .map_err(|m| at(a.span(), format!("axfr.notify: {m}")))
            })
            .collect::<Result<_, _>>()?;
        let mut limits = Limits::default();
        if let Some(v) = &raw.limits.udp_payload {
            if *v.get_ref() < 512 {
                return Err(at(
                    v.span(),
                    "limits.udp_payload must be at least 512".into(),
                ));
            }
            limits.udp_payload = *v.get_ref();
        }
        if let Some(v) = &raw.limits.tcp_connections {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "limits.tcp_connections must be at least 1".into(),
                ));
            }
            limits.tcp_connections = *v.get_ref();
        }
        if let Some(v) = &raw.limits.tcp_idle_timeout_secs {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "limits.tcp_idle_timeout_secs must be at least 1".into(),
                ));
            }
            limits.tcp_idle_timeout = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &raw.limits.max_request_bytes {
            if !(512..=65535).contains(v.get_ref()) {
                return Err(at(
                    v.span(),
                    "limits.max_request_bytes must be 512 to 65535".into(),
                ));
            }
            limits.max_request_bytes = *v.get_ref();
        }
        if let Some(v) = &raw.limits.udp_threads {
            let max = crate::net::udp::MAX_THREADS;
            if !(1..=max).contains(v.get_ref()) {
                return Err(at(
                    v.span(),
                    format!("limits.udp_threads must be 1 to {max}"),
                ));
            }
            limits.udp_threads = *v.get_ref();
        }
        let pir = match &raw.pir {
            Some(p) if p.enabled => {
                let mut s = super::private::PirSettings::default();
                if let Some(v) = &p.shards {
                    if *v.get_ref() == 0 {
                        return Err(at(v.span(), "pir.shards must be at least 1".into()));
                    }
                    s.shards = *v.get_ref();
                }
                if let Some(v) = &p.slot_size {
                    if !(crate::pir::db::MIN_SLOT_SIZE..=4096).contains(v.get_ref()) {
                        return Err(at(
                            v.span(),
                            format!(
                                "pir.slot_size must be {} to 4096",
                                crate::pir::db::MIN_SLOT_SIZE
                            ),
                        ));
                    }
                    s.slot_size = *v.get_ref();
                }
                if let Some(v) = &p.scheme {
                    let scheme = crate::pir::Scheme::from_name(v.get_ref()).ok_or_else(|| {
                        at(
                            v.span(),
                            format!(
                                "pir.scheme {:?} is not one of {}",
                                v.get_ref(),
                                crate::pir::Scheme::names()
                            ),
                        )
                    })?;
                    s.scheme = scheme
                        .require_built()
                        .map_err(|e| at(v.span(), format!("pir.scheme: {e}")))?;
                }
                let record = crate::pir::respire::index::RECORD_BYTES;
                if let Some(v) = &p.slot_size {
                    if s.scheme == crate::pir::Scheme::Respire && s.slot_size > record {
                        return Err(at(
                            v.span(),
                            format!("pir.slot_size must be at most {record} with the respire scheme (one slot is one Respire record)"),
                        ));
                    }
                }
                if let Some(v) = &p.batch_lookups {
                    let lookups = *v.get_ref();
                    if lookups > 1 << 15 {
                        return Err(at(v.span(), "pir.batch_lookups must be 0 to 32768".into()));
                    }
                    if lookups > 0 && s.scheme != crate::pir::Scheme::Respire {
                        return Err(at(
                            v.span(),
                            "pir.batch_lookups needs scheme = \"respire\" (MulPIR takes no batch queries)".into(),
                        ));
                    }
                    s.batch = match lookups {
                        0 => 0,
                        n => (2 * n).next_power_of_two(),
                    };
                }
                if let Some(v) = &p.threads {
                    s.threads = (*v.get_ref()).max(1);
                }
                if let Some(v) = &p.max_queue {
                    s.max_queue = (*v.get_ref()).max(1);
                }
                for (v, what) in [
                    (&p.oprf_burst, "oprf_burst"),
                    (&p.oprf_per_hour, "oprf_per_hour"),
                    (&p.queries_burst, "queries_burst"),
                    (&p.queries_per_hour, "queries_per_hour"),
                ] {
                    if let Some(v) = v {
                        return Err(at(
                            v.span(),
                            format!("pir.{what} is gone: private lookups count against the access classes ([access] and [[client]], docs/security.md)"),
                        ));
                    }
                }
                if let Some(v) = &p.key_cache_mib {
                    s.key_cache_bytes = (*v.get_ref()).max(1) << 20;
                }
                // PIR queries and key chunks are near 64 KiB.
                if raw.limits.max_request_bytes.is_none() {
                    limits.max_request_bytes = 65535;
                }
                Some(s)
            }
            _ => None,
        };
        let mut journal = JournalSettings::default();
        let j = &raw.journal;
        if let Some(d) = &j.dir {
            journal.dir = Some(dir.join(d.get_ref()));
        }
        if let Some(v) = &j.depth {
            journal.depth = *v.get_ref();
        }
        if let Some(v) = &j.flush_interval_secs {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "journal.flush_interval_secs must be at least 1".into(),
                ));
            }
            journal.flush_interval = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &j.flush_changes {
            journal.flush_changes = (*v.get_ref()).max(1);
        }
        let mut updaters: Vec<Updater> = Vec::new();
        for u in &raw.updaters {
            let provider = name(&u.provider, "update.provider")?;
            if updaters.iter().any(|o| o.provider == provider) {
                return Err(at(
                    u.provider.span(),
                    format!("provider {provider} has two [[update]] entries"),
                ));
            }
            updaters.push(Updater {
                provider,
                tsig: dir.join(u.tsig.get_ref()),
                line: line_of(text, u.provider.span().start),
            });
        }
        let mut updates = UpdateLimits::default();
        let u = &raw.updates;
        if let Some(v) = &u.max_records {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "updates.max_records must be at least 1".into(),
                ));
            }
            updates.max_records = *v.get_ref();
        }
        for (v, slot, what) in [
            (&u.per_second, &mut updates.per_second, "per_second"),
            (&u.burst, &mut updates.burst, "burst"),
        ] {
            if let Some(v) = v {
                if !(v.get_ref().is_finite() && *v.get_ref() > 0.0) {
                    return Err(at(
                        v.span(),
                        format!("updates.{what} must be a positive number"),
                    ));
                }
                *slot = *v.get_ref();
            }
        }
        if let Some(v) = &u.max_validity_days {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "updates.max_validity_days must be at least 1".into(),
                ));
            }
            updates.max_validity = Duration::from_secs(*v.get_ref() * 86400);
        }
        let operators = raw
            .operators
            .iter()
            .map(|o| OperatorKey {
                tsig: dir.join(o.tsig.get_ref()),
                line: line_of(text, o.tsig.span().start),
            })
            .collect();
        let mut subscribers = Vec::new();
        for sub in &raw.subscribers {
            let address = parse_listen(sub.address.get_ref(), DNS_PORT)
                .map_err(|m| at(sub.address.span(), format!("subscriber.address: {m}")))?;
            if subscribers
                .iter()
                .any(|s: &Subscriber| s.address == address)
            {
                return Err(at(
                    sub.address.span(),
                    format!("subscriber {address} is listed twice"),
                ));
            }
            subscribers.push(Subscriber {
                address,
                tsig: dir.join(sub.tsig.get_ref()),
                line: line_of(text, sub.address.span().start),
            });
        }
        let mut changes_bits = crate::changes::DEFAULT_BITS;
        if let Some(v) = &raw.changes.digest_bits {
            let range = crate::changes::MIN_BITS..=crate::changes::MAX_BITS;
            if !range.contains(v.get_ref()) {
                return Err(at(
                    v.span(),
                    format!(
                        "changes.digest_bits must be {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
            changes_bits = *v.get_ref();
        }
        let (access, clients) = access_config(&raw, text, &file, dir, &at)?;
        Ok(DpConfig {
            access,
            clients,
            subscribers,
            changes_bits,
            path: path.to_path_buf(),
            journal,
            updaters,
            operators,
            updates,
            pir,
            apex,
            listen,
            trust: dir.join(raw.trust.get_ref()),
            zones,
            zone_directory,
            tls: raw.tls.as_ref().map(|t| t.settings(dir, &at)).transpose()?,
            metrics: raw.metrics.as_ref().map(|m| m.listen(&at)).transpose()?,
            control: raw.control.as_ref().map(|c| c.socket(dir)),
            axfr_allow,
            axfr_keys: raw
                .axfr
                .keys
                .iter()
                .map(|k| dir.join(k.get_ref()))
                .collect(),
            notify,
            limits,
            serve_invalid_records: raw.serve_invalid_records,
        })
    }
}

/// `[access]` and `[[client]]`.
fn access_config(
    raw: &Raw,
    text: &str,
    file: &str,
    dir: &Path,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<(AccessSettings, Vec<ClientEntry>), ConfigError> {
    let quota = |per_day: &Spanned<RawQuota>,
                 burst: Option<&Spanned<u64>>,
                 what: &str|
     -> Result<Quota, ConfigError> {
        let per_day = match per_day.get_ref() {
            RawQuota::Count(n) => *n,
            RawQuota::Word(w) if w == "unlimited" => return Ok(Quota::Unlimited),
            RawQuota::Word(w) => {
                return Err(at(
                    per_day.span(),
                    format!("{what}: {w:?} is neither a number nor \"unlimited\""),
                ))
            }
        };
        let burst = match burst {
            Some(b) if *b.get_ref() == 0 && per_day > 0 => {
                return Err(at(b.span(), format!("{what}: burst must be at least 1")))
            }
            Some(b) => *b.get_ref(),
            // An hour's worth, but at least 100 (or the whole day when that is less).
            None => (per_day / 24).max(per_day.min(100)),
        };
        Ok(Quota::Daily { per_day, burst })
    };
    let a = &raw.access;
    let mut settings = AccessSettings::default();
    if let Some(v) = &a.anonymous_lookups_per_day {
        settings.anonymous = quota(
            v,
            a.anonymous_burst.as_ref(),
            "access.anonymous_lookups_per_day",
        )?;
    } else if let Some(b) = &a.anonymous_burst {
        return Err(at(
            b.span(),
            "access.anonymous_burst needs access.anonymous_lookups_per_day".into(),
        ));
    }
    if let Some(v) = &a.warn_distinct_names {
        settings.warn_distinct_names = *v.get_ref();
    }
    if let Some(v) = &a.warn_nxdomain_share {
        if !(0.0..=1.0).contains(v.get_ref()) {
            return Err(at(
                v.span(),
                "access.warn_nxdomain_share must be 0 to 1".into(),
            ));
        }
        settings.warn_nxdomain_share = *v.get_ref();
    }
    if let Some(v) = &a.warn_min_queries {
        settings.warn_min_queries = *v.get_ref();
    }
    let mut clients: Vec<ClientEntry> = Vec::new();
    for c in &raw.clients {
        let provider = Name::parse(c.provider.get_ref(), Some(&Name::root()))
            .map_err(|e| at(c.provider.span(), format!("client.provider: {e}")))?;
        if clients.iter().any(|o| o.provider == provider) {
            return Err(at(
                c.provider.span(),
                format!("provider {provider} has two [[client]] entries"),
            ));
        }
        let mut pins = Vec::new();
        for p in &c.spki {
            let ok =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p.get_ref())
                    .is_ok_and(|b| b.len() == 32);
            if !ok {
                return Err(at(
                    p.span(),
                    format!(
                        "client.spki: {:?} is not an SPKI pin (base64 of a SHA-256 hash; `mimi tls pin CERT` prints it)",
                        p.get_ref()
                    ),
                ));
            }
            pins.push(p.get_ref().clone());
        }
        if pins.is_empty() && c.tsig.is_none() {
            return Err(at(
                c.provider.span(),
                format!("[[client]] {provider} needs spki (client certificates) or tsig (a key file) to be recognised"),
            ));
        }
        clients.push(ClientEntry {
            quota: quota(
                &c.lookups_per_day,
                c.burst.as_ref(),
                "client.lookups_per_day",
            )?,
            provider,
            pins,
            tsig: c.tsig.as_ref().map(|t| dir.join(t.get_ref())),
            at: format!("{file}:{}", line_of(text, c.provider.span().start)),
        });
    }
    Ok((settings, clients))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DpConfig, ConfigError> {
        DpConfig::parse(text, Path::new("/etc/mimi/dp.toml"))
    }

    #[test]
    fn rollover_keys_are_checked_at_their_line() {
        use crate::dnssec::{DnssecKey, FLAGS_CSK};
        let dir = tempfile::tempdir().unwrap();
        let zone = Name::parse("e164.mimi.arpa.", None).unwrap();
        for (file, origin) in [("a", &zone), ("b", &zone), ("other", &Name::root())] {
            DnssecKey::generate(origin.clone(), FLAGS_CSK)
                .save_new(&dir.path().join(file))
                .unwrap();
        }
        let config = |keys: &str| {
            DpConfig::parse(
                &format!("listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[[zone]]\norigin = \"e164.mimi.arpa.\"\nfile = \"z\"\n{keys}"),
                &dir.path().join("dp.toml"),
            )
        };
        let c = config("dnssec_key = \"a\"\ndnssec_publish = [\"b\"]\n").unwrap();
        let signer = c.zones[0].dnssec.as_ref().unwrap();
        assert_eq!(signer.dnskey_rdatas().len(), 2);
        for (keys, line, why) in [
            (
                "dnssec_key = \"a\"\ndnssec_publish = [\"a\"]\n",
                7,
                "listed twice",
            ),
            (
                "dnssec_key = \"a\"\ndnssec_publish = [\"b\", \"b\"]\n",
                7,
                "listed twice",
            ),
            (
                "dnssec_key = \"a\"\ndnssec_publish = [\"other\"]\n",
                7,
                "not of e164.mimi.arpa.",
            ),
            ("dnssec_publish = [\"b\"]\n", 6, "needs dnssec_key"),
        ] {
            let e = config(keys).unwrap_err().to_string();
            assert!(
                e.contains(&format!("dp.toml:{line}:")) && e.contains(why),
                "{keys}: {e}"
            );
        }
    }

    #[test]
    fn metrics_listen_takes_an_address_and_names_a_bad_one() {
        let base =
            "listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[[zone]]\norigin = \"a.\"\nfile = \"a.zone\"\n[metrics]\n";
        let c = parse(&format!("{base}listen = \"127.0.0.1\"\n")).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9153".parse().unwrap()));
        let c = parse(&format!("{base}listen = \"[::1]:9100\"\n")).unwrap();
        assert_eq!(c.metrics, Some("[::1]:9100".parse().unwrap()));
        let e = parse(&format!("{base}listen = \"nowhere\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dp.toml:7:") && e.contains("metrics.listen"),
            "{e}"
        );
        assert!(parse(base.trim_end_matches("[metrics]\n"))
            .unwrap()
            .metrics
            .is_none());
    }

    #[test]
    fn full_config() {
        let c = parse(
            "listen = [\"127.0.0.1:5300\", \"::1\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"mimi.arpa\"\nfile = \"root.zone\"\n[axfr]\nallow = [\"127.0.0.0/8\"]\n[limits]\ntcp_connections = 5\n",
        )
        .unwrap();
        assert_eq!(c.listen[0], "127.0.0.1:5300".parse().unwrap());
        assert_eq!(c.listen[1], "[::1]:53".parse().unwrap());
        assert_eq!(c.trust, Path::new("/etc/mimi/trust.toml"));
        assert_eq!(c.zones[0].origin.to_string(), "mimi.arpa.");
        assert_eq!(c.zones[0].file, Path::new("/etc/mimi/root.zone"));
        assert_eq!(c.zones[0].line, 4);
        assert!(c.axfr_allow[0].contains("127.9.9.9".parse().unwrap()));
        assert!(!c.axfr_allow[0].contains("10.0.0.1".parse().unwrap()));
        assert_eq!(c.limits.tcp_connections, 5);
        assert_eq!(c.limits.udp_payload, 1232);
        assert_eq!(c.limits.udp_threads, crate::net::udp::default_threads());
    }

    #[test]
    fn udp_threads() {
        const BASE: &str =
            "listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[[zone]]\norigin = \"x\"\nfile = \"z\"\n[limits]\n";
        let c = parse(&format!("{BASE}udp_threads = 3\n")).unwrap();
        assert_eq!(c.limits.udp_threads, 3);
        for bad in ["0", "1025"] {
            let e = parse(&format!("{BASE}udp_threads = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("/etc/mimi/dp.toml:7:")
                    && e.contains("udp_threads must be 1 to 1024"),
                "{e}"
            );
        }
    }

    #[test]
    fn access_classes() {
        const BASE: &str =
            "listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[[zone]]\norigin = \"x\"\nfile = \"z\"\n";
        let pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let c = parse(&format!(
            "{BASE}[access]\nanonymous_lookups_per_day = \"unlimited\"\n[[client]]\nprovider = \"ap.example\"\nspki = [\"{pin}\"]\nlookups_per_day = 2400\n"
        ))
        .unwrap();
        assert_eq!(c.access.anonymous, Quota::Unlimited);
        assert_eq!(c.clients[0].pins, [pin]);
        assert_eq!(
            c.clients[0].quota,
            Quota::Daily {
                per_day: 2400,
                burst: 100
            }
        );
        assert_eq!(c.clients[0].at, "/etc/mimi/dp.toml:9");
        for (text, scheme) in [
            ("[pir]\n", crate::pir::Scheme::Respire),
            ("[pir]\nscheme = \"respire\"\n", crate::pir::Scheme::Respire),
            #[cfg(feature = "mulpir")]
            ("[pir]\nscheme = \"mulpir\"\n", crate::pir::Scheme::MulPir),
        ] {
            let c = parse(&format!("{BASE}{text}")).unwrap();
            assert_eq!(c.pir.map(|p| p.scheme), Some(scheme));
        }
        let c = parse(&format!("{BASE}[pir]\nbatch_lookups = 64\n")).unwrap();
        assert_eq!(c.pir.map(|p| p.batch), Some(128));
        let default = parse(BASE).unwrap();
        assert_eq!(
            default.access.anonymous,
            super::super::access::DEFAULT_ANONYMOUS
        );
        let unknown = format!(
            "pir.scheme \"spiral\" is not one of {}",
            crate::pir::Scheme::names()
        );
        for (text, line, what) in [
            (
                "[[client]]\nprovider = \"ap\"\nlookups_per_day = 5\n",
                7,
                "needs spki",
            ),
            (
                "[[client]]\nprovider = \"ap\"\nspki = [\"abc\"]\nlookups_per_day = 5\n",
                8,
                "not an SPKI pin",
            ),
            (
                "[access]\nanonymous_lookups_per_day = \"lots\"\n",
                7,
                "neither a number",
            ),
            (
                "[access]\nanonymous_burst = 3\n",
                7,
                "needs access.anonymous_lookups_per_day",
            ),
            ("[pir]\noprf_burst = 3\n", 7, "pir.oprf_burst is gone"),
            ("[pir]\nscheme = \"spiral\"\n", 7, &unknown),
            (
                "[pir]\nscheme = \"respire\"\nslot_size = 512\n",
                8,
                "at most 256 with the respire scheme",
            ),
            #[cfg(feature = "mulpir")]
            (
                "[pir]\nscheme = \"mulpir\"\nbatch_lookups = 64\n",
                8,
                "pir.batch_lookups needs scheme = \"respire\"",
            ),
            #[cfg(not(feature = "mulpir"))]
            (
                "[pir]\nscheme = \"mulpir\"\n",
                7,
                "pir.scheme: PIR scheme mulpir (1) is not in this build (cargo build --features mulpir)",
            ),
            (
                "[pir]\nbatch_lookups = 100000\n",
                7,
                "pir.batch_lookups must be 0 to 32768",
            ),
        ] {
            let e = parse(&format!("{BASE}{text}")).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("/etc/mimi/dp.toml:{line}:")) && e.contains(what),
                "{e}"
            );
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(
            "listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[[zone]]\norigin = \"a..b\"\nfile = \"z\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/mimi/dp.toml:4: zone origin"), "{e}");
        let e = parse("listen = [\"nonsense\"]\ntrust = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/mimi/dp.toml:1:") && e.contains("not an address"),
            "{e}"
        );
        let e = parse("listen = [\"127.0.0.1\"]\ntrust = \"t\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:") && e.contains("bogus"), "{e}");
        let e = parse("listen = [\"127.0.0.1\"]\ntrust = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [[zone]]"), "{e}");
        let e = parse("listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[axfr]\nallow = [\"10.0.0.0/33\"]\n[[zone]]\norigin = \"x\"\nfile = \"z\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4:") && e.contains("prefix"), "{e}");
    }

    #[test]
    fn zone_directory_and_operators() {
        let c = parse("listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[zone_directory]\npath = \"zones.d\"\n[[operator]]\ntsig = \"op.key\"\n")
            .unwrap();
        assert!(c.zones.is_empty());
        let d = c.zone_directory.unwrap();
        assert_eq!(d.path, Path::new("/etc/mimi/zones.d"));
        assert_eq!(d.scan_interval, Duration::from_secs(1));
        assert_eq!(c.operators[0].tsig, Path::new("/etc/mimi/op.key"));
        assert_eq!(c.operators[0].line, 6);
        assert_eq!(c.updates.max_validity, Duration::from_secs(31 * 86400));
        let e = parse("listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[zone_directory]\npath = \"d\"\nscan_interval_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":5:") && e.contains("scan_interval_ms"), "{e}");
        let e = parse("listen = [\"127.0.0.1\"]\ntrust = \"t\"\n[zone_directory]\nfile = \"d\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4:"), "{e}");
    }

    #[test]
    fn nets() {
        let n: Net = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let n: Net = "::1".parse().unwrap();
        assert!(n.contains("::1".parse().unwrap()));
        assert!(!n.contains("::2".parse().unwrap()));
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }
}
