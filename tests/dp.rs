//! Integration tests of the discovery provider's authoritative server (`mimi dp serve`):
//! real servers started in-process on loopback, each test on its own 127.0.0.x address,
//! queried over plain UDP and TCP sockets with hickory's message types.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name as HName, RData as HRData, Record as HRecord, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use mimi_discovery::dp::DpServer;
use mimi_discovery::name::Name;
use mimi_discovery::record::{self, Context, Method, ProviderKey, Ssi, RECORD_VERSION, TYPE_SSI};
use mimi_discovery::zone::{RData, Record, WriteStyle, ZoneFile};
use rand::{Rng, SeedableRng};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

/// Bound on every network wait.
const T: Duration = Duration::from_secs(3);
const TTL: u32 = 3600;
/// MINIMUM of zones made by `ZoneFile::new_zone`.
const SOA_MINIMUM: u32 = 300;

const ZONE: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.";
const ALICE_URI: &str = "mimi://chat.example/u/alice";
/// An SSI and a TXT RRset at the same owner.
const BOB: &str = "3.3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa.";
/// An empty non-terminal: an ancestor of ALICE and BOB with no records of its own.
const ENT: &str = "1.1.1.5.5.5.1.e164.mimi.arpa.";
const NX: &str = "9.9.9.5.5.5.1.e164.mimi.arpa.";
/// Twelve TXT records of 200 bytes: too big for 1232 bytes.
const BIG: &str = "big.5.5.5.1.e164.mimi.arpa.";
const CHILD: &str = "7.7.5.5.5.1.e164.mimi.arpa.";
const CHILD_NS1: &str = "ns1.7.7.5.5.5.1.e164.mimi.arpa.";
const CHILD_NS2: &str = "ns2.7.7.5.5.5.1.e164.mimi.arpa.";
const CHILD_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const CHILD_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
const BELOW_CHILD: &str = "1.2.3.7.7.5.5.5.1.e164.mimi.arpa.";

fn rt_ssi() -> RecordType {
    RecordType::Unknown(TYPE_SSI)
}

fn n(s: &str) -> Name {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn hn(s: &str) -> HName {
    HName::from_ascii(s).unwrap()
}

fn lo(x: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, x))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// Zones, keys and configs

/// A temporary directory with a provider key and the trust file that accepts it.
struct Fx {
    dir: TempDir,
    key: ProviderKey,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let key = ProviderKey::generate(n("chat.example."));
        let trust = record::trust_entry_toml(&key.provider, &[key.verifying_key()]);
        std::fs::write(dir.path().join("trust.toml"), trust).unwrap();
        Fx { dir, key }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes `dp.toml` listening on 127.0.0.x, port 0, for `zones` (origin, file).
    fn config(&self, x: u8, zones: &[(&str, &str)], extra: &str) -> PathBuf {
        let mut text = format!("listen = [\"127.0.0.{x}:0\"]\ntrust = \"trust.toml\"\n");
        for (origin, file) in zones {
            text.push_str(&format!(
                "[[zone]]\norigin = \"{origin}\"\nfile = \"{file}\"\n"
            ));
        }
        // These tests are about answers, not quotas, and their load comes from one
        // address (tests/access.rs has the quotas).
        if !extra.contains("[access]") {
            text.push_str("[access]\nanonymous_lookups_per_day = \"unlimited\"\n");
        }
        text.push_str(extra);
        let path = self.path("dp.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn mapping(&self, owner: &str, uri: &str) -> Ssi {
        let t = now();
        signed(&self.key, owner, uri, t - 86400, t + 365 * 86400)
    }

    /// The carrier zone (see the constants) with serial `serial`.
    fn carrier(&self, x: u8, alice_uri: &str, serial: u32) -> ZoneFile {
        let mut z = ZoneFile::new_zone(n(ZONE), &[(n(&format!("ns1.{ZONE}")), lo(x))], TTL, serial);
        z.set_delegation(
            &n(CHILD),
            &[
                (n(CHILD_NS1), IpAddr::V4(CHILD_V4)),
                (n(CHILD_NS2), IpAddr::V6(CHILD_V6)),
            ],
            TTL,
        );
        z.put_ssi(n(ALICE), TTL, self.mapping(ALICE, alice_uri));
        z.put_ssi(n(BOB), TTL, self.mapping(BOB, "mimi://chat.example/u/bob"));
        z.records.push(txt(BOB, b"bob's note"));
        for i in 0..12u8 {
            let mut s = vec![b'a' + i; 200];
            s[..3].copy_from_slice(format!("{i:03}").as_bytes());
            z.records.push(txt(BIG, &s));
        }
        z
    }

    /// Writes the carrier zone to `carrier.zone` and a config serving it.
    fn carrier_config(&self, x: u8, extra: &str) -> PathBuf {
        self.carrier(x, ALICE_URI, 1)
            .save(&self.path("carrier.zone"), WriteStyle::Native)
            .unwrap();
        self.config(x, &[(ZONE, "carrier.zone")], extra)
    }
}

fn signed(key: &ProviderKey, owner: &str, uri: &str, not_before: u64, not_after: u64) -> Ssi {
    let mut s = Ssi {
        version: RECORD_VERSION,
        context: Context::Any,
        withdrawn: false,
        priority: 10,
        seq: 1,
        not_before,
        not_after,
        method: Method::SmsOtp,
        verified_at: not_before,
        provider: key.provider.clone(),
        uri: uri.to_string(),
        key_id: [0; 8],
        signature: [0; 64],
    };
    s.sign(&n(owner), &key.signing);
    s
}

fn txt(owner: &str, text: &[u8]) -> Record {
    Record {
        name: n(owner),
        ttl: TTL,
        data: RData::Txt(vec![text.into()]),
        line: 0,
    }
}

async fn start(config: &Path) -> DpServer {
    match timeout(Duration::from_secs(30), DpServer::start(config)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("server did not start: {e}"),
        Err(_) => panic!("server start timed out"),
    }
}

async fn start_err(config: &Path) -> String {
    match timeout(Duration::from_secs(30), DpServer::start(config)).await {
        Ok(Ok(_)) => panic!("server started but should have failed"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("server start timed out"),
    }
}

async fn stop(server: DpServer) {
    timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown timed out");
}

// ---------------------------------------------------------------------------------------
// Queries

fn question(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(hn(name), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// One datagram from a fresh socket on the server's address; the raw reply, if any.
async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((server.ip(), 0)).await.ok()?;
    sock.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    match timeout(T, sock.recv_from(&mut buf)).await {
        Ok(Ok((len, _))) => {
            buf.truncate(len);
            Some(buf)
        }
        _ => None,
    }
}

fn decode_reply(request: &Message, raw: &[u8]) -> Message {
    let resp = Message::from_vec(raw).expect("decode response");
    assert_eq!(resp.metadata.id, request.metadata.id);
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    assert_eq!(resp.queries, request.queries, "question echoed");
    resp
}

/// Sends `msg` over UDP; the decoded response and its size in bytes.
async fn udp_exchange(server: SocketAddr, msg: &Message) -> (Message, usize) {
    let raw = udp_raw(server, &msg.to_vec().unwrap())
        .await
        .expect("no UDP answer");
    (decode_reply(msg, &raw), raw.len())
}

/// A query over UDP, with EDNS advertising 1232 bytes as modern resolvers do.
async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    udp_exchange(server, &question(name, rtype, Some(1232)))
        .await
        .0
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await
}

/// One length-prefixed message; None on close, error or timeout.
async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    timeout(T, async {
        let len = stream.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.ok()?;
        Some(buf)
    })
    .await
    .ok()
    .flatten()
}

async fn connect(server: SocketAddr) -> TcpStream {
    timeout(T, TcpStream::connect(server))
        .await
        .expect("connect timed out")
        .expect("connect")
}

async fn tcp_exchange_on(stream: &mut TcpStream, msg: &Message) -> Message {
    write_frame(stream, &msg.to_vec().unwrap()).await.unwrap();
    let raw = read_frame(stream).await.expect("no TCP answer");
    decode_reply(msg, &raw)
}

async fn tcp_exchange(server: SocketAddr, msg: &Message) -> Message {
    let mut stream = connect(server).await;
    tcp_exchange_on(&mut stream, msg).await
}

/// A query over TCP, with EDNS.
async fn tcp_query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    tcp_exchange(server, &question(name, rtype, Some(1232))).await
}

/// The mapping in an SSI answer record.
fn ssi_of(r: &HRecord) -> Ssi {
    match &r.data {
        HRData::Unknown { code, rdata } => {
            assert_eq!(*code, rt_ssi());
            Ssi::from_wire(&rdata.anything).expect("SSI RDATA decodes")
        }
        other => panic!("not an SSI record: {other:?}"),
    }
}

fn soa_serial(r: &HRecord) -> u32 {
    match &r.data {
        HRData::SOA(soa) => soa.serial,
        other => panic!("not an SOA record: {other:?}"),
    }
}

/// (owner, type, TTL, RDATA) of a record, comparable across sources.
fn key_of(r: &HRecord) -> (String, u16, u32, Vec<u8>) {
    (
        r.name.to_lowercase().to_ascii(),
        u16::from(r.record_type()),
        r.ttl,
        r.data.to_bytes().unwrap(),
    )
}

/// A negative answer: `rcode`, AA, empty answer, the zone's SOA alone in authority with
/// TTL `soa_ttl`, nothing in additional.
fn assert_negative(resp: &Message, rcode: ResponseCode, zone: &str, soa_ttl: u32) {
    assert_eq!(resp.metadata.response_code, rcode, "{resp:?}");
    assert!(resp.metadata.authoritative, "AA on a negative answer");
    assert!(!resp.metadata.truncation);
    assert!(resp.answers.is_empty(), "{:?}", resp.answers);
    assert_eq!(resp.authorities.len(), 1, "{:?}", resp.authorities);
    let soa = &resp.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name, hn(zone));
    assert_eq!(soa.ttl, soa_ttl, "negative TTL = min(SOA TTL, MINIMUM)");
    assert!(resp.additionals.is_empty(), "{:?}", resp.additionals);
}

/// Waits until `f` holds (counters are bumped just after the response is sent).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. Answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_answer_is_authoritative_and_verifies() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(41, "")).await;
    let addr = server.addrs[0];
    assert_eq!(addr.ip(), lo(41));
    assert_ne!(addr.port(), 0);

    for resp in [
        query(addr, ALICE, rt_ssi()).await,
        tcp_query(addr, ALICE, rt_ssi()).await,
    ] {
        assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
        assert!(resp.metadata.authoritative);
        assert!(!resp.metadata.truncation);
        assert!(!resp.metadata.recursion_available);
        assert_eq!(resp.answers.len(), 1);
        assert!(resp.authorities.is_empty());
        assert!(resp.additionals.is_empty());
        let rec = &resp.answers[0];
        assert_eq!(rec.name, hn(ALICE));
        assert_eq!(rec.dns_class, DNSClass::IN);
        assert_eq!(rec.ttl, TTL);
        let ssi = ssi_of(rec);
        assert_eq!(ssi.uri, ALICE_URI);
        assert_eq!(ssi.provider, fx.key.provider);
        ssi.verify(&n(ALICE), &fx.key.verifying_key())
            .expect("signature verifies");
        // Bound to its owner: the same record does not verify at another name.
        assert!(ssi.verify(&n(BOB), &fx.key.verifying_key()).is_err());
        // The EDNS query gets an EDNS response.
        assert!(resp.edns.is_some());
    }

    // Pipelining (RFC 7766): two queries in one write, two answers in order.
    let mut stream = connect(addr).await;
    let (qa, qb) = (
        question(ALICE, rt_ssi(), None),
        question(BOB, rt_ssi(), None),
    );
    let mut frames = Vec::new();
    for q in [&qa, &qb] {
        let bytes = q.to_vec().unwrap();
        frames.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        frames.extend_from_slice(&bytes);
    }
    stream.write_all(&frames).await.unwrap();
    let ra = decode_reply(&qa, &read_frame(&mut stream).await.expect("first answer"));
    let rb = decode_reply(&qb, &read_frame(&mut stream).await.expect("second answer"));
    assert_eq!(ssi_of(&ra.answers[0]).uri, ALICE_URI);
    assert_eq!(ssi_of(&rb.answers[0]).uri, "mimi://chat.example/u/bob");

    // Mixed case in the question: same answer, question echoed as sent.
    let resp = query(addr, &ALICE.replace("mimi", "MiMi"), rt_ssi()).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(resp.answers.len(), 1);

    // The apex SOA and NS.
    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert!(resp.metadata.authoritative);
    assert_eq!(resp.answers.len(), 1);
    assert_eq!(soa_serial(&resp.answers[0]), 1);
    assert_eq!(resp.answers[0].ttl, TTL);
    let resp = query(addr, ZONE, RecordType::NS).await;
    assert!(resp.metadata.authoritative);
    assert_eq!(resp.answers.len(), 1);
    assert_eq!(resp.answers[0].record_type(), RecordType::NS);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_query_returns_one_rrset() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(47, "")).await;
    let addr = server.addrs[0];
    // BOB has SSI and TXT; the apex has SOA and NS.
    for (name, types) in [
        (BOB, [rt_ssi(), RecordType::TXT]),
        (ZONE, [RecordType::SOA, RecordType::NS]),
    ] {
        for resp in [
            query(addr, name, RecordType::ANY).await,
            tcp_query(addr, name, RecordType::ANY).await,
        ] {
            assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
            assert!(resp.metadata.authoritative);
            assert!(!resp.answers.is_empty(), "ANY at {name} gave nothing");
            let rtype = resp.answers[0].record_type();
            assert!(types.contains(&rtype), "{rtype} at {name}");
            for r in &resp.answers {
                assert_eq!(r.name, hn(name));
                assert_eq!(r.record_type(), rtype, "ANY gave more than one RRset");
            }
            assert!(resp.authorities.is_empty());
        }
    }
    // Both types are there when asked for one by one.
    assert_eq!(query(addr, BOB, RecordType::TXT).await.answers.len(), 1);
    assert_eq!(query(addr, BOB, rt_ssi()).await.answers.len(), 1);
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 2. Referrals

fn assert_referral(resp: &Message) {
    assert_eq!(
        resp.metadata.response_code,
        ResponseCode::NoError,
        "{resp:?}"
    );
    assert!(
        !resp.metadata.authoritative,
        "AA must be clear on a referral"
    );
    assert!(!resp.metadata.truncation);
    assert!(resp.answers.is_empty(), "{:?}", resp.answers);
    let ns: BTreeSet<(String, String, u32)> = resp
        .authorities
        .iter()
        .map(|r| match &r.data {
            HRData::NS(t) => (r.name.to_ascii(), t.0.to_ascii(), r.ttl),
            other => panic!("not NS in a referral's authority: {other:?}"),
        })
        .collect();
    let want: BTreeSet<_> = [CHILD_NS1, CHILD_NS2]
        .iter()
        .map(|t| (CHILD.to_string(), t.to_string(), TTL))
        .collect();
    assert_eq!(ns, want);
    assert_eq!(resp.authorities.len(), 2);
    let glue: BTreeSet<(String, String, u32)> = resp
        .additionals
        .iter()
        .map(|r| match &r.data {
            HRData::A(a) => (r.name.to_ascii(), a.0.to_string(), r.ttl),
            HRData::AAAA(a) => (r.name.to_ascii(), a.0.to_string(), r.ttl),
            other => panic!("not glue in a referral's additional: {other:?}"),
        })
        .collect();
    let want: BTreeSet<_> = [
        (CHILD_NS1.to_string(), CHILD_V4.to_string(), TTL),
        (CHILD_NS2.to_string(), CHILD_V6.to_string(), TTL),
    ]
    .into_iter()
    .collect();
    assert_eq!(glue, want);
    assert_eq!(resp.additionals.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_below_delegation_has_ns_and_glue_without_aa() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(42, "")).await;
    let addr = server.addrs[0];
    assert_referral(&query(addr, BELOW_CHILD, rt_ssi()).await);
    assert_referral(&tcp_query(addr, BELOW_CHILD, rt_ssi()).await);
    // At the cut itself, for any type: the child is authoritative.
    assert_referral(&query(addr, CHILD, rt_ssi()).await);
    assert_referral(&query(addr, CHILD, RecordType::NS).await);
    // A name below the cut that exists as glue is occluded: referral, not the address.
    assert_referral(&query(addr, CHILD_NS1, RecordType::A).await);
    assert_referral(&query(addr, CHILD_NS2, RecordType::AAAA).await);
    // A name below the cut that does not exist at all: referral, not NXDOMAIN.
    assert_referral(&query(addr, &format!("x.y.{CHILD}"), RecordType::TXT).await);
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 3. Negative answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_carry_soa_with_negative_ttl() {
    const SHORT: &str = "4.4.e164.mimi.arpa.";
    let fx = Fx::new();
    fx.carrier(43, ALICE_URI, 1)
        .save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    // A zone whose SOA TTL (60) is below its MINIMUM (300).
    let short = ZoneFile::new_zone(n(SHORT), &[(n(&format!("ns1.{SHORT}")), lo(43))], 60, 7);
    assert_eq!(short.soa().unwrap().minimum, SOA_MINIMUM);
    short
        .save(&fx.path("short.zone"), WriteStyle::Native)
        .unwrap();
    let config = fx.config(43, &[(ZONE, "carrier.zone"), (SHORT, "short.zone")], "");
    let server = start(&config).await;
    let addr = server.addrs[0];

    // SOA TTL 3600 > MINIMUM 300: 300.
    let long_ttl = TTL.min(SOA_MINIMUM);
    assert_eq!(long_ttl, 300);
    for resp in [
        query(addr, NX, rt_ssi()).await,
        tcp_query(addr, NX, rt_ssi()).await,
        // Below an existing name.
        query(addr, &format!("5.{ALICE}"), rt_ssi()).await,
        query(addr, &format!("nope.{ZONE}"), RecordType::A).await,
    ] {
        assert_negative(&resp, ResponseCode::NXDomain, ZONE, long_ttl);
    }
    for resp in [
        // Existing name, other type.
        query(addr, ALICE, RecordType::TXT).await,
        query(addr, BIG, rt_ssi()).await,
        // Empty non-terminals (ancestors of mappings).
        query(addr, ENT, rt_ssi()).await,
        tcp_query(addr, ENT, rt_ssi()).await,
        query(addr, &format!("2.2.2.1.1.1.{ZONE}"), rt_ssi()).await,
        query(addr, &format!("1.{ZONE}"), RecordType::A).await,
        // The apex.
        query(addr, ZONE, RecordType::TXT).await,
    ] {
        assert_negative(&resp, ResponseCode::NoError, ZONE, long_ttl);
    }
    // The SOA in negative answers is the zone's.
    let resp = query(addr, NX, rt_ssi()).await;
    assert_eq!(soa_serial(&resp.authorities[0]), 1);

    // SOA TTL 60 < MINIMUM 300: 60.
    assert_negative(
        &query(addr, &format!("9.{SHORT}"), rt_ssi()).await,
        ResponseCode::NXDomain,
        SHORT,
        60,
    );
    assert_negative(
        &query(addr, SHORT, RecordType::TXT).await,
        ResponseCode::NoError,
        SHORT,
        60,
    );
    let resp = query(addr, &format!("9.{SHORT}"), rt_ssi()).await;
    assert_eq!(soa_serial(&resp.authorities[0]), 7);
    // The SOA itself keeps its TTL in a positive answer.
    let resp = query(addr, SHORT, RecordType::SOA).await;
    assert_eq!(resp.answers[0].ttl, 60);
    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert_eq!(resp.answers[0].ttl, TTL);
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 4. Errors

fn assert_error(resp: &Message, rcode: ResponseCode) {
    assert_eq!(resp.metadata.response_code, rcode, "{resp:?}");
    assert!(!resp.metadata.authoritative, "AA on {rcode}");
    assert!(resp.answers.is_empty());
    assert!(resp.authorities.is_empty());
    assert!(resp.additionals.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_formerr_notimp_badvers() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(44, "")).await;
    let addr = server.addrs[0];

    // Outside every zone, including the parent of the zone and a sibling.
    for name in [
        "example.org.",
        "e164.mimi.arpa.",
        "6.5.5.1.e164.mimi.arpa.",
        ".",
    ] {
        assert_error(&query(addr, name, rt_ssi()).await, ResponseCode::Refused);
        assert_error(
            &tcp_query(addr, name, rt_ssi()).await,
            ResponseCode::Refused,
        );
    }

    // Class CH (in-zone and the usual version.bind): REFUSED.
    for name in [ALICE, "version.bind."] {
        let mut m = Message::query();
        let mut q = Query::query(hn(name), RecordType::TXT);
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        assert_error(&udp_exchange(addr, &m).await.0, ResponseCode::Refused);
    }

    // Two questions: FORMERR.
    let mut m = question(ALICE, rt_ssi(), None);
    m.add_query(Query::query(hn(BOB), rt_ssi()));
    assert_error(&udp_exchange(addr, &m).await.0, ResponseCode::FormErr);
    assert_error(&tcp_exchange(addr, &m).await, ResponseCode::FormErr);
    // No question: FORMERR.
    let m = Message::query();
    assert_error(&udp_exchange(addr, &m).await.0, ResponseCode::FormErr);

    // A valid header announcing one question, followed by a broken name: FORMERR with
    // the request's id, over UDP and TCP.
    let mut bad = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[5, b'a', b'b']);
    let raw = udp_raw(addr, &bad).await.expect("FORMERR over UDP");
    let resp = Message::from_vec(&raw).unwrap();
    assert_eq!(resp.metadata.id, 0xabcd);
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    assert_eq!(resp.metadata.response_code, ResponseCode::FormErr);
    let mut stream = connect(addr).await;
    write_frame(&mut stream, &bad).await.unwrap();
    let raw = read_frame(&mut stream).await.expect("FORMERR over TCP");
    let resp = Message::from_vec(&raw).unwrap();
    assert_eq!(resp.metadata.id, 0xabcd);
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    assert_eq!(resp.metadata.response_code, ResponseCode::FormErr);
    // The connection stays usable after a FORMERR.
    let ok = tcp_exchange_on(&mut stream, &question(ALICE, rt_ssi(), None)).await;
    assert_eq!(ok.answers.len(), 1);

    // An unsigned UPDATE: NOTAUTH (TSIG is required), over UDP and TCP.
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Update);
    m.add_query(Query::query(hn(ZONE), RecordType::SOA));
    let (resp, _) = udp_exchange(addr, &m).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(
        tcp_exchange(addr, &m).await.metadata.response_code,
        ResponseCode::NotAuth
    );

    // Opcodes we do not implement: NOTIMP, over UDP and TCP.
    for op in [OpCode::Notify, OpCode::Status] {
        let mut m = Message::new(rand::random(), MessageType::Query, op);
        m.add_query(Query::query(hn(ZONE), RecordType::SOA));
        let (resp, _) = udp_exchange(addr, &m).await;
        assert_error(&resp, ResponseCode::NotImp);
        assert_eq!(resp.metadata.op_code, op);
        assert_error(&tcp_exchange(addr, &m).await, ResponseCode::NotImp);
    }

    // EDNS version 1: BADVERS (extended RCODE 16) with an OPT of version 0.
    let mut m = question(ALICE, rt_ssi(), None);
    let mut e = Edns::new();
    e.set_max_payload(1232).set_version(1);
    m.set_edns(e);
    for resp in [udp_exchange(addr, &m).await.0, tcp_exchange(addr, &m).await] {
        // RCODE 16 (BADVERS; hickory decodes 16 as BADSIG, the same code).
        assert_eq!(u16::from(resp.metadata.response_code), 16);
        assert_eq!(
            u16::from(resp.metadata.response_code),
            u16::from(ResponseCode::BADVERS)
        );
        assert!(resp.answers.is_empty());
        let edns = resp.edns.as_ref().expect("BADVERS needs an OPT record");
        assert_eq!(edns.version(), 0);
        assert_eq!(edns.rcode_high(), 1);
    }
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 5. EDNS, truncation, TCP

fn assert_big_truncated(resp: &Message, len: usize, limit: usize) {
    assert!(
        len <= limit,
        "UDP response of {len} bytes over the limit {limit}"
    );
    assert!(resp.metadata.truncation, "TC must be set");
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert!(resp.answers.len() < 12);
    for r in &resp.answers {
        assert_eq!(r.name, hn(BIG));
        assert_eq!(r.record_type(), RecordType::TXT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answer_truncates_over_udp_and_is_whole_over_tcp() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(45, "")).await;
    let addr = server.addrs[0];

    // The client offers 4096; our limit is 1232.
    let (resp, len) = udp_exchange(addr, &question(BIG, RecordType::TXT, Some(4096))).await;
    assert_big_truncated(&resp, len, 1232);
    assert!(
        len > 512,
        "the client's larger buffer was not used ({len} bytes)"
    );
    let edns = resp
        .edns
        .as_ref()
        .expect("OPT in a response to an EDNS query");
    assert_eq!(edns.max_payload(), 1232);

    // The client offers 512, or no EDNS at all: 512.
    let (resp, len) = udp_exchange(addr, &question(BIG, RecordType::TXT, Some(512))).await;
    assert_big_truncated(&resp, len, 512);
    assert!(resp.edns.is_some());
    let (resp, len) = udp_exchange(addr, &question(BIG, RecordType::TXT, None)).await;
    assert_big_truncated(&resp, len, 512);
    assert!(
        resp.edns.is_none(),
        "no OPT in a response to a query without one"
    );

    // TCP: everything, no TC.
    for edns in [None, Some(512), Some(4096)] {
        let resp = tcp_exchange(addr, &question(BIG, RecordType::TXT, edns)).await;
        assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
        assert!(!resp.metadata.truncation);
        assert!(resp.metadata.authoritative);
        assert_eq!(resp.answers.len(), 12);
        let texts: BTreeSet<Vec<u8>> = resp
            .answers
            .iter()
            .map(|r| match &r.data {
                HRData::TXT(t) => t.txt_data.concat(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts.len(), 12);
        assert!(texts.iter().all(|t| t.len() == 200));
        assert!(resp.answers.iter().all(|r| r.ttl == TTL));
    }

    // A small answer is not truncated, whatever the size offered.
    let (resp, _) = udp_exchange(addr, &question(ALICE, rt_ssi(), None)).await;
    assert!(!resp.metadata.truncation);
    assert_eq!(resp.answers.len(), 1);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_udp_payload_limit() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(46, "[limits]\nudp_payload = 1400\n")).await;
    let addr = server.addrs[0];
    let (resp, len) = udp_exchange(addr, &question(BIG, RecordType::TXT, Some(1400))).await;
    assert_big_truncated(&resp, len, 1400);
    assert!(len > 1232, "limit 1400 was not used ({len} bytes)");
    assert_eq!(resp.edns.as_ref().unwrap().max_payload(), 1400);
    let (resp, len) = udp_exchange(addr, &question(BIG, RecordType::TXT, Some(65000))).await;
    assert_big_truncated(&resp, len, 1400);
    // A smaller offer is honoured.
    let (resp, len) = udp_exchange(addr, &question(BIG, RecordType::TXT, Some(1232))).await;
    assert_big_truncated(&resp, len, 1232);
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 7, 8. Reload

fn alice_uri_of(raw: &[u8]) -> Result<String, String> {
    let resp = Message::from_vec(raw).map_err(|e| format!("undecodable response: {e}"))?;
    if resp.metadata.response_code != ResponseCode::NoError {
        return Err(format!("rcode {}", resp.metadata.response_code));
    }
    match resp.answers.as_slice() {
        [r] => Ok(ssi_of(r).uri),
        other => Err(format!("{} answers", other.len())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_zones_while_queries_keep_getting_answers() {
    const V1: &str = "mimi://chat.example/u/alice";
    const V2: &str = "mimi://chat.example/u/alice-v2";
    let fx = Fx::new();
    let server = start(&fx.carrier_config(48, "")).await;
    let addr = server.addrs[0];

    let stop_flag = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let seen_v2 = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop_flag, answered, seen_v2) = (stop_flag.clone(), answered.clone(), seen_v2.clone());
        tokio::spawn(async move {
            let sock = UdpSocket::bind((addr.ip(), 0)).await.unwrap();
            let mut buf = vec![0u8; 65535];
            while !stop_flag.load(Relaxed) {
                let q = question(ALICE, rt_ssi(), Some(1232));
                sock.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
                let uri = loop {
                    let len = match timeout(T, sock.recv_from(&mut buf)).await {
                        Ok(Ok((len, _))) => len,
                        Ok(Err(e)) => return Err(format!("receive: {e}")),
                        Err(_) => return Err("query timed out during reloads".to_string()),
                    };
                    // Only this query's reply counts.
                    if buf[..2] == q.metadata.id.to_be_bytes() {
                        break alice_uri_of(&buf[..len])?;
                    }
                };
                match uri.as_str() {
                    V1 => {}
                    V2 => seen_v2.store(true, Relaxed),
                    other => return Err(format!("unexpected URI {other}")),
                }
                answered.fetch_add(1, Relaxed);
            }
            Ok(())
        })
    };

    let zone_path = fx.path("carrier.zone");
    let mut last_uri = V1;
    for i in 0..50u32 {
        last_uri = if i % 2 == 0 { V2 } else { V1 };
        fx.carrier(48, last_uri, 2 + i)
            .save(&zone_path, WriteStyle::Native)
            .unwrap();
        let failures = timeout(Duration::from_secs(30), server.reload())
            .await
            .expect("reload timed out")
            .expect("reload");
        assert!(failures.is_empty(), "{failures:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the load run a little past the last swap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_flag.store(true, Relaxed);
    timeout(Duration::from_secs(10), load)
        .await
        .expect("query loop did not stop")
        .unwrap()
        .expect("every query during reloads is answered");
    let answered = answered.load(Relaxed);
    eprintln!("{answered} queries answered during 50 reloads");
    assert!(answered >= 50, "only {answered} queries answered");
    assert!(
        seen_v2.load(Relaxed),
        "the query loop never saw the new version"
    );

    assert_eq!(last_uri, V1);
    let resp = query(addr, ALICE, rt_ssi()).await;
    assert_eq!(ssi_of(&resp.answers[0]).uri, last_uri);
    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert_eq!(soa_serial(&resp.answers[0]), 51);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_zone_on_reload_keeps_the_old_one_serving() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(49, "")).await;
    let addr = server.addrs[0];
    let zone_path = fx.path("carrier.zone");
    let good = std::fs::read_to_string(&zone_path).unwrap();

    // A syntax error on the last line.
    let broken = format!("{good}this line is not a record\n");
    let bad_line = broken.lines().count();
    std::fs::write(&zone_path, &broken).unwrap();
    let failures = server.reload().await.expect("reload itself succeeds");
    assert_eq!(failures.len(), 1, "{failures:?}");
    let want = format!("{}:{bad_line}", zone_path.display());
    assert!(failures[0].contains(&want), "{} lacks {want}", failures[0]);

    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert_eq!(soa_serial(&resp.answers[0]), 1, "old version still serving");
    let resp = query(addr, ALICE, rt_ssi()).await;
    assert_eq!(ssi_of(&resp.answers[0]).uri, ALICE_URI);
    assert_negative(
        &query(addr, NX, rt_ssi()).await,
        ResponseCode::NXDomain,
        ZONE,
        300,
    );

    // A zone without SOA on reload: also kept at the old version.
    let no_soa: String = good
        .lines()
        .filter(|l| !l.contains(" SOA "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&zone_path, no_soa).unwrap();
    let failures = server.reload().await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert_eq!(soa_serial(&resp.answers[0]), 1);

    // A broken config on reload: an error naming the file and line, nothing changes.
    let config_path = fx.path("dp.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, format!("{config}bogus = 1\n")).unwrap();
    let e = server.reload().await.expect_err("bad config on reload");
    let want = format!("{}:{}:", config_path.display(), config.lines().count() + 1);
    assert!(e.to_string().starts_with(&want), "{e}");
    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert_eq!(soa_serial(&resp.answers[0]), 1);
    std::fs::write(&config_path, config).unwrap();

    // A fixed zone is picked up by the next reload.
    fx.carrier(49, "mimi://chat.example/u/alice-new", 2)
        .save(&zone_path, WriteStyle::Native)
        .unwrap();
    assert!(server.reload().await.unwrap().is_empty());
    let resp = query(addr, ZONE, RecordType::SOA).await;
    assert_eq!(soa_serial(&resp.answers[0]), 2);
    let resp = query(addr, ALICE, rt_ssi()).await;
    assert_eq!(
        ssi_of(&resp.answers[0]).uri,
        "mimi://chat.example/u/alice-new"
    );
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 9. Load-time checks and start-up errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_refused_at_load_and_the_rest_serves() {
    const CAROL: &str = "4.4.4.4.1.1.1.5.5.5.1.e164.mimi.arpa.";
    let fx = Fx::new();
    let mut zone = ZoneFile::new_zone(n(ZONE), &[(n(&format!("ns1.{ZONE}")), lo(50))], TTL, 1);
    zone.put_ssi(n(ALICE), TTL, fx.mapping(ALICE, ALICE_URI));
    let mut forged = fx.mapping(BOB, "mimi://chat.example/u/bob");
    forged.signature[10] ^= 0x01;
    zone.put_ssi(n(BOB), TTL, forged);
    let t = now();
    let expired = signed(
        &fx.key,
        CAROL,
        "mimi://chat.example/u/carol",
        t - 30 * 86400,
        t - 86400,
    );
    zone.put_ssi(n(CAROL), TTL, expired);
    zone.save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    let server = start(&fx.config(50, &[(ZONE, "carrier.zone")], "")).await;
    let addr = server.addrs[0];

    let resp = query(addr, ALICE, rt_ssi()).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(resp.answers.len(), 1);
    ssi_of(&resp.answers[0])
        .verify(&n(ALICE), &fx.key.verifying_key())
        .unwrap();
    for owner in [BOB, CAROL] {
        let resp = query(addr, owner, rt_ssi()).await;
        assert!(
            matches!(
                resp.metadata.response_code,
                ResponseCode::NXDomain | ResponseCode::NoError
            ),
            "{owner}: {}",
            resp.metadata.response_code
        );
        assert_negative(&resp, resp.metadata.response_code, ZONE, 300);
    }
    let zones = server.shared().zones.load();
    assert_eq!(zones.get(&n(ZONE)).unwrap().rejected, 2);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_without_soa_or_with_syntax_errors_stops_start_up() {
    let fx = Fx::new();
    std::fs::write(
        fx.path("nosoa.zone"),
        format!("$ORIGIN {ZONE}\n@ 3600 IN NS ns1\nns1 3600 IN A 127.0.0.51\n"),
    )
    .unwrap();
    let config = fx.config(51, &[(ZONE, "nosoa.zone")], "");
    let e = start_err(&config).await;
    assert!(
        e.contains(&fx.path("nosoa.zone").display().to_string()),
        "{e}"
    );
    assert!(e.contains("SOA"), "{e}");

    fx.carrier(51, ALICE_URI, 1)
        .save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    let mut text = std::fs::read_to_string(fx.path("carrier.zone")).unwrap();
    text.push_str("broken 3600 IN A not-an-address\n");
    let line = text.lines().count();
    std::fs::write(fx.path("carrier.zone"), text).unwrap();
    let config = fx.config(51, &[(ZONE, "carrier.zone")], "");
    let e = start_err(&config).await;
    let want = format!("{}:{line}", fx.path("carrier.zone").display());
    assert!(e.contains(&want), "{e} lacks {want}");

    // A missing zone file.
    let config = fx.config(51, &[(ZONE, "missing.zone")], "");
    let e = start_err(&config).await;
    assert!(e.contains("missing.zone"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_file_and_line() {
    let fx = Fx::new();
    fx.carrier(52, ALICE_URI, 1)
        .save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    let path = fx.path("dp.toml");
    let file = path.display().to_string();
    let cases = [
        (
            format!("trust = \"trust.toml\"\nlisten = [\"127.0.0.52:0\", \"nonsense\"]\n[[zone]]\norigin = \"{ZONE}\"\nfile = \"carrier.zone\"\n"),
            2,
        ),
        (
            format!("listen = [\"127.0.0.52:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{ZONE}\"\nfile = \"carrier.zone\"\n[limits]\nudp_payload = 100\n"),
            7,
        ),
        (
            format!("listen = [\"127.0.0.52:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{ZONE}\"\nfile = \"carrier.zone\"\n[axfr]\nallow = [\"300.1.1.1\"]\n"),
            7,
        ),
    ];
    for (text, line) in cases {
        std::fs::write(&path, &text).unwrap();
        let e = start_err(&path).await;
        assert!(
            e.starts_with(&format!("{file}:{line}:")),
            "{e}\nfor\n{text}"
        );
    }
    // The same config with a good address starts.
    std::fs::write(
        &path,
        format!("listen = [\"127.0.0.52:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{ZONE}\"\nfile = \"carrier.zone\"\n"),
    )
    .unwrap();
    let server = start(&path).await;
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 10. Zone transfer

const AXFR_ALLOWED: u8 = 201;
const AXFR_DENIED: u8 = 202;

/// A TCP connection from 127.0.0.`from`.
async fn connect_from(from: u8, server: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(lo(from), 0)).unwrap();
    timeout(T, sock.connect(server))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Reads an AXFR response stream until the closing SOA; the records and message count.
async fn read_axfr(stream: &mut TcpStream, request: &Message) -> (Vec<HRecord>, usize) {
    let mut records: Vec<HRecord> = Vec::new();
    let mut messages = 0;
    loop {
        let raw = read_frame(stream)
            .await
            .unwrap_or_else(|| panic!("AXFR stream ended after {} records", records.len()));
        let resp = Message::from_vec(&raw).unwrap();
        messages += 1;
        assert_eq!(resp.metadata.id, request.metadata.id);
        assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
        assert!(resp.metadata.authoritative);
        assert!(
            !resp.metadata.truncation,
            "AXFR message {messages} truncated"
        );
        assert!(!resp.answers.is_empty());
        records.extend(resp.answers);
        if records.len() > 1 && records.last().unwrap().record_type() == RecordType::SOA {
            return (records, messages);
        }
    }
}

fn assert_transfer(records: &[HRecord], zone: &ZoneFile) {
    let first = records.first().unwrap();
    let last = records.last().unwrap();
    assert_eq!(first.record_type(), RecordType::SOA);
    assert_eq!(first.name, zone.origin.to_hickory());
    assert_eq!(key_of(first), key_of(last));
    let middle = &records[1..records.len() - 1];
    assert!(
        middle.iter().all(|r| r.record_type() != RecordType::SOA),
        "SOA inside the transfer"
    );
    let got: BTreeSet<_> = records[..records.len() - 1].iter().map(key_of).collect();
    assert_eq!(
        got.len(),
        records.len() - 1,
        "duplicate records in the transfer"
    );
    let want: BTreeSet<_> = zone
        .records
        .iter()
        .map(|r| key_of(&r.to_wire_record()))
        .collect();
    assert_eq!(want.len(), zone.records.len());
    let missing: Vec<_> = want.difference(&got).take(3).collect();
    let extra: Vec<_> = got.difference(&want).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} missing (e.g. {missing:?}), {} extra (e.g. {extra:?})",
        want.difference(&got).count(),
        got.difference(&want).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_to_allowed_addresses_only_and_over_tcp_only() {
    let fx = Fx::new();
    let mut zone = fx.carrier(53, ALICE_URI, 9);
    let t = now();
    for i in 0..1000u32 {
        let d = format!("{i:04}");
        let d: Vec<char> = d.chars().collect();
        let owner = format!("{}.{}.{}.{}.8.8.8.{ZONE}", d[3], d[2], d[1], d[0]);
        let ssi = signed(
            &fx.key,
            &owner,
            &format!("mimi://chat.example/u/user{i}"),
            t - 86400,
            t + 86400 * 30,
        );
        zone.put_ssi(n(&owner), TTL, ssi);
    }
    assert!(zone.records.len() > 1000);
    zone.save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    let config = fx.config(
        53,
        &[(ZONE, "carrier.zone")],
        &format!("[axfr]\nallow = [\"127.0.0.{AXFR_ALLOWED}/32\"]\n"),
    );
    let server = start(&config).await;
    let addr = server.addrs[0];
    // The zone as loaded back from the file (what the server read).
    let zone = ZoneFile::load(&fx.path("carrier.zone")).unwrap();

    // Allowed, over TCP: the whole zone, in several messages.
    let request = question(ZONE, RecordType::AXFR, None);
    let mut stream = connect_from(AXFR_ALLOWED, addr).await;
    write_frame(&mut stream, &request.to_vec().unwrap())
        .await
        .unwrap();
    let (records, messages) = read_axfr(&mut stream, &request).await;
    assert!(messages > 1, "{messages} message(s)");
    assert_eq!(records.len(), zone.records.len() + 1);
    assert_transfer(&records, &zone);
    // The connection still answers queries afterwards.
    let resp = tcp_exchange_on(&mut stream, &question(ALICE, rt_ssi(), None)).await;
    assert_eq!(resp.answers.len(), 1);

    // Not on the allow-list: REFUSED.
    let mut stream = connect_from(AXFR_DENIED, addr).await;
    let resp = tcp_exchange_on(&mut stream, &request).await;
    assert_error(&resp, ResponseCode::Refused);

    // Over UDP, even from an allowed address: REFUSED.
    let sock = UdpSocket::bind((lo(AXFR_ALLOWED), 0)).await.unwrap();
    sock.send_to(&request.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("no UDP answer to AXFR")
        .unwrap();
    let resp = decode_reply(&request, &buf[..len]);
    assert_error(&resp, ResponseCode::Refused);

    // AXFR of a name that is not a zone apex: not a transfer.
    let other = question(ALICE, RecordType::AXFR, None);
    let mut stream = connect_from(AXFR_ALLOWED, addr).await;
    let resp = tcp_exchange_on(&mut stream, &other).await;
    assert_ne!(resp.metadata.response_code, ResponseCode::NoError);
    assert!(resp.answers.is_empty());
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_of_a_zone_with_large_records_is_complete() {
    let fx = Fx::new();
    let mut zone = fx.carrier(59, ALICE_URI, 3);
    // 400 TXT records of 1000 bytes: 200 of them (one AXFR chunk) exceed 64 KiB.
    for i in 0..400u32 {
        let mut s = vec![b'x'; 1000];
        s[..4].copy_from_slice(format!("{i:04}").as_bytes());
        let rec = Record {
            name: n(&format!("t{}.{ZONE}", i % 20)),
            ttl: TTL,
            data: RData::Txt(s.chunks(250).map(Into::into).collect()),
            line: 0,
        };
        zone.records.push(rec);
    }
    zone.save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    let config = fx.config(
        59,
        &[(ZONE, "carrier.zone")],
        &format!("[axfr]\nallow = [\"127.0.0.{AXFR_ALLOWED}\"]\n"),
    );
    let server = start(&config).await;
    let zone = ZoneFile::load(&fx.path("carrier.zone")).unwrap();
    let request = question(ZONE, RecordType::AXFR, None);
    let mut stream = connect_from(AXFR_ALLOWED, server.addrs[0]).await;
    write_frame(&mut stream, &request.to_vec().unwrap())
        .await
        .unwrap();
    let (records, _) = read_axfr(&mut stream, &request).await;
    assert_transfer(&records, &zone);
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 11. Robustness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_and_tcp_frames_do_not_hurt() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(54, "[limits]\nmax_request_bytes = 4096\n")).await;
    let addr = server.addrs[0];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d696d69);

    let sock = UdpSocket::bind((addr.ip(), 0)).await.unwrap();
    for i in 0..3000u32 {
        let len = rng.gen_range(0..600usize);
        let mut packet: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if i % 3 == 0 && len >= 12 {
            // A plausible query header: QR clear, some opcode, 1 question, maybe an OPT.
            packet[2] = rng.gen::<u8>() & 0x79;
            packet[3] = 0;
            packet[4..6].copy_from_slice(&1u16.to_be_bytes());
            packet[6..10].fill(0);
            packet[10..12].copy_from_slice(&rng.gen_range(0..2u16).to_be_bytes());
        }
        let _ = sock.send_to(&packet, addr).await;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    for i in 0..300u32 {
        let mut stream = connect(addr).await;
        let mut frame = Vec::new();
        match i % 4 {
            // A random length prefix (often above max_request_bytes) and a truncated body.
            0 => {
                let len: u16 = rng.gen();
                frame.extend_from_slice(&len.to_be_bytes());
                let body = rng.gen_range(0..(len as usize).min(600) + 1);
                frame.extend((0..body).map(|_| rng.gen::<u8>()));
            }
            // A complete frame of random bytes.
            1 => {
                let len = rng.gen_range(0..600usize);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
                frame.extend((0..len).map(|_| rng.gen::<u8>()));
            }
            // Half a length prefix.
            2 => frame.push(rng.gen()),
            // A frame with a plausible header and random rest, then a truncated one.
            _ => {
                let len = rng.gen_range(12..600usize);
                let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                body[2] &= 0x79;
                body[4..6].copy_from_slice(&1u16.to_be_bytes());
                frame.extend_from_slice(&(len as u16).to_be_bytes());
                frame.extend_from_slice(&body);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
                frame.extend_from_slice(&body[..len / 2]);
            }
        }
        let _ = timeout(T, stream.write_all(&frame)).await;
        drop(stream);
    }

    // Still answering, over UDP and TCP.
    let resp = query(addr, ALICE, rt_ssi()).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ssi_of(&resp.answers[0]).uri, ALICE_URI);
    let resp = tcp_query(addr, ALICE, rt_ssi()).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ssi_of(&resp.answers[0]).uri, ALICE_URI);
    assert_negative(
        &query(addr, NX, rt_ssi()).await,
        ResponseCode::NXDomain,
        ZONE,
        300,
    );
    assert!(server.stats().queries.load(Relaxed) > 2);
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 12. TCP limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connection_is_closed() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(55, "[limits]\ntcp_idle_timeout_secs = 1\n")).await;
    let addr = server.addrs[0];

    let mut stream = connect(addr).await;
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_secs(4), stream.read(&mut buf))
        .await
        .expect("idle connection not closed within 4 s")
        .unwrap_or(0);
    let idle = started.elapsed();
    assert_eq!(n, 0, "server sent data on an idle connection");
    assert!(idle >= Duration::from_millis(800), "closed after {idle:?}");
    assert!(idle <= Duration::from_millis(2500), "closed after {idle:?}");

    // After a query the idle clock starts again; the answer itself arrives.
    let mut stream = connect(addr).await;
    let resp = tcp_exchange_on(&mut stream, &question(ALICE, rt_ssi(), None)).await;
    assert_eq!(resp.answers.len(), 1);
    let n = timeout(Duration::from_secs(4), stream.read(&mut buf))
        .await
        .expect("connection not closed after going idle")
        .unwrap_or(0);
    assert_eq!(n, 0);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tcp_frame_closes_the_connection() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(56, "[limits]\nmax_request_bytes = 512\n")).await;
    let addr = server.addrs[0];

    // 513 announced: closed without an answer.
    let mut stream = connect(addr).await;
    stream.write_all(&513u16.to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(T, stream.read(&mut buf))
        .await
        .expect("connection not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // A request of exactly the limit is read and answered (FORMERR: padded garbage).
    let mut stream = connect(addr).await;
    let mut req = question(ALICE, rt_ssi(), None).to_vec().unwrap();
    let id = [req[0], req[1]];
    req.resize(512, 0);
    write_frame(&mut stream, &req).await.unwrap();
    let raw = read_frame(&mut stream)
        .await
        .expect("answer to a 512-byte request");
    assert_eq!(raw[..2], id);

    // A normal query still works.
    let resp = tcp_query(addr, ALICE, rt_ssi()).await;
    assert_eq!(resp.answers.len(), 1);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_limit_queues_extra_connections() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(57, "[limits]\ntcp_connections = 2\n")).await;
    let addr = server.addrs[0];
    let q = question(ALICE, rt_ssi(), None);

    // Two connections, served, then left open and idle.
    let mut first = connect(addr).await;
    assert_eq!(tcp_exchange_on(&mut first, &q).await.answers.len(), 1);
    let mut second = connect(addr).await;
    assert_eq!(tcp_exchange_on(&mut second, &q).await.answers.len(), 1);

    // A third waits in the accept queue: no answer while the two are open.
    let mut third = connect(addr).await;
    let q3 = question(BOB, rt_ssi(), None);
    write_frame(&mut third, &q3.to_vec().unwrap())
        .await
        .unwrap();
    let mut len = [0u8; 2];
    let early = timeout(Duration::from_millis(700), third.read_exact(&mut len)).await;
    assert!(early.is_err(), "third connection served beyond the limit");

    // UDP is not affected.
    assert_eq!(query(addr, ALICE, rt_ssi()).await.answers.len(), 1);

    // Closing one of the two lets the third in.
    drop(first);
    timeout(T, third.read_exact(&mut len))
        .await
        .expect("third connection not served after a slot freed")
        .unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    third.read_exact(&mut body).await.unwrap();
    let resp = decode_reply(&q3, &body);
    assert_eq!(ssi_of(&resp.answers[0]).uri, "mimi://chat.example/u/bob");
    // The second connection is still usable.
    assert_eq!(tcp_exchange_on(&mut second, &q).await.answers.len(), 1);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_does_not_hold_a_slot_forever() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(
        60,
        "[limits]\ntcp_connections = 1\ntcp_idle_timeout_secs = 1\n",
    ))
    .await;
    let addr = server.addrs[0];

    // Many queries for a 2.7 KB answer, pipelined, and never a byte read back: the
    // server's writes block once the socket buffers are full.
    let q = question(BIG, RecordType::TXT, None).to_vec().unwrap();
    let mut frames = Vec::new();
    for _ in 0..20_000 {
        frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
        frames.extend_from_slice(&q);
    }
    let stuck = connect(addr).await;
    let (_stuck_reader, mut stuck_writer) = stuck.into_split();
    let writer = tokio::spawn(async move {
        let _ = timeout(Duration::from_secs(20), stuck_writer.write_all(&frames)).await;
        stuck_writer
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Another client must get its turn once the idle (or a write) timeout has passed.
    let mut other = connect(addr).await;
    let q2 = question(ALICE, rt_ssi(), None);
    write_frame(&mut other, &q2.to_vec().unwrap())
        .await
        .unwrap();
    let raw = timeout(Duration::from_secs(6), async {
        let len = other.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        other.read_exact(&mut buf).await.ok()?;
        Some(buf)
    })
    .await
    .ok()
    .flatten()
    .expect("a client that never reads holds the only TCP slot");
    assert_eq!(decode_reply(&q2, &raw).answers.len(), 1);
    writer.abort();
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// 13. Counters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_what_was_answered() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(58, "")).await;
    let addr = server.addrs[0];

    // 3 answers (one over TCP), 2 NXDOMAIN, 1 referral, 2 NODATA, 2 REFUSED, 1 truncated.
    query(addr, ALICE, rt_ssi()).await;
    query(addr, BOB, RecordType::TXT).await;
    tcp_query(addr, ALICE, rt_ssi()).await;
    query(addr, NX, rt_ssi()).await;
    tcp_query(addr, NX, rt_ssi()).await;
    query(addr, BELOW_CHILD, rt_ssi()).await;
    query(addr, ENT, rt_ssi()).await;
    query(addr, ALICE, RecordType::TXT).await;
    query(addr, "example.org.", RecordType::A).await;
    query(addr, "e164.mimi.arpa.", rt_ssi()).await;
    let (resp, _) = udp_exchange(addr, &question(BIG, RecordType::TXT, None)).await;
    assert!(resp.metadata.truncation);

    let s = server.stats();
    let c = |a: &AtomicU64| a.load(Relaxed);
    eventually("counters", || {
        c(&s.queries) == 11 && c(&s.noerror) + c(&s.nxdomain) + c(&s.refused) == 11
    })
    .await;
    assert_eq!(c(&s.queries), 11, "{}", s.summary());
    assert_eq!(c(&s.noerror), 7, "{}", s.summary());
    assert_eq!(c(&s.nxdomain), 2, "{}", s.summary());
    assert_eq!(c(&s.referrals), 1, "{}", s.summary());
    assert_eq!(c(&s.nodata), 2, "{}", s.summary());
    assert_eq!(c(&s.refused), 2, "{}", s.summary());
    assert_eq!(c(&s.truncated), 1, "{}", s.summary());
    assert_eq!(c(&s.formerr), 0, "{}", s.summary());
    assert_eq!(c(&s.servfail), 0, "{}", s.summary());
    assert_eq!(c(&s.transfers), 0, "{}", s.summary());
    let summary = s.summary();
    assert!(summary.contains("queries=11"), "{summary}");
    assert!(summary.contains("truncated=1"), "{summary}");
    stop(server).await;
}

// ---------------------------------------------------------------------------------------
// NS at the apex, DS at a cut, NOTIFY

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_ns_answer_carries_addresses_and_ds_at_cut_is_parent_nodata() {
    let fx = Fx::new();
    let server = start(&fx.carrier_config(61, "")).await;
    let addr = server.addrs[0];
    let resp = query(addr, ZONE, RecordType::NS).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    assert!(resp.metadata.authoritative);
    assert_eq!(resp.answers.len(), 1);
    let glue: Vec<String> = resp
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    assert_eq!(glue, [format!("ns1.{ZONE} 127.0.0.61")]);
    // DS lives on the parent side of a cut: authoritative NODATA with our SOA.
    let resp = query(addr, CHILD, RecordType::DS).await;
    assert_negative(&resp, ResponseCode::NoError, ZONE, SOA_MINIMUM);
    assert!(resp.metadata.authoritative);
    // Below the cut, DS is the child's business: referral.
    assert_referral(&query(addr, BELOW_CHILD, RecordType::DS).await);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_new_serial_sends_notify_from_the_listen_address() {
    let fx = Fx::new();
    // A stand-in secondary that records NOTIFYs and acknowledges them.
    let secondary = tokio::net::UdpSocket::bind("127.0.0.63:0").await.unwrap();
    let sec_addr = secondary.local_addr().unwrap();
    let config = fx.carrier_config(62, &format!("[axfr]\nnotify = [\"{sec_addr}\"]\n"));
    let server = start(&config).await;
    fx.carrier(62, "mimi://chat.example/u/alice2", 2)
        .save(&fx.path("carrier.zone"), WriteStyle::Native)
        .unwrap();
    assert!(server.reload().await.unwrap().is_empty());
    let mut buf = [0u8; 512];
    let (n, from) = timeout(T, secondary.recv_from(&mut buf))
        .await
        .expect("a NOTIFY within 3 s")
        .unwrap();
    assert_eq!(from.ip(), lo(62), "sent from the server's own address");
    let notify = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(notify.metadata.op_code, OpCode::Notify);
    assert!(notify.metadata.authoritative);
    assert_eq!(notify.queries[0].name().to_string(), ZONE);
    assert_eq!(notify.queries[0].query_type(), RecordType::SOA);
    let mut ack = notify.clone();
    ack.metadata.message_type = MessageType::Response;
    secondary
        .send_to(&ack.to_vec().unwrap(), from)
        .await
        .unwrap();
    // The same serial again: no NOTIFY.
    assert!(server.reload().await.unwrap().is_empty());
    assert!(
        timeout(Duration::from_millis(500), secondary.recv_from(&mut buf))
            .await
            .is_err()
    );
    stop(server).await;
}
