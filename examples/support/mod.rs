//! Helpers shared by the loopback benchmarks that drive real DPs (`mimi dp serve`, child
//! processes of the calling script) with the resolver library: `replica_bench.rs`
//! (tools/bench/replica.sh) and `scale_sim.rs` (tools/scale/simulate.sh).
//!
//! CPU is read the honest way for a server in another process: its utime + stime from
//! /proc/PID/stat (all its threads, the exited ones included), in clock ticks.
#![allow(dead_code)] // each example uses its own subset

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{RData, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::publish::{sign_mapping, Mapping, SignOptions, SignedMapping};
use mimi_discovery::record::{ProviderKey, TrustStore};
use mimi_discovery::resolver::replica::ReplicaSettings;
use mimi_discovery::resolver::{LookupResult, Outcome, ResolveError, Resolver, ResolverConfig};
use mimi_discovery::sii::{Sii, DEFAULT_APEX};
use mimi_discovery::tsig::TsigKey;

// The loopback tree every benchmark example runs against: its DPs, and the provider that
// publishes to the carrier DP. (Not a doc comment: clap would take it for each example's
// description.)
#[derive(Args, Debug)]
pub struct TreeArgs {
    /// The port every DP listens on.
    #[arg(long)]
    pub port: u16,
    /// The root DP's address.
    #[arg(long)]
    pub root: IpAddr,
    /// The carrier DP's address, and its process id (its CPU is measured).
    #[arg(long)]
    pub dp: IpAddr,
    #[arg(long)]
    pub dp_pid: u32,
    #[arg(long)]
    pub trust: PathBuf,
    /// The provider's UPDATE key ([[update]]) and signing key.
    #[arg(long)]
    pub update_tsig: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// The carrier zone: numbers +1 AREA ..., MAPPINGS of them (the even ones).
    #[arg(long, default_value = "555")]
    pub area: String,
    #[arg(long)]
    pub mappings: u64,
}

/// CPU time of another process (a DP), from /proc/PID/stat.
#[derive(Clone)]
pub struct ProcCpu {
    pid: u32,
    tick: f64,
}

impl ProcCpu {
    pub fn new(pid: u32) -> Result<ProcCpu> {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks <= 0 {
            bail!("sysconf(_SC_CLK_TCK) failed");
        }
        let cpu = ProcCpu {
            pid,
            tick: 1.0 / ticks as f64,
        };
        cpu.seconds()?;
        Ok(cpu)
    }

    /// Seconds of a clock tick: the resolution of [`ProcCpu::seconds`].
    pub fn tick(&self) -> f64 {
        self.tick
    }

    /// utime + stime of the whole process so far, in seconds.
    pub fn seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path).with_context(|| path.clone())?;
        // Fields 14 and 15, counted after the ")" that ends the command name (which may
        // itself hold spaces).
        let rest = stat
            .rsplit_once(") ")
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow!("{path}: no command name"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<u64> {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("{path}: field {}", i + 3))
        };
        Ok((ticks(11)? + ticks(12)?) as f64 * self.tick)
    }

    /// Resident memory of the process, bytes.
    pub fn rss_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .map_or(0, |kib: u64| kib * 1024)
    }
}

/// CPU time of this process (the resolvers and the bench), seconds.
pub fn self_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// What one phase cost: wall time, the DP's CPU, this process's CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub wall: f64,
    pub dp_cpu: f64,
    pub client_cpu: f64,
}

impl Cost {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "wall_s": self.wall, "dp_cpu_s": self.dp_cpu, "client_cpu_s": self.client_cpu })
    }
}

/// A running measurement of a phase.
pub struct Meter {
    dp: ProcCpu,
    wall: Instant,
    dp_cpu: f64,
    client_cpu: f64,
}

impl Meter {
    pub fn start(dp: &ProcCpu) -> Result<Meter> {
        Ok(Meter {
            dp: dp.clone(),
            dp_cpu: dp.seconds()?,
            client_cpu: self_cpu(),
            wall: Instant::now(),
        })
    }

    pub fn stop(self) -> Result<Cost> {
        let wall = self.wall.elapsed().as_secs_f64();
        Ok(Cost {
            wall,
            dp_cpu: self.dp.seconds()? - self.dp_cpu,
            client_cpu: self_cpu() - self.client_cpu,
        })
    }
}

/// Waits until the process's CPU time stops moving (two readings `quiet` apart agree, at
/// most `limit`): work a phase set off in the DP (an UPDATE's re-encoding of PIR plaintexts
/// runs after its acknowledgement) must not count in the next phase.
pub async fn wait_idle(dp: &ProcCpu, quiet: Duration, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last = dp.seconds()?;
    loop {
        tokio::time::sleep(quiet).await;
        let now = dp.seconds()?;
        if now == last || start.elapsed() > limit {
            return Ok(());
        }
        last = now;
    }
}

/// The identifier `+1 AREA` followed by `k` in seven digits: the zones hold the even `k`
/// (tools/lib.sh carrier_zone), the odd ones are free.
pub fn number(area: &str, k: u64) -> String {
    format!("+1{area}{k:07}")
}

pub fn sii(s: &str) -> Sii {
    Sii::parse(s, None).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The origin of the carrier block of `+1 AREA`.
pub fn block_origin(area: &str) -> Name {
    let digits: String = format!("1{area}").chars().rev().collect();
    let text: Vec<String> = digits.chars().map(|c| c.to_string()).collect();
    format!("{}.e164.{DEFAULT_APEX}", text.join("."))
        .parse()
        .expect("block origin")
}

/// Where the tree is: the root DP's address, the port every DP listens on, the trust file.
#[derive(Clone)]
pub struct TreeAt {
    pub root: IpAddr,
    pub port: u16,
    pub trust: PathBuf,
}

/// A resolver for the tree, identified by `tsig` (an AP's `[[client]]` key at the DPs;
/// None: anonymous), replicating `zones` into `dir` when given (None: every private lookup
/// by PIR). Deadlines are long: a PIR lookup of a 2^20 table takes seconds of DP time.
pub fn resolver(
    tree: &TreeAt,
    tsig: Option<TsigKey>,
    replica: Option<(&Path, Vec<Name>)>,
) -> Result<Resolver> {
    let mut config = ResolverConfig::new(vec![tree.root], tree.port, tree.trust.clone());
    config.upstream.tsig = tsig;
    config.limits.lookup_deadline = Duration::from_secs(3600);
    config.limits.timeout = Duration::from_secs(5);
    config.replica = replica.map(|(dir, zones)| ReplicaSettings {
        dir: dir.to_path_buf(),
        max_bytes: 64 << 30,
        zones,
        min_slots: None,
        // The benchmarks refresh by hand (no maintenance task runs).
        poll: Duration::from_secs(86_400),
    });
    let trust =
        TrustStore::load(&tree.trust).map_err(|e| anyhow!("{}: {e}", tree.trust.display()))?;
    Ok(Resolver::new(config, trust))
}

/// Whether a lookup found a mapping.
pub fn found(r: &Result<LookupResult, ResolveError>) -> Result<bool> {
    match r {
        Ok(r) => Ok(matches!(r.outcome, Outcome::Found(_))),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The URIs a lookup found.
pub fn uris(r: &LookupResult) -> Vec<String> {
    match &r.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        Outcome::NotDiscoverable(_) => Vec::new(),
    }
}

/// A change of one mapping, as an AP publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A present identifier gets a new URI (its slot is re-sealed).
    Replace,
    /// A present identifier's mapping is withdrawn (a tombstone).
    Withdraw,
    /// A free identifier gets a mapping (a new slot: cuckoo insertion, maybe evictions).
    Add,
}

impl Change {
    pub const ALL: [Change; 3] = [Change::Replace, Change::Withdraw, Change::Add];

    pub fn name(self) -> &'static str {
        match self {
            Change::Replace => "replace",
            Change::Withdraw => "withdraw",
            Change::Add => "add",
        }
    }
}

/// The signed record of `change` for the identifier `number` in `zone`.
pub fn signed_change(
    key: &ProviderKey,
    zone: &Name,
    number: &str,
    change: Change,
    tag: &str,
) -> Result<SignedMapping> {
    let host = key.provider.to_string();
    let uri = format!("mimi://{}/u/{tag}", host.trim_end_matches('.'));
    let apex: Name = DEFAULT_APEX.parse().expect("apex");
    let (mapping, options) = match change {
        Change::Replace | Change::Add => (Mapping::new(number, uri), SignOptions::now()),
        Change::Withdraw => {
            let mut m = Mapping::new(number, uri);
            m.ssi = None;
            let mut o = SignOptions::now();
            o.withdrawn = true;
            (m, o)
        }
    };
    Ok(sign_mapping(&mapping, zone, &apex, key, &options)?)
}

/// The zone's SOA serial as the DP at `server` serves it now.
pub async fn soa_serial(server: SocketAddr, zone: &Name) -> Result<u32> {
    let udp = tokio::net::UdpSocket::bind(SocketAddr::new(server.ip(), 0)).await?;
    for _ in 0..5 {
        let id: u16 = rand::random();
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(zone.to_hickory(), RecordType::SOA));
        udp.send_to(&m.to_vec()?, server).await?;
        let mut buf = vec![0u8; 65535];
        let Ok(n) = tokio::time::timeout(Duration::from_secs(2), udp.recv(&mut buf)).await else {
            continue;
        };
        let reply = Message::from_vec(&buf[..n?])?;
        if reply.metadata.id != id {
            continue;
        }
        if let Some(serial) = reply.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        }) {
            return Ok(serial);
        }
    }
    bail!("no SOA for {zone} from {server}")
}

/// The `p` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// The host line of the scripts: cores, CPU model, load average.
pub fn host_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}, load {load}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// Human-readable seconds: 1.23 s, 4.56 ms, 7.89 µs.
pub fn secs(s: f64) -> String {
    if s.is_nan() {
        "-".into()
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Human-readable bytes: 268.4 MB, 2.6 kB, 310 B (powers of 1000).
pub fn bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e4 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}
