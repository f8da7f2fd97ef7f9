//! Live zones end to end on loopback: DNS UPDATE from app providers (TSIG-bound keys),
//! replay protection, tombstones, refusals with their extended errors, expiry without
//! reload, SIGHUP as a diff, IXFR from the journal, and private lookups following it all.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RData as HRData, Record as HRecord, RecordType};
use mimi_discovery::name::Name;
use mimi_discovery::pir::carrier::PirCfgRecord;
use mimi_discovery::publish::{publish, PublishError, SignedMapping};
use mimi_discovery::record::{Context, ProviderKey, Ssi, TYPE_PIRCFG, TYPE_SSI};
use mimi_discovery::resolver::Outcome;
use mimi_discovery::tsig::{self, KeyFileFormat, TsigKey};
use mimi_discovery::zone::{RData, Record, WriteStyle, ZoneFile};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 64;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 1;

const CARRIER: &str = "5.5.5.1.e164.mimi.arpa.";
const ALICE: &str = "+1 555 111 2222";
const NEW: &str = "+1 555 111 3333";
/// Small PIR tables keep the tests fast.
const PIR: &str = "[pir]\nshards = 1\nthreads = 1\n";

struct Fx {
    tree: Tree,
    keys: Keys,
    /// Holds the TSIG key files.
    _dir: TempDir,
    chat: TsigKey,
    talk: TsigKey,
}

/// A root DP (.1) and the carrier's DP (.2) with `[[update]]` keys for chat and talk.
async fn fixture(t: u8, extra: &str) -> Fx {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let chat = TsigKey::generate(n("chat-key."));
    let talk = TsigKey::generate(n("talk-key."));
    let (cp, tp) = (dir.path().join("chat.tsig"), dir.path().join("talk.tsig"));
    chat.save_new(&cp, KeyFileFormat::Bind).unwrap();
    talk.save_new(&tp, KeyFileFormat::Bind).unwrap();
    let config = format!(
        "{extra}\n[[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n[[update]]\nprovider = \"talk.example.\"\ntsig = {:?}\n[axfr]\nallow = [\"127.0.0.0/8\"]\n",
        cp.display().to_string(),
        tp.display().to_string()
    );
    let (root, carrier) = root_and_block(t, CARRIER, &keys, ALICE, 300);
    let mut s1 = spec(root, &[1]);
    s1.config_extra = extra.to_string();
    let mut s2 = spec(carrier, &[2]);
    s2.config_extra = config;
    let tree = Tree::start(t, &keys.trust_toml(), vec![s1, s2]).await;
    Fx {
        tree,
        keys,
        _dir: dir,
        chat,
        talk,
    }
}

impl Fx {
    async fn publish(&self, key: &TsigKey, records: Vec<(Name, Ssi)>) -> Result<(), PublishError> {
        let signed: Vec<SignedMapping> = records
            .into_iter()
            .map(|(owner, ssi)| SignedMapping {
                owner,
                ttl: 60,
                ssi,
            })
            .collect();
        publish(self.tree.addr(2), &n(CARRIER), key, &signed)
            .await
            .map(|_| ())
    }

    fn zone_file(&self) -> PathBuf {
        self.tree.files[1].clone()
    }
}

fn with_seq(key: &ProviderKey, owner: &Name, who: &str, seq: u64) -> Ssi {
    let mut s = mapping(key, owner, who, Context::Any, 10);
    s.seq = seq;
    s.sign(owner, &key.signing);
    s
}

fn tombstone(key: &ProviderKey, owner: &Name, seq: u64) -> Ssi {
    let mut s = with_seq(key, owner, "gone", seq);
    s.withdrawn = true;
    s.sign(owner, &key.signing);
    s
}

fn refusal(r: Result<(), PublishError>) -> (ResponseCode, String) {
    match r {
        Err(PublishError::Refused(refusal)) => (
            ResponseCode::from_low(refusal.rcode as u8),
            refusal
                .extended
                .iter()
                .map(|e| e.text.clone())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The extended DNS error of an answer.
fn extended_error(m: &Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    use mimi_discovery::pir::carrier;
    match m
        .edns
        .as_ref()?
        .option(EdnsCode::from(carrier::EDE_OPTION))?
    {
        EdnsOption::Unknown(_, b) => carrier::parse_ede(b),
        _ => None,
    }
}

async fn udp(addr: SocketAddr, m: &Message) -> Message {
    let sock = tokio::net::UdpSocket::bind((addr.ip(), 0)).await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

async fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(bytes);
    s.write_all(&f).await.unwrap();
    let len = s.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

async fn ask(addr: SocketAddr, name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(name.to_hickory(), rtype));
    udp(addr, &m).await
}

/// The SSI records served at `owner`.
async fn served(addr: SocketAddr, owner: &Name) -> Vec<Ssi> {
    ask(addr, owner, RecordType::from(TYPE_SSI))
        .await
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            HRData::Unknown { rdata, .. } => Ssi::from_wire(&rdata.anything).ok(),
            _ => None,
        })
        .collect()
}

async fn serial(addr: SocketAddr) -> u32 {
    match &ask(addr, &n(CARRIER), RecordType::SOA).await.answers[0].data {
        HRData::SOA(soa) => soa.serial,
        other => panic!("{other:?}"),
    }
}

async fn epoch(addr: SocketAddr) -> u64 {
    let name = n(&format!("_pir.{CARRIER}"));
    let m = ask(addr, &name, RecordType::from(TYPE_PIRCFG)).await;
    match &m.answers[0].data {
        HRData::Unknown { rdata, .. } => {
            PirCfgRecord::decode(&rdata.anything).unwrap().config.epoch
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_mapping_is_in_the_next_answer_and_found() {
    bounded(async {
        let fx = fixture(81, "").await;
        let addr = fx.tree.addr(2);
        let owner = owner(NEW);
        let before = serial(addr).await;
        fx.publish(
            &fx.chat,
            vec![(owner.clone(), with_seq(&fx.keys.chat, &owner, "new", 7))],
        )
        .await
        .unwrap();
        let got = served(addr, &owner).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].seq, 7);
        assert_eq!(serial(addr).await, before + 1);
        let r = fx
            .tree
            .resolver()
            .lookup(&sii(NEW), Some(Context::Any))
            .await
            .unwrap();
        match r.outcome {
            Outcome::Found(ms) => assert_eq!(ms[0].ssi.uri, uri(&fx.keys.chat, "new")),
            other => panic!("{other:?}"),
        }
        // A second provider adds its own mapping beside it; a replacement replaces.
        fx.publish(
            &fx.talk,
            vec![(owner.clone(), with_seq(&fx.keys.talk, &owner, "t", 1))],
        )
        .await
        .unwrap();
        fx.publish(
            &fx.chat,
            vec![(owner.clone(), with_seq(&fx.keys.chat, &owner, "newer", 8))],
        )
        .await
        .unwrap();
        let mut got: Vec<(String, u64)> = served(addr, &owner)
            .await
            .into_iter()
            .map(|s| (s.uri, s.seq))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (uri(&fx.keys.chat, "newer"), 8),
                (uri(&fx.keys.talk, "t"), 1)
            ]
        );
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_providers_key_cannot_add_replace_or_withdraw() {
    bounded(async {
        let fx = fixture(82, "").await;
        let addr = fx.tree.addr(2);
        let alice = owner(ALICE);
        // Chat's own signed records (a replacement, a tombstone, a new one), sent with
        // talk's key: refused, naming the record.
        for ssi in [
            with_seq(&fx.keys.chat, &alice, "hijack", 50),
            tombstone(&fx.keys.chat, &alice, 51),
        ] {
            let (rcode, text) = refusal(fx.publish(&fx.talk, vec![(alice.clone(), ssi)]).await);
            assert_eq!(rcode, ResponseCode::Refused);
            assert!(
                text.contains(&alice.to_string()) && text.contains("talk.example"),
                "{text}"
            );
        }
        // A record talk signs but claims for chat fails its signature check.
        let mut forged = with_seq(&fx.keys.talk, &alice, "forged", 52);
        forged.provider = fx.keys.chat.provider.clone();
        let (rcode, text) = refusal(fx.publish(&fx.chat, vec![(alice.clone(), forged)]).await);
        assert_eq!(rcode, ResponseCode::Refused, "{text}");
        // A provider outside the trust file.
        let rogue = with_seq(&fx.keys.rogue, &alice, "r", 1);
        let (rcode, _) = refusal(fx.publish(&fx.chat, vec![(alice.clone(), rogue)]).await);
        assert_eq!(rcode, ResponseCode::Refused);
        let got = served(addr, &alice).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].uri, uri(&fx.keys.chat, "alice"));
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_seq_is_refused_also_after_restart() {
    bounded(async {
        let mut fx = fixture(83, "").await;
        let owner = owner(NEW);
        let chat = &fx.keys.chat;
        fx.publish(
            &fx.chat,
            vec![(owner.clone(), with_seq(chat, &owner, "a", 5))],
        )
        .await
        .unwrap();
        for seq in [5, 4] {
            let (rcode, text) = refusal(
                fx.publish(
                    &fx.chat,
                    vec![(owner.clone(), with_seq(chat, &owner, "old", seq))],
                )
                .await,
            );
            assert_eq!(rcode, ResponseCode::Refused);
            assert!(text.contains("seq not above 5"), "{text}");
        }
        // Withdraw (seq 6): the old record (seq 5) can never come back, also after a
        // restart that rewrote the zone file and compacted the journal.
        fx.publish(&fx.chat, vec![(owner.clone(), tombstone(chat, &owner, 6))])
            .await
            .unwrap();
        fx.tree.stop(2).await;
        fx.tree.restart(2).await;
        for seq in [5, 6] {
            let (rcode, text) = refusal(
                fx.publish(
                    &fx.chat,
                    vec![(owner.clone(), with_seq(chat, &owner, "old", seq))],
                )
                .await,
            );
            assert_eq!(rcode, ResponseCode::Refused, "{text}");
            assert!(text.contains("seq not above 6"), "{text}");
        }
        fx.publish(
            &fx.chat,
            vec![(owner.clone(), with_seq(chat, &owner, "back", 7))],
        )
        .await
        .unwrap();
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_is_served_and_the_resolver_reports_not_discoverable() {
    bounded(async {
        let fx = fixture(84, "").await;
        let alice = owner(ALICE);
        let resolver = fx.tree.resolver();
        assert!(matches!(
            resolver
                .lookup(&sii(ALICE), Some(Context::Any))
                .await
                .unwrap()
                .outcome,
            Outcome::Found(_)
        ));
        fx.publish(
            &fx.chat,
            vec![(alice.clone(), tombstone(&fx.keys.chat, &alice, 2))],
        )
        .await
        .unwrap();
        let got = served(fx.tree.addr(2), &alice).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].withdrawn);
        let fresh = fx.tree.resolver();
        assert!(matches!(
            fresh
                .lookup(&sii(ALICE), Some(Context::Any))
                .await
                .unwrap()
                .outcome,
            Outcome::NotDiscoverable(_)
        ));
        fx.tree.shutdown().await;
    })
    .await
}

/// An UPDATE for the carrier zone with `updates`, signed with `key` (or not).
fn raw_update(updates: Vec<HRecord>, key: Option<&TsigKey>) -> Vec<u8> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Update);
    m.add_query(Query::query(n(CARRIER).to_hickory(), RecordType::SOA));
    m.authorities = updates;
    let mut bytes = m.to_vec().unwrap();
    if let Some(k) = key {
        tsig::sign_request(&mut bytes, k, now()).unwrap();
    }
    bytes
}

fn ssi_rr(owner: &Name, ssi: &Ssi) -> HRecord {
    HRecord::from_rdata(
        owner.to_hickory(),
        60,
        HRData::Unknown {
            code: RecordType::from(TYPE_SSI),
            rdata: hickory_proto::rr::rdata::NULL::with(ssi.to_wire()),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_atomic_and_named_and_the_server_keeps_serving() {
    bounded(async {
        let fx = fixture(85, "").await;
        let addr = fx.tree.addr(2);
        let alice = owner(ALICE);
        let new = owner(NEW);
        let before = serial(addr).await;
        // One bad record in an UPDATE: nothing of it is applied.
        let mut bad = with_seq(&fx.keys.chat, &alice, "x", 9);
        bad.signature[0] ^= 1;
        let (rcode, text) = refusal(
            fx.publish(
                &fx.chat,
                vec![
                    (new.clone(), with_seq(&fx.keys.chat, &new, "ok", 1)),
                    (alice.clone(), bad),
                ],
            )
            .await,
        );
        assert_eq!(rcode, ResponseCode::Refused);
        assert!(text.contains(&alice.to_string()), "{text}");
        assert!(served(addr, &new).await.is_empty());
        assert_eq!(serial(addr).await, before);
        // RR deletions are refused: a withdrawal is a signed tombstone.
        let mut del = HRecord::update0(alice.to_hickory(), 0, RecordType::from(TYPE_SSI));
        del.dns_class = DNSClass::ANY;
        let m = Message::from_vec(&tcp_raw(addr, &raw_update(vec![del], Some(&fx.chat))).await)
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let ede = extended_error(&m).expect("an extended error");
        assert!(ede.1.contains("tombstone"), "{ede:?}");
        // No TSIG, an unknown key, a wrong MAC: NOTAUTH, over UDP and TCP.
        let good = ssi_rr(&new, &with_seq(&fx.keys.chat, &new, "ok", 1));
        let stranger = TsigKey::generate(n("chat-key."));
        for bytes in [
            raw_update(vec![good.clone()], None),
            raw_update(vec![good.clone()], Some(&TsigKey::generate(n("nobody.")))),
            raw_update(vec![good.clone()], Some(&stranger)),
        ] {
            let m = Message::from_vec(&tcp_raw(addr, &bytes).await).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
        }
        // Malformed: SSI RDATA that does not decode, a zone section of two questions.
        let junk = HRecord::from_rdata(
            new.to_hickory(),
            60,
            HRData::Unknown {
                code: RecordType::from(TYPE_SSI),
                rdata: hickory_proto::rr::rdata::NULL::with(vec![1, 2, 3]),
            },
        );
        let m = Message::from_vec(&tcp_raw(addr, &raw_update(vec![junk], Some(&fx.chat))).await)
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let mut two = Message::new(1, MessageType::Query, OpCode::Update);
        two.add_query(Query::query(n(CARRIER).to_hickory(), RecordType::SOA));
        two.add_query(Query::query(n(CARRIER).to_hickory(), RecordType::SOA));
        let mut bytes = two.to_vec().unwrap();
        tsig::sign_request(&mut bytes, &fx.chat, now()).unwrap();
        let m = Message::from_vec(&tcp_raw(addr, &bytes).await).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Another zone: NOTAUTH; a name outside the zone: NOTZONE.
        let outside = n("2.2.2.2.1.1.1.6.6.6.1.e164.mimi.arpa.");
        let m = Message::from_vec(
            &tcp_raw(
                addr,
                &raw_update(
                    vec![ssi_rr(&outside, &with_seq(&fx.keys.chat, &outside, "o", 1))],
                    Some(&fx.chat),
                ),
            )
            .await,
        )
        .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NotZone);
        // Still serving, and the good record goes in afterwards.
        assert_eq!(served(addr, &alice).await.len(), 1);
        fx.publish(
            &fx.chat,
            vec![(new.clone(), with_seq(&fx.keys.chat, &new, "ok", 1))],
        )
        .await
        .unwrap();
        assert_eq!(served(addr, &new).await.len(), 1);
        fx.tree.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_mapping_leaves_at_its_second_without_a_new_epoch() {
    bounded(async {
        let fx = fixture(86, PIR).await;
        let addr = fx.tree.addr(2);
        let new = owner(NEW);
        let epoch0 = epoch(addr).await;
        let mut short = with_seq(&fx.keys.chat, &new, "brief", 1);
        short.not_after = now() + 2;
        short.sign(&new, &fx.keys.chat.signing);
        fx.publish(&fx.chat, vec![(new.clone(), short.clone())])
            .await
            .unwrap();
        let serial1 = serial(addr).await;
        // Private lookups see the new mapping in the same epoch.
        let resolver = fx.tree.resolver();
        let found = resolver
            .lookup_private(&sii(NEW), Some(Context::Any))
            .await
            .unwrap();
        assert!(
            matches!(found.outcome, Outcome::Found(_)),
            "{:?}",
            found.outcome
        );
        assert_eq!(epoch(addr).await, epoch0);
        assert_eq!(served(addr, &new).await.len(), 1);
        // Valid through not_after; gone in the second after it.
        let wait = (short.not_after + 1) * 1000 + 300;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(wait.saturating_sub(now_ms))).await;
        assert!(served(addr, &new).await.is_empty());
        assert_eq!(serial(addr).await, serial1 + 1);
        assert_eq!(epoch(addr).await, epoch0);
        let fresh = fx.tree.resolver();
        let gone = fresh
            .lookup_private(&sii(NEW), Some(Context::Any))
            .await
            .unwrap();
        assert!(
            matches!(gone.outcome, Outcome::NotDiscoverable(_)),
            "{:?}",
            gone.outcome
        );
        fx.tree.shutdown().await;
    })
    .await
}

/// IXFR from `serial` over TCP: the answer's records.
async fn ixfr(addr: SocketAddr, serial: u32) -> Vec<HRecord> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(n(CARRIER).to_hickory(), RecordType::IXFR));
    let soa = hickory_proto::rr::rdata::SOA::new(
        n(CARRIER).to_hickory(),
        n(CARRIER).to_hickory(),
        serial,
        0,
        0,
        0,
        0,
    );
    m.authorities.push(HRecord::from_rdata(
        n(CARRIER).to_hickory(),
        0,
        HRData::SOA(soa),
    ));
    Message::from_vec(&tcp_raw(addr, &m.to_vec().unwrap()).await)
        .unwrap()
        .answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_after_a_hand_edit_is_exactly_that_diff_and_ixfr_serves_it() {
    bounded(async {
        let fx = fixture(87, "").await;
        let addr = fx.tree.addr(2);
        let s0 = serial(addr).await;
        let new = owner(NEW);
        // An update first, so the file on disk is behind the served version.
        fx.publish(
            &fx.chat,
            vec![(new.clone(), with_seq(&fx.keys.chat, &new, "upd", 3))],
        )
        .await
        .unwrap();
        // The operator adds a TXT record to the file by hand.
        let mut file = ZoneFile::load(&fx.zone_file()).unwrap();
        let note = Record {
            name: n(&format!("note.{CARRIER}")),
            ttl: 60,
            data: RData::Txt(vec![b"hand edit"[..].into()]),
            line: 0,
        };
        file.records.push(note);
        file.save(&fx.zone_file(), WriteStyle::Native).unwrap();
        let failures = fx.tree.server(2).reload().await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        let s2 = serial(addr).await;
        assert_eq!(s2, s0 + 2);
        // The update is still served (the edit did not revert it).
        assert_eq!(served(addr, &new).await.len(), 1);
        // IXFR from s0+1: exactly the TXT record added.
        let recs = ixfr(addr, s0 + 1).await;
        let body: Vec<String> = recs
            .iter()
            .filter(|r| r.record_type() != RecordType::SOA)
            .map(|r| format!("{} {}", r.name, r.record_type()))
            .collect();
        assert_eq!(body, vec![format!("note.{CARRIER} TXT")]);
        assert_eq!(
            recs.iter()
                .filter(|r| r.record_type() == RecordType::SOA)
                .count(),
            4
        );
        // From s0: two steps; from the current serial: just the SOA.
        let soas = ixfr(addr, s0)
            .await
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        assert_eq!(soas, 6);
        assert_eq!(ixfr(addr, s2).await.len(), 1);
        // A serial older than the history: the whole zone (AXFR shape).
        let all = ixfr(addr, s0.wrapping_sub(10)).await;
        assert!(all.iter().any(|r| r.record_type() == RecordType::NS));
        fx.tree.shutdown().await;
    })
    .await
}
