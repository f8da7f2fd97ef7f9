//! Reproduction: private lookups that read a replica while a delta of several messages is
//! being applied, run by `tools/bench/replica-race.sh` (which says what goes wrong).
//!
//! Two resolvers of one AP replicate a small zone: `nocache` with a private cache of one
//! entry (every lookup reads the replica), `cached` with the default cache. Both look up
//! every identifier of the zone over and over (batches of 64) while rounds of changes
//! (additions, whose cuckoo evictions move other identifiers' slots between buckets, and
//! replacements) are published and each replica is brought up to date with one delta per
//! round. Any present identifier reported absent, or any answer that is not the zone's
//! current one after the last delta, is printed.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;
use mimi_discovery::publish::Publisher;
use mimi_discovery::record::{ProviderKey, TrustStore};
use mimi_discovery::resolver::replica::{ReplicaError, ReplicaSettings};
use mimi_discovery::resolver::{Resolver, ResolverConfig};
use mimi_discovery::sii::Sii;
use mimi_discovery::tsig::TsigKey;
use rand::seq::SliceRandom;
use rand::Rng;
use support::*;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    tree: TreeArgs,
    #[arg(long)]
    ap_tsig: PathBuf,
    #[arg(long)]
    work: PathBuf,
    /// Rounds of changes; the additions should leave the table room (a table that fills up
    /// makes the DP start a new epoch, which ends the rounds early).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Additions and replacements per round.
    #[arg(long, default_value_t = 60)]
    changes: usize,
}

fn make(args: &Args, dir: &str, cache_entries: usize) -> Result<Resolver> {
    let mut config = ResolverConfig::new(
        vec![args.tree.root],
        args.tree.port,
        args.tree.trust.clone(),
    );
    config.upstream.tsig = Some(TsigKey::load(&args.ap_tsig)?);
    config.limits.lookup_deadline = Duration::from_secs(600);
    config.limits.timeout = Duration::from_secs(5);
    config.cache.entries = cache_entries;
    config.replica = Some(ReplicaSettings {
        dir: args.work.join(dir),
        max_bytes: 1 << 30,
        zones: vec![block_origin(&args.tree.area)],
        min_slots: None,
        poll: Duration::from_secs(86_400),
    });
    let trust = TrustStore::load(&args.tree.trust)?;
    Ok(Resolver::new(config, trust))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _dp = ProcCpu::new(args.tree.dp_pid)?;
    let zone = block_origin(&args.tree.area);
    let nocache = Arc::new(make(&args, "nocache", 1)?);
    let cached = Arc::new(make(&args, "cached", 100_000)?);
    nocache.replicate(&zone).await?;
    cached.replicate(&zone).await?;
    // Current URI of every identifier the readers look up (present ones only).
    let truth: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(
        (0..args.tree.mappings)
            .map(|j| {
                (
                    number(&args.tree.area, 2 * j),
                    format!("mimi://chat.example/u/user{j}"),
                )
            })
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let absent = Arc::new(AtomicU64::new(0));
    let lookups = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut readers = Vec::new();
    for (name, r) in [("nocache", nocache.clone()), ("cached", cached.clone())] {
        let (stop, absent, lookups, truth) =
            (stop.clone(), absent.clone(), lookups.clone(), truth.clone());
        let mut nums: Vec<String> = truth.lock().unwrap().keys().cloned().collect();
        readers.push(tokio::spawn(async move {
            while !stop.load(Relaxed) {
                nums.shuffle(&mut rand::thread_rng());
                for chunk in nums.chunks(64) {
                    if stop.load(Relaxed) {
                        break;
                    }
                    let siis: Vec<Sii> = chunk.iter().map(|s| sii(s)).collect();
                    let results = r.lookup_private_batch(&siis, None).await;
                    lookups.fetch_add(chunk.len() as u64, Relaxed);
                    for (num, res) in chunk.iter().zip(results) {
                        match res {
                            Ok(res) if uris(&res).is_empty() => {
                                absent.fetch_add(1, Relaxed);
                                eprintln!(
                                    "{:8.3} s {name}: present {num} answered absent (from cache: {})",
                                    start.elapsed().as_secs_f64(),
                                    res.from_cache
                                );
                            }
                            Ok(_) => {}
                            Err(e) => eprintln!("{name}: {num}: {e}"),
                        }
                    }
                }
            }
        }));
    }
    let server = SocketAddr::new(args.tree.dp, args.tree.port);
    let key = ProviderKey::load(&args.tree.key)?;
    let mut publisher =
        Publisher::new(server, zone.clone(), TsigKey::load(&args.tree.update_tsig)?)
            .with_timeout(Duration::from_secs(60));
    let mut rng = rand::thread_rng();
    let mut next_add = 0u64;
    let mut epoch_changed = false;
    let mut rounds_done = 0;
    for round in 0..args.rounds {
        for i in 0..args.changes {
            // An addition (a free number, taken in order) and a replacement of a present one.
            let add = number(&args.tree.area, 2 * next_add + 1);
            next_add += 1;
            let rec = signed_change(&key, &zone, &add, Change::Add, &format!("a{round}-{i}"))?;
            publisher.send(&[rec]).await.context("publish")?;
            let j = rng.gen_range(0..args.tree.mappings);
            let num = number(&args.tree.area, 2 * j);
            let rec = signed_change(&key, &zone, &num, Change::Replace, &format!("r{round}-{i}"))?;
            let uri = rec.ssi.uri.clone();
            publisher.send(&[rec]).await.context("publish")?;
            truth.lock().unwrap().insert(num, uri);
        }
        let serial = soa_serial(server, &zone).await?;
        // The readers keep the DP busy: no waiting for it to go idle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = start.elapsed().as_secs_f64();
        let b0 = nocache.replicas.stats.buckets_received.load(Relaxed);
        let refreshed = match nocache.refresh_replica(&zone, Some(serial)).await {
            Ok(()) => cached.refresh_replica(&zone, Some(serial)).await,
            Err(e) => Err(e),
        };
        match refreshed {
            Ok(()) => {}
            // The additions filled the table: the DP built a new epoch, and the replicas
            // must download it whole. The rounds so far were checked; the final check reads
            // the new epoch's replicas.
            Err(e @ ReplicaError::EpochChanged { .. }) => {
                eprintln!("round {round}: {e}; stopping the rounds");
                epoch_changed = true;
                break;
            }
            Err(e) => return Err(e).context(format!("round {round}: refreshing the replicas")),
        }
        rounds_done += 1;
        eprintln!(
            "{t:8.3} s round {round}: deltas of {} buckets applied by {:.3} s",
            nocache.replicas.stats.buckets_received.load(Relaxed) - b0,
            start.elapsed().as_secs_f64()
        );
    }
    stop.store(true, Relaxed);
    for r in readers {
        // A reader may be in the middle of a batch by PIR (after an epoch change, until
        // the replica is downloaded again): it is not waited for.
        r.abort();
        if let Err(e) = r.await {
            if !e.is_cancelled() {
                return Err(e.into());
            }
        }
    }
    if epoch_changed {
        nocache.replicate(&zone).await?;
        cached.replicate(&zone).await?;
    }
    // After the last delta, every answer must be the zone's current one.
    let truth = truth.lock().unwrap().clone();
    let nums: Vec<String> = truth.keys().cloned().collect();
    let mut stale = 0;
    for (name, r) in [("nocache", &nocache), ("cached", &cached)] {
        for chunk in nums.chunks(64) {
            let siis: Vec<Sii> = chunk.iter().map(|s| sii(s)).collect();
            for (num, res) in chunk.iter().zip(r.lookup_private_batch(&siis, None).await) {
                let got = res.as_ref().map(uris).unwrap_or_default();
                if got != [truth[num].clone()] {
                    stale += 1;
                    eprintln!("{name}: after the last delta {num} gives {got:?}, the zone holds {:?} (from cache: {:?})", truth[num], res.as_ref().map(|r| r.from_cache));
                }
            }
        }
    }
    println!(
        "{} lookups during {} rounds of changes and deltas: {} present identifiers answered absent; {} wrong answers after the last delta",
        lookups.load(Relaxed),
        rounds_done,
        absent.load(Relaxed),
        stale
    );
    if absent.load(Relaxed) > 0 || stale > 0 {
        anyhow::bail!("lookups from a replica gave wrong answers while or after deltas applied");
    }
    Ok(())
}
