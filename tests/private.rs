//! Integration tests of private lookups (OPRF + keyword PIR over DNS, DESIGN.md section 7):
//! real DP servers with `[pir]` started in-process on loopback form a discovery tree, one DP
//! per zone, all on one port and told apart by address. Each test has its own block
//! 127.62.<test>.x: .1 root (mimi.arpa.), .2 e164, .3 1.e164, .4 the carrier 5.5.5.1.e164,
//! .5 a relay in front of the carrier (when the test needs to watch or hold its traffic),
//! .6 email, .7 example.com.email; other addresses as the test needs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData as HRData, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::pir::batch::BatchLayout;
use mimi_discovery::pir::carrier::{
    self, ede, parse_ede, PirCfgRecord, Request, Response, EDE_OPTION, EDNS_OPTION, KEY_CHUNK,
};
#[cfg(feature = "mulpir")]
use mimi_discovery::pir::mulpir::{MulPirLayout, DEGREE};
use mimi_discovery::pir::respire::RespireServer;
use mimi_discovery::pir::scheme::PirServer;
use mimi_discovery::pir::{db, oprf, Scheme, ZoneClient};
use mimi_discovery::record::{Context, Ssi, TYPE_PIR, TYPE_PIRCFG};
use mimi_discovery::resolver::{LookupResult, NotFound, Outcome, ResolveError, Resolver};
use mimi_discovery::zone::{RData, Record, WriteStyle, ZoneFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// Bound on one network wait of the test itself.
const T: Duration = Duration::from_secs(5);
/// Bound on one private lookup (key generation and upload included).
const LOOKUP_LIMIT: Duration = Duration::from_secs(30);
const TTL: u32 = 3600;

const ROOT: &str = "mimi.arpa.";
const E164: &str = "e164.mimi.arpa.";
const CC1: &str = "1.e164.mimi.arpa.";
const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const EMAIL: &str = "email.mimi.arpa.";
const EXAMPLE: &str = "example.com.email.mimi.arpa.";

/// The `[pir]` section of every DP unless a test says otherwise.
const PIR: &str = "[pir]\nthreads = 1\n";

/// One mapping (chat.example, any, priority 10).
const ALICE: &str = "+1 555 111 2222";
/// Two providers: chat business 20, talk personal 5.
const TWO: &str = "+1 555 111 3333";
/// Three providers (more than one slot holds): talk personal 5, meet any 10, chat
/// business 20.
const CAROL: &str = "+1 555 111 4444";
/// Only a personal mapping (talk).
const DAVE: &str = "+1 555 111 5555";
/// Only a TXT record.
const TXT_ONLY: &str = "+1 555 111 7777";
/// Another plain mapping in the carrier zone.
const OTHER: &str = "+1 555 111 8888";
/// Its owner exists only as an empty non-terminal (a TXT record sits below it).
const ENT: &str = "+1 555 111 6666";
/// Not in the carrier zone.
const NX: &str = "+1 555 111 0000";
/// Not in the country zone: 2.1.e164.mimi.arpa. does not exist.
const NX_COUNTRY: &str = "+1 202 555 0100";
const BOB: &str = "bob@example.com";
const NOBODY: &str = "nobody@example.com";

/// A forged record (Alice's, URI changed) at its own owner.
const FORGED: &str = "+1 555 122 0001";
/// One good (chat) and one forged (talk) record.
const MIXED: &str = "+1 555 122 0010";

mod common;
use common::*;

/// This file's address block: 127.62.t.x.
const BLOCK: u8 = 62;
/// Timeouts that survive a busy machine (PIR answers take tens of milliseconds).
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);
const RESOLVER_RETRIES: u32 = 1;
/// Every DP of these trees offers private lookups.
const CONFIG_EXTRA: &str = PIR;

fn push_txt(z: &mut ZoneFile, name: &Name, text: &str) {
    z.records.push(Record {
        name: name.clone(),
        ttl: TTL,
        data: RData::Txt(vec![text.as_bytes().to_vec().into()]),
        line: 0,
    });
}

// ---------------------------------------------------------------------------------------
// Zones of the standard tree

fn ns(zone: &str) -> Name {
    n(&format!("ns1.{zone}"))
}

fn root_zone(t: u8) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(ROOT), &[(ns(ROOT), ip(t, 1))], TTL, 1);
    z.set_delegation(&n(E164), &[(ns(E164), ip(t, 2))], TTL);
    z.set_delegation(&n(EMAIL), &[(ns(EMAIL), ip(t, 6))], TTL);
    z
}

fn e164_zone(t: u8) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(E164), &[(ns(E164), ip(t, 2))], TTL, 1);
    z.set_delegation(&n(CC1), &[(ns(CC1), ip(t, 3))], TTL);
    z
}

/// The country zone; its delegation of the carrier zone points at 127.62.t.`carrier`
/// (the carrier DP, or a relay in front of it).
fn cc1_zone(t: u8, carrier: u8) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(CC1), &[(ns(CC1), ip(t, 3))], TTL, 1);
    z.set_delegation(&n(CARRIER), &[(ns(CARRIER), ip(t, carrier))], TTL);
    z
}

/// The carrier zone with the mappings the constants describe; one name server, at
/// 127.62.t.`carrier`.
fn carrier_zone(t: u8, k: &Keys, carrier: u8, serial: u32) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(CARRIER), &[(ns(CARRIER), ip(t, carrier))], TTL, serial);
    let o = owner(ALICE);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "alice", Context::Any, 10),
    );
    let o = owner(TWO);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "two-work", Context::Business, 20),
    );
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.talk, &o, "two-home", Context::Personal, 5),
    );
    let o = owner(CAROL);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "carol-work", Context::Business, 20),
    );
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.talk, &o, "carol-home", Context::Personal, 5),
    );
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.meet, &o, "carol", Context::Any, 10),
    );
    let o = owner(DAVE);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.talk, &o, "dave", Context::Personal, 1),
    );
    let o = owner(OTHER);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "other", Context::Any, 10),
    );
    push_txt(&mut z, &owner(TXT_ONLY), "no mapping here");
    // A name below ENT's owner makes that owner an empty non-terminal.
    let below = Name::from_labels([&b"x"[..]], &owner(ENT)).unwrap();
    push_txt(&mut z, &below, "below an identifier");
    z
}

fn email_zone(t: u8) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(EMAIL), &[(ns(EMAIL), ip(t, 6))], TTL, 1);
    z.set_delegation(&n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], TTL);
    z
}

fn example_zone(t: u8, k: &Keys) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], TTL, 1);
    let o = owner(BOB);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "bob", Context::Any, 10),
    );
    z
}

/// A zone, the addresses (127.62.t.x) of the DPs serving it, whether they serve records
/// that fail the checks, and their `[pir]` section.
/// Index of the carrier zone in `std_specs`.
const CARRIER_SPEC: usize = 3;

/// The standard tree with `carrier` as the carrier zone, served by one DP at .4; the
/// country zone's delegation points at .`glue` (4, or 5 for a relay).
fn std_specs(t: u8, k: &Keys, carrier: ZoneFile, glue: u8) -> Vec<Spec> {
    vec![
        spec(root_zone(t), &[1]),
        spec(e164_zone(t), &[2]),
        spec(cc1_zone(t, glue), &[3]),
        spec(carrier, &[4]),
        spec(email_zone(t), &[6]),
        spec(example_zone(t, k), &[7]),
    ]
}

// ---------------------------------------------------------------------------------------
// A running tree: tests/common

async fn public(
    r: &Resolver,
    s: &str,
    context: Option<Context>,
) -> Result<LookupResult, ResolveError> {
    timeout(LOOKUP_LIMIT, r.lookup(&sii(s), context))
        .await
        .unwrap_or_else(|_| panic!("lookup of {s} timed out"))
}

async fn private(
    r: &Resolver,
    s: &str,
    context: Option<Context>,
) -> Result<LookupResult, ResolveError> {
    timeout(LOOKUP_LIMIT, r.lookup_private(&sii(s), context))
        .await
        .unwrap_or_else(|_| panic!("private lookup of {s} timed out"))
}

/// A private lookup that must succeed.
async fn private_ok(r: &Resolver, s: &str) -> LookupResult {
    private(r, s, None)
        .await
        .unwrap_or_else(|e| panic!("private lookup of {s} failed: {e}"))
}

/// The URIs of a Found outcome, in order.
fn found(r: &LookupResult) -> Vec<String> {
    match &r.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        Outcome::NotDiscoverable(nf) => panic!("{}: not discoverable: {nf}", r.owner),
    }
}

fn not_found(r: &LookupResult) -> NotFound {
    match &r.outcome {
        Outcome::NotDiscoverable(nf) => *nf,
        Outcome::Found(m) => panic!("{}: found {m:?}", r.owner),
    }
}

/// What a lookup found, comparable between public and private lookups: every verified
/// mapping in order (owner, SSI), and the rejected records.
type Comparable = (Vec<(Name, Ssi)>, Vec<(String, String, String)>);

fn comparable(r: &LookupResult) -> Comparable {
    let mappings = match &r.outcome {
        Outcome::Found(m) => m.iter().map(|m| (m.owner.clone(), m.ssi.clone())).collect(),
        Outcome::NotDiscoverable(_) => Vec::new(),
    };
    let rejected = r
        .rejected
        .iter()
        .map(|x| (x.provider.clone(), x.ssi.clone(), x.reason.clone()))
        .collect();
    (mappings, rejected)
}

/// Asserts a private lookup found what the public lookup found: the same mappings, or both
/// not discoverable for the same reason (a private lookup cannot tell an empty name from a
/// missing one, so the public NoMappings may be the private NoSuchName), from the same zone.
fn assert_same(s: &str, public: &LookupResult, private: &LookupResult) {
    assert_eq!(private.owner, public.owner, "{s}: owner");
    assert_eq!(private.zone, public.zone, "{s}: zone");
    assert_eq!(comparable(private), comparable(public), "{s}: mappings");
    match (&public.outcome, &private.outcome) {
        (Outcome::Found(_), Outcome::Found(_)) => {}
        (Outcome::NotDiscoverable(a), Outcome::NotDiscoverable(b)) => assert!(
            a == b || (*a == NotFound::NoMappings && *b == NotFound::NoSuchName),
            "{s}: public {a}, private {b}"
        ),
        (a, b) => panic!("{s}: public {a:?}, private {b:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Raw DNS and carrier exchanges

fn question(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(hn(name), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m
}

/// One question over UDP; the checked reply.
async fn ask_udp(server: SocketAddr, msg: &Message) -> Message {
    let sock = UdpSocket::bind((server.ip(), 0)).await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

/// A private-lookup request (type PIR) at `qname`, with `option` as EDNS option 65001.
fn pir_question(qname: &str, option: Option<Vec<u8>>) -> Message {
    let mut m = question(qname, RecordType::Unknown(TYPE_PIR));
    if let Some(bytes) = option {
        let mut e = m.edns.clone().unwrap();
        e.options_mut()
            .insert(EdnsOption::Unknown(EDNS_OPTION, bytes));
        m.set_edns(e);
    }
    m
}

/// The extended DNS error of a reply.
fn ede_of(m: &Message) -> Option<(u16, String)> {
    match m.edns.as_ref()?.option(EdnsCode::from(EDE_OPTION))? {
        EdnsOption::Unknown(_, b) => parse_ede(b),
        other => panic!("EDE option not raw: {other:?}"),
    }
}

/// Asserts a refusal: RCODE and extended-error code.
fn assert_refusal(m: &Message, rcode: ResponseCode, code: u16, what: &str) {
    assert_eq!(m.metadata.response_code, rcode, "{what}: {m:?}");
    assert!(m.answers.is_empty(), "{what}: {:?}", m.answers);
    let (got, text) = ede_of(m).unwrap_or_else(|| panic!("{what}: no extended DNS error"));
    assert_eq!(got, code, "{what}: EDE {got} ({text})");
    assert!(!text.is_empty(), "{what}: EDE without text");
}

/// The PIR record of a successful reply.
fn pir_response(m: &Message) -> Response {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    let rdata = m
        .answers
        .iter()
        .find_map(|r| match &r.data {
            HRData::Unknown { code, rdata } if u16::from(*code) == TYPE_PIR => {
                Some(rdata.anything.clone())
            }
            _ => None,
        })
        .expect("a PIR record");
    Response::decode(&rdata).unwrap()
}

/// The PIRCFG a DP publishes for `zone`.
async fn pircfg(server: SocketAddr, zone: &str) -> PirCfgRecord {
    let m = ask_udp(
        server,
        &question(&format!("_pir.{zone}"), RecordType::Unknown(TYPE_PIRCFG)),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    let rdata = m
        .answers
        .iter()
        .find_map(|r| match &r.data {
            HRData::Unknown { rdata, .. } => Some(rdata.anything.clone()),
            _ => None,
        })
        .expect("a PIRCFG record");
    PirCfgRecord::decode(&rdata).unwrap()
}

/// A TCP connection to a DP from a chosen source address.
struct Conn {
    stream: TcpStream,
}

impl Conn {
    async fn open(src: IpAddr, server: SocketAddr) -> Conn {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(src, 0)).unwrap();
        let stream = timeout(T, socket.connect(server))
            .await
            .expect("connect timed out")
            .expect("connect");
        Conn { stream }
    }

    async fn ask(&mut self, msg: &Message) -> Message {
        let bytes = msg.to_vec().unwrap();
        let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        self.stream.write_all(&frame).await.unwrap();
        let reply = timeout(LOOKUP_LIMIT, async {
            let len = self.stream.read_u16().await.unwrap() as usize;
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await.unwrap();
            buf
        })
        .await
        .expect("no TCP answer");
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.id, msg.metadata.id);
        reply
    }

    /// A carrier request for `zone`.
    async fn request(&mut self, zone: &str, request: &Request) -> Message {
        self.ask(&pir_question(
            &format!("_pir.{zone}"),
            Some(request.encode()),
        ))
        .await
    }

    /// OPRF outputs of owner names, checked against the published key.
    async fn oprf(
        &mut self,
        zone: &str,
        cfg: &PirCfgRecord,
        owners: &[&Name],
    ) -> Vec<oprf::OprfOutput> {
        let inputs: Vec<String> = owners.iter().map(|o| o.to_string()).collect();
        let inputs: Vec<&[u8]> = inputs.iter().map(|s| s.as_bytes()).collect();
        let (state, blinded) = oprf::blind(&inputs).unwrap();
        let reply = self
            .request(
                zone,
                &Request::Oprf {
                    epoch: cfg.config.epoch,
                    blinded,
                },
            )
            .await;
        match pir_response(&reply) {
            Response::Oprf(evaluated) => state
                .finalize(&evaluated, &cfg.config.oprf_public_key)
                .unwrap(),
            other => panic!("OPRF answered with {other:?}"),
        }
    }

    /// Uploads an evaluation key in chunks.
    async fn upload(&mut self, zone: &str, epoch: u64, key_id: [u8; 16], key: &[u8]) {
        let chunks: Vec<&[u8]> = key.chunks(KEY_CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            let reply = self
                .request(
                    zone,
                    &Request::Key {
                        epoch,
                        key_id,
                        index: i as u16,
                        count: chunks.len() as u16,
                        bytes: c.to_vec(),
                    },
                )
                .await;
            match pir_response(&reply) {
                Response::Key { complete, .. } => {
                    assert_eq!(complete, i + 1 == chunks.len(), "chunk {i}")
                }
                other => panic!("key chunk answered with {other:?}"),
            }
        }
    }

    /// The two PIR answers for buckets `buckets` of `shard`.
    async fn fetch(
        &mut self,
        zone: &str,
        epoch: u64,
        key_id: [u8; 16],
        shard: u32,
        queries: [Vec<u8>; 2],
    ) -> [Vec<u8>; 2] {
        let mut out = Vec::new();
        for query in queries {
            let reply = self
                .request(
                    zone,
                    &Request::Query {
                        epoch,
                        key_id,
                        shard,
                        query,
                    },
                )
                .await;
            match pir_response(&reply) {
                Response::Query(b) => out.push(b),
                other => panic!("PIR query answered with {other:?}"),
            }
        }
        [out[0].clone(), out[1].clone()]
    }
}

// ---------------------------------------------------------------------------------------
// A relay in front of the carrier DP: forwards UDP and TCP, records every TCP frame and
// UDP datagram, and can hold the first TCP connection until the test lets it through.

#[derive(Debug, Clone)]
struct Frame {
    /// TCP connection number; None for UDP.
    conn: Option<usize>,
    to_server: bool,
    bytes: Vec<u8>,
}

type Gate = (oneshot::Sender<()>, oneshot::Receiver<()>);

struct Relay {
    frames: Arc<Mutex<Vec<Frame>>>,
    gate: Arc<Mutex<Option<Gate>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conn: usize,
    to_server: bool,
    frames: Arc<Mutex<Vec<Frame>>>,
) {
    while let Ok(len) = from.read_u16().await {
        let mut buf = vec![0u8; usize::from(len)];
        if from.read_exact(&mut buf).await.is_err() {
            break;
        }
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        frames.lock().unwrap().push(Frame {
            conn: Some(conn),
            to_server,
            bytes: buf,
        });
        if to.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Relay {
    async fn start(listen: SocketAddr, target: SocketAddr) -> Relay {
        let frames: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let gate: Arc<Mutex<Option<Gate>>> = Arc::default();
        let tcp = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("relay TCP {listen}: {e}"));
        let udp = Arc::new(
            UdpSocket::bind(listen)
                .await
                .unwrap_or_else(|e| panic!("relay UDP {listen}: {e}")),
        );
        let mut tasks = Vec::new();
        let (f, g) = (frames.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = 0;
            while let Ok((client, _)) = tcp.accept().await {
                let conn = next;
                next += 1;
                let (frames, gate) = (f.clone(), g.clone());
                tokio::spawn(async move {
                    let held = gate.lock().unwrap().take();
                    if let Some((arrived, proceed)) = held {
                        let _ = arrived.send(());
                        let _ = proceed.await;
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(
                        pump(cr, sw, conn, true, frames.clone()),
                        pump(sr, cw, conn, false, frames)
                    );
                });
            }
        }));
        let f = frames.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((len, from)) = udp.recv_from(&mut buf).await {
                let data = buf[..len].to_vec();
                f.lock().unwrap().push(Frame {
                    conn: None,
                    to_server: true,
                    bytes: data.clone(),
                });
                let (frames, udp) = (f.clone(), udp.clone());
                tokio::spawn(async move {
                    let Ok(s) = UdpSocket::bind((listen.ip(), 0)).await else {
                        return;
                    };
                    if s.send_to(&data, target).await.is_err() {
                        return;
                    }
                    let mut b = vec![0u8; 65535];
                    if let Ok(Ok((n, _))) = timeout(T, s.recv_from(&mut b)).await {
                        frames.lock().unwrap().push(Frame {
                            conn: None,
                            to_server: false,
                            bytes: b[..n].to_vec(),
                        });
                        let _ = udp.send_to(&b[..n], from).await;
                    }
                });
            }
        }));
        Relay {
            frames,
            gate,
            tasks,
        }
    }

    /// Takes the frames recorded so far.
    fn take(&self) -> Vec<Frame> {
        std::mem::take(&mut *self.frames.lock().unwrap())
    }

    /// Holds the next TCP connection: `arrived` fires when it comes, and it goes through
    /// to the DP when `proceed` does.
    fn hold_next(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (arrived_tx, arrived_rx) = oneshot::channel();
        let (proceed_tx, proceed_rx) = oneshot::channel();
        *self.gate.lock().unwrap() = Some((arrived_tx, proceed_rx));
        (arrived_rx, proceed_tx)
    }
}

/// The carrier request inside a client frame.
fn request_of(f: &Frame) -> Option<Request> {
    let m = Message::from_vec(&f.bytes).ok()?;
    match m.edns.as_ref()?.option(EdnsCode::from(EDNS_OPTION))? {
        EdnsOption::Unknown(_, b) => Request::decode(b).ok(),
        _ => None,
    }
}

/// The extended-error code inside a server frame.
fn ede_code_of(f: &Frame) -> Option<u16> {
    ede_of(&Message::from_vec(&f.bytes).ok()?).map(|(c, _)| c)
}

/// Frame lengths in order: (TCP?, towards the DP?, bytes).
fn shape(frames: &[Frame]) -> Vec<(bool, bool, usize)> {
    frames
        .iter()
        .map(|f| (f.conn.is_some(), f.to_server, f.bytes.len()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Private lookups find what public lookups find

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_lookup_finds_exactly_what_the_public_lookup_finds() {
    bounded(async {
        let t = 1;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 4, 1), 4),
        )
        .await;
        let r = tree.resolver();

        let cases: [(&str, Option<Context>); 12] = [
            (ALICE, None),
            (TWO, None),
            (TWO, Some(Context::Personal)),
            (CAROL, None),
            (DAVE, Some(Context::Business)),
            (BOB, None),
            (ENT, None),
            (TXT_ONLY, None),
            (NX, None),
            (NX_COUNTRY, None),
            (NOBODY, None),
            (OTHER, None),
        ];
        for (s, context) in cases {
            let p = public(&r, s, context)
                .await
                .unwrap_or_else(|e| panic!("public lookup of {s}: {e}"));
            let q = private(&r, s, context)
                .await
                .unwrap_or_else(|e| panic!("private lookup of {s}: {e}"));
            assert_same(s, &p, &q);
            assert!(!q.from_cache, "{s}: a private lookup is never cached");
            if matches!(q.outcome, Outcome::Found(_)) {
                assert_eq!(
                    q.server,
                    Some(tree.addr(if s == BOB { 7 } else { 4 })),
                    "{s}"
                );
            }
        }

        // The outcomes themselves, so the comparison is not vacuous.
        let res = private_ok(&r, ALICE).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.zone, Some(n(CARRIER)));
        let res = private_ok(&r, TWO).await;
        assert_eq!(
            found(&res),
            [uri(&k.talk, "two-home"), uri(&k.chat, "two-work")]
        );
        // Three providers spill over more than one slot and still come back whole.
        let res = private_ok(&r, CAROL).await;
        assert_eq!(
            found(&res),
            [
                uri(&k.talk, "carol-home"),
                uri(&k.meet, "carol"),
                uri(&k.chat, "carol-work")
            ]
        );
        let res = private(&r, CAROL, Some(Context::Business)).await.unwrap();
        assert_eq!(
            found(&res),
            [uri(&k.meet, "carol"), uri(&k.chat, "carol-work")]
        );
        let res = private(&r, DAVE, Some(Context::Business)).await.unwrap();
        assert_eq!(not_found(&res), NotFound::NoneForContext(Context::Business));
        let res = private_ok(&r, BOB).await;
        assert_eq!(found(&res), [uri(&k.chat, "bob")]);
        assert_eq!(res.zone, Some(n(EXAMPLE)));
        for s in [ENT, TXT_ONLY, NX, NOBODY] {
            let res = private_ok(&r, s).await;
            assert_eq!(not_found(&res), NotFound::NoSuchName, "{s}");
        }
        let res = private_ok(&r, NX_COUNTRY).await;
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.zone, Some(n(CC1)));
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. Records whose signature fails inside a slot are rejected

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_signature_fails_inside_a_slot_is_rejected() {
    bounded(async {
        let t = 2;
        let k = Keys::new();
        let mut z = carrier_zone(t, &k, 4, 1);
        let alice = owner(ALICE);
        // Alice's record with its URI changed, at its own owner.
        let mut s = mapping(&k.chat, &alice, "alice", Context::Any, 10);
        s.uri = uri(&k.chat, "mallory");
        push_ssi(&mut z, &owner(FORGED), TTL, s);
        // One good (chat), one forged (talk).
        let o = owner(MIXED);
        push_ssi(
            &mut z,
            &o,
            TTL,
            mapping(&k.chat, &o, "mixed", Context::Any, 10),
        );
        let mut s = mapping(&k.talk, &o, "mixed", Context::Any, 5);
        s.uri = uri(&k.talk, "mallory");
        push_ssi(&mut z, &o, TTL, s);
        let mut specs = std_specs(t, &k, z, 4);
        specs[CARRIER_SPEC].invalid = true;
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();

        // Every record bad: AllRejected, with the signature as the reason.
        let e = private(&r, FORGED, None).await.unwrap_err();
        let ResolveError::AllRejected { owner: o, rejected } = e else {
            panic!("FORGED: {e}");
        };
        assert_eq!(o, owner(FORGED));
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].provider, "chat.example.");
        assert_eq!(rejected[0].ssi, uri(&k.chat, "mallory"));
        assert!(
            rejected[0].reason.contains("signature does not verify"),
            "{:?}",
            rejected[0].reason
        );
        // The public lookup says the same.
        match public(&r, FORGED, None).await {
            Err(ResolveError::AllRejected { rejected: p, .. }) => assert_eq!(p, rejected),
            other => panic!("public FORGED: {other:?}"),
        }

        // A good and a bad record: the good one, the bad one listed.
        let res = private_ok(&r, MIXED).await;
        assert_eq!(found(&res), [uri(&k.chat, "mixed")]);
        assert_eq!(res.rejected.len(), 1, "{:?}", res.rejected);
        assert_eq!(res.rejected[0].provider, "talk.example.");
        assert_eq!(res.rejected[0].ssi, uri(&k.talk, "mallory"));
        assert!(res.rejected[0].reason.contains("signature does not verify"));
        let p = public(&r, MIXED, None).await.unwrap();
        assert_same(MIXED, &p, &res);

        // The good records of the zone still verify.
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        // The lookup deadline bounds a private lookup as a whole (walk, OPRF, PIR).
        let mut c = tree.config();
        c.limits.lookup_deadline = Duration::from_millis(5);
        let hurried = tree.resolver_with(c);
        match private(&hurried, MIXED, None).await {
            Err(ResolveError::Deadline { owner: o, .. }) => assert_eq!(o, owner(MIXED)),
            other => panic!("a 5 ms deadline: {other:?}"),
        }
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. A client cannot open another identifier's slot

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_open_another_identifiers_slot() {
    bounded(async {
        let t = 10;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 4, 1), 4),
        )
        .await;
        let dp = tree.addr(4);
        let cfg = pircfg(dp, CARRIER).await;
        let epoch = cfg.config.epoch;
        let mut c = Conn::open(ip(t, 1), dp).await;
        // The client is entitled to Alice's OPRF output and, for the check, Other's.
        let (a, b) = (owner(ALICE), owner(OTHER));
        let ys = c.oprf(CARRIER, &cfg, &[&a, &b]).await;
        let (client, key) = ZoneClient::new(cfg.config.clone()).unwrap();
        let key_id: [u8; 16] = rand::random();
        c.upload(CARRIER, epoch, key_id, &key).await;

        let records = |chunk: Option<db::Chunk>| -> Vec<String> {
            chunk
                .map(|ch| db::assemble(&[ch]).unwrap())
                .unwrap_or_default()
                .iter()
                .map(|w| Ssi::from_wire(w).unwrap().uri)
                .collect()
        };
        let probe_a = client.probe(&ys[0], 0);
        let probe_b = client.probe(&ys[1], 0);
        // Other's buckets, fetched.
        let resp_b = c
            .fetch(
                CARRIER,
                epoch,
                key_id,
                probe_b.shard,
                client.queries(&probe_b).unwrap(),
            )
            .await;
        // With Other's y, Other's slot opens...
        let opened = client.open(&probe_b, [&resp_b[0], &resp_b[1]]).unwrap();
        assert_eq!(records(opened), [uri(&k.chat, "other")]);
        // ...with Alice's keys, the same buckets yield nothing of Other's (at most Alice's
        // own slot, should it share a bucket).
        let mut hybrid = probe_a.clone();
        hybrid.buckets = probe_b.buckets;
        match client.open(&hybrid, [&resp_b[0], &resp_b[1]]) {
            Ok(chunk) => {
                let got = records(chunk);
                assert!(
                    got.is_empty() || got == [uri(&k.chat, "alice")],
                    "Alice's keys opened {got:?}"
                );
            }
            Err(e) => panic!("opening with the wrong keys: {e}"),
        }
        // And Alice's own buckets with Other's keys: nothing of Alice's.
        let resp_a = c
            .fetch(
                CARRIER,
                epoch,
                key_id,
                probe_a.shard,
                client.queries(&probe_a).unwrap(),
            )
            .await;
        assert_eq!(
            records(client.open(&probe_a, [&resp_a[0], &resp_a[1]]).unwrap()),
            [uri(&k.chat, "alice")]
        );
        let mut hybrid = probe_b.clone();
        hybrid.buckets = probe_a.buckets;
        let got = records(client.open(&hybrid, [&resp_a[0], &resp_a[1]]).unwrap());
        assert!(
            got.is_empty() || got == [uri(&k.chat, "other")],
            "Other's keys opened {got:?}"
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 4. The DP's logs of private lookups hold neither identifier nor owner name

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dps_trace_logs_of_private_lookups_hold_no_identifier_or_owner_name() {
    // Other tests of this binary make public lookups, which the DPs log by owner name:
    // this one runs alone in a child process.
    if std::env::var_os(CHILD_ENV).is_none() {
        let out =
            in_child("the_dps_trace_logs_of_private_lookups_hold_no_identifier_or_owner_name")
                .await;
        assert!(
            out.status.success(),
            "child: {:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    bounded(async {
        let logs = dp_logs();
        let t = 3;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 4, 1), 4),
        )
        .await;
        let loaded = logs_text(&logs);
        let r = tree.resolver();
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        assert_eq!(found(&private_ok(&r, BOB).await), [uri(&k.chat, "bob")]);
        assert_eq!(not_found(&private_ok(&r, NX).await), NotFound::NoSuchName);
        let all = logs_text(&logs);
        let during = &all[loaded.len()..];

        // The capture works: the DPs logged the queries they saw, at debug.
        assert!(
            during.contains(&format!("_pir.{CARRIER}")),
            "no DP query log captured:\n{during}"
        );
        let bob = owner(BOB).to_string();
        let hash_label = bob.split('.').next().unwrap().to_string();
        let secrets = [
            "+15551112222".to_string(),
            "15551112222".to_string(),
            "5551112222".to_string(),
            owner(ALICE).to_string().trim_end_matches('.').to_string(),
            "2.2.2.2.1.1.1.5.5.5.1".to_string(),
            owner(NX).to_string().trim_end_matches('.').to_string(),
            "15551110000".to_string(),
            BOB.to_string(),
            hash_label.clone(),
            bob.trim_end_matches('.').to_string(),
        ];
        for s in &secrets {
            assert!(!all.contains(s.as_str()), "DP logs name {s:?}:\n{all}");
        }

        // Control: a public lookup does put the owner name in the DPs' logs, so the
        // assertions above could have failed.
        assert_eq!(
            found(&public(&r, ALICE, None).await.unwrap()),
            [uri(&k.chat, "alice")]
        );
        let after = logs_text(&logs);
        assert!(
            after.contains(owner(ALICE).to_string().trim_end_matches('.')),
            "a public lookup should be logged by owner name"
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Sizes do not depend on presence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_sizes_are_identical_for_present_and_absent_identifiers() {
    bounded(async {
        let t = 4;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 5, 1), 5),
        )
        .await;
        let relay = Relay::start(tree.addr(5), tree.addr(4)).await;

        // Cold: a fresh client (key upload included) for a present and an absent number.
        let r = tree.resolver();
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        let cold_present = relay.take();
        let r2 = tree.resolver();
        assert_eq!(not_found(&private_ok(&r2, NX).await), NotFound::NoSuchName);
        let cold_absent = relay.take();
        assert!(
            cold_present
                .iter()
                .any(|f| matches!(request_of(f), Some(Request::Key { .. }))),
            "the first lookup uploads its key"
        );
        assert_eq!(shape(&cold_present), shape(&cold_absent), "cold lookups");

        // Warm: the key is on the DP; present, absent, an empty name, an empty
        // non-terminal.
        let mut shapes = Vec::new();
        for (s, present) in [
            (OTHER, true),
            (NX, false),
            (TXT_ONLY, false),
            (ENT, false),
            (ALICE, true),
        ] {
            let res = private_ok(&r, s).await;
            assert_eq!(matches!(res.outcome, Outcome::Found(_)), present, "{s}");
            let frames = relay.take();
            let tcp: Vec<&Frame> = frames.iter().filter(|f| f.conn.is_some()).collect();
            // OPRF, then two PIR queries per published probe, each answered: one
            // connection, 2 + 4 x probes frames.
            assert!(
                tcp.len() >= 6 && (tcp.len() - 2).is_multiple_of(4),
                "{s}: {:?}",
                shape(&frames)
            );
            assert!(
                tcp.iter().all(|f| f.conn == tcp[0].conn),
                "{s}: one connection"
            );
            shapes.push((s, shape(&frames)));
        }
        for (s, sh) in &shapes[1..] {
            assert_eq!(sh, &shapes[0].1, "{s} against {}", shapes[0].0);
        }
        tree.shutdown().await;
    })
    .await;
}

/// A contact sync against a DP that offers batch queries (`[pir] batch_lookups`): the
/// resolver fetches the identifiers' slots in batches, one query per PIR bucket, and finds
/// exactly what public lookups find, spilled multi-provider records included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_sync_through_batch_queries_finds_what_public_lookups_find() {
    bounded(async {
        let t = 12;
        let k = Keys::new();
        let mut specs = std_specs(t, &k, carrier_zone(t, &k, 5, 1), 5);
        specs[CARRIER_SPEC].config_extra = format!("{PIR}batch_lookups = 8\n");
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let relay = Relay::start(tree.addr(5), tree.addr(4)).await;
        let cfg = pircfg(tree.addr(4), CARRIER).await;
        assert_eq!(cfg.config.batch(), 16);
        let buckets = BatchLayout::new(cfg.config.buckets as usize, cfg.config.batch())
            .expect("layout")
            .buckets();

        let r = tree.resolver();
        let names = [ALICE, TWO, CAROL, DAVE, TXT_ONLY, OTHER, ENT, NX];
        let siis: Vec<_> = names.iter().map(|s| sii(s)).collect();
        let batch = timeout(LOOKUP_LIMIT, r.lookup_private_batch(&siis, None))
            .await
            .expect("the batch timed out");
        let frames = relay.take();
        for (s, got) in names.iter().zip(batch) {
            let got = got.unwrap_or_else(|e| panic!("private lookup of {s}: {e}"));
            let p = public(&r, s, None).await.expect("public lookup");
            assert_same(s, &p, &got);
        }
        // Batch queries (message kind 2), a whole number of batches of one per bucket.
        let batch_queries = frames
            .iter()
            .filter(|f| matches!(request_of(f), Some(Request::Query { query, .. }) if query.get(3) == Some(&2)))
            .count();
        assert!(
            batch_queries > 0 && batch_queries.is_multiple_of(buckets),
            "{batch_queries} batch queries for {buckets} buckets"
        );
        tree.shutdown().await;
    })
    .await;
}

/// An identifier with two or three providers needs more slots than one holds (a 256-byte
/// slot takes one SSI record), and the client pads only to one probe: its lookup sends
/// two or four more PIR queries than one for an absent number, so the DP (and anyone
/// watching the connection) learns that it is present and how many mappings it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_provider_identifier_looks_like_an_absent_one_on_the_wire() {
    bounded(async {
        let t = 11;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 5, 1), 5),
        )
        .await;
        let relay = Relay::start(tree.addr(5), tree.addr(4)).await;
        let r = tree.resolver();
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        relay.take();
        assert_eq!(not_found(&private_ok(&r, NX).await), NotFound::NoSuchName);
        let absent = shape(&relay.take());
        for (s, providers) in [(TWO, 2), (CAROL, 3)] {
            assert_eq!(found(&private_ok(&r, s).await).len(), providers);
            assert_eq!(shape(&relay.take()), absent, "{s} against an absent number");
        }
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 6. Rate limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_class_stops_an_enumeration_loop_per_client_address() {
    bounded(async {
        let t = 5;
        let k = Keys::new();
        let mut specs = std_specs(t, &k, carrier_zone(t, &k, 4, 1), 4);
        // Private lookups count against the anonymous class of the resolver's address:
        // the walk's queries, one OPRF evaluation and two PIR queries each.
        specs[CARRIER_SPEC].config_extra =
            format!("[access]\nanonymous_lookups_per_day = 12\nanonymous_burst = 12\n{PIR}");
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();

        // An enumeration loop over the block: the first lookups pass, then every one is
        // refused.
        let mut outcomes = Vec::new();
        for i in 0..6 {
            let number = format!("+1 555 111 {:04}", 2222 + i);
            match private(&r, &number, None).await {
                Ok(res) => outcomes.push(Ok(matches!(res.outcome, Outcome::Found(_)))),
                Err(e) => outcomes.push(Err(e)),
            }
        }
        let passed = outcomes.iter().take_while(|o| o.is_ok()).count();
        assert!((1..6).contains(&passed), "{passed} of 6 lookups passed");
        for (i, o) in outcomes.iter().enumerate().skip(passed) {
            match o {
                Err(ResolveError::Private { zone, reason }) => {
                    assert_eq!(zone, &n(CARRIER));
                    assert!(reason.contains("lookups"), "{reason}");
                }
                Err(ResolveError::NoServerAnswered { .. } | ResolveError::BadAnswer { .. }) => {}
                o => panic!("lookup {i} after the quota: {o:?}"),
            }
        }
        assert_eq!(outcomes[0].as_ref().ok(), Some(&true), "Alice found");
        // Public lookups count against the same class.
        assert!(public(&r, "+1 555 111 9999", None).await.is_err());

        // Another client address still gets evaluations; this one stays refused.
        let dp = tree.addr(4);
        let cfg = pircfg(dp, CARRIER).await;
        let mut other = Conn::open(ip(t, 99), dp).await;
        let ys = other.oprf(CARRIER, &cfg, &[&owner(ALICE)]).await;
        assert_eq!(ys.len(), 1);
        let mut same = Conn::open(IpAddr::V4(Ipv4Addr::LOCALHOST), dp).await;
        let (_, blinded) = oprf::blind(&[owner(ALICE).to_string().as_bytes()]).unwrap();
        let reply = same
            .request(
                CARRIER,
                &Request::Oprf {
                    epoch: cfg.config.epoch,
                    blinded,
                },
            )
            .await;
        assert_refusal(
            &reply,
            ResponseCode::Refused,
            ede::RATE_LIMITED,
            "127.0.0.1",
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 7. Key eviction

/// Memory the DP counts for one client's parsed evaluation key (its `key_memory_bytes`).
fn key_memory(cfg: &PirCfgRecord) -> usize {
    let shape = cfg.config.shape();
    match Scheme::from_id(cfg.config.scheme).unwrap() {
        #[cfg(feature = "mulpir")]
        Scheme::MulPir => {
            let level = MulPirLayout::new(&shape).unwrap().level;
            (level + 1) * 2 * 3 * 4 * DEGREE * 8
        }
        #[cfg(not(feature = "mulpir"))]
        Scheme::MulPir => unreachable!("from_id refuses MulPIR in this build"),
        Scheme::Respire => {
            let elements = vec![0u8; shape.num_elements * shape.element_size];
            let server = RespireServer::load(&shape, &elements).unwrap();
            let (_, key) = ZoneClient::new(cfg.config.clone()).unwrap();
            RespireServer::key_memory_bytes(&server.parse_key(&key).unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_evaluation_key_is_re_uploaded_transparently() {
    bounded(async {
        let t = 6;
        let k = Keys::new();
        let mut tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 5, 1), 5),
        )
        .await;
        // A key cache that holds one client's key but not two.
        let memory = key_memory(&pircfg(tree.addr(4), CARRIER).await);
        let mib = memory.div_ceil(1 << 20);
        assert!(mib << 20 < 2 * memory, "{memory} bytes per key");
        let config = tree.config_file(4);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!("key_cache_mib = {mib}\n"));
        std::fs::write(&config, text).unwrap();
        tree.stop(4).await;
        tree.restart(4).await;
        let relay = Relay::start(tree.addr(5), tree.addr(4)).await;

        let uploads = |frames: &[Frame]| -> Vec<[u8; 16]> {
            frames
                .iter()
                .filter_map(request_of)
                .filter_map(|r| match r {
                    Request::Key {
                        key_id, index: 0, ..
                    } => Some(key_id),
                    _ => None,
                })
                .collect()
        };
        let unknown_key = |frames: &[Frame]| {
            frames
                .iter()
                .filter(|f| !f.to_server && ede_code_of(f) == Some(ede::UNKNOWN_KEY))
                .count()
        };

        let a = tree.resolver();
        let b = tree.resolver();
        assert_eq!(found(&private_ok(&a, ALICE).await), [uri(&k.chat, "alice")]);
        let f = relay.take();
        let key_a = uploads(&f);
        assert_eq!(key_a.len(), 1, "A uploads its key once");
        // A again: its key is still there.
        assert_eq!(found(&private_ok(&a, OTHER).await), [uri(&k.chat, "other")]);
        let f = relay.take();
        assert!(uploads(&f).is_empty(), "A's key was kept");
        assert_eq!(unknown_key(&f), 0);
        // B uploads its own key, which pushes A's out.
        assert_eq!(found(&private_ok(&b, ALICE).await), [uri(&k.chat, "alice")]);
        let key_b = uploads(&relay.take());
        assert_eq!(key_b.len(), 1);
        assert_ne!(key_b[0], key_a[0], "separate resolvers, separate keys");
        // A again: told its key is unknown, uploads it again and gets its answer.
        assert_eq!(found(&private_ok(&a, ALICE).await), [uri(&k.chat, "alice")]);
        let f = relay.take();
        assert_eq!(unknown_key(&f), 1, "A's key was evicted");
        assert_eq!(uploads(&f), key_a, "A re-uploaded the same key");
        // And B's turn to re-upload.
        assert_eq!(not_found(&private_ok(&b, NX).await), NotFound::NoSuchName);
        let f = relay.take();
        assert_eq!(unknown_key(&f), 1);
        assert_eq!(uploads(&f), key_b);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 8. A new epoch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_stays_in_the_epoch_and_a_new_epoch_is_picked_up_in_the_middle_of_a_lookup() {
    bounded(async {
        let t = 7;
        let k = Keys::new();
        let mut tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 5, 1), 5),
        )
        .await;
        let relay = Relay::start(tree.addr(5), tree.addr(4)).await;
        let dp = tree.addr(4);
        let file = tree.files[CARRIER_SPEC].clone();
        let r = Arc::new(tree.resolver());
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        let epoch1 = pircfg(dp, CARRIER).await.config.epoch;

        // Alice moves to a new URI; the DP reloads between two lookups: the change is
        // re-sealed in the same epoch.
        let alice = owner(ALICE);
        let mut z = carrier_zone(t, &k, 5, 2);
        z.put_ssi(
            alice.clone(),
            TTL,
            mapping(&k.chat, &alice, "alice-v2", Context::Any, 10),
        );
        z.save(&file, WriteStyle::Native).unwrap();
        let failures = tree.server(4).reload().await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        // The private-lookup database follows the commit asynchronously
        // (docs/updates.md): within the one-second goal, with room for a loaded machine.
        let v2 = [uri(&k.chat, "alice-v2")];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            relay.take();
            let seen = found(&private_ok(&r, ALICE).await);
            if seen == v2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private lookups still see {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let epoch2 = pircfg(dp, CARRIER).await.config.epoch;
        assert_eq!(epoch2, epoch1);

        // The DP restarts (new keys, a new epoch) after the resolver read PIRCFG and
        // before its first request arrives: the DP answers WRONG_EPOCH and the resolver
        // starts over.
        let mut z = carrier_zone(t, &k, 5, 3);
        z.put_ssi(
            alice.clone(),
            TTL,
            mapping(&k.chat, &alice, "alice-v3", Context::Any, 10),
        );
        z.save(&file, WriteStyle::Native).unwrap();
        relay.take();
        let (arrived, proceed) = relay.hold_next();
        let lookup = {
            let r = r.clone();
            tokio::spawn(async move { private(&r, ALICE, None).await })
        };
        timeout(LOOKUP_LIMIT, arrived)
            .await
            .expect("the resolver did not connect")
            .unwrap();
        tree.stop(4).await;
        tree.restart(4).await;
        let epoch3 = pircfg(dp, CARRIER).await.config.epoch;
        assert_ne!(epoch3, epoch2);
        proceed.send(()).unwrap();
        let res = lookup.await.unwrap().expect("lookup across the reload");
        assert_eq!(found(&res), [uri(&k.chat, "alice-v3")]);
        let frames = relay.take();
        let wrong: Vec<&Frame> = frames
            .iter()
            .filter(|f| !f.to_server && ede_code_of(f) == Some(ede::WRONG_EPOCH))
            .collect();
        assert_eq!(wrong.len(), 1, "one WRONG_EPOCH answer");
        let epochs: Vec<u64> = frames
            .iter()
            .filter_map(request_of)
            .map(|r| r.epoch())
            .collect();
        assert_eq!(
            epochs.first(),
            Some(&epoch2),
            "first request at the old epoch"
        );
        assert!(epochs[1..].iter().all(|e| *e == epoch3), "{epochs:?}");
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 9. Malformed and misdirected carrier requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_misdirected_and_non_tcp_carrier_requests_are_refused_with_extended_errors() {
    bounded(async {
        let t = 8;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 4, 1), 4),
        )
        .await;
        let dp = tree.addr(4);
        let cfg = pircfg(dp, CARRIER).await;
        let epoch = cfg.config.epoch;
        let pir_name = format!("_pir.{CARRIER}");
        let oprf_request = |epoch| {
            let (_, blinded) = oprf::blind(&[owner(ALICE).to_string().as_bytes()]).unwrap();
            Request::Oprf { epoch, blinded }.encode()
        };

        // Over UDP: REFUSED with an extended error, whatever the request.
        let reply = ask_udp(dp, &pir_question(&pir_name, Some(oprf_request(epoch)))).await;
        assert_refusal(&reply, ResponseCode::Refused, ede::BAD_REQUEST, "UDP");
        assert!(
            ede_of(&reply).unwrap().1.contains("TCP"),
            "{:?}",
            ede_of(&reply)
        );
        let reply = ask_udp(dp, &pir_question(&pir_name, None)).await;
        assert_refusal(
            &reply,
            ResponseCode::Refused,
            ede::BAD_REQUEST,
            "UDP, no option",
        );

        let mut c = Conn::open(ip(t, 1), dp).await;
        // At a name that is not _pir.<zone>: the owner name, a name below _pir, the apex,
        // a zone this DP does not serve.
        let alice = owner(ALICE).to_string();
        for name in [
            alice.as_str(),
            &format!("x._pir.{CARRIER}"),
            &format!("_pir.x.{CARRIER}"),
            CARRIER,
            &format!("_pir.{CC1}"),
        ] {
            let reply = c.ask(&pir_question(name, Some(oprf_request(epoch)))).await;
            assert_refusal(&reply, ResponseCode::Refused, ede::NOT_OFFERED, name);
        }
        let reply = ask_udp(dp, &pir_question(&alice, Some(oprf_request(epoch)))).await;
        assert_refusal(
            &reply,
            ResponseCode::Refused,
            ede::NOT_OFFERED,
            "UDP at the owner",
        );

        // Over TCP without option 65001, with garbage in it, with a bad version, kind or
        // chunk numbering: FORMERR with an extended error.
        let reply = c.ask(&pir_question(&pir_name, None)).await;
        assert_refusal(&reply, ResponseCode::FormErr, ede::BAD_REQUEST, "no option");
        let mut bad_chunk = Request::Key {
            epoch,
            key_id: [1; 16],
            index: 0,
            count: 1,
            bytes: vec![7; 10],
        }
        .encode();
        // index 0 -> 3 of count 1
        bad_chunk[27] = 3;
        for (what, bytes) in [
            ("empty", vec![]),
            ("garbage", vec![0xff, 0x00, 0x13, 0x37]),
            ("version 2", {
                let mut b = oprf_request(epoch);
                b[0] = 2;
                b
            }),
            ("kind 9", {
                let mut b = oprf_request(epoch);
                b[1] = 9;
                b
            }),
            ("truncated epoch", oprf_request(epoch)[..6].to_vec()),
            ("chunk 3 of 1", bad_chunk),
            (
                "OPRF of nothing",
                Request::Oprf {
                    epoch,
                    blinded: vec![],
                }
                .encode(),
            ),
            (
                "OPRF with a bad element",
                Request::Oprf {
                    epoch,
                    blinded: vec![1; 33],
                }
                .encode(),
            ),
            (
                "garbage key",
                Request::Key {
                    epoch,
                    key_id: [2; 16],
                    index: 0,
                    count: 1,
                    bytes: vec![0xab; 100],
                }
                .encode(),
            ),
        ] {
            let reply = c.ask(&pir_question(&pir_name, Some(bytes))).await;
            assert_refusal(&reply, ResponseCode::FormErr, ede::BAD_REQUEST, what);
        }

        // Another epoch, an unknown key: SERVFAIL with the code that tells the client
        // what to do.
        let reply = c
            .ask(&pir_question(&pir_name, Some(oprf_request(epoch ^ 1))))
            .await;
        assert_refusal(
            &reply,
            ResponseCode::ServFail,
            ede::WRONG_EPOCH,
            "old epoch",
        );
        let query = Request::Query {
            epoch,
            key_id: [3; 16],
            shard: 0,
            query: vec![0; 64],
        };
        let reply = c.request(CARRIER, &query).await;
        assert_refusal(
            &reply,
            ResponseCode::ServFail,
            ede::UNKNOWN_KEY,
            "unknown key",
        );

        // The same connection keeps serving: a proper OPRF request is answered.
        let ys = c.oprf(CARRIER, &cfg, &[&owner(ALICE)]).await;
        assert_eq!(ys.len(), 1);
        // So do ordinary questions and new connections.
        let reply = ask_udp(dp, &question(CARRIER, RecordType::SOA)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        let r = tree.resolver();
        assert_eq!(found(&private_ok(&r, ALICE).await), [uri(&k.chat, "alice")]);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 10. `mimi lookup --private`

/// The mappings of `mimi lookup --json` output without the fields that depend on when
/// and how they were fetched.
fn json_mappings(j: &serde_json::Value) -> Vec<serde_json::Value> {
    j["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.as_object_mut().unwrap().remove("ttl");
            m
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimi_lookup_private_end_to_end() {
    bounded(async {
        let t = 9;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k, 4, 1), 4),
        )
        .await;
        let dir = tree.dir.path();
        std::fs::write(
            dir.join("resolver.toml"),
            format!(
                "roots = [\"ns1.mimi.arpa.={}\"]\nport = {}\ntrust = \"trust.toml\"\n[limits]\ntimeout_ms = 2000\nretries = 1\n",
                ip(t, 1),
                tree.port
            ),
        )
        .unwrap();
        let config = ["--config", "resolver.toml", "--json"];

        for s in [ALICE, TWO, BOB] {
            let (code, out, err) =
                mimi(dir, &[&["lookup", s, "--private"][..], &config].concat()).await;
            assert_eq!(code, 0, "{s}: {out}\n{err}");
            let private = json_of(&out);
            let (code, out, err) = mimi(dir, &[&["lookup", s][..], &config].concat()).await;
            assert_eq!(code, 0, "{s}: {out}\n{err}");
            let public = json_of(&out);
            assert_eq!(private["status"], "found", "{s}");
            for field in ["sii", "owner", "status", "zone", "server", "rejected"] {
                assert_eq!(private[field], public[field], "{s}: {field}");
            }
            assert_eq!(json_mappings(&private), json_mappings(&public), "{s}");
        }
        let (code, out, _) = mimi(dir, &[&["lookup", ALICE, "--private"][..], &config].concat()).await;
        assert_eq!(code, 0);
        assert_eq!(json_of(&out)["mappings"][0]["ssi"], uri(&k.chat, "alice"));

        // Not discoverable: exit 1.
        for s in [NX, NX_COUNTRY, NOBODY] {
            let (code, out, err) =
                mimi(dir, &[&["lookup", s, "--private"][..], &config].concat()).await;
            assert_eq!(code, 1, "{s}: {out}\n{err}");
            let j = json_of(&out);
            assert_eq!(j["status"], "not_discoverable", "{s}");
            assert_eq!(j["reason"], "no such name in the tree", "{s}");
            assert_eq!(j["mappings"].as_array().unwrap().len(), 0);
        }
        // For a person.
        let (code, out, err) = mimi(
            dir,
            &["lookup", ALICE, "--private", "--config", "resolver.toml"],
        )
        .await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(&uri(&k.chat, "alice")), "{out}");
        // --private needs --config.
        let (code, _, err) = mimi(dir, &["lookup", ALICE, "--private", "--server", "127.0.0.1"]).await;
        assert_eq!(code, 2, "{err}");
        tree.shutdown().await;
    })
    .await;
}

#[test]
fn carrier_constants_match_the_documented_layout() {
    // The offsets the malformed-request test patches: version, kind, epoch, key id, index.
    let b = Request::Key {
        epoch: 0,
        key_id: [0; 16],
        index: 0x0102,
        count: 0x0304,
        bytes: vec![],
    }
    .encode();
    assert_eq!(&b[26..30], &[1, 2, 3, 4]);
    assert_eq!(carrier::VERSION, b[0]);
}
