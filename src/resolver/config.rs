//! The resolver's configuration file (TOML); see docs/resolver.md.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    from_toml, line_of, parse_listen, read_config, ConfigError, RawTls, TlsSettings, DNS_PORT,
};
use crate::name::Name;
use crate::record::Context;
use crate::sii::DEFAULT_APEX;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(800),
            retries: 1,
            max_referrals: 16,
            max_queries: 64,
            lookup_deadline: Duration::from_secs(10),
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
        Ok(config)
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
    }
}
