//! The acceptance rule in one place, tried as a hostile or unusual peer would: a resolver
//! that passes whole RRsets through (superseded records and tombstones) behind
//! `mimi lookup --server --trust`; a NODATA answer carrying the zone's own NS beside the
//! SOA (RFC 2308 section 2.2); mapping TTLs above the cache's cap; a denial whose SOA is
//! not the zone's, which `mimi resolver serve` must not pass on.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{NS, NULL, SOA};
use hickory_proto::rr::{RData as HRData, Record as HRecord, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::record::{Context, ProviderKey, Ssi, TrustStore, TYPE_SSI};
use mimi_discovery::resolver::{NotFound, Outcome, Resolver, ResolverConfig};
use tokio::net::UdpSocket;

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 69;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 0;

/// What the fake server answers.
#[derive(Clone, Default)]
struct Script {
    /// SSI records per owner (answered with AA).
    ssi: HashMap<Name, Vec<(Ssi, u32)>>,
    /// Put the apex NS beside the SOA in NODATA answers.
    ns_in_nodata: bool,
    /// Answer every name without SSI records NXDOMAIN, with an SOA owned by this name.
    nxdomain_soa_owner: Option<Name>,
}

fn soa_record(owner: &Name) -> HRecord {
    HRecord::from_rdata(
        owner.to_hickory(),
        300,
        HRData::SOA(SOA::new(
            n("ns1.mimi.arpa.").to_hickory(),
            n("hostmaster.mimi.arpa.").to_hickory(),
            1,
            3600,
            600,
            86400,
            300,
        )),
    )
}

/// A UDP server on `addr` answering each parseable question with `answer(question)`.
async fn udp_server(
    addr: SocketAddr,
    answer: impl Fn(&Message, &Query) -> Message + Send + 'static,
) -> SocketAddr {
    let sock = UdpSocket::bind(addr).await.unwrap();
    let local = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let Some(query) = q.queries.first().cloned() else {
                continue;
            };
            let r = answer(&q, &query);
            let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    local
}

/// A response to `q` with its question.
fn response_to(q: &Message, query: &Query) -> Message {
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    r.add_query(query.clone());
    r
}

/// A UDP server authoritative for the whole apex, answering from `script`.
async fn fake_root(addr: SocketAddr, script: Script) -> SocketAddr {
    udp_server(addr, move |q, query| {
        let mut r = response_to(q, query);
        r.metadata.authoritative = true;
        let name = Name::from_hickory(query.name()).unwrap();
        match script.ssi.get(&name) {
            Some(records) if u16::from(query.query_type()) == TYPE_SSI => {
                for (ssi, ttl) in records {
                    r.add_answer(HRecord::from_rdata(
                        name.to_hickory(),
                        *ttl,
                        HRData::Unknown {
                            code: RecordType::from(TYPE_SSI),
                            rdata: NULL::with(ssi.to_wire()),
                        },
                    ));
                }
            }
            Some(_) => {
                r.add_authority(soa_record(&apex()));
            }
            None => match &script.nxdomain_soa_owner {
                Some(owner) => {
                    r.metadata.response_code = ResponseCode::NXDomain;
                    r.add_authority(soa_record(owner));
                }
                None => {
                    // NODATA: every name exists (the tree has empty non-terminals).
                    r.add_authority(soa_record(&apex()));
                    if script.ns_in_nodata {
                        r.add_authority(HRecord::from_rdata(
                            apex().to_hickory(),
                            3600,
                            HRData::NS(NS(n("ns1.mimi.arpa.").to_hickory())),
                        ));
                    }
                }
            },
        }
        r
    })
    .await
}

fn versioned(key: &ProviderKey, o: &Name, who: &str, seq: u64, withdrawn: bool) -> Ssi {
    let mut s = mapping(key, o, who, Context::Any, 10);
    s.seq = seq;
    s.withdrawn = withdrawn;
    s.sign(o, &key.signing);
    s
}

fn resolver_for(root: SocketAddr, trust: &std::path::Path, max_ttl: Duration) -> Resolver {
    let mut c = ResolverConfig::new(vec![root.ip()], root.port(), trust.to_path_buf());
    c.limits.timeout = RESOLVER_TIMEOUT;
    c.limits.retries = RESOLVER_RETRIES;
    c.cache.max_ttl = max_ttl;
    Resolver::new(c, TrustStore::load(trust).unwrap())
}

const ALICE: &str = "+1 555 111 2222";
const BOB: &str = "+1 555 111 3333";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_server_applies_the_acceptance_rule_to_passed_through_rrsets() {
    bounded(async {
        let t = 1;
        let k = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trust.toml"), k.trust_toml()).unwrap();
        let (alice, bob) = (owner(ALICE), owner(BOB));
        let mut script = Script::default();
        // A resolver that passes RRsets through hands over what the DP still serves:
        // the superseded record beside the newer one, and a tombstone beside the record
        // it withdraws.
        script.ssi.insert(
            alice.clone(),
            vec![
                (versioned(&k.chat, &alice, "alice-old", 1, false), 300),
                (versioned(&k.chat, &alice, "alice-new", 2, false), 300),
            ],
        );
        script.ssi.insert(
            bob.clone(),
            vec![
                (versioned(&k.chat, &bob, "bob", 5, false), 300),
                (versioned(&k.chat, &bob, "withdrawn", 6, true), 300),
            ],
        );
        let server = fake_root(std::net::SocketAddr::new(ip(t, 1), 0), script).await;
        let d = dir.path();
        let server = server.to_string();
        for trust in [&["--trust", "trust.toml"][..], &[][..]] {
            let args = [&["lookup", ALICE, "--server", &server, "--json"][..], trust].concat();
            let (code, out, err) = mimi(d, &args).await;
            assert_eq!(code, 0, "{out}\n{err}");
            let j = json_of(&out);
            let uris: Vec<&str> = j["mappings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["ssi"].as_str().unwrap())
                .collect();
            assert_eq!(uris, [uri(&k.chat, "alice-new")], "trust {trust:?}");
            let args = [&["lookup", BOB, "--server", &server, "--json"][..], trust].concat();
            let (code, out, err) = mimi(d, &args).await;
            assert_eq!(
                code, 1,
                "the tombstone withdraws bob's mapping: {out}\n{err}"
            );
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodata_with_the_zones_own_ns_is_not_a_referral() {
    bounded(async {
        let t = 2;
        let k = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.toml");
        std::fs::write(&trust, k.trust_toml()).unwrap();
        let script = Script {
            ns_in_nodata: true,
            ..Script::default()
        };
        let server = fake_root(std::net::SocketAddr::new(ip(t, 1), 0), script).await;
        let r = resolver_for(server, &trust, Duration::from_secs(3600));
        let result = r
            .lookup(&sii(ALICE), None)
            .await
            .expect("NODATA, not an error");
        assert!(
            matches!(
                result.outcome,
                Outcome::NotDiscoverable(NotFound::NoMappings)
            ),
            "{:?}",
            result.outcome
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_ttls_are_capped_like_the_cache() {
    bounded(async {
        let t = 3;
        let k = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.toml");
        std::fs::write(&trust, k.trust_toml()).unwrap();
        let alice = owner(ALICE);
        let mut script = Script::default();
        script.ssi.insert(
            alice.clone(),
            vec![(versioned(&k.chat, &alice, "alice", 1, false), 86_400)],
        );
        let server = fake_root(std::net::SocketAddr::new(ip(t, 1), 0), script).await;
        let r = resolver_for(server, &trust, Duration::from_secs(60));
        let result = r.lookup(&sii(ALICE), None).await.unwrap();
        assert!(result.ttl <= 60, "{}", result.ttl);
        match &result.outcome {
            Outcome::Found(m) => assert!(m.iter().all(|m| m.ttl <= 60), "{m:?}"),
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_listener_passes_on_only_the_zones_own_soa() {
    bounded(async {
        let t = 4;
        let k = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.toml");
        std::fs::write(&trust, k.trust_toml()).unwrap();
        let script = Script {
            nxdomain_soa_owner: Some(n("elsewhere.example.")),
            ..Script::default()
        };
        let server = fake_root(std::net::SocketAddr::new(ip(t, 1), 0), script).await;
        let r = Arc::new(resolver_for(server, &trust, Duration::from_secs(3600)));
        let (mut listener, bound) =
            mimi_discovery::resolver::server::listen(r, &[std::net::SocketAddr::new(ip(t, 53), 0)])
                .await
                .unwrap();
        let sock = UdpSocket::bind((ip(t, 9), 0)).await.unwrap();
        let mut q = Message::new(11, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            owner(ALICE).to_hickory(),
            RecordType::from(TYPE_SSI),
        ));
        sock.send_to(&q.to_vec().unwrap(), bound[0]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let len = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(
            reply
                .authorities
                .iter()
                .all(|r| r.record_type() != RecordType::SOA),
            "{:?}",
            reply.authorities
        );
        let _ = listener.shutdown_gracefully().await;
    })
    .await
}

/// A root that refers everything below the apex to `e164.mimi.arpa.` at `servers` (glue),
/// none of which ever answers.
async fn silent_delegation(root: SocketAddr, servers: Vec<std::net::IpAddr>) -> SocketAddr {
    udp_server(root, move |q, query| {
        let mut r = response_to(q, query);
        let cut = n("e164.mimi.arpa.");
        for (i, ip) in servers.iter().enumerate() {
            let host = n(&format!("ns{i}.e164.mimi.arpa."));
            r.add_authority(HRecord::from_rdata(
                cut.to_hickory(),
                3600,
                HRData::NS(NS(host.to_hickory())),
            ));
            if let std::net::IpAddr::V4(v4) = ip {
                r.add_additional(HRecord::from_rdata(
                    host.to_hickory(),
                    3600,
                    HRData::A((*v4).into()),
                ));
            }
        }
        r
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_has_an_overall_deadline() {
    bounded(async {
        let t = 5;
        let k = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let trust = dir.path().join("trust.toml");
        std::fs::write(&trust, k.trust_toml()).unwrap();
        // Eight name servers that take every query and answer none, on the tree's port.
        let probe = UdpSocket::bind((ip(t, 1), 0)).await.unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let mut silent = Vec::new();
        let mut addrs = Vec::new();
        for x in 10..18 {
            silent.push(UdpSocket::bind((ip(t, x), port)).await.unwrap());
            addrs.push(ip(t, x));
        }
        let root = silent_delegation(SocketAddr::new(ip(t, 1), port), addrs).await;
        let mut c = ResolverConfig::new(vec![root.ip()], port, trust.clone());
        c.limits.timeout = Duration::from_millis(800);
        c.limits.retries = 1;
        c.limits.lookup_deadline = Duration::from_millis(1500);
        let r = Resolver::new(c, TrustStore::load(&trust).unwrap());
        let started = std::time::Instant::now();
        let e = r.lookup(&sii(ALICE), None).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(e, mimi_discovery::resolver::ResolveError::Deadline { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("within 1.5s"), "{e}");
        // Eight silent servers with a timeout and a retry each would take 12.8 s.
        assert!(took < Duration::from_secs(3), "{took:?}");
        drop(silent);
    })
    .await
}
