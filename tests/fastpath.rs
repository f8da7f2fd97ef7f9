//! The fast path (prebuilt answers, `src/dp/fast.rs`) gives byte for byte what the general
//! path (hickory's parser and encoder) gives: for every owner and type of the demo zones
//! and 10,000 random names, in random letter case, with and without EDNS, before and after
//! updates that re-encode RRsets. Addresses 127.78.x.x.

use std::net::SocketAddr;
use std::path::Path;

use hickory_server::net::xfer::Protocol;
use mimi_discovery::dp::{DpHandler, DpServer};
use mimi_discovery::net::StreamHandler;
use mimi_discovery::zone::ZoneFile;
use rand::{Rng, SeedableRng};

mod common;
use common::general_answer;

// What tests/common expects of every test binary.
const BLOCK: u8 = 78;
const CONFIG_EXTRA: &str = "";
const RESOLVER_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

/// A query for `name` (wire form) with the letters' case flipped at random.
fn query(rng: &mut impl Rng, name: &[u8], qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
    rng.fill(&mut q[..2]);
    // RD and CD at random: both are copied into the answer.
    q[2] = u8::from(rng.gen_bool(0.5));
    q[3] = if rng.gen_bool(0.2) { 0x10 } else { 0 };
    q.extend(name.iter().map(|&b| {
        if b.is_ascii_alphabetic() && rng.gen_bool(0.5) {
            b ^ 0x20
        } else {
            b
        }
    }));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((payload, cookie)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0x80, 0]);
        if cookie {
            q.extend_from_slice(&[0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        } else {
            q.extend_from_slice(&[0, 0]);
        }
    }
    q
}

fn wire(name: &str) -> Vec<u8> {
    name.parse::<mimi_discovery::name::Name>()
        .unwrap()
        .as_wire()
        .to_vec()
}

fn random_label(rng: &mut impl Rng) -> String {
    match rng.gen_range(0..4) {
        0..=1 => rng.gen_range(0..10).to_string(),
        2 => ["ns1", "ap", "chat", "example", "email", "_pir"][rng.gen_range(0..6)].to_string(),
        _ => (0..rng.gen_range(1..12))
            .map(|_| rng.gen_range(b'a'..=b'z') as char)
            .collect(),
    }
}

/// Starts one DP serving every demo zone (zones/*.zone, trust zones/trust.toml), each
/// signed with a key of its own when `signed` (DNSSEC).
async fn demo_dp_with(dir: &Path, signed: bool) -> (DpServer, Vec<ZoneFile>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let mut zones = Vec::new();
    let mut config = format!(
        "listen = [\"127.78.0.1:0\"]\ntrust = {:?}\n[access]\nanonymous_lookups_per_day = \"unlimited\"\n",
        root.join("trust.toml").display().to_string()
    );
    let mut paths: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zone"))
        .collect();
    paths.sort();
    for p in paths {
        let z = ZoneFile::load(&p).unwrap();
        // A copy: the DP writes its zone files back.
        let copy = dir.join(p.file_name().unwrap());
        std::fs::copy(&p, &copy).unwrap();
        config.push_str(&format!(
            "[[zone]]\norigin = \"{}\"\nfile = {:?}\n",
            z.origin,
            copy.display().to_string()
        ));
        if signed {
            let key = dir.join(format!("{}dnssec", z.origin));
            mimi_discovery::dnssec::DnssecKey::generate(
                z.origin.clone(),
                mimi_discovery::dnssec::FLAGS_CSK,
            )
            .save_new(&key)
            .unwrap();
            config.push_str(&format!("dnssec_key = {:?}\n", key.display().to_string()));
        }
        zones.push(z);
    }
    let path = dir.join("dp.toml");
    std::fs::write(&path, config).unwrap();
    (DpServer::start(&path).await.unwrap(), zones)
}

async fn demo_dp(dir: &Path) -> (DpServer, Vec<ZoneFile>) {
    demo_dp_with(dir, false).await
}

/// Compares both paths on `queries`; returns how many the fast path answered.
async fn compare(handler: &DpHandler, queries: &[Vec<u8>]) -> usize {
    let src: SocketAddr = "127.78.0.9:5300".parse().unwrap();
    let mut fast = Vec::new();
    let mut answered = 0;
    for q in queries {
        if !handler.answer_fast(q, src, Protocol::Tcp, &mut fast) {
            continue;
        }
        answered += 1;
        let general = general_answer(handler, q, src).await;
        assert_eq!(
            fast,
            general,
            "fast and general paths differ for query {q:02x?}\nfast:    {fast:02x?}\ngeneral: {general:02x?}"
        );
    }
    answered
}

const TYPES: [u16; 12] = [1, 2, 6, 16, 28, 43, 255, 65280, 65281, 65282, 99, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_and_general_paths_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (dp, zones) = demo_dp(dir.path()).await;
    let handler = DpHandler::new(dp.shared().clone());
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);

    // Every owner of every demo zone, every type, with and without EDNS.
    let mut queries = Vec::new();
    for z in &zones {
        let owners: std::collections::BTreeSet<_> =
            z.records.iter().map(|r| r.name.clone()).collect();
        for owner in owners.iter().chain(std::iter::once(&z.origin)) {
            for t in TYPES {
                for edns in [
                    None,
                    Some((1232, false)),
                    Some((4096, true)),
                    Some((100, false)),
                ] {
                    queries.push(query(&mut rng, owner.as_wire(), t, edns));
                }
            }
        }
    }
    let demo = queries.len();
    let answered = compare(&handler, &queries).await;
    println!("demo queries: {answered} of {demo} answered by the fast path, all equal");
    assert!(answered * 100 >= demo * 99, "{answered} of {demo}");

    // 10,000 random names in and around the zones.
    let mut queries = Vec::new();
    for _ in 0..10_000 {
        let z = &zones[rng.gen_range(0..zones.len())];
        let labels: Vec<String> = (0..rng.gen_range(0..8))
            .map(|_| random_label(&mut rng))
            .collect();
        let mut name = labels.join(".");
        if rng.gen_bool(0.95) {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(&z.origin.to_string());
        } else {
            name.push_str(".example.org.");
        }
        let name = name.trim_start_matches('.').to_string();
        let t = TYPES[rng.gen_range(0..TYPES.len())];
        let edns = rng
            .gen_bool(0.7)
            .then(|| (rng.gen_range(0..5000), rng.gen_bool(0.3)));
        queries.push(query(&mut rng, &wire(&name), t, edns));
    }
    let answered = compare(&handler, &queries).await;
    println!("random names: {answered} of 10000 answered by the fast path, all equal");
    assert!(answered >= 9_900, "{answered} of 10000");

    // Through the write path: RRsets grown, new owners, a TTL changed; the re-encoded
    // answers still equal the general path's.
    let file = dir.path().join("5.5.5.1.e164.zone");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(
        "2.2.2.2.1.1.1 60 IN TXT \"more\"\n9.9.1.1.1 120 IN TXT \"new\"\n@ 300 IN TXT \"apex\"\n",
    );
    std::fs::write(&file, text).unwrap();
    assert!(dp.reload().await.unwrap().is_empty());
    let mut queries = Vec::new();
    let origin = "5.5.5.1.e164.mimi.arpa.";
    for owner in ["2.2.2.2.1.1.1.", "9.9.1.1.1.", "1.1.1.", ""] {
        for t in TYPES {
            let name = wire(&format!("{owner}{origin}"));
            queries.push(query(&mut rng, &name, t, Some((1232, true))));
            queries.push(query(&mut rng, &name, t, None));
        }
    }
    assert_eq!(compare(&handler, &queries).await, queries.len());
    let mut out = Vec::new();
    let q = query(
        &mut rng,
        &wire(&format!("2.2.2.2.1.1.1.{origin}")),
        16,
        None,
    );
    assert!(handler.answer_fast(
        &q,
        "127.78.0.9:53".parse().unwrap(),
        Protocol::Udp,
        &mut out
    ));
    assert_eq!(&out[6..8], &[0, 1], "the added TXT record is served");
    dp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_udp_answers_and_other_queries_go_to_the_general_path() {
    let dir = tempfile::tempdir().unwrap();
    let big: String = (0..8)
        .map(|i| format!("big 60 IN TXT \"{}\"\n", i.to_string().repeat(100)))
        .collect();
    std::fs::write(
        dir.path().join("z.zone"),
        format!("$ORIGIN t.mimi.arpa.\n@ 60 IN SOA ns1 host 1 2 3 4 5\n@ 60 IN NS ns1\nns1 60 IN A 127.78.0.2\n{big}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("trust.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("dp.toml"),
        "listen = [\"127.78.0.2:0\"]\ntrust = \"trust.toml\"\n[[zone]]\norigin = \"t.mimi.arpa.\"\nfile = \"z.zone\"\n",
    )
    .unwrap();
    let dp = DpServer::start(&dir.path().join("dp.toml")).await.unwrap();
    let handler = DpHandler::new(dp.shared().clone());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let src: SocketAddr = "127.78.0.9:5300".parse().unwrap();
    let mut out = Vec::new();
    // About 850 bytes: more than 512 without EDNS, fits in 1232 with it.
    let name = wire("big.t.mimi.arpa.");
    let plain = query(&mut rng, &name, 16, None);
    assert!(handler.answer_fast(&plain, src, Protocol::Tcp, &mut out));
    assert!(out.len() > 512, "{}", out.len());
    assert!(!handler.answer_fast(&plain, src, Protocol::Udp, &mut out));
    let with_edns = query(&mut rng, &name, 16, Some((1232, false)));
    assert!(handler.answer_fast(&with_edns, src, Protocol::Udp, &mut out));
    let small_edns = query(&mut rng, &name, 16, Some((600, false)));
    assert!(!handler.answer_fast(&small_edns, src, Protocol::Udp, &mut out));
    // An UPDATE, a transfer, a response: not for this path.
    let mut update = plain.clone();
    update[2] = 5 << 3;
    assert!(!handler.answer_fast(&update, src, Protocol::Tcp, &mut out));
    let axfr = query(&mut rng, &wire("t.mimi.arpa."), 252, None);
    assert!(!handler.answer_fast(&axfr, src, Protocol::Tcp, &mut out));
    let mut response = plain.clone();
    response[2] |= 0x80;
    assert!(!handler.answer_fast(&response, src, Protocol::Tcp, &mut out));
    dp.shutdown().await;
}

/// Signed zones: a DO query for records gets them with their RRSIG from the fast path,
/// byte for byte as the general path builds it; denials and referrals, signed per answer,
/// are left to the general path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_zones_answer_do_queries_for_records_alike_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (dp, zones) = demo_dp_with(dir.path(), true).await;
    let handler = DpHandler::new(dp.shared().clone());
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut queries = Vec::new();
    for z in &zones {
        let owners: std::collections::BTreeSet<_> =
            z.records.iter().map(|r| r.name.clone()).collect();
        for owner in owners.iter().chain(std::iter::once(&z.origin)) {
            for t in TYPES {
                queries.push(query(&mut rng, owner.as_wire(), t, Some((4096, false))));
            }
        }
    }
    let answered = compare(&handler, &queries).await;
    println!(
        "signed zones, DO: {answered} of {} answered by the fast path, all equal",
        queries.len()
    );
    // Every owner has its own records (at least one type of TYPES) or is a cut.
    assert!(
        answered * 5 >= queries.len() / 12,
        "{answered} of {}",
        queries.len()
    );
    // DNSKEY at every apex, with its RRSIG, from the fast path.
    let mut out = Vec::new();
    for z in &zones {
        let q = query(&mut rng, z.origin.as_wire(), 48, Some((4096, false)));
        assert!(handler.answer_fast(
            &q,
            "127.78.0.9:5300".parse().unwrap(),
            Protocol::Tcp,
            &mut out
        ));
        assert_eq!(
            u16::from_be_bytes([out[6], out[7]]),
            2,
            "DNSKEY and its RRSIG"
        );
    }
    dp.shutdown().await;
}
