//! Config-file helpers shared by the DP's and the resolver's configs (TOML): reading a
//! file, errors that name the file and line, listen addresses, and the `[tls]` section
//! both servers take.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// `[tls]`: DNS over TLS (RFC 7858) on its own addresses (port 853 by default).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

impl RawTls {
    /// The settings, paths relative to `dir`; `at` makes an error at a span.
    pub(crate) fn settings(
        &self,
        dir: &Path,
        at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    ) -> Result<TlsSettings, ConfigError> {
        if self.listen.get_ref().is_empty() {
            return Err(at(
                self.listen.span(),
                "tls.listen needs at least one address".into(),
            ));
        }
        let mut listen = Vec::new();
        for l in self.listen.get_ref() {
            let addr = parse_listen(l.get_ref(), crate::tls::DOT_PORT)
                .map_err(|m| at(l.span(), format!("tls.listen: {m}")))?;
            listen.push(addr);
        }
        Ok(TlsSettings {
            listen,
            cert: dir.join(self.cert.get_ref()),
            key: dir.join(self.key.get_ref()),
        })
    }
}

/// `[control]` of a server's config: the Unix socket `mimi ctl` talks to (src/control.rs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub socket: Spanned<String>,
}

impl RawControl {
    /// The socket's path, relative to the config's directory `dir`.
    pub(crate) fn socket(&self, dir: &Path) -> PathBuf {
        dir.join(self.socket.get_ref())
    }
}

/// `[metrics]` of a server's config: where Prometheus scrapes it (src/metrics.rs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Spanned<String>,
}

impl RawMetrics {
    /// The address to serve `/metrics` on (port 9153 when none is given).
    pub(crate) fn listen(
        &self,
        at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    ) -> Result<SocketAddr, ConfigError> {
        parse_listen(self.listen.get_ref(), crate::metrics::DEFAULT_PORT)
            .map_err(|m| at(self.listen.span(), format!("metrics.listen: {m}")))
    }
}

/// Default DNS port when a listen address has none.
pub const DNS_PORT: u16 = 53;

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_listen(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "{s:?} is not an address (IP, IP:PORT or [IPv6]:PORT)"
    ))
}

/// Reads a config file, naming it in the error.
pub(crate) fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.display().to_string(),
        source,
    })
}

/// Deserialises config text; a syntax or type error names the file and line.
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => ConfigError::At {
            file: file.to_string(),
            line: line_of(text, span.start),
            message: e.message().to_string(),
        },
        None => ConfigError::File {
            file: file.to_string(),
            message: e.to_string(),
        },
    })
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|&b| b == b'\n').count())
        + 1
}
