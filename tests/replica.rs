//! Encrypted replicas and batched private lookups (DESIGN.md section 11) on loopback: a
//! root DP (.1) and a carrier DP (.2), both with `[pir]`; the carrier knows the resolver's
//! provider by a `[[client]]` TSIG key, so it may download the carrier's slot table. Each
//! test has its own block 127.75.<test>.x; the resolver takes NOTIFY at .9.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mimi_discovery::name::Name;
use mimi_discovery::publish::{publish, SignedMapping};
use mimi_discovery::record::{Context, ProviderKey, Ssi};
use mimi_discovery::resolver::config::ResolverConfig;
use mimi_discovery::resolver::replica::{ReplicaError, ReplicaSettings};
use mimi_discovery::resolver::{invalidate, LookupResult, NotFound, Outcome, Resolver};
use mimi_discovery::tsig::{KeyFileFormat, TsigKey};
use mimi_discovery::zone::{RData, Record};
use tempfile::TempDir;

const CONFIG_EXTRA: &str = "[pir]\nthreads = 1\n";
const BLOCK: u8 = 75;
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";
/// Two providers.
const TWO: &str = "+1 555 111 3333";
/// Three providers: more than one 256-byte slot.
const CAROL: &str = "+1 555 111 4444";
/// Only a personal mapping.
const DAVE: &str = "+1 555 111 5555";
/// Only a TXT record: the name exists, no mapping.
const TXT_ONLY: &str = "+1 555 111 7777";
/// Not in the zone.
const NX: &str = "+1 555 111 0000";
const NEW: &str = "+1 555 111 9999";
/// Another carrier's block, served at .3, which the resolver does not replicate (PIR).
const OTHER_BLOCK: &str = "6.6.6.1.e164.mimi.arpa.";
const OTHER: &str = "+1 666 111 0001";
const CASES: [&str; 6] = [ALICE, TWO, CAROL, DAVE, TXT_ONLY, NX];
/// The goal of DESIGN 8.3 and of the replica's deltas.
const GOAL: Duration = Duration::from_secs(1);

struct Fx {
    tree: Tree,
    keys: Keys,
    dir: TempDir,
    /// The carrier's update key for chat.example.
    chat: TsigKey,
    /// The resolver's provider identity at the carrier ([[client]]).
    ap: TsigKey,
    resolver: Arc<Resolver>,
    listener: Option<mimi_discovery::resolver::server::Listener<invalidate::NotifyHandler>>,
}

fn carrier_zone(t: u8, k: &Keys) -> mimi_discovery::zone::ZoneFile {
    let (_, mut z) = root_and_block(t, CARRIER, k, ALICE, 3600);
    let o = owner(TWO);
    push_ssi(
        &mut z,
        &o,
        3600,
        mapping(&k.chat, &o, "two-work", Context::Business, 20),
    );
    push_ssi(
        &mut z,
        &o,
        3600,
        mapping(&k.talk, &o, "two-home", Context::Personal, 5),
    );
    let o = owner(CAROL);
    push_ssi(
        &mut z,
        &o,
        3600,
        mapping(&k.chat, &o, "carol-work", Context::Business, 20),
    );
    push_ssi(
        &mut z,
        &o,
        3600,
        mapping(&k.talk, &o, "carol-home", Context::Personal, 5),
    );
    push_ssi(
        &mut z,
        &o,
        3600,
        mapping(&k.meet, &o, "carol", Context::Any, 10),
    );
    let o = owner(DAVE);
    push_ssi(
        &mut z,
        &o,
        3600,
        mapping(&k.talk, &o, "dave", Context::Personal, 1),
    );
    z.records.push(Record {
        name: owner(TXT_ONLY),
        ttl: 3600,
        data: RData::Txt(vec![b"no mapping here".to_vec().into()]),
        line: 0,
    });
    // Room for claims within the epoch: the table is sized at build time.
    for i in 0..40 {
        let o = owner(&format!("+1 555 222 {i:04}"));
        push_ssi(
            &mut z,
            &o,
            3600,
            mapping(&k.chat, &o, &format!("filler{i}"), Context::Any, 10),
        );
    }
    z
}

/// The tree, and a resolver that replicates the carrier zone (identified by TSIG), with
/// its NOTIFY listener subscribed at the carrier when `subscribe`. `carrier_extra` goes
/// into the carrier DP's config.
async fn fixture(t: u8, carrier_extra: &str, subscribed: bool) -> Fx {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let chat = TsigKey::generate(n("chat-key."));
    let ap = TsigKey::generate(n("ap-query."));
    let sub = TsigKey::generate(n("resolver-sub."));
    let (cp, ap_path, sp) = (
        dir.path().join("chat.tsig"),
        dir.path().join("ap.tsig"),
        dir.path().join("sub.tsig"),
    );
    chat.save_new(&cp, KeyFileFormat::Bind).unwrap();
    ap.save_new(&ap_path, KeyFileFormat::Bind).unwrap();
    sub.save_new(&sp, KeyFileFormat::Bind).unwrap();
    let (mut root, _) = root_and_block(t, CARRIER, &keys, ALICE, 3600);
    let other_ns = n(&format!("ns1.{OTHER_BLOCK}"));
    root.set_delegation(&n(OTHER_BLOCK), &[(other_ns.clone(), ip(t, 3))], 3600);
    let mut other =
        mimi_discovery::zone::ZoneFile::new_zone(n(OTHER_BLOCK), &[(other_ns, ip(t, 3))], 3600, 1);
    let o = owner(OTHER);
    other.put_ssi(
        o.clone(),
        3600,
        mapping(&keys.meet, &o, "other", Context::Any, 10),
    );
    // Every DP knows the resolver's provider by its key (the resolver signs every query).
    let client = format!(
        "{CONFIG_EXTRA}[[client]]\nprovider = \"chat.example.\"\nlookups_per_day = 1000000\ntsig = {:?}\n",
        ap_path.display().to_string(),
    );
    let mut s2 = spec(carrier_zone(t, &keys), &[2]);
    s2.config_extra = format!(
        "{client}{carrier_extra}\n[[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n",
        cp.display().to_string(),
    );
    let mut s1 = spec(root, &[1]);
    s1.config_extra = client.clone();
    let mut s3 = spec(other, &[3]);
    s3.config_extra = client;
    let tree = Tree::start(t, &keys.trust_toml(), vec![s1, s2, s3]).await;
    let resolver =
        Arc::new(tree.resolver_with(replicating(&tree, &ap, &dir.path().join("replicas"))));
    let mut listener = None;
    if subscribed {
        listener = Some(subscribe(&tree, 2, CARRIER, &resolver, &sub, &sp).await.0);
    }
    Fx {
        tree,
        keys,
        dir,
        chat,
        ap,
        resolver,
        listener,
    }
}

/// A config for the tree that replicates the carrier zone into `dir`, as provider
/// chat.example. (TSIG key `ap`).
fn replicating(tree: &Tree, ap: &TsigKey, dir: &std::path::Path) -> ResolverConfig {
    let mut config = tree.config();
    config.upstream.tsig = Some(ap.clone());
    config.replica = Some(ReplicaSettings {
        dir: dir.to_path_buf(),
        max_bytes: 64 << 20,
        zones: vec![n(CARRIER)],
        min_slots: None,
        poll: Duration::from_secs(3600),
    });
    config
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

    async fn private(&self, s: &str) -> LookupResult {
        tokio::time::timeout(
            Duration::from_secs(60),
            self.resolver.lookup_private(&sii(s), Some(Context::Any)),
        )
        .await
        .unwrap_or_else(|_| panic!("private lookup of {s} timed out"))
        .unwrap_or_else(|e| panic!("private lookup of {s}: {e}"))
    }

    fn replica_lookups(&self) -> u64 {
        self.resolver.replicas.stats.lookups.load(Relaxed)
    }

    async fn shutdown(mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = l.shutdown_gracefully().await;
        }
        self.tree.shutdown().await;
    }
}

fn uris(r: &LookupResult) -> Vec<String> {
    match &r.outcome {
        Outcome::Found(m) => m.iter().map(|m| m.ssi.uri.clone()).collect(),
        Outcome::NotDiscoverable(_) => Vec::new(),
    }
}

/// Mappings in order and the reason for none, comparable between public and private
/// lookups (a private lookup cannot tell a name without mappings from a missing one).
fn comparable(r: &LookupResult) -> (Vec<(Name, Ssi)>, Option<NotFound>) {
    match &r.outcome {
        Outcome::Found(m) => (
            m.iter().map(|m| (m.owner.clone(), m.ssi.clone())).collect(),
            None,
        ),
        Outcome::NotDiscoverable(NotFound::NoMappings) => (Vec::new(), Some(NotFound::NoSuchName)),
        Outcome::NotDiscoverable(nf) => (Vec::new(), Some(*nf)),
    }
}

/// A mapping that expires at `not_after`.
fn expiring(key: &ProviderKey, owner: &Name, who: &str, not_after: u64) -> Ssi {
    let mut s = versioned(key, owner, who, 10);
    s.not_after = not_after;
    s.sign(owner, &key.signing);
    s
}

/// Polls a private lookup of `s` until `check` holds, at most `limit`.
async fn until<F: Fn(&LookupResult) -> bool>(
    fx: &Fx,
    s: &str,
    limit: Duration,
    check: F,
) -> Option<Duration> {
    within(limit, || async { check(&fx.private(s).await) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lookups_equal_public_lookups_and_cost_the_dp_one_oprf_each() {
    bounded(async {
        let fx = fixture(1, "", false).await;
        let replica = fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        let stats = &fx.resolver.replicas.stats;
        assert_eq!(stats.full_runs.load(Relaxed), 1);
        assert!(
            stats.delta_runs.load(Relaxed) >= 1,
            "a full run is made whole by a delta"
        );
        let files: Vec<_> = std::fs::read_dir(
            fx.dir
                .path()
                .join("replicas")
                .join(CARRIER.trim_end_matches('.')),
        )
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
        assert_eq!(files, [format!("{}-0.slots", replica.config.epoch)]);
        let public = fx.tree.resolver();
        for s in CASES {
            let p = public.lookup(&sii(s), Some(Context::Any)).await.unwrap();
            let before = fx.tree.queries(2);
            let lookups = fx.replica_lookups();
            let r = fx.private(s).await;
            assert_eq!(comparable(&r), comparable(&p), "{s}");
            assert_eq!(r.zone, p.zone, "{s}");
            assert_eq!(fx.replica_lookups(), lookups + 1, "{s}: from the replica");
            // The carrier saw PIRCFG and one OPRF request: no PIR.
            assert_eq!(fx.tree.queries(2) - before, 2, "{s}: no PIR queries");
        }
        // A second lookup is a cached answer: no OPRF.
        let before = fx.tree.queries(2);
        assert!(fx.private(ALICE).await.from_cache);
        assert_eq!(fx.tree.queries(2), before);
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_300_returns_exactly_the_single_lookups_results() {
    bounded(async {
        let fx = fixture(2, "", false).await;
        fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        // Three zones: the carrier (replicated), the other block and the root (by PIR);
        // present and absent identifiers, repeats among them.
        let mut inputs: Vec<String> = Vec::new();
        for i in 0..300 {
            inputs.push(match i % 6 {
                0..=2 => CASES[i % CASES.len()].to_string(),
                3 => format!("+1 555 222 {:04}", i % 40),
                4 => format!("+1 666 111 {:04}", i % 7),
                _ => format!("+44 20 7946 {:04}", i % 5),
            });
        }
        let siis: Vec<_> = inputs.iter().map(|s| sii(s)).collect();
        let before = fx.tree.queries(2);
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = done.clone();
        let batch = fx
            .resolver
            .lookup_private_batch_with(&siis, Some(Context::Any), &move |n| {
                d.fetch_add(n, Relaxed);
            })
            .await;
        assert_eq!(done.load(Relaxed), 300, "progress counted every identifier");
        let batch_queries = fx.tree.queries(2) - before;
        assert_eq!(batch.len(), 300);
        // Another resolver, with its own replica and nothing cached, gives the single
        // lookups.
        let single =
            fx.tree
                .resolver_with(replicating(&fx.tree, &fx.ap, &fx.dir.path().join("single")));
        single.replicate(&n(CARRIER)).await.unwrap();
        let mut distinct = std::collections::BTreeSet::new();
        let mut zones = std::collections::BTreeSet::new();
        for (i, (s, b)) in inputs.iter().zip(&batch).enumerate() {
            let one = single.lookup_private(&sii(s), Some(Context::Any)).await;
            if let Ok(r) = b {
                zones.insert(r.zone.clone());
            }
            match (b, &one) {
                (Ok(b), Ok(one)) => {
                    assert_eq!(comparable(b), comparable(one), "{i}: {s}");
                    assert_eq!(b.owner, one.owner);
                }
                (Err(b), Err(one)) => assert_eq!(b.to_string(), one.to_string(), "{i}: {s}"),
                (b, one) => panic!("{i}: {s}: batch {b:?}, single {one:?}"),
            }
            if owner(s).is_subdomain_of(&n(CARRIER)) {
                distinct.insert(owner(s));
            }
        }
        assert_eq!(zones.len(), 3, "three zones answered: {zones:?}");
        // The carrier saw its PIRCFG once and one OPRF request per 64 distinct owners.
        let oprf = distinct.len().div_ceil(64) as u64;
        assert_eq!(
            batch_queries,
            1 + oprf,
            "queries at the carrier for {} distinct owners",
            distinct.len()
        );
        // The other block (by PIR: it has no replica) found its mapping.
        let k = inputs.iter().position(|s| s == OTHER).unwrap();
        assert_eq!(
            uris(batch[k].as_ref().unwrap()),
            [uri(&fx.keys.meet, "other")]
        );
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_refused_its_oprf_learns_nothing_from_its_replica() {
    bounded(async {
        // Eight units: the replica (PIRCFG and two SLOTS runs: the table and its
        // delta), then two lookups (PIRCFG and an OPRF each); the third lookup's PIRCFG
        // is the last unit and its OPRF is refused.
        let fx = fixture(3, "", false).await;
        let config = fx.tree.config_file(2);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "lookups_per_day = 1000000",
            "lookups_per_day = 8\nburst = 8",
        );
        std::fs::write(&config, text).unwrap();
        assert!(fx.tree.server(2).reload().await.unwrap().is_empty());
        fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        let stats = &fx.resolver.replicas.stats;
        for s in [ALICE, TWO] {
            assert!(!uris(&fx.private(s).await).is_empty(), "{s}");
        }
        let lookups = stats.lookups.load(Relaxed);
        let refused = fx
            .resolver
            .lookup_private(&sii(CAROL), Some(Context::Any))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("OPRF") || refused.contains("refused"),
            "{refused}"
        );
        assert!(refused.to_lowercase().contains("quota"), "{refused}");
        assert_eq!(stats.lookups.load(Relaxed), lookups, "no slot was opened");
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_an_expiry_and_a_withdrawal_reach_the_replica_within_a_second() {
    bounded(async {
        let fx = fixture(4, "", true).await;
        fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        let new = owner(NEW);
        let alice = owner(ALICE);
        assert!(uris(&fx.private(NEW).await).is_empty());
        assert_eq!(
            uris(&fx.private(ALICE).await),
            [uri(&fx.keys.chat, "alice")]
        );
        let deltas = fx.resolver.replicas.stats.delta_runs.load(Relaxed);

        fx.publish(&alice, versioned(&fx.keys.chat, &alice, "alice-2", 10))
            .await;
        let changed = until(&fx, ALICE, GOAL, |r| {
            uris(r) == [uri(&fx.keys.chat, "alice-2")]
        })
        .await;
        assert!(
            changed.is_some(),
            "the update did not reach the replica within {GOAL:?}"
        );

        // A claim that expires two seconds from now.
        let expires = now() + 2;
        fx.publish(&new, expiring(&fx.keys.chat, &new, "brief", expires))
            .await;
        let claimed = until(&fx, NEW, GOAL, |r| !uris(r).is_empty()).await;
        assert!(claimed.is_some(), "the claim did not reach the replica");
        while now() <= expires {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Until the DP removes it, the resolver finds the record and rejects it as
        // expired; then the delta makes the name not discoverable.
        let start = Instant::now();
        let expired = loop {
            let r = fx
                .resolver
                .lookup_private(&sii(NEW), Some(Context::Any))
                .await;
            if r.as_ref().is_ok_and(|r| uris(r).is_empty()) {
                break Some(start.elapsed());
            }
            if start.elapsed() > GOAL + Duration::from_secs(1) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(expired.is_some(), "the expiry did not reach the replica");

        fx.publish(&alice, tombstone(&fx.keys.chat, &alice)).await;
        let gone = until(&fx, ALICE, GOAL, |r| uris(r).is_empty()).await;
        assert!(
            gone.is_some(),
            "the withdrawal did not reach the replica within {GOAL:?}"
        );

        let stats = &fx.resolver.replicas.stats;
        assert!(stats.delta_runs.load(Relaxed) >= deltas + 4);
        assert_eq!(stats.full_runs.load(Relaxed), 1, "deltas only");
        println!("update {changed:?}, claim {claimed:?}, expiry {expired:?}, withdrawal {gone:?}");
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_dps_log_no_longer_reaches_is_downloaded_again() {
    bounded(async {
        let fx = fixture(5, "", false).await;
        fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        assert_eq!(uris(&fx.private(DAVE).await), [uri(&fx.keys.talk, "dave")]);
        // Unheard (no subscription), the zone changes more than the DP's log keeps.
        // 40 changes of 40 identifiers: however the DP's write path batches them, its log
        // (16 bucket entries for this table) cannot reach back to the replica's serial.
        for i in 0..40 {
            let o = owner(&format!("+1 555 222 {:04}", i));
            fx.publish(&o, versioned(&fx.keys.chat, &o, &format!("moved{i}"), 10))
                .await;
        }
        let stats = &fx.resolver.replicas.stats;
        let full = stats.full_runs.load(Relaxed);
        // The table follows the last commit by milliseconds: ask until it reflects it, as
        // a NOTIFY's serial would.
        let serial = fx
            .tree
            .server(2)
            .shared()
            .zones
            .load()
            .get(&n(CARRIER))
            .unwrap()
            .store
            .soa()
            .serial;
        fx.resolver
            .refresh_replica(&n(CARRIER), Some(serial))
            .await
            .unwrap();
        assert_eq!(stats.full_runs.load(Relaxed), full + 1, "a new download");
        for i in [0, 13, 39] {
            let s = format!("+1 555 222 {i:04}");
            assert_eq!(
                uris(&fx.private(&s).await),
                [uri(&fx.keys.chat, &format!("moved{i}"))]
            );
        }
        // The cached answer was dropped with the rest of the shard.
        assert!(!fx.private(DAVE).await.from_cache);
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_epoch_forces_a_new_download() {
    bounded(async {
        let fx = fixture(6, "", false).await;
        let old = fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        // A restart builds a new epoch (new keys).
        let mut fx = fx;
        fx.tree.stop(2).await;
        fx.tree.restart(2).await;
        let err = fx
            .resolver
            .refresh_replica(&n(CARRIER), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ReplicaError::EpochChanged { .. }), "{err}");
        assert!(fx.resolver.replicas.get(&n(CARRIER)).is_none());
        // Meanwhile lookups go by PIR, and give the same answers.
        let lookups = fx.replica_lookups();
        assert_eq!(uris(&fx.private(TWO).await).len(), 2);
        assert_eq!(fx.replica_lookups(), lookups, "PIR, not the old replica");
        let new = fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        assert_ne!(new.config.epoch, old.config.epoch);
        assert_eq!(fx.resolver.replicas.stats.full_runs.load(Relaxed), 2);
        assert_eq!(uris(&fx.private(CAROL).await).len(), 3);
        assert_eq!(fx.replica_lookups(), lookups + 1);
        // The old epoch's file is gone.
        let dir = fx
            .dir
            .path()
            .join("replicas")
            .join(CARRIER.trim_end_matches('.'));
        let files: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_resolvers_get_no_replica() {
    bounded(async {
        let fx = fixture(7, "", false).await;
        let mut config = fx.tree.config();
        config.replica = fx.resolver.config().replica.clone();
        let anonymous = fx.tree.resolver_with(config);
        let err = anonymous
            .replicate(&n(CARRIER))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.to_lowercase().contains("refused") && err.contains("identified providers"),
            "{err}"
        );
        fx.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The DP's logs of replica and batch lookups hold neither identifier nor owner name

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dps_trace_logs_of_replica_and_batch_lookups_hold_no_identifier() {
    const NAME: &str = "the_dps_trace_logs_of_replica_and_batch_lookups_hold_no_identifier";
    // Public lookups elsewhere in this binary are logged by owner name: run alone.
    if std::env::var_os(CHILD_ENV).is_none() {
        let out = in_child(NAME).await;
        assert!(
            out.status.success(),
            "child: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    bounded(async {
        let logs = dp_logs();
        let fx = fixture(8, "", false).await;
        fx.resolver.replicate(&n(CARRIER)).await.unwrap();
        assert_eq!(
            uris(&fx.private(ALICE).await),
            [uri(&fx.keys.chat, "alice")]
        );
        let batch: Vec<_> = [TWO, CAROL, NX, DAVE].iter().map(|s| sii(s)).collect();
        for r in fx.resolver.lookup_private_batch(&batch, None).await {
            r.unwrap();
        }
        let all = logs_text(&logs);
        assert!(
            all.contains("replica run"),
            "no replica log captured:\n{all}"
        );
        for s in [ALICE, TWO, CAROL, NX, DAVE] {
            let o = owner(s).to_string();
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            assert!(!all.contains(o.trim_end_matches('.')), "DP logs name {o}");
            assert!(!all.contains(&digits), "DP logs name {digits}");
        }
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mimi_lookup_private_batch_prints_json_lines_in_order() {
    bounded(async {
        let fx = fixture(9, "", false).await;
        let dir = fx.dir.path();
        fx.ap.save_new(dir.join("ap-cli.tsig"), KeyFileFormat::Bind).unwrap();
        std::fs::write(
            dir.join("resolver.toml"),
            format!(
                "roots = [\"{}\"]\nport = {}\ntrust = {:?}\n[upstream]\ntsig = \"ap-cli.tsig\"\n[replica]\ndir = \"cli-replicas\"\nzones = [\"{CARRIER}\"]\n",
                ip(9, 1),
                fx.tree.port,
                fx.tree.trust.display().to_string()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("contacts.txt"),
            format!("# my contacts\n{ALICE}\n{NX}   # nobody\n\nnot a number\n{OTHER}\n{TWO}\n"),
        )
        .unwrap();
        let (code, out, err) = mimi(
            dir,
            &["lookup", "--private", "--batch", "contacts.txt", "--config", "resolver.toml"],
        )
        .await;
        assert_eq!(code, 2, "one line fails: {out}\n{err}");
        let lines: Vec<serde_json::Value> = out.lines().map(json_of).collect();
        assert_eq!(lines.len(), 5, "{out}");
        let status = |i: usize| lines[i]["status"].as_str().unwrap().to_string();
        assert_eq!(status(0), "found");
        assert_eq!(lines[0]["sii"], "+15551112222");
        assert_eq!(status(1), "not_discoverable", "{}", lines[1]);
        assert_eq!(status(2), "error");
        assert!(lines[2]["error"].as_str().unwrap().contains("contacts.txt:5"), "{}", lines[2]);
        assert_eq!(status(3), "found");
        assert_eq!(lines[4]["mappings"].as_array().unwrap().len(), 2, "{}", lines[4]);
        assert!(err.contains("5 identifiers") && err.contains("1 failed"), "{err}");
        // The replica was written where the config says.
        assert!(dir.join("cli-replicas").join(CARRIER.trim_end_matches('.')).is_dir());
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_task_replicates_zones_lookups_find_big_enough_and_polls_them() {
    bounded(async {
        let fx = fixture(10, "", false).await;
        // No zone by name: every zone with at least 40 slots (the carrier's 52; the other
        // block's and the root's 8), polled every second.
        let mut config = replicating(&fx.tree, &fx.ap, &fx.dir.path().join("auto"));
        if let Some(r) = config.replica.as_mut() {
            r.zones.clear();
            r.min_slots = Some(40);
            r.poll = Duration::from_secs(1);
        }
        let resolver = Arc::new(fx.tree.resolver_with(config));
        let task = tokio::spawn(mimi_discovery::resolver::replica::maintain(
            resolver.clone(),
        ));
        let lookup = |s: &'static str| {
            let r = resolver.clone();
            async move { r.lookup_private(&sii(s), Some(Context::Any)).await.unwrap() }
        };
        // The first lookup goes by PIR and tells the task the zone is wanted.
        assert_eq!(uris(&lookup(ALICE).await), [uri(&fx.keys.chat, "alice")]);
        let start = Instant::now();
        while resolver.replicas.get(&n(CARRIER)).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no replica downloaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lookups = resolver.replicas.stats.lookups.load(Relaxed);
        assert_eq!(uris(&lookup(TWO).await).len(), 2);
        assert_eq!(resolver.replicas.stats.lookups.load(Relaxed), lookups + 1);
        // The other block is too small: PIR, and no replica.
        assert_eq!(uris(&lookup(OTHER).await), [uri(&fx.keys.meet, "other")]);
        assert!(resolver.replicas.get(&n(OTHER_BLOCK)).is_none());
        // Unsubscribed, a change reaches the replica by the poll.
        let dave = owner(DAVE);
        fx.publish(&dave, versioned(&fx.keys.chat, &dave, "dave-2", 10))
            .await;
        let start = Instant::now();
        loop {
            let found = uris(&lookup(DAVE).await);
            if found.contains(&uri(&fx.keys.chat, "dave-2")) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the poll brought no delta: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
        fx.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_its_dp_has_not_refreshed_for_three_polls_is_not_used() {
    bounded(async {
        let fx = fixture(11, "", false).await;
        let mut config = replicating(&fx.tree, &fx.ap, &fx.dir.path().join("stale"));
        if let Some(r) = config.replica.as_mut() {
            r.poll = Duration::from_millis(300);
        }
        let resolver = fx.tree.resolver_with(config);
        resolver.replicate(&n(CARRIER)).await.unwrap();
        let lookups = || resolver.replicas.stats.lookups.load(Relaxed);
        let r = &resolver;
        let ask =
            |s: &'static str| async move { r.lookup_private(&sii(s), Some(Context::Any)).await };
        assert_eq!(
            uris(&ask(ALICE).await.unwrap()),
            [uri(&fx.keys.chat, "alice")]
        );
        assert_eq!(lookups(), 1, "fresh: from the replica");
        // No refresh for more than three polls (nothing runs the maintenance task here):
        // the copy may miss changes, so PIR answers.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(uris(&ask(TWO).await.unwrap()).len(), 2);
        assert_eq!(lookups(), 1, "stale: by PIR");
        resolver.refresh_replica(&n(CARRIER), None).await.unwrap();
        assert_eq!(
            uris(&ask(DAVE).await.unwrap()),
            [uri(&fx.keys.talk, "dave")]
        );
        assert_eq!(lookups(), 2, "refreshed: from the replica again");
        fx.shutdown().await;
    })
    .await
}
