//! Invalidation pushed to resolvers (DESIGN 8.3) on loopback: a DP with a
//! `[[subscriber]]` sends TSIG-signed NOTIFY on every new serial, the resolver asks
//! CHANGES and drops what may be stale - a cached "not discoverable" for a new claim, a
//! withdrawn or changed mapping - within a second; a resolver behind the journal drops
//! the zone; forged NOTIFYs change nothing; CHANGES lists prefixes, never names.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use mimi_discovery::changes::{self, Changes, TYPE_CHANGES};
use mimi_discovery::name::Name;
use mimi_discovery::publish::{publish, SignedMapping};
use mimi_discovery::record::{Context, Ssi};
use mimi_discovery::resolver::{invalidate, Outcome, Resolver};
use mimi_discovery::tsig::{self, KeyFileFormat, TsigKey};
use tempfile::TempDir;
use tokio::net::UdpSocket;

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 68;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";
const NEW: &str = "+1 555 111 3333";
/// The goal of DESIGN 8.3: no longer answered the old way within one second.
const GOAL: Duration = Duration::from_secs(1);

struct Fx {
    tree: Tree,
    keys: Keys,
    _dir: TempDir,
    /// The carrier's update key for chat.example.
    chat: TsigKey,
    /// The subscription key shared by the carrier's DP and the resolver.
    sub: TsigKey,
    resolver: Arc<Resolver>,
    listener: Option<mimi_discovery::resolver::server::Listener<invalidate::NotifyHandler>>,
    /// Where the resolver takes NOTIFY.
    notify_addr: SocketAddr,
}

/// A root DP (.1), the carrier's DP (.2) with an update key, and a resolver whose
/// NOTIFY listener (.9) the DP has as its `[[subscriber]]` (added by a reload).
async fn fixture(t: u8, carrier_extra: &str) -> Fx {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let chat = TsigKey::generate(n("chat-key."));
    let sub = TsigKey::generate(n("resolver-sub."));
    let (cp, sp) = (dir.path().join("chat.tsig"), dir.path().join("sub.tsig"));
    chat.save_new(&cp, KeyFileFormat::Bind).unwrap();
    sub.save_new(&sp, KeyFileFormat::Bind).unwrap();
    let (root, carrier) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    let mut s2 = spec(carrier, &[2]);
    s2.config_extra = format!(
        "{carrier_extra}\n[[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n",
        cp.display().to_string()
    );
    let tree = Tree::start(t, &keys.trust_toml(), vec![spec(root, &[1]), s2]).await;
    let resolver = tree.resolver();
    let resolver = Arc::new(resolver);
    let (listener, notify_addr) = subscribe(&tree, 2, CARRIER, &resolver, &sub, &sp).await;
    Fx {
        tree,
        keys,
        _dir: dir,
        chat,
        sub,
        resolver,
        listener: Some(listener),
        notify_addr,
    }
}

impl Fx {
    async fn publish(&self, owner: &Name, ssi: Ssi) {
        let signed = SignedMapping {
            owner: owner.clone(),
            ttl: 3600,
            ssi,
        };
        publish(self.tree.addr(2), &n(CARRIER), &self.chat, &[signed])
            .await
            .unwrap();
    }

    async fn uris(&self, s: &str) -> Vec<String> {
        uris_of(&self.resolver, s).await
    }

    async fn shutdown(mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = l.shutdown_gracefully().await;
        }
        self.tree.shutdown().await;
    }
}

async fn uris_of(r: &Resolver, s: &str) -> Vec<String> {
    let result = r.lookup(&sii(s), Some(Context::Any)).await.unwrap();
    match result.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        Outcome::NotDiscoverable(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_a_withdrawal_and_a_new_priority_reach_a_subscribed_resolver_within_a_second() {
    bounded(async {
        let fx = fixture(1, "").await;
        // The fixture learnt the serial with one reset answer.
        let resets = fx.resolver.invalidation.stats.zone_resets.load(Relaxed);
        // A resolver without a subscription, for contrast: it keeps its cached answers.
        let plain = fx.tree.resolver();
        let new = owner(NEW);
        let alice = owner(ALICE);
        assert!(fx.uris(NEW).await.is_empty(), "not discoverable yet");
        assert!(uris_of(&plain, NEW).await.is_empty());
        assert_eq!(fx.uris(ALICE).await, [uri(&fx.keys.chat, "alice")]);
        assert_eq!(uris_of(&plain, ALICE).await, [uri(&fx.keys.chat, "alice")]);

        // A claim: the cached NXDOMAIN goes.
        fx.publish(&new, versioned(&fx.keys.chat, &new, "walk-in", 10))
            .await;
        let claimed = within(GOAL, || async { !fx.uris(NEW).await.is_empty() }).await;
        assert!(claimed.is_some(), "the claim was not seen within {GOAL:?}");
        assert!(
            uris_of(&plain, NEW).await.is_empty(),
            "cached, unsubscribed"
        );

        // A changed mapping (new URI and priority).
        fx.publish(&alice, versioned(&fx.keys.chat, &alice, "alice-2", 20))
            .await;
        let changed = within(GOAL, || async {
            fx.uris(ALICE).await == [uri(&fx.keys.chat, "alice-2")]
        })
        .await;
        assert!(changed.is_some(), "the change was not seen within {GOAL:?}");
        assert_eq!(uris_of(&plain, ALICE).await, [uri(&fx.keys.chat, "alice")]);

        // A claim under a name that did not exist (a denial was cached above it).
        assert!(fx.uris("+1 555 444 0000").await.is_empty());
        let below = owner("+1 555 444 0001");
        fx.publish(&below, versioned(&fx.keys.chat, &below, "new-branch", 10))
            .await;
        let branched = within(GOAL, || async {
            !fx.uris("+1 555 444 0001").await.is_empty()
        })
        .await;
        assert!(
            branched.is_some(),
            "the claim under a new branch was not seen"
        );

        // A withdrawal.
        fx.publish(&new, tombstone(&fx.keys.chat, &new)).await;
        let gone = within(GOAL, || async { fx.uris(NEW).await.is_empty() }).await;
        assert!(
            gone.is_some(),
            "the withdrawal was not seen within {GOAL:?}"
        );

        let stats = &fx.resolver.invalidation.stats;
        assert!(stats.notify_accepted.load(Relaxed) >= 4);
        assert_eq!(stats.notify_ignored.load(Relaxed), 0);
        assert_eq!(
            stats.zone_resets.load(Relaxed),
            resets,
            "the serial was known"
        );
        println!("claim {claimed:?}, change {changed:?}, withdrawal {gone:?}");
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_whose_serial_is_older_than_the_journal_drops_the_zone() {
    bounded(async {
        let fx = fixture(2, "[journal]\ndepth = 2\n").await;
        let alice = owner(ALICE);
        assert_eq!(fx.uris(ALICE).await, [uri(&fx.keys.chat, "alice")]);
        let before = fx.resolver.invalidation.serial(&n(CARRIER)).unwrap();
        let resets = fx.resolver.invalidation.stats.zone_resets.load(Relaxed);
        // The resolver hears nothing while four changes go by.
        let mut fx = fx;
        if let Some(mut l) = fx.listener.take() {
            l.shutdown_gracefully().await.unwrap();
        }
        for i in 0..4 {
            let o = owner(&format!("+1 555 111 40{i:02}"));
            fx.publish(&o, versioned(&fx.keys.chat, &o, &format!("u{i}"), 10))
                .await;
        }
        fx.publish(&alice, versioned(&fx.keys.chat, &alice, "alice-2", 10))
            .await;
        assert_eq!(
            fx.uris(ALICE).await,
            [uri(&fx.keys.chat, "alice")],
            "cached"
        );
        // Its next exchange finds the journal no longer reaches its serial.
        let c = invalidate::fetch_changes(fx.tree.addr(2), &n(CARRIER), &fx.sub, Some(before))
            .await
            .unwrap();
        assert!(c.reset && c.prefixes.is_empty(), "{c:?}");
        invalidate::refresh(fx.resolver.clone(), n(CARRIER)).await;
        let stats = &fx.resolver.invalidation.stats;
        assert_eq!(stats.zone_resets.load(Relaxed), resets + 1);
        assert!(stats.entries_dropped.load(Relaxed) >= 1);
        assert_eq!(fx.uris(ALICE).await, [uri(&fx.keys.chat, "alice-2")]);
        assert_eq!(fx.resolver.invalidation.serial(&n(CARRIER)), Some(c.to));
        fx.shutdown().await;
    })
    .await
}

/// A NOTIFY for the carrier zone, signed with `key` when given, sent from `from`;
/// returns the answer's RCODE.
async fn notify(from: SocketAddr, to: SocketAddr, key: Option<&TsigKey>) -> ResponseCode {
    let sock = UdpSocket::bind(from).await.unwrap();
    let mut m = Message::new(7, MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    m.add_query(Query::query(n(CARRIER).to_hickory(), RecordType::SOA));
    let mut bytes = m.to_vec().unwrap();
    if let Some(k) = key {
        tsig::sign_request(&mut bytes, k, now()).unwrap();
    }
    sock.send_to(&bytes, to).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("no answer to the NOTIFY")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap().metadata.response_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_notify_changes_nothing() {
    bounded(async {
        let fx = fixture(3, "").await;
        let t = 3;
        assert!(fx.uris(NEW).await.is_empty());
        let stats = &fx.resolver.invalidation.stats;
        let fetched = stats.changes_fetched.load(Relaxed);
        let dp_ip = SocketAddr::new(ip(t, 2), 0);
        let stranger = TsigKey::generate(n("resolver-sub."));
        // No TSIG, from the DP's address.
        assert_eq!(
            notify(dp_ip, fx.notify_addr, None).await,
            ResponseCode::NotAuth
        );
        // The right key name with another secret, from the DP's address.
        assert_eq!(
            notify(dp_ip, fx.notify_addr, Some(&stranger)).await,
            ResponseCode::NotAuth
        );
        // The right key, from another address.
        assert_eq!(
            notify(SocketAddr::new(ip(t, 7), 0), fx.notify_addr, Some(&fx.sub)).await,
            ResponseCode::Refused
        );
        assert_eq!(stats.notify_ignored.load(Relaxed), 3);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            stats.changes_fetched.load(Relaxed),
            fetched,
            "no CHANGES asked"
        );
        // The same NOTIFY from the DP's address with its key is taken.
        let stats_before = stats.notify_accepted.load(Relaxed);
        assert_eq!(
            notify(dp_ip, fx.notify_addr, Some(&fx.sub)).await,
            ResponseCode::NoError
        );
        assert_eq!(stats.notify_accepted.load(Relaxed), stats_before + 1);
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_list_prefixes_not_names_and_drop_exactly_the_listed_entries() {
    bounded(async {
        let fx = fixture(4, "").await;
        let zone = n(CARRIER);
        let before = fx.resolver.invalidation.serial(&zone).unwrap();
        // 100 absent numbers cached as not discoverable.
        let numbers: Vec<String> = (0..100).map(|i| format!("+1 555 222 {i:04}")).collect();
        for s in &numbers {
            assert!(fx.uris(s).await.is_empty());
        }
        // Stop listening, so the drops below are ours to count.
        let mut fx = fx;
        if let Some(mut l) = fx.listener.take() {
            l.shutdown_gracefully().await.unwrap();
        }
        let claimed: Vec<Name> = (0..20).map(|i| owner(&format!("+1 555 333 {i:04}"))).collect();
        for o in &claimed {
            fx.publish(o, versioned(&fx.keys.chat, o, "x", 10)).await;
        }
        let c = invalidate::fetch_changes(fx.tree.addr(2), &zone, &fx.sub, Some(before))
            .await
            .unwrap();
        assert!(!c.reset, "{c:?} asked {before}");
        assert_eq!((c.from, c.bits), (before, changes::DEFAULT_BITS));
        // Prefixes of 12 bits: two octets each, never a name.
        let wire = c.to_wire();
        assert_eq!(wire.len(), 14 + 2 * c.prefixes.len());
        for o in &claimed {
            assert!(!wire.windows(o.as_wire().len()).any(|w| w == o.as_wire()));
        }
        // Each claimed owner and its new ancestors are listed.
        let set = c.set();
        assert!(claimed.iter().all(|o| set.contains(o)));
        // Exactly the cached denials whose prefix is listed go.
        let owners: Vec<Name> = numbers.iter().map(|s| owner(s)).collect();
        let listed: Vec<&Name> = owners.iter().filter(|o| set.contains(o)).collect();
        let cache = fx.resolver.cache();
        let t0 = Instant::now();
        let present = |o: &Name| cache.answer(o, t0).is_some();
        assert!(owners.iter().all(present));
        let dropped = cache.invalidate(&zone, Some(&set));
        assert!(dropped >= listed.len());
        for o in &owners {
            assert_eq!(present(o), !set.contains(o), "{o}");
        }
        // A change at a name whose ancestors all existed lists that name alone.
        let alice = owner(ALICE);
        fx.publish(&alice, versioned(&fx.keys.chat, &alice, "alice-3", 10))
            .await;
        let one = invalidate::fetch_changes(fx.tree.addr(2), &zone, &fx.sub, Some(c.to))
            .await
            .unwrap();
        assert_eq!(one.prefixes.len(), 1, "{one:?}");
        assert!(one.set().contains(&alice));
        println!(
            "{} names changed, {} prefixes, {} of 100 cached denials listed, {dropped} entries dropped",
            claimed.len(),
            c.prefixes.len(),
            listed.len()
        );
        fx.shutdown().await;
    })
    .await
}

/// A CHANGES question to the DP over UDP or unsigned: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_needs_tcp_and_a_subscribers_key() {
    bounded(async {
        let fx = fixture(5, "").await;
        let zone = n(CARRIER);
        let stranger = TsigKey::generate(n("stranger."));
        let e = invalidate::fetch_changes(fx.tree.addr(2), &zone, &stranger, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Not authorized"), "{e}");
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            changes::owner(&zone).unwrap().to_hickory(),
            RecordType::from(TYPE_CHANGES),
        ));
        let mut bytes = m.to_vec().unwrap();
        tsig::sign_request(&mut bytes, &fx.sub, now()).unwrap();
        let sock = UdpSocket::bind(SocketAddr::new(ip(5, 8), 0)).await.unwrap();
        sock.send_to(&bytes, fx.tree.addr(2)).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().metadata.response_code,
            ResponseCode::Refused
        );
        // With the key over TCP and no serial: a reset naming the current serial.
        let c: Changes = invalidate::fetch_changes(fx.tree.addr(2), &zone, &fx.sub, None)
            .await
            .unwrap();
        assert!(c.reset);
        fx.shutdown().await;
    })
    .await
}
