//! The DNSSEC primitives (`mimi_discovery::dnssec`) against validators this project did not
//! write: a small zone of the tree's record types, every RRset signed with `sign_rrset`,
//! the apex DNSKEY from `DnssecKey`, is accepted by `ldns-verify-zone` and by
//! `kzonecheck --dnssec on`; the same zone with one signature byte changed is refused by
//! both (so they really checked). The zone carries a classic NSEC chain only because both
//! tools demand one; the DP serves compact denial instead (docs/dnssec.md).

use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mimi_discovery::dnssec::denial::type_bitmap;
use mimi_discovery::dnssec::sign::{sign_rrset, RrsigFields, SignatureWindow};
use mimi_discovery::dnssec::{DnssecKey, FLAGS_CSK, TYPE_DNSKEY, TYPE_NSEC, TYPE_RRSIG};
use mimi_discovery::name::Name;

/// True when `tool` runs; otherwise a loud SKIP (a failure under CI, which installs it).
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing under CI, which installs it"
        );
        eprintln!("SKIP: {tool} is not installed; this interop check did not run");
    }
    ok
}

fn name(s: &str) -> Name {
    Name::parse(s, None).unwrap()
}

/// RFC 4034 section 3.2's time form, YYYYMMDDHHmmSS in UTC.
fn stamp(t: u32) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(i64::from(t)).unwrap();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

fn type_text(t: u16) -> String {
    match t {
        2 => "NS".into(),
        6 => "SOA".into(),
        TYPE_DNSKEY => "DNSKEY".into(),
        TYPE_NSEC => "NSEC".into(),
        TYPE_RRSIG => "RRSIG".into(),
        other => format!("TYPE{other}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One RRset: owner, type, presentation RDATA (for the zone file) and wire RDATA (signed).
struct Set {
    owner: Name,
    rtype: u16,
    records: Vec<(String, Vec<u8>)>,
}

fn generic(rtype: u16, owner: &str, rdata: Vec<u8>) -> Set {
    Set {
        owner: name(owner),
        rtype,
        records: vec![(format!("\\# {} {}", rdata.len(), hex(&rdata)), rdata)],
    }
}

/// A signed zone of the tree's shape: SOA, NS, DNSKEY at the apex; SSI (65280) and APKEY
/// (65281) records below it, as opaque RFC 3597 data.
fn signed_zone(key: &DnssecKey, window: SignatureWindow) -> String {
    let apex = "e164.example.";
    let soa_rdata = {
        let mut r = name("ns1.e164.example.").as_wire().to_vec();
        r.extend_from_slice(name("hostmaster.e164.example.").as_wire());
        for v in [2026120601u32, 3600, 600, 86400, 300] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r
    };
    let ns = name("ns1.e164.example.");
    let dnskey = key.dnskey_rdata();
    let mut sets = vec![
        Set {
            owner: name(apex),
            rtype: 6,
            records: vec![(
                "ns1.e164.example. hostmaster.e164.example. 2026120601 3600 600 86400 300".into(),
                soa_rdata,
            )],
        },
        Set {
            owner: name(apex),
            rtype: 2,
            records: vec![("ns1.e164.example.".into(), ns.as_wire().to_vec())],
        },
        Set {
            owner: name(apex),
            rtype: TYPE_DNSKEY,
            records: vec![(
                format!("{FLAGS_CSK} 3 15 {}", B64.encode(&dnskey[4..])),
                dnskey.clone(),
            )],
        },
        generic(1, "ns1.e164.example.", vec![127, 0, 0, 1]),
        generic(
            65280,
            "2.2.2.2.1.5.5.5.1.e164.example.",
            b"ssi one".to_vec(),
        ),
        generic(65281, "signal.ap.e164.example.", b"apkey".to_vec()),
    ];
    sets[5]
        .records
        .push((format!("\\# 3 {}", hex(b"two")), b"two".to_vec()));
    // The NSEC chain both tools insist on, in canonical order of the owners.
    let mut owners: Vec<Name> = sets.iter().map(|s| s.owner.clone()).collect();
    owners.sort();
    owners.dedup();
    for (i, owner) in owners.iter().enumerate() {
        let next = &owners[(i + 1) % owners.len()];
        let mut types: Vec<u16> = sets
            .iter()
            .filter(|s| &s.owner == owner)
            .map(|s| s.rtype)
            .collect();
        types.extend([TYPE_RRSIG, TYPE_NSEC]);
        let mut rdata = next.as_wire().to_vec();
        rdata.extend_from_slice(&type_bitmap(&types));
        types.sort_unstable();
        let text = format!(
            "{next} {}",
            types
                .iter()
                .map(|&t| type_text(t))
                .collect::<Vec<_>>()
                .join(" ")
        );
        sets.push(Set {
            owner: owner.clone(),
            rtype: TYPE_NSEC,
            records: vec![(text, rdata)],
        });
    }
    let ttl = 300;
    let mut out = format!("$ORIGIN {apex}\n");
    for set in &sets {
        for (text, _) in &set.records {
            out += &format!("{} {ttl} IN {} {text}\n", set.owner, type_text(set.rtype));
        }
        let rdatas: Vec<&[u8]> = set.records.iter().map(|(_, r)| r.as_slice()).collect();
        let rrsig = sign_rrset(key, &set.owner, set.rtype, ttl, &rdatas, window);
        let f = RrsigFields::parse(&rrsig).unwrap();
        out += &format!(
            "{} {ttl} IN RRSIG {} 15 {} {} {} {} {} {} {}\n",
            set.owner,
            type_text(f.type_covered),
            f.labels,
            f.original_ttl,
            stamp(f.window.expiration),
            stamp(f.window.inception),
            f.key_tag,
            f.signer,
            B64.encode(&f.signature)
        );
    }
    out
}

fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(tool).args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn ldns_and_knot_accept_our_signatures_and_refuse_a_changed_one() {
    let tools = ["ldns-verify-zone", "kzonecheck"];
    let present: Vec<&str> = tools.into_iter().filter(|t| have(t)).collect();
    if present.is_empty() {
        return;
    }
    let key = DnssecKey::generate(name("e164.example."), FLAGS_CSK);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let zone = signed_zone(&key, SignatureWindow::starting(now, 7 * 86400));
    // One byte of the SSI set's signature changed (the base64 text of the last RRSIG of the
    // 65280 set: its first character).
    let tampered = {
        let line = zone
            .lines()
            .find(|l| l.contains("RRSIG TYPE65280"))
            .unwrap();
        let sig_start = line.rfind(' ').unwrap() + 1;
        let mut bad = line.to_string();
        let c = if &line[sig_start..sig_start + 1] == "A" {
            "B"
        } else {
            "A"
        };
        bad.replace_range(sig_start..sig_start + 1, c);
        zone.replace(line, &bad)
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.zone");
    let bad = dir.path().join("bad.zone");
    std::fs::write(&good, &zone).unwrap();
    std::fs::write(&bad, &tampered).unwrap();
    for tool in present {
        let args = |p: &std::path::Path| -> Vec<String> {
            match tool {
                "kzonecheck" => vec![
                    "-o".into(),
                    "e164.example.".into(),
                    "--dnssec".into(),
                    "on".into(),
                    p.display().to_string(),
                ],
                _ => vec![p.display().to_string()],
            }
        };
        let a = args(&good);
        let (ok, out) = run(tool, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{tool} refused our signed zone:\n{out}\n{zone}");
        let a = args(&bad);
        let (ok, out) = run(tool, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!ok, "{tool} accepted a changed signature:\n{out}");
        eprintln!("{tool}: accepts the signed zone, refuses the changed signature");
    }
}
