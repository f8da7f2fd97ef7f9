//! Integration tests of the app provider's resolver (`mimi_discovery::resolver`): real DP
//! servers started in-process on loopback form a discovery tree, one DP per zone, all on
//! one port and told apart by address. Each test has its own block 127.61.<test>.x:
//! .1 root (mimi.arpa.), .2 e164, .3 1.e164, .4 and .14 the carrier 5.5.5.1.e164,
//! .6 email, .7 example.com.email; other addresses as the test needs.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{RData as HRData, Record as HRecord, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::record::{self, Context, ProviderKey, Ssi, TYPE_SSI};
use mimi_discovery::resolver::{
    self, LookupResult, Mapping, NotFound, Outcome, ResolveError, Resolver,
};
use mimi_discovery::zone::{RData, Record, ZoneFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Bound on one network wait of the test itself.
const T: Duration = Duration::from_secs(5);
const TTL: u32 = 3600;
/// MINIMUM of zones made by `ZoneFile::new_zone`.
const SOA_MINIMUM: u32 = 300;

const ROOT: &str = "mimi.arpa.";
const E164: &str = "e164.mimi.arpa.";
const CC1: &str = "1.e164.mimi.arpa.";
const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const EMAIL: &str = "email.mimi.arpa.";
const EXAMPLE: &str = "example.com.email.mimi.arpa.";

/// One mapping (chat.example, any, priority 10).
const ALICE: &str = "+1 555 111 2222";
/// Three providers: talk personal 5, meet any 10, chat business 20.
const CAROL: &str = "+1 555 111 3333";
/// Only a personal mapping (talk).
const DAVE: &str = "+1 555 111 4444";
/// A mapping with a TTL of one second.
const SHORT: &str = "+1 555 111 5555";
/// Only a TXT record.
const TXT_ONLY: &str = "+1 555 111 7777";
/// Another plain mapping in the carrier zone.
const OTHER: &str = "+1 555 111 8888";
/// A mapping whose validity ends in 100 seconds (TTL 3600).
const SOON: &str = "+1 555 111 9000";
/// Not in the carrier zone (its ancestor 1.1.1.5.5.5.1 exists, 0.1.1.1.5.5.5.1 does not).
const NX: &str = "+1 555 111 0000";
/// Not in the country zone: 2.1.e164.mimi.arpa. does not exist.
const NX_COUNTRY: &str = "+1 202 555 0100";
/// An empty non-terminal of the carrier zone: an ancestor of the mappings above.
const ENT: &str = "1.1.1.5.5.5.1.e164.mimi.arpa.";
const BOB: &str = "bob@example.com";
const NOBODY: &str = "nobody@example.com";

/// Queries a cold lookup of a +1 555 111 xxxx number sends: root 1 (NS e164), e164 1
/// (NS 1.e164), 1.e164 3 (NS 5.1, 5.5.1, 5.5.5.1), carrier 5 (NS 1.5.5.5.1, 1.1.5.5.5.1,
/// 1.1.1.5.5.5.1, then two labels at once: NS 2.2.1.1.1.5.5.5.1, SSI at the owner): 12
/// labels below the apex in the 10 questions of RFC 9156's MAX_MINIMISE_COUNT.
const COLD: u32 = 10;
/// The carrier's share of a cold lookup.
const COLD_IN_CARRIER: u32 = 5;
/// Another +1 555 111 xxxx number after one was looked up: 1.1.1.5.5.5.1 and the names
/// above it are known to lie in the carrier zone (their NODATA is cached), so only the
/// four labels below it are asked (3 NS steps, then SSI).
const NEXT_IN_BLOCK: u32 = 4;

mod common;
use common::*;

/// This file's address block: 127.61.t.x.
const BLOCK: u8 = 61;
/// Short timeouts, no retries: servers that are down are found quickly.
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(300);
const RESOLVER_RETRIES: u32 = 0;
const CONFIG_EXTRA: &str = "";

fn push_a(z: &mut ZoneFile, name: &str, addr: IpAddr) {
    let data = match addr {
        IpAddr::V4(a) => RData::A(a),
        IpAddr::V6(a) => RData::Aaaa(a),
    };
    z.records.push(Record {
        name: n(name),
        ttl: TTL,
        data,
        line: 0,
    });
}

// ---------------------------------------------------------------------------------------
// Zones of the standard tree

fn ns(zone: &str) -> Name {
    n(&format!("ns1.{zone}"))
}

fn ns2(zone: &str) -> Name {
    n(&format!("ns2.{zone}"))
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

fn cc1_zone(t: u8) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(CC1), &[(ns(CC1), ip(t, 3))], TTL, 1);
    z.set_delegation(
        &n(CARRIER),
        &[(ns(CARRIER), ip(t, 4)), (ns2(CARRIER), ip(t, 14))],
        TTL,
    );
    z
}

/// The carrier zone with the mappings the constants describe, served at .4 and .14.
fn carrier_zone(t: u8, k: &Keys) -> ZoneFile {
    let mut z = ZoneFile::new_zone(
        n(CARRIER),
        &[(ns(CARRIER), ip(t, 4)), (ns2(CARRIER), ip(t, 14))],
        TTL,
        1,
    );
    let o = owner(ALICE);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "alice", Context::Any, 10),
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
    let o = owner(SHORT);
    z.put_ssi(
        o.clone(),
        1,
        mapping(&k.chat, &o, "short", Context::Any, 10),
    );
    let o = owner(OTHER);
    z.put_ssi(
        o.clone(),
        TTL,
        mapping(&k.chat, &o, "other", Context::Any, 10),
    );
    let o = owner(SOON);
    let mut s = mapping(&k.chat, &o, "soon", Context::Any, 10);
    s.not_after = now() + 100;
    s.sign(&o, &k.chat.signing);
    z.put_ssi(o, TTL, s);
    z.records.push(Record {
        name: owner(TXT_ONLY),
        ttl: TTL,
        data: RData::Txt(vec![b"no mapping here".to_vec().into()]),
        line: 0,
    });
    z
}

fn email_zone(t: u8) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(EMAIL), &[(ns(EMAIL), ip(t, 6))], TTL, 1);
    z.set_delegation(&n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], TTL);
    z
}

fn example_zone(t: u8, k: &Keys, ttl: u32) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], ttl, 1);
    let o = owner(BOB);
    z.put_ssi(
        o.clone(),
        ttl,
        mapping(&k.chat, &o, "bob", Context::Any, 10),
    );
    z
}

/// A zone, the addresses (127.61.t.x) of the DPs serving it, and whether they serve
/// records that fail the checks.
/// The standard tree with `carrier` as the carrier zone.
fn std_specs(t: u8, k: &Keys, carrier: ZoneFile, carrier_invalid: bool) -> Vec<Spec> {
    vec![
        spec(root_zone(t), &[1]),
        spec(e164_zone(t), &[2]),
        spec(cc1_zone(t), &[3]),
        Spec {
            addrs: vec![4, 14],
            invalid: carrier_invalid,
            ..spec(carrier, &[])
        },
        spec(email_zone(t), &[6]),
        spec(example_zone(t, k, TTL), &[7]),
    ]
}

// ---------------------------------------------------------------------------------------
// A running tree
// (tests/common: Tree)

async fn look(r: &Resolver, s: &str, context: Option<Context>) -> LookupResult {
    match timeout(T * 4, r.lookup(&sii(s), context)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => panic!("lookup of {s} failed: {e}"),
        Err(_) => panic!("lookup of {s} timed out"),
    }
}

async fn look_err(r: &Resolver, s: &str) -> ResolveError {
    match timeout(T * 4, r.lookup(&sii(s), None)).await {
        Ok(Ok(res)) => panic!("lookup of {s} should fail: {res:?}"),
        Ok(Err(e)) => e,
        Err(_) => panic!("lookup of {s} timed out"),
    }
}

/// The URIs of a Found outcome, in order.
fn found(r: &LookupResult) -> Vec<String> {
    match &r.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        Outcome::NotDiscoverable(nf) => panic!("{}: not discoverable: {nf}", r.owner),
    }
}

fn mappings(r: &LookupResult) -> &[Mapping] {
    match &r.outcome {
        Outcome::Found(m) => m,
        Outcome::NotDiscoverable(nf) => panic!("{}: not discoverable: {nf}", r.owner),
    }
}

fn not_found(r: &LookupResult) -> NotFound {
    match &r.outcome {
        Outcome::NotDiscoverable(nf) => *nf,
        Outcome::Found(m) => panic!("{}: found {m:?}", r.owner),
    }
}

/// Asserts a result was just fetched from the tree with `queries` queries.
fn assert_fresh(r: &LookupResult, queries: u32) {
    assert!(!r.from_cache, "{}: from cache", r.owner);
    assert!(!r.stale, "{}: stale", r.owner);
    assert_eq!(r.queries, queries, "{}: queries sent", r.owner);
}

/// Asserts a result came from the cache without a packet.
fn assert_cached(r: &LookupResult) {
    assert!(r.from_cache, "{}: not from cache", r.owner);
    assert!(!r.stale, "{}: stale", r.owner);
    assert_eq!(r.queries, 0, "{}: queries sent", r.owner);
}

// ---------------------------------------------------------------------------------------
// 1. Found, not found, NODATA, email

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_not_found_nodata_and_email_through_a_four_level_tree() {
    bounded(async {
        let t = 1;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let r = tree.resolver();
        let carriers = [tree.addr(4), tree.addr(14)];

        // One mapping, through root -> e164 -> 1.e164 -> carrier.
        let res = look(&r, ALICE, None).await;
        assert_fresh(&res, COLD);
        assert_eq!(res.owner, owner(ALICE));
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.zone, Some(n(CARRIER)));
        assert!(carriers.contains(&res.server.unwrap()), "{:?}", res.server);
        assert!(res.rejected.is_empty());
        assert!(res.soa.is_none());
        // TTL: the record's 3600 (not_after is a year away).
        assert_eq!(res.ttl, TTL);
        let m = &mappings(&res)[0];
        assert_eq!(m.owner, owner(ALICE));
        assert_eq!(m.ssi.provider, n("chat.example."));
        assert_eq!(m.ttl, TTL);

        // Three providers, sorted by priority; the policy filters by context.
        let res = look(&r, CAROL, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        let all = [
            uri(&k.talk, "carol-home"),
            uri(&k.meet, "carol"),
            uri(&k.chat, "carol-work"),
        ];
        assert_eq!(found(&res), all);
        let prios: Vec<u16> = mappings(&res).iter().map(|m| m.ssi.priority).collect();
        assert_eq!(prios, [5, 10, 20]);
        let res = look(&r, CAROL, Some(Context::Personal)).await;
        assert_cached(&res);
        assert_eq!(found(&res), [all[0].clone(), all[1].clone()]);
        let res = look(&r, CAROL, Some(Context::Business)).await;
        assert_cached(&res);
        assert_eq!(found(&res), [all[1].clone(), all[2].clone()]);
        let res = look(&r, CAROL, Some(Context::Any)).await;
        assert_eq!(found(&res), all);

        // Only a personal mapping: a business policy finds none for its context.
        let res = look(&r, DAVE, Some(Context::Business)).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        assert_eq!(not_found(&res), NotFound::NoneForContext(Context::Business));
        assert_eq!(
            found(&look(&r, DAVE, Some(Context::Personal)).await),
            [uri(&k.talk, "dave")]
        );
        assert_eq!(found(&look(&r, DAVE, None).await), [uri(&k.talk, "dave")]);
        // The configured default context applies when the lookup gives none.
        let mut c = tree.config();
        c.context = Context::Business;
        let business = tree.resolver_with(c);
        let res = look(&business, DAVE, None).await;
        assert_eq!(not_found(&res), NotFound::NoneForContext(Context::Business));
        assert_eq!(
            found(&look(&business, CAROL, None).await),
            [all[1].clone(), all[2].clone()]
        );
        assert_eq!(
            found(&look(&business, CAROL, Some(Context::Personal)).await),
            [all[0].clone(), all[1].clone()]
        );

        // NXDOMAIN in the carrier zone: the walk stops at the first missing name
        // (0.1.1.1.5.5.5.1, the one question below the names known to exist), with the
        // zone's SOA.
        let res = look(&r, NX, None).await;
        assert_fresh(&res, 1);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.zone, Some(n(CARRIER)));
        let soa = res.soa.as_ref().expect("SOA of the denial");
        assert_eq!(soa.name, hn(CARRIER));
        assert_eq!(soa.record_type(), RecordType::SOA);
        assert_eq!(soa.ttl, SOA_MINIMUM);
        assert_eq!(res.ttl, SOA_MINIMUM);

        // NODATA: an owner with only a TXT record, and an empty non-terminal.
        let res = look(&r, TXT_ONLY, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        assert_eq!(not_found(&res), NotFound::NoMappings);
        assert_eq!(res.soa.as_ref().unwrap().name, hn(CARRIER));
        let res = timeout(T, r.lookup_name(&n(ENT), None))
            .await
            .unwrap()
            .unwrap();
        // Its parent 1.1.5.5.5.1 is known to lie in the zone: one question.
        assert_fresh(&res, 1);
        assert_eq!(not_found(&res), NotFound::NoMappings);
        assert_eq!(res.zone, Some(n(CARRIER)));

        // NXDOMAIN in the country zone: 2.1.e164 does not exist; one query.
        let res = look(&r, NX_COUNTRY, None).await;
        assert_fresh(&res, 1);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.zone, Some(n(CC1)));
        assert_eq!(res.server, Some(tree.addr(3)));
        assert_eq!(res.soa.as_ref().unwrap().name, hn(CC1));

        // Email: root (NS email), email DP (NS com.email: NODATA, NS example.com.email:
        // referral), example DP (SSI).
        let res = look(&r, BOB, None).await;
        assert_fresh(&res, 4);
        assert_eq!(res.owner, owner(BOB));
        assert!(res
            .owner
            .to_string()
            .ends_with(".example.com.email.mimi.arpa."));
        assert_eq!(found(&res), [uri(&k.chat, "bob")]);
        assert_eq!(res.zone, Some(n(EXAMPLE)));
        assert_eq!(res.server, Some(tree.addr(7)));
        let res = look(&r, NOBODY, None).await;
        assert_fresh(&res, 1);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.zone, Some(n(EXAMPLE)));

        // A name outside the tree is refused without a query.
        let before = tree.total_queries();
        match timeout(T, r.lookup_name(&n("alice.example.org."), None))
            .await
            .unwrap()
        {
            Err(ResolveError::OutsideTree { name, apex: a }) => {
                assert_eq!(name, n("alice.example.org."));
                assert_eq!(a, apex());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tree.total_queries(), before);

        let s = &r.stats;
        assert_eq!(s.rejected_records(), 0);
        assert!(s.queries_sent.load(Relaxed) > 0);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. QNAME minimisation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qname_minimisation_shows_each_level_only_the_labels_it_needs() {
    bounded(async {
        let t = 2;
        let k = Keys::new();
        // The zones name spies at .1-.4 as their servers; the DPs themselves listen at
        // .21-.24, and each spy relays to its DP.
        let specs = vec![
            spec(root_zone(t), &[21]),
            spec(e164_zone(t), &[22]),
            spec(cc1_zone(t), &[23]),
            spec(carrier_zone(t, &k), &[24]),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let mut spies = Vec::new();
        for x in 1..=4u8 {
            spies.push(Spy::start(tree.addr(x), tree.addr(20 + x)).await);
        }
        let [root, e164, cc1, carrier] = [&spies[0], &spies[1], &spies[2], &spies[3]];
        let ns = RecordType::NS;
        let ssi = RecordType::Unknown(TYPE_SSI);

        let r = tree.resolver();
        let res = look(&r, ALICE, None).await;
        assert_fresh(&res, COLD);
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.server, Some(tree.addr(4)));
        assert_eq!(root.take(), [q(E164, ns)]);
        assert_eq!(e164.take(), [q(CC1, ns)]);
        assert_eq!(
            cc1.take(),
            [
                q("5.1.e164.mimi.arpa.", ns),
                q("5.5.1.e164.mimi.arpa.", ns),
                q(CARRIER, ns)
            ]
        );
        // RFC 9156 section 2.3: 12 labels in at most 10 questions, the two that add two
        // labels at once last, at the DP that holds the whole number anyway.
        assert_eq!(
            carrier.take(),
            [
                q("1.5.5.5.1.e164.mimi.arpa.", ns),
                q("1.1.5.5.5.1.e164.mimi.arpa.", ns),
                q(ENT, ns),
                q("2.2.1.1.1.5.5.5.1.e164.mimi.arpa.", ns),
                q(&owner(ALICE).to_string(), ssi),
            ]
        );
        assert_eq!(
            tree.referrals(21),
            1,
            "one referral from the root per cold lookup"
        );
        assert_eq!(tree.referrals(22), 1);
        assert_eq!(tree.referrals(23), 1);
        assert_eq!(tree.referrals(24), 0);

        // Warm delegations: only the carrier is asked, and only below the names it
        // already answered NODATA for (RFC 9156 section 3 step 5).
        let res = look(&r, OTHER, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        assert!(root.take().is_empty() && e164.take().is_empty() && cc1.take().is_empty());
        assert_eq!(
            carrier.take(),
            [
                q("8.1.1.1.5.5.5.1.e164.mimi.arpa.", ns),
                q("8.8.1.1.1.5.5.5.1.e164.mimi.arpa.", ns),
                q("8.8.8.1.1.1.5.5.5.1.e164.mimi.arpa.", ns),
                q(&owner(OTHER).to_string(), ssi),
            ]
        );

        // RFC 8020: NXDOMAIN at an intermediate name ends the walk there.
        let res = look(&r, NX, None).await;
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(carrier.take(), [q("0.1.1.1.5.5.5.1.e164.mimi.arpa.", ns)]);

        // A fresh resolver: the root sees one more referral; the country DP's NXDOMAIN
        // for 2.1.e164 stops the walk before the carrier.
        let r2 = tree.resolver();
        let res = look(&r2, NX_COUNTRY, None).await;
        assert_fresh(&res, 3);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.zone, Some(n(CC1)));
        assert_eq!(root.take(), [q(E164, ns)]);
        assert_eq!(e164.take(), [q(CC1, ns)]);
        assert_eq!(cc1.take(), [q("2.1.e164.mimi.arpa.", ns)]);
        assert!(carrier.take().is_empty());
        assert_eq!(tree.referrals(21), 2);

        for s in spies {
            s.task.abort();
        }
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Failover across the name servers of a zone

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_with_one_ns_down_answers_through_the_other_and_all_down_is_an_error() {
    bounded(async {
        let t = 3;
        let k = Keys::new();
        let mut tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let (addr1, addr2) = (tree.addr(4), tree.addr(14));

        // ns2 (.14) down: ns1 answers.
        tree.stop(14).await;
        let r1 = tree.resolver();
        let res = look(&r1, ALICE, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.server, Some(addr1));
        // Which NS the resolver tries first: the order of the cached delegation.
        let cut = r1
            .cache()
            .closest_delegation(&owner(ALICE), std::time::Instant::now())
            .expect("carrier delegation cached");
        assert_eq!(cut.zone, n(CARRIER));
        let order: Vec<(Name, Vec<IpAddr>)> = cut.servers.clone();
        assert_eq!(order.len(), 2, "{order:?}");
        let first_is_ns1 = order[0] == (ns(CARRIER), vec![ip(t, 4)]);
        assert!(
            first_is_ns1 || order[0] == (ns2(CARRIER), vec![ip(t, 14)]),
            "{order:?}"
        );
        // The dead server costs one query when it is tried first: it refused the first
        // carrier question, and the rest go to the other server first.
        let with_dead_first = COLD + 1;
        assert_eq!(
            res.queries,
            if first_is_ns1 { COLD } else { with_dead_first }
        );

        // ns1 (.4) down, ns2 back: ns2 answers.
        tree.restart(14).await;
        tree.stop(4).await;
        let r2 = tree.resolver();
        let res = look(&r2, ALICE, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.server, Some(addr2));
        assert_eq!(
            res.queries,
            if first_is_ns1 { with_dead_first } else { COLD }
        );
        // The resolver that knew ns1 fails over for a name it has not cached.
        let res = look(&r1, CAROL, None).await;
        assert_eq!(res.server, Some(addr2));
        assert_eq!(found(&res).len(), 3);

        // Both down: no server answered, naming the zone and both addresses.
        tree.stop(14).await;
        let r3 = tree.resolver();
        let started = std::time::Instant::now();
        match look_err(&r3, ALICE).await {
            ResolveError::NoServerAnswered { zone, tried } => {
                assert_eq!(zone, n(CARRIER));
                assert_eq!(tried.len(), 2, "{tried:?}");
                let joined = tried.join("; ");
                assert!(joined.contains(&addr1.to_string()), "{joined}");
                assert!(joined.contains(&addr2.to_string()), "{joined}");
            }
            other => panic!("{other}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        // The error text names the zone.
        let e = look_err(&r1, DAVE).await.to_string();
        assert!(
            e.contains("no server of zone 5.5.5.1.e164.mimi.arpa. answered"),
            "{e}"
        );

        // Servers that swallow queries: each is tried 1 + retries times (the retries
        // after every server had its first try), each try bounded by the timeout.
        let _holes = (
            UdpSocket::bind(addr1).await.unwrap(),
            UdpSocket::bind(addr2).await.unwrap(),
        );
        let mut c = tree.config();
        c.limits.retries = 1;
        c.limits.timeout = Duration::from_millis(200);
        let r4 = tree.resolver_with(c);
        let started = std::time::Instant::now();
        match look_err(&r4, ALICE).await {
            ResolveError::NoServerAnswered { zone, tried } => {
                assert_eq!(zone, n(CARRIER));
                assert_eq!(tried.len(), 4, "{tried:?}");
                assert!(tried.iter().all(|x| x.ends_with("timed out")), "{tried:?}");
            }
            other => panic!("{other}"),
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "{took:?}"
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 4. Verification

const FORGED: &str = "+1 555 122 0001";
const FLIPPED: &str = "+1 555 122 0002";
const MOVED: &str = "+1 555 122 0003";
const EXPIRED: &str = "+1 555 122 0004";
const UNTRUSTED: &str = "+1 555 122 0005";
const HOST_NOT_PROVIDER: &str = "+1 555 122 0006";
const WRONG_KEY: &str = "+1 555 122 0007";
const NOT_YET: &str = "+1 555 122 0008";
const ALL_BAD: &str = "+1 555 122 0009";
const MIXED: &str = "+1 555 122 0010";

/// The carrier zone plus records a misbehaving DP might serve, one kind per owner, an
/// owner where every record is bad and one with a good and a bad record.
fn bad_carrier_zone(t: u8, k: &Keys) -> ZoneFile {
    let mut z = carrier_zone(t, k);
    let alice = owner(ALICE);
    let good = mapping(&k.chat, &alice, "alice", Context::Any, 10);
    let at = |s: &str| owner(s);
    let t0 = now();

    // Alice's record with its URI changed.
    let mut s = good.clone();
    s.uri = uri(&k.chat, "mallory");
    push_ssi(&mut z, &at(FORGED), TTL, s);
    // A valid record with one signature bit flipped.
    let mut s = mapping(&k.chat, &at(FLIPPED), "flipped", Context::Any, 10);
    s.signature[17] ^= 0x04;
    push_ssi(&mut z, &at(FLIPPED), TTL, s);
    // Alice's valid record copied to another owner.
    push_ssi(&mut z, &at(MOVED), TTL, good.clone());
    // Expired yesterday.
    let mut s = mapping(&k.chat, &at(EXPIRED), "expired", Context::Any, 10);
    s.not_before = t0 - 10 * 86400;
    s.not_after = t0 - 86400;
    s.sign(&at(EXPIRED), &k.chat.signing);
    push_ssi(&mut z, &at(EXPIRED), TTL, s);
    // Signed by a provider the resolver does not trust.
    push_ssi(
        &mut z,
        &at(UNTRUSTED),
        TTL,
        mapping(&k.rogue, &at(UNTRUSTED), "eve", Context::Any, 10),
    );
    // chat.example signs an SSI on talk.example.
    let mut s = mapping(&k.chat, &at(HOST_NOT_PROVIDER), "x", Context::Any, 10);
    s.uri = uri(&k.talk, "hijack");
    s.sign(&at(HOST_NOT_PROVIDER), &k.chat.signing);
    push_ssi(&mut z, &at(HOST_NOT_PROVIDER), TTL, s);
    // chat.example's name, someone else's key.
    let impostor = ProviderKey::generate(n("chat.example."));
    push_ssi(
        &mut z,
        &at(WRONG_KEY),
        TTL,
        mapping(&impostor, &at(WRONG_KEY), "impostor", Context::Any, 10),
    );
    // Valid only from tomorrow.
    let mut s = mapping(&k.chat, &at(NOT_YET), "later", Context::Any, 10);
    s.not_before = t0 + 86400;
    s.sign(&at(NOT_YET), &k.chat.signing);
    push_ssi(&mut z, &at(NOT_YET), TTL, s);

    // Every record bad: forged (chat), expired (talk), untrusted (rogue), host (meet).
    let o = at(ALL_BAD);
    let mut s = mapping(&k.chat, &o, "all-bad", Context::Any, 10);
    s.uri = uri(&k.chat, "forged");
    push_ssi(&mut z, &o, TTL, s);
    let mut s = mapping(&k.talk, &o, "all-bad", Context::Any, 10);
    s.not_before = t0 - 10 * 86400;
    s.not_after = t0 - 86400;
    s.sign(&o, &k.talk.signing);
    push_ssi(&mut z, &o, TTL, s);
    push_ssi(
        &mut z,
        &o,
        TTL,
        mapping(&k.rogue, &o, "all-bad", Context::Any, 10),
    );
    let mut s = mapping(&k.meet, &o, "all-bad", Context::Any, 10);
    s.uri = uri(&k.chat, "meet-says");
    s.sign(&o, &k.meet.signing);
    push_ssi(&mut z, &o, TTL, s);

    // One good (chat), one forged (talk).
    let o = at(MIXED);
    push_ssi(
        &mut z,
        &o,
        TTL,
        mapping(&k.chat, &o, "mixed", Context::Any, 10),
    );
    let mut s = mapping(&k.talk, &o, "mixed", Context::Any, 5);
    s.uri = uri(&k.talk, "mallory");
    push_ssi(&mut z, &o, TTL, s);
    z
}

/// Asserts every record at `sii` was rejected; returns the rejections.
async fn all_rejected(r: &Resolver, s: &str) -> Vec<resolver::Rejection> {
    match look_err(r, s).await {
        ResolveError::AllRejected { owner: o, rejected } => {
            assert_eq!(o, owner(s));
            rejected
        }
        other => panic!("{s}: {other}"),
    }
}

/// Asserts exactly one record at `sii` was rejected, by `provider` with `uri`, for a
/// reason containing every one of `words`.
async fn one_rejected(r: &Resolver, s: &str, provider: &str, uri: &str, words: &[&str]) {
    let rejected = all_rejected(r, s).await;
    assert_eq!(rejected.len(), 1, "{s}: {rejected:?}");
    let x = &rejected[0];
    assert_eq!(x.provider, provider, "{s}");
    assert_eq!(x.ssi, uri, "{s}");
    for w in words {
        assert!(x.reason.contains(w), "{s}: {:?} lacks {w:?}", x.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_moved_expired_untrusted_and_hijacked_records_are_rejected_with_reasons() {
    bounded(async {
        let t = 4;
        let k = Keys::new();
        let mut specs = std_specs(t, &k, bad_carrier_zone(t, &k), true);
        // One carrier DP is enough here.
        specs[3].addrs = vec![4];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();
        let chat = "chat.example.";

        // The good records of the same zone still verify.
        assert_eq!(found(&look(&r, ALICE, None).await), [uri(&k.chat, "alice")]);

        one_rejected(
            &r,
            FORGED,
            chat,
            &uri(&k.chat, "mallory"),
            &["signature does not verify", &owner(FORGED).to_string()],
        )
        .await;
        one_rejected(
            &r,
            FLIPPED,
            chat,
            &uri(&k.chat, "flipped"),
            &["signature does not verify"],
        )
        .await;
        // Moved: the signature covers the owner name it was made for.
        one_rejected(
            &r,
            MOVED,
            chat,
            &uri(&k.chat, "alice"),
            &["signature does not verify", &owner(MOVED).to_string()],
        )
        .await;
        one_rejected(&r, EXPIRED, chat, &uri(&k.chat, "expired"), &["expired"]).await;
        one_rejected(
            &r,
            UNTRUSTED,
            "rogue.example.",
            &uri(&k.rogue, "eve"),
            &["untrusted provider rogue.example."],
        )
        .await;
        one_rejected(
            &r,
            HOST_NOT_PROVIDER,
            chat,
            &uri(&k.talk, "hijack"),
            &["host talk.example. is not the provider chat.example."],
        )
        .await;
        one_rejected(
            &r,
            WRONG_KEY,
            chat,
            &uri(&k.chat, "impostor"),
            &["not a trusted key of this provider"],
        )
        .await;
        one_rejected(
            &r,
            NOT_YET,
            chat,
            &uri(&k.chat, "later"),
            &["not yet valid"],
        )
        .await;

        // Every record at a name bad: all reasons, one per record.
        let rejected = all_rejected(&r, ALL_BAD).await;
        let got: BTreeSet<(String, String)> = rejected
            .iter()
            .map(|x| (x.provider.clone(), x.ssi.clone()))
            .collect();
        let want: BTreeSet<(String, String)> = [
            (chat, uri(&k.chat, "forged")),
            ("talk.example.", uri(&k.talk, "all-bad")),
            ("rogue.example.", uri(&k.rogue, "all-bad")),
            ("meet.example.", uri(&k.chat, "meet-says")),
        ]
        .into_iter()
        .map(|(p, u)| (p.to_string(), u))
        .collect();
        assert_eq!(got, want);
        let reason = |p: &str| {
            rejected
                .iter()
                .find(|x| x.provider == p)
                .map(|x| x.reason.clone())
                .unwrap()
        };
        assert!(reason(chat).contains("signature does not verify"));
        assert!(reason("talk.example.").contains("expired"));
        assert!(reason("rogue.example.").contains("untrusted provider"));
        assert!(reason("meet.example.").contains("is not the provider meet.example."));
        let text = look_err(&r, ALL_BAD).await.to_string();
        assert!(
            text.starts_with(&format!(
                "every record at {} failed verification: ",
                owner(ALL_BAD)
            )),
            "{text}"
        );
        for w in [
            "signature does not verify",
            "expired",
            "untrusted provider",
            "is not the provider",
        ] {
            assert!(text.contains(w), "{text}");
        }

        // One good and one bad: the good one, and the bad one reported.
        let res = look(&r, MIXED, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "mixed")]);
        assert_eq!(res.rejected.len(), 1, "{:?}", res.rejected);
        assert_eq!(res.rejected[0].provider, "talk.example.");
        assert_eq!(res.rejected[0].ssi, uri(&k.talk, "mallory"));
        assert!(res.rejected[0].reason.contains("signature does not verify"));
        // The report survives caching.
        let res = look(&r, MIXED, None).await;
        assert_cached(&res);
        assert_eq!(found(&res), [uri(&k.chat, "mixed")]);
        assert_eq!(res.rejected.len(), 1);

        // 8 single rejections, 4 + 4 for ALL_BAD (asked twice), 1 for MIXED.
        assert_eq!(r.stats.rejected_records(), 8 + 8 + 1);

        // A resolver that trusts rogue.example accepts its record.
        let trust2 = tree.path("trust2.toml");
        std::fs::write(
            &trust2,
            format!(
                "{}\n{}",
                k.trust_toml(),
                record::trust_entry_toml(&k.rogue.provider, &[k.rogue.verifying_key()])
            ),
        )
        .unwrap();
        let mut c = tree.config();
        c.trust = trust2;
        let r2 = tree.resolver_with(c);
        assert_eq!(
            found(&look(&r2, UNTRUSTED, None).await),
            [uri(&k.rogue, "eve")]
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Sequence numbers and tombstones

const SEQ: &str = "+1 555 133 0001";
const WITHDRAWN: &str = "+1 555 133 0002";
const WITHDRAWN_ONE: &str = "+1 555 133 0003";
const SEQ_BAD_NEWER: &str = "+1 555 133 0004";

fn with_seq(key: &ProviderKey, o: &Name, who: &str, seq: u64, withdrawn: bool) -> Ssi {
    let mut s = mapping(key, o, who, Context::Any, 10);
    s.seq = seq;
    s.withdrawn = withdrawn;
    s.sign(o, &key.signing);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_highest_seq_of_a_provider_stands_and_a_tombstone_withdraws() {
    bounded(async {
        let t = 5;
        let k = Keys::new();
        let mut z = carrier_zone(t, &k);
        // Two records of one provider: seq 1 and seq 2 (served: the DP's check would
        // refuse the second mapping of a provider).
        let o = owner(SEQ);
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "old", 1, false));
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "new", 2, false));
        // seq 1 mapping, seq 2 tombstone.
        let o = owner(WITHDRAWN);
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "gone", 1, false));
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "gone", 2, true));
        // A tombstone withdraws only its own provider's mapping.
        let o = owner(WITHDRAWN_ONE);
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "gone", 1, false));
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "gone", 3, true));
        push_ssi(&mut z, &o, TTL, with_seq(&k.talk, &o, "stays", 1, false));
        // A higher seq that fails verification retires nothing.
        let o = owner(SEQ_BAD_NEWER);
        push_ssi(&mut z, &o, TTL, with_seq(&k.chat, &o, "valid", 1, false));
        let mut forged = with_seq(&k.chat, &o, "valid", 2, true);
        forged.signature[3] ^= 1;
        push_ssi(&mut z, &o, TTL, forged);
        let mut specs = std_specs(t, &k, z, true);
        specs[3].addrs = vec![4];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();

        let res = look(&r, SEQ, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "new")]);
        assert_eq!(mappings(&res)[0].ssi.seq, 2);
        assert!(res.rejected.is_empty());

        let res = look(&r, WITHDRAWN, None).await;
        assert_eq!(not_found(&res), NotFound::NoMappings);
        assert!(res.rejected.is_empty());
        assert_eq!(res.zone, Some(n(CARRIER)));

        let res = look(&r, WITHDRAWN_ONE, None).await;
        assert_eq!(found(&res), [uri(&k.talk, "stays")]);

        let res = look(&r, SEQ_BAD_NEWER, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "valid")]);
        assert_eq!(res.rejected.len(), 1);
        assert!(res.rejected[0].reason.contains("signature does not verify"));
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_only_withdrawn_mappings_is_cached() {
    bounded(async {
        let t = 15;
        let k = Keys::new();
        let mut z = carrier_zone(t, &k);
        let o = owner(WITHDRAWN);
        z.put_ssi(o.clone(), TTL, with_seq(&k.chat, &o, "gone", 2, true));
        let mut specs = std_specs(t, &k, z, false);
        specs[3].addrs = vec![4];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();
        let res = look(&r, WITHDRAWN, None).await;
        assert_eq!(not_found(&res), NotFound::NoMappings);
        assert_eq!(res.ttl, TTL, "the tombstone's TTL");
        let before = tree.total_queries();
        let res = look(&r, WITHDRAWN, None).await;
        assert_eq!(not_found(&res), NotFound::NoMappings);
        assert_cached(&res);
        assert_eq!(tree.total_queries(), before);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 6. Cache

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_send_nothing_ttl_expiry_requeries_and_delegations_are_reused() {
    bounded(async {
        let t = 6;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let r = tree.resolver();
        let carrier_q = || tree.queries(4) + tree.queries(14);

        // Cold: COLD queries reach the DPs.
        let before = tree.total_queries();
        let res = look(&r, ALICE, None).await;
        assert_fresh(&res, COLD);
        assert_eq!(tree.total_queries() - before, u64::from(COLD));
        assert_eq!(r.stats.queries_sent.load(Relaxed), u64::from(COLD));

        // Repeat: no packet at all.
        let counts = tree.counts();
        let res = look(&r, ALICE, None).await;
        assert_cached(&res);
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.zone, Some(n(CARRIER)));
        assert!(res.ttl <= TTL && res.ttl >= TTL - 5, "{}", res.ttl);
        assert_eq!(tree.counts(), counts);
        assert_eq!(r.stats.cache_hits.load(Relaxed), 1);
        assert_eq!(r.stats.lookups.load(Relaxed), 2);
        assert_eq!(r.stats.queries_sent.load(Relaxed), u64::from(COLD));

        // Delegations are cached by zone cut: another number of the same carrier asks
        // only the carrier, and only below the names known to lie in its zone.
        let (root, e164, cc1, carrier) = (
            tree.queries(1),
            tree.queries(2),
            tree.queries(3),
            carrier_q(),
        );
        let res = look(&r, OTHER, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        assert_eq!(found(&res), [uri(&k.chat, "other")]);
        assert_eq!(
            (tree.queries(1), tree.queries(2), tree.queries(3)),
            (root, e164, cc1),
            "root, e164 and 1.e164 not asked again"
        );
        assert_eq!(carrier_q() - carrier, u64::from(NEXT_IN_BLOCK));

        // A one-second TTL: cached for a second, then asked again (only the carrier,
        // whose delegation is still fresh, and only at the owner, whose ancestors are
        // known to lie in the zone).
        let res = look(&r, SHORT, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        assert_eq!(res.ttl, 1);
        assert_eq!(mappings(&res)[0].ttl, 1);
        let counts = tree.counts();
        assert_cached(&look(&r, SHORT, None).await);
        assert_eq!(tree.counts(), counts);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (root, carrier) = (tree.queries(1), carrier_q());
        let res = look(&r, SHORT, None).await;
        assert_fresh(&res, 1);
        assert_eq!(found(&res), [uri(&k.chat, "short")]);
        assert_eq!(carrier_q() - carrier, 1);
        assert_eq!(tree.queries(1), root);
        // ALICE (TTL 3600) is still cached.
        assert_cached(&look(&r, ALICE, None).await);

        // A mapping is never cached past its not_after, whatever the TTL says.
        let res = look(&r, SOON, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        assert!(res.ttl <= 100 && res.ttl >= 95, "{}", res.ttl);
        assert_eq!(mappings(&res)[0].ttl, res.ttl);
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_are_cached_for_the_soa_negative_ttl() {
    bounded(async {
        let t = 16;
        let k = Keys::new();
        let mut specs = std_specs(t, &k, carrier_zone(t, &k), false);
        // example.com's SOA TTL (2 s) is below its MINIMUM (300 s): denials last 2 s.
        specs[5].zone = example_zone(t, &k, 2);
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();

        // NXDOMAIN, then no new packet.
        // The 9th question, two labels at once (0.0.1.1.1.5.5.5.1), is already denied.
        let res = look(&r, NX, None).await;
        assert_fresh(&res, COLD - 1);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.ttl, SOA_MINIMUM);
        let counts = tree.counts();
        let res = look(&r, NX, None).await;
        assert_cached(&res);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.soa.as_ref().unwrap().name, hn(CARRIER));
        assert!(res.ttl <= SOA_MINIMUM && res.ttl >= SOA_MINIMUM - 5);
        assert_eq!(tree.counts(), counts);

        // NODATA likewise.
        let res = look(&r, TXT_ONLY, None).await;
        assert_fresh(&res, NEXT_IN_BLOCK);
        let counts = tree.counts();
        let res = look(&r, TXT_ONLY, None).await;
        assert_cached(&res);
        assert_eq!(not_found(&res), NotFound::NoMappings);
        assert_eq!(tree.counts(), counts);

        // RFC 2308: min(SOA TTL, MINIMUM) = 2 s; cached for that long, then asked again.
        let res = look(&r, NOBODY, None).await;
        assert_fresh(&res, 4);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        assert_eq!(res.ttl, 2);
        assert_eq!(res.soa.as_ref().unwrap().ttl, 2);
        let counts = tree.counts();
        assert_cached(&look(&r, NOBODY, None).await);
        assert_eq!(tree.counts(), counts);
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let before = tree.queries(7);
        let res = look(&r, NOBODY, None).await;
        assert_fresh(&res, 1);
        assert_eq!(tree.queries(7), before + 1);

        // cache.max_negative_ttl caps it further.
        let mut c = tree.config();
        c.cache.max_negative_ttl = Duration::from_secs(1);
        let capped = tree.resolver_with(c);
        let res = look(&capped, NX, None).await;
        assert_eq!(res.ttl, 1);
        assert_cached(&look(&capped, NX, None).await);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let res = look(&capped, NX, None).await;
        assert_fresh(&res, 4);
        assert_eq!(not_found(&res), NotFound::NoSuchName);
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_max_ttl_caps_answers_and_delegations() {
    bounded(async {
        let t = 26;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let mut c = tree.config();
        c.cache.max_ttl = Duration::from_secs(1);
        let r = tree.resolver_with(c);
        let res = look(&r, ALICE, None).await;
        assert_fresh(&res, COLD);
        assert_eq!(res.ttl, 1, "3600 capped to 1");
        // The mapping's reported TTL is capped as the cache lifetime is.
        assert_eq!(mappings(&res)[0].ttl, 1);
        assert_cached(&look(&r, ALICE, None).await);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Answer and delegations both expired: the walk starts at the root again, but
        // passes the names known to lie in 1.e164 and the carrier zone (NODATA, cached
        // for the SOA's negative TTL): one question each at the root, e164 and 1.e164,
        // and at the carrier one label at a time below 2.2.1.1.1.5.5.5.1 (NS
        // 2.2.2.1.1.1.5.5.5.1, SSI at the owner).
        let root = tree.queries(1);
        let res = look(&r, ALICE, None).await;
        assert_fresh(&res, 5);
        assert_eq!(tree.queries(1), root + 1);
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_bounded_by_entries_least_recently_used_first() {
    bounded(async {
        let t = 36;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let mut c = tree.config();
        c.cache.entries = 2;
        let small = tree.resolver_with(c);
        let big = tree.resolver();
        // Small: a walk's delegations and names known to be in a zone push each other
        // out, and only the last of them and the answer stay: every lookup is cold.
        for (r, next) in [(&small, COLD), (&big, NEXT_IN_BLOCK)] {
            assert_fresh(&look(r, ALICE, None).await, COLD);
            assert_cached(&look(r, ALICE, None).await);
            for s in [CAROL, DAVE, OTHER] {
                assert_fresh(&look(r, s, None).await, next);
            }
        }
        assert_eq!(small.cache().len(), 2);
        assert!(big.cache().len() >= 7, "{}", big.cache().len());
        // Small: ALICE was evicted and is asked again.
        let before = tree.total_queries();
        let res = look(&small, ALICE, None).await;
        assert_fresh(&res, COLD);
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(tree.total_queries() - before, u64::from(COLD));
        // Big: still cached.
        assert_cached(&look(&big, ALICE, None).await);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 7. Serve-stale

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_answers_from_an_expired_entry_when_the_zone_is_unreachable() {
    bounded(async {
        let t = 7;
        let k = Keys::new();
        let mut tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let mut c = tree.config();
        c.cache.serve_stale = true;
        let stale = tree.resolver_with(c.clone());
        let mut c0 = c.clone();
        c0.cache.stale_window = Duration::ZERO;
        let no_window = tree.resolver_with(c0);
        let plain = tree.resolver();
        for r in [&stale, &no_window, &plain] {
            let res = look(r, SHORT, None).await;
            assert_eq!(res.ttl, 1);
            assert_eq!(found(&res), [uri(&k.chat, "short")]);
        }
        tree.stop(4).await;
        tree.stop(14).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;

        // Both carrier servers refuse: the expired answer, marked stale, TTL 30 s.
        let res = look(&stale, SHORT, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "short")]);
        assert!(res.stale);
        assert!(res.from_cache);
        assert_eq!(res.queries, 2, "one try at each carrier server");
        assert_eq!(res.ttl, 30);
        assert_eq!(res.zone, Some(n(CARRIER)));
        // A name never cached has nothing stale to serve.
        match look_err(&stale, OTHER).await {
            ResolveError::NoServerAnswered { zone, .. } => assert_eq!(zone, n(CARRIER)),
            other => panic!("{other}"),
        }
        // Without serve-stale, or past the stale window: the error.
        for r in [&plain, &no_window] {
            match look_err(r, SHORT).await {
                ResolveError::NoServerAnswered { zone, tried } => {
                    assert_eq!(zone, n(CARRIER));
                    assert_eq!(tried.len(), 2, "{tried:?}");
                }
                other => panic!("{other}"),
            }
        }
        // The carrier back: a fresh answer, not stale.
        tree.restart(4).await;
        let res = look(&stale, SHORT, None).await;
        assert!(!res.stale && !res.from_cache);
        assert_eq!(res.ttl, 1);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 8. Limits: loops, depth, query budget

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_loops_stop_with_an_error_naming_the_referral() {
    bounded(async {
        let t = 8;
        let k = Keys::new();
        // e164 delegates 1.e164 back to its own server (.2), which serves only e164:
        // asked about 5.1.e164 as 1.e164's server, it refers to 1.e164 again.
        let mut e164 = ZoneFile::new_zone(n(E164), &[(ns(E164), ip(t, 2))], TTL, 1);
        e164.set_delegation(&n(CC1), &[(ns(CC1), ip(t, 2))], TTL);
        // email delegates example.com.email to .7, whose DP serves the root zone and
        // refers upwards (to email.mimi.arpa.).
        let mut email = ZoneFile::new_zone(n(EMAIL), &[(ns(EMAIL), ip(t, 6))], TTL, 1);
        email.set_delegation(&n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], TTL);
        let specs = vec![
            spec(root_zone(t), &[1]),
            spec(e164, &[2]),
            spec(email, &[6]),
            spec(root_zone(t), &[7]),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();

        match look_err(&r, ALICE).await {
            ResolveError::BadAnswer { zone, details } => {
                assert_eq!(zone, n(CC1));
                assert_eq!(details.len(), 1, "{details:?}");
                assert!(details[0].starts_with(&tree.addr(2).to_string()), "{details:?}");
                assert!(
                    details[0].contains("referral to 1.e164.mimi.arpa., which is not below 1.e164.mimi.arpa."),
                    "{details:?}"
                );
            }
            other => panic!("{other}"),
        }
        match look_err(&r, BOB).await {
            ResolveError::BadAnswer { zone, details } => {
                assert_eq!(zone, n(EXAMPLE));
                assert!(
                    details[0].contains("referral to email.mimi.arpa., which is not below example.com.email.mimi.arpa."),
                    "{details:?}"
                );
            }
            other => panic!("{other}"),
        }
        // Bounded work: a handful of queries, no retries of the bad server.
        assert!(tree.total_queries() <= 10, "{}", tree.total_queries());
        let e = look_err(&r, ALICE).await.to_string();
        assert!(e.starts_with("the servers of zone 1.e164.mimi.arpa. answered badly: "), "{e}");
        tree.shutdown().await;
    })
    .await;
}

/// root .1 -> e164 .2 -> 1.e164 .3 -> 5.1.e164 .4 -> 5.5.1.e164 .5 -> 5.5.5.1.e164 .6:
/// one label per zone, each on its own DP, or all on the one DP at .`shared`.
fn chain_zones(t: u8, k: &Keys, shared: Option<u8>) -> Vec<ZoneFile> {
    let zones = [
        ROOT,
        E164,
        CC1,
        "5.1.e164.mimi.arpa.",
        "5.5.1.e164.mimi.arpa.",
        CARRIER,
    ];
    let mut out = Vec::new();
    for (i, origin) in zones.iter().enumerate() {
        let x = |i: usize| shared.unwrap_or(i as u8 + 1);
        let mut z = ZoneFile::new_zone(n(origin), &[(ns(origin), ip(t, x(i)))], TTL, 1);
        if let Some(child) = zones.get(i + 1) {
            z.set_delegation(&n(child), &[(ns(child), ip(t, x(i + 1)))], TTL);
        } else {
            let o = owner(ALICE);
            z.put_ssi(
                o.clone(),
                TTL,
                mapping(&k.chat, &o, "alice", Context::Any, 10),
            );
        }
        out.push(z);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_deep_tree_stops_at_max_referrals() {
    bounded(async {
        let t = 18;
        let k = Keys::new();
        let specs = chain_zones(t, &k, None)
            .into_iter()
            .enumerate()
            .map(|(i, z)| spec(z, &[i as u8 + 1]))
            .collect();
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        // Five referrals reach the carrier: allowed by the default limit.
        let r = tree.resolver();
        let res = look(&r, ALICE, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.server, Some(tree.addr(6)));
        assert_fresh(&res, COLD);
        // Limit 3: the fourth referral is one too many.
        let mut c = tree.config();
        c.limits.max_referrals = 3;
        let shallow = tree.resolver_with(c.clone());
        match look_err(&shallow, ALICE).await {
            ResolveError::TooDeep { limit } => assert_eq!(limit, 3),
            other => panic!("{other}"),
        }
        // Four DPs were asked (root, e164, 1.e164, 5.1.e164), the fifth not.
        assert_eq!(
            tree.queries(6),
            u64::from(COLD_IN_CARRIER),
            "only the first resolver reached the carrier"
        );
        // Limit 5 is just enough.
        c.limits.max_referrals = 5;
        let r5 = tree.resolver_with(c);
        assert_eq!(
            found(&look(&r5, ALICE, None).await),
            [uri(&k.chat, "alice")]
        );
        // (A fresh resolver: `shallow` cached the cuts it learned before giving up, so
        // its next try starts lower down.)
        let mut c = tree.config();
        c.limits.max_referrals = 3;
        let e = look_err(&tree.resolver_with(c), ALICE).await.to_string();
        assert_eq!(e, "more than 3 referrals: the tree is too deep or loops");
        tree.shutdown().await;

        // All six zones on one DP (.9): each level is an authoritative NS answer from
        // the same server rather than a referral, and counts against the limit too.
        let mut zones = chain_zones(t, &k, Some(9));
        let first = zones.remove(0);
        let specs = vec![Spec {
            extra: zones,
            ..spec(first, &[9])
        }];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let mut c = tree.config();
        c.roots = vec![ip(t, 9)];
        let r = tree.resolver_with(c.clone());
        let res = look(&r, ALICE, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.server, Some(tree.addr(9)));
        assert_eq!(res.zone, Some(n(CARRIER)));
        assert_fresh(&res, COLD);
        c.limits.max_referrals = 3;
        let shallow = tree.resolver_with(c);
        match look_err(&shallow, ALICE).await {
            ResolveError::TooDeep { limit } => assert_eq!(limit, 3),
            other => panic!("{other}"),
        }
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_budget_stops_a_long_walk() {
    bounded(async {
        let t = 28;
        let k = Keys::new();
        let tree = Tree::start(
            t,
            &k.trust_toml(),
            std_specs(t, &k, carrier_zone(t, &k), false),
        )
        .await;
        let mut c = tree.config();
        c.limits.max_queries = 5;
        let r = tree.resolver_with(c.clone());
        let before = tree.total_queries();
        match look_err(&r, ALICE).await {
            ResolveError::TooManyQueries { limit } => assert_eq!(limit, 5),
            other => panic!("{other}"),
        }
        assert_eq!(
            tree.total_queries() - before,
            5,
            "the sixth query is never sent"
        );
        // Exactly enough.
        c.limits.max_queries = COLD;
        let r = tree.resolver_with(c);
        assert_fresh(&look(&r, ALICE, None).await, COLD);
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 9. Name servers without glue

/// The standard tree, but 1.e164 delegates the carrier to ns.dps.mimi.arpa. (no glue:
/// outside 1.e164's bailiwick), whose address lives in the dps.mimi.arpa. zone at .8.
fn glueless_specs(t: u8, k: &Keys) -> Vec<Spec> {
    const DPS: &str = "dps.mimi.arpa.";
    const NS_DPS: &str = "ns.dps.mimi.arpa.";
    let mut root = root_zone(t);
    root.set_delegation(&n(DPS), &[(ns(DPS), ip(t, 8))], TTL);
    let mut dps = ZoneFile::new_zone(n(DPS), &[(ns(DPS), ip(t, 8))], TTL, 1);
    push_a(&mut dps, NS_DPS, ip(t, 4));
    let mut cc1 = ZoneFile::new_zone(n(CC1), &[(ns(CC1), ip(t, 3))], TTL, 1);
    cc1.set_delegation(&n(CARRIER), &[(n(NS_DPS), ip(t, 4))], TTL);
    let mut carrier = carrier_zone(t, k);
    carrier.set_delegation(&n(CARRIER), &[(n(NS_DPS), ip(t, 4))], TTL);
    assert!(
        !cc1.records.iter().any(|r| r.name == n(NS_DPS)),
        "no glue for an out-of-zone name"
    );
    vec![
        spec(root, &[1]),
        spec(e164_zone(t), &[2]),
        spec(cc1, &[3]),
        spec(carrier, &[4]),
        spec(dps, &[8]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_without_glue_is_followed_by_resolving_the_ns_name() {
    bounded(async {
        let t = 9;
        let k = Keys::new();
        let tree = Tree::start(t, &k.trust_toml(), glueless_specs(t, &k)).await;
        let r = tree.resolver();
        let res = look(&r, ALICE, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        assert_eq!(res.zone, Some(n(CARRIER)));
        assert_eq!(res.server, Some(tree.addr(4)));
        assert_eq!(tree.queries(4), u64::from(COLD_IN_CARRIER));
        // ns.dps.mimi.arpa. was looked up in its own zone (A found, so no AAAA).
        assert_eq!(tree.queries(8), 1, "A of ns.dps");
        let res = look(&r, CAROL, None).await;
        assert_eq!(found(&res).len(), 3);
        assert_eq!(res.server, Some(tree.addr(4)));
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glueless_ns_addresses_are_resolved_once_per_lookup() {
    bounded(async {
        let t = 19;
        let k = Keys::new();
        let tree = Tree::start(t, &k.trust_toml(), glueless_specs(t, &k)).await;
        let r = tree.resolver();
        let res = look(&r, ALICE, None).await;
        assert_eq!(found(&res), [uri(&k.chat, "alice")]);
        // root 1 + e164 1 + 1.e164 3 + root (NS dps) 1 + dps (A; no AAAA needed) 1 + carrier 5.
        assert_eq!(tree.queries(8), 1, "ns.dps.mimi.arpa. A, once");
        assert_eq!(res.queries, COLD + 2);
        // A second number of the same carrier: the NS address is known by now.
        let before = tree.queries(8);
        let res = look(&r, CAROL, None).await;
        assert_eq!(res.queries, NEXT_IN_BLOCK);
        assert_eq!(tree.queries(8), before);
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_glueless_ns_names_ends_in_an_error() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let out = in_child("a_cycle_of_glueless_ns_names_ends_in_an_error").await;
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
        // The carrier's NS (ns.dps.mimi.arpa.) is in dps.mimi.arpa., whose NS
        // (ns.5.5.5.1.e164.mimi.arpa.) is in the carrier zone; neither has glue.
        const DPS: &str = "dps.mimi.arpa.";
        const NS_DPS: &str = "ns.dps.mimi.arpa.";
        const NS_CARRIER: &str = "ns.5.5.5.1.e164.mimi.arpa.";
        let t = 29;
        let k = Keys::new();
        let mut root = root_zone(t);
        root.set_delegation(&n(DPS), &[(n(NS_CARRIER), ip(t, 8))], TTL);
        // set_delegation adds an address for an NS name inside the zone; drop it.
        root.records.retain(|r| r.name != n(NS_CARRIER));
        let mut dps = ZoneFile::new_zone(n(DPS), &[(ns(DPS), ip(t, 8))], TTL, 1);
        push_a(&mut dps, NS_DPS, ip(t, 4));
        let mut cc1 = ZoneFile::new_zone(n(CC1), &[(ns(CC1), ip(t, 3))], TTL, 1);
        cc1.set_delegation(&n(CARRIER), &[(n(NS_DPS), ip(t, 4))], TTL);
        let specs = vec![
            spec(root, &[1]),
            spec(e164_zone(t), &[2]),
            spec(cc1, &[3]),
            spec(carrier_zone(t, &k), &[4]),
            spec(dps, &[8]),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let r = tree.resolver();
        let e = look_err(&r, ALICE).await;
        assert!(
            matches!(
                e,
                ResolveError::TooDeep { .. }
                    | ResolveError::TooManyQueries { .. }
                    | ResolveError::NoServerAddress { .. }
            ),
            "{e}"
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 10. Truncation: UDP then TCP

const MANY: &str = "+1 555 111 6000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_big_for_udp_is_fetched_over_tcp() {
    bounded(async {
        let t = 10;
        let k = Keys::new();
        let providers: Vec<ProviderKey> = (0..10)
            .map(|i| ProviderKey::generate(n(&format!("p{i}.example."))))
            .collect();
        let mut trust = k.trust_toml();
        for p in &providers {
            trust.push('\n');
            trust.push_str(&record::trust_entry_toml(&p.provider, &[p.verifying_key()]));
        }
        let mut z = carrier_zone(t, &k);
        let o = owner(MANY);
        for (i, p) in providers.iter().enumerate() {
            let who = format!("user-with-a-longish-name-{i}");
            z.put_ssi(
                o.clone(),
                TTL,
                mapping(p, &o, &who, Context::Any, 100 - i as u16),
            );
        }
        let wire: usize = z
            .records
            .iter()
            .filter(|r| r.name == o)
            .map(|r| r.data.to_wire().len() + 12)
            .sum();
        assert!(wire > 1232, "{wire} bytes fit in UDP");
        let mut specs = std_specs(t, &k, z, false);
        specs[3].addrs = vec![4];
        let tree = Tree::start(t, &trust, specs).await;
        let r = tree.resolver();
        let res = look(&r, MANY, None).await;
        assert_fresh(&res, COLD);
        let got = found(&res);
        let want: Vec<String> = (0..10)
            .rev()
            .map(|i| uri(&providers[i], &format!("user-with-a-longish-name-{i}")))
            .collect();
        assert_eq!(got, want, "all ten, by priority");
        // The DP counts the truncation when its UDP loop sends the answer; on a loaded
        // machine the resolver may have moved on (a UDP timeout) before that, so wait for it.
        let stats = tree.server(4).stats();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stats.truncated.load(Relaxed) == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // (A retried UDP query is truncated again.)
        assert!(
            stats.truncated.load(Relaxed) >= 1,
            "the DP truncated the UDP answer"
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 11. The DNS listener (`mimi resolver serve`)

fn question(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(hn(name), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m
}

/// One question over UDP; the checked reply.
async fn ask_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let msg = question(name, rtype);
    let sock = UdpSocket::bind((server.ip(), 0)).await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    assert_eq!(reply.queries, msg.queries);
    reply
}

/// One question over TCP; the checked reply.
async fn ask_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let msg = question(name, rtype);
    let mut stream = timeout(T, TcpStream::connect(server))
        .await
        .unwrap()
        .unwrap();
    let bytes = msg.to_vec().unwrap();
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await.unwrap();
    let reply = timeout(T, async {
        let len = stream.read_u16().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    })
    .await
    .expect("no TCP answer");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

fn ssi_of(r: &HRecord) -> Ssi {
    match &r.data {
        HRData::Unknown { code, rdata } => {
            assert_eq!(u16::from(*code), TYPE_SSI);
            Ssi::from_wire(&rdata.anything).expect("SSI RDATA decodes")
        }
        other => panic!("not an SSI record: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_listener_serves_only_verified_records() {
    bounded(async {
        let t = 11;
        let k = Keys::new();
        let mut z = bad_carrier_zone(t, &k);
        // Ten providers' mappings at one name: more than 1232 bytes.
        let providers: Vec<ProviderKey> = (0..10)
            .map(|i| ProviderKey::generate(n(&format!("p{i}.example."))))
            .collect();
        let mut trust = k.trust_toml();
        let o = owner(MANY);
        for (i, p) in providers.iter().enumerate() {
            trust.push('\n');
            trust.push_str(&record::trust_entry_toml(&p.provider, &[p.verifying_key()]));
            let who = format!("user-with-a-longish-name-{i}");
            z.put_ssi(o.clone(), TTL, mapping(p, &o, &who, Context::Any, i as u16));
        }
        let mut specs = std_specs(t, &k, z, true);
        specs[3].addrs = vec![4];
        let mut tree = Tree::start(t, &trust, specs).await;
        let resolver = Arc::new(tree.resolver());
        let (mut server, bound) =
            resolver::server::listen(resolver.clone(), &[SocketAddr::new(ip(t, 30), 0)])
                .await
                .unwrap();
        let addr = bound[0];
        let ssi = RecordType::Unknown(TYPE_SSI);

        // A good and a forged record at one name: only the good one comes out.
        let name = owner(MIXED).to_string();
        let reply = ask_udp(addr, &name, ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.recursion_available);
        assert!(!reply.metadata.authoritative);
        assert_eq!(reply.answers.len(), 1, "{:?}", reply.answers);
        assert_eq!(reply.answers[0].name, hn(&name));
        assert_eq!(ssi_of(&reply.answers[0]).uri, uri(&k.chat, "mixed"));
        assert_eq!(reply.answers[0].ttl, TTL);
        // Cached now; the same over TCP, TTL counting down.
        let before = tree.total_queries();
        let reply = ask_tcp(addr, &name, ssi).await;
        assert_eq!(reply.answers.len(), 1);
        assert!(reply.answers[0].ttl <= TTL);
        assert_eq!(tree.total_queries(), before, "answered from the cache");

        // Names are case-insensitive.
        let upper = name.to_uppercase();
        let reply = ask_udp(addr, &upper, ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].name.to_lowercase(), hn(&name));
        assert_eq!(ssi_of(&reply.answers[0]).uri, uri(&k.chat, "mixed"));

        // Several mappings: all verified ones, by priority.
        let reply = ask_udp(addr, &owner(CAROL).to_string(), ssi).await;
        let uris: Vec<String> = reply.answers.iter().map(|r| ssi_of(r).uri).collect();
        assert_eq!(
            uris,
            [
                uri(&k.talk, "carol-home"),
                uri(&k.meet, "carol"),
                uri(&k.chat, "carol-work")
            ]
        );

        // Too big for the client's 1232 bytes over UDP: truncated; whole over TCP.
        let many = owner(MANY).to_string();
        let reply = ask_udp(addr, &many, ssi).await;
        assert!(
            reply.metadata.truncation,
            "TC: {} answers",
            reply.answers.len()
        );
        assert!(reply.answers.len() < 10);
        let reply = ask_tcp(addr, &many, ssi).await;
        assert!(!reply.metadata.truncation);
        let uris: Vec<String> = reply.answers.iter().map(|r| ssi_of(r).uri).collect();
        let want: Vec<String> = providers
            .iter()
            .enumerate()
            .map(|(i, p)| uri(p, &format!("user-with-a-longish-name-{i}")))
            .collect();
        assert_eq!(uris, want);

        // NXDOMAIN passes through with the zone's SOA.
        let reply = ask_udp(addr, &owner(NX).to_string(), ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.answers.is_empty());
        assert_eq!(reply.authorities.len(), 1, "{:?}", reply.authorities);
        assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(reply.authorities[0].name, hn(CARRIER));
        assert_eq!(reply.authorities[0].ttl, SOA_MINIMUM);
        // NODATA: NOERROR, empty, with the SOA.
        let reply = ask_udp(addr, &owner(TXT_ONLY).to_string(), ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        assert_eq!(reply.authorities[0].name, hn(CARRIER));

        // Only SSI is served.
        for rtype in [RecordType::TXT, RecordType::A, RecordType::NS] {
            let reply = ask_udp(addr, &owner(ALICE).to_string(), rtype).await;
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::Refused,
                "{rtype}"
            );
            assert!(reply.answers.is_empty());
        }
        // Every record bad: SERVFAIL, nothing served.
        let reply = ask_udp(addr, &owner(ALL_BAD).to_string(), ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert!(reply.answers.is_empty());

        // The tree down: SERVFAIL for what is not cached, cached answers still served.
        let xs: Vec<u8> = tree.servers.iter().map(|(x, _, _)| *x).collect();
        for x in xs {
            tree.stop(x).await;
        }
        let reply = ask_udp(addr, &owner(OTHER).to_string(), ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        let reply = ask_udp(addr, &name, ssi).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);

        timeout(T, server.shutdown_gracefully())
            .await
            .expect("listener shutdown timed out")
            .unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 12. `mimi lookup`, end to end

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimi_lookup_end_to_end_with_config_and_with_server() {
    bounded(async {
        let t = 12;
        let k = Keys::new();
        let mut specs = std_specs(t, &k, carrier_zone(t, &k), false);
        specs[3].addrs = vec![4];
        let mut tree = Tree::start(t, &k.trust_toml(), specs).await;
        let dir = tree.dir.path().to_path_buf();
        let dir = dir.as_path();
        std::fs::write(
            dir.join("resolver.toml"),
            format!(
                "roots = [\"ns1.mimi.arpa.={}\"]\nport = {}\ntrust = \"trust.toml\"\n[limits]\ntimeout_ms = 300\nretries = 0\n",
                ip(t, 1),
                tree.port
            ),
        )
        .unwrap();
        let config = ["--config", "resolver.toml", "--json"];

        // Found: exit 0, the mapping, where it came from.
        let (code, out, err) = mimi(dir, &[&["lookup", ALICE][..], &config].concat()).await;
        assert_eq!(code, 0, "{out}\n{err}");
        let j = json_of(&out);
        assert_eq!(j["status"], "found");
        assert_eq!(j["sii"], "+15551112222");
        assert_eq!(j["owner"], owner(ALICE).to_string());
        assert_eq!(j["zone"], CARRIER);
        assert_eq!(j["server"], tree.addr(4).to_string());
        assert_eq!(j["from_cache"], false);
        assert_eq!(j["queries"], COLD);
        let m = j["mappings"].as_array().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["ssi"], uri(&k.chat, "alice"));
        assert_eq!(m[0]["provider"], "chat.example");
        assert_eq!(m[0]["context"], "any");
        assert_eq!(m[0]["priority"], 10);
        assert_eq!(j["rejected"].as_array().unwrap().len(), 0);

        // Context from the command line.
        let (code, out, _) = mimi(
            dir,
            &[&["lookup", CAROL, "--context", "business"][..], &config].concat(),
        )
        .await;
        assert_eq!(code, 0);
        let j = json_of(&out);
        let uris: Vec<&str> = j["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["ssi"].as_str().unwrap())
            .collect();
        assert_eq!(uris, [uri(&k.meet, "carol"), uri(&k.chat, "carol-work")]);
        let (code, out, _) = mimi(
            dir,
            &[&["lookup", DAVE, "--context", "business"][..], &config].concat(),
        )
        .await;
        assert_eq!(code, 1, "{out}");
        assert_eq!(json_of(&out)["reason"], "no mapping for context business");

        // Not discoverable: exit 1.
        let (code, out, _) = mimi(dir, &[&["lookup", NX][..], &config].concat()).await;
        assert_eq!(code, 1, "{out}");
        let j = json_of(&out);
        assert_eq!(j["status"], "not_discoverable");
        assert_eq!(j["reason"], "no such name in the tree");
        assert_eq!(j["mappings"].as_array().unwrap().len(), 0);
        // Email.
        let (code, out, _) = mimi(dir, &[&["lookup", "Bob@Example.COM"][..], &config].concat()).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(json_of(&out)["mappings"][0]["ssi"], uri(&k.chat, "bob"));

        // An invalid identifier: exit 2, nothing asked.
        let before = tree.total_queries();
        let (code, out, err) = mimi(dir, &[&["lookup", "hello"][..], &config].concat()).await;
        assert_eq!(code, 2, "{out}\n{err}");
        assert!(err.contains("invalid identifier"), "{err}");
        assert_eq!(tree.total_queries(), before);

        // For a person.
        let (code, out, _) = mimi(dir, &["lookup", ALICE, "--config", "resolver.toml"]).await;
        assert_eq!(code, 0);
        assert!(out.contains(&uri(&k.chat, "alice")), "{out}");
        assert!(out.contains("provider chat.example"), "{out}");
        assert!(out.contains(&format!("answered by zone {CARRIER} at {}", tree.addr(4))), "{out}");

        // --server: ask the resolver's DNS listener.
        let resolver = Arc::new(tree.resolver());
        let (mut server, bound) =
            resolver::server::listen(resolver.clone(), &[SocketAddr::new(ip(t, 30), 0)])
                .await
                .unwrap();
        let listener = bound[0].to_string();
        let (code, out, err) =
            mimi(dir, &["lookup", ALICE, "--server", &listener, "--json"]).await;
        assert_eq!(code, 0, "{out}\n{err}");
        let j = json_of(&out);
        assert_eq!(j["status"], "found");
        assert_eq!(j["server"], listener);
        assert_eq!(j["mappings"][0]["ssi"], uri(&k.chat, "alice"));
        // With the trust file, the client checks the records too.
        let (code, out, err) = mimi(
            dir,
            &["lookup", CAROL, "--server", &listener, "--trust", "trust.toml", "--json"],
        )
        .await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(json_of(&out)["mappings"].as_array().unwrap().len(), 3);
        let (code, out, _) = mimi(dir, &["lookup", NX, "--server", &listener, "--json"]).await;
        assert_eq!(code, 1, "{out}");
        assert_eq!(json_of(&out)["status"], "not_discoverable");
        let (code, _, err) = mimi(dir, &["lookup", "hello", "--server", &listener]).await;
        assert_eq!(code, 2, "{err}");

        let xs: Vec<u8> = tree.servers.iter().map(|(x, _, _)| *x).collect();
        for x in xs {
            tree.stop(x).await;
        }
        let (code, out, _) = mimi(dir, &[&["lookup", OTHER][..], &config].concat()).await;
        assert_eq!(code, 2, "{out}");
        let j = json_of(&out);
        assert_eq!(j["status"], "error");
        assert!(j["error"].as_str().unwrap().contains("no server of zone mimi.arpa. answered"), "{j}");
        timeout(T, server.shutdown_gracefully())
            .await
            .expect("listener shutdown timed out")
            .unwrap();
    })
    .await;
}
