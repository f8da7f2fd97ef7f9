//! The resolver listener's fast path (cached answers in wire form, `src/resolver/wire.rs`)
//! gives byte for byte what the general path (hickory's parser, the lookup, hickory's
//! encoder) gives, TTLs aside, which count down and are checked on their own: for found
//! names, NXDOMAIN and NODATA, several mappings, a context policy, in random letter case,
//! with random header bits, with and without EDNS. It counts lookups and cache hits as the
//! general path does, and declines whatever is not a fresh cached answer (invalidated,
//! expired, stale, not yet cached), which the general path then answers. Addresses
//! 127.79.t.x.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use mimi_discovery::name::Name;
use mimi_discovery::net::StreamHandler;
use mimi_discovery::record::{self, Context, ProviderKey, TYPE_SSI};
use mimi_discovery::resolver::server::ResolverHandler;
use mimi_discovery::resolver::Resolver;
use mimi_discovery::zone::{RData, Record, WriteStyle, ZoneFile};
use rand::{Rng, SeedableRng};

mod common;
use common::*;

/// This file's address block: 127.79.t.x.
const BLOCK: u8 = 79;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(300);
const RESOLVER_RETRIES: u32 = 0;
const CONFIG_EXTRA: &str = "";

const TTL: u32 = 3600;
/// The negative TTL of zones made by `ZoneFile::new_zone` (its SOA MINIMUM).
const SOA_MINIMUM: u32 = 300;

const E164: &str = "e164.mimi.arpa.";
const CC1: &str = "1.e164.mimi.arpa.";
const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const EMAIL: &str = "email.mimi.arpa.";
const EXAMPLE: &str = "example.com.email.mimi.arpa.";

/// One mapping (chat, any).
const ALICE: &str = "+1 555 111 2222";
/// Three: talk personal 5, meet any 10, chat business 20.
const CAROL: &str = "+1 555 111 3333";
/// Only a personal mapping (talk): nothing for a business resolver.
const DAVE: &str = "+1 555 111 4444";
/// A mapping with a TTL of one second.
const SHORT: &str = "+1 555 111 5555";
/// Only a TXT record: NODATA.
const TXT_ONLY: &str = "+1 555 111 7777";
/// Not cached by the tests until they ask for it.
const OTHER: &str = "+1 555 111 8888";
/// Ten providers' mappings: more than 1232 bytes.
const MANY: &str = "+1 555 111 6666";
/// NXDOMAIN in the carrier zone.
const NX: &str = "+1 555 111 0000";
/// NXDOMAIN in the country zone.
const NX_COUNTRY: &str = "+1 202 555 0100";
/// An empty non-terminal of the carrier zone: NODATA.
const ENT: &str = "1.1.1.5.5.5.1.e164.mimi.arpa.";
const BOB: &str = "bob@example.com";
const NOBODY: &str = "nobody@example.com";

fn ns(zone: &str) -> Name {
    n(&format!("ns1.{zone}"))
}

/// The tree of tests/resolver.rs, smaller: root .1, e164 .2, 1.e164 .3, the carrier .4,
/// email .6, example.com .7; the trust file's text (the keys and ten more providers).
fn tree_specs(t: u8, k: &Keys) -> (Vec<Spec>, String) {
    let mut root = ZoneFile::new_zone(apex(), &[(ns(ROOT), ip(t, 1))], TTL, 1);
    root.set_delegation(&n(E164), &[(ns(E164), ip(t, 2))], TTL);
    root.set_delegation(&n(EMAIL), &[(ns(EMAIL), ip(t, 6))], TTL);
    let mut e164 = ZoneFile::new_zone(n(E164), &[(ns(E164), ip(t, 2))], TTL, 1);
    e164.set_delegation(&n(CC1), &[(ns(CC1), ip(t, 3))], TTL);
    let mut cc1 = ZoneFile::new_zone(n(CC1), &[(ns(CC1), ip(t, 3))], TTL, 1);
    cc1.set_delegation(&n(CARRIER), &[(ns(CARRIER), ip(t, 4))], TTL);
    let mut carrier = ZoneFile::new_zone(n(CARRIER), &[(ns(CARRIER), ip(t, 4))], TTL, 1);
    let put = |z: &mut ZoneFile, s: &str, ttl: u32, key: &ProviderKey, who: &str, c, p| {
        let o = owner(s);
        z.put_ssi(o.clone(), ttl, mapping(key, &o, who, c, p));
    };
    put(&mut carrier, ALICE, TTL, &k.chat, "alice", Context::Any, 10);
    put(
        &mut carrier,
        CAROL,
        TTL,
        &k.chat,
        "carol-work",
        Context::Business,
        20,
    );
    put(
        &mut carrier,
        CAROL,
        TTL,
        &k.talk,
        "carol-home",
        Context::Personal,
        5,
    );
    put(&mut carrier, CAROL, TTL, &k.meet, "carol", Context::Any, 10);
    put(
        &mut carrier,
        DAVE,
        TTL,
        &k.talk,
        "dave",
        Context::Personal,
        1,
    );
    put(&mut carrier, SHORT, 1, &k.chat, "short", Context::Any, 10);
    put(&mut carrier, OTHER, TTL, &k.chat, "other", Context::Any, 10);
    carrier.records.push(Record {
        name: owner(TXT_ONLY),
        ttl: TTL,
        data: RData::Txt(vec![b"no mapping here".to_vec().into()]),
        line: 0,
    });
    let mut trust = k.trust_toml();
    for i in 0..10u16 {
        let p = ProviderKey::generate(n(&format!("p{i}.example.")));
        trust.push('\n');
        trust.push_str(&record::trust_entry_toml(&p.provider, &[p.verifying_key()]));
        let who = format!("user-with-a-longish-name-{i}");
        put(&mut carrier, MANY, TTL, &p, &who, Context::Any, i);
    }
    let mut email = ZoneFile::new_zone(n(EMAIL), &[(ns(EMAIL), ip(t, 6))], TTL, 1);
    email.set_delegation(&n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], TTL);
    let mut example = ZoneFile::new_zone(n(EXAMPLE), &[(ns(EXAMPLE), ip(t, 7))], TTL, 1);
    put(&mut example, BOB, TTL, &k.chat, "bob", Context::Any, 10);
    let specs = vec![
        spec(root, &[1]),
        spec(e164, &[2]),
        spec(cc1, &[3]),
        spec(carrier, &[4]),
        spec(email, &[6]),
        spec(example, &[7]),
    ];
    (specs, trust)
}

const SRC: &str = "127.79.0.9:5300";

async fn general(handler: &ResolverHandler, query: &[u8]) -> Vec<u8> {
    general_answer(handler, query, SRC.parse().unwrap()).await
}

fn fast(handler: &ResolverHandler, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    handler
        .answer_fast(
            query,
            SRC.parse().unwrap(),
            if udp { Protocol::Udp } else { Protocol::Tcp },
            &mut out,
        )
        .then_some(out)
}

/// EDNS of a query: (payload, DO bit, a cookie option).
type Edns = Option<(u16, bool, bool)>;

/// An SSI query for `name` with the letters' case flipped at random, a random ID, and
/// RD, and the RA, Z, AD and CD bits, at random.
fn query(rng: &mut impl Rng, name: &Name, qtype: u16, edns: Edns) -> Vec<u8> {
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())];
    rng.fill(&mut q[..2]);
    q[2] = u8::from(rng.gen_bool(0.5));
    q[3] = rng.gen_range(0..16u8) << 4;
    q.extend(name.as_wire().iter().map(|&b| {
        if b.is_ascii_alphabetic() && rng.gen_bool(0.5) {
            b ^ 0x20
        } else {
            b
        }
    }));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((payload, dnssec_ok, cookie)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
        if cookie {
            q.extend_from_slice(&[0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        } else {
            q.extend_from_slice(&[0, 0]);
        }
    }
    q
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Offsets of the TTL fields of a response's answer and authority records.
fn ttl_fields(msg: &[u8]) -> Vec<usize> {
    let skip_name = |mut i: usize| loop {
        let len = msg[i];
        if len & 0xC0 == 0xC0 {
            return i + 2;
        }
        i += 1 + usize::from(len);
        if len == 0 {
            return i;
        }
    };
    let mut i = skip_name(12) + 4;
    let mut out = Vec::new();
    for _ in 0..be16(msg, 6) + be16(msg, 8) {
        i = skip_name(i);
        out.push(i + 4);
        i += 10 + be16(msg, i + 8);
    }
    out
}

fn ttl_at(msg: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(msg[at..at + 4].try_into().unwrap())
}

/// Lookups and cache hits so far.
fn counters(r: &Resolver) -> (u64, u64) {
    (
        r.stats.lookups.load(Relaxed),
        r.stats.cache_hits.load(Relaxed),
    )
}

/// Answers `q` on both paths, fast first; asserts the fast path answered, each path
/// counted one lookup and one cache hit, the bytes are equal with TTLs zeroed, and the
/// TTLs are equal and at most `cap`. The TTLs count down in whole seconds, so a pair
/// answered across a second's boundary may differ by one: that pair is asked again.
/// Returns the fast path's answer.
async fn same_on_both_paths(handler: &ResolverHandler, q: &[u8], cap: u32) -> Vec<u8> {
    let r = &handler.0;
    for _attempt in 0..3 {
        let c0 = counters(r);
        let fast = fast(handler, q, false).unwrap_or_else(|| panic!("fast path declined {q:02x?}"));
        let c1 = counters(r);
        let general = general(handler, q).await;
        let c2 = counters(r);
        assert_eq!((c1.0 - c0.0, c1.1 - c0.1), (1, 1), "fast path's counters");
        assert_eq!(
            (c2.0 - c1.0, c2.1 - c1.1),
            (1, 1),
            "general path's counters"
        );
        let fields = ttl_fields(&fast);
        assert_eq!(fields, ttl_fields(&general), "records at the same places");
        let (mut f, mut g) = (fast.clone(), general.clone());
        let mut same_ttls = true;
        for &at in &fields {
            let (tf, tg) = (ttl_at(&fast, at), ttl_at(&general, at));
            assert!(tf <= cap, "TTL {tf} over {cap}");
            assert!(
                tg <= tf && tg + 1 >= tf,
                "TTLs {tf} (fast) and {tg} (general)"
            );
            same_ttls &= tf == tg;
            f[at..at + 4].fill(0);
            g[at..at + 4].fill(0);
        }
        assert_eq!(
            f, g,
            "fast and general paths differ (TTLs zeroed) for query {q:02x?}\nfast:    {f:02x?}\ngeneral: {g:02x?}"
        );
        if same_ttls {
            return fast;
        }
    }
    panic!("the TTLs of the two paths differ three times in a row for {q:02x?}");
}

const EDNS: [Edns; 7] = [
    None,
    Some((512, false, false)),
    Some((1232, false, false)),
    Some((4096, true, true)),
    Some((100, false, false)),
    Some((0, true, false)),
    Some((65535, false, true)),
];

fn rcode(msg: &[u8]) -> u8 {
    msg[3] & 0x0F
}

fn counts(msg: &[u8]) -> [usize; 3] {
    [be16(msg, 6), be16(msg, 8), be16(msg, 10)]
}

async fn start(t: u8) -> (Tree, Keys) {
    let k = Keys::new();
    let (specs, trust) = tree_specs(t, &k);
    (Tree::start(t, &trust, specs).await, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_from_the_wire_form_equal_the_general_paths() {
    bounded(async {
        let t = 1;
        let (tree, _k) = start(t).await;
        let any = ResolverHandler(Arc::new(tree.resolver()));
        let mut config = tree.config();
        config.context = Context::Business;
        let business = ResolverHandler(Arc::new(tree.resolver_with(config)));
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let ssi = TYPE_SSI;
        // (name, RCODE, answers, authority records) for the `any` resolver, then `business`.
        let cases: [(Name, u8, [[usize; 2]; 2]); 10] = [
            (owner(ALICE), 0, [[1, 0], [1, 0]]),
            (owner(CAROL), 0, [[3, 0], [2, 0]]),
            (owner(DAVE), 0, [[1, 0], [0, 0]]),
            (owner(MANY), 0, [[10, 0], [10, 0]]),
            (owner(BOB), 0, [[1, 0], [1, 0]]),
            (owner(NX), 3, [[0, 1], [0, 1]]),
            (owner(NX_COUNTRY), 3, [[0, 1], [0, 1]]),
            (owner(NOBODY), 3, [[0, 1], [0, 1]]),
            (owner(TXT_ONLY), 0, [[0, 1], [0, 1]]),
            (n(ENT), 0, [[0, 1], [0, 1]]),
        ];
        for handler in [&any, &business] {
            // Nothing cached yet: the fast path declines and counts nothing.
            let q = query(&mut rng, &owner(ALICE), ssi, None);
            assert!(fast(handler, &q, false).is_none());
            assert_eq!(counters(&handler.0), (0, 0));
            for (name, _, _) in &cases {
                general(handler, &query(&mut rng, name, ssi, None)).await;
            }
        }
        let mut compared = 0;
        for (which, handler) in [&any, &business].into_iter().enumerate() {
            for (name, want_rcode, want) in &cases {
                for edns in EDNS {
                    for _ in 0..3 {
                        let q = query(&mut rng, name, ssi, edns);
                        let cap = if *want_rcode == 3 || want[which][0] == 0 {
                            SOA_MINIMUM
                        } else {
                            TTL
                        };
                        let a = same_on_both_paths(handler, &q, cap).await;
                        assert_eq!(rcode(&a), *want_rcode, "{name}");
                        let ar = usize::from(edns.is_some());
                        assert_eq!(counts(&a), [want[which][0], want[which][1], ar], "{name}");
                        compared += 1;
                    }
                }
            }
        }
        println!("{compared} cached answers equal on both paths");

        // 300 random names in and around the zones: mostly denials, from each zone.
        let suffixes = [ROOT, E164, CC1, CARRIER, EMAIL, EXAMPLE];
        let mut answered = 0;
        for _ in 0..300 {
            let labels: Vec<String> = (0..rng.gen_range(0..6))
                .map(|_| match rng.gen_range(0..3) {
                    0 => rng.gen_range(0..10).to_string(),
                    1 => ["_pir", "ns1", "chat", "x-y"][rng.gen_range(0..4)].to_string(),
                    _ => (0..rng.gen_range(1..10))
                        .map(|_| rng.gen_range(b'a'..=b'z') as char)
                        .collect(),
                })
                .collect();
            let suffix = suffixes[rng.gen_range(0..suffixes.len())];
            let name = match labels.is_empty() {
                true => n(suffix),
                false => n(&format!("{}.{suffix}", labels.join("."))),
            };
            let edns = EDNS[rng.gen_range(0..EDNS.len())];
            let handler = [&any, &business][rng.gen_range(0..2)];
            let warm = general(handler, &query(&mut rng, &name, ssi, None)).await;
            let q = query(&mut rng, &name, ssi, edns);
            if fast(handler, &q, false).is_none() {
                // Only what the general path does not cache: a failed lookup.
                assert_eq!(
                    rcode(&warm),
                    2,
                    "{name}: declined, yet answered {warm:02x?}"
                );
                continue;
            }
            same_on_both_paths(handler, &q, TTL).await;
            answered += 1;
        }
        println!("random names: {answered} of 300 answered by the fast path, all equal");
        assert!(answered >= 290, "{answered} of 300");

        // The SOA of a denial counts down from the negative TTL, the mappings from theirs.
        let a = fast(&any, &query(&mut rng, &owner(NX), ssi, None), false).unwrap();
        let soa_ttl = ttl_at(&a, ttl_fields(&a)[0]);
        assert!(
            soa_ttl <= SOA_MINIMUM && soa_ttl + 5 >= SOA_MINIMUM,
            "{soa_ttl}"
        );
        let a = fast(&any, &query(&mut rng, &owner(CAROL), ssi, None), false).unwrap();
        for at in ttl_fields(&a) {
            let ttl = ttl_at(&a, at);
            assert!(ttl <= TTL && ttl + 5 >= TTL, "{ttl}");
        }

        // Over UDP an answer that needs truncating goes to the general path: MANY is over
        // 1232 bytes, CAROL over 512 without EDNS; ALICE fits in 512.
        for (name, edns, fits) in [
            (owner(MANY), Some((4096, false, false)), false),
            (owner(MANY), None, false),
            (owner(CAROL), None, false),
            (owner(CAROL), Some((100, false, false)), false),
            (owner(CAROL), Some((1232, false, false)), true),
            (owner(ALICE), None, true),
        ] {
            let q = query(&mut rng, &name, ssi, edns);
            let over_tcp = fast(&any, &q, false).unwrap();
            let limit = edns.map_or(512, |(p, _, _)| p.clamp(512, 1232));
            assert_eq!(over_tcp.len() <= usize::from(limit), fits, "{name}");
            let c = counters(&any.0);
            assert_eq!(fast(&any, &q, true).is_some(), fits, "{name} over UDP");
            if !fits {
                assert_eq!(counters(&any.0), c, "a declined query is not counted");
            }
        }

        // Not for the fast path: another type, a name outside the tree, a name not
        // cached, a NOTIFY, two questions.
        let c = counters(&any.0);
        let declined = [
            query(&mut rng, &owner(ALICE), 16, None),
            query(&mut rng, &n("example.org."), ssi, None),
            query(&mut rng, &owner(OTHER), ssi, None),
            {
                let mut q = query(&mut rng, &owner(ALICE), ssi, None);
                q[2] = 4 << 3;
                q
            },
            {
                let mut q = query(&mut rng, &owner(ALICE), ssi, None);
                q[5] = 2;
                q
            },
        ];
        for q in &declined {
            assert!(fast(&any, q, false).is_none(), "{q:02x?}");
        }
        assert_eq!(counters(&any.0), c);
        tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidated_expired_and_stale_entries_go_to_the_general_path() {
    bounded(async {
        let t = 2;
        let (mut tree, k) = start(t).await;
        let mut config = tree.config();
        config.cache.serve_stale = true;
        let handler = ResolverHandler(Arc::new(tree.resolver_with(config)));
        let r = handler.0.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ssi = TYPE_SSI;
        let ask = |rng: &mut rand::rngs::StdRng, s: &str| query(rng, &owner(s), ssi, None);
        for s in [ALICE, NX, BOB, SHORT] {
            general(&handler, &ask(&mut rng, s)).await;
            same_on_both_paths(&handler, &ask(&mut rng, s), TTL).await;
        }

        // ALICE gains a mapping; the carrier zone's entries are invalidated (as a NOTIFY
        // and CHANGES exchange would): the fast path declines them, the email zone's
        // entry stays.
        let file = &tree.files[3];
        let mut z = ZoneFile::load(file).unwrap();
        let o = owner(ALICE);
        z.put_ssi(
            o.clone(),
            TTL,
            mapping(&k.talk, &o, "alice", Context::Any, 5),
        );
        z.bump_serial();
        z.save(file, WriteStyle::Native).unwrap();
        assert!(tree.server(4).reload().await.unwrap().is_empty());
        let dropped = r.cache().invalidate(&n(CARRIER), None);
        assert!(dropped >= 3, "{dropped} entries dropped");
        for s in [ALICE, NX] {
            assert!(fast(&handler, &ask(&mut rng, s), false).is_none(), "{s}");
        }
        same_on_both_paths(&handler, &ask(&mut rng, BOB), TTL).await;

        // The general path looks them up again and caches them; the fast path then serves
        // the new answer.
        let sent = r.stats.queries_sent.load(Relaxed);
        let (lookups, hits) = counters(&r);
        let a = general(&handler, &ask(&mut rng, ALICE)).await;
        assert_eq!(counts(&a)[0], 2, "the new mapping is served");
        general(&handler, &ask(&mut rng, NX)).await;
        assert_eq!(
            counters(&r),
            (lookups + 2, hits),
            "two lookups, no cache hit"
        );
        assert!(r.stats.queries_sent.load(Relaxed) > sent);
        let a = same_on_both_paths(&handler, &ask(&mut rng, ALICE), TTL).await;
        assert_eq!(counts(&a)[0], 2);
        same_on_both_paths(&handler, &ask(&mut rng, NX), SOA_MINIMUM).await;

        // SHORT (TTL 1) expires: the fast path declines; the general path asks the tree.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(fast(&handler, &ask(&mut rng, SHORT), false).is_none());
        let sent = r.stats.queries_sent.load(Relaxed);
        assert_eq!(rcode(&general(&handler, &ask(&mut rng, SHORT)).await), 0);
        assert!(r.stats.queries_sent.load(Relaxed) > sent);
        same_on_both_paths(&handler, &ask(&mut rng, SHORT), 1).await;

        // Expired again with the carrier down: the general path serves it stale (TTL
        // min(30, the mapping's 1)) after trying the carrier; the fast path still declines.
        tree.stop(4).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let q = ask(&mut rng, SHORT);
        assert!(fast(&handler, &q, false).is_none());
        let sent = r.stats.queries_sent.load(Relaxed);
        let a = general(&handler, &q).await;
        assert!(
            r.stats.queries_sent.load(Relaxed) > sent,
            "the carrier was tried"
        );
        assert_eq!((rcode(&a), counts(&a)[0]), (0, 1), "served stale");
        assert_eq!(ttl_at(&a, ttl_fields(&a)[0]), 1);
        assert!(fast(&handler, &q, false).is_none());
        // The rest of the cache is still served by the fast path.
        same_on_both_paths(&handler, &ask(&mut rng, ALICE), TTL).await;
        tree.shutdown().await;
    })
    .await;
}
