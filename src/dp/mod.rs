//! The discovery provider's authoritative DNS server (`mimi dp serve`).
//!
//! UDP goes through hickory-server's `Server`; TCP through our bounded listener (`tcp`).
//! Both hand requests to `DpHandler`, which answers from our own zone store. Zones are
//! swapped whole on reload, so a query sees either the old or the new zone set.

pub mod config;
pub mod handler;
mod notify;
pub mod private;
pub mod ratelimit;
mod tcp;
pub mod zones;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use thiserror::Error;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::name::Name;

pub use config::{ConfigError, DpConfig};
pub use handler::{DpHandler, Shared, Stats};
pub use zones::{ServedZone, ZoneSet};

#[derive(Debug, Error)]
pub enum DpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Zone(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running server: its bound addresses and a handle to reload or stop it.
pub struct DpServer {
    config_path: PathBuf,
    shared: Arc<Shared>,
    /// The addresses actually bound (port 0 in the config becomes a real port).
    pub addrs: Vec<SocketAddr>,
    udp: hickory_server::Server<DpHandler>,
    tcp: Vec<JoinHandle<()>>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Binds UDP and TCP on the same address; with port 0, finds a port free for both.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DpError> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DpError::Bind { addr, source })?;
        let bound = udp
            .local_addr()
            .map_err(|source| DpError::Bind { addr, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(DpError::Bind {
        addr,
        source: last_err.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

impl DpServer {
    /// Loads the config and every zone (any failure stops start-up), then listens.
    pub async fn start(config_path: &Path) -> Result<DpServer, DpError> {
        let config = DpConfig::load(config_path)?;
        // Keys the zones' OPRF keys; new each start, so clients simply see a new epoch.
        let secret: [u8; 32] = rand::random();
        let pir = match &config.pir {
            Some(s) => {
                crate::pir::mulpir::tune_allocator();
                Some(Arc::new(
                    private::PirService::new(s.clone()).map_err(DpError::Zone)?,
                ))
            }
            None => None,
        };
        let loaded = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || zones::load_all(&config, None, now(), &secret))
                .await
                .map_err(|e| DpError::Zone(e.to_string()))?
        };
        let (zone_set, _) = loaded.map_err(DpError::Zone)?;
        let shared = Arc::new(Shared {
            zones: ArcSwap::from_pointee(zone_set),
            stats: Stats::default(),
            axfr_allow: config.axfr_allow.clone(),
            udp_payload: config.limits.udp_payload,
            pir,
            pir_secret: secret,
        });
        let handler = DpHandler(shared.clone());
        let mut udp = hickory_server::Server::new(handler.clone());
        let mut tcp = Vec::new();
        let mut addrs = Vec::new();
        for &addr in &config.listen {
            let (u, t, bound) = bind_pair(addr).await?;
            udp.register_socket(u);
            tcp.push(tokio::spawn(tcp::serve(
                t,
                handler.clone(),
                config.limits.clone(),
            )));
            info!("listening on {bound} (UDP and TCP)");
            addrs.push(bound);
        }
        Ok(DpServer {
            config_path: config_path.to_path_buf(),
            shared,
            addrs,
            udp,
            tcp,
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Re-reads the config and zones and swaps them in. A zone that fails keeps its
    /// previous version; the failures are returned (and logged). Listen addresses and
    /// limits change only on restart.
    pub async fn reload(&self) -> Result<Vec<String>, DpError> {
        reload(&self.config_path, &self.shared).await
    }

    /// Stops listening and waits for the UDP server to finish.
    pub async fn shutdown(mut self) {
        for t in &self.tcp {
            t.abort();
        }
        if let Err(e) = self.udp.shutdown_gracefully().await {
            warn!("shutdown: {e}");
        }
    }

    async fn reload_and_log(&self) {
        match self.reload().await {
            Ok(f) if f.is_empty() => info!("reload complete"),
            Ok(f) => warn!(
                "reload complete with {} zone(s) kept at their previous version",
                f.len()
            ),
            Err(e) => warn!("reload failed, still serving the previous zones: {e}"),
        }
    }

    /// Serves until SIGINT or SIGTERM, reloading on SIGHUP and logging counters on SIGUSR1
    /// and at the end.
    pub async fn run_until_signalled(self) -> Result<(), DpError> {
        use tokio::signal::unix::{signal, SignalKind};
        let sig = |kind| {
            signal(kind).map_err(|e| DpError::Zone(format!("cannot install signal handler: {e}")))
        };
        let mut hup = sig(SignalKind::hangup())?;
        let mut usr1 = sig(SignalKind::user_defined1())?;
        let mut term = sig(SignalKind::terminate())?;
        let mut int = sig(SignalKind::interrupt())?;
        loop {
            // Re-check the zones when the first served mapping expires (at most once a
            // minute, at least once a day), so expired mappings stop being served.
            let wait = self
                .shared
                .zones
                .load()
                .next_expiry()
                .map_or(86_400, |t| t.saturating_sub(now()).clamp(60, 86_400));
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading zones");
                    self.reload_and_log().await;
                }
                _ = tokio::time::sleep(std::time::Duration::from_secs(wait + 1)) => {
                    info!("a served mapping expired: checking the zones again");
                    self.reload_and_log().await;
                }
                _ = usr1.recv() => info!("counters: {}", self.stats().summary()),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        info!("shutting down; counters: {}", self.stats().summary());
        self.shutdown().await;
        Ok(())
    }
}

async fn reload(config_path: &Path, shared: &Arc<Shared>) -> Result<Vec<String>, DpError> {
    let config = DpConfig::load(config_path)?;
    let current = shared.zones.load_full();
    let notify = config.notify.clone();
    let listen = config.listen.clone();
    let secret = shared.pir_secret;
    let (set, failures) = tokio::task::spawn_blocking(move || {
        zones::load_all(&config, Some(&current), now(), &secret)
    })
    .await
    .map_err(|e| DpError::Zone(e.to_string()))?
    .map_err(DpError::Zone)?;
    let before = shared.zones.load().serials();
    let changed: Vec<Name> = set
        .serials()
        .into_iter()
        .filter(|s| !before.contains(s))
        .map(|(origin, _)| origin)
        .collect();
    shared.zones.store(Arc::new(set));
    if !notify.is_empty() && !changed.is_empty() {
        tokio::spawn(notify::send_all(changed, notify, listen));
    }
    Ok(failures)
}
