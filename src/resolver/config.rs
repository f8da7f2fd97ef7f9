//! The resolver's configuration file (TOML); see docs/resolver.md.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    from_toml, line_of, parse_listen, read_config, ConfigError, RawTls, TlsSettings, DNS_PORT,
};
use crate::name::Name;
use crate::record::Context;
use crate::sii::DEFAULT_APEX;
use crate::tls::{ClientIdentity, ServerTrust};
use crate::tsig::TsigKey;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries the cache holds (answers, negative answers and delegations together).
    pub entries: usize,
    /// Longest time a positive answer or delegation is kept, whatever its TTL says.
    pub max_ttl: Duration,
    /// Longest time a negative answer is kept (RFC 2308 also caps it at the SOA values).
    pub max_negative_ttl: Duration,
    /// Serve expired answers when every server of a zone is unreachable (RFC 8767).
    pub serve_stale: bool,
    /// How long past expiry an answer may still be served stale.
    pub stale_window: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            entries: 100_000,
            max_ttl: Duration::from_secs(86_400),
            max_negative_ttl: Duration::from_secs(3_600),
            serve_stale: false,
            stale_window: Duration::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Wait this long for one server's answer before trying again or the next server.
    pub timeout: Duration,
    /// Extra attempts per server after a timeout.
    pub retries: u32,
    /// Most referrals one lookup follows.
    pub max_referrals: u32,
    /// Most queries one lookup sends, NS address lookups included.
    pub max_queries: u32,
    /// Longest time one lookup may take in all, whatever the servers do.
    pub lookup_deadline: Duration,
    /// Threads (each with its own socket) serving UDP on each `listen` address.
    pub udp_threads: usize,
    /// Most questions a walk asks while it does not know where the zone cuts are
    /// (RFC 9156 section 2.3 MAX_MINIMISE_COUNT); past the first `minimise_one_label`,
    /// questions show more than one label when needed to stay within it.
    pub max_minimise_count: u32,
    /// Questions of a walk that add one label each (RFC 9156 MINIMISE_ONE_LAB).
    pub minimise_one_label: u32,
    /// How long a server that timed out is tried last for its zone, doubling with each
    /// failure in a row up to `backoff.max` (see `infra`).
    pub server_backoff: super::infra::Backoff,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(800),
            retries: 1,
            max_referrals: 16,
            max_queries: 64,
            lookup_deadline: Duration::from_secs(10),
            udp_threads: crate::net::udp::default_threads(),
            max_minimise_count: 10,
            minimise_one_label: 4,
            server_backoff: super::infra::Backoff::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub apex: Name,
    /// Servers authoritative for the apex.
    pub roots: Vec<IpAddr>,
    /// The one DNS port every server of the deployment listens on.
    pub port: u16,
    pub trust: PathBuf,
    /// Addresses `mimi resolver serve` listens on.
    pub listen: Vec<SocketAddr>,
    /// DNS over TLS for `mimi resolver serve` (`[tls]`); None when not offered.
    pub tls: Option<TlsSettings>,
    /// Default selection policy.
    pub context: Context,
    pub cache: CacheConfig,
    pub limits: Limits,
    /// Zones whose DP tells this resolver of changes (`[[subscription]]`, DESIGN 8.3).
    pub subscriptions: Vec<Subscription>,
    /// How the resolver talks to DPs (`[upstream]`): DNS over TLS, TSIG.
    pub upstream: UpstreamConfig,
    /// Encrypted replicas to keep (`[replica]`, DESIGN 11); None: private lookups use PIR.
    pub replica: Option<super::replica::ReplicaSettings>,
    /// The apex's trust anchor (`[dnssec] trust_anchor`): answers are validated from it
    /// and APKEY records of the validated tree are trusted keys. None: no validation.
    pub dnssec: Option<super::secure::TrustAnchor>,
    /// Where Prometheus scrapes `/metrics` (`[metrics] listen`, `mimi resolver serve`).
    pub metrics: Option<SocketAddr>,
    /// The control socket of `mimi ctl` (`[control] socket`, `mimi resolver serve`).
    pub control: Option<PathBuf>,
}

/// `[upstream]`, with its files already read, so a bad one is reported at its line.
#[derive(Debug, Clone, Default)]
pub struct UpstreamConfig {
    /// DNS over TLS to every DP (`tls = true`); None: UDP, TCP on truncation.
    pub tls: Option<UpstreamTls>,
    /// Every query to a DP is signed with this key (`tsig`), the AP's identity on plain
    /// queries; a signed answer must verify under it.
    pub tsig: Option<TsigKey>,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The DoT port of the DPs (`tls_port`, 853 by default).
    pub port: u16,
    /// Trust in the DPs' certificates (`ca` or `pins`) and the client certificate
    /// (`cert`, `key`), ready for connections.
    pub client: Arc<rustls::ClientConfig>,
}

/// One `[[subscription]]`: a zone whose DP sends this resolver TSIG-signed NOTIFY on
/// every new serial, and answers its CHANGES questions.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub zone: Name,
    /// The DP: NOTIFY is accepted from its address only; CHANGES is asked there.
    pub server: SocketAddr,
    /// Key file (BIND format) shared with the DP's `[[subscriber]]` entry.
    pub tsig: PathBuf,
    pub line: usize,
}

impl ResolverConfig {
    /// A config for a tree whose root servers are `roots`, with defaults for the rest.
    pub fn new(roots: Vec<IpAddr>, port: u16, trust: PathBuf) -> ResolverConfig {
        ResolverConfig {
            apex: Name::parse(DEFAULT_APEX, None).unwrap_or_else(|_| Name::root()),
            roots,
            port,
            trust,
            listen: Vec::new(),
            tls: None,
            context: Context::Any,
            cache: CacheConfig::default(),
            limits: Limits::default(),
            subscriptions: Vec::new(),
            upstream: UpstreamConfig::default(),
            replica: None,
            dnssec: None,
            metrics: None,
            control: None,
        }
    }

    pub fn load(path: &Path) -> Result<ResolverConfig, ConfigError> {
        Self::parse(&read_config(path)?, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ResolverConfig, ConfigError> {
        let file = path.display().to_string();
        let at = |span: std::ops::Range<usize>, message: String| ConfigError::At {
            file: file.clone(),
            line: line_of(text, span.start),
            message,
        };
        let raw: Raw = from_toml(text, &file)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut config = ResolverConfig::new(Vec::new(), DNS_PORT, dir.join(raw.trust.get_ref()));
        if let Some(a) = &raw.apex {
            config.apex = Name::parse(a.get_ref(), Some(&Name::root()))
                .map_err(|e| at(a.span(), format!("apex: {e}")))?;
        }
        if let Some(p) = &raw.port {
            if *p.get_ref() == 0 {
                return Err(at(p.span(), "port must not be 0".into()));
            }
            config.port = *p.get_ref();
        }
        for r in raw.roots.get_ref() {
            // `NAME=IP` is accepted for readability; only the address is used.
            let ip = r.get_ref().rsplit('=').next().unwrap_or_default();
            let ip: IpAddr = ip.parse().map_err(|_| {
                at(
                    r.span(),
                    format!(
                        "root server {:?} is not an IP address (or NAME=IP)",
                        r.get_ref()
                    ),
                )
            })?;
            config.roots.push(ip);
        }
        if config.roots.is_empty() {
            return Err(at(
                raw.roots.span(),
                "roots needs at least one server".into(),
            ));
        }
        for l in &raw.listen {
            config
                .listen
                .push(parse_listen(l.get_ref(), DNS_PORT).map_err(|m| at(l.span(), m))?);
        }
        if let Some(c) = &raw.context {
            config.context = c
                .get_ref()
                .parse()
                .map_err(|e| at(c.span(), format!("context: {e}")))?;
        }
        let c = &raw.cache;
        if let Some(v) = &c.entries {
            if *v.get_ref() == 0 {
                return Err(at(v.span(), "cache.entries must be at least 1".into()));
            }
            config.cache.entries = *v.get_ref();
        }
        if let Some(v) = &c.max_ttl_secs {
            config.cache.max_ttl = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &c.max_negative_ttl_secs {
            config.cache.max_negative_ttl = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &c.serve_stale {
            config.cache.serve_stale = *v.get_ref();
        }
        if let Some(v) = &c.stale_window_secs {
            config.cache.stale_window = Duration::from_secs(*v.get_ref());
        }
        let l = &raw.limits;
        if let Some(v) = &l.timeout_ms {
            if *v.get_ref() == 0 {
                return Err(at(v.span(), "limits.timeout_ms must be at least 1".into()));
            }
            config.limits.timeout = Duration::from_millis(*v.get_ref());
        }
        if let Some(v) = &l.retries {
            config.limits.retries = *v.get_ref();
        }
        if let Some(v) = &l.max_referrals {
            config.limits.max_referrals = *v.get_ref();
        }
        if let Some(v) = &l.max_queries {
            if *v.get_ref() == 0 {
                return Err(at(v.span(), "limits.max_queries must be at least 1".into()));
            }
            config.limits.max_queries = *v.get_ref();
        }
        if let Some(v) = &l.lookup_deadline_ms {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "limits.lookup_deadline_ms must be at least 1".into(),
                ));
            }
            config.limits.lookup_deadline = Duration::from_millis(*v.get_ref());
        }
        if let Some(v) = &l.udp_threads {
            let max = crate::net::udp::MAX_THREADS;
            if !(1..=max).contains(v.get_ref()) {
                return Err(at(
                    v.span(),
                    format!("limits.udp_threads must be 1 to {max}"),
                ));
            }
            config.limits.udp_threads = *v.get_ref();
        }
        if let Some(v) = &l.max_minimise_count {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "limits.max_minimise_count must be at least 1".into(),
                ));
            }
            config.limits.max_minimise_count = *v.get_ref();
        }
        if let Some(v) = &l.minimise_one_label {
            config.limits.minimise_one_label = *v.get_ref();
        }
        if config.limits.minimise_one_label > config.limits.max_minimise_count {
            let span = l
                .minimise_one_label
                .as_ref()
                .or(l.max_minimise_count.as_ref())
                .map(|v| v.span())
                .unwrap_or_default();
            return Err(at(
                span,
                format!(
                    "limits.minimise_one_label ({}) is more than limits.max_minimise_count ({})",
                    config.limits.minimise_one_label, config.limits.max_minimise_count
                ),
            ));
        }
        if let Some(v) = &l.server_backoff_secs {
            if *v.get_ref() == 0 {
                return Err(at(
                    v.span(),
                    "limits.server_backoff_secs must be at least 1".into(),
                ));
            }
            config.limits.server_backoff.first = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &l.server_backoff_max_secs {
            config.limits.server_backoff.max = Duration::from_secs(*v.get_ref());
        }
        if config.limits.server_backoff.max < config.limits.server_backoff.first {
            let span = l
                .server_backoff_max_secs
                .as_ref()
                .or(l.server_backoff_secs.as_ref())
                .map(|v| v.span())
                .unwrap_or_default();
            return Err(at(
                span,
                "limits.server_backoff_max_secs is less than limits.server_backoff_secs".into(),
            ));
        }
        for sub in &raw.subscriptions {
            let zone = Name::parse(sub.zone.get_ref(), Some(&Name::root()))
                .map_err(|e| at(sub.zone.span(), format!("subscription.zone: {e}")))?;
            if config.subscriptions.iter().any(|s| s.zone == zone) {
                return Err(at(
                    sub.zone.span(),
                    format!("zone {zone} has two subscriptions"),
                ));
            }
            let server = parse_listen(sub.server.get_ref(), config.port)
                .map_err(|m| at(sub.server.span(), format!("subscription.server: {m}")))?;
            config.subscriptions.push(Subscription {
                zone,
                server,
                tsig: dir.join(sub.tsig.get_ref()),
                line: line_of(text, sub.zone.span().start),
            });
        }
        config.tls = raw.tls.as_ref().map(|t| t.settings(dir, &at)).transpose()?;
        if let Some(u) = &raw.upstream {
            config.upstream = u.settings(dir, &at)?;
        }
        if let Some(r) = &raw.replica {
            config.replica = Some(r.settings(dir, &at)?);
        }
        config.metrics = raw.metrics.as_ref().map(|m| m.listen(&at)).transpose()?;
        config.control = raw.control.as_ref().map(|c| c.socket(dir));
        if let Some(d) = &raw.dnssec {
            let mut ds = Vec::new();
            for line in d.trust_anchor.get_ref() {
                ds.push(
                    super::secure::TrustAnchor::parse_line(line.get_ref(), &config.apex)
                        .map_err(|m| at(line.span(), format!("dnssec.trust_anchor: {m}")))?,
                );
            }
            if ds.is_empty() {
                return Err(at(
                    d.trust_anchor.span(),
                    "dnssec.trust_anchor needs at least one DS or DNSKEY line".into(),
                ));
            }
            config.dnssec = Some(super::secure::TrustAnchor {
                zone: config.apex.clone(),
                ds,
            });
        }
        Ok(config)
    }
}

impl RawReplica {
    fn settings(
        &self,
        dir: &Path,
        at: At<'_>,
    ) -> Result<super::replica::ReplicaSettings, ConfigError> {
        let mut zones = Vec::new();
        for z in &self.zones {
            zones.push(
                Name::parse(z.get_ref(), Some(&Name::root()))
                    .map_err(|e| at(z.span(), format!("replica.zones: {e}")))?,
            );
        }
        if zones.is_empty() && self.min_slots.is_none() {
            return Err(at(
                self.dir.span(),
                "[replica] needs zones = [...] or min_slots = N (which zones to replicate)".into(),
            ));
        }
        let poll = match &self.poll_secs {
            Some(p) if *p.get_ref() == 0 => {
                return Err(at(p.span(), "replica.poll_secs must be at least 1".into()))
            }
            Some(p) => Duration::from_secs(*p.get_ref()),
            None => Duration::from_secs(60),
        };
        Ok(super::replica::ReplicaSettings {
            dir: dir.join(self.dir.get_ref()),
            max_bytes: self.max_mib.as_ref().map_or(4096, |m| *m.get_ref()) << 20,
            zones,
            min_slots: self.min_slots.as_ref().map(|m| *m.get_ref()),
            poll,
        })
    }
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, String) -> ConfigError;

impl RawUpstream {
    fn settings(&self, dir: &Path, at: At<'_>) -> Result<UpstreamConfig, ConfigError> {
        let tsig = self
            .tsig
            .as_ref()
            .map(|t| {
                TsigKey::load(dir.join(t.get_ref()))
                    .map_err(|e| at(t.span(), format!("upstream.tsig: {e}")))
            })
            .transpose()?;
        let tls_on = self.tls.as_ref().is_some_and(|t| *t.get_ref());
        if !tls_on {
            // TLS settings without TLS would be silently ignored; say so instead.
            let stray = [
                ("tls_port", self.tls_port.as_ref().map(|v| v.span())),
                ("ca", self.ca.as_ref().map(|v| v.span())),
                ("pins", self.pins.as_ref().map(|v| v.span())),
                ("cert", self.cert.as_ref().map(|v| v.span())),
                ("key", self.key.as_ref().map(|v| v.span())),
            ];
            if let Some((name, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
                return Err(at(
                    span,
                    format!("upstream.{name} needs upstream.tls = true"),
                ));
            }
            return Ok(UpstreamConfig { tls: None, tsig });
        }
        let port = match &self.tls_port {
            Some(p) if *p.get_ref() == 0 => {
                return Err(at(p.span(), "upstream.tls_port must not be 0".into()))
            }
            Some(p) => *p.get_ref(),
            None => crate::tls::DOT_PORT,
        };
        let trust = match (&self.ca, &self.pins) {
            (Some(ca), None) => {
                let certs = crate::tls::load_certs(&dir.join(ca.get_ref()))
                    .map_err(|e| at(ca.span(), format!("upstream.ca: {e}")))?;
                ServerTrust::Ca(certs)
            }
            (None, Some(pins)) => {
                if pins.get_ref().is_empty() {
                    return Err(at(pins.span(), "upstream.pins is empty".into()));
                }
                for p in pins.get_ref() {
                    check_pin(p.get_ref())
                        .map_err(|m| at(p.span(), format!("upstream.pins: {m}")))?;
                }
                ServerTrust::Pins(pins.get_ref().iter().map(|p| p.get_ref().clone()).collect())
            }
            (Some(ca), Some(_)) => {
                return Err(at(
                    ca.span(),
                    "upstream: give either ca or pins, not both".into(),
                ))
            }
            (None, None) => {
                let span = self.tls.as_ref().map(|t| t.span()).unwrap_or_default();
                return Err(at(
                    span,
                    "upstream.tls = true needs ca = \"FILE\" (the deployment's CA certificates) or pins = [\"base64 SPKI SHA-256\", ...]".into(),
                ));
            }
        };
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some(
                ClientIdentity::load(&dir.join(c.get_ref()), &dir.join(k.get_ref()))
                    .map_err(|e| at(c.span(), format!("upstream.cert: {e}")))?,
            ),
            (None, None) => None,
            (Some(c), None) => return Err(at(c.span(), "upstream.cert needs upstream.key".into())),
            (None, Some(k)) => return Err(at(k.span(), "upstream.key needs upstream.cert".into())),
        };
        let span = self
            .cert
            .as_ref()
            .map(|c| c.span())
            .or_else(|| self.tls.as_ref().map(|t| t.span()))
            .unwrap_or_default();
        let client = crate::tls::client_config_for(&trust, identity.as_ref())
            .map_err(|e| at(span, format!("upstream: {e}")))?;
        Ok(UpstreamConfig {
            tls: Some(UpstreamTls { port, client }),
            tsig,
        })
    }
}

/// An SPKI pin is the base64 of a SHA-256 digest (RFC 7858 section 4.2).
fn check_pin(pin: &str) -> Result<(), String> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(pin) {
        Ok(d) if d.len() == 32 => Ok(()),
        Ok(d) => Err(format!(
            "{pin:?} is {} bytes, not a SHA-256 digest (32); `mimi tls pin CERT` prints one",
            d.len()
        )),
        Err(e) => Err(format!("{pin:?} is not base64: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    apex: Option<Spanned<String>>,
    roots: Spanned<Vec<Spanned<String>>>,
    port: Option<Spanned<u16>>,
    trust: Spanned<String>,
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    tls: Option<RawTls>,
    context: Option<Spanned<String>>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default, rename = "subscription")]
    subscriptions: Vec<RawSubscription>,
    upstream: Option<RawUpstream>,
    replica: Option<RawReplica>,
    dnssec: Option<RawDnssec>,
    metrics: Option<crate::config::RawMetrics>,
    control: Option<crate::config::RawControl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnssec {
    trust_anchor: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplica {
    dir: Spanned<String>,
    max_mib: Option<Spanned<u64>>,
    #[serde(default)]
    zones: Vec<Spanned<String>>,
    min_slots: Option<Spanned<u64>>,
    poll_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    tls: Option<Spanned<bool>>,
    tls_port: Option<Spanned<u16>>,
    ca: Option<Spanned<String>>,
    pins: Option<Spanned<Vec<Spanned<String>>>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    tsig: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    zone: Spanned<String>,
    server: Spanned<String>,
    tsig: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    entries: Option<Spanned<usize>>,
    max_ttl_secs: Option<Spanned<u64>>,
    max_negative_ttl_secs: Option<Spanned<u64>>,
    serve_stale: Option<Spanned<bool>>,
    stale_window_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout_ms: Option<Spanned<u64>>,
    retries: Option<Spanned<u32>>,
    max_referrals: Option<Spanned<u32>>,
    max_queries: Option<Spanned<u32>>,
    lookup_deadline_ms: Option<Spanned<u64>>,
    udp_threads: Option<Spanned<usize>>,
    max_minimise_count: Option<Spanned<u32>>,
    minimise_one_label: Option<Spanned<u32>>,
    server_backoff_secs: Option<Spanned<u64>>,
    server_backoff_max_secs: Option<Spanned<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_lines() {
        let c = ResolverConfig::parse(
            "roots = [\"ns1.mimi.arpa.=127.53.0.1\", \"127.53.0.11\"]\nport = 5300\ntrust = \"trust.toml\"\nlisten = [\"127.0.0.1:5353\"]\ncontext = \"business\"\n[cache]\nentries = 10\nserve_stale = true\n[limits]\ntimeout_ms = 200\n",
            Path::new("/etc/mimi/resolver.toml"),
        )
        .unwrap();
        assert_eq!(c.roots.len(), 2);
        assert_eq!(c.port, 5300);
        assert_eq!(c.trust, Path::new("/etc/mimi/trust.toml"));
        assert_eq!(c.context, Context::Business);
        assert_eq!(c.cache.entries, 10);
        assert!(c.cache.serve_stale);
        assert_eq!(c.limits.timeout, Duration::from_millis(200));
        let e = ResolverConfig::parse("roots = [\"x\"]\ntrust = \"t\"\n", Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:1:") && e.contains("not an IP"), "{e}");
        let e = ResolverConfig::parse(
            "roots = [\"127.0.0.1\"]\ntrust = \"t\"\n[cache]\nentries = 0\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("r.toml:4:"), "{e}");
        let base = "roots = [\"127.0.0.1\"]\ntrust = \"t\"\n[limits]\n";
        let c = ResolverConfig::parse(&format!("{base}udp_threads = 2\n"), Path::new("r.toml"))
            .unwrap();
        assert_eq!(c.limits.udp_threads, 2);
        let e = ResolverConfig::parse(&format!("{base}udp_threads = 0\n"), Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("r.toml:4:") && e.contains("udp_threads"),
            "{e}"
        );
    }

    #[test]
    fn the_trust_anchor_takes_a_ds_or_dnskey_line_of_the_apex() {
        let key = crate::dnssec::DnssecKey::generate(
            Name::parse("mimi.arpa.", None).unwrap(),
            crate::dnssec::FLAGS_CSK,
        );
        let lines = key.records_text();
        let mut lines = lines.lines();
        let (dnskey, ds) = (lines.next().unwrap(), lines.next().unwrap());
        let base = "roots = [\"127.0.0.1\"]\ntrust = \"t\"\n[dnssec]\n";
        for line in [ds, dnskey] {
            let c = ResolverConfig::parse(
                &format!("{base}trust_anchor = [{line:?}]\n"),
                Path::new("r.toml"),
            )
            .unwrap();
            assert_eq!(c.dnssec.unwrap().ds, vec![key.ds_rdata()], "{line}");
        }
        let other_zone = format!("e164.mimi.arpa. IN DS 1 15 2 {}", "00".repeat(32));
        for (line, why) in [
            (other_zone.as_str(), "tree apex"),
            ("mimi.arpa. IN DS 1 15 2 0011", "32 octets"),
            ("mimi.arpa. IN A 127.0.0.1", "DS or DNSKEY"),
            ("mimi.arpa. DNSKEY 257 3 13 AAAA", "only 3 15"),
        ] {
            let e = ResolverConfig::parse(
                &format!("{base}trust_anchor = [\n  {line:?}]\n"),
                Path::new("r.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("r.toml:5:") && e.contains(why), "{line}: {e}");
        }
        let e = ResolverConfig::parse(&format!("{base}trust_anchor = []\n"), Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:4:"), "{e}");
    }

    #[test]
    fn minimisation_and_backoff_limits_parse_and_are_checked() {
        let base = "roots = [\"127.0.0.1\"]\ntrust = \"t\"\n[limits]\n";
        let c = ResolverConfig::parse(
            &format!("{base}max_minimise_count = 6\nminimise_one_label = 2\nserver_backoff_secs = 5\nserver_backoff_max_secs = 60\n"),
            Path::new("r.toml"),
        )
        .unwrap();
        assert_eq!(c.limits.max_minimise_count, 6);
        assert_eq!(c.limits.minimise_one_label, 2);
        assert_eq!(c.limits.server_backoff.first, Duration::from_secs(5));
        assert_eq!(c.limits.server_backoff.max, Duration::from_secs(60));
        let d = ResolverConfig::parse(base, Path::new("r.toml")).unwrap();
        assert_eq!(
            (d.limits.max_minimise_count, d.limits.minimise_one_label),
            (10, 4)
        );
        for (bad, line) in [
            ("max_minimise_count = 0\n", 4),
            ("max_minimise_count = 3\nminimise_one_label = 4\n", 5),
            ("server_backoff_secs = 0\n", 4),
            ("server_backoff_secs = 10\nserver_backoff_max_secs = 5\n", 5),
        ] {
            let e = ResolverConfig::parse(&format!("{base}{bad}"), Path::new("r.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("r.toml:{line}:")), "{bad}: {e}");
        }
    }

    #[test]
    fn replica_section_parses_and_reports_lines() {
        let base = "roots = [\"127.0.0.1\"]\ntrust = \"t\"\n[replica]\ndir = \"rep\"\n";
        let c = ResolverConfig::parse(
            &format!("{base}zones = [\"5.5.5.1.e164.mimi.arpa.\"]\nmax_mib = 10\npoll_secs = 5\n"),
            Path::new("/etc/mimi/resolver.toml"),
        )
        .unwrap();
        let r = c.replica.unwrap();
        assert_eq!(r.dir, Path::new("/etc/mimi/rep"));
        assert_eq!(r.max_bytes, 10 << 20);
        assert_eq!(r.poll, Duration::from_secs(5));
        assert_eq!(r.zones.len(), 1);
        assert_eq!(r.min_slots, None);
        let e = ResolverConfig::parse(base, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:4:") && e.contains("zones"), "{e}");
        let e = ResolverConfig::parse(
            &format!("{base}min_slots = 100\npoll_secs = 0\n"),
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("r.toml:6:"), "{e}");
        let e = ResolverConfig::parse(
            &format!("{base}zones = [\"not a name..\"]\n"),
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("r.toml:5:") && e.contains("replica.zones"),
            "{e}"
        );
    }
}
