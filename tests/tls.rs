//! DNS over TLS on `mimi dp serve` (RFC 7858, docs/security.md) on loopback: a DoT query is
//! answered as over TCP; a client trusting another CA, or pinning another key, refuses the
//! DP; an expired certificate is refused; a flood of idle TLS connections stays within the
//! connection limit while UDP is answered, and the slots come back; a bad certificate
//! file stops the start with its name.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use mimi_discovery::dp::DpServer;
use mimi_discovery::record::TYPE_SSI;
use mimi_discovery::resolver::transport::{exchange, tls_exchange};
use mimi_discovery::tls::{self, Issued, ServerTrust};
use mimi_discovery::zone::WriteStyle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const BLOCK: u8 = 72;
const CONFIG_EXTRA: &str = "";
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";
const WAIT: Duration = Duration::from_secs(3);

struct Dp {
    server: DpServer,
    ca: Issued,
    cert: Issued,
    _dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A DP at .1 of test `t` serving the carrier block over UDP/TCP and DoT, with a
/// certificate for "dp.test" and 127.0.0.1 from a new CA, valid `from`..`until` (unix
/// seconds), and `limits` lines.
async fn start(t: u8, from: u64, until: u64, limits: &str) -> Dp {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    carrier
        .save(&dir.path().join("carrier.zone"), WriteStyle::Native)
        .unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let ca = tls::make_ca("test CA", now() - 86400, now() + 86400).unwrap();
    let cert = tls::issue(&ca, &["dp.test".into(), ip(t, 1).to_string()], from, until).unwrap();
    let (c, k) = (
        write(dir.path(), "dp.pem", &cert.cert_pem),
        write(dir.path(), "dp.key", &cert.key_pem),
    );
    let config = dir.path().join("dp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{a}:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n[tls]\nlisten = [\"{a}:0\"]\ncert = {c:?}\nkey = {k:?}\n[limits]\n{limits}\n",
            a = ip(t, 1)
        ),
    )
    .unwrap();
    let server = DpServer::start(&config).await.expect("DP start");
    Dp {
        server,
        ca,
        cert,
        _dir: dir,
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn trusting(ca: &Issued) -> std::sync::Arc<rustls::ClientConfig> {
    tls::client_config(&ServerTrust::Ca(vec![der(&ca.cert_pem)])).unwrap()
}

async fn dot(
    dp: &Dp,
    name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<hickory_proto::op::Message, String> {
    tls_exchange(
        dp.server.tls_addrs[0],
        name,
        config,
        &owner(ALICE),
        TYPE_SSI,
        WAIT,
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_query_is_answered_as_over_udp_and_the_client_checks_the_dp() {
    bounded(async {
        let t = 1;
        let dp = start(t, now() - 60, now() + 3600, "").await;
        let (udp, _) = exchange(dp.server.addrs[0], &owner(ALICE), TYPE_SSI, WAIT)
            .await
            .unwrap();
        // Under the CA, by name and by address.
        for name in ["dp.test", &ip(t, 1).to_string()] {
            let reply = dot(&dp, name, trusting(&dp.ca)).await.unwrap();
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.metadata.authoritative);
            assert_eq!(reply.answers, udp.answers, "the same records as over UDP");
        }
        // By SPKI pin.
        let pin = tls::spki_pin(&der(&dp.cert.cert_pem)).unwrap();
        let pinned = tls::client_config(&ServerTrust::Pins(vec![pin])).unwrap();
        assert!(dot(&dp, "anything.example", pinned).await.is_ok());

        // Another CA, another name, another pin: refused.
        let other = tls::make_ca("other CA", now() - 60, now() + 3600).unwrap();
        let e = dot(&dp, "dp.test", trusting(&other)).await.unwrap_err();
        assert!(e.contains("TLS"), "{e}");
        let e = dot(&dp, "other.test", trusting(&dp.ca)).await.unwrap_err();
        assert!(e.contains("TLS"), "{e}");
        let stranger = tls::issue(&dp.ca, &["dp.test".into()], now() - 60, now() + 3600).unwrap();
        let wrong_pin = tls::spki_pin(&der(&stranger.cert_pem)).unwrap();
        let e = dot(
            &dp,
            "dp.test",
            tls::client_config(&ServerTrust::Pins(vec![wrong_pin])).unwrap(),
        )
        .await
        .unwrap_err();
        assert!(e.contains("not a pinned one"), "{e}");
        // The DP counts the failed handshakes (each as its side sees the alert).
        let failures = || {
            dp.server
                .stats()
                .tls_handshake_failures
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let started = Instant::now();
        while failures() < 3 && started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(failures() >= 3, "{}", failures());
        dp.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    bounded(async {
        let dp = start(2, now() - 7200, now() - 3600, "").await;
        let e = dot(&dp, "dp.test", trusting(&dp.ca)).await.unwrap_err();
        assert!(e.to_lowercase().contains("expired"), "{e}");
        dp.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_stay_within_the_limit_and_udp_is_still_answered() {
    bounded(async {
        let t = 3;
        let dp = start(
            t,
            now() - 60,
            now() + 3600,
            "tcp_connections = 4\ntcp_idle_timeout_secs = 1",
        )
        .await;
        let at: SocketAddr = dp.server.tls_addrs[0];
        // Twenty connections that never say hello.
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(tokio::net::TcpStream::connect(at).await.unwrap());
        }
        // UDP is unaffected.
        let (udp, _) = exchange(dp.server.addrs[0], &owner(ALICE), TYPE_SSI, WAIT)
            .await
            .unwrap();
        assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
        // The slots come back as the silent handshakes time out (1 s each, 4 at a time);
        // then a real client is served.
        let started = Instant::now();
        let mut served = false;
        while started.elapsed() < Duration::from_secs(15) {
            if dot(&dp, "dp.test", trusting(&dp.ca)).await.is_ok() {
                served = true;
                break;
            }
        }
        assert!(served, "no DoT answer within 15 s of a handshake flood");
        drop(idle);
        let failures = dp
            .server
            .stats()
            .tls_handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(failures >= 4, "{failures}");
        dp.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_file_stops_the_start_with_its_name() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::new();
        let (_, carrier) = root_and_block(4, CARRIER, &keys, ALICE, 3600);
        carrier
            .save(&dir.path().join("carrier.zone"), WriteStyle::Native)
            .unwrap();
        std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
        std::fs::write(dir.path().join("dp.pem"), "not a certificate\n").unwrap();
        std::fs::write(dir.path().join("dp.key"), "not a key\n").unwrap();
        let config = dir.path().join("dp.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"{a}:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n[tls]\nlisten = [\"{a}:0\"]\ncert = \"dp.pem\"\nkey = \"dp.key\"\n",
                a = ip(4, 1)
            ),
        )
        .unwrap();
        let e = DpServer::start(&config).await.err().expect("refused").to_string();
        assert!(e.contains("dp.pem") && e.contains("no CERTIFICATE"), "{e}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_answers_over_dot_as_over_udp() {
    bounded(async {
        let t = 5;
        let keys = Keys::new();
        let (root, carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
        let tree = Tree::start(
            t,
            &keys.trust_toml(),
            vec![spec(root, &[1]), spec(carrier, &[2])],
        )
        .await;
        let resolver = std::sync::Arc::new(tree.resolver());
        let (mut udp_server, udp_addrs) = mimi_discovery::resolver::server::listen(
            resolver.clone(),
            &[SocketAddr::new(ip(t, 9), 0)],
        )
        .await
        .unwrap();
        let ca = tls::make_ca("test CA", now() - 60, now() + 3600).unwrap();
        let cert = tls::issue(&ca, &["resolver.test".into()], now() - 60, now() + 3600).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = mimi_discovery::config::TlsSettings {
            listen: vec![SocketAddr::new(ip(t, 9), 0)],
            cert: write(dir.path(), "r.pem", &cert.cert_pem).into(),
            key: write(dir.path(), "r.key", &cert.key_pem).into(),
        };
        let (tasks, tls_addrs) = mimi_discovery::resolver::server::listen_tls(
            mimi_discovery::resolver::server::ResolverHandler(resolver.clone()),
            &settings,
            mimi_discovery::net::Limits::default(),
        )
        .await
        .unwrap();
        let over_tls = tls_exchange(
            tls_addrs[0],
            "resolver.test",
            trusting(&ca),
            &owner(ALICE),
            TYPE_SSI,
            WAIT,
        )
        .await
        .unwrap();
        let (over_udp, _) = exchange(udp_addrs[0], &owner(ALICE), TYPE_SSI, WAIT)
            .await
            .unwrap();
        assert_eq!(over_tls.metadata.response_code, ResponseCode::NoError);
        assert_eq!(over_tls.answers.len(), 1);
        assert_eq!(over_tls.answers, over_udp.answers);
        for task in tasks {
            task.abort();
        }
        udp_server.shutdown_gracefully().await.unwrap();
        tree.shutdown().await;
    })
    .await
}

/// Sends AXFR (or IXFR from `serial`) for the carrier zone over TCP, signed with `key` when
/// given; returns every message of the answer (until the closing SOA or an error rcode).
async fn transfer(
    at: SocketAddr,
    key: Option<&mimi_discovery::tsig::TsigKey>,
    ixfr: Option<u32>,
) -> Vec<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{RData, Record, RecordType};
    let mut m = Message::new(0x5151, MessageType::Query, OpCode::Query);
    let qtype = if ixfr.is_some() {
        RecordType::IXFR
    } else {
        RecordType::AXFR
    };
    m.add_query(Query::query(n(CARRIER).to_hickory(), qtype));
    if let Some(serial) = ixfr {
        let soa = hickory_proto::rr::rdata::SOA::new(
            n(CARRIER).to_hickory(),
            n(CARRIER).to_hickory(),
            serial,
            0,
            0,
            0,
            0,
        );
        m.add_authority(Record::from_rdata(
            n(CARRIER).to_hickory(),
            0,
            RData::SOA(soa),
        ));
    }
    let mut bytes = m.to_vec().unwrap();
    if let Some(k) = key {
        mimi_discovery::tsig::sign_request(&mut bytes, k, now()).unwrap();
    }
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    mimi_discovery::wire::write_frame(&mut s, &bytes)
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut soas = 0;
    loop {
        let frame = tokio::time::timeout(WAIT, mimi_discovery::wire::read_frame(&mut s))
            .await
            .expect("transfer stalled")
            .unwrap();
        let unsigned = mimi_discovery::tsig::unsigned_message(&frame).unwrap_or(frame.clone());
        let msg = Message::from_vec(&unsigned).unwrap();
        soas += msg
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        let done = msg.metadata.response_code != ResponseCode::NoError
            || msg.answers.is_empty()
            || soas >= 2
            || (ixfr.is_some() && soas == 1 && msg.answers.len() == 1);
        out.push(frame);
        if done {
            return out;
        }
    }
}

fn rcode_of(frame: &[u8]) -> ResponseCode {
    let unsigned = mimi_discovery::tsig::unsigned_message(frame).unwrap_or(frame.to_vec());
    hickory_proto::op::Message::from_vec(&unsigned)
        .unwrap()
        .metadata
        .response_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_transfers_need_tsig_when_keys_are_configured_and_come_back_signed() {
    use mimi_discovery::tsig::{self, KeyFileFormat, TsigKey};
    bounded(async {
        let t = 6;
        let keys = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        // Three hundred mappings: a transfer of several messages.
        let (_, mut carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
        for i in 0..300 {
            let o = owner(&format!("+1 555 300 {i:04}"));
            carrier.put_ssi(o.clone(), 3600, mapping(&keys.chat, &o, "u", mimi_discovery::record::Context::Any, 10));
        }
        carrier.save(&dir.path().join("carrier.zone"), WriteStyle::Native).unwrap();
        std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
        let xfr = TsigKey::generate(n("xfr-key."));
        xfr.save_new(dir.path().join("xfr.tsig"), KeyFileFormat::Bind).unwrap();
        let config = dir.path().join("dp.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"{a}:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n[axfr]\nkeys = [\"xfr.tsig\"]\n",
                a = ip(t, 1)
            ),
        )
        .unwrap();
        let dp = DpServer::start(&config).await.expect("DP start");
        let at = dp.addrs[0];
        // Unsigned: refused.
        let r = transfer(at, None, None).await;
        assert_eq!(rcode_of(&r[0]), ResponseCode::Refused);
        // Signed with a key of the same name but another secret: NOTAUTH.
        let forged = TsigKey::generate(n("xfr-key."));
        let r = transfer(at, Some(&forged), None).await;
        assert_eq!(rcode_of(&r[0]), ResponseCode::NotAuth);
        // Signed with the key: every message signed, chained to the previous one.
        let mut bytes = {
            use hickory_proto::op::{Message, MessageType, OpCode, Query};
            let mut m = Message::new(0x5151, MessageType::Query, OpCode::Query);
            m.add_query(Query::query(n(CARRIER).to_hickory(), hickory_proto::rr::RecordType::AXFR));
            m.to_vec().unwrap()
        };
        let request_mac = tsig::sign_request(&mut bytes, &xfr, now()).unwrap();
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        mimi_discovery::wire::write_frame(&mut s, &bytes).await.unwrap();
        let mut prev: Option<tsig::TsigMac> = None;
        let mut messages = 0;
        let mut records = 0;
        loop {
            let frame = mimi_discovery::wire::read_frame(&mut s).await.unwrap();
            let mac = match &prev {
                None => tsig::verify_response(&frame, &xfr, &request_mac, now()),
                Some(p) => tsig::verify_response_continuation(&frame, &xfr, p, now()),
            }
            .unwrap_or_else(|e| panic!("message {messages}: {e}"));
            prev = Some(mac);
            messages += 1;
            let msg = hickory_proto::op::Message::from_vec(&tsig::unsigned_message(&frame).unwrap()).unwrap();
            records += msg.answers.len();
            let last = msg.answers.last().map(|r| r.record_type()) == Some(hickory_proto::rr::RecordType::SOA)
                && records > 1;
            if last {
                break;
            }
        }
        assert!(messages >= 3, "{messages} messages");
        assert!(records > 300, "{records} records");
        // IXFR signed too; unsigned refused.
        let serial = dp.shared().zones.load().get(&n(CARRIER)).unwrap().store.soa().serial;
        let r = transfer(at, Some(&xfr), Some(serial)).await;
        assert_eq!(rcode_of(&r[0]), ResponseCode::NoError);
        assert!(tsig::find_tsig(&r[0]).unwrap().is_some(), "the IXFR answer is signed");
        let r = transfer(at, None, Some(serial)).await;
        assert_eq!(rcode_of(&r[0]), ResponseCode::Refused);
        dp.shutdown().await;
    })
    .await
}
