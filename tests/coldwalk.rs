//! Cold lookups (issue 12): the questions a walk through an empty cache asks, the labels
//! each DP sees (RFC 9156), what a walk learns about where the zone cuts are, and the
//! per-zone memory of servers that time out. Real DPs started in-process on loopback form
//! the discovery tree, one DP per zone, all on one port; each test has its own block
//! 127.77.<test>.x: .1 root (mimi.arpa.), .2 e164, .3 1.e164, .4 (and .14) the carrier
//! 5.5.5.1.e164, .5 a block the carrier delegates; spies (UDP relays that record every
//! question) stand at those addresses where a test watches the questions, the DPs then
//! listening at .2x.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use mimi_discovery::name::Name;
use mimi_discovery::record::{Context, TYPE_SSI};
use mimi_discovery::resolver::infra::Backoff;
use mimi_discovery::resolver::{LookupResult, Outcome, Resolver};
use mimi_discovery::zone::ZoneFile;
use tokio::net::UdpSocket;
use tokio::time::timeout;

mod common;
use common::*;

/// This file's address block: 127.77.t.x.
const BLOCK: u8 = 77;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(300);
const RESOLVER_RETRIES: u32 = 1;
const CONFIG_EXTRA: &str = "";
/// The `[pir]` section of DPs whose zones publish PIRCFG (and its child list).
const PIR: &str = "[pir]\nthreads = 1\n";
const TTL: u32 = 3600;

const E164: &str = "e164.mimi.arpa.";
const EMAIL: &str = "email.mimi.arpa.";
const CC1: &str = "1.e164.mimi.arpa.";
const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
/// A block of the carrier's numbers that it delegates (to an MVNO, say).
const SUBBLOCK: &str = "1.1.1.5.5.5.1.e164.mimi.arpa.";

const ALICE: &str = "+1 555 111 2222";
const CAROL: &str = "+1 555 111 3333";
const OTHER: &str = "+1 555 111 8888";

/// Questions of a cold lookup of a +1 555 111 xxxx number, with RFC 9156 section 2.3's
/// MAX_MINIMISE_COUNT of 10 and MINIMISE_ONE_LAB of 4 (12 labels below the apex).
const COLD: u32 = 10;

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
    z.set_delegation(&n(CARRIER), &[(ns(CARRIER), ip(t, 4))], TTL);
    z
}

/// The account name of a number's mapping in these zones: its digits.
fn who(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// The carrier zone, its name servers at `servers`, with a mapping for each of `numbers`.
fn carrier_zone(k: &Keys, servers: &[(Name, std::net::IpAddr)], numbers: &[&str]) -> ZoneFile {
    let mut z = ZoneFile::new_zone(n(CARRIER), servers, TTL, 1);
    for s in numbers {
        let o = owner(s);
        z.put_ssi(
            o.clone(),
            TTL,
            mapping(&k.chat, &o, &who(s), Context::Any, 10),
        );
    }
    z
}

async fn look(r: &Resolver, s: &str) -> LookupResult {
    match timeout(Duration::from_secs(20), r.lookup(&sii(s), None)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => panic!("lookup of {s} failed: {e}"),
        Err(_) => panic!("lookup of {s} timed out"),
    }
}

fn assert_found(r: &LookupResult, k: &Keys, s: &str) {
    match &r.outcome {
        Outcome::Found(m) => assert_eq!(m[0].ssi.uri, uri(&k.chat, &who(s))),
        Outcome::NotDiscoverable(nf) => panic!("{s}: not discoverable: {nf}"),
    }
}

/// Checks what RFC 9156 section 2.3 lets a walk show, on the questions of one cold walk
/// in order (each with the zone it was asked of): the first four add one label each to
/// what the walk knew, none asks about a name below a cut of the zone it is sent to (the
/// zone's own name plus labels only up to its child on the path), at most 10 in all.
fn assert_minimised(questions: &[(String, &str, Option<&str>)]) {
    assert!(questions.len() <= 10, "{questions:?}");
    let mut known = n(ROOT).label_count();
    for (i, (qname, zone, cut)) in questions.iter().enumerate() {
        let labels = n(qname).label_count();
        let zone_labels = n(zone).label_count();
        known = known.max(zone_labels);
        if i < 4 {
            assert_eq!(labels, known + 1, "question {i} ({qname}) adds one label");
        }
        if let Some(cut) = cut {
            assert!(
                n(cut).is_subdomain_of(&n(qname)),
                "{zone} was asked {qname}, below its cut {cut}"
            );
        }
        known = labels;
    }
}

// ---------------------------------------------------------------------------------------
// 1. What a cold walk asks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_carrier_lookup_asks_ten_questions_each_dp_only_what_it_needs() {
    bounded(async {
        let t = 1;
        let k = Keys::new();
        let specs = vec![
            spec(root_zone(t), &[21]),
            spec(e164_zone(t), &[22]),
            spec(cc1_zone(t), &[23]),
            spec(
                carrier_zone(&k, &[(ns(CARRIER), ip(t, 4))], &[ALICE, CAROL, OTHER]),
                &[24],
            ),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let mut spies = Vec::new();
        for x in 1..=4u8 {
            spies.push(Spy::start(tree.addr(x), tree.addr(20 + x)).await);
        }
        let [root, e164, cc1, carrier] = [&spies[0], &spies[1], &spies[2], &spies[3]];
        let nsq = RecordType::NS;
        let ssi = RecordType::Unknown(TYPE_SSI);

        let r = tree.resolver();
        let res = look(&r, ALICE).await;
        assert_found(&res, &k, ALICE);
        assert_eq!(res.queries, COLD);
        assert_eq!(tree.total_queries(), u64::from(COLD));
        let alice = owner(ALICE).to_string();
        assert_eq!(root.take(), [q(E164, nsq)]);
        assert_eq!(e164.take(), [q(CC1, nsq)]);
        // The country DP sees the number down to its cut and no further.
        assert_eq!(
            cc1.take(),
            [
                q("5.1.e164.mimi.arpa.", nsq),
                q("5.5.1.e164.mimi.arpa.", nsq),
                q(CARRIER, nsq)
            ]
        );
        // The carrier holds the whole number: the two steps of two labels are its.
        let carrier_seen = carrier.take();
        assert_eq!(
            carrier_seen,
            [
                q("1.5.5.5.1.e164.mimi.arpa.", nsq),
                q("1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q(SUBBLOCK, nsq),
                q("2.2.1.1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q(&alice, ssi),
            ]
        );
        let mut walk = vec![
            (E164.to_string(), ROOT, Some(E164)),
            (CC1.to_string(), E164, Some(CC1)),
            ("5.1.e164.mimi.arpa.".into(), CC1, Some(CARRIER)),
            ("5.5.1.e164.mimi.arpa.".into(), CC1, Some(CARRIER)),
            (CARRIER.into(), CC1, Some(CARRIER)),
        ];
        walk.extend(
            carrier_seen
                .iter()
                .map(|(qn, _)| (qn.clone(), CARRIER, None)),
        );
        assert_minimised(&walk);

        // The next number of the block: the carrier only, below the names it answered
        // NODATA for (RFC 9156 section 3 step 5), one label at a time.
        let res = look(&r, CAROL).await;
        assert_found(&res, &k, CAROL);
        assert_eq!(res.queries, 4);
        assert!(root.take().is_empty() && e164.take().is_empty() && cc1.take().is_empty());
        assert_eq!(
            carrier.take(),
            [
                q("3.1.1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q("3.3.1.1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q("3.3.3.1.1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q(&owner(CAROL).to_string(), ssi),
            ]
        );
        // A flushed resolver walks from the roots again, as cold as a new one.
        r.flush();
        let res = look(&r, CAROL).await;
        assert_found(&res, &k, CAROL);
        assert_eq!(res.queries, COLD);
        assert_eq!(root.take(), [q(E164, nsq)]);
        for s in [e164, cc1, carrier] {
            s.take();
        }
        // The budget is the config's, and a smaller one shows more at once: with
        // MAX_MINIMISE_COUNT 6 the fifth question carries four labels, three of them
        // below the country DP's cut.
        let mut c = tree.config();
        c.limits.max_minimise_count = 6;
        c.limits.minimise_one_label = 4;
        let r6 = tree.resolver_with(c);
        let res = look(&r6, ALICE).await;
        assert_found(&res, &k, ALICE);
        assert_eq!(res.queries, 6);
        assert_eq!(
            cc1.take(),
            [
                q("5.1.e164.mimi.arpa.", nsq),
                q("5.5.1.e164.mimi.arpa.", nsq),
                q(SUBBLOCK, nsq)
            ]
        );
        assert_eq!(carrier.take(), [q(&alice, ssi)]);
        for s in spies {
            s.task.abort();
        }
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_carrier_delegates_is_not_shown_to_the_carrier() {
    bounded(async {
        let t = 2;
        let k = Keys::new();
        let mut carrier = carrier_zone(&k, &[(ns(CARRIER), ip(t, 4))], &[]);
        carrier.set_delegation(&n(SUBBLOCK), &[(ns(SUBBLOCK), ip(t, 5))], TTL);
        let mut sub = ZoneFile::new_zone(n(SUBBLOCK), &[(ns(SUBBLOCK), ip(t, 5))], TTL, 1);
        let o = owner(ALICE);
        sub.put_ssi(
            o.clone(),
            TTL,
            mapping(&k.chat, &o, &who(ALICE), Context::Any, 10),
        );
        let specs = vec![
            spec(root_zone(t), &[1]),
            spec(e164_zone(t), &[2]),
            spec(cc1_zone(t), &[3]),
            spec(carrier, &[24]),
            spec(sub, &[25]),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let carrier = Spy::start(tree.addr(4), tree.addr(24)).await;
        let sub = Spy::start(tree.addr(5), tree.addr(25)).await;
        let nsq = RecordType::NS;

        let res = look(&tree.resolver(), ALICE).await;
        assert_found(&res, &k, ALICE);
        assert_eq!(res.zone, Some(n(SUBBLOCK)));
        // Five referrals' worth of questions before the sub-block, then the last two
        // questions of the budget there: two labels, then the owner.
        assert_eq!(res.queries, COLD);
        let carrier_seen = carrier.take();
        assert_eq!(
            carrier_seen,
            [
                q("1.5.5.5.1.e164.mimi.arpa.", nsq),
                q("1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q(SUBBLOCK, nsq),
            ]
        );
        let sub_seen = sub.take();
        assert_eq!(
            sub_seen,
            [
                q("2.2.1.1.1.5.5.5.1.e164.mimi.arpa.", nsq),
                q(&owner(ALICE).to_string(), RecordType::Unknown(TYPE_SSI)),
            ]
        );
        let mut walk = vec![
            (E164.to_string(), ROOT, Some(E164)),
            (CC1.to_string(), E164, Some(CC1)),
            ("5.1.e164.mimi.arpa.".into(), CC1, Some(CARRIER)),
            ("5.5.1.e164.mimi.arpa.".into(), CC1, Some(CARRIER)),
            (CARRIER.into(), CC1, Some(CARRIER)),
        ];
        walk.extend(
            carrier_seen
                .iter()
                .map(|(qn, _)| (qn.clone(), CARRIER, Some(SUBBLOCK))),
        );
        walk.extend(sub_seen.iter().map(|(qn, _)| (qn.clone(), SUBBLOCK, None)));
        assert_minimised(&walk);
        carrier.task.abort();
        sub.task.abort();
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. Child lists: where the cuts are, from PIRCFG

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_child_lists_from_a_private_walk_take_a_public_walk_straight_to_each_cut() {
    bounded(async {
        let t = 3;
        let k = Keys::new();
        let pir = |z: ZoneFile, x: u8| Spec {
            config_extra: PIR.into(),
            ..spec(z, &[x])
        };
        let specs = vec![
            pir(root_zone(t), 1),
            pir(e164_zone(t), 2),
            pir(cc1_zone(t), 3),
            pir(
                carrier_zone(&k, &[(ns(CARRIER), ip(t, 4))], &[ALICE, CAROL]),
                4,
            ),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let mut c = tree.config();
        c.limits.timeout = Duration::from_secs(2);
        let r = tree.resolver_with(c);
        // A private lookup reads each zone's PIRCFG on the way.
        let res = timeout(Duration::from_secs(60), r.lookup_private(&sii(ALICE), None))
            .await
            .expect("private lookup timed out")
            .expect("private lookup");
        assert_found(&res, &k, ALICE);

        // A public lookup of another number: no delegation is cached, but every zone's
        // child list is, so each zone gets one question, for its child on the path or,
        // at the carrier (no children), the owner itself.
        let before = tree.counts();
        let referrals: Vec<u64> = (1..=3).map(|x| tree.referrals(x)).collect();
        let res = look(&r, CAROL).await;
        assert_found(&res, &k, CAROL);
        assert_eq!(res.queries, 4);
        let after = tree.counts();
        let asked: Vec<(u8, u64)> = after
            .iter()
            .zip(&before)
            .map(|((x, a), (_, b))| (*x, a - b))
            .collect();
        assert_eq!(asked, [(1, 1), (2, 1), (3, 1), (4, 1)]);
        // Each of the three upper questions was the cut itself: answered by a referral.
        let now: Vec<u64> = (1..=3).map(|x| tree.referrals(x)).collect();
        assert_eq!(
            now.iter()
                .zip(&referrals)
                .map(|(a, b)| a - b)
                .collect::<Vec<_>>(),
            [1, 1, 1]
        );
        tree.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Servers that time out

/// A UDP socket that takes datagrams and never answers; counts them.
struct BlackHole {
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start(at: SocketAddr) -> BlackHole {
        let sock = UdpSocket::bind(at).await.expect("black hole bind");
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while sock.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, Relaxed);
            }
        });
        BlackHole { received, task }
    }

    fn received(&self) -> u64 {
        self.received.load(Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_times_out_is_tried_last_for_its_zone_until_its_backoff_ends() {
    bounded(async {
        let t = 4;
        let k = Keys::new();
        // The carrier's first name server (.4) is a black hole; the second (.14) answers.
        let servers = [(ns(CARRIER), ip(t, 4)), (ns2(CARRIER), ip(t, 14))];
        let mut cc1 = ZoneFile::new_zone(n(CC1), &[(ns(CC1), ip(t, 3))], TTL, 1);
        cc1.set_delegation(&n(CARRIER), &servers, TTL);
        let specs = vec![
            spec(root_zone(t), &[1]),
            spec(e164_zone(t), &[2]),
            spec(cc1, &[3]),
            spec(carrier_zone(&k, &servers, &[ALICE, CAROL, OTHER]), &[14]),
        ];
        let tree = Tree::start(t, &k.trust_toml(), specs).await;
        let hole = BlackHole::start(tree.addr(4)).await;
        let r = tree.resolver();

        // Cold: the black hole is the delegation's first server, so the carrier's first
        // question waits one timeout there, then goes to .14; the later ones go to .14
        // first. Without the memory every carrier question would wait (5 x 300 ms).
        let started = Instant::now();
        let res = look(&r, ALICE).await;
        let took = started.elapsed();
        assert_found(&res, &k, ALICE);
        let cut = r
            .cache()
            .closest_delegation(&owner(ALICE), Instant::now())
            .expect("carrier delegation cached");
        assert_eq!(cut.servers[0], (ns(CARRIER), vec![ip(t, 4)]), "{cut:?}");
        assert_eq!(res.server, Some(tree.addr(14)));
        assert_eq!(hole.received(), 1, "one question lost to the black hole");
        assert_eq!(res.queries, COLD + 1);
        assert!(
            took >= RESOLVER_TIMEOUT && took < RESOLVER_TIMEOUT * 2,
            "{took:?}"
        );
        let penalised = r
            .servers
            .penalised_until(&n(CARRIER), ip(t, 4), Instant::now());
        assert!(penalised.is_some());
        // Only for its zone: the same address as a server of another zone is not.
        assert!(r
            .servers
            .penalised_until(&n(CC1), ip(t, 4), Instant::now())
            .is_none());

        // The next lookup in the zone does not wait on it at all.
        let started = Instant::now();
        let res = look(&r, CAROL).await;
        assert_found(&res, &k, CAROL);
        assert!(
            started.elapsed() < RESOLVER_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(hole.received(), 1);
        assert_eq!(res.queries, 4);

        // Past its backoff the server is tried first again (once), and goes last again.
        let mut c = tree.config();
        c.limits.server_backoff = Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_millis(200),
        };
        let quick = tree.resolver_with(c);
        look(&quick, ALICE).await;
        assert_eq!(hole.received(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let res = look(&quick, OTHER).await;
        assert_found(&res, &k, OTHER);
        assert_eq!(hole.received(), 3, "tried again after its backoff");

        // Every server of the zone dead: the penalised ones are still asked.
        let second = tree.addr(14);
        tree.shutdown().await;
        let hole2 = BlackHole::start(second).await;
        let err = timeout(
            Duration::from_secs(20),
            r.lookup(&sii("+1 555 111 9999"), None),
        )
        .await
        .expect("bounded")
        .expect_err("no server answers");
        assert!(
            err.to_string()
                .contains("no server of zone 5.5.5.1.e164.mimi.arpa. answered"),
            "{err}"
        );
        // .14 first (.4 is still penalised), then .4, then each once more.
        assert_eq!((hole.received(), hole2.received()), (5, 2));
        hole.task.abort();
        hole2.task.abort();
    })
    .await;
}
