//! DNS over UDP through the project's own loop (src/net/udp.rs) on loopback, 127.76.t.x:
//! a burst of 5,000 queries from one socket is answered; what takes the general path
//! (TSIG, UPDATE, two questions, truncation) is answered as before, and byte for byte as
//! hickory's UDP server answered it, odd datagrams included; shutdown releases the port,
//! and an address in use stays in use.

mod common;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use mimi_discovery::dp::{DpHandler, DpServer};
use mimi_discovery::net::udp::UdpSockets;
use mimi_discovery::net::StreamHandler;
use mimi_discovery::publish::{signed_update, SignedMapping};
use mimi_discovery::record::{Context, TYPE_SSI};
use mimi_discovery::tsig::{self, KeyFileFormat, TsigKey};
use mimi_discovery::zone::{RData, Record, WriteStyle};
use tempfile::TempDir;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const BLOCK: u8 = 76;
const CONFIG_EXTRA: &str = "";
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";
const NEW: &str = "+1 555 111 3333";
/// Twelve TXT records of 200 bytes: more than 512 bytes, and more than 1232.
const BIG: &str = "big.5.5.5.1.e164.mimi.arpa.";
const WAIT: Duration = Duration::from_secs(3);
const BURST: u16 = 5000;

struct Dp {
    server: DpServer,
    dir: TempDir,
    keys: Keys,
    /// Provider b.example.'s query key ([[client]]).
    query_key: TsigKey,
    /// chat.example.'s UPDATE key ([[update]]).
    update_key: TsigKey,
}

/// The carrier's DP at .1 of test `t`: ALICE, BIG, a query key and an update key;
/// `listen` is the config's address (port 0 for any).
async fn start(t: u8, listen: SocketAddr, extra: &str) -> Dp {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, mut carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    for i in 0..12u8 {
        carrier.records.push(Record {
            name: n(BIG),
            ttl: 3600,
            data: RData::Txt(vec![vec![b'a' + i; 200].into()]),
            line: 0,
        });
    }
    carrier
        .save(&dir.path().join("carrier.zone"), WriteStyle::Native)
        .unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let query_key = TsigKey::generate(n("b-query."));
    query_key
        .save_new(dir.path().join("q.key"), KeyFileFormat::Bind)
        .unwrap();
    let update_key = TsigKey::generate(n("chat-update."));
    update_key
        .save_new(dir.path().join("u.key"), KeyFileFormat::Bind)
        .unwrap();
    let config = dir.path().join("dp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{listen}\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n\
             [access]\nanonymous_lookups_per_day = \"unlimited\"\n\
             [[client]]\nprovider = \"b.example.\"\ntsig = \"q.key\"\nlookups_per_day = 1000000\nburst = 1000000\n\
             [[update]]\nprovider = \"chat.example.\"\ntsig = \"u.key\"\n{extra}"
        ),
    )
    .unwrap();
    let server = timeout(Duration::from_secs(30), DpServer::start(&config))
        .await
        .expect("DP start timed out")
        .expect("DP start");
    Dp {
        server,
        dir,
        keys,
        query_key,
        update_key,
    }
}

fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(hn(name), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

fn ssi_query(id: u16, name: &str) -> Vec<u8> {
    query(id, name, RecordType::from(TYPE_SSI), Some(1232))
        .to_vec()
        .unwrap()
}

/// One datagram from `sock`; the reply's bytes, or None after `WAIT`.
async fn exchange(sock: &UdpSocket, server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    exchange_within(sock, server, bytes, WAIT).await
}

async fn exchange_within(
    sock: &UdpSocket,
    server: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = timeout(wait, sock.recv_from(&mut buf)).await.ok()?.unwrap();
    buf.truncate(len);
    Some(buf)
}

/// A name in the carrier's block, different for each `i`.
fn walk(i: u16) -> String {
    owner(&format!("+1 555 100 {i:04}")).to_string()
}

// ---------------------------------------------------------------------------------------
// (a) A burst from one socket

/// A receive buffer large enough for the whole burst's answers, so what is measured is
/// the server, not the client.
fn enlarge_receive_buffer(sock: &std::net::UdpSocket) {
    let size: libc::c_int = 16 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a c_int value and its size, on an open socket.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Sends `count` distinct queries (ids 0..count) from one non-blocking socket as fast as
/// it can, while a second thread collects the answers until all came or none came for
/// two seconds after the last send; returns how many were answered.
fn burst(server: SocketAddr, client: std::net::IpAddr, count: u16) -> usize {
    let sock = std::net::UdpSocket::bind((client, 0)).unwrap();
    enlarge_receive_buffer(&sock);
    sock.set_nonblocking(true).unwrap();
    let queries: Vec<Vec<u8>> = (0..count).map(|i| ssi_query(i, &walk(i))).collect();
    let reader = sock.try_clone().unwrap();
    let sent = Arc::new(AtomicBool::new(false));
    let done = sent.clone();
    let collector = std::thread::spawn(move || {
        let mut seen = vec![false; count as usize];
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        let mut last = Instant::now();
        while answered < count as usize {
            match reader.recv(&mut buf) {
                Ok(len) if len >= 12 => {
                    let id = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                    if id < seen.len() && !seen[id] {
                        seen[id] = true;
                        answered += 1;
                    }
                    last = Instant::now();
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if done.load(Ordering::Relaxed) && last.elapsed() > Duration::from_secs(2) {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => panic!("receive: {e}"),
            }
        }
        answered
    });
    let started = Instant::now();
    for q in &queries {
        loop {
            match sock.send_to(q, server) {
                Ok(_) => break,
                // The socket's own send buffer is full: as fast as it can means retrying.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("send: {e}"),
            }
        }
    }
    println!("burst: {count} queries sent in {:?}", started.elapsed());
    sent.store(true, Ordering::Relaxed);
    collector.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_5000_queries_from_one_socket_is_answered() {
    bounded(async {
        let dp = start(1, SocketAddr::new(ip(1, 1), 0), "").await;
        let server = dp.server.addrs[0];
        let answered = tokio::task::spawn_blocking(move || burst(server, ip(1, 9), BURST))
            .await
            .unwrap();
        let share = answered as f64 * 100.0 / BURST as f64;
        println!("burst: {answered} of {BURST} answered ({share:.1}%)");
        assert!(share >= 99.0, "only {share:.1}% of the burst answered");
        dp.server.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------
// (b) The general path

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsig_update_two_questions_and_truncation_behave_as_before() {
    bounded(async {
        let dp = start(2, SocketAddr::new(ip(2, 1), 0), "").await;
        let server = dp.server.addrs[0];
        let sock = UdpSocket::bind((ip(2, 9), 0)).await.unwrap();

        // A signed query gets a signed answer.
        let mut bytes = ssi_query(1, &owner(ALICE).to_string());
        let mac = tsig::sign_request(&mut bytes, &dp.query_key, now()).unwrap();
        let reply = exchange(&sock, server, &bytes).await.expect("answer");
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        tsig::verify_response(&reply, &dp.query_key, &mac, now())
            .expect("a signed query gets a signed answer");

        // An UPDATE over UDP is applied, and then served.
        let o = owner(NEW);
        let record = SignedMapping {
            owner: o.clone(),
            ttl: 60,
            ssi: mapping(&dp.keys.chat, &o, "carol", Context::Any, 10),
        };
        let (bytes, mac) =
            signed_update(&n(CARRIER), &[record], &dp.update_key, 77, now()).unwrap();
        let reply = exchange(&sock, server, &bytes).await.expect("answer");
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, 77);
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        tsig::verify_response(&reply, &dp.update_key, &mac, now()).expect("signed answer");
        let mut served = false;
        for _ in 0..50 {
            let reply = exchange(&sock, server, &ssi_query(2, &o.to_string()))
                .await
                .expect("answer");
            if Message::from_vec(&reply).unwrap().answers.len() == 1 {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served, "the update is served");

        // Two questions: FORMERR.
        let mut two = query(
            3,
            &owner(ALICE).to_string(),
            RecordType::from(TYPE_SSI),
            None,
        );
        two.add_query(Query::query(hn(CARRIER), RecordType::SOA));
        let reply = exchange(&sock, server, &two.to_vec().unwrap())
            .await
            .expect("answer");
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, 3);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

        // A large RRset: TC within 512 bytes without EDNS, within 1232 with it.
        for (edns, limit) in [(None, 512), (Some(4096), 1232)] {
            let q = query(4, BIG, RecordType::TXT, edns).to_vec().unwrap();
            let reply = exchange(&sock, server, &q).await.expect("answer");
            let m = Message::from_vec(&reply).unwrap();
            assert!(reply.len() <= limit, "{} bytes over {limit}", reply.len());
            assert!(m.metadata.truncation, "TC");
            assert!(m.answers.len() < 12);
            assert_eq!(m.edns.is_some(), edns.is_some());
        }
        dp.server.shutdown().await;
    })
    .await
}

/// The DP's handler without any fast answer: what the general path does on its own.
#[derive(Clone)]
struct GeneralOnly(DpHandler);

#[async_trait::async_trait]
impl RequestHandler for GeneralOnly {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        self.0.handle_request::<R, T>(request, handle).await
    }
}

impl StreamHandler for GeneralOnly {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_general_path_answers_byte_for_byte_as_hickorys_server() {
    bounded(async {
        let dp = start(3, SocketAddr::new(ip(3, 1), 0), "").await;
        let handler = DpHandler::new(dp.server.shared().clone());
        // The same handler (and zones) behind hickory's UDP server and behind ours.
        let mut hickory = hickory_server::Server::new(handler.clone());
        let socket = UdpSocket::bind((ip(3, 2), 0)).await.unwrap();
        let theirs = socket.local_addr().unwrap();
        hickory.register_socket(socket);
        let sockets = UdpSockets::bind(SocketAddr::new(ip(3, 3), 0), 2).unwrap();
        let ours = sockets.local_addr();
        let udp = sockets.serve(GeneralOnly(handler)).unwrap();

        let alice = owner(ALICE).to_string();
        let mut two = query(3, &alice, RecordType::from(TYPE_SSI), None);
        two.add_query(Query::query(hn(CARRIER), RecordType::SOA));
        let mut response = query(4, &alice, RecordType::from(TYPE_SSI), None);
        response.metadata.message_type = MessageType::Response;
        let mut notify = query(5, CARRIER, RecordType::SOA, None);
        notify.metadata.op_code = OpCode::Notify;
        let mut badvers = query(6, &alice, RecordType::from(TYPE_SSI), Some(1232));
        if let Some(e) = badvers.edns.as_mut() {
            e.set_version(1);
        }
        let mut unsigned_update = query(7, CARRIER, RecordType::SOA, None);
        unsigned_update.metadata.op_code = OpCode::Update;
        let mut cd = query(8, &alice, RecordType::from(TYPE_SSI), None);
        cd.metadata.checking_disabled = true;
        cd.metadata.recursion_desired = true;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("answer", ssi_query(1, &alice)),
            ("nxdomain", ssi_query(2, &walk(1))),
            ("no EDNS, CD and RD", cd.to_vec().unwrap()),
            (
                "TC at 512",
                query(9, BIG, RecordType::TXT, None).to_vec().unwrap(),
            ),
            (
                "TC at 1232",
                query(10, BIG, RecordType::TXT, Some(4096))
                    .to_vec()
                    .unwrap(),
            ),
            ("two questions", two.to_vec().unwrap()),
            ("NOTIFY", notify.to_vec().unwrap()),
            ("BADVERS", badvers.to_vec().unwrap()),
            ("unsigned UPDATE", unsigned_update.to_vec().unwrap()),
            ("outside the zones", ssi_query(11, "example.com.")),
            // A header promising a question that is not there: FORMERR, header only.
            (
                "malformed",
                vec![0x12, 0x34, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a'],
            ),
            ("truncated question", {
                let mut b = ssi_query(12, &alice);
                b.truncate(20);
                b
            }),
            ("a response", response.to_vec().unwrap()),
            (
                "a malformed response",
                vec![0xab, 0xcd, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            ),
            ("shorter than a header", vec![0x12, 0x34, 0x01, 0x00, 0, 1]),
        ];
        let mut answered = 0;
        for (what, bytes) in &cases {
            // A socket per exchange: a late answer cannot pass for the next one's.
            let wait = Duration::from_secs(1);
            let client = UdpSocket::bind((ip(3, 9), 0)).await.unwrap();
            let expected = exchange_within(&client, theirs, bytes, wait).await;
            let client = UdpSocket::bind((ip(3, 9), 0)).await.unwrap();
            let got = exchange_within(&client, ours, bytes, wait).await;
            assert_eq!(got, expected, "{what}");
            answered += usize::from(got.is_some());
        }
        // All but the response and the runt get an answer.
        assert_eq!(answered, cases.len() - 2);
        udp.shutdown().await;
        hickory.shutdown_gracefully().await.unwrap();
        dp.server.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------
// (c) The port

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_port_and_a_port_in_use_stays_in_use() {
    bounded(async {
        let dp = start(
            4,
            SocketAddr::new(ip(4, 1), 0),
            "[limits]\nudp_threads = 3\n",
        )
        .await;
        let addr = dp.server.addrs[0];
        let sock = UdpSocket::bind((ip(4, 9), 0)).await.unwrap();
        let reply = exchange(&sock, addr, &ssi_query(1, &owner(ALICE).to_string())).await;
        assert!(reply.is_some(), "answered");

        // A second server on the same address and port does not start (it would share
        // the port's queries with the first).
        let second = start_err(4, addr).await;
        assert!(second.contains("cannot listen on"), "{second}");
        let plain = std::net::UdpSocket::bind(addr);
        assert!(plain.is_err(), "the port is in use");

        dp.server.shutdown().await;
        std::net::UdpSocket::bind(addr).expect("UDP port released");
        std::net::TcpListener::bind(addr).expect("TCP port released");
        drop(dp.dir);
    })
    .await
}

/// Starts a DP like `start` on `listen`, expecting it to fail; the error.
async fn start_err(t: u8, listen: SocketAddr) -> String {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    carrier
        .save(&dir.path().join("carrier.zone"), WriteStyle::Native)
        .unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let config = dir.path().join("dp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{listen}\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n"
        ),
    )
    .unwrap();
    match DpServer::start(&config).await {
        Ok(_) => panic!("a second DP started on {listen}"),
        Err(e) => e.to_string(),
    }
}
