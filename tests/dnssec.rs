//! DNSSEC against validators this project did not write, and the validating resolver:
//! - an exported signed zone (`mimi zone export --dnssec`) is accepted by
//!   `ldns-verify-zone` and `kzonecheck --dnssec on`, and refused with one signature byte
//!   changed (so they really checked);
//! - a live signed DP: signatures, compact denial, DS from the parent, delv validating,
//!   signing at commit;
//! - the resolver validating from the apex's DS: keys from APKEY records, bogus answers
//!   through a tampering relay, and a key rollover under a stream of updates.

mod common;
mod external;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use external::have;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record as HRecord, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use mimi_discovery::dnssec::denial::parse_nsec;
use mimi_discovery::dnssec::key::parse_dnskey;
use mimi_discovery::dnssec::sign::verify_rrset;
use mimi_discovery::dnssec::{TYPE_DS, TYPE_NXNAME};
use mimi_discovery::dp::DpServer;
use mimi_discovery::publish::{publish, SignedMapping};
use mimi_discovery::record::{Context, TYPE_SSI};
use mimi_discovery::tsig::{KeyFileFormat, TsigKey};
use mimi_discovery::zone::{RData, Record, WriteStyle, ZoneFile};
use tokio::net::UdpSocket;

use mimi_discovery::dnssec::sign::RrsigFields;
use mimi_discovery::dnssec::{DnssecKey, FLAGS_CSK, TYPE_DNSKEY, TYPE_NSEC, TYPE_RRSIG};
use mimi_discovery::name::Name;

const CONFIG_EXTRA: &str = "";
const BLOCK: u8 = 80;
const RESOLVER_TIMEOUT: Duration = Duration::from_millis(500);
const RESOLVER_RETRIES: u32 = 0;

/// RFC 4034 section 3.2's time form, YYYYMMDDHHmmSS in UTC.
fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `mimi zone export --dnssec` (DNSKEY, an RRSIG on every set, a classic NSEC chain) of
/// the demo's e164 zone, with two delegations and a DS: ldns-verify-zone and kzonecheck
/// accept it, and refuse it with one signature byte changed (so they really checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldns_and_knot_accept_an_exported_signed_zone_and_refuse_a_changed_one() {
    let tools = ["ldns-verify-zone", "kzonecheck"];
    let present: Vec<&str> = tools.into_iter().filter(|t| have(t)).collect();
    if present.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = DnssecKey::generate(n(PARENT), FLAGS_CSK);
    key.save_new(&dir.path().join("e164.dnssec")).unwrap();
    let mut zone =
        ZoneFile::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/e164.zone"))
            .unwrap();
    let child = DnssecKey::generate(n("1.e164.mimi.arpa."), FLAGS_CSK);
    zone.records.push(Record {
        name: n("1.e164.mimi.arpa."),
        ttl: 3600,
        data: RData::Unknown {
            rtype: TYPE_DS,
            data: child.ds_rdata().into_boxed_slice(),
        },
        line: 0,
    });
    zone.save(&dir.path().join("e164.zone"), WriteStyle::Native)
        .unwrap();
    let (code, _, err) = mimi(
        dir.path(),
        &[
            "zone",
            "export",
            "--generic",
            "--dnssec",
            "e164.dnssec",
            "e164.zone",
            "--out",
            "good.zone",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let good = dir.path().join("good.zone");
    let text = std::fs::read_to_string(&good).unwrap();
    assert!(text.contains("TYPE47"), "an NSEC chain:\n{text}");
    // The last hex digit of the first RRSIG changed.
    let line = text.lines().find(|l| l.contains("TYPE46")).unwrap();
    let mut changed = line.to_string();
    let last = changed.pop().unwrap();
    changed.push(if last == '0' { '1' } else { '0' });
    let bad = dir.path().join("bad.zone");
    std::fs::write(&bad, text.replace(line, &changed)).unwrap();
    for tool in present {
        let args = |p: &std::path::Path| -> Vec<String> {
            match tool {
                "kzonecheck" => vec![
                    "-o".into(),
                    PARENT.into(),
                    "--dnssec".into(),
                    "on".into(),
                    p.display().to_string(),
                ],
                _ => vec![p.display().to_string()],
            }
        };
        let a = args(&good);
        let (ok, out) = run(tool, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            ok,
            "{tool} refused the exported signed zone:\n{out}\n{text}"
        );
        let a = args(&bad);
        let (ok, out) = run(tool, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!ok, "{tool} accepted a changed signature:\n{out}");
        eprintln!("{tool}: accepts the exported signed zone, refuses the changed signature");
    }
}

// ---------------------------------------------------------------------------------------
// A live signed DP: `mimi dp serve` with `dnssec_key` on two zones, parent and child.

const PARENT: &str = "e164.mimi.arpa.";
const CHILD: &str = "5.5.5.1.e164.mimi.arpa.";
/// A delegation the DP does not serve and has no DS for (an unsigned child).
const UNSIGNED_CUT: &str = "6.6.6.1.e164.mimi.arpa.";
const ALICE: &str = "+44 20 7946 0001";
const BOB: &str = "+1 555 111 2222";

struct Signed {
    _dir: tempfile::TempDir,
    server: DpServer,
    addr: SocketAddr,
    parent: DnssecKey,
    child: DnssecKey,
    /// Publishes talk.example's mappings by DNS UPDATE (`[[update]]`).
    tsig: TsigKey,
    keys: Keys,
}

async fn start_signed(t: u8) -> Signed {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let parent_key = DnssecKey::generate(n(PARENT), FLAGS_CSK);
    let child_key = DnssecKey::generate(n(CHILD), FLAGS_CSK);
    let ns = |zone: &str| (n(&format!("ns1.{zone}")), ip(t, 1));
    let mut parent = ZoneFile::new_zone(n(PARENT), &[ns(PARENT)], 3600, 1);
    parent.set_delegation(&n(CHILD), &[ns(CHILD)], 3600);
    parent.set_delegation(&n(UNSIGNED_CUT), &[ns(UNSIGNED_CUT)], 3600);
    parent.records.push(Record {
        name: n(CHILD),
        ttl: 3600,
        data: RData::Unknown {
            rtype: TYPE_DS,
            data: child_key.ds_rdata().into_boxed_slice(),
        },
        line: 0,
    });
    let alice = owner(ALICE);
    parent.put_ssi(
        alice.clone(),
        600,
        mapping(&keys.chat, &alice, "alice", Context::Any, 10),
    );
    let mut child = ZoneFile::new_zone(n(CHILD), &[ns(CHILD)], 3600, 1);
    let bob = owner(BOB);
    child.put_ssi(
        bob.clone(),
        600,
        mapping(&keys.talk, &bob, "bob", Context::Any, 10),
    );
    parent
        .save(&dir.path().join("parent.zone"), WriteStyle::Native)
        .unwrap();
    child
        .save(&dir.path().join("child.zone"), WriteStyle::Native)
        .unwrap();
    parent_key
        .save_new(&dir.path().join("parent.dnssec"))
        .unwrap();
    child_key
        .save_new(&dir.path().join("child.dnssec"))
        .unwrap();
    std::fs::write(dir.path().join("trust.toml"), keys.trust_toml()).unwrap();
    let tsig = TsigKey::generate(n("talk-key."));
    tsig.save_new(dir.path().join("talk.tsig"), KeyFileFormat::Bind)
        .unwrap();
    let port = std::net::UdpSocket::bind((ip(t, 1), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::new(ip(t, 1), port);
    let config = dir.path().join("dp.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{addr}\"]\ntrust = \"trust.toml\"\n\
             [[zone]]\norigin = \"{PARENT}\"\nfile = \"parent.zone\"\ndnssec_key = \"parent.dnssec\"\n\
             [[zone]]\norigin = \"{CHILD}\"\nfile = \"child.zone\"\ndnssec_key = \"child.dnssec\"\n\
             [[update]]\nprovider = \"talk.example.\"\ntsig = \"talk.tsig\"\n"
        ),
    )
    .unwrap();
    let server = DpServer::start(&config).await.unwrap();
    Signed {
        _dir: dir,
        server,
        addr,
        parent: parent_key,
        child: child_key,
        tsig,
        keys,
    }
}

/// One UDP question, with EDNS (1232 bytes), DO and CO as asked.
async fn ask(
    addr: SocketAddr,
    qname: &str,
    rtype: RecordType,
    dnssec: bool,
    compact: bool,
) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(hn(qname), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096).set_dnssec_ok(dnssec);
    if compact {
        edns.flags_mut().z |= 0x4000;
    }
    m.set_edns(edns);
    let sock = UdpSocket::bind((addr.ip(), 0)).await.unwrap();
    sock.send_to(&m.to_bytes().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

fn rdata_of(r: &HRecord) -> Vec<u8> {
    mimi_discovery::zone::update::canonical_rdata(r).unwrap()
}

fn typed(records: &[HRecord], rtype: u16) -> Vec<&HRecord> {
    records
        .iter()
        .filter(|r| u16::from(r.record_type()) == rtype)
        .collect()
}

/// Checks that `section` holds the `rtype` set at `owner` and an RRSIG over it by `key`.
fn assert_signed(section: &[HRecord], owner: &str, rtype: u16, key: &DnssecKey) {
    let set: Vec<&HRecord> = typed(section, rtype)
        .into_iter()
        .filter(|r| r.name == hn(owner))
        .collect();
    assert!(!set.is_empty(), "no type {rtype} at {owner}: {section:?}");
    let rrsig = typed(section, TYPE_RRSIG)
        .into_iter()
        .filter(|r| r.name == hn(owner))
        .map(|r| RrsigFields::parse(&rdata_of(r)).unwrap())
        .find(|f| f.type_covered == rtype)
        .unwrap_or_else(|| panic!("no RRSIG over type {rtype} at {owner}: {section:?}"));
    let rdatas: Vec<Vec<u8>> = set.iter().map(|r| rdata_of(r)).collect();
    let refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    verify_rrset(
        &key.public_key(),
        key.key_tag(),
        &n(owner),
        rtype,
        &refs,
        &rrsig,
        now,
    )
    .unwrap_or_else(|e| panic!("{owner} type {rtype}: {e}"));
    assert_eq!(rrsig.signer, key.zone);
}

/// The compact NSEC in `section`: owned by `qname`, next `\000.qname`, its types.
fn compact_types(section: &[HRecord], qname: &str, key: &DnssecKey) -> Vec<u16> {
    let nsecs = typed(section, TYPE_NSEC);
    assert_eq!(nsecs.len(), 1, "one NSEC: {section:?}");
    assert_eq!(
        nsecs[0].name,
        hn(qname),
        "the NSEC names only the name asked"
    );
    let (next, types) = parse_nsec(&rdata_of(nsecs[0])).unwrap();
    assert_eq!(next.to_string(), format!("\\000.{qname}"));
    assert_signed(section, qname, TYPE_NSEC, key);
    types
}

/// delv's anchors file (in `dir`, made if missing) naming `key`'s DS for the parent zone.
fn anchors_file(dir: &std::path::Path, key: &DnssecKey) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("anchors.conf");
    let ds = key.ds_rdata();
    std::fs::write(
        &path,
        format!(
            "trust-anchors {{\n  {PARENT} static-ds {} 15 2 \"{}\";\n}};\n",
            key.key_tag(),
            hex::encode(&ds[4..])
        ),
    )
    .unwrap();
    path
}

/// `delv` at `addr` with the anchors file, for `qname` and `qtype`: (success, output).
async fn delv(
    addr: SocketAddr,
    anchors: &std::path::Path,
    qname: String,
    qtype: &str,
) -> (bool, String) {
    let (anchors, qtype) = (anchors.to_path_buf(), qtype.to_string());
    tokio::task::spawn_blocking(move || {
        run(
            "delv",
            &[
                &format!("@{}", addr.ip()),
                "-p",
                &addr.port().to_string(),
                "-a",
                &anchors.display().to_string(),
                &format!("+root={PARENT}"),
                &qname,
                &qtype,
            ],
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_zone_answers_with_signatures_and_compact_denial() {
    bounded(async {
        let s = start_signed(1).await;
        let (p, c) = (&s.parent, &s.child);
        let alice = owner(ALICE).to_string();
        let bob = owner(BOB).to_string();
        let ssi = RecordType::Unknown(TYPE_SSI);

        // Positive answers carry the RRSIG only when DO is set.
        let r = ask(s.addr, &alice, ssi, true, false).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_signed(&r.answers, &alice, TYPE_SSI, p);
        assert!(r.edns.as_ref().unwrap().flags().dnssec_ok, "DO is echoed");
        let plain = ask(s.addr, &alice, ssi, false, false).await;
        assert!(typed(&plain.answers, TYPE_RRSIG).is_empty());
        assert_eq!(plain.answers.len(), 1);

        // The apex DNSKEY set is self-signed; the child's is signed by the child.
        let r = ask(s.addr, PARENT, RecordType::DNSKEY, true, false).await;
        assert_signed(&r.answers, PARENT, TYPE_DNSKEY, p);
        let (flags, public) = parse_dnskey(&rdata_of(typed(&r.answers, TYPE_DNSKEY)[0])).unwrap();
        assert_eq!((flags, public), (FLAGS_CSK, p.public_key()));
        let r = ask(s.addr, &bob, ssi, true, false).await;
        assert_signed(&r.answers, &bob, TYPE_SSI, c);

        // The child's DS comes from the parent, signed by the parent.
        let r = ask(s.addr, CHILD, RecordType::DS, true, false).await;
        assert!(r.metadata.authoritative);
        assert_signed(&r.answers, CHILD, TYPE_DS, p);
        assert_eq!(rdata_of(typed(&r.answers, TYPE_DS)[0]), c.ds_rdata());

        // A name that does not exist: NOERROR with SOA and one NSEC for the name
        // (RFC 9824), NXDOMAIN only when CO was set.
        let nx = format!("9.{alice}");
        let r = ask(s.addr, &nx, ssi, true, false).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_signed(&r.authorities, PARENT, 6, p);
        assert_eq!(
            compact_types(&r.authorities, &nx, p),
            vec![TYPE_RRSIG, TYPE_NSEC, TYPE_NXNAME]
        );
        let r = ask(s.addr, &nx, ssi, true, true).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_ne!(
            r.edns.as_ref().unwrap().flags().z & 0x4000,
            0,
            "CO is echoed"
        );
        let r = ask(s.addr, &nx, ssi, false, false).await;
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::NXDomain,
            "without DO, as ever"
        );

        // No data at a name that exists; an empty non-terminal.
        let r = ask(s.addr, &alice, RecordType::TXT, true, false).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            compact_types(&r.authorities, &alice, p),
            vec![TYPE_RRSIG, TYPE_NSEC, TYPE_SSI]
        );
        // Empty non-terminals right above a name and near the apex: they exist, so no
        // NXNAME.
        let near = format!("4.{PARENT}");
        for ent in [alice.split_once('.').unwrap().1, near.as_str()] {
            let r = ask(s.addr, ent, ssi, true, false).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(
                compact_types(&r.authorities, ent, p),
                vec![TYPE_RRSIG, TYPE_NSEC],
                "{ent}"
            );
        }

        // A referral to an unsigned child proves there is no DS with an NSEC at the cut.
        let below = format!("1.2.{UNSIGNED_CUT}");
        let r = ask(s.addr, &below, ssi, true, false).await;
        assert!(!r.metadata.authoritative);
        assert_eq!(typed(&r.authorities, 2).len(), 1, "NS: {r:?}");
        assert_eq!(
            compact_types(&r.authorities, UNSIGNED_CUT, p),
            vec![2, TYPE_RRSIG, TYPE_NSEC]
        );

        // NXNAME is a meta-type: FORMERR.
        let r = ask(
            s.addr,
            &alice,
            RecordType::Unknown(TYPE_NXNAME),
            true,
            false,
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        s.server.shutdown().await;
    })
    .await;
}

/// delv (BIND's validator) with the parent's DS as the only trust anchor validates a
/// mapping in the parent, one in the child through the DS chain, and a compact denial;
/// with another key's DS as the anchor it validates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_the_signed_tree_from_the_parents_ds() {
    if !have("delv") {
        return;
    }
    bounded(async {
        let s = start_signed(2).await;
        let dir = tempfile::tempdir().unwrap();
        let good = anchors_file(dir.path(), &s.parent);
        let other = DnssecKey::generate(n(PARENT), FLAGS_CSK);
        let wrong = anchors_file(&dir.path().join("w"), &other);
        let alice = owner(ALICE).to_string();
        let bob = owner(BOB).to_string();
        for (qname, qtype, want) in [
            (alice.clone(), "TYPE65280", "; fully validated"),
            (bob.clone(), "TYPE65280", "; fully validated"),
            (PARENT.to_string(), "DNSKEY", "; fully validated"),
            (
                format!("9.{alice}"),
                "TYPE65280",
                "; negative response, fully validated",
            ),
            (alice.clone(), "TXT", "; negative response, fully validated"),
        ] {
            let (_, out) = delv(s.addr, &good, qname.clone(), qtype).await;
            assert!(out.contains(want), "delv {qname} {qtype}:\n{out}");
            eprintln!("delv {qname} {qtype}: {want}");
        }
        let (_, out) = delv(s.addr, &wrong, alice.clone(), "TYPE65280").await;
        assert!(
            !out.contains("fully validated"),
            "a wrong anchor validated:\n{out}"
        );
        s.server.shutdown().await;
    })
    .await;
}

/// A mapping published by DNS UPDATE into a signed zone is served signed at once: its set
/// and the new SOA verify with the zone key, the untouched mapping keeps verifying, and
/// delv validates the new one through the DS chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_mapping_is_signed_at_commit() {
    bounded(async {
        let s = start_signed(3).await;
        let new = owner("+1 555 111 4444");
        let bob = owner(BOB).to_string();
        let ssi = RecordType::Unknown(TYPE_SSI);
        let before = ask(s.addr, CHILD, RecordType::SOA, true, false).await;
        publish(
            s.addr,
            &n(CHILD),
            &s.tsig,
            &[SignedMapping {
                owner: new.clone(),
                ttl: 60,
                ssi: mapping(&s.keys.talk, &new, "carol", Context::Any, 10),
            }],
        )
        .await
        .unwrap();
        let r = ask(s.addr, &new.to_string(), ssi, true, false).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_signed(&r.answers, &new.to_string(), TYPE_SSI, &s.child);
        let after = ask(s.addr, CHILD, RecordType::SOA, true, false).await;
        assert_signed(&after.answers, CHILD, 6, &s.child);
        assert_ne!(
            rdata_of(typed(&before.answers, 6)[0]),
            rdata_of(typed(&after.answers, 6)[0]),
            "a new serial"
        );
        let r = ask(s.addr, &bob, ssi, true, false).await;
        assert_signed(&r.answers, &bob, TYPE_SSI, &s.child);
        if have("delv") {
            let dir = tempfile::tempdir().unwrap();
            let anchors = anchors_file(dir.path(), &s.parent);
            let (_, out) = delv(s.addr, &anchors, new.to_string(), "TYPE65280").await;
            assert!(out.contains("; fully validated"), "{out}");
        }
        s.server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The validating resolver

/// What a relay in front of a DP does to its replies.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tamper {
    Pass,
    /// Drops the RRSIGs over SSI records.
    StripSsiRrsig,
    /// Changes one byte of each SSI record.
    ChangeSsi,
    /// Drops the DS set (and its RRSIGs) from referrals.
    StripDs,
    /// Turns an answer with SSI records into an NXDOMAIN without proof.
    Deny,
}

impl Tamper {
    const ALL: [Tamper; 5] = [
        Tamper::Pass,
        Tamper::StripSsiRrsig,
        Tamper::ChangeSsi,
        Tamper::StripDs,
        Tamper::Deny,
    ];
}

/// A UDP relay that applies the shared `mode` to every reply it passes on.
fn relay(
    listen: SocketAddr,
    upstream: SocketAddr,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
) {
    let sock = std::sync::Arc::new(std::net::UdpSocket::bind(listen).unwrap());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            let up = std::net::UdpSocket::bind((upstream.ip(), 0)).unwrap();
            up.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            up.send_to(&buf[..len], upstream).unwrap();
            let mut reply = vec![0u8; 65535];
            let Ok(n) = up.recv(&mut reply) else { continue };
            let mode = Tamper::ALL[usize::from(mode.load(std::sync::atomic::Ordering::Relaxed))];
            let out = tamper(&reply[..n], mode);
            let _ = sock.send_to(&out, from);
        }
    });
}

fn tamper(reply: &[u8], mode: Tamper) -> Vec<u8> {
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::rr::RData as HRData;
    let mut m = Message::from_vec(reply).unwrap();
    let covers = |r: &HRecord, t: u16| {
        u16::from(r.record_type()) == TYPE_RRSIG && rdata_of(r)[..2] == t.to_be_bytes()
    };
    let is_ssi = |r: &HRecord| u16::from(r.record_type()) == TYPE_SSI;
    match mode {
        Tamper::StripSsiRrsig => m.answers.retain(|r| !covers(r, TYPE_SSI)),
        Tamper::ChangeSsi => {
            for r in m.answers.iter_mut().filter(|r| is_ssi(r)) {
                let mut bytes = rdata_of(r);
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                r.data = HRData::Unknown {
                    code: RecordType::from(TYPE_SSI),
                    rdata: NULL::with(bytes),
                };
            }
        }
        Tamper::StripDs => m
            .authorities
            .retain(|r| u16::from(r.record_type()) != TYPE_DS && !covers(r, TYPE_DS)),
        Tamper::Deny if m.answers.iter().any(is_ssi) => {
            m.answers.clear();
            m.metadata.response_code = ResponseCode::NXDomain;
        }
        Tamper::Deny | Tamper::Pass => {}
    }
    m.to_bytes().unwrap()
}

struct SignedTree {
    tree: Tree,
    root: ZoneFile,
    root_key: DnssecKey,
    keys: Keys,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    _key_dir: tempfile::TempDir,
}

impl SignedTree {
    fn set(&self, t: Tamper) {
        self.mode
            .store(t as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// A resolver anchored on `anchor` (the apex DS, or None: no validation) with an empty
    /// trust file; its root is the relay in front of the apex's DP.
    fn resolver(&self, anchor: Option<Vec<u8>>) -> mimi_discovery::resolver::Resolver {
        let mut c = self.tree.config();
        c.roots = vec![ip(self.tree.t, 5)];
        c.dnssec = anchor.map(|ds| mimi_discovery::resolver::secure::TrustAnchor {
            zone: apex(),
            ds: vec![ds],
        });
        mimi_discovery::resolver::Resolver::new(c, mimi_discovery::record::TrustStore::new())
    }
}

const EMAIL: &str = "hugh@example.com";

/// The apex (DP .1, signed, with chat.example.'s APKEY and e164's DS) delegating e164 to
/// .2 (signed, BOB's mapping by chat) and email to .4 (unsigned, EMAIL's mapping by chat).
/// Relays: .5 in front of the apex, .3 in front of e164 (the apex's glue for it).
async fn signed_tree(t: u8) -> SignedTree {
    let keys = Keys::new();
    let key_dir = tempfile::tempdir().unwrap();
    let block = "e164.mimi.arpa.";
    let (mut root, zone) = root_and_block(t, block, &keys, BOB, 600);
    root.set_delegation(&n(block), &[(n(&format!("ns1.{block}")), ip(t, 3))], 3600);
    root.set_delegation(
        &n("email.mimi.arpa."),
        &[(n("ns1.email.mimi.arpa."), ip(t, 4))],
        3600,
    );
    let root_key = DnssecKey::generate(apex(), FLAGS_CSK);
    let block_key = DnssecKey::generate(n(block), FLAGS_CSK);
    root.records.push(Record {
        name: n(block),
        ttl: 3600,
        data: RData::Unknown {
            rtype: TYPE_DS,
            data: block_key.ds_rdata().into_boxed_slice(),
        },
        line: 0,
    });
    let now = mimi_discovery::sys::unix_now();
    root.records.push(Record {
        name: mimi_discovery::resolver::apkey_owner(&keys.chat.provider, &apex()).unwrap(),
        ttl: 60,
        data: RData::ApKey(Box::new(mimi_discovery::record::ApKey::new(
            &keys.chat.verifying_key(),
            now - 86400,
            now + 86400 * 365,
        ))),
        line: 0,
    });
    let email_zone = n("email.mimi.arpa.");
    let mut email = ZoneFile::new_zone(
        email_zone.clone(),
        &[(n("ns1.email.mimi.arpa."), ip(t, 4))],
        3600,
        1,
    );
    let hugh = sii(EMAIL).owner_name(&apex()).unwrap();
    email.put_ssi(
        hugh.clone(),
        600,
        mapping(&keys.chat, &hugh, "hugh", Context::Any, 10),
    );
    let mut specs = vec![
        spec(root.clone(), &[1]),
        spec(zone, &[2]),
        spec(email, &[4]),
    ];
    for (s, key, file) in [
        (0, &root_key, "root.dnssec"),
        (1, &block_key, "e164.dnssec"),
    ] {
        let path = key_dir.path().join(file);
        key.save_new(&path).unwrap();
        specs[s].config_extra = format!("dnssec_key = {:?}\n", path.display().to_string());
    }
    // The DPs check what they serve against the trust file; the resolvers have none.
    let tree = Tree::start(t, &keys.trust_toml(), specs).await;
    let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(Tamper::Pass as u8));
    relay(
        SocketAddr::new(ip(t, 5), tree.port),
        tree.addr(1),
        mode.clone(),
    );
    relay(
        SocketAddr::new(ip(t, 3), tree.port),
        tree.addr(2),
        mode.clone(),
    );
    SignedTree {
        tree,
        root,
        root_key,
        keys,
        mode,
        _key_dir: key_dir,
    }
}

fn found(r: &mimi_discovery::resolver::LookupResult) -> Vec<String> {
    match &r.outcome {
        mimi_discovery::resolver::Outcome::Found(m) => {
            m.iter().map(|m| m.ssi.uri.clone()).collect()
        }
        other => panic!("not found: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validating_resolver_takes_provider_keys_from_the_tree_and_drops_revoked_ones() {
    use mimi_discovery::resolver::{NotFound, Outcome, ResolveError};
    bounded(async {
        let s = signed_tree(4).await;
        let anchor = Some(s.root_key.ds_rdata());
        let r = s.resolver(anchor.clone());
        // The trust file is empty: chat.example.'s key comes from its APKEY record.
        let bob = r.lookup(&sii(BOB), None).await.unwrap();
        assert_eq!(found(&bob), vec![uri(&s.keys.chat, "alice")]);
        // Without validation the tree vouches for nothing.
        let plain = s.resolver(None).lookup(&sii(BOB), None).await.unwrap_err();
        assert!(matches!(plain, ResolveError::AllRejected { .. }), "{plain}");
        assert!(plain.to_string().contains("untrusted provider"), "{plain}");
        // A compact denial and a NODATA (the zone's apex has no SSI) validate.
        let absent = r.lookup(&sii("+1 555 111 0000"), None).await.unwrap();
        assert!(
            matches!(
                absent.outcome,
                Outcome::NotDiscoverable(NotFound::NoSuchName)
            ),
            "{:?}",
            absent.outcome
        );
        let nodata = r.lookup_name(&n("e164.mimi.arpa."), None).await.unwrap();
        assert!(
            matches!(
                nodata.outcome,
                Outcome::NotDiscoverable(NotFound::NoMappings)
            ),
            "{:?}",
            nodata.outcome
        );
        // The email zone is unsigned (its referral proves it has no DS): its answer is
        // used, but APKEY keys vouch only for validated answers, so the empty trust file
        // leaves the mapping unaccepted.
        let e = r.lookup(&sii(EMAIL), None).await.unwrap_err();
        assert!(e.to_string().contains("untrusted provider"), "{e}");
        // Anchored on another key, nothing validates, and the error names the step.
        let other = DnssecKey::generate(apex(), FLAGS_CSK);
        let e = s
            .resolver(Some(other.ds_rdata()))
            .lookup(&sii(BOB), None)
            .await
            .unwrap_err();
        assert!(matches!(e, ResolveError::Bogus { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("no DNSKEY of mimi.arpa. matches its DS set"),
            "{e}"
        );
        // The APKEY is removed from the apex: once the cache is flushed, chat.example.'s
        // mappings are no longer accepted.
        let mut root = s.root.clone();
        root.records
            .retain(|rec| !matches!(rec.data, RData::ApKey(_)));
        root.save(&s.tree.files[0], WriteStyle::Native).unwrap();
        s.tree.server(1).reload().await.unwrap();
        let cached = r.lookup(&sii(BOB), None).await.unwrap();
        assert!(cached.from_cache);
        r.flush();
        let e = r.lookup(&sii(BOB), None).await.unwrap_err();
        assert!(
            e.to_string().contains("untrusted provider chat.example."),
            "{e}"
        );
        s.tree.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_answers_are_errors_naming_the_failing_step() {
    use mimi_discovery::resolver::ResolveError;
    bounded(async {
        let s = signed_tree(5).await;
        let r = s.resolver(Some(s.root_key.ds_rdata()));
        assert_eq!(found(&r.lookup(&sii(BOB), None).await.unwrap()).len(), 1);
        for (mode, step) in [
            (Tamper::StripSsiRrsig, "has no RRSIG by e164.mimi.arpa."),
            (Tamper::ChangeSsi, "does not verify"),
            (Tamper::StripDs, "neither a signed DS set nor a signed NSEC"),
            (Tamper::Deny, "no NSEC owned by the name or covering it"),
        ] {
            r.flush();
            s.set(mode);
            let e = r.lookup(&sii(BOB), None).await.unwrap_err();
            assert!(matches!(e, ResolveError::Bogus { .. }), "{e}");
            assert!(e.to_string().contains(step), "{step}: {e}");
        }
        // `mimi resolver serve` answers a bogus lookup SERVFAIL with EDE 6, DNSSEC Bogus.
        let r = std::sync::Arc::new(r);
        let (mut listener, bound) =
            mimi_discovery::resolver::server::listen(r.clone(), &[SocketAddr::new(ip(5, 53), 0)])
                .await
                .unwrap();
        let reply = ask(
            bound[0],
            &owner(BOB).to_string(),
            RecordType::Unknown(TYPE_SSI),
            false,
            false,
        )
        .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        let (code, text) = mimi_discovery::ede::of_reply(&reply).expect("an extended error");
        assert_eq!(code, 6, "{text}");
        assert!(text.contains("bogus"), "{text}");
        s.set(Tamper::Pass);
        r.flush();
        let reply = ask(
            bound[0],
            &owner(BOB).to_string(),
            RecordType::Unknown(TYPE_SSI),
            false,
            false,
        )
        .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        let _ = listener.shutdown_gracefully().await;
        s.tree.shutdown().await;
    })
    .await;
}

/// `mimi key dnssec rollover`'s steps, each after the TTLs it names (one second here), on
/// e164.mimi.arpa. while chat.example publishes a mapping every 50 ms: lookups through a
/// validating resolver that keeps its cache, and through fresh ones, of a standing mapping
/// and of the newest published, all validate from the apex's DS at every moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollover_under_a_stream_of_updates_keeps_every_lookup_valid() {
    use mimi_discovery::resolver::{Outcome, Resolver};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};
    bounded(async {
        let t = 6;
        let ttl = 1;
        let keys = Keys::new();
        let dir = tempfile::tempdir().unwrap();
        let block = n("e164.mimi.arpa.");
        let ns_block = n("ns1.e164.mimi.arpa.");
        let mut root = ZoneFile::new_zone(apex(), &[(n("ns1.mimi.arpa."), ip(t, 1))], ttl, 1);
        root.set_delegation(&block, &[(ns_block.clone(), ip(t, 2))], ttl);
        let mut zone = ZoneFile::new_zone(block.clone(), &[(ns_block, ip(t, 2))], ttl, 1);
        let bob = owner(BOB);
        zone.put_ssi(
            bob.clone(),
            ttl,
            mapping(&keys.chat, &bob, "bob", Context::Any, 10),
        );
        let now = mimi_discovery::sys::unix_now();
        root.records.push(Record {
            name: mimi_discovery::resolver::apkey_owner(&keys.chat.provider, &apex()).unwrap(),
            ttl,
            data: RData::ApKey(Box::new(mimi_discovery::record::ApKey::new(
                &keys.chat.verifying_key(),
                now - 86400,
                now + 86400,
            ))),
            line: 0,
        });
        let ds = |k: &DnssecKey| Record {
            name: block.clone(),
            ttl,
            data: RData::Unknown {
                rtype: TYPE_DS,
                data: k.ds_rdata().into_boxed_slice(),
            },
            line: 0,
        };
        let path = |f: &str| dir.path().join(f).display().to_string();
        let root_key = DnssecKey::generate(apex(), FLAGS_CSK);
        root_key
            .save_new(std::path::Path::new(&path("root.dnssec")))
            .unwrap();
        let old = DnssecKey::generate(block.clone(), FLAGS_CSK);
        old.save_new(std::path::Path::new(&path("old.dnssec")))
            .unwrap();
        let (code, _, err) = mimi(
            dir.path(),
            &[
                "key",
                "dnssec",
                "rollover",
                &path("old.dnssec"),
                "--out",
                &path("new.dnssec"),
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let new = DnssecKey::load(std::path::Path::new(&path("new.dnssec"))).unwrap();
        assert_eq!((new.zone.clone(), new.flags), (block.clone(), old.flags));
        root.records.push(ds(&old));
        let tsig = TsigKey::generate(n("chat-key."));
        tsig.save_new(dir.path().join("chat.tsig"), KeyFileFormat::Bind)
            .unwrap();
        let mut specs = vec![spec(root.clone(), &[1]), spec(zone, &[2])];
        // The apex's operator changes DS records by DNS UPDATE (`mimi zone ds`).
        let op = TsigKey::generate(n("apex-operator."));
        op.save_new(dir.path().join("op.tsig"), KeyFileFormat::Bind)
            .unwrap();
        specs[0].config_extra = format!(
            "dnssec_key = {:?}\n[[operator]]\ntsig = {:?}\n[access]\nanonymous_lookups_per_day = \"unlimited\"\n",
            path("root.dnssec"),
            path("op.tsig")
        );
        // Thousands of lookups from one address: past the anonymous quota.
        let update = format!(
            "[[update]]\nprovider = \"chat.example.\"\ntsig = {:?}\n[access]\nanonymous_lookups_per_day = \"unlimited\"\n",
            path("chat.tsig")
        );
        let keys_at = |key: &str, publish: &[&str]| {
            let publish: Vec<String> = publish.iter().map(|p| format!("{:?}", path(p))).collect();
            format!(
                "dnssec_key = {:?}\ndnssec_publish = [{}]\n{update}",
                path(key),
                publish.join(", ")
            )
        };
        specs[1].config_extra = keys_at("old.dnssec", &[]);
        let tree = Tree::start(t, &keys.trust_toml(), specs).await;

        let resolver = |tree: &Tree| {
            let mut c = tree.config();
            c.dnssec = Some(mimi_discovery::resolver::secure::TrustAnchor {
                zone: apex(),
                ds: vec![root_key.ds_rdata()],
            });
            Resolver::new(c, mimi_discovery::record::TrustStore::new())
        };
        let stop = Arc::new(AtomicBool::new(false));
        let newest: Arc<Mutex<Option<Name>>> = Arc::default();
        let lookups = Arc::new(AtomicU32::new(0));
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        // The stream of updates.
        let updater = {
            let (stop, newest, addr) = (stop.clone(), newest.clone(), tree.addr(2));
            let (chat, tsig, block) = (
                mimi_discovery::record::ProviderKey::from_toml_str(&keys.chat.to_toml(), "chat")
                    .unwrap(),
                tsig.clone(),
                block.clone(),
            );
            tokio::spawn(async move {
                let mut published = 0u32;
                while !stop.load(Relaxed) {
                    let o = owner(&format!("+1 555 200 {:04}", published));
                    publish(
                        addr,
                        &block,
                        &tsig,
                        &[SignedMapping {
                            owner: o.clone(),
                            ttl: 1,
                            ssi: mapping(&chat, &o, "new", Context::Any, 10),
                        }],
                    )
                    .await
                    .expect("an update during the rollover");
                    *newest.lock().unwrap() = Some(o);
                    published += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                published
            })
        };
        // The lookups: one resolver keeping its cache, and a fresh one each time.
        let looker = {
            let kept = resolver(&tree);
            let fresh = tree.config();
            let bob = bob.clone();
            let (stop, newest, lookups, failures, anchor) = (
                stop.clone(),
                newest.clone(),
                lookups.clone(),
                failures.clone(),
                root_key.ds_rdata(),
            );
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let mut c = fresh.clone();
                    c.dnssec = Some(mimi_discovery::resolver::secure::TrustAnchor {
                        zone: apex(),
                        ds: vec![anchor.clone()],
                    });
                    let once = Resolver::new(c, mimi_discovery::record::TrustStore::new());
                    let latest = newest.lock().unwrap().clone();
                    let mut asks = vec![(&kept, bob.clone()), (&once, bob.clone())];
                    if let Some(o) = latest {
                        asks.push((&kept, o.clone()));
                        asks.push((&once, o));
                    }
                    for (r, o) in asks {
                        lookups.fetch_add(1, Relaxed);
                        match r.lookup_name(&o, None).await {
                            Ok(res) if matches!(res.outcome, Outcome::Found(_)) => {}
                            Ok(res) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{o}: {:?}", res.outcome)),
                            Err(e) => failures.lock().unwrap().push(format!("{o}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        // The steps, each after the TTLs (1 s) with a margin.
        let settle = || tokio::time::sleep(Duration::from_millis(2500));
        let dp_config = tree.config_file(2);
        let set_keys = |extra: String| {
            let text = std::fs::read_to_string(&dp_config).unwrap();
            let at = text.find("dnssec_key").unwrap();
            std::fs::write(&dp_config, format!("{}{extra}", &text[..at])).unwrap();
        };
        // The DS set changes through the apex's write path: the operator's UPDATE.
        let ds_line = DnssecKey::ds_line;
        let zone_ds = |args: Vec<String>| {
            let mut all: Vec<String> = [
                "zone", "ds", "--dp", &tree.addr(1).to_string(), "--zone", "mimi.arpa.", "--tsig",
                &path("op.tsig"), "--ttl", "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            all.extend(args);
            let dir = dir.path().to_path_buf();
            async move {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                let (code, out, err) = mimi(&dir, &args).await;
                assert_eq!(code, 0, "{out}{err}");
            }
        };
        settle().await;
        // 1. Publish the next key.
        set_keys(keys_at("old.dnssec", &["new.dnssec"]));
        assert!(tree.server(2).reload().await.unwrap().is_empty());
        let r = ask(
            tree.addr(2),
            "e164.mimi.arpa.",
            RecordType::DNSKEY,
            true,
            false,
        )
        .await;
        assert_eq!(typed(&r.answers, TYPE_DNSKEY).len(), 2);
        assert_signed(&r.answers, "e164.mimi.arpa.", TYPE_DNSKEY, &old);
        settle().await;
        // 2. Both DS at the parent.
        zone_ds(vec!["--add".into(), ds_line(&new)]).await;
        let r = ask(tree.addr(1), "e164.mimi.arpa.", RecordType::DS, true, false).await;
        assert_eq!(typed(&r.answers, TYPE_DS).len(), 2);
        assert_signed(&r.answers, "e164.mimi.arpa.", TYPE_DS, &root_key);
        settle().await;
        // 3. Sign with the next key.
        set_keys(keys_at("new.dnssec", &["old.dnssec"]));
        assert!(tree.server(2).reload().await.unwrap().is_empty());
        let r = ask(
            tree.addr(2),
            &bob.to_string(),
            RecordType::Unknown(TYPE_SSI),
            true,
            false,
        )
        .await;
        assert_signed(&r.answers, &bob.to_string(), TYPE_SSI, &new);
        settle().await;
        // 4. The old DS goes.
        zone_ds(vec!["--remove".into(), ds_line(&old)]).await;
        let r = ask(tree.addr(1), "e164.mimi.arpa.", RecordType::DS, true, false).await;
        assert_eq!(rdata_of(typed(&r.answers, TYPE_DS)[0]), new.ds_rdata());
        assert_signed(&r.answers, "e164.mimi.arpa.", TYPE_DS, &root_key);
        // A DS only belongs at a delegation; removing one that is not there is refused.
        let (code, _, err) = mimi(
            dir.path(),
            &["zone", "ds", "--dp", &tree.addr(1).to_string(), "--zone", "mimi.arpa.", "--tsig", &path("op.tsig"),
              "--add", &ds_line(&DnssecKey::generate(n("x.mimi.arpa."), FLAGS_CSK))],
        )
        .await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("not delegated"), "{err}");
        let (code, _, err) = mimi(
            dir.path(),
            &["zone", "ds", "--dp", &tree.addr(1).to_string(), "--zone", "mimi.arpa.", "--tsig", &path("op.tsig"),
              "--remove", &ds_line(&old)],
        )
        .await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("no such DS"), "{err}");
        settle().await;
        // 5. The old key goes.
        set_keys(keys_at("new.dnssec", &[]));
        assert!(tree.server(2).reload().await.unwrap().is_empty());
        let r = ask(
            tree.addr(2),
            "e164.mimi.arpa.",
            RecordType::DNSKEY,
            true,
            false,
        )
        .await;
        assert_eq!(typed(&r.answers, TYPE_DNSKEY).len(), 1);
        assert_signed(&r.answers, "e164.mimi.arpa.", TYPE_DNSKEY, &new);
        settle().await;
        stop.store(true, Relaxed);
        let published = updater.await.unwrap();
        looker.await.unwrap();
        let failures = failures.lock().unwrap().clone();
        let lookups = lookups.load(Relaxed);
        eprintln!(
            "rollover: {published} updates, {lookups} lookups, {} failed",
            failures.len()
        );
        assert!(
            published > 50 && lookups > 100,
            "{published} updates, {lookups} lookups"
        );
        assert!(
            failures.is_empty(),
            "{} of {lookups} lookups failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        tree.shutdown().await;
    })
    .await;
}
