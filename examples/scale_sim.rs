//! Loopback simulation for the cost model (docs/scale.md, "Simulation"), run by
//! `tools/scale/simulate.sh`, which starts the DPs (`mimi dp serve`, child processes) and
//! compares the figures printed here with the model's inputs (tools/scale/measured.json).
//!
//! A scaled-down population against one carrier zone of M mappings: APs, each one resolver
//! (the library, in this process) with its own `[[client]]` TSIG identity; the first
//! `--replica-aps` hold an encrypted replica of the zone (scenarios c and d of the model),
//! the others look up by PIR. Users belong to APs (a share `--replica-share` to the
//! replicating ones), each with a contact list of `--contacts` identifiers drawn from the
//! zone by popularity (Zipf, so users of one AP share contacts and its cache is hit), a
//! share `--absent` of them numbers nobody registered.
//!
//! Day 0: the replicating APs download the zone, every user syncs the whole list
//! (`lookup_private_batch`). Each later day: `--change-rate` x M mappings change (replace,
//! withdraw, add in turn, each a DNS UPDATE), every replicating AP brings its replica up to
//! date once (`refresh_replica`: the deltas), then each user looks up `--new` new contacts,
//! and the users whose turn it is (one in `--full-sync-days`) sync their whole list again
//! (scenario d). Every answer is checked against what the zone holds.
//!
//! Each kind of work is its own phase, and the DP's CPU (utime + stime of its process) is
//! read around each, so the per-operation figures are: DP CPU per OPRF-evaluated identifier
//! (replica lookups cost the DP nothing else), per PIR query, per replica download and per
//! delta, per changed mapping; bytes per mapping of a download and per changed mapping of
//! a delta; AP cache hits. Prints progress on stderr and the figures as JSON on stdout.

#[path = "support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use mimi_discovery::publish::Publisher;
use mimi_discovery::record::ProviderKey;
use mimi_discovery::resolver::Resolver;
use mimi_discovery::sii::Sii;
use mimi_discovery::tsig::TsigKey;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::json;
use support::*;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    tree: TreeArgs,
    /// The APs' [[client]] TSIG keys, comma-separated: one AP each.
    #[arg(long, value_delimiter = ',')]
    ap_tsig: Vec<PathBuf>,
    /// The first N APs hold replicas; the others use PIR.
    #[arg(long, default_value_t = 2)]
    replica_aps: usize,
    #[arg(long)]
    log_slots: u32,
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Share of the users at the replicating APs.
    #[arg(long, default_value_t = 0.9)]
    replica_share: f64,
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Share of each contact list that is not in the zone.
    #[arg(long, default_value_t = 0.1)]
    absent: f64,
    /// Zipf exponent of contact popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Days simulated: day 0 (downloads, full syncs) and the days of changes after it.
    #[arg(long, default_value_t = 2)]
    days: usize,
    /// Share of the mappings changed a day.
    #[arg(long, default_value_t = 0.01)]
    change_rate: f64,
    /// New contacts per user a day.
    #[arg(long, default_value_t = 2)]
    new: usize,
    /// A user syncs the whole list again every N days.
    #[arg(long, default_value_t = 30)]
    full_sync_days: usize,
    /// `ZoneReplica::lookup` calls on random OPRF outputs (the AP's work after the OPRF).
    #[arg(long, default_value_t = 100_000)]
    local: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Contact popularity: ranks drawn by Zipf over the zone's present identifiers, mapped to
/// identifiers through a random permutation.
struct Popularity {
    cumulative: Vec<f64>,
    order: Vec<u32>,
}

impl Popularity {
    fn new(n: u64, s: f64, rng: &mut StdRng) -> Popularity {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(s);
                total
            })
            .collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(rng);
        Popularity { cumulative, order }
    }

    /// The index j of a present identifier (number 2j).
    fn draw(&self, rng: &mut StdRng) -> u64 {
        let u = rng.gen::<f64>() * self.cumulative.last().copied().unwrap_or(0.0);
        let r = self.cumulative.partition_point(|c| *c < u);
        u64::from(self.order[r.min(self.order.len() - 1)])
    }
}

/// What the zone holds now, to check every answer: the URI of each identifier.
struct Truth {
    mappings: u64,
    changed: HashMap<String, Option<String>>,
}

impl Truth {
    fn expected(&self, num: &str) -> Option<String> {
        if let Some(c) = self.changed.get(num) {
            return c.clone();
        }
        let k: u64 = num[num.len() - 7..].parse().expect("number");
        (k.is_multiple_of(2) && k / 2 < self.mappings)
            .then(|| format!("mimi://chat.example/u/user{}", k / 2))
    }
}

struct Ap {
    resolver: Resolver,
    replica: bool,
}

/// Totals of one kind of work over the whole simulation.
#[derive(Default, Clone, Copy)]
struct Acc {
    cost: Cost,
    /// Identifiers asked for, cache hits among them, identifiers the DP evaluated, OPRF
    /// requests.
    asked: u64,
    hits: u64,
    evaluated: u64,
    requests: u64,
}

impl Acc {
    fn add_cost(&mut self, c: Cost) {
        self.cost.wall += c.wall;
        self.cost.dp_cpu += c.dp_cpu;
        self.cost.client_cpu += c.client_cpu;
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "cost": self.cost.json(), "asked": self.asked, "cache_hits": self.hits,
            "evaluated": self.evaluated, "oprf_requests": self.requests,
            "mean_batch": if self.requests > 0 { self.evaluated as f64 / self.requests as f64 } else { 0.0 },
        })
    }
}

struct Sim {
    args: Args,
    dp: ProcCpu,
    aps: Vec<Ap>,
    /// Per user: AP and contact list.
    users: Vec<(usize, Vec<String>)>,
    truth: Truth,
    pop: Popularity,
    rng: StdRng,
    errors: Vec<String>,
}

impl Sim {
    fn note(&mut self, e: String) {
        if self.errors.len() < 20 {
            eprintln!("!! {e}");
        }
        self.errors.push(e);
    }

    /// A contact not in `have`: present by popularity, or (share `absent`) a free number.
    fn draw_contact(&mut self, have: &HashSet<String>) -> String {
        loop {
            let num = if self.rng.gen::<f64>() < self.args.absent {
                let j = self.rng.gen_range(0..self.args.tree.mappings);
                number(&self.args.tree.area, 2 * j + 1)
            } else {
                let j = self.pop.draw(&mut self.rng);
                number(&self.args.tree.area, 2 * j)
            };
            if !have.contains(&num) {
                return num;
            }
        }
    }

    /// Looks up `list` for a user of AP `ap` in one batch; counts into `acc`.
    async fn sync(&mut self, ap: usize, list: &[String], acc: &mut Acc) {
        let r = &self.aps[ap].resolver;
        let siis: Vec<Sii> = list.iter().map(|s| sii(s)).collect();
        let hits0 = r.stats.cache_hits.load(Relaxed);
        let rep0 = r.replicas.stats.lookups.load(Relaxed);
        let results = r.lookup_private_batch(&siis, None).await;
        let hits = r.stats.cache_hits.load(Relaxed) - hits0;
        let evaluated = if self.aps[ap].replica {
            r.replicas.stats.lookups.load(Relaxed) - rep0
        } else {
            list.len() as u64 - hits
        };
        acc.asked += list.len() as u64;
        acc.hits += hits;
        acc.evaluated += evaluated;
        acc.requests += evaluated.div_ceil(64);
        for (num, res) in list.iter().zip(results) {
            let want: Vec<String> = self.truth.expected(num).into_iter().collect();
            match res {
                Ok(r) if uris(&r) == want => {}
                Ok(r) => {
                    let got = uris(&r);
                    self.note(format!(
                        "AP {ap} {num}: {got:?}, expected {want:?} (from cache: {})",
                        r.from_cache
                    ))
                }
                Err(e) => self.note(format!("AP {ap} {num}: {e}")),
            }
        }
    }

    /// One pass over the users of replicating (or PIR) APs: `lists(user)` gives what each
    /// looks up. Returns the phase's totals.
    async fn phase(&mut self, replica: bool, lists: &[Vec<String>]) -> Result<Acc> {
        let mut acc = Acc::default();
        let m = Meter::start(&self.dp)?;
        for (u, list) in lists.iter().enumerate() {
            let ap = self.users[u].0;
            if self.aps[ap].replica != replica || list.is_empty() {
                continue;
            }
            self.sync(ap, list, &mut acc).await;
        }
        acc.add_cost(m.stop()?);
        Ok(acc)
    }
}

fn merge(into: &mut Acc, a: &Acc) {
    into.add_cost(a.cost);
    into.asked += a.asked;
    into.hits += a.hits;
    into.evaluated += a.evaluated;
    into.requests += a.requests;
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.ap_tsig.len() <= args.replica_aps || args.replica_aps == 0 {
        bail!("--ap-tsig needs more keys than --replica-aps (at least one AP of each kind)");
    }
    let dp = ProcCpu::new(args.tree.dp_pid)?;
    let tree = TreeAt {
        root: args.tree.root,
        port: args.tree.port,
        trust: args.tree.trust.clone(),
    };
    let zone = block_origin(&args.tree.area);
    let mut aps = Vec::new();
    for (i, path) in args.ap_tsig.iter().enumerate() {
        let key = TsigKey::load(path).with_context(|| path.display().to_string())?;
        let replica = i < args.replica_aps;
        let dir = args.work.join(format!("ap{i}"));
        let r = if replica {
            resolver(&tree, Some(key), Some((&dir, vec![zone.clone()])))?
        } else {
            resolver(&tree, Some(key), None)?
        };
        aps.push(Ap {
            resolver: r,
            replica,
        });
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let pop = Popularity::new(args.tree.mappings, args.zipf, &mut rng);
    let n_pir = args.ap_tsig.len() - args.replica_aps;
    let host = host_line();
    eprintln!("host: {host}");
    let mut sim = Sim {
        truth: Truth {
            mappings: args.tree.mappings,
            changed: HashMap::new(),
        },
        dp,
        aps,
        users: Vec::new(),
        pop,
        rng,
        errors: Vec::new(),
        args,
    };
    let a = &sim.args;
    let (users, contacts, replica_aps, replica_share) =
        (a.users, a.contacts, a.replica_aps, a.replica_share);
    for u in 0..users {
        // Users spread evenly over the APs of their kind.
        let at_replica = (u as f64) < replica_share * users as f64;
        let ap = if at_replica {
            u % replica_aps
        } else {
            replica_aps + u % n_pir
        };
        let mut have = HashSet::new();
        let mut list = Vec::new();
        while list.len() < contacts {
            let c = sim.draw_contact(&have);
            have.insert(c.clone());
            list.push(c);
        }
        sim.users.push((ap, list));
    }
    let distinct: HashSet<&String> = sim.users.iter().flat_map(|(_, l)| l).collect();
    eprintln!(
        "{} users ({} at {} replicating APs, {} at {} PIR APs), {} contacts each ({} distinct in all); zone {zone}: {} mappings, 2^{} slots",
        users,
        sim.users.iter().filter(|(ap, _)| *ap < replica_aps).count(),
        replica_aps,
        sim.users.iter().filter(|(ap, _)| *ap >= replica_aps).count(),
        n_pir,
        contacts,
        distinct.len(),
        sim.args.tree.mappings,
        sim.args.log_slots
    );

    // Day 0: downloads.
    let mut download = (Cost::default(), 0u64, 0usize);
    for i in 0..replica_aps {
        let r = &sim.aps[i].resolver;
        let b0 = r.replicas.stats.bytes_received.load(Relaxed);
        let m = Meter::start(&sim.dp)?;
        r.replicate(&zone).await.context("replicate")?;
        let c = m.stop()?;
        download.0.wall += c.wall;
        download.0.dp_cpu += c.dp_cpu;
        download.0.client_cpu += c.client_cpu;
        download.1 += r.replicas.stats.bytes_received.load(Relaxed) - b0;
        download.2 += 1;
    }
    eprintln!(
        "day 0: {} downloads, {} each, DP CPU {} each",
        download.2,
        bytes(download.1 as f64 / download.2 as f64),
        secs(download.0.dp_cpu / download.2 as f64)
    );

    let mut full_rep = Acc::default();
    let mut full_pir = Acc::default();
    let mut new_rep = Acc::default();
    let mut new_pir = Acc::default();
    let mut updates = (Cost::default(), 0u64);
    let mut deltas = (Cost::default(), 0u64, 0u64, 0u64, 0u64); // cost, bytes, buckets, changes x APs, refreshes
    let mut days = Vec::new();
    let key = ProviderKey::load(&sim.args.tree.key).context("--key")?;
    let server = SocketAddr::new(sim.args.tree.dp, sim.args.tree.port);
    let mut publisher = Publisher::new(
        server,
        zone.clone(),
        TsigKey::load(&sim.args.tree.update_tsig).context("--update-tsig")?,
    )
    .with_timeout(Duration::from_secs(60));
    let mut added = HashSet::new();
    for day in 0..sim.args.days {
        let mut changes = 0u64;
        let mut delta_day = (0u64, 0u64);
        if day > 0 {
            // The day's changes, each its own UPDATE.
            let n = (sim.args.change_rate * sim.args.tree.mappings as f64).round() as u64;
            let m = Meter::start(&sim.dp)?;
            for i in 0..n {
                let kind = Change::ALL[i as usize % 3];
                let num = loop {
                    let j = sim.rng.gen_range(0..sim.args.tree.mappings);
                    let num = match kind {
                        Change::Add => number(&sim.args.tree.area, 2 * j + 1),
                        _ => number(&sim.args.tree.area, 2 * j),
                    };
                    let ok = match kind {
                        Change::Add => !added.contains(&num) && sim.truth.expected(&num).is_none(),
                        _ => sim.truth.expected(&num).is_some(),
                    };
                    if ok {
                        break num;
                    }
                };
                let tag = format!("d{day}{}{i}", kind.name());
                let rec = signed_change(&key, &zone, &num, kind, &tag)?;
                let uri = rec.ssi.uri.clone();
                publisher
                    .send(&[rec])
                    .await
                    .with_context(|| format!("publish {num}"))?;
                if kind == Change::Add {
                    added.insert(num.clone());
                }
                sim.truth.changed.insert(
                    num,
                    match kind {
                        Change::Withdraw => None,
                        _ => Some(uri),
                    },
                );
            }
            // The DP re-encodes PIR plaintexts after each acknowledgement: that is the
            // update's cost too.
            wait_idle(
                &sim.dp,
                Duration::from_millis(500),
                Duration::from_secs(300),
            )
            .await?;
            let c = m.stop()?;
            updates.0.dp_cpu += c.dp_cpu;
            updates.0.wall += c.wall;
            updates.1 += n;
            changes = n;
            let serial = soa_serial(server, &zone).await?;
            for i in 0..replica_aps {
                let r = &sim.aps[i].resolver;
                let s = &r.replicas.stats;
                let (b0, k0, f0) = (
                    s.bytes_received.load(Relaxed),
                    s.buckets_received.load(Relaxed),
                    s.full_runs.load(Relaxed),
                );
                let m = Meter::start(&sim.dp)?;
                r.refresh_replica(&zone, Some(serial))
                    .await
                    .context("refresh")?;
                let c = m.stop()?;
                let whole = s.full_runs.load(Relaxed) != f0;
                let b = s.bytes_received.load(Relaxed) - b0;
                let k = s.buckets_received.load(Relaxed) - k0;
                if whole {
                    sim.note(format!("day {day}: AP {i}'s refresh was a whole download"));
                }
                deltas.0.dp_cpu += c.dp_cpu;
                deltas.0.wall += c.wall;
                deltas.1 += b;
                deltas.2 += k;
                deltas.3 += n;
                deltas.4 += 1;
                delta_day.0 += b;
                delta_day.1 += 1;
            }
            eprintln!(
                "day {day}: {n} changes ({} of DP CPU each); deltas {} per change and AP",
                secs(c.dp_cpu / n.max(1) as f64),
                bytes(delta_day.0 as f64 / (n.max(1) * delta_day.1.max(1)) as f64)
            );
        }
        // What each user looks up today.
        let mut full_lists = Vec::new();
        let mut new_lists = Vec::new();
        for u in 0..sim.users.len() {
            let full = day == 0 || (u + day) % sim.args.full_sync_days == 0;
            let mut new = Vec::new();
            if day > 0 {
                let mut have: HashSet<String> = sim.users[u].1.iter().cloned().collect();
                for _ in 0..sim.args.new {
                    let c = sim.draw_contact(&have);
                    have.insert(c.clone());
                    new.push(c);
                }
                sim.users[u].1.extend(new.iter().cloned());
            }
            full_lists.push(if full {
                sim.users[u].1.clone()
            } else {
                Vec::new()
            });
            new_lists.push(if full { Vec::new() } else { new });
        }
        let fr = sim.phase(true, &full_lists).await?;
        let fp = sim.phase(false, &full_lists).await?;
        let nr = sim.phase(true, &new_lists).await?;
        let np = sim.phase(false, &new_lists).await?;
        eprintln!(
            "day {day}: replicating APs: {} full-sync and {} new lookups, cache hits {} and {}, DP CPU {}; PIR APs: {} + {} lookups, DP CPU {}",
            fr.asked,
            nr.asked,
            fr.hits,
            nr.hits,
            secs(fr.cost.dp_cpu + nr.cost.dp_cpu),
            fp.asked,
            np.asked,
            secs(fp.cost.dp_cpu + np.cost.dp_cpu)
        );
        days.push(json!({
            "day": day, "changes": changes,
            "delta_bytes": delta_day.0, "refreshes": delta_day.1,
            "replica_full_sync": fr.json(), "replica_new": nr.json(),
            "pir_full_sync": fp.json(), "pir_new": np.json(),
        }));
        merge(&mut full_rep, &fr);
        merge(&mut full_pir, &fp);
        merge(&mut new_rep, &nr);
        merge(&mut new_pir, &np);
    }

    // The AP's local work after the OPRF.
    let replica = sim.aps[0]
        .resolver
        .replicas
        .get(&zone)
        .context("AP 0 holds no replica")?;
    let mut local = Vec::with_capacity(sim.args.local);
    let mut y = [0u8; 64];
    for _ in 0..sim.args.local {
        sim.rng.fill_bytes(&mut y);
        let t = Instant::now();
        let _ = replica.lookup(&y);
        local.push(t.elapsed().as_secs_f64());
    }
    let local = sorted(local);

    let mut rep = Acc::default();
    merge(&mut rep, &full_rep);
    merge(&mut rep, &new_rep);
    let mut pir = Acc::default();
    merge(&mut pir, &full_pir);
    merge(&mut pir, &new_pir);
    // Every identifier has one record and the zone publishes one probe: two queries each.
    let pir_queries = 2 * pir.evaluated;
    let out = json!({
        "source": "examples/scale_sim.rs (tools/scale/simulate.sh)",
        "host": host,
        "zone": { "mappings": sim.args.tree.mappings, "log_slots": sim.args.log_slots, "slots": 1u64 << sim.args.log_slots },
        "population": {
            "users": users, "contacts": contacts, "replica_share": replica_share,
            "replica_aps": replica_aps, "pir_aps": n_pir, "absent": sim.args.absent, "zipf": sim.args.zipf,
            "days": sim.args.days, "change_rate": sim.args.change_rate, "new": sim.args.new,
            "full_sync_days": sim.args.full_sync_days,
        },
        "dp_clock_tick_s": sim.dp.tick(),
        "download": {
            "downloads": download.2, "bytes": download.1,
            "bytes_per_mapping": download.1 as f64 / (download.2 as f64 * sim.args.tree.mappings as f64),
            "dp_cpu_s_per_download": download.0.dp_cpu / download.2 as f64,
            "wall_s_per_download": download.0.wall / download.2 as f64,
        },
        "replica_lookups": {
            "full_sync": full_rep.json(), "new": new_rep.json(),
            "dp_cpu_s_per_evaluated": rep.cost.dp_cpu / rep.evaluated.max(1) as f64,
            "dp_cpu_s_per_evaluated_full_sync": full_rep.cost.dp_cpu / full_rep.evaluated.max(1) as f64,
            "dp_cpu_s_per_evaluated_new": new_rep.cost.dp_cpu / new_rep.evaluated.max(1) as f64,
            "client_cpu_s_per_evaluated": rep.cost.client_cpu / rep.evaluated.max(1) as f64,
            "hit_rate": rep.hits as f64 / rep.asked.max(1) as f64,
        },
        "pir_lookups": {
            "full_sync": full_pir.json(), "new": new_pir.json(),
            "queries": pir_queries,
            "dp_cpu_s_per_query": pir.cost.dp_cpu / pir_queries.max(1) as f64,
            "hit_rate": pir.hits as f64 / pir.asked.max(1) as f64,
        },
        "updates": {
            "changes": updates.1, "dp_cpu_s": updates.0.dp_cpu,
            "dp_cpu_s_per_change": updates.0.dp_cpu / updates.1.max(1) as f64,
        },
        "deltas": {
            "changes_times_aps": deltas.3, "refreshes": deltas.4, "bytes": deltas.1, "buckets": deltas.2,
            "bytes_per_change": deltas.1 as f64 / deltas.3.max(1) as f64,
            "buckets_per_change": deltas.2 as f64 / deltas.3.max(1) as f64,
            "dp_cpu_s": deltas.0.dp_cpu,
            "dp_cpu_s_per_change": deltas.0.dp_cpu / deltas.3.max(1) as f64,
        },
        "local_lookup": { "calls": sim.args.local, "p50_s": quantile(&local, 0.5), "p99_s": quantile(&local, 0.99) },
        "days": days,
        "unexpected_answers": sim.errors,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !sim.errors.is_empty() {
        bail!("{} unexpected answers", sim.errors.len());
    }
    Ok(())
}
