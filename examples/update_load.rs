//! Load generator for DNS UPDATE (RFC 2136) with TSIG: publishes pre-signed SSI mappings to a
//! zone's primary (`mimi dp serve`, or Knot, which stores them as RFC 3597 records) from C
//! concurrent tasks for S seconds, and prints one machine-readable line:
//!
//! ```text
//! updates=.. records=.. seconds=.. updates_per_s=.. records_per_s=.. ack_p50_ms=.. ack_p99_ms=..
//!   errors=.. used=.. cpu_s=.. [probes=.. visible_p50_ms=.. visible_p99_ms=.. probe_ack_p50_ms=..
//!   probe_timeouts=..] [verified=OK/CHECKED]
//! ```
//!
//! Run through `tools/bench/update.sh`. The records are signed before the clock starts
//! (signing is the app provider's cost): either here (`--presign N`) or once into a pool file
//! (`--make-pool FILE --count N`, on every core) that runs then read (`--pool FILE --first I`).
//! Record i of a pool or of `--presign` is a new mapping (seq 1) at the owner of number
//! 2i+1: its 7 digits reversed, one label each, under the zone (`1.0.0.0.0.0.0.<zone>` for
//! i = 0); with the carrier zone of tools/bench (numbers 2i), none of them exists before.
//! `used=` tells the next run where to start (`--first`), so no owner is published twice.
//!
//! Options:
//!   --dp ADDR:PORT --zone ORIGIN --tsig BINDKEYFILE --key PROVIDERKEYFILE
//!   --records-per-update K (1) --seconds S (10) --concurrency C (16)
//!   --rate R            UPDATEs per second over all tasks (default: as fast as answered)
//!   --max-records N     stop once N records were sent (default: the time bound only)
//!   --persistent        one TCP connection per task for all its UPDATEs (default: a new
//!                       connection per UPDATE, as `mimi_discovery::publish::publish`)
//!   --probe             one more task: every --probe-every-ms (25) an UPDATE of K records,
//!                       then UDP queries for its last owner every 1 ms until answered;
//!                       times from sending to NOERROR and to the first answer holding it
//!   --verify-answer     after the run, query up to 500 published owners over UDP and check
//!                       each answer holds exactly the published record
//!   --threads T         runtime worker threads (default 1: a single-threaded runtime)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::publish::{self, publish, Publication, Target};
use mimi_discovery::record::{Context, Method, ProviderKey, Ssi, RECORD_VERSION, TYPE_SSI};
use mimi_discovery::tsig::{self, TsigKey};
use rayon::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const POOL_MAGIC: &[u8] = b"MIMI-UPDATE-POOL-1\n";
const TTL: u32 = 3600;

#[derive(Clone)]
struct Args {
    dp: Option<SocketAddr>,
    zone: Option<Name>,
    tsig: Option<PathBuf>,
    key: Option<PathBuf>,
    k: usize,
    seconds: f64,
    concurrency: usize,
    rate: Option<f64>,
    max_records: Option<usize>,
    persistent: bool,
    probe: bool,
    probe_every: Duration,
    verify: bool,
    threads: usize,
    presign: usize,
    pool: Option<PathBuf>,
    first: usize,
    make_pool: Option<PathBuf>,
    count: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        dp: None,
        zone: None,
        tsig: None,
        key: None,
        k: 1,
        seconds: 10.0,
        concurrency: 16,
        rate: None,
        max_records: None,
        persistent: false,
        probe: false,
        probe_every: Duration::from_millis(25),
        verify: false,
        threads: 1,
        presign: 0,
        pool: None,
        first: 0,
        make_pool: None,
        count: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dp" => a.dp = Some(val()?.parse().context("--dp ADDR:PORT")?),
            "--zone" => a.zone = Some(val()?.parse().map_err(|e| anyhow::anyhow!("--zone: {e}"))?),
            "--tsig" => a.tsig = Some(val()?.into()),
            "--key" => a.key = Some(val()?.into()),
            "--records-per-update" => a.k = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--rate" => a.rate = Some(val()?.parse()?),
            "--max-records" => a.max_records = Some(val()?.parse()?),
            "--persistent" => a.persistent = true,
            "--probe" => a.probe = true,
            "--probe-every-ms" => a.probe_every = Duration::from_millis(val()?.parse()?),
            "--verify-answer" => a.verify = true,
            "--threads" => a.threads = val()?.parse()?,
            "--presign" => a.presign = val()?.parse()?,
            "--pool" => a.pool = Some(val()?.into()),
            "--first" => a.first = val()?.parse()?,
            "--make-pool" => a.make_pool = Some(val()?.into()),
            "--count" => a.count = val()?.parse()?,
            "-h" | "--help" => {
                println!("see the top of examples/update_load.rs");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.k == 0 || a.concurrency == 0 {
        bail!("--records-per-update and --concurrency must be at least 1");
    }
    Ok(a)
}

/// The owner of record `i`: the 7 digits of 2i+1, reversed, one label each, under `zone`.
fn owner_of(i: usize, zone: &Name) -> Name {
    let digits = format!("{:07}", 2 * i + 1);
    assert!(digits.len() == 7, "record index {i} is beyond the 7-digit owner space");
    let rel: Vec<String> = digits.chars().rev().map(String::from).collect();
    Name::parse(&format!("{}.{}", rel.join("."), zone), None).expect("owner name")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs records `first..first + n` (all cores) for `zone` with `key`.
fn sign_range(key: &ProviderKey, zone: &Name, first: usize, n: usize) -> Vec<Publication> {
    let t = now();
    let host = key.provider.to_string().trim_end_matches('.').to_string();
    (first..first + n)
        .into_par_iter()
        .map(|i| {
            let owner = owner_of(i, zone);
            let mut ssi = Ssi {
                version: RECORD_VERSION,
                context: Context::Any,
                withdrawn: false,
                priority: 10,
                seq: 1,
                not_before: t - 86400,
                not_after: t + 30 * 86400,
                method: Method::SmsOtp,
                verified_at: t - 86400,
                provider: key.provider.clone(),
                uri: format!("mimi://{host}/u/load{i}"),
                key_id: [0; 8],
                signature: [0; 64],
            };
            ssi.sign(&owner, &key.signing);
            Publication { owner, ttl: TTL, ssi }
        })
        .collect()
}

fn make_pool(a: &Args, path: &PathBuf) -> Result<()> {
    let key = ProviderKey::load(a.key.as_ref().context("--key")?)?;
    let zone = a.zone.clone().context("--zone")?;
    let t = Instant::now();
    let recs = sign_range(&key, &zone, 0, a.count);
    let signed = t.elapsed();
    let mut out = Vec::with_capacity(POOL_MAGIC.len() + a.count * 170);
    out.extend_from_slice(POOL_MAGIC);
    for p in &recs {
        let w = p.ssi.to_wire();
        out.extend_from_slice(&(w.len() as u16).to_be_bytes());
        out.extend_from_slice(&w);
    }
    std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "pool={} records={} sign_s={:.2} bytes={}",
        path.display(),
        a.count,
        signed.as_secs_f64(),
        out.len()
    );
    Ok(())
}

/// Records `first..` of a pool file: at most `max` of them.
fn read_pool(path: &PathBuf, zone: &Name, first: usize, max: usize) -> Result<Vec<Publication>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !data.starts_with(POOL_MAGIC) {
        bail!("{} is not a pool file", path.display());
    }
    let mut at = POOL_MAGIC.len();
    let mut spans = Vec::new();
    let mut i = 0usize;
    while at + 2 <= data.len() && spans.len() < max {
        let len = u16::from_be_bytes([data[at], data[at + 1]]) as usize;
        if i >= first {
            spans.push((i, at + 2, len));
        }
        at += 2 + len;
        i += 1;
    }
    spans
        .into_par_iter()
        .map(|(i, s, len)| {
            let ssi = Ssi::from_wire(&data[s..s + len]).map_err(|e| anyhow::anyhow!("pool record {i}: {e}"))?;
            Ok(Publication {
                owner: owner_of(i, zone),
                ttl: TTL,
                ssi,
            })
        })
        .collect()
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Shared {
    recs: Vec<Publication>,
    next: AtomicUsize,
    updates_started: AtomicUsize,
    stop: AtomicBool,
    exhausted: AtomicBool,
    /// The records ran out before --max-records (or, without it, before the time was up).
    pool_short: bool,
    /// Indices (into recs) of the first record of each acknowledged UPDATE.
    acked: Mutex<Vec<usize>>,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    /// The next K records, or None at the end of the run.
    fn take(&self, k: usize, limit: usize) -> Option<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.next.fetch_add(k, Ordering::Relaxed);
        if i + k > limit {
            if self.pool_short {
                self.exhausted.store(true, Ordering::Relaxed);
            }
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        Some(i)
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }
}

/// A persistent TCP connection sending UPDATEs one after another.
struct Conn {
    dp: SocketAddr,
    stream: Option<TcpStream>,
}

impl Conn {
    async fn send(&mut self, target: &Target, records: &[Publication]) -> Result<(), String> {
        let mut msg = publish::update_message(&target.zone, records)?;
        let mac = tsig::sign_request(&mut msg, &target.key, now()).map_err(|e| e.to_string())?;
        let mut frame = (msg.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&msg);
        if self.stream.is_none() {
            self.stream = Some(TcpStream::connect(self.dp).await.map_err(|e| e.to_string())?);
        }
        let s = self.stream.as_mut().unwrap();
        let r = async {
            s.write_all(&frame).await?;
            let len = s.read_u16().await? as usize;
            let mut answer = vec![0u8; len];
            s.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = match tokio::time::timeout(publish::TIMEOUT, r).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                self.stream = None;
                return Err(e.to_string());
            }
            Err(_) => {
                self.stream = None;
                return Err("timeout".into());
            }
        };
        let m = Message::from_vec(&answer).map_err(|e| e.to_string())?;
        if m.metadata.response_code != ResponseCode::NoError {
            return Err(format!(
                "{}{}",
                m.metadata.response_code,
                publish::extended_error(&m).map(|e| format!(": {}", e.1)).unwrap_or_default()
            ));
        }
        tsig::verify_response(&answer, &target.key, &mac, now()).map_err(|e| e.to_string())
    }
}

async fn send_one(conn: &mut Option<Conn>, target: &Target, recs: &[Publication]) -> Result<(), String> {
    match conn {
        Some(c) => c.send(target, recs).await,
        None => publish(target, recs).await.map_err(|e| e.to_string()),
    }
}

async fn worker(sh: Arc<Shared>, target: Arc<Target>, a: Arc<Args>, limit: usize, start: Instant) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut conn = a.persistent.then(|| Conn {
        dp: target.dp,
        stream: None,
    });
    while let Some(i) = sh.take(a.k, limit) {
        if let Some(rate) = a.rate {
            let n = sh.updates_started.fetch_add(1, Ordering::Relaxed);
            let at = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let recs = &sh.recs[i..i + a.k];
        let t = Instant::now();
        match send_one(&mut conn, &target, recs).await {
            Ok(()) => {
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                sh.acked.lock().unwrap().push(i);
            }
            Err(e) => sh.error(e),
        }
    }
    lat
}

fn query(owner: &Name) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.add_query(Query::query(owner.to_hickory(), RecordType::from(TYPE_SSI)));
    m.to_vec().unwrap()
}

/// The SSI RDATA in the answer to a query for `owner`, or None on timeout.
async fn ask(sock: &UdpSocket, dp: SocketAddr, owner: &Name, wait: Duration) -> Option<Vec<Vec<u8>>> {
    let q = query(owner);
    let id = u16::from_be_bytes([q[0], q[1]]);
    sock.send_to(&q, dp).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (len, _) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await.ok()?.ok()?;
        let Ok(m) = Message::from_vec(&buf[..len]) else { continue };
        if m.metadata.id != id {
            continue; // a late answer to an earlier poll
        }
        return Some(
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::Unknown { rdata, .. } => Some(rdata.anything.clone()),
                    _ => None,
                })
                .collect(),
        );
    }
}

#[derive(Default)]
struct ProbeResult {
    ack: Vec<u32>,
    visible: Vec<u32>,
    timeouts: usize,
    errors: usize,
}

async fn prober(sh: Arc<Shared>, target: Arc<Target>, a: Arc<Args>, limit: usize) -> ProbeResult {
    let mut r = ProbeResult::default();
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("UDP socket");
    let mut tick = tokio::time::interval(a.probe_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(i) = sh.take(a.k, limit) else { break };
        let recs = &sh.recs[i..i + a.k];
        let last = &recs[a.k - 1];
        let want = last.ssi.to_wire();
        let t0 = Instant::now();
        let update = {
            let (target, recs) = (target.clone(), recs.to_vec());
            tokio::spawn(async move {
                let res = publish(&target, &recs).await;
                (res.map_err(|e| e.to_string()), t0.elapsed())
            })
        };
        let mut visible = None;
        let mut poll = tokio::time::interval(Duration::from_millis(1));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let give_up = t0 + Duration::from_secs(5);
        while visible.is_none() && Instant::now() < give_up {
            poll.tick().await;
            if let Some(answers) = ask(&sock, target.dp, &last.owner, Duration::from_millis(200)).await {
                if answers.iter().any(|x| *x == want) {
                    visible = Some(t0.elapsed());
                }
            }
        }
        match update.await {
            Ok((Ok(()), ack)) => {
                r.ack.push(ack.as_micros() as u32);
                match visible {
                    Some(v) => r.visible.push(v.as_micros() as u32),
                    None => r.timeouts += 1,
                }
            }
            _ => r.errors += 1,
        }
    }
    r
}

async fn verify(sh: &Shared, a: &Args, dp: SocketAddr) -> (usize, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("UDP socket");
    let acked = sh.acked.lock().unwrap().clone();
    let step = (acked.len() / 500).max(1);
    let (mut ok, mut checked) = (0, 0);
    for &i in acked.iter().step_by(step) {
        let p = &sh.recs[i + a.k - 1];
        checked += 1;
        if let Some(ans) = ask(&sock, dp, &p.owner, Duration::from_secs(2)).await {
            if ans.len() == 1 && ans[0] == p.ssi.to_wire() {
                ok += 1;
            }
        }
    }
    (ok, checked)
}

async fn run(a: Args) -> Result<()> {
    let dp = a.dp.context("--dp ADDR:PORT")?;
    let zone = a.zone.clone().context("--zone ORIGIN")?;
    let tsig_key = TsigKey::load(a.tsig.as_ref().context("--tsig KEYFILE")?)?;
    let recs = if let Some(pool) = &a.pool {
        read_pool(pool, &zone, a.first, a.max_records.unwrap_or(usize::MAX))?
    } else {
        let key = ProviderKey::load(a.key.as_ref().context("--key PROVIDERKEYFILE")?)?;
        let n = if a.presign > 0 {
            a.presign
        } else {
            a.max_records.unwrap_or(100_000)
        };
        sign_range(&key, &zone, a.first, n)
    };
    let pool_short = recs.len() < a.max_records.unwrap_or(usize::MAX);
    let limit = a.max_records.unwrap_or(usize::MAX).min(recs.len());
    let target = Arc::new(Target {
        dp,
        zone,
        key: tsig_key,
    });
    let sh = Arc::new(Shared {
        recs,
        next: AtomicUsize::new(0),
        updates_started: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        exhausted: AtomicBool::new(false),
        pool_short,
        acked: Mutex::new(Vec::new()),
        errors: AtomicUsize::new(0),
        first_error: Mutex::new(None),
    });
    let a = Arc::new(a);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        tasks.push(tokio::spawn(worker(sh.clone(), target.clone(), a.clone(), limit, start)));
    }
    let probe = a.probe.then(|| tokio::spawn(prober(sh.clone(), target.clone(), a.clone(), limit)));
    {
        let sh = sh.clone();
        let secs = a.seconds;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            sh.stop.store(true, Ordering::Relaxed);
        });
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let probe = match probe {
        Some(p) => Some(p.await?),
        None => None,
    };
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    lat.sort_unstable();
    let updates = lat.len();
    let records = updates * a.k;
    let used = sh.next.load(Ordering::Relaxed).min(limit);
    let mut line = format!(
        "updates={updates} records={records} seconds={elapsed:.2} updates_per_s={:.0} records_per_s={:.0} ack_p50_ms={:.2} ack_p99_ms={:.2} errors={} used={used} cpu_s={cpu:.2}",
        updates as f64 / elapsed,
        records as f64 / elapsed,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        sh.errors.load(Ordering::Relaxed),
    );
    if let Some(mut p) = probe {
        p.visible.sort_unstable();
        p.ack.sort_unstable();
        line += &format!(
            " probes={} visible_p50_ms={:.2} visible_p99_ms={:.2} visible_max_ms={:.2} probe_ack_p50_ms={:.2} probe_timeouts={} probe_errors={}",
            p.visible.len(),
            pct(&p.visible, 0.5),
            pct(&p.visible, 0.99),
            pct(&p.visible, 1.0),
            pct(&p.ack, 0.5),
            p.timeouts,
            p.errors
        );
    }
    if sh.exhausted.load(Ordering::Relaxed) {
        line += " exhausted=1";
    }
    if a.verify {
        let (ok, checked) = verify(&sh, &a, dp).await;
        line += &format!(" verified={ok}/{checked}");
    }
    println!("{line}");
    if let Some(e) = sh.first_error.lock().unwrap().as_ref() {
        eprintln!("update_load: first error: {e}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    if let Some(path) = a.make_pool.clone() {
        return make_pool(&a, &path);
    }
    let rt = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(a))
}
