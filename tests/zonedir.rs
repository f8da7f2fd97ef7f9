//! A DP serving a zone directory (`[zone_directory]`, docs/dp.md) on loopback: every
//! `<origin>.zone` file is a zone; a file added while serving is answered within the scan
//! interval, a removed one stops being served and is not written back; a bad file is
//! skipped (and served once fixed); a `[[zone]]` entry wins over a directory file; a few
//! hundred one-number zones start quickly.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use mimi_discovery::dp::DpServer;
use mimi_discovery::name::Name;
use mimi_discovery::record::Context;
use mimi_discovery::zone::{WriteStyle, ZoneFile};
use tokio::net::UdpSocket;

const BLOCK: u8 = 70;
const CONFIG_EXTRA: &str = "";
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

/// A one-number zone for `sii`, served at .1, with chat's mapping.
fn number_zone(t: u8, keys: &Keys, sii: &str) -> ZoneFile {
    let o = owner(sii);
    let mut z = ZoneFile::new_zone(o.clone(), &[(n(&format!("ns1.{o}")), ip(t, 1))], 3600, 1);
    z.put_ssi(
        o.clone(),
        3600,
        mapping(&keys.chat, &o, "user", Context::Any, 10),
    );
    z
}

fn file_in(dir: &Path, origin: &Name) -> std::path::PathBuf {
    dir.join(format!("{}zone", origin))
}

async fn rcode(server: std::net::SocketAddr, qname: &Name) -> ResponseCode {
    let sock = UdpSocket::bind((server.ip(), 0)).await.unwrap();
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(qname.to_hickory(), RecordType::SOA));
    sock.send_to(&m.to_vec().unwrap(), server).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap().metadata.response_code
}

/// Polls until the DP's answer for `qname` has `want`, at most 2 s.
async fn becomes(server: std::net::SocketAddr, qname: &Name, want: ResponseCode) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if rcode(server, qname).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

struct Dp {
    server: DpServer,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

/// A DP at .1 of test `t` whose config has `[zone_directory] path = "zones.d"` (scanned
/// every 100 ms) holding `zones`, plus `extra` config lines.
async fn start(t: u8, keys: &Keys, zones: &[ZoneFile], extra: &str) -> Dp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let zd = dir.path().join("zones.d");
    std::fs::create_dir(&zd).unwrap();
    for z in zones {
        z.save(&file_in(&zd, &z.origin), WriteStyle::Native)
            .unwrap();
    }
    let port = std::net::UdpSocket::bind((ip(t, 1), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("dp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{}:{port}\"]\ntrust = \"trust.toml\"\n{extra}\n[zone_directory]\npath = \"zones.d\"\nscan_interval_ms = 100\n",
            ip(t, 1)
        ),
    )
    .unwrap();
    let server = DpServer::start(&config).await.expect("DP start");
    let addr = server.addrs[0];
    Dp { server, addr, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_come_and_go_with_their_files() {
    bounded(async {
        let t = 1;
        let keys = Keys::new();
        let numbers = ["+1 555 111 2222", "+1 555 111 3333", "+1 555 111 4444"];
        let zones: Vec<ZoneFile> = numbers.iter().map(|s| number_zone(t, &keys, s)).collect();
        let dp = start(t, &keys, &zones[..2], "").await;
        let zd = dp.dir.path().join("zones.d");
        for s in &numbers[..2] {
            assert_eq!(
                rcode(dp.addr, &owner(s)).await,
                ResponseCode::NoError,
                "{s}"
            );
        }
        assert_eq!(
            rcode(dp.addr, &owner(numbers[2])).await,
            ResponseCode::Refused
        );

        // Added while serving.
        zones[2]
            .save(&file_in(&zd, &zones[2].origin), WriteStyle::Native)
            .unwrap();
        assert!(
            becomes(dp.addr, &owner(numbers[2]), ResponseCode::NoError).await,
            "added"
        );

        // Removed while serving: no longer served, not written back, its journal aside.
        let gone = file_in(&zd, &zones[0].origin);
        std::fs::remove_file(&gone).unwrap();
        assert!(
            becomes(dp.addr, &owner(numbers[0]), ResponseCode::Refused).await,
            "removed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!gone.exists(), "the writer put the removed file back");
        assert_eq!(
            rcode(dp.addr, &owner(numbers[1])).await,
            ResponseCode::NoError
        );

        // A malformed file is skipped, the others served; fixed, it is served.
        let bad_origin = owner("+1 555 111 5555");
        let bad = file_in(&zd, &bad_origin);
        std::fs::write(&bad, format!("$ORIGIN {bad_origin}\n@ 3600 IN SOA ns1 (\n")).unwrap();
        let failures = dp.server.rescan().await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains(&bad_origin.to_string()),
            "{failures:?}"
        );
        assert!(
            dp.server.rescan().await.is_empty(),
            "a failed file is retried only when it changes"
        );
        assert_eq!(rcode(dp.addr, &bad_origin).await, ResponseCode::Refused);
        assert_eq!(
            rcode(dp.addr, &owner(numbers[2])).await,
            ResponseCode::NoError
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // a new modification time
        number_zone(t, &keys, "+1 555 111 5555")
            .save(&bad, WriteStyle::Native)
            .unwrap();
        assert!(
            becomes(dp.addr, &bad_origin, ResponseCode::NoError).await,
            "fixed"
        );

        // Names that are not <origin>.zone, and hidden files, are no zones.
        std::fs::write(zd.join("notes.txt"), "x").unwrap();
        std::fs::write(zd.join(".half.zone"), "x").unwrap();
        assert!(dp.server.rescan().await.is_empty());
        dp.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_zone_wins_and_a_reload_applies_directory_files() {
    bounded(async {
        let t = 2;
        let keys = Keys::new();
        let alice = "+1 555 111 2222";
        let o = owner(alice);
        // The directory's version of the zone has bob's URI; the configured one alice's.
        let mut in_dir = number_zone(t, &keys, alice);
        in_dir.put_ssi(
            o.clone(),
            3600,
            mapping(&keys.chat, &o, "bob", Context::Any, 10),
        );
        let configured = number_zone(t, &keys, alice);
        let dir = tempfile::tempdir().unwrap();
        let cfile = dir.path().join("configured.zone");
        configured.save(&cfile, WriteStyle::Native).unwrap();
        let extra = format!(
            "[[zone]]\norigin = \"{o}\"\nfile = {:?}\n",
            cfile.display().to_string()
        );
        let other = number_zone(t, &keys, "+1 555 111 3333");
        let dp = start(t, &keys, &[in_dir, other.clone()], &extra).await;
        let zone = dp.server.shared().zones.load().get(&o).unwrap();
        let uris: Vec<String> = zone
            .store
            .zone_records()
            .filter_map(|r| match r.data {
                mimi_discovery::zone::RData::Ssi(s) => Some(s.uri),
                _ => None,
            })
            .collect();
        assert_eq!(uris, [uri(&keys.chat, "user")], "the configured file");
        // A hand edit of a directory file is applied on reload, like a configured one.
        let zd = dp.dir.path().join("zones.d");
        let f = file_in(&zd, &other.origin);
        let mut z = ZoneFile::load(&f).unwrap();
        let new = owner("+1 555 111 3333");
        z.put_ssi(new.clone(), 3600, {
            let mut s = mapping(&keys.talk, &new, "talk-user", Context::Any, 5);
            s.seq = 2;
            s.sign(&new, &keys.talk.signing);
            s
        });
        z.bump_serial();
        z.save(&f, WriteStyle::Native).unwrap();
        assert!(dp.server.reload().await.unwrap().is_empty());
        let zone = dp.server.shared().zones.load().get(&other.origin).unwrap();
        assert_eq!(zone.store.soa().serial, 2);
        dp.server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_one_number_zones_start_quickly() {
    bounded(async {
        let t = 3;
        let keys = Keys::new();
        let zones: Vec<ZoneFile> = (0..300)
            .map(|i| number_zone(t, &keys, &format!("+1 555 222 {i:04}")))
            .collect();
        let started = Instant::now();
        let dp = start(t, &keys, &zones, "").await;
        let took = started.elapsed();
        assert_eq!(dp.server.shared().zones.load().len(), 300);
        for i in [0, 150, 299] {
            let o = owner(&format!("+1 555 222 {i:04}"));
            assert_eq!(rcode(dp.addr, &o).await, ResponseCode::NoError);
        }
        println!("300 one-number zones started in {took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        dp.server.shutdown().await;
    })
    .await
}
