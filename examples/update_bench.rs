//! Load generator for `tools/bench/update.sh`: signed SSI mappings sent as TSIG-signed DNS
//! UPDATEs to a primary (`mimi dp serve`, or Knot with dynamic updates), measuring what
//! the sender sees.
//!
//! The zone holds the numbers `+1 555 000 0000 + 2i` for i < `--count` (as the bench
//! builds it); every record sent replaces the mapping of one of them, each owner at most
//! once per run (from `--offset` on), so runs against two servers send the same changes.
//!
//! ```sh
//! # UPDATEs of 100 records on 8 connections for 10 s: records/s, UPDATEs/s, ack latency
//! update_bench storm --server 127.0.0.81:5300 --zone 5.5.5.1.e164.mimi.arpa. \
//!     --tsig chat.tsig --key chat.key --count 1000000 --batch 100 --conns 8 --seconds 10
//! # one UPDATE at a time: latency until the new record is served, and (with a resolver
//! # config) until a private lookup returns it
//! update_bench probe ... --probes 50 --private resolver.toml
//! ```
//! Output: `key=value` lines for the script.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{RData, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::publish::{sign_mapping, Mapping, Publisher, SignOptions, SignedMapping};
use mimi_discovery::record::{ProviderKey, TYPE_SSI};
use mimi_discovery::resolver::{Outcome, Resolver};
use mimi_discovery::sii::{Sii, DEFAULT_APEX};
use mimi_discovery::tsig::TsigKey;
use rayon::prelude::*;
use tokio::net::UdpSocket;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    #[arg(long, global = true, default_value = "127.0.0.1:53")]
    server: SocketAddr,
    #[arg(long, global = true, default_value = "5.5.5.1.e164.mimi.arpa.")]
    zone: String,
    #[arg(long, global = true, default_value = "chat.tsig")]
    tsig: String,
    #[arg(long, global = true, default_value = "chat.key")]
    key: String,
    /// Numbers in the zone.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    count: usize,
    /// First number index this run changes.
    #[arg(long, global = true, default_value_t = 0)]
    offset: usize,
    /// A word in the new URIs, so two runs publish different mappings.
    #[arg(long, global = true, default_value = "u")]
    tag: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Sustained UPDATEs from several connections.
    Storm {
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        conns: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Records per second in all (0: as fast as the server acknowledges).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Records signed before the clock starts (the most one run can send).
        #[arg(long, default_value_t = 200_000)]
        records: usize,
    },
    /// One UPDATE of one record at a time; after each, wait until it is served.
    Probe {
        #[arg(long, default_value_t = 50)]
        probes: usize,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// A resolver config: also wait until a private lookup returns the new mapping.
        #[arg(long)]
        private: Option<String>,
    },
}

fn number(i: usize) -> String {
    format!("+1555{:07}", 2 * i)
}

struct Setup {
    zone: Name,
    apex: Name,
    key: ProviderKey,
    tsig: TsigKey,
}

impl Setup {
    fn sign(&self, index: usize, tag: &str) -> Result<SignedMapping> {
        let uri = format!("mimi://{}/u/{tag}{index}", provider_host(&self.key));
        let m = Mapping::new(number(index), uri);
        Ok(sign_mapping(
            &m,
            &self.zone,
            &self.apex,
            &self.key,
            &SignOptions::now(),
        )?)
    }
}

fn provider_host(key: &ProviderKey) -> String {
    key.provider.to_string().trim_end_matches('.').to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let setup = Arc::new(Setup {
        zone: args.zone.parse().context("--zone")?,
        apex: DEFAULT_APEX.parse().context("apex")?,
        key: ProviderKey::load(&args.key).context("--key")?,
        tsig: TsigKey::load(&args.tsig).context("--tsig")?,
    });
    match args.mode {
        Mode::Storm {
            batch,
            conns,
            seconds,
            rate,
            records,
        } => storm(&args, setup, batch, conns, seconds, rate, records).await,
        Mode::Probe {
            probes,
            interval_ms,
            ref private,
        } => probe(&args, setup, probes, interval_ms, private.as_deref()).await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn storm(
    args: &Args,
    setup: Arc<Setup>,
    batch: usize,
    conns: usize,
    seconds: f64,
    rate: f64,
    records: usize,
) -> Result<()> {
    let want = if rate > 0.0 {
        ((rate * seconds) as usize + batch).min(records)
    } else {
        records
    };
    let want = want.min(args.count.saturating_sub(args.offset));
    let signed: Vec<SignedMapping> = (args.offset..args.offset + want)
        .into_par_iter()
        .map(|i| setup.sign(i, &args.tag))
        .collect::<Result<_>>()?;
    let signed = Arc::new(signed);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..conns.max(1) {
        let (signed, next, setup) = (signed.clone(), next.clone(), setup.clone());
        let server = args.server;
        tasks.push(tokio::spawn(async move {
            let mut publisher = Publisher::new(server, setup.zone.clone(), setup.tsig.clone())
                .with_timeout(Duration::from_secs(30));
            let mut latencies = Vec::new();
            let mut refused = 0usize;
            let mut sent = 0usize;
            // With a rate, each connection sends a batch every `period`, staggered.
            let period =
                (rate > 0.0).then(|| Duration::from_secs_f64(batch as f64 * conns as f64 / rate));
            let mut due =
                start + period.map_or(Duration::ZERO, |p| p.mul_f64(c as f64 / conns as f64));
            loop {
                if let Some(p) = period {
                    tokio::time::sleep_until(due.into()).await;
                    due += p;
                }
                if Instant::now() >= deadline {
                    break;
                }
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= signed.len() {
                    break;
                }
                let to = (from + batch).min(signed.len());
                let t = Instant::now();
                match publisher.send(&signed[from..to]).await {
                    Ok(_) => {
                        latencies.push(t.elapsed());
                        sent += to - from;
                    }
                    Err(e) => {
                        if refused == 0 {
                            eprintln!("update_bench: {e}");
                        }
                        refused += 1;
                    }
                }
            }
            (latencies, sent, refused)
        }));
    }
    let mut latencies = Vec::new();
    let (mut sent, mut refused) = (0, 0);
    for t in tasks {
        let (l, s, r) = t.await?;
        latencies.extend(l);
        sent += s;
        refused += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    if sent == 0 {
        bail!("no UPDATE was accepted ({refused} failed)");
    }
    println!("records={sent}");
    println!("updates={}", latencies.len());
    println!("failed={refused}");
    println!("seconds={elapsed:.2}");
    println!("records_per_sec={:.0}", sent as f64 / elapsed);
    println!("updates_per_sec={:.1}", latencies.len() as f64 / elapsed);
    println!("ack_p50_ms={:.2}", percentile(&latencies, 0.5));
    println!("ack_p99_ms={:.2}", percentile(&latencies, 0.99));
    Ok(())
}

async fn probe(
    args: &Args,
    setup: Arc<Setup>,
    probes: usize,
    interval_ms: u64,
    private: Option<&str>,
) -> Result<()> {
    let resolver = match private {
        Some(path) => Some(
            Resolver::from_config_file(std::path::Path::new(path))
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?,
        ),
        None => None,
    };
    let mut publisher = Publisher::new(args.server, setup.zone.clone(), setup.tsig.clone())
        .with_timeout(Duration::from_secs(30));
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let (mut served, mut private_seen, mut lookups) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..probes.min(args.count.saturating_sub(args.offset)) {
        let record = setup.sign(args.offset + k, &args.tag)?;
        let wire = record.ssi.to_wire();
        let t0 = Instant::now();
        publisher.send(std::slice::from_ref(&record)).await?;
        let limit = t0 + Duration::from_secs(10);
        loop {
            if serves(&udp, args.server, &record.owner, &wire).await? {
                served.push(t0.elapsed());
                break;
            }
            if Instant::now() > limit {
                bail!("{} not served 10 s after its UPDATE", record.owner);
            }
        }
        if let Some(r) = &resolver {
            let sii = Sii::parse(&number(args.offset + k), None)?;
            let limit = t0 + Duration::from_secs(60);
            loop {
                let t = Instant::now();
                let result = r.lookup_private(&sii, None).await?;
                lookups.push(t.elapsed());
                let found = matches!(&result.outcome, Outcome::Found(m)
                    if m.iter().any(|m| m.ssi.uri == record.ssi.uri));
                if found {
                    private_seen.push(t0.elapsed());
                    break;
                }
                if Instant::now() > limit {
                    bail!(
                        "a private lookup of {} did not return the new mapping within 60 s",
                        record.owner
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
    served.sort();
    println!("probes={}", served.len());
    println!("served_p50_ms={:.2}", percentile(&served, 0.5));
    println!("served_p99_ms={:.2}", percentile(&served, 0.99));
    if resolver.is_some() {
        private_seen.sort();
        lookups.sort();
        println!("private_p50_ms={:.1}", percentile(&private_seen, 0.5));
        println!("private_p99_ms={:.1}", percentile(&private_seen, 0.99));
        println!("private_lookup_p50_ms={:.1}", percentile(&lookups, 0.5));
        println!("private_lookups={}", lookups.len());
    }
    Ok(())
}

/// Whether the server's answer at `owner` holds the SSI record `wire`.
async fn serves(udp: &UdpSocket, server: SocketAddr, owner: &Name, wire: &[u8]) -> Result<bool> {
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(owner.to_hickory(), RecordType::from(TYPE_SSI)));
    udp.send_to(&m.to_vec()?, server).await?;
    let mut buf = vec![0u8; 65535];
    let n = match tokio::time::timeout(Duration::from_secs(1), udp.recv(&mut buf)).await {
        Ok(n) => n?,
        Err(_) => return Ok(false),
    };
    let reply = Message::from_vec(&buf[..n])?;
    if reply.metadata.id != id {
        return Ok(false);
    }
    Ok(reply.answers.iter().any(|r| match &r.data {
        RData::Unknown { rdata, .. } => rdata.anything.as_slice() == wire,
        _ => false,
    }))
}
