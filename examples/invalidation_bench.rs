//! Invalidation benchmark for `tools/bench/invalidation.sh`: a resolver caching `--cached`
//! names of a carrier zone of `--count` mappings while the zone's DP takes `--rate`
//! single-mapping UPDATEs a second, each to a cached name.
//!
//! Per mode - no updates; CHANGES at b = 8, 12 and 16; the whole zone dropped on every
//! NOTIFY (what PowerDNS Recursor does) - it starts the DPs (a root and the carrier, in
//! process, the carrier with `[[subscriber]]` and `[changes] digest_bits`), a resolver with
//! a NOTIFY listener, fills the cache, then for `--seconds` runs lookups of random cached
//! names beside the updates and measures: the time from an UPDATE's acknowledgement to the
//! resolver answering the new mapping, the lookups that missed the cache (refetches) per
//! second beyond those of the changed names, and the cache hit rate.
//!
//! ```sh
//! invalidation_bench --work DIR --zone-file carrier.zone --root-file root.zone \
//!     --trust trust.toml --key chat.key --count 1000000 --cached 100000 --rate 100 --seconds 20
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;
use mimi_discovery::dp::DpServer;
use mimi_discovery::name::Name;
use mimi_discovery::publish::{sign_mapping, Mapping, Publisher, SignOptions};
use mimi_discovery::record::{ProviderKey, TrustStore};
use mimi_discovery::resolver::{invalidate, Outcome, Resolver, ResolverConfig};
use mimi_discovery::sii::{Sii, DEFAULT_APEX};
use mimi_discovery::tsig::{KeyFileFormat, TsigKey};
use rand::Rng;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    work: PathBuf,
    #[arg(long)]
    zone_file: PathBuf,
    #[arg(long)]
    root_file: PathBuf,
    #[arg(long)]
    trust: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    count: usize,
    #[arg(long, default_value_t = 100_000)]
    cached: usize,
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Loopback prefix: the carrier DP at .91, the root at .92, the resolver at .93.
    #[arg(long, default_value = "127.0.0")]
    net: String,
}

const ZONE: &str = "5.5.5.1.e164.mimi.arpa.";

#[derive(Clone, Copy)]
enum Mode {
    Idle,
    Changes(u8),
    WholeZone,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Idle => "no updates".into(),
            Mode::Changes(b) => format!("CHANGES, b = {b}"),
            Mode::WholeZone => "whole zone per NOTIFY".into(),
        }
    }
}

fn number(i: usize) -> String {
    format!("+1555{:07}", 2 * i)
}

fn free_port(ips: &[IpAddr]) -> Result<u16> {
    for _ in 0..50 {
        let p = std::net::UdpSocket::bind((ips[0], 0))?.local_addr()?.port();
        let free = ips.iter().all(|ip| {
            std::net::UdpSocket::bind((*ip, p)).is_ok()
                && std::net::TcpListener::bind((*ip, p)).is_ok()
        });
        if free {
            return Ok(p);
        }
    }
    anyhow::bail!("no free port")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MIMI_LOG"))
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&args.work)?;
    let key = ProviderKey::load(&args.key).context("--key")?;
    let tsig = TsigKey::generate("chat-update.".parse()?);
    let sub = TsigKey::generate("resolver-sub.".parse()?);
    let (tp, sp) = (args.work.join("chat.tsig"), args.work.join("sub.tsig"));
    for (k, p) in [(&tsig, &tp), (&sub, &sp)] {
        let _ = std::fs::remove_file(p);
        k.save_new(p, KeyFileFormat::Bind)?;
    }
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>13} {:>11} {:>10}",
        "mode", "p50 ms", "p99 ms", "updates", "refetch/s", "hit rate", "lookups/s"
    );
    for mode in [
        Mode::Idle,
        Mode::Changes(8),
        Mode::Changes(12),
        Mode::Changes(16),
        Mode::WholeZone,
    ] {
        run(&args, mode, &key, &tsig, &sub, &tp, &sp).await?;
    }
    Ok(())
}

async fn run(
    args: &Args,
    mode: Mode,
    key: &ProviderKey,
    tsig: &TsigKey,
    sub: &TsigKey,
    tsig_path: &std::path::Path,
    sub_path: &std::path::Path,
) -> Result<()> {
    let ip = |x: u8| -> Result<IpAddr> { Ok(format!("{}.{x}", args.net).parse()?) };
    let (dp_ip, root_ip, res_ip) = (ip(91)?, ip(92)?, ip(93)?);
    let port = free_port(&[dp_ip, root_ip, res_ip])?;
    let dir = args
        .work
        .join(format!("run-{}", mode.name().replace([' ', ',', '='], "")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let zone_copy = dir.join("carrier.zone");
    std::fs::copy(&args.zone_file, &zone_copy)?;
    let bits = match mode {
        Mode::Changes(b) => b,
        _ => 12,
    };
    let carrier_cfg = dir.join("carrier.toml");
    std::fs::write(
        &carrier_cfg,
        format!(
            "listen = [\"{dp_ip}:{port}\"]\ntrust = {:?}\n[[zone]]\norigin = \"{ZONE}\"\nfile = {:?}\n[[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n[updates]\nper_second = 100000\nburst = 100000\n[[subscriber]]\naddress = \"{res_ip}:{port}\"\ntsig = {:?}\n[changes]\ndigest_bits = {bits}\n",
            args.trust.display().to_string(),
            zone_copy.display().to_string(),
            tsig_path.display().to_string(),
            sub_path.display().to_string()
        ),
    )?;
    let root_cfg = dir.join("root.toml");
    std::fs::copy(&args.root_file, dir.join("root.zone"))?;
    std::fs::write(
        &root_cfg,
        format!(
            "listen = [\"{root_ip}:{port}\"]\ntrust = {:?}\n[[zone]]\norigin = \"mimi.arpa.\"\nfile = {:?}\n",
            args.trust.display().to_string(),
            dir.join("root.zone").display().to_string()
        ),
    )?;
    let carrier = DpServer::start(&carrier_cfg).await?;
    let root = DpServer::start(&root_cfg).await?;

    let mut config = ResolverConfig::new(vec![root_ip], port, args.trust.clone());
    config.cache.entries = args.cached * 4;
    let resolver = Resolver::new(config, TrustStore::load(&args.trust)?);
    resolver
        .invalidation
        .subscribe(ZONE.parse()?, SocketAddr::new(dp_ip, port), sub.clone());
    resolver
        .invalidation
        .set_whole_zone(matches!(mode, Mode::WholeZone));
    let resolver = Arc::new(resolver);
    let (mut listener, _) =
        invalidate::listen(resolver.clone(), &[SocketAddr::new(res_ip, port)]).await?;
    invalidate::start(&resolver).await;

    // The cached names: every (count / cached)-th number.
    let step = (args.count / args.cached.max(1)).max(1);
    let cached: Arc<Vec<usize>> = Arc::new((0..args.cached).map(|i| i * step).collect());
    let sii: Arc<Vec<Sii>> = Arc::new(
        cached
            .iter()
            .map(|&i| Sii::parse(&number(i), None))
            .collect::<Result<_, _>>()?,
    );
    {
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (r, sii) = (resolver.clone(), sii.clone());
            tasks.push(tokio::spawn(async move {
                for s in sii.iter().skip(w).step_by(16) {
                    let _ = r.lookup(s, None).await;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
    }

    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let lookups = Arc::new(AtomicU64::new(0));
    let misses = Arc::new(AtomicU64::new(0));
    // Misses of names that never changed: what the scheme costs beyond the changes.
    let extra = Arc::new(AtomicU64::new(0));
    let changed: Arc<std::sync::Mutex<std::collections::HashSet<usize>>> = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (r, sii, lookups, misses, extra, changed) = (
            resolver.clone(),
            sii.clone(),
            lookups.clone(),
            misses.clone(),
            extra.clone(),
            changed.clone(),
        );
        readers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let j = rand::thread_rng().gen_range(0..sii.len());
                if let Ok(res) = r.lookup(&sii[j], None).await {
                    lookups.fetch_add(1, Relaxed);
                    if !res.from_cache {
                        misses.fetch_add(1, Relaxed);
                        let was_changed = changed.lock().map(|c| c.contains(&j)).unwrap_or(true);
                        if !was_changed {
                            extra.fetch_add(1, Relaxed);
                        }
                    }
                }
                // A cache hit never waits: let the updates and NOTIFYs run.
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut updates = 0u64;
    if !matches!(mode, Mode::Idle) {
        let zone: Name = ZONE.parse()?;
        let apex: Name = DEFAULT_APEX.parse()?;
        let mut publisher =
            Publisher::new(SocketAddr::new(dp_ip, port), zone.clone(), tsig.clone());
        let period = Duration::from_secs_f64(1.0 / args.rate);
        let mut due = Instant::now();
        let mut watchers = Vec::new();
        while Instant::now() < deadline {
            tokio::time::sleep_until(due.into()).await;
            due += period;
            let j = rand::thread_rng().gen_range(0..cached.len());
            if let Ok(mut c) = changed.lock() {
                c.insert(j);
            }
            let uri = format!("mimi://chat.example/u/changed{updates}");
            let signed = sign_mapping(
                &Mapping::new(number(cached[j]), uri.clone()),
                &zone,
                &apex,
                key,
                &SignOptions::now(),
            )?;
            publisher.send(std::slice::from_ref(&signed)).await?;
            let acked = Instant::now();
            updates += 1;
            let (r, s) = (resolver.clone(), sii[j].clone());
            watchers.push(tokio::spawn(async move {
                loop {
                    if let Ok(res) = r.lookup(&s, None).await {
                        if let Outcome::Found(m) = &res.outcome {
                            if m.iter().any(|m| m.ssi.uri == uri) {
                                return Some(acked.elapsed());
                            }
                        }
                    }
                    if acked.elapsed() > Duration::from_secs(30) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        for w in watchers {
            if let Some(l) = w.await? {
                latencies.push(l);
            }
        }
    }
    for r in readers {
        r.await?;
    }
    latencies.sort();
    let (n, m) = (lookups.load(Relaxed), misses.load(Relaxed));
    let extra = extra.load(Relaxed);
    println!(
        "{:<24} {:>9.1} {:>9.1} {:>9} {:>13.1} {:>10.2}% {:>10.0}",
        mode.name(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        updates,
        extra as f64 / args.seconds,
        100.0 * (n - m.min(n)) as f64 / n.max(1) as f64,
        n as f64 / args.seconds
    );
    let _ = listener.shutdown_gracefully().await;
    carrier.shutdown().await;
    root.shutdown().await;
    Ok(())
}
