//! `[metrics] listen`: the DP's and the resolver's `/metrics` over HTTP, in the OpenMetrics
//! text format. Every metric docs/operations.md names appears and moves when its event
//! happens: queries by type, RCODE and transport, answer latency, zones' serials and sizes,
//! updates accepted and refused by RCODE, the journal's size and sync time, OPRF and PIR
//! work, quota refusals, NOTIFY and CHANGES; lookups by outcome, cache hits and misses,
//! rejected records by reason, invalidations, upstream latency, replica sizes.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use mimi_discovery::dnssec::DnssecKey;
use mimi_discovery::publish::{publish, SignedMapping};
use mimi_discovery::record::{Context, TYPE_SSI};
use mimi_discovery::resolver::replica::ReplicaSettings;
use mimi_discovery::resolver::transport::tls_exchange;
use mimi_discovery::resolver::{Outcome, ResolveError, Resolver};
use mimi_discovery::tls::{self, ServerTrust};
use mimi_discovery::tsig::{KeyFileFormat, TsigKey};
use mimi_discovery::zone::WriteStyle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 81;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 0;

/// One HTTP GET; the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("an HTTP answer")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The samples of a scrape: series (name with labels) to value.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    samples(&body)
}

/// Series (name with labels) to value, from the text of a scrape.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, v)| (series.to_string(), v.parse().unwrap()))
        .collect()
}

async fn query_tcp(addr: SocketAddr, qname: &str, rtype: RecordType) {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(hn(qname), rtype));
    let bytes = m.to_vec().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut len))
        .await
        .expect("an answer")
        .unwrap();
}

async fn query(addr: SocketAddr, qname: &str, rtype: RecordType) {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(hn(qname), rtype));
    let sock = tokio::net::UdpSocket::bind((addr.ip(), 0)).await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_and_resolver_metrics_move_with_their_events() {
    bounded(async {
        let t = 1;
        let keys = Keys::new();
        let (root, zone) =
            root_and_block(t, "5.5.5.1.e164.mimi.arpa.", &keys, "+1 555 111 2222", 600);
        let mut specs = vec![spec(root, &[1]), spec(zone, &[2])];
        specs[1].config_extra = "[metrics]\nlisten = \"@ADDR@:0\"\n".into();
        let tree = Tree::start(t, &keys.trust_toml(), specs).await;
        let dp = tree.server(2).metrics_addr.expect("the DP serves /metrics");
        let before = scrape(dp).await;
        let zone = "5.5.5.1.e164.mimi.arpa.";
        assert_eq!(
            before[&format!("mimi_dp_zone_serial{{zone=\"{zone}\"}}")],
            1.0
        );
        assert!(before[&format!("mimi_dp_zone_records{{zone=\"{zone}\"}}")] >= 3.0);
        let owner = owner("+1 555 111 2222").to_string();
        for _ in 0..5 {
            query(tree.addr(2), &owner, RecordType::from(TYPE_SSI)).await;
        }
        query(tree.addr(2), "elsewhere.example.", RecordType::A).await;
        let after = scrape(dp).await;
        let moved = |series: &str| after[series] - before.get(series).copied().unwrap_or(0.0);
        assert_eq!(moved("mimi_dp_queries_total"), 6.0);
        assert_eq!(moved("mimi_dp_responses_total{rcode=\"NOERROR\"}"), 5.0);
        assert_eq!(moved("mimi_dp_responses_total{rcode=\"REFUSED\"}"), 1.0);
        assert_eq!(
            after["mimi_dp_quota_refusals_total{class=\"anonymous\"}"],
            0.0
        );
        // A new serial in the file, reloaded: the gauge follows.
        let mut z = mimi_discovery::zone::ZoneFile::load(&tree.files[1]).unwrap();
        z.put_ssi(
            mimi_discovery::name::Name::parse(&owner, None).unwrap(),
            600,
            mapping(&keys.talk, &n(&owner), "bob", Context::Any, 20),
        );
        z.bump_serial();
        z.save(&tree.files[1], WriteStyle::Native).unwrap();
        assert!(tree.server(2).reload().await.unwrap().is_empty());
        let reloaded = scrape(dp).await;
        assert!(reloaded[&format!("mimi_dp_zone_serial{{zone=\"{zone}\"}}")] > 1.0);
        assert_eq!(
            reloaded[&format!("mimi_dp_zone_records{{zone=\"{zone}\"}}")],
            before[&format!("mimi_dp_zone_records{{zone=\"{zone}\"}}")] + 1.0
        );
        let (status, _) = get(dp, "/").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        // The resolver's.
        let resolver = Arc::new(tree.resolver());
        let source: Arc<dyn mimi_discovery::metrics::Source> = resolver.clone();
        let (task, addr) = mimi_discovery::metrics::serve(SocketAddr::new(ip(t, 53), 0), source)
            .await
            .unwrap();
        let before = scrape(addr).await;
        assert_eq!(before["mimi_resolver_lookups_total"], 0.0);
        resolver
            .lookup(&sii("+1 555 111 2222"), None)
            .await
            .unwrap();
        resolver
            .lookup(&sii("+1 555 111 2222"), None)
            .await
            .unwrap();
        let after = scrape(addr).await;
        assert_eq!(after["mimi_resolver_lookups_total"], 2.0);
        assert_eq!(
            after["mimi_resolver_cache_lookups_total{result=\"hit\"}"],
            1.0
        );
        assert!(after["mimi_resolver_queries_sent_total"] >= 2.0);
        assert!(after["mimi_resolver_cache_entries"] >= 1.0);
        task.abort();
        tree.shutdown().await;
    })
    .await;
}

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";

/// The value of `series`, 0 when absent (a family with no sample yet).
fn at(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// A resolver's scrape, rendered as `/metrics` renders it.
fn render(r: &Arc<Resolver>) -> HashMap<String, f64> {
    let source: Arc<dyn mimi_discovery::metrics::Source> = r.clone();
    samples(&mimi_discovery::metrics::render(&source).unwrap())
}

/// Asserts that each series grew from `before` to `after`, naming the ones that did not.
fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &[&str]) {
    let still: Vec<String> = series
        .iter()
        .filter(|s| at(after, s) <= at(before, s))
        .map(|s| format!("{s}: {} -> {}", at(before, s), at(after, s)))
        .collect();
    assert!(still.is_empty(), "did not move: {still:#?}");
}

/// A root DP (.1) and the carrier's DP (.2), both offering private lookups; the carrier
/// takes UPDATEs from chat.example., serves an invalid record (signed by a provider
/// nobody trusts), gives anonymous clients a burst of 20 lookups and identified resolvers
/// (TSIG ap-query.) no limit, queues one PIR query at a time, serves DoT, and shows
/// `/metrics`. Resolvers: one looking up by PIR and subscribed to the carrier's changes,
/// one holding a replica of the carrier's zone, one anchored on a key the tree does not
/// publish, and twelve private lookups at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_metric_appears_and_moves_with_its_event() {
    bounded(async {
        let t = 2;
        let keys = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let chat = TsigKey::generate(n("chat-key."));
        let ap = TsigKey::generate(n("ap-query."));
        let sub = TsigKey::generate(n("resolver-sub."));
        let path = |f: &str| dir.path().join(f).display().to_string();
        chat.save_new(dir.path().join("chat.tsig"), KeyFileFormat::Bind)
            .unwrap();
        ap.save_new(dir.path().join("ap.tsig"), KeyFileFormat::Bind)
            .unwrap();
        sub.save_new(dir.path().join("sub.tsig"), KeyFileFormat::Bind)
            .unwrap();
        let (root, mut carrier) = root_and_block(t, CARRIER, &keys, ALICE, 600);
        let rogue = owner("+1 555 111 7777");
        carrier.put_ssi(
            rogue.clone(),
            600,
            mapping(&keys.rogue, &rogue, "mallory", Context::Any, 10),
        );
        let client = format!(
            "[[client]]\nprovider = \"chat.example.\"\ntsig = {:?}\nlookups_per_day = \"unlimited\"\n",
            path("ap.tsig")
        );
        let ca = tls::make_ca("test CA", now() - 60, now() + 3600).unwrap();
        let cert = tls::issue(&ca, &["dp.test".into()], now() - 60, now() + 3600).unwrap();
        std::fs::write(dir.path().join("dp.pem"), &cert.cert_pem).unwrap();
        std::fs::write(dir.path().join("dp.key"), &cert.key_pem).unwrap();
        let mut specs = vec![spec(root, &[1]), spec(carrier, &[2])];
        specs[0].config_extra = format!("[pir]\nthreads = 1\n{client}");
        specs[1].invalid = true;
        specs[1].config_extra = format!(
            "[metrics]\nlisten = \"@ADDR@:0\"\n[pir]\nthreads = 1\nmax_queue = 1\n\
             [tls]\nlisten = [\"@ADDR@:0\"]\ncert = {:?}\nkey = {:?}\n\
             [access]\nanonymous_lookups_per_day = 20\nanonymous_burst = 20\n{client}\
             [[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n",
            path("dp.pem"),
            path("dp.key"),
            path("chat.tsig")
        );
        let tree = Tree::start(t, &keys.trust_toml(), specs).await;
        let dp = tree.server(2).metrics_addr.expect("the DP serves /metrics");
        let mut config = tree.config();
        config.upstream.tsig = Some(ap.clone());
        let resolver = Arc::new(tree.resolver_with(config.clone()));
        let (mut listener, _) = subscribe(
            &tree,
            2,
            CARRIER,
            &resolver,
            &sub,
            dir.path().join("sub.tsig").as_path(),
        )
        .await;
        let pir_config = config.clone();
        config.replica = Some(ReplicaSettings {
            dir: dir.path().join("replica"),
            max_bytes: 1 << 30,
            zones: vec![n(CARRIER)],
            min_slots: None,
            poll: Duration::from_secs(86_400),
        });
        let replicating = Arc::new(tree.resolver_with(config));
        let d0 = scrape(dp).await;
        let r0 = render(&resolver);
        let p0 = render(&replicating);

        // Queries: over UDP (one outside the zones), over TCP.
        let alice = owner(ALICE).to_string();
        for _ in 0..3 {
            query(tree.addr(2), &alice, RecordType::from(TYPE_SSI)).await;
        }
        query(tree.addr(2), "elsewhere.example.", RecordType::A).await;
        query_tcp(tree.addr(2), &alice, RecordType::SOA).await;
        let pin = tls::spki_pin(&CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let reply = tls_exchange(
            tree.server(2).tls_addrs[0],
            "dp.test",
            tls::client_config(&ServerTrust::Pins(vec![pin])).unwrap(),
            &owner(ALICE),
            TYPE_SSI,
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        assert!(!reply.answers.is_empty());
        // An UPDATE accepted, and one refused (a key the DP does not know).
        let bob = owner("+1 555 111 3333");
        let signed = SignedMapping {
            owner: bob.clone(),
            ttl: 600,
            ssi: versioned(&keys.chat, &bob, "bob", 10),
        };
        publish(tree.addr(2), &n(CARRIER), &chat, std::slice::from_ref(&signed))
            .await
            .unwrap();
        let stranger = TsigKey::generate(n("stranger."));
        assert!(publish(tree.addr(2), &n(CARRIER), &stranger, &[signed])
            .await
            .is_err());
        // Lookups: found twice (the second from the cache), absent, rejected records.
        let found = resolver.lookup(&sii(ALICE), None).await.unwrap();
        assert!(matches!(found.outcome, Outcome::Found(_)));
        assert!(resolver.lookup(&sii(ALICE), None).await.unwrap().from_cache);
        let absent = resolver.lookup(&sii("+1 555 111 9999"), None).await.unwrap();
        assert!(matches!(absent.outcome, Outcome::NotDiscoverable(_)));
        assert!(resolver.lookup(&sii("+1 555 111 7777"), None).await.is_err());
        // Anchored on a key the (unsigned) tree does not publish: bogus.
        let mut anchored = tree.config();
        anchored.dnssec = Some(mimi_discovery::resolver::secure::TrustAnchor {
            zone: apex(),
            ds: vec![DnssecKey::generate(apex(), 257).ds_rdata()],
        });
        let anchored = Arc::new(Resolver::new(
            anchored,
            mimi_discovery::record::TrustStore::new(),
        ));
        let a0 = render(&anchored);
        assert!(matches!(
            anchored.lookup(&sii(ALICE), None).await,
            Err(ResolveError::Bogus { .. })
        ));
        // The UPDATE's NOTIFY reached the subscribed resolver, which fetched CHANGES.
        let notified = within(Duration::from_secs(5), || async {
            render(&resolver)
                .get("mimi_resolver_changes_fetched_total{result=\"applied\"}")
                .copied()
                .unwrap_or(0.0)
                > at(&r0, "mimi_resolver_changes_fetched_total{result=\"applied\"}")
        })
        .await;
        assert!(notified.is_some(), "no CHANGES fetched after the UPDATE");
        // A private lookup by PIR, and one from a replica.
        let private = resolver.lookup_private(&sii(ALICE), None).await.unwrap();
        assert!(matches!(private.outcome, Outcome::Found(_)));
        replicating.replicate(&n(CARRIER)).await.unwrap();
        let replica = replicating
            .lookup_private(&sii(ALICE), None)
            .await
            .unwrap();
        assert!(matches!(replica.outcome, Outcome::Found(_)));
        // Private lookups at once, from resolvers of their own, against a PIR queue of one:
        // some queries are told BUSY.
        let mut at_once = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let r = tree.resolver_with(pir_config.clone());
            at_once.spawn(async move {
                let _ = r.lookup_private(&sii(ALICE), None).await;
            });
        }
        while at_once.join_next().await.is_some() {}
        // Anonymous lookups past the burst of 20.
        for _ in 0..20 {
            query(tree.addr(2), &alice, RecordType::from(TYPE_SSI)).await;
        }

        let d1 = scrape(dp).await;
        let z = |m: &str| format!("{m}{{zone=\"{CARRIER}\"}}");
        grew(
            &d0,
            &d1,
            &[
                "mimi_dp_queries_total",
                "mimi_dp_query_types_total{type=\"SSI\"}",
                "mimi_dp_query_types_total{type=\"SOA\"}",
                "mimi_dp_query_types_total{type=\"PIRCFG\"}",
                "mimi_dp_query_types_total{type=\"PIR\"}",
                "mimi_dp_query_types_total{type=\"SLOTS\"}",
                "mimi_dp_query_types_total{type=\"CHANGES\"}",
                "mimi_dp_query_types_total{type=\"other\"}",
                "mimi_dp_query_transports_total{transport=\"udp\"}",
                "mimi_dp_query_transports_total{transport=\"tcp\"}",
                "mimi_dp_query_transports_total{transport=\"tls\"}",
                "mimi_dp_answer_seconds_count",
                "mimi_dp_answer_seconds_sum",
                "mimi_dp_answer_seconds_bucket{le=\"+Inf\"}",
                "mimi_dp_responses_total{rcode=\"NOERROR\"}",
                "mimi_dp_responses_total{rcode=\"REFUSED\"}",
                &z("mimi_dp_zone_serial"),
                &z("mimi_dp_zone_records"),
                "mimi_dp_updates_total{result=\"accepted\"}",
                "mimi_dp_updates_total{result=\"refused\"}",
                "mimi_dp_updates_refused_total{rcode=\"NOTAUTH\"}",
                "mimi_dp_journal_sync_seconds_count",
                &z("mimi_dp_journal_bytes"),
                "mimi_dp_oprf_inputs_total",
                "mimi_dp_pir_keys_accepted_total",
                "mimi_dp_pir_queries_total{result=\"answered\"}",
                "mimi_dp_pir_queries_total{result=\"busy\"}",
                "mimi_dp_pir_query_seconds_count",
                "mimi_dp_pir_key_bytes",
                "mimi_dp_replica_runs_total{kind=\"full\"}",
                "mimi_dp_quota_refusals_total{class=\"anonymous\"}",
                "mimi_dp_class_lookups_total{class=\"chat.example.\"}",
                "mimi_dp_notify_sent_total",
                "mimi_dp_changes_answered_total",
            ],
        );
        assert_eq!(
            at(&d1, "mimi_dp_query_types_total{type=\"other\"}")
                - at(&d0, "mimi_dp_query_types_total{type=\"other\"}"),
            1.0,
            "the one A query"
        );
        assert!(d1.contains_key("mimi_dp_pir_queue"));

        let r1 = render(&resolver);
        grew(
            &r0,
            &r1,
            &[
                "mimi_resolver_lookups_total",
                "mimi_resolver_lookup_outcomes_total{outcome=\"found\"}",
                "mimi_resolver_lookup_outcomes_total{outcome=\"absent\"}",
                "mimi_resolver_lookup_outcomes_total{outcome=\"failed\"}",
                "mimi_resolver_cache_lookups_total{result=\"hit\"}",
                "mimi_resolver_cache_lookups_total{result=\"miss\"}",
                "mimi_resolver_cache_entries",
                "mimi_resolver_queries_sent_total",
                "mimi_resolver_rejected_records_total{reason=\"untrusted_provider\"}",
                "mimi_resolver_notify_total{result=\"accepted\"}",
                "mimi_resolver_changes_fetched_total{result=\"applied\"}",
                "mimi_resolver_upstream_seconds_count",
                "mimi_resolver_upstream_seconds_sum",
            ],
        );
        grew(
            &a0,
            &render(&anchored),
            &["mimi_resolver_lookup_outcomes_total{outcome=\"bogus\"}"],
        );
        assert!(r1.contains_key("mimi_resolver_invalidated_total{what=\"entries\"}"));
        let p1 = render(&replicating);
        grew(
            &p0,
            &p1,
            &[
                "mimi_resolver_replica_runs_total{kind=\"full\"}",
                "mimi_resolver_replica_lookups_total",
                &z("mimi_resolver_replica_bytes"),
                &z("mimi_resolver_replica_serial"),
            ],
        );
        let _ = listener.shutdown_gracefully().await;
        tree.shutdown().await;
    })
    .await;
}
