//! Helpers shared by the integration tests that build discovery trees (resolver.rs,
//! private.rs): names, identifiers, keys, signed mappings, time bounds.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hickory_proto::rr::{Name as HName, RecordType};
use mimi_discovery::dp::{DpError, DpServer};
use mimi_discovery::name::Name;
use mimi_discovery::record::TrustStore;
use mimi_discovery::record::{self, Context, Method, ProviderKey, Ssi, RECORD_VERSION};
use mimi_discovery::resolver::{Resolver, ResolverConfig};
use mimi_discovery::sii::Sii;
use mimi_discovery::zone::{RData, Record, WriteStyle, ZoneFile};
use tempfile::TempDir;
use tokio::time::timeout;

/// Bound on a whole test.
pub const TEST_LIMIT: Duration = Duration::from_secs(90);
/// The tree apex of the tests.
pub const ROOT: &str = "mimi.arpa.";

pub fn n(s: &str) -> Name {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn hn(s: &str) -> HName {
    HName::from_ascii(s).unwrap()
}

pub fn apex() -> Name {
    n(ROOT)
}

/// The owner name of an identifier.
pub fn owner(sii: &str) -> Name {
    Sii::parse(sii, None)
        .unwrap_or_else(|e| panic!("{sii}: {e}"))
        .owner_name(&apex())
        .unwrap()
}

pub fn sii(s: &str) -> Sii {
    Sii::parse(s, None).unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs a test body with a time bound.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    timeout(TEST_LIMIT, f).await.expect("test timed out");
}

// ---------------------------------------------------------------------------------------
// Keys and mappings

pub struct Keys {
    pub chat: ProviderKey,
    pub talk: ProviderKey,
    pub meet: ProviderKey,
    /// Not in any trust file.
    pub rogue: ProviderKey,
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            chat: ProviderKey::generate(n("chat.example.")),
            talk: ProviderKey::generate(n("talk.example.")),
            meet: ProviderKey::generate(n("meet.example.")),
            rogue: ProviderKey::generate(n("rogue.example.")),
        }
    }

    /// Trust file text accepting chat, talk and meet (not rogue).
    pub fn trust_toml(&self) -> String {
        [&self.chat, &self.talk, &self.meet]
            .iter()
            .map(|k| record::trust_entry_toml(&k.provider, &[k.verifying_key()]))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn host_of(key: &ProviderKey) -> String {
    key.provider.to_string().trim_end_matches('.').to_string()
}

pub fn uri(key: &ProviderKey, who: &str) -> String {
    format!("mimi://{}/u/{who}", host_of(key))
}

/// A mapping verified yesterday, valid for 30 days, signed by `key` for `owner`.
pub fn mapping(key: &ProviderKey, owner: &Name, who: &str, context: Context, priority: u16) -> Ssi {
    let t = now();
    let mut s = Ssi {
        version: RECORD_VERSION,
        context,
        withdrawn: false,
        priority,
        seq: 1,
        not_before: t - 86400,
        not_after: t + 29 * 86400,
        method: Method::SmsOtp,
        verified_at: t - 86400,
        provider: key.provider.clone(),
        uri: uri(key, who),
        key_id: [0; 8],
        signature: [0; 64],
    };
    s.sign(owner, &key.signing);
    s
}

/// Adds an SSI record without replacing others of the same provider (as `put_ssi` does).
pub fn push_ssi(z: &mut ZoneFile, owner: &Name, ttl: u32, ssi: Ssi) {
    z.records.push(Record {
        name: owner.clone(),
        ttl,
        data: RData::Ssi(Box::new(ssi)),
        line: 0,
    });
}

/// A root (its name server at .1) delegating `block` to .2, and `block` (served at .2)
/// holding one mapping of chat's for `sii` (record TTL `ttl`): the two zones of the
/// live-update tests.
pub fn root_and_block(
    t: u8,
    block: &str,
    keys: &Keys,
    sii: &str,
    ttl: u32,
) -> (ZoneFile, ZoneFile) {
    let mut root = ZoneFile::new_zone(apex(), &[(n("ns1.mimi.arpa."), ip(t, 1))], 3600, 1);
    root.set_delegation(&n(block), &[(n(&format!("ns1.{block}")), ip(t, 2))], 3600);
    let mut zone = ZoneFile::new_zone(n(block), &[(n(&format!("ns1.{block}")), ip(t, 2))], 3600, 1);
    let o = owner(sii);
    zone.put_ssi(
        o.clone(),
        ttl,
        mapping(&keys.chat, &o, "alice", Context::Any, 10),
    );
    (root, zone)
}

/// The loopback address .x of test t, in the test file's block 127.BLOCK.t.x.
pub fn ip(t: u8, x: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, crate::BLOCK, t, x))
}

// ---------------------------------------------------------------------------------------
// Trees of DPs

pub struct Spec {
    pub zone: ZoneFile,
    /// More zones served by the same DPs.
    pub extra: Vec<ZoneFile>,
    pub addrs: Vec<u8>,
    pub invalid: bool,
    /// More lines for the DPs' configs (such as a `[pir]` section); `@ADDR@` stands for
    /// the DP's address and `@DOT_PORT@` for the tree's DoT port (one free on each).
    pub config_extra: String,
}

pub fn spec(zone: ZoneFile, addrs: &[u8]) -> Spec {
    Spec {
        zone,
        extra: Vec::new(),
        addrs: addrs.to_vec(),
        invalid: false,
        config_extra: crate::CONFIG_EXTRA.to_string(),
    }
}

// A running tree

pub struct Tree {
    pub t: u8,
    pub dir: TempDir,
    pub port: u16,
    /// The DoT port of DPs whose config asks for one with `@DOT_PORT@`.
    pub dot_port: u16,
    pub trust: PathBuf,
    /// (x of ip(t, x), config file, server): one DP per address.
    pub servers: Vec<(u8, PathBuf, Option<DpServer>)>,
    /// The (first) zone file of each spec, in spec order.
    pub files: Vec<PathBuf>,
}

impl Tree {
    /// Writes the zones, the trust file and one DP config per address, and starts them
    /// all on one port free on every address.
    pub async fn start(t: u8, trust_toml: &str, specs: Vec<Spec>) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.toml");
        std::fs::write(&trust, trust_toml).unwrap();
        // Per spec, the [[zone]] blocks of its DPs' configs.
        let mut blocks = Vec::new();
        let mut files = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let mut text = String::new();
            for (j, z) in std::iter::once(&s.zone).chain(&s.extra).enumerate() {
                let file = dir.path().join(format!("zone{i}-{j}.zone"));
                z.save(&file, WriteStyle::Native).unwrap();
                if j == 0 {
                    files.push(file.clone());
                }
                text.push_str(&format!(
                    "[[zone]]\norigin = \"{}\"\nfile = {:?}\n",
                    z.origin,
                    file.display().to_string()
                ));
            }
            blocks.push(text);
        }
        for attempt in 0.. {
            let port = std::net::UdpSocket::bind((ip(t, 1), 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dot_port = std::net::TcpListener::bind((ip(t, 1), 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut servers = Vec::new();
            let mut failed = None;
            'all: for (s, zones) in specs.iter().zip(&blocks) {
                for &x in &s.addrs {
                    let config = dir.path().join(format!("dp{x}.toml"));
                    std::fs::write(
                        &config,
                        format!(
                            "listen = [\"{}:{port}\"]\ntrust = \"trust.toml\"\nserve_invalid_records = {}\n{zones}{}",
                            ip(t, x),
                            s.invalid,
                            s.config_extra
                                .replace("@ADDR@", &ip(t, x).to_string())
                                .replace("@DOT_PORT@", &dot_port.to_string()),
                        ),
                    )
                    .unwrap();
                    match timeout(Duration::from_secs(30), DpServer::start(&config)).await {
                        Ok(Ok(server)) => servers.push((x, config, Some(server))),
                        Ok(Err(e @ DpError::Bind { .. })) if attempt < 10 => {
                            failed = Some(e);
                            break 'all;
                        }
                        Ok(Err(e)) => panic!("DP {} did not start: {e}", ip(t, x)),
                        Err(_) => panic!("DP start timed out"),
                    }
                }
            }
            match failed {
                None => {
                    return Tree {
                        t,
                        dir,
                        port,
                        dot_port,
                        trust,
                        servers,
                        files,
                    }
                }
                Some(e) => {
                    eprintln!("port {port} busy ({e}); trying another");
                    for (_, _, s) in servers {
                        if let Some(s) = s {
                            s.shutdown().await;
                        }
                    }
                }
            }
        }
        unreachable!()
    }

    pub fn addr(&self, x: u8) -> SocketAddr {
        SocketAddr::new(ip(self.t, x), self.port)
    }

    pub fn server(&self, x: u8) -> &DpServer {
        self.servers
            .iter()
            .find(|(a, _, _)| *a == x)
            .and_then(|(_, _, s)| s.as_ref())
            .unwrap_or_else(|| panic!("no running DP at .{x}"))
    }

    /// Queries the DP at .x has received.
    pub fn queries(&self, x: u8) -> u64 {
        self.servers
            .iter()
            .find(|(a, _, _)| *a == x)
            .and_then(|(_, _, s)| s.as_ref())
            .map_or(0, |s| s.stats().queries.load(Relaxed))
    }

    pub fn referrals(&self, x: u8) -> u64 {
        self.server(x).stats().referrals.load(Relaxed)
    }

    /// Queries received by every DP of the tree together.
    pub fn total_queries(&self) -> u64 {
        self.servers
            .iter()
            .filter_map(|(_, _, s)| s.as_ref())
            .map(|s| s.stats().queries.load(Relaxed))
            .sum()
    }

    /// Query counts per DP, to compare before and after.
    pub fn counts(&self) -> Vec<(u8, u64)> {
        self.servers
            .iter()
            .map(|(x, _, _)| (*x, self.queries(*x)))
            .collect()
    }

    /// Stops the DP at .x; its address then has nothing listening.
    pub async fn stop(&mut self, x: u8) {
        let slot = self
            .servers
            .iter_mut()
            .find(|(a, _, _)| *a == x)
            .expect("no such DP");
        if let Some(s) = slot.2.take() {
            timeout(Duration::from_secs(10), s.shutdown())
                .await
                .expect("shutdown timed out");
        }
    }

    /// Starts the DP at .x again from its config.
    pub async fn restart(&mut self, x: u8) {
        let slot = self
            .servers
            .iter_mut()
            .find(|(a, _, _)| *a == x)
            .expect("no such DP");
        assert!(slot.2.is_none(), "DP .{x} is running");
        let s = timeout(Duration::from_secs(30), DpServer::start(&slot.1))
            .await
            .expect("DP start timed out")
            .expect("DP restart");
        slot.2 = Some(s);
    }

    pub async fn shutdown(mut self) {
        let xs: Vec<u8> = self.servers.iter().map(|(x, _, _)| *x).collect();
        for x in xs {
            self.stop(x).await;
        }
    }

    /// A resolver config for this tree: root .1, the test file's timeout and retries.
    pub fn config(&self) -> ResolverConfig {
        let mut c = ResolverConfig::new(vec![ip(self.t, 1)], self.port, self.trust.clone());
        c.limits.timeout = crate::RESOLVER_TIMEOUT;
        c.limits.retries = crate::RESOLVER_RETRIES;
        c
    }

    /// The config file of the DP at .x.
    pub fn config_file(&self, x: u8) -> PathBuf {
        self.servers
            .iter()
            .find(|(a, _, _)| *a == x)
            .map(|(_, c, _)| c.clone())
            .expect("no such DP")
    }

    pub fn resolver_with(&self, config: ResolverConfig) -> Resolver {
        let trust = TrustStore::load(&config.trust).unwrap();
        Resolver::new(config, trust)
    }

    pub fn resolver(&self) -> Resolver {
        self.resolver_with(self.config())
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

// ---------------------------------------------------------------------------------------
// The binary

/// Runs `mimi` with `args` (off the async workers); exit code, stdout, stderr.
pub async fn mimi(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mimi"))
            .current_dir(dir)
            .args(&args)
            .env_remove("MIMI_APEX")
            .env_remove("MIMI_LOG")
            .output()
            .expect("run mimi")
    });
    let out = timeout(Duration::from_secs(30), run)
        .await
        .expect("mimi timed out")
        .unwrap();
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn json_of(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A mapping with a fresh seq (a re-publication replaces the previous one).
pub fn versioned(key: &ProviderKey, owner: &Name, who: &str, priority: u16) -> Ssi {
    let mut s = mapping(key, owner, who, Context::Any, priority);
    s.seq = mimi_discovery::publish::now_ms();
    s.sign(owner, &key.signing);
    s
}

/// The provider's signed withdrawal of its mapping at `owner`.
pub fn tombstone(key: &ProviderKey, owner: &Name) -> Ssi {
    let mut s = mapping(key, owner, "gone", Context::Any, 10);
    s.withdrawn = true;
    s.seq = mimi_discovery::publish::now_ms();
    s.sign(owner, &key.signing);
    s
}

// ---------------------------------------------------------------------------------------
// Watching the questions a DP is asked

/// A UDP relay in front of a DP that records every question it passes on.
pub struct Spy {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, RecordType)>>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Spy {
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Spy {
        let sock =
            std::sync::Arc::new(tokio::net::UdpSocket::bind(listen).await.expect("spy bind"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let query = buf[..len].to_vec();
                if let Ok(m) = hickory_proto::op::Message::from_vec(&query) {
                    for q in &m.queries {
                        let name = Name::from_hickory(q.name()).unwrap().to_string();
                        log.lock().unwrap().push((name, q.query_type()));
                    }
                }
                let sock = sock.clone();
                tokio::spawn(async move {
                    let up = tokio::net::UdpSocket::bind((upstream.ip(), 0))
                        .await
                        .unwrap();
                    up.send_to(&query, upstream).await.unwrap();
                    let mut reply = vec![0u8; 65535];
                    if let Ok(Ok(len)) = timeout(Duration::from_secs(5), up.recv(&mut reply)).await
                    {
                        let _ = sock.send_to(&reply[..len], from).await;
                    }
                });
            }
        });
        Spy { seen, task }
    }

    /// The questions seen since the last call.
    pub fn take(&self) -> Vec<(String, RecordType)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// A question as a spy records it.
pub fn q(name: &str, rtype: RecordType) -> (String, RecordType) {
    (name.to_string(), rtype)
}

// ---------------------------------------------------------------------------------------
// The DP's logs, captured (tests that check what a DP writes about lookups)

/// Where the DP's and the DNS server library's log lines of this process go.
static DP_LOGS: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
    std::sync::OnceLock::new();

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a TRACE subscriber for the DP's targets that writes to memory.
pub fn dp_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    DP_LOGS
        .get_or_init(|| {
            let buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
            let w = buf.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "mimi_discovery::dp=trace,hickory_server=trace",
                ))
                .with_writer(move || LogWriter(w.clone()))
                .with_ansi(false)
                .try_init()
                .expect("the test process has no other subscriber");
            buf
        })
        .clone()
}

pub fn logs_text(buf: &std::sync::Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// Set in a child process that runs one test alone.
pub const CHILD_ENV: &str = "MIMI_TEST_CHILD";

/// Runs `test` of this binary alone in a child process with `CHILD_ENV` set (for tests
/// that install a process-wide log subscriber, or may crash the process); returns its
/// output.
pub async fn in_child(test: &str) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let test = test.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "--exact",
                &test,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap()
    });
    timeout(Duration::from_secs(80), out)
        .await
        .expect("child test timed out")
        .unwrap()
}

/// Polls until `check` holds, at most `limit`; returns how long it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscribes `resolver` to `zone` at the DP at .`x`: a NOTIFY listener at .9, the DP told
/// of it by a reload (a `[[subscriber]]` with `key`, saved at `key_file`), as an operator
/// would add one, and the zone's serial learnt (the DP now answers its CHANGES). Returns
/// the listener and its address.
pub async fn subscribe(
    tree: &Tree,
    x: u8,
    zone: &str,
    resolver: &std::sync::Arc<Resolver>,
    key: &mimi_discovery::tsig::TsigKey,
    key_file: &Path,
) -> (
    mimi_discovery::resolver::server::Listener<mimi_discovery::resolver::invalidate::NotifyHandler>,
    SocketAddr,
) {
    use mimi_discovery::resolver::invalidate;
    resolver
        .invalidation
        .subscribe(n(zone), tree.addr(x), key.clone());
    let (listener, bound) =
        invalidate::listen(resolver.clone(), &[SocketAddr::new(ip(tree.t, 9), 0)])
            .await
            .unwrap();
    let config = tree.config_file(x);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[subscriber]]\naddress = \"{}\"\ntsig = {:?}\n",
        bound[0],
        key_file.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    assert!(tree.server(x).reload().await.unwrap().is_empty());
    invalidate::start(resolver).await;
    assert!(resolver.invalidation.serial(&n(zone)).is_some());
    (listener, bound[0])
}

// ---------------------------------------------------------------------------------------
// The general path's bytes, for comparing a server's fast path with it

/// The general path's answer, encoded as the TCP transport encodes it (no size limit).
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl hickory_server::server::ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<hickory_server::server::ResponseInfo, hickory_server::net::NetError> {
        let mut bytes = Vec::new();
        let info = {
            let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
            encoder.set_max_size(u16::MAX);
            response.destructive_emit(&mut encoder)?
        };
        *self.0.lock().unwrap() = bytes;
        Ok(info)
    }
}

/// What `handler`'s general path (hickory's parser and encoder) answers to `query`.
pub async fn general_answer<H: hickory_server::server::RequestHandler>(
    handler: &H,
    query: &[u8],
    src: SocketAddr,
) -> Vec<u8> {
    use hickory_server::net::runtime::TokioTime;
    let request = hickory_server::server::Request::from_bytes(
        query.to_vec(),
        src,
        hickory_server::net::xfer::Protocol::Tcp,
    )
    .unwrap();
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = capture.0.lock().unwrap().clone();
    bytes
}
