//! Access classes on `mimi dp serve` (DESIGN section 10, docs/security.md) on loopback: a
//! provider known by its client certificate (mutual TLS) and one known by its TSIG key
//! each get their own quota; an enumeration loop stops at its quota with REFUSED and the
//! RATE_LIMITED extended error while the other provider is still served; a stranger's
//! certificate counts as anonymous, with the plain queries of the same address; signed
//! queries get signed answers, and a bad signature is NOTAUTH.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::RecordType;
use mimi_discovery::dp::DpServer;
use mimi_discovery::name::Name;
use mimi_discovery::pir::carrier::parse_ede;
use mimi_discovery::record::TYPE_SSI;
use mimi_discovery::tls::{self, Issued};
use mimi_discovery::tsig::{self, TsigKey};
use mimi_discovery::zone::WriteStyle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpStream, UdpSocket};

const BLOCK: u8 = 74;
const CONFIG_EXTRA: &str = "";
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";
const WAIT: Duration = Duration::from_secs(3);
const RATE_LIMITED: u16 = 49154;

struct Dp {
    server: DpServer,
    ca: Issued,
    /// Provider a.example.'s client certificate (its pin is in the config).
    client_a: Issued,
    /// Provider b.example.'s query key.
    key_b: TsigKey,
    _dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A DP at .1 of test `t` with DoT; provider a.example. known by a client certificate,
/// b.example. by a TSIG key, each with `quota` lookups a day (all at once); anonymous
/// clients get `anonymous`.
async fn start(t: u8, quota: u64, anonymous: u64) -> Dp {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    carrier
        .save(&dir.path().join("carrier.zone"), WriteStyle::Native)
        .unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let ca = tls::make_ca("test CA", now() - 86400, now() + 86400).unwrap();
    let cert = tls::issue(&ca, &[ip(t, 1).to_string()], now() - 60, now() + 3600).unwrap();
    let client_a = tls::issue(&ca, &["ap-a.test".into()], now() - 60, now() + 3600).unwrap();
    let pin_a = tls::spki_pin(&der(&client_a.cert_pem)).unwrap();
    let key_b = TsigKey::generate(Name::parse("b-query.", None).unwrap());
    key_b
        .save_new(dir.path().join("b.key"), tsig::KeyFileFormat::Bind)
        .unwrap();
    let (c, k) = (
        write(dir.path(), "dp.pem", &cert.cert_pem),
        write(dir.path(), "dp.key", &cert.key_pem),
    );
    let config = dir.path().join("dp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{a}:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"{CARRIER}\"\nfile = \"carrier.zone\"\n\
             [tls]\nlisten = [\"{a}:0\"]\ncert = {c:?}\nkey = {k:?}\n\
             [access]\nanonymous_lookups_per_day = {anonymous}\nanonymous_burst = {anonymous}\n\
             [[client]]\nprovider = \"a.example.\"\nspki = [{pin_a:?}]\nlookups_per_day = {quota}\nburst = {quota}\n\
             [[client]]\nprovider = \"b.example.\"\ntsig = \"b.key\"\nlookups_per_day = {quota}\nburst = {quota}\n",
            a = ip(t, 1)
        ),
    )
    .unwrap();
    let server = DpServer::start(&config).await.expect("DP start");
    Dp {
        server,
        ca,
        client_a,
        key_b,
        _dir: dir,
    }
}

fn query_bytes(qname: &Name) -> Vec<u8> {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(qname.to_hickory(), RecordType::from(TYPE_SSI)));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    msg.to_vec().unwrap()
}

fn ede_of(reply: &Message) -> Option<u16> {
    match reply.edns.as_ref()?.option(EdnsCode::from(15)) {
        Some(EdnsOption::Unknown(_, bytes)) => parse_ede(bytes).map(|(c, _)| c),
        _ => None,
    }
}

/// A DoT connection presenting `client` (a certificate and key in PEM), if any.
async fn connect(dp: &Dp, client: Option<&Issued>) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&dp.ca.cert_pem)).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                vec![der(&c.cert_pem)],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let at: SocketAddr = dp.server.tls_addrs[0];
    let tcp = TcpStream::connect(at).await.unwrap();
    let name = rustls::pki_types::ServerName::from(at.ip());
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// One query on an open DoT connection.
async fn ask(stream: &mut tokio_rustls::client::TlsStream<TcpStream>, qname: &Name) -> Message {
    use mimi_discovery::wire::{read_frame, write_frame};
    write_frame(stream, &query_bytes(qname)).await.unwrap();
    let reply = tokio::time::timeout(WAIT, read_frame(stream))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&reply).unwrap()
}

/// One UDP query from 127.0.0.1, TSIG-signed with `key` when given; the reply's bytes.
async fn udp(
    dp: &Dp,
    qname: &Name,
    key: Option<&TsigKey>,
) -> (Message, Vec<u8>, Option<tsig::TsigMac>) {
    let mut bytes = query_bytes(qname);
    let mac = key.map(|k| tsig::sign_request(&mut bytes, k, now()).unwrap());
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&bytes, dp.server.addrs[0]).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(WAIT, sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    (Message::from_vec(&buf).unwrap(), buf, mac)
}

/// A name in the carrier block, different each time: what an enumeration asks.
fn walk(i: u32) -> Name {
    owner(&format!("+1 555 100 {:04}", i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enumeration_stops_at_its_quota_while_another_provider_is_served() {
    bounded(async {
        let quota = 30;
        let dp = start(1, quota, 5).await;
        let mut a = connect(&dp, Some(&dp.client_a)).await;
        // Provider a walks the block over mutual TLS: `quota` answers, then refusals.
        for i in 0..quota as u32 {
            let reply = ask(&mut a, &walk(i)).await;
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "query {i}"
            );
        }
        let refused = ask(&mut a, &walk(1000)).await;
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        assert_eq!(ede_of(&refused), Some(RATE_LIMITED));
        // Provider b, signing with its key over UDP, is served, and its answers are signed.
        for _ in 0..5 {
            let (reply, bytes, mac) = udp(&dp, &owner(ALICE), Some(&dp.key_b)).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            tsig::verify_response(&bytes, &dp.key_b, &mac.unwrap(), now())
                .expect("a signed query gets a signed answer");
        }
        let report = dp.server.shared().access.load().report();
        let a_report = report
            .iter()
            .find(|r| r.provider.to_string() == "a.example.")
            .unwrap();
        assert_eq!(a_report.lookups, quota);
        assert_eq!(a_report.refused, 1);
        assert_eq!(a_report.nxdomain_today, quota);
        assert!(a_report.distinct_names >= quota - 2, "{a_report:?}");
        let b_report = report
            .iter()
            .find(|r| r.provider.to_string() == "b.example.")
            .unwrap();
        assert_eq!(b_report.lookups, 5);
        assert_eq!(
            dp.server
                .stats()
                .rate_limited
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        dp.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_certificate_is_anonymous_and_a_bad_tsig_is_notauth() {
    bounded(async {
        let dp = start(2, 100, 5).await;
        // A certificate no [[client]] names, from another CA even: anonymous.
        let other_ca = tls::make_ca("other CA", now() - 60, now() + 3600).unwrap();
        let stranger = tls::issue(&other_ca, &["x.test".into()], now() - 60, now() + 3600).unwrap();
        let mut s = connect(&dp, Some(&stranger)).await;
        for i in 0..5 {
            let reply = ask(&mut s, &walk(i)).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        }
        let reply = ask(&mut s, &walk(5)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        assert_eq!(ede_of(&reply), Some(RATE_LIMITED));
        // The same address without any certificate shares that class.
        let (reply, _, _) = udp(&dp, &owner(ALICE), None).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        // The provider's certificate on a new connection from the same address is served.
        let mut a = connect(&dp, Some(&dp.client_a)).await;
        assert_eq!(
            ask(&mut a, &owner(ALICE)).await.metadata.response_code,
            ResponseCode::NoError
        );
        // A key the DP does not know: NOTAUTH, not anonymity.
        let unknown = TsigKey::generate(Name::parse("b-query.", None).unwrap());
        let (reply, _, _) = udp(&dp, &owner(ALICE), Some(&unknown)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
        // No certificate at all over TLS: anonymous too (still refused here).
        let mut plain = connect(&dp, None).await;
        let reply = ask(&mut plain, &owner(ALICE)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        dp.server.shutdown().await;
    })
    .await
}
