//! `[metrics] listen`: the DP's and the resolver's `/metrics` over HTTP, in the OpenMetrics
//! text format, move when their events happen (queries and their RCODEs, zones' serials
//! and sizes, a reload; lookups, cache hits, queries sent, rejected records).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use mimi_discovery::record::{Context, TYPE_SSI};
use mimi_discovery::zone::WriteStyle;
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
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, v)| (series.to_string(), v.parse().unwrap()))
        .collect()
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
        assert_eq!(after["mimi_resolver_cache_hits_total"], 1.0);
        assert!(after["mimi_resolver_queries_sent_total"] >= 2.0);
        assert!(after["mimi_resolver_cache_entries"] >= 1.0);
        task.abort();
        tree.shutdown().await;
    })
    .await;
}
