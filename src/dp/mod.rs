//! The discovery provider's authoritative DNS server (`mimi dp serve`).
//!
//! UDP goes through our batched loop (`crate::net::udp`), TCP through our bounded
//! listener (`crate::net::tcp`). Both hand requests to `DpHandler`, which answers from our
//! own zone store. Zones are swapped whole on reload, so a query sees either the old or
//! the new zone set.

pub mod access;
mod answer;
mod changes;
pub mod config;
mod control;
mod expiry;
mod fast;
pub mod handler;
mod marks;
mod metrics;
mod notify;
pub mod private;
pub mod ratelimit;
mod replica;
mod run;
mod signed;
pub mod stats;
pub mod update;
pub mod writer;
mod xfr;
pub mod zonedir;
pub mod zones;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::name::Name;
use crate::net::udp::{UdpServer, UdpSockets};
use crate::record::TrustStore;
use writer::WriterContext;

pub use config::{ConfigError, DpConfig};
pub use handler::{DpHandler, Shared, Stats};
pub use zones::{ServedZone, ZoneSet};

#[derive(Debug, Error)]
pub enum DpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Zone(String),
    #[error(transparent)]
    SubscriberKey(#[from] changes::SubscriberKeyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Access(#[from] Box<access::AccessError>),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
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
    /// The DNS-over-TLS addresses actually bound.
    pub tls_addrs: Vec<SocketAddr>,
    /// Where `/metrics` is served (`[metrics] listen`), as bound.
    pub metrics_addr: Option<SocketAddr>,
    udp: Vec<UdpServer>,
    tcp: Vec<JoinHandle<()>>,
    /// The config as last loaded, for the zone directory's scans.
    config: Arc<ArcSwap<DpConfig>>,
    zonedir: Arc<tokio::sync::Mutex<zonedir::ZoneDir>>,
    scanner: Option<JoinHandle<()>>,
}

use crate::sys::unix_now as now;

/// Binds UDP (`udp_threads` sockets) and TCP on the same address; with port 0, finds a
/// port free for both.
async fn bind_pair(
    addr: SocketAddr,
    udp_threads: usize,
) -> Result<(UdpSockets, TcpListener, SocketAddr), DpError> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp =
            UdpSockets::bind(addr, udp_threads).map_err(|source| DpError::Bind { addr, source })?;
        let bound = udp.local_addr();
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
                crate::sys::tune_allocator();
                Some(Arc::new(
                    private::PirService::new(s.clone()).map_err(DpError::Zone)?,
                ))
            }
            None => None,
        };
        let trust = TrustStore::load(&config.trust).map_err(|e| DpError::Zone(e.to_string()))?;
        let updaters = update::load_updaters(&config).map_err(DpError::Zone)?;
        let subscribers = changes::load_subscribers(&config)?;
        let access =
            access::Access::new(config.access.clone(), &config.clients, None).map_err(Box::new)?;
        let shared = Arc::new(Shared {
            access: ArcSwap::from_pointee(access),
            zones: ArcSwap::from_pointee(ZoneSet::default()),
            stats: Stats::default(),
            axfr_allow: config.axfr_allow.clone(),
            axfr_keys: ArcSwap::from_pointee(load_axfr_keys(&config)?),
            udp_payload: config.limits.udp_payload,
            pir,
            pir_secret: secret,
            trust: ArcSwap::from_pointee(trust),
            apex: config.apex.clone(),
            updaters: ArcSwap::from_pointee(updaters),
            subscribers: ArcSwap::from_pointee(subscribers),
            update_limits: config.updates.clone(),
            update_rate: ratelimit::RateLimiter::new(ratelimit::Rate::hourly(
                config.updates.burst,
                config.updates.per_second * 3600.0,
            )),
            writers: std::sync::Mutex::new(HashMap::new()),
        });
        // Bind first (a port in use fails fast), but serve only once every zone is loaded:
        // until then the kernel holds the queries, rather than the server refusing them.
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for &addr in &config.listen {
            let (u, t, bound) = bind_pair(addr, config.limits.udp_threads).await?;
            sockets.push((u, t, bound));
            addrs.push(bound);
        }
        // The certificate is read before anything is served: a bad one stops the start.
        let tls = match &config.tls {
            Some(t) => {
                // Client certificates are asked for (not required) when some provider is
                // known by one.
                let ask = config.clients.iter().any(|c| !c.pins.is_empty());
                let server = crate::tls::server_config(&t.cert, &t.key, ask)?;
                let mut listeners = Vec::new();
                for &addr in &t.listen {
                    let bind = |source| DpError::Bind { addr, source };
                    let l = TcpListener::bind(addr).await.map_err(bind)?;
                    let bound = l.local_addr().map_err(bind)?;
                    listeners.push((l, bound));
                }
                Some((server, listeners))
            }
            None => None,
        };
        let ctx = writer_context(&config, &shared, &addrs);
        let trust = shared.trust.load_full();
        for zc in &config.zones {
            let checked = read_checked(&config, zc, &trust).await?.map_err(|e| {
                DpError::Zone(format!(
                    "{e} (zone {} at {}:{})",
                    zc.origin,
                    config.path.display(),
                    zc.line
                ))
            })?;
            let handle = writer::start_zone(zc.clone(), checked, ctx.clone())
                .await
                .map_err(|e| DpError::Zone(format!("zone {}: {e}", zc.origin)))?;
            shared.writers_lock().insert(zc.origin.clone(), handle);
        }
        let mut dir = zonedir::ZoneDir::default();
        if let Some(d) = &config.zone_directory {
            // An unreadable directory is a config error at start; a bad file in it is not.
            zonedir::listing(&d.path).map_err(|e| {
                DpError::Zone(format!(
                    "zone directory {} ({}): {e}",
                    d.path.display(),
                    config.path.display()
                ))
            })?;
            dir.sync(d, &config, &shared, &ctx, false).await;
        }
        zones::release_freed_memory();
        let handler = DpHandler::new(shared.clone());
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for (u, t, bound) in sockets {
            udp.push(u.serve(handler.clone()).map_err(|source| DpError::Bind {
                addr: bound,
                source,
            })?);
            tcp.push(tokio::spawn(crate::net::tcp::serve(
                t,
                handler.clone(),
                config.limits.clone(),
            )));
            info!("listening on {bound} (UDP and TCP)");
        }
        let mut tls_addrs = Vec::new();
        if let Some((server, listeners)) = tls {
            for (l, bound) in listeners {
                tcp.push(tokio::spawn(crate::net::tls::serve(
                    l,
                    server.clone(),
                    handler.clone(),
                    config.limits.clone(),
                )));
                info!("listening on {bound} (DNS over TLS)");
                tls_addrs.push(bound);
            }
        }
        let mut metrics_addr = None;
        if let Some(listen) = config.metrics {
            let source: Arc<dyn crate::metrics::Source> = shared.clone();
            let (task, bound) = crate::metrics::serve(listen, source)
                .await
                .map_err(|source| DpError::Bind {
                    addr: listen,
                    source,
                })?;
            info!("metrics on http://{bound}/metrics");
            tcp.push(task);
            metrics_addr = Some(bound);
        }
        let config = Arc::new(ArcSwap::from_pointee(config));
        let zonedir = Arc::new(tokio::sync::Mutex::new(dir));
        let scanner = config.load().zone_directory.as_ref().map(|_| {
            tokio::spawn(scan(
                config.clone(),
                zonedir.clone(),
                shared.clone(),
                addrs.clone(),
            ))
        });
        Ok(DpServer {
            config_path: config_path.to_path_buf(),
            shared,
            addrs,
            tls_addrs,
            metrics_addr,
            udp,
            tcp,
            config,
            zonedir,
            scanner,
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
        let config = DpConfig::load(&self.config_path)?;
        let failures = reload(&config, &self.shared, &self.addrs, &self.zonedir).await?;
        self.config.store(Arc::new(config));
        Ok(failures)
    }

    /// Lists the zone directory now (it is listed every `scan_interval_ms` anyway):
    /// starts the zones of new files and stops those whose file is gone.
    pub async fn rescan(&self) -> Vec<String> {
        let config = self.config.load_full();
        let Some(d) = &config.zone_directory else {
            return Vec::new();
        };
        let ctx = writer_context(&config, &self.shared, &self.addrs);
        self.zonedir
            .lock()
            .await
            .sync(d, &config, &self.shared, &ctx, false)
            .await
    }

    /// Stops listening, lets each zone's writer finish its queue and write its zone
    /// file, and waits for the UDP threads to finish (their sockets are then closed).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.scanner.take() {
            s.abort();
            let _ = s.await;
        }
        for t in &self.tcp {
            t.abort();
        }
        // The listeners' sockets close when their tasks are gone.
        for t in self.tcp.drain(..) {
            let _ = t.await;
        }
        let writers: Vec<writer::WriterHandle> =
            self.shared.writers_lock().values().cloned().collect();
        for w in writers {
            w.stop().await;
        }
        for u in self.udp.drain(..) {
            u.shutdown().await;
        }
    }

    fn log_counters(&self, what: &str) {
        info!("{what}: {}", self.stats().summary());
        for line in self.shared.access.load().summary() {
            info!("{line}");
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
        // `mimi ctl`'s commands come through the same loop as the signals.
        let mut control = crate::control::Control::open(self.config.load().control.as_deref())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading zones");
                    self.reload_and_log().await;
                }
                _ = usr1.recv() => self.log_counters("counters"),
                _ = term.recv() => break,
                _ = int.recv() => break,
                Some(job) = control.next() => {
                    info!(command = %job.request.command, "control");
                    let stop = job.request.command == "stop";
                    let reply = self.control(&job.request).await;
                    let _ = job.reply.send(reply);
                    if stop {
                        break;
                    }
                }
            }
        }
        control.close();
        self.log_counters("shutting down; counters");
        self.shutdown().await;
        Ok(())
    }
}

/// The TSIG keys of `[axfr] keys`.
fn load_axfr_keys(config: &DpConfig) -> Result<Vec<crate::tsig::TsigKey>, DpError> {
    config
        .axfr_keys
        .iter()
        .map(|p| {
            crate::tsig::TsigKey::load(p)
                .map_err(|e| DpError::Zone(format!("{e} (axfr.keys in {})", config.path.display())))
        })
        .collect()
}

/// Reads and checks one zone file off the async workers.
async fn read_checked(
    config: &DpConfig,
    zc: &config::ZoneConfig,
    trust: &Arc<TrustStore>,
) -> Result<Result<zones::CheckedZone, zones::ZoneLoadError>, DpError> {
    let (zc, trust, apex) = (zc.clone(), trust.clone(), config.apex.clone());
    let invalid = config.serve_invalid_records;
    tokio::task::spawn_blocking(move || zones::read_zone(&zc, &trust, &apex, now(), invalid))
        .await
        .map_err(|e| DpError::Zone(e.to_string()))
}

fn writer_context(config: &DpConfig, shared: &Arc<Shared>, listen: &[SocketAddr]) -> WriterContext {
    WriterContext {
        shared: shared.clone(),
        journal: config.journal.clone(),
        notify: config.notify.clone(),
        listen: listen.to_vec(),
        pir: config.pir.clone(),
        keep_expired: config.serve_invalid_records,
    }
}

/// Lists the zone directory every `scan_interval_ms` of the current config.
async fn scan(
    config: Arc<ArcSwap<DpConfig>>,
    dir: Arc<tokio::sync::Mutex<zonedir::ZoneDir>>,
    shared: Arc<Shared>,
    listen: Vec<SocketAddr>,
) {
    loop {
        let current = config.load_full();
        let Some(d) = &current.zone_directory else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        tokio::time::sleep(d.scan_interval).await;
        let ctx = writer_context(&current, &shared, &listen);
        dir.lock()
            .await
            .sync(d, &current, &shared, &ctx, false)
            .await;
    }
}

/// Re-reads the trust file and every zone file of `config`; each zone's writer applies
/// what changed in its file as one changeset. New zones start, removed ones stop.
async fn reload(
    config: &DpConfig,
    shared: &Arc<Shared>,
    listen: &[SocketAddr],
    zonedir: &tokio::sync::Mutex<zonedir::ZoneDir>,
) -> Result<Vec<String>, DpError> {
    let config = config.clone();
    let trust =
        Arc::new(TrustStore::load(&config.trust).map_err(|e| DpError::Zone(e.to_string()))?);
    shared.trust.store(trust.clone());
    match update::load_updaters(&config) {
        Ok(u) => shared.updaters.store(Arc::new(u)),
        Err(e) => warn!("update keys not reloaded, keeping the previous ones: {e}"),
    }
    match load_axfr_keys(&config) {
        Ok(k) => shared.axfr_keys.store(Arc::new(k)),
        Err(e) => warn!("transfer keys not reloaded, keeping the previous ones: {e}"),
    }
    match changes::load_subscribers(&config) {
        Ok(s) => shared.subscribers.store(Arc::new(s)),
        Err(e) => warn!("subscribers not reloaded, keeping the previous ones: {e}"),
    }
    let previous = shared.access.load_full();
    match access::Access::new(config.access.clone(), &config.clients, Some(&previous)) {
        Ok(a) => shared.access.store(Arc::new(a)),
        Err(e) => warn!("access classes not reloaded, keeping the previous ones: {e}"),
    }
    let ctx = writer_context(&config, shared, listen);
    let mut failures = Vec::new();
    for zc in &config.zones {
        let checked = read_checked(&config, zc, &trust).await?;
        let checked = match checked {
            Ok(c) => c,
            Err(e) => {
                warn!(zone = %zc.origin, "reload failed, still serving the current version: {e}");
                failures.push(e.to_string());
                continue;
            }
        };
        let existing = shared.writers_lock().get(&zc.origin).cloned();
        let result = match existing {
            Some(w) => w
                .reload(checked, zc.dnssec.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => writer::start_zone(zc.clone(), checked, ctx.clone())
                .await
                .map(|h| {
                    shared.writers_lock().insert(zc.origin.clone(), h);
                }),
        };
        if let Err(e) = result {
            warn!(zone = %zc.origin, "reload failed, still serving the current version: {e}");
            failures.push(format!("zone {}: {e}", zc.origin));
        }
    }
    let mut dir = zonedir.lock().await;
    match &config.zone_directory {
        Some(d) => failures.extend(dir.sync(d, &config, shared, &ctx, true).await),
        // No directory any more: its zones stop below like unconfigured ones.
        None => *dir = zonedir::ZoneDir::default(),
    }
    let gone: Vec<(Name, writer::WriterHandle)> = shared
        .writers_lock()
        .iter()
        .filter(|(o, _)| !config.zones.iter().any(|z| z.origin == **o) && !dir.serves(o))
        .map(|(o, h)| (o.clone(), h.clone()))
        .collect();
    for (origin, h) in gone {
        info!(zone = %origin, "zone no longer configured: stopped");
        h.stop().await;
        shared.writers_lock().remove(&origin);
        shared.zones.rcu(|set| {
            let mut set = (**set).clone();
            set.remove(&origin);
            set
        });
    }
    Ok(failures)
}
