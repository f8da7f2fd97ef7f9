//! Crash safety of the DP's one write path (DESIGN section 8): the binary `mimi dp serve`
//! as a child process, killed with SIGKILL while app providers publish; a journal on a
//! full file system; a journal whose tail was torn by hand.
//!
//! Addresses: 127.67.t.1, one test t each, on a port found free at the start of the
//! test and kept across restarts. `CRASH_SEED` fixes the random choices of the kill test.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{RData as HRData, Record as HRecord, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::publish::{
    PublishError, Publisher, SignedMapping, RCODE_NOTAUTH, RCODE_REFUSED, RCODE_SERVFAIL,
};
use mimi_discovery::record::{Context, ProviderKey, Ssi, TYPE_SSI};
use mimi_discovery::tsig::{KeyFileFormat, TsigKey};
use mimi_discovery::zone::{WriteStyle, ZoneFile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

// Used by tests/common.
const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 67;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
/// Bound on every network wait of the checks.
const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The DP as a child process

/// A carrier zone's DP: its directory, keys and config, and the running child if any.
/// Dropping it kills the child.
struct Dp {
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: SocketAddr,
    keys: Keys,
    /// TSIG key per provider (chat, talk, meet).
    tsig: Vec<(ProviderKey, TsigKey)>,
    child: Option<tokio::process::Child>,
    /// Every stderr line of every run, as (run, line).
    log: Arc<Mutex<Vec<(usize, String)>>>,
    runs: usize,
    /// What the zone's SOA query got while the DP was starting, and how often.
    startup_answers: BTreeMap<String, u64>,
}

impl Drop for Dp {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

impl Dp {
    /// Writes the carrier zone (SOA, NS, glue only), the trust file, TSIG keys for
    /// chat, talk and meet, and a config with `extra` appended; does not start it.
    fn new(t: u8, extra: &str) -> Dp {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::new();
        std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
        let addr_ip = ip(t, 1);
        let zone = ZoneFile::new_zone(
            n(CARRIER),
            &[(n(&format!("ns1.{CARRIER}")), addr_ip)],
            3600,
            1,
        );
        zone.save(&dir.path().join("carrier.zone"), WriteStyle::Native)
            .unwrap();
        let mut tsig = Vec::new();
        let mut updaters = String::new();
        for k in [&keys.chat, &keys.talk, &keys.meet] {
            let host = host_of(k);
            let key = TsigKey::generate(n(&format!("{host}.key.")));
            let file = format!("{host}.tsig");
            key.save_new(dir.path().join(&file), KeyFileFormat::Bind)
                .unwrap();
            updaters.push_str(&format!(
                "[[update]]\nprovider = \"{}\"\ntsig = \"{file}\"\n",
                k.provider
            ));
            tsig.push((clone_key(k), key));
        }
        let port = free_port(addr_ip);
        let addr = SocketAddr::new(addr_ip, port);
        let config = dir.path().join("dp.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"{addr}\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n[axfr]\nallow = [\"127.0.0.0/8\"]\n[updates]\nper_second = 1000000.0\nburst = 1000000.0\n[access]\nanonymous_lookups_per_day = \"unlimited\"\n{updaters}{extra}"
            ),
        )
        .unwrap();
        Dp {
            dir,
            config,
            addr,
            keys,
            tsig,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            runs: 0,
            startup_answers: BTreeMap::new(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Starts the binary and waits until it answers for the zone.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "DP already running");
        for attempt in 0.. {
            self.runs += 1;
            let run = self.runs;
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mimi"))
                .args(["dp", "serve", "--config"])
                .arg(&self.config)
                .current_dir(self.dir.path())
                .env_remove("MIMI_LOG")
                .env_remove("MIMI_APEX")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn mimi dp serve");
            let stderr = child.stderr.take().unwrap();
            let log = self.log.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push((run, line));
                }
            });
            self.child = Some(child);
            let started = Instant::now();
            loop {
                if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                    self.child = None;
                    sleep(Duration::from_millis(50)).await;
                    let text = self.run_log(run).join("\n");
                    if text.contains("in use") && attempt < 20 {
                        // The port of the killed run is not free yet.
                        sleep(Duration::from_millis(100)).await;
                        break;
                    }
                    panic!("DP run {run} exited during start-up ({status}):\n{text}");
                }
                match soa_serial(self.addr).await {
                    Ok(_) => return,
                    Err(what) => *self.startup_answers.entry(what).or_default() += 1,
                }
                if started.elapsed() > Duration::from_secs(30) {
                    panic!(
                        "DP run {run} not answering after 30 s:\n{}",
                        self.run_log(run).join("\n")
                    );
                }
                sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// SIGKILL, then reap.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = timeout(T, c.wait()).await.expect("killed DP did not exit");
        }
    }

    fn run_log(&self, run: usize) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The last `n` lines of the log, each with its run.
    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.len().saturating_sub(n);
        log.iter()
            .skip(skip)
            .map(|(r, l)| format!("[run {r}] {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines of every run matching `pred`.
    fn log_lines(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| pred(l))
            .map(|(r, l)| format!("[run {r}] {l}"))
            .collect()
    }

    fn publisher(&self, provider: usize) -> Publisher {
        Publisher::new(self.addr, n(CARRIER), self.tsig[provider].1.clone())
            .with_timeout(Duration::from_secs(3))
    }
}

fn clone_key(k: &ProviderKey) -> ProviderKey {
    // ProviderKey is not Clone everywhere: rebuild it from the same signing key.
    ProviderKey {
        provider: k.provider.clone(),
        signing: k.signing.clone(),
    }
}

/// A port free for both UDP and TCP on `ip`.
fn free_port(ip: std::net::IpAddr) -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queries

fn question(name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(name.to_hickory(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m
}

/// The zone's SOA serial over UDP if the DP answers for the zone authoritatively, else
/// what it did instead.
async fn soa_serial(addr: SocketAddr) -> Result<u32, String> {
    let sock = tokio::net::UdpSocket::bind((addr.ip(), 0))
        .await
        .map_err(|e| e.to_string())?;
    let m = question(&n(CARRIER), RecordType::SOA);
    sock.send_to(&m.to_vec().unwrap(), addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let (len, _) = timeout(Duration::from_millis(300), sock.recv_from(&mut buf))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("{:?}", e.kind()))?;
    let r = Message::from_vec(&buf[..len]).map_err(|e| e.to_string())?;
    if r.metadata.response_code != ResponseCode::NoError || !r.metadata.authoritative {
        return Err(format!(
            "{}{}",
            r.metadata.response_code,
            if r.metadata.authoritative { " AA" } else { "" }
        ));
    }
    r.answers
        .iter()
        .find_map(|a| match &a.data {
            HRData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| "NOERROR without SOA".to_string())
}

async fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(bytes);
    s.write_all(&f).await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

fn ssi_of(r: &HRecord) -> Option<Ssi> {
    match &r.data {
        HRData::Unknown { rdata, .. } if u16::from(r.record_type()) == TYPE_SSI => {
            Some(Ssi::from_wire(&rdata.anything).expect("served SSI RDATA decodes"))
        }
        _ => None,
    }
}

/// What the DP serves: its serial and the SSI records by owner, by AXFR.
async fn axfr(addr: SocketAddr) -> Result<(u32, HashMap<Name, Vec<Ssi>>), String> {
    timeout(T, async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let m = question(&n(CARRIER), RecordType::AXFR);
        write_frame(&mut s, &m.to_vec().unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let mut records: Vec<HRecord> = Vec::new();
        loop {
            let raw = read_frame(&mut s).await.map_err(|e| e.to_string())?;
            let r = Message::from_vec(&raw).map_err(|e| e.to_string())?;
            if r.metadata.response_code != ResponseCode::NoError {
                return Err(format!("AXFR answered {}", r.metadata.response_code));
            }
            records.extend(r.answers);
            if records.len() > 1 && records.last().unwrap().record_type() == RecordType::SOA {
                break;
            }
        }
        let serial = match &records[0].data {
            HRData::SOA(soa) => soa.serial,
            other => return Err(format!("AXFR starts with {other:?}")),
        };
        let mut by_owner: HashMap<Name, Vec<Ssi>> = HashMap::new();
        for r in &records {
            if let Some(ssi) = ssi_of(r) {
                let owner = Name::from_hickory(&r.name).unwrap();
                by_owner.entry(owner).or_default().push(ssi);
            }
        }
        Ok((serial, by_owner))
    })
    .await
    .map_err(|_| "AXFR timed out".to_string())?
}

/// The SSI records served at each of `owners`, by one query each over one TCP connection.
async fn query_all(addr: SocketAddr, owners: &[Name]) -> HashMap<Name, Vec<Ssi>> {
    let mut s = timeout(T, TcpStream::connect(addr)).await.unwrap().unwrap();
    let mut out = HashMap::new();
    for o in owners {
        let m = question(o, RecordType::from(TYPE_SSI));
        write_frame(&mut s, &m.to_vec().unwrap()).await.unwrap();
        let raw = timeout(T, read_frame(&mut s))
            .await
            .expect("query timed out")
            .unwrap();
        let r = Message::from_vec(&raw).unwrap();
        assert_eq!(r.metadata.id, m.metadata.id);
        assert!(
            matches!(
                r.metadata.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ),
            "{o}: {}",
            r.metadata.response_code
        );
        assert!(!r.metadata.truncation, "{o}: truncated over TCP");
        out.insert(o.clone(), r.answers.iter().filter_map(ssi_of).collect());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Mappings

/// Owner i of the tests: +1 555 2xx xxxx.
fn owner_i(i: usize) -> Name {
    owner(&format!("+1 555 {} {:04}", 200 + i / 10000, i % 10000))
}

fn versioned(key: &ProviderKey, owner: &Name, seq: u64, withdrawn: bool) -> Ssi {
    let mut s = mapping(key, owner, &format!("v{seq}"), Context::Any, 10);
    s.seq = seq;
    s.withdrawn = withdrawn;
    s.sign(owner, &key.signing);
    s
}

fn signed(owner: &Name, ssi: &Ssi) -> SignedMapping {
    SignedMapping {
        owner: owner.clone(),
        ttl: 60,
        ssi: ssi.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 while publishing

/// What the clients know of one (owner, provider) mapping.
#[derive(Default)]
struct Pair {
    /// Highest seq known applied: acknowledged, or proved by a replay refusal of a retry.
    applied: u64,
    /// Every version ever sent, by seq (including ones whose answer never came).
    sent: BTreeMap<u64, Ssi>,
}

type Model = Mutex<HashMap<(Name, Name), Pair>>;

#[derive(Default)]
struct Counts {
    /// UPDATEs answered NOERROR, and their records.
    acked: AtomicU64,
    acked_records: AtomicU64,
    /// Attempts whose answer never came (connection reset, refused, timeout).
    unknown: AtomicU64,
    /// Retries refused for a replayed seq: the unanswered attempt had been applied.
    proved: AtomicU64,
    /// Retries accepted after an unanswered attempt: it had not been applied.
    retried_ok: AtomicU64,
    /// NOTAUTH "not the primary" while the zone was loading, SERVFAIL "busy".
    not_ready: AtomicU64,
    servfail: AtomicU64,
}

/// Checks what the DP serves against the model: no owner has two records of one
/// provider; every served record is a version some client sent; every applied version
/// (snapshot `applied` taken before the transfer) or a later one is served. With `exact`
/// (no UPDATE in flight), the served version is exactly the last applied one.
fn check_served(
    served: &HashMap<Name, Vec<Ssi>>,
    applied: &HashMap<(Name, Name), u64>,
    model: &Model,
    exact: bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    let model = model.lock().unwrap();
    let mut seen: HashMap<(Name, Name), u64> = HashMap::new();
    for (owner, list) in served {
        for s in list {
            let key = (owner.clone(), s.provider.clone());
            if exact && applied.get(&key).copied().unwrap_or(0) == 0 {
                bad.push(format!(
                    "{owner} {} seq {}: served but no version was applied",
                    s.provider, s.seq
                ));
            }
            if let Some(prev) = seen.insert(key.clone(), s.seq) {
                bad.push(format!(
                    "{owner}: two records of {} (seq {prev} and {})",
                    s.provider, s.seq
                ));
            }
            match model.get(&key).and_then(|p| p.sent.get(&s.seq)) {
                Some(sent) if sent == s => {}
                Some(_) => bad.push(format!(
                    "{owner} {} seq {}: served record differs from the one sent",
                    s.provider, s.seq
                )),
                None => bad.push(format!("{owner} {} seq {}: never sent", s.provider, s.seq)),
            }
        }
    }
    for (key, &want) in applied {
        if want == 0 {
            continue;
        }
        match seen.get(key) {
            None => bad.push(format!(
                "LOST: {} {} seq {want} applied but nothing served",
                key.0, key.1
            )),
            Some(&got) if got < want => bad.push(format!(
                "LOST: {} {} seq {want} applied but seq {got} served",
                key.0, key.1
            )),
            Some(&got) if exact && got != want => bad.push(format!(
                "{} {}: seq {got} served, last applied {want}",
                key.0, key.1
            )),
            _ => {}
        }
    }
    bad
}

fn applied_snapshot(model: &Model) -> HashMap<(Name, Name), u64> {
    model
        .lock()
        .unwrap()
        .iter()
        .map(|(k, p)| (k.clone(), p.applied))
        .collect()
}

/// One client: UPDATEs of 1-3 records of its provider for random owners of its set, one
/// at a time, each retried until the DP's answer settles whether it was applied.
#[allow(clippy::too_many_arguments)]
async fn client(
    id: usize,
    seed: u64,
    mut publisher: Publisher,
    key: ProviderKey,
    owners: Vec<Name>,
    model: Arc<Model>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    bugs: Arc<Mutex<Vec<String>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut next: HashMap<Name, u64> = HashMap::new();
    while !stop.load(SeqCst) {
        let k = rng.gen_range(1..=3usize);
        let mut picked: Vec<&Name> = Vec::new();
        while picked.len() < k {
            let o = &owners[rng.gen_range(0..owners.len())];
            if !picked.contains(&o) {
                picked.push(o);
            }
        }
        let mut records = Vec::new();
        {
            let mut m = model.lock().unwrap();
            for o in picked {
                let seq = next.entry(o.clone()).or_insert(0);
                *seq += 1 + rng.gen_range(0..2u64);
                let ssi = versioned(&key, o, *seq, rng.gen_bool(0.1));
                m.entry((o.clone(), key.provider.clone()))
                    .or_default()
                    .sent
                    .insert(*seq, ssi.clone());
                records.push(signed(o, &ssi));
            }
        }
        let mut unanswered = false;
        let outcome_applied = loop {
            match publisher.send(&records).await {
                Ok(_) => {
                    counts.acked.fetch_add(1, SeqCst);
                    counts.acked_records.fetch_add(records.len() as u64, SeqCst);
                    if unanswered {
                        counts.retried_ok.fetch_add(1, SeqCst);
                    }
                    break true;
                }
                Err(PublishError::Refused(r))
                    if r.rcode == RCODE_REFUSED
                        && r.extended.iter().any(|e| e.text.contains("seq not above")) =>
                {
                    // Only a retry can meet its own seq (the Publisher also resends
                    // once on a reused connection that broke).
                    counts.proved.fetch_add(1, SeqCst);
                    break true;
                }
                Err(PublishError::Refused(r))
                    if r.rcode == RCODE_NOTAUTH
                        && r.extended
                            .iter()
                            .any(|e| e.text.contains("not the primary")) =>
                {
                    counts.not_ready.fetch_add(1, SeqCst);
                    sleep(Duration::from_millis(5)).await;
                }
                Err(PublishError::Refused(r)) if r.rcode == RCODE_SERVFAIL => {
                    // "Nothing applied": a definite no, retried.
                    counts.servfail.fetch_add(1, SeqCst);
                    bugs.lock()
                        .unwrap()
                        .push(format!("client {id}: SERVFAIL {r}"));
                    sleep(Duration::from_millis(5)).await;
                }
                Err(PublishError::Refused(r)) => {
                    bugs.lock()
                        .unwrap()
                        .push(format!("client {id}: unexpected refusal {r}"));
                    break false;
                }
                Err(PublishError::Io { .. } | PublishError::Timeout { .. }) => {
                    counts.unknown.fetch_add(1, SeqCst);
                    unanswered = true;
                    sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    // Malformed / unverified answers: the update may or may not be applied.
                    counts.unknown.fetch_add(1, SeqCst);
                    unanswered = true;
                    bugs.lock()
                        .unwrap()
                        .push(format!("client {id}: odd answer: {e}"));
                    sleep(Duration::from_millis(5)).await;
                }
            }
        };
        if outcome_applied {
            let mut m = model.lock().unwrap();
            for r in &records {
                let p = m
                    .get_mut(&(r.owner.clone(), r.ssi.provider.clone()))
                    .unwrap();
                p.applied = p.applied.max(r.ssi.seq);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_loses_an_acknowledged_update() {
    const OWNERS: usize = 900;
    const CLIENTS: usize = 9;
    const WANT_KILLS: u64 = 30;
    const WANT_ACKED: u64 = 5000;
    const BUDGET: Duration = Duration::from_secs(40);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("kill -9 test: seed {seed} (CRASH_SEED={seed} repeats the random choices)");
    // Frequent zone-file rewrites and journal compactions, so kills land in them too.
    let mut dp = Dp::new(
        1,
        "[journal]\nflush_interval_secs = 1\nflush_changes = 1500\ndepth = 200\n",
    );
    dp.start().await;
    let owners: Vec<Name> = (0..OWNERS).map(owner_i).collect();
    let model: Arc<Model> = Arc::new(Mutex::new(HashMap::new()));
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let bugs: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        // Provider c % 3; the clients of one provider share no owner.
        let (p, part) = (c % 3, c / 3);
        let mine: Vec<Name> = owners
            .iter()
            .enumerate()
            .filter(|(i, _)| i % (CLIENTS / 3) == part)
            .map(|(_, o)| o.clone())
            .collect();
        tasks.push(tokio::spawn(client(
            c,
            seed,
            dp.publisher(p),
            clone_key(&dp.tsig[p].0),
            mine,
            model.clone(),
            counts.clone(),
            stop.clone(),
            bugs.clone(),
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut kills = 0u64;
    let mut checks = 0u64;
    let mut last_serial = 0u32;
    let mut violations: Vec<String> = Vec::new();
    while (kills < WANT_KILLS || counts.acked.load(SeqCst) < WANT_ACKED)
        && started.elapsed() < BUDGET
        && violations.is_empty()
    {
        sleep(Duration::from_millis(rng.gen_range(50..=400))).await;
        dp.kill().await;
        kills += 1;
        dp.start().await;
        // Whatever was applied before this moment must be served now.
        let applied = applied_snapshot(&model);
        match axfr(dp.addr).await {
            Ok((serial, served)) => {
                checks += 1;
                if serial < last_serial {
                    violations.push(format!(
                        "serial went back from {last_serial} to {serial} after kill {kills}"
                    ));
                }
                last_serial = serial;
                for v in check_served(&served, &applied, &model, false) {
                    violations.push(format!("after kill {kills} (serial {serial}): {v}"));
                }
            }
            Err(e) => violations.push(format!("after kill {kills}: AXFR failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, SeqCst);
    for t in tasks {
        timeout(Duration::from_secs(30), t)
            .await
            .expect("client did not finish")
            .expect("client panicked");
    }
    // Every UPDATE has settled: the served version is exactly the last applied one, by
    // AXFR and by a query per owner; and again after one more kill.
    let applied = applied_snapshot(&model);
    for round in ["at the end", "after a final kill"] {
        if round == "after a final kill" {
            dp.kill().await;
            kills += 1;
            dp.start().await;
        }
        match axfr(dp.addr).await {
            Ok((_, served)) => {
                for v in check_served(&served, &applied, &model, true) {
                    violations.push(format!("{round} (AXFR): {v}"));
                }
            }
            Err(e) => violations.push(format!("{round}: AXFR failed: {e}")),
        }
        let queried = query_all(dp.addr, &owners).await;
        for v in check_served(&queried, &applied, &model, true) {
            violations.push(format!("{round} (queries): {v}"));
        }
    }
    let get = |c: &AtomicU64| c.load(SeqCst);
    let records_applied = applied.values().filter(|&&s| s > 0).count();
    println!(
        "kill -9 test: seed {seed}, {kills} kills in {:.1} s, {checks} checks after restarts; \
         {} UPDATEs acknowledged ({} records), {} attempts unknown (no answer), of which {} \
         proved applied by a replay refusal and {} accepted on retry; {} NOTAUTH while \
         loading, {} SERVFAIL; {records_applied} (owner, provider) mappings served",
        elapsed.as_secs_f64(),
        get(&counts.acked),
        get(&counts.acked_records),
        get(&counts.unknown),
        get(&counts.proved),
        get(&counts.retried_ok),
        get(&counts.not_ready),
        get(&counts.servfail),
    );
    if kills < WANT_KILLS || get(&counts.acked) < WANT_ACKED {
        println!(
            "kill -9 test: REDUCED: wanted {WANT_KILLS} kills and {WANT_ACKED} acknowledged UPDATEs within {} s",
            BUDGET.as_secs()
        );
    }
    println!(
        "kill -9 test: {} zone-file rewrites and journal compactions, {} journal replays at start-up; \
         SOA queries while starting got {:?}",
        dp.log_lines(|l| l.contains("zone file rewritten")).len(),
        dp.log_lines(|l| l.contains("journal replayed")).len(),
        dp.startup_answers
    );
    let warnings =
        dp.log_lines(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panick"));
    println!(
        "kill -9 test: {} WARN/ERROR lines in the DP logs",
        warnings.len()
    );
    for w in warnings.iter().take(10) {
        println!("  {w}");
    }
    let bugs = bugs.lock().unwrap().clone();
    let panics = dp.log_lines(|l| l.contains("panicked") || l.contains("ERROR"));
    assert!(
        violations.is_empty() && bugs.is_empty() && panics.is_empty(),
        "seed {seed}: {} violations:\n{}\nclient trouble:\n{}\npanics/errors:\n{}\nlog tail:\n{}",
        violations.len(),
        violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        bugs.iter().take(30).cloned().collect::<Vec<_>>().join("\n"),
        panics.join("\n"),
        dp.log_tail(80)
    );
    assert!(
        kills >= 5 && get(&counts.acked) >= 500,
        "too little done to mean anything"
    );
    dp.kill().await;
}

// ---------------------------------------------------------------------------------------
// 2. Disk full

/// A tmpfs mounted on a temporary directory; unmounted on drop (retried while the
/// killed DP may still hold its journal open, then lazily), before the directory goes.
struct Mount(tempfile::TempDir);

impl Drop for Mount {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = std::process::Command::new("umount")
                .arg(self.0.path())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_servfail_and_applies_nothing() {
    let jdir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(jdir.path())
        .output();
    let mount = match mounted {
        Ok(o) if o.status.success() => Mount(jdir),
        other => {
            println!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 SKIP: cannot mount tmpfs ({}): the disk-full test did not run\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
                match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                }
            );
            return;
        }
    };
    // The journal on the tmpfs, the zone file elsewhere. The DP (declared after the
    // mount, so dropped first) is killed before the unmount.
    let mut dp = Dp::new(
        2,
        &format!(
            "[journal]\ndir = {:?}\nflush_interval_secs = 3600\nflush_changes = 10000000\n",
            mount.0.path().display().to_string()
        ),
    );
    dp.start().await;
    let chat = clone_key(&dp.keys.chat);
    let mut publisher = dp.publisher(0);
    let mut acked: Vec<(Name, Ssi)> = Vec::new();
    let mut failed: Option<(Vec<(Name, Ssi)>, String)> = None;
    for i in 0..20_000usize {
        // Three new owners per UPDATE, and now and then a new version of an old one.
        let mut batch = Vec::new();
        for j in 0..3 {
            let o = owner_i(i * 3 + j);
            batch.push((o.clone(), versioned(&chat, &o, 1, false)));
        }
        let records: Vec<SignedMapping> = batch.iter().map(|(o, s)| signed(o, s)).collect();
        match publisher.send(&records).await {
            Ok(_) => acked.extend(batch),
            Err(PublishError::Refused(r)) if r.rcode == RCODE_SERVFAIL => {
                failed = Some((batch, r.to_string()));
                break;
            }
            Err(e) => panic!(
                "after {} acknowledged records: {e}\n{}",
                acked.len(),
                dp.log_tail(30)
            ),
        }
    }
    let (lost, why) = failed.expect("the journal never filled the 256 KiB tmpfs");
    println!(
        "disk-full test: {} records acknowledged, then SERVFAIL: {why}",
        acked.len()
    );
    assert!(why.contains("could not be stored"), "{why}");
    let warn = dp.log_lines(|l| l.contains("WARN") && l.contains("journal write failed"));
    assert!(
        !warn.is_empty(),
        "no WARN about the failed write:\n{}",
        dp.log_tail(20)
    );
    // A second try fails the same way, and a new version of an existing mapping too.
    let again: Vec<SignedMapping> = lost.iter().map(|(o, s)| signed(o, s)).collect();
    let r = publisher.send(&again).await;
    assert!(
        matches!(&r, Err(PublishError::Refused(r)) if r.rcode == RCODE_SERVFAIL),
        "{r:?}"
    );
    let (o0, _) = &acked[0];
    let newer = versioned(&chat, o0, 2, false);
    let r = publisher.send(&[signed(o0, &newer)]).await;
    assert!(
        matches!(&r, Err(PublishError::Refused(r)) if r.rcode == RCODE_SERVFAIL),
        "{r:?}"
    );
    let check = |served: &HashMap<Name, Vec<Ssi>>, when: &str| {
        for (o, s) in &acked {
            assert_eq!(
                served.get(o).map(|v| v.as_slice()),
                Some(std::slice::from_ref(s)),
                "{when}: acknowledged record at {o} not served as sent"
            );
        }
        for (o, _) in &lost {
            assert!(
                served.get(o).is_none_or(|v| v.is_empty()),
                "{when}: the SERVFAIL record at {o} is served"
            );
        }
    };
    let all: Vec<Name> = acked.iter().chain(&lost).map(|(o, _)| o.clone()).collect();
    check(&query_all(dp.addr, &all).await, "after SERVFAIL");
    let (_, served) = axfr(dp.addr).await.unwrap();
    check(&served, "after SERVFAIL (AXFR)");
    // The journal on the full disk still reads back whole after a crash.
    dp.kill().await;
    dp.start().await;
    check(&query_all(dp.addr, &all).await, "after kill -9 and restart");
    let torn = dp.log_lines(|l| l.contains("torn tail"));
    assert!(
        torn.is_empty(),
        "the failed write left a torn tail: {torn:?}"
    );
    println!(
        "disk-full test: DP kept answering; after kill -9 and restart all {} acknowledged records served, the refused ones not",
        acked.len()
    );
    dp.kill().await;
}

// ---------------------------------------------------------------------------------------
// 3. Torn tail

/// Byte offsets of the entries of a journal file (after the 8-byte magic).
fn journal_entries(path: &Path) -> (Vec<usize>, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"MIMIJNL1");
    let mut pos = 8;
    let mut starts = Vec::new();
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if pos + 8 + len > bytes.len() {
            break;
        }
        starts.push(pos);
        pos += 8 + len;
    }
    (starts, bytes.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_dropped_with_a_warning_and_the_rest_is_served() {
    const OWNERS: usize = 40;
    const N: usize = 60;
    let mut dp = Dp::new(
        3,
        "[journal]\nflush_interval_secs = 3600\nflush_changes = 10000000\n",
    );
    dp.start().await;
    let talk = clone_key(&dp.keys.talk);
    let mut publisher = dp.publisher(1);
    let owners: Vec<Name> = (0..OWNERS).map(owner_i).collect();
    // Expected served version per owner.
    let mut want: HashMap<Name, Ssi> = HashMap::new();
    for i in 0..N {
        let o = &owners[i % OWNERS];
        let s = versioned(&talk, o, (i / OWNERS + 1) as u64, i % 7 == 3);
        publisher
            .send(&[signed(o, &s)])
            .await
            .unwrap_or_else(|e| panic!("update {i}: {e}"));
        want.insert(o.clone(), s);
    }
    let check = |served: &HashMap<Name, Vec<Ssi>>, want: &HashMap<Name, Ssi>, when: &str| {
        for o in &owners {
            let got = served.get(o).cloned().unwrap_or_default();
            let expect: Vec<Ssi> = want.get(o).cloned().into_iter().collect();
            assert_eq!(got, expect, "{when}: {o}");
        }
    };
    check(&query_all(dp.addr, &owners).await, &want, "before the kill");
    dp.kill().await;
    let jpath = dp.path("carrier.zone.journal");
    let (starts, len) = journal_entries(&jpath);
    println!(
        "torn-tail test: {N} updates acknowledged, journal {len} bytes in {} entries",
        starts.len()
    );
    assert!(starts.len() >= N, "expected an entry per update");

    // (a) Garbage after the last whole entry: dropped, nothing lost.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&jpath)
            .unwrap();
        f.write_all(&[0xab; 37]).unwrap();
    }
    dp.start().await;
    let run = dp.runs;
    let warned = |dp: &Dp, run: usize| {
        dp.run_log(run)
            .into_iter()
            .filter(|l| l.contains("WARN") && l.contains("torn tail"))
            .collect::<Vec<_>>()
    };
    let w = warned(&dp, run);
    assert_eq!(
        w.len(),
        1,
        "WARN about the torn tail:\n{}",
        dp.run_log(run).join("\n")
    );
    println!("torn-tail test (garbage appended): {}", w[0]);
    check(
        &query_all(dp.addr, &owners).await,
        &want,
        "after garbage appended",
    );
    assert_eq!(
        std::fs::metadata(&jpath).unwrap().len() as usize,
        len,
        "garbage cut off"
    );

    // (b) One more update, then its entry cut short: exactly that update is lost.
    let o = owners[N % OWNERS].clone();
    let before = want[&o].clone();
    let s = versioned(&talk, &o, before.seq + 1, false);
    publisher.send(&[signed(&o, &s)]).await.unwrap();
    dp.kill().await;
    let (starts, len2) = journal_entries(&jpath);
    let last = *starts.last().unwrap();
    assert!(last >= len, "the new update is the last entry");
    let cut = len2 - 5;
    assert!(cut > last + 8);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&jpath)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    dp.start().await;
    let w = warned(&dp, dp.runs);
    assert_eq!(
        w.len(),
        1,
        "WARN about the torn tail:\n{}",
        dp.run_log(dp.runs).join("\n")
    );
    println!("torn-tail test (last entry cut by 5 bytes): {}", w[0]);
    // The torn entry was acknowledged (the test tore it): its record is gone and the
    // version it replaced is back; everything else is served.
    check(&query_all(dp.addr, &owners).await, &want, "after the cut");
    assert_eq!(
        std::fs::metadata(&jpath).unwrap().len() as usize,
        last,
        "cut back to the last whole entry"
    );

    // Appends continue after the cut and survive the next crash.
    let s = versioned(&talk, &o, before.seq + 2, false);
    publisher.send(&[signed(&o, &s)]).await.unwrap();
    want.insert(o.clone(), s);
    dp.kill().await;
    dp.start().await;
    assert!(warned(&dp, dp.runs).is_empty(), "no torn tail this time");
    check(
        &query_all(dp.addr, &owners).await,
        &want,
        "after the next crash",
    );
    println!(
        "torn-tail test: all {} other records served after each restart",
        OWNERS
    );
    dp.kill().await;
}
