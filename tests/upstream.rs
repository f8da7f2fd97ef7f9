//! The resolver's upstream (`[upstream]`, docs/security.md): DNS over TLS to DPs under a
//! CA or SPKI pins finds what plain UDP finds; a wrong CA, a wrong pin and an expired DP
//! certificate each fail the lookup naming the certificate problem; private lookups run
//! over TLS; kept connections serve many lookups with few handshakes (one the DP closed
//! is replaced once), and the resolver presents its client certificate; TSIG-signed queries verify at the DP's side and a
//! tampered signed answer is refused.
//!
//! Addresses 127.73.t.x; each test has its own t.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mimi_discovery::record::{Context, TrustStore};
use mimi_discovery::resolver::{LookupResult, Outcome, Resolver, ResolverConfig};
use mimi_discovery::tls::{self, Issued};
use mimi_discovery::tsig::{self, KeyFileFormat, TsigKey};
use mimi_discovery::zone::ZoneFile;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

const BLOCK: u8 = 73;
const CONFIG_EXTRA: &str = "";
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(1000);
const RESOLVER_RETRIES: u32 = 0;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";

/// A deployment CA and the files made from it, in their own directory.
struct Pki {
    ca: Issued,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki::named("upstream test CA")
    }

    /// A CA of its own name: one of the same name would be taken for the issuer and fail
    /// on the signature instead.
    fn named(name: &str) -> Pki {
        let ca = tls::make_ca(name, now() - 86400, now() + 86400).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        Pki { ca, dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes `<name>.pem` and `<name>.key` for `subject`, valid `from`..`until`.
    fn issue(&self, name: &str, subject: &str, from: u64, until: u64) -> Issued {
        let cert = tls::issue(&self.ca, &[subject.to_string()], from, until).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), &cert.cert_pem).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), &cert.key_pem).unwrap();
        cert
    }

    /// DP certificates for the addresses `xs` of test `t` (files dp-<ip>.pem/.key).
    fn dp_certs(&self, t: u8, xs: &[u8], from: u64, until: u64) -> Vec<Issued> {
        xs.iter()
            .map(|&x| {
                let a = ip(t, x).to_string();
                self.issue(&format!("dp-{a}"), &a, from, until)
            })
            .collect()
    }

    /// The `[tls]` section of a tree's DPs: DoT on the tree's DoT port of each address.
    fn dp_tls(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "[tls]\nlisten = [\"@ADDR@:@DOT_PORT@\"]\ncert = \"{d}/dp-@ADDR@.pem\"\nkey = \"{d}/dp-@ADDR@.key\"\n"
        )
    }
}

fn pin_of(cert: &Issued) -> String {
    tls::spki_pin(&CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()).unwrap()
}

/// A root at .1 delegating the carrier block to .2, both DPs serving DoT as well.
async fn tls_tree(t: u8, keys: &Keys, pki: &Pki, from: u64, until: u64, extra: &str) -> Tree {
    pki.dp_certs(t, &[1, 2], from, until);
    let (root, zone) = root_and_block(t, CARRIER, keys, ALICE, 3600);
    let mut specs = vec![spec(root, &[1]), spec(zone, &[2])];
    for s in &mut specs {
        s.config_extra = format!("{}{extra}", pki.dp_tls());
    }
    Tree::start(t, &keys.trust_toml(), specs).await
}

/// A resolver from config text (roots, port and trust of `tree` first), as
/// `mimi lookup --config` would build it.
fn resolver_from(tree: &Tree, dir: &Path, more: &str) -> Resolver {
    let file = dir.join(format!("resolver-{}.toml", rand_suffix()));
    std::fs::write(
        &file,
        format!(
            "roots = [\"{}\"]\nport = {}\ntrust = {:?}\n[limits]\ntimeout_ms = {}\nretries = {}\n{more}",
            ip(tree.t, 1),
            tree.port,
            tree.trust.display().to_string(),
            RESOLVER_TIMEOUT.as_millis(),
            RESOLVER_RETRIES,
        ),
    )
    .unwrap();
    let config = ResolverConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let trust = TrustStore::load(&config.trust).unwrap();
    Resolver::new(config, trust)
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Relaxed)
}

fn uris(r: &LookupResult) -> Vec<String> {
    match &r.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        other => panic!("not found: {other:?}"),
    }
}

async fn lookup(r: &Resolver, who: &str) -> Result<LookupResult, String> {
    timeout(Duration::from_secs(20), r.lookup(&sii(who), None))
        .await
        .expect("lookup timed out")
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_under_the_ca_finds_what_udp_finds() {
    bounded(async {
        let (keys, pki) = (Keys::new(), Pki::new());
        let tree = tls_tree(1, &keys, &pki, now() - 60, now() + 3600, "").await;
        let plain = lookup(&tree.resolver(), ALICE).await.unwrap();
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {}\nca = \"ca.pem\"\n",
                tree.dot_port
            ),
        );
        let over_tls = lookup(&r, ALICE).await.unwrap();
        assert_eq!(uris(&over_tls), uris(&plain));
        assert_eq!(uris(&over_tls), vec![uri(&keys.chat, "alice")]);
        assert_eq!(
            over_tls.server,
            Some(SocketAddr::new(ip(1, 2), tree.dot_port)),
            "answered over DoT by the carrier's DP"
        );
        // A name that does not exist is denied over TLS as over UDP.
        let none = lookup(&r, "+1 555 111 9999").await.unwrap();
        assert!(matches!(none.outcome, Outcome::NotDiscoverable(_)));
        // Two DPs, one handshake each: the connections were kept.
        assert_eq!(r.upstream().stats.tls_handshakes.load(Relaxed), 2);
        assert!(r.upstream().stats.tls_reused.load(Relaxed) > 0);
        tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_under_pins_finds_what_udp_finds_and_a_wrong_pin_or_ca_fails() {
    bounded(async {
        let (keys, pki) = (Keys::new(), Pki::new());
        let t = 2;
        let tree = tls_tree(t, &keys, &pki, now() - 60, now() + 3600, "").await;
        // The pins of the certificates the two DPs serve.
        let pins: Vec<String> = [1, 2]
            .iter()
            .map(|&x| {
                let pem =
                    std::fs::read_to_string(pki.path(&format!("dp-{}.pem", ip(t, x)))).unwrap();
                tls::spki_pin(&CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap()
            })
            .collect();
        let port = tree.dot_port;
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!("[upstream]\ntls = true\ntls_port = {port}\npins = {pins:?}\n"),
        );
        let found = lookup(&r, ALICE).await.unwrap();
        assert_eq!(
            uris(&found),
            uris(&lookup(&tree.resolver(), ALICE).await.unwrap())
        );

        // Pinning only the root's key: the carrier's DP is refused, by name of the problem.
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {port}\npins = [{:?}]\n",
                pins[0]
            ),
        );
        let e = lookup(&r, ALICE).await.unwrap_err();
        assert!(e.contains("TLS") && e.contains("not a pinned one"), "{e}");

        // Another deployment's CA: the root's certificate does not chain to it.
        let other = Pki::named("another deployment's CA");
        let r = resolver_from(
            &tree,
            other.dir.path(),
            &format!("[upstream]\ntls = true\ntls_port = {port}\nca = \"ca.pem\"\n"),
        );
        let e = lookup(&r, ALICE).await.unwrap_err();
        assert!(
            e.contains("TLS: invalid peer certificate: UnknownIssuer"),
            "{e}"
        );
        tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_dp_certificate_is_refused() {
    bounded(async {
        let (keys, pki) = (Keys::new(), Pki::new());
        let tree = tls_tree(3, &keys, &pki, now() - 7200, now() - 3600, "").await;
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {}\nca = \"ca.pem\"\n",
                tree.dot_port
            ),
        );
        let e = lookup(&r, ALICE).await.unwrap_err();
        assert!(
            e.contains("TLS") && e.to_lowercase().contains("expired"),
            "{e}"
        );
        // Plain UDP still works: only the certificate is at fault.
        assert!(lookup(&tree.resolver(), ALICE).await.is_ok());
        tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_lookup_runs_over_tls() {
    bounded(async {
        let (keys, pki) = (Keys::new(), Pki::new());
        let tree = tls_tree(
            4,
            &keys,
            &pki,
            now() - 60,
            now() + 3600,
            "[pir]\nthreads = 1\n",
        )
        .await;
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {}\nca = \"ca.pem\"\n",
                tree.dot_port
            ),
        );
        let before = tree.queries(2);
        let found = timeout(
            Duration::from_secs(60),
            r.lookup_private(&sii(ALICE), Some(Context::Any)),
        )
        .await
        .expect("private lookup timed out")
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(uris(&found), vec![uri(&keys.chat, "alice")]);
        assert_eq!(found.server, Some(SocketAddr::new(ip(4, 2), tree.dot_port)));
        assert!(tree.queries(2) > before);
        // The walk and the OPRF/PIR exchanges shared the two DPs' connections.
        assert_eq!(r.upstream().stats.tls_handshakes.load(Relaxed), 2);
        tree.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Fronts: the test's own servers between the resolver and a plain DP at .2, at the
// address .1 the zones name, to watch what the resolver sends.

/// The root and the carrier block on one DP at .2, both zones naming .1 as their server.
async fn fronted_tree(t: u8, keys: &Keys) -> Tree {
    let front = ip(t, 1);
    let mut root = ZoneFile::new_zone(apex(), &[(n("ns1.mimi.arpa."), front)], 3600, 1);
    let ns = n(&format!("ns1.{CARRIER}"));
    root.set_delegation(&n(CARRIER), &[(ns.clone(), front)], 3600);
    let mut zone = ZoneFile::new_zone(n(CARRIER), &[(ns, front)], 3600, 1);
    for who in [ALICE, "+1 555 111 3333", "+1 555 111 4444"] {
        let o = owner(who);
        zone.put_ssi(
            o.clone(),
            3600,
            mapping(&keys.chat, &o, "alice", Context::Any, 10),
        );
    }
    let mut s = spec(root, &[2]);
    s.extra.push(zone);
    Tree::start(t, &keys.trust_toml(), vec![s]).await
}

/// What a TLS front saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    messages: AtomicU64,
    client_pins: Mutex<Vec<String>>,
}

/// A DoT server at `at` that requires a client certificate from `ca`, records its pin,
/// and passes each message on to the DP at `dp` over TCP.
async fn tls_front(at: SocketAddr, dp: SocketAddr, pki: &Pki, seen: Arc<Seen>) {
    let cert = pki.issue("front", &at.ip().to_string(), now() - 60, now() + 3600);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        tls::provider(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![tls::ALPN_DOT.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(at).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.connections.fetch_add(1, Relaxed);
                if let Some(c) = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                {
                    seen.client_pins
                        .lock()
                        .unwrap()
                        .push(tls::spki_pin(c).unwrap());
                }
                let Ok(mut back) = TcpStream::connect(dp).await else {
                    return;
                };
                use mimi_discovery::wire::{read_frame, write_frame};
                use tokio::io::AsyncWriteExt;
                while let Ok(msg) = read_frame(&mut stream).await {
                    seen.messages.fetch_add(1, Relaxed);
                    if write_frame(&mut back, &msg).await.is_err() {
                        return;
                    }
                    let Ok(reply) = read_frame(&mut back).await else {
                        return;
                    };
                    if write_frame(&mut stream, &reply).await.is_err() {
                        return;
                    }
                    let _ = stream.flush().await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_connections_serve_many_lookups_and_carry_the_client_certificate() {
    bounded(async {
        let t = 5;
        let (keys, pki) = (Keys::new(), Pki::new());
        let tree = fronted_tree(t, &keys).await;
        let seen = Arc::new(Seen::default());
        let front = SocketAddr::new(ip(t, 1), tree.dot_port);
        tls_front(front, tree.addr(2), &pki, seen.clone()).await;
        let client = pki.issue("client", "resolver.ap.example", now() - 60, now() + 3600);
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {}\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n",
                tree.dot_port
            ),
        );
        // Distinct names, so every lookup asks the DP (none is answered from the cache).
        let lookups = 20;
        for i in 0..lookups {
            let who = match i % 3 {
                0 => ALICE.to_string(),
                1 => "+1 555 111 3333".to_string(),
                _ => "+1 555 111 4444".to_string(),
            };
            let who = if i < 3 {
                who
            } else {
                format!("+1 555 222 {:04}", i)
            };
            lookup(&r, &who).await.unwrap();
        }
        let messages = seen.messages.load(Relaxed);
        let connections = seen.connections.load(Relaxed);
        assert!(messages >= lookups, "{messages} messages");
        assert_eq!(connections, 1, "{messages} messages over {connections} connections");
        assert_eq!(r.upstream().stats.tls_handshakes.load(Relaxed), 1);
        // The resolver presented its certificate; the DP knows it by this pin.
        assert_eq!(*seen.client_pins.lock().unwrap(), vec![pin_of(&client)]);
        tree.shutdown().await;
    })
    .await
}

/// A UDP server at `at` that checks each query's TSIG under `key`, passes the query on
/// unsigned to the DP at `dp`, and signs the answer (altering it after signing when
/// `tamper`). Counts the queries whose TSIG verified and those that had none or a bad one.
async fn tsig_front(
    at: SocketAddr,
    dp: SocketAddr,
    key: TsigKey,
    tamper: bool,
) -> Arc<(AtomicU64, AtomicU64)> {
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let sock = UdpSocket::bind(at).await.unwrap();
    let c = counts.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let query = &buf[..len];
            let verified = match tsig::verify_request(query, std::slice::from_ref(&key), now()) {
                Ok(v) => v,
                Err(_) => {
                    c.1.fetch_add(1, Relaxed);
                    continue;
                }
            };
            c.0.fetch_add(1, Relaxed);
            let unsigned = tsig::unsigned_message(query).unwrap();
            let back = UdpSocket::bind((at.ip(), 0)).await.unwrap();
            back.send_to(&unsigned, dp).await.unwrap();
            let mut reply = vec![0u8; 65535];
            let Ok(Ok(n)) = timeout(Duration::from_secs(2), back.recv(&mut reply)).await else {
                continue;
            };
            reply.truncate(n);
            tsig::sign_response(&mut reply, &key, &verified.request_mac, now(), 0).unwrap();
            if tamper {
                // RA flag: harmless to the resolver, fatal to the MAC.
                reply[3] ^= 0x80;
            }
            let _ = sock.send_to(&reply, from).await;
        }
    });
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_tsig_signed_and_a_tampered_signed_answer_is_refused() {
    bounded(async {
        let keys = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let key = TsigKey::generate(n("ap.example."));
        key.save_new(dir.path().join("ap.key"), KeyFileFormat::Bind)
            .unwrap();

        let t = 6;
        let tree = fronted_tree(t, &keys).await;
        let counts = tsig_front(
            SocketAddr::new(ip(t, 1), tree.port),
            tree.addr(2),
            key.clone(),
            false,
        )
        .await;
        let r = resolver_from(&tree, dir.path(), "[upstream]\ntsig = \"ap.key\"\n");
        let found = lookup(&r, ALICE).await.unwrap();
        assert_eq!(uris(&found), vec![uri(&keys.chat, "alice")]);
        let (signed, unsigned) = (counts.0.load(Relaxed), counts.1.load(Relaxed));
        assert!(signed > 0);
        assert_eq!(signed, u64::from(found.queries), "every query signed");
        assert_eq!(unsigned, 0);

        // The same answers altered after signing: refused, naming the TSIG failure.
        let t = 7;
        let tree2 = fronted_tree(t, &keys).await;
        tsig_front(
            SocketAddr::new(ip(t, 1), tree2.port),
            tree2.addr(2),
            key,
            true,
        )
        .await;
        let r = resolver_from(&tree2, dir.path(), "[upstream]\ntsig = \"ap.key\"\n");
        let e = lookup(&r, ALICE).await.unwrap_err();
        assert!(e.contains("answered badly") && e.contains("TSIG"), "{e}");
        assert!(e.contains("does not verify"), "{e}");

        // A resolver without the key is not let through by the front at all.
        let r = tree2.resolver();
        assert!(lookup(&r, ALICE).await.is_err());
        tree.shutdown().await;
        tree2.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_configs_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let file = dir.path().join("r.toml");
    let head = "roots = [\"127.73.9.1\"]\ntrust = \"t.toml\"\n[upstream]\n# comment\n";
    let cases: Vec<(String, &str)> = vec![
        (
            "tls = true\n".into(),
            "r.toml:5: upstream.tls = true needs ca",
        ),
        (
            format!("tls = true\nca = {:?}\npins = []\n", pki.path("ca.pem")),
            "r.toml:6: upstream: give either ca or pins",
        ),
        (
            "tls = true\npins = [\"abc\"]\n".into(),
            "r.toml:6: upstream.pins",
        ),
        (
            "tls = true\npins = []\n".into(),
            "r.toml:6: upstream.pins is empty",
        ),
        (
            "ca = \"ca.pem\"\n".into(),
            "r.toml:5: upstream.ca needs upstream.tls = true",
        ),
        (
            "tls = true\nca = \"missing.pem\"\n".into(),
            "r.toml:6: upstream.ca: ",
        ),
        (
            format!(
                "tls = true\nca = {:?}\ncert = \"c.pem\"\n",
                pki.path("ca.pem")
            ),
            "r.toml:7: upstream.cert needs upstream.key",
        ),
        ("tsig = \"none.key\"\n".into(), "r.toml:5: upstream.tsig: "),
        ("tls = \"yes\"\n".into(), "r.toml:5:"),
    ];
    for (body, want) in cases {
        std::fs::write(&file, format!("{head}{body}")).unwrap();
        let e = ResolverConfig::load(&file).unwrap_err().to_string();
        let e = e.replace(&format!("{}/", dir.path().display()), "");
        assert!(e.starts_with(want), "{body:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_dp_closed_is_replaced_once() {
    bounded(async {
        let (keys, pki) = (Keys::new(), Pki::new());
        // The DPs close idle connections after 1 s, before the resolver drops them.
        let tree = tls_tree(
            8,
            &keys,
            &pki,
            now() - 60,
            now() + 3600,
            "[limits]\ntcp_idle_timeout_secs = 1\n",
        )
        .await;
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {}\nca = \"ca.pem\"\n",
                tree.dot_port
            ),
        );
        lookup(&r, ALICE).await.unwrap();
        let stats = &r.upstream().stats;
        assert_eq!(stats.tls_handshakes.load(Relaxed), 2);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        // Another name, so the carrier's DP is asked again on its closed connection.
        let denied = lookup(&r, "+1 555 111 9999").await.unwrap();
        assert!(matches!(denied.outcome, Outcome::NotDiscoverable(_)));
        assert_eq!(stats.tls_handshakes.load(Relaxed), 3, "one new connection");
        tree.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The DP's side: the resolver's client certificate and TSIG key name its app provider in
// the DPs' access classes (DESIGN section 10, tests/access.rs for the quotas themselves).

/// Lookups from `r` as counted by the DP at .2 for each provider: (provider, lookups).
fn counted(tree: &Tree) -> Vec<(String, u64)> {
    tree.server(2)
        .shared()
        .access
        .load()
        .report()
        .into_iter()
        .map(|c| (c.provider.to_string(), c.lookups))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dp_counts_the_resolvers_lookups_against_its_provider() {
    bounded(async {
        let (keys, pki) = (Keys::new(), Pki::new());
        let client = pki.issue("client", "resolver.chat.example", now() - 60, now() + 3600);
        let key = TsigKey::generate(n("chat-query."));
        key.save_new(pki.path("ap.key"), KeyFileFormat::Bind)
            .unwrap();
        let d = pki.dir.path().display();
        let classes = format!(
            "[[client]]\nprovider = \"chat.example.\"\nspki = [{:?}]\nlookups_per_day = 1000\n\
             [[client]]\nprovider = \"talk.example.\"\ntsig = \"{d}/ap.key\"\nlookups_per_day = 1000\n",
            pin_of(&client)
        );
        let tree = tls_tree(5, &keys, &pki, now() - 60, now() + 3600, &classes).await;
        // Over DoT with the client certificate: chat.example's class.
        let r = resolver_from(
            &tree,
            pki.dir.path(),
            &format!(
                "[upstream]\ntls = true\ntls_port = {}\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\n",
                tree.dot_port
            ),
        );
        assert_eq!(uris(&lookup(&r, ALICE).await.unwrap()), vec![uri(&keys.chat, "alice")]);
        let after_tls = counted(&tree);
        assert!(after_tls.contains(&("talk.example.".into(), 0)), "{after_tls:?}");
        let chat = after_tls.iter().find(|(p, _)| p == "chat.example.").unwrap().1;
        assert!(chat >= 1, "{after_tls:?}");
        // Plain UDP, every query signed: talk.example's class; the signed answers check.
        let r = resolver_from(&tree, pki.dir.path(), "[upstream]\ntsig = \"ap.key\"\n");
        assert_eq!(uris(&lookup(&r, ALICE).await.unwrap()), vec![uri(&keys.chat, "alice")]);
        let after_tsig = counted(&tree);
        assert!(after_tsig.contains(&("chat.example.".into(), chat)), "{after_tsig:?}");
        let talk = after_tsig.iter().find(|(p, _)| p == "talk.example.").unwrap().1;
        assert!(talk >= 1, "{after_tsig:?}");
        tree.shutdown().await;
    })
    .await
}
