//! Zone files through the library: parsing every supported construct, canonical and
//! generic writing, atomic file replacement, and the zone store's answers.

use std::collections::BTreeMap;

use mimi_discovery::name::Name;
use mimi_discovery::record::{
    ApKey, Context, Method, ProviderKey, Ssi, TrustStore, TYPE_APKEY, TYPE_SSI,
};
use mimi_discovery::zone::{
    sort_canonical, to_text, write_file_atomic, Lookup, RData, Record, WriteStyle, ZoneFile,
    ZoneStore,
};

const T2026: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const T2036: u64 = 2_082_758_400; // 2036-01-01T00:00:00Z

fn n(s: &str) -> Name {
    s.parse().unwrap()
}

fn signed_ssi(owner: &Name, key: &ProviderKey, user: &str) -> Ssi {
    let mut ssi = Ssi {
        version: 1,
        context: Context::Personal,
        withdrawn: false,
        priority: 10,
        seq: 4,
        not_before: T2026,
        not_after: T2036,
        method: Method::SmsOtp,
        verified_at: T2026,
        provider: key.provider.clone(),
        uri: format!(
            "mimi://{}/u/{user}",
            key.provider.to_string().trim_end_matches('.')
        ),
        key_id: [0; 8],
        signature: [0; 64],
    };
    ssi.sign(owner, &key.signing);
    ssi
}

/// A zone using every construct the reader supports, with the SSI signed by `key`.
fn full_zone_text(key: &ProviderKey) -> (String, Ssi, ApKey) {
    let owner = n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.");
    let ssi = signed_ssi(&owner, key, "alice");
    let apkey = ApKey::new(&key.verifying_key(), T2026, T2036);
    let text = format!(
        "; a hand-written zone\n\
         $TTL 1h\n\
         $ORIGIN mimi.arpa.\n\
         @   IN SOA ns1 hostmaster.mimi.arpa. (\n\
         \x20       2026010101 ; serial\n\
         \x20       3600 600   ; refresh retry\n\
         \x20       1209600 300 )\n\
         \x20   IN NS ns1 ; blank owner: mimi.arpa.\n\
         \x20   NS ns2.example.\n\
         ns1 60 IN A 127.0.0.1\n\
         \tAAAA ::1\n\
         \n\
         txt TXT \"hello \\\"world\\\"\" \"back\\\\slash\" \"\\065\\066;\" plain\n\
         $ORIGIN e164.mimi.arpa.\n\
         2.2.2.2.1.1.1.5.5.5.1 300 IN SSI {}\n\
         $ORIGIN ap\n\
         {} 600 APKEY {}\n\
         $TTL 120\n\
         opaque TYPE99 \\# 3 010203\n\
         empty.opaque IN TYPE4000 \\# 0\n",
        ssi.to_presentation(),
        key.provider.to_string().trim_end_matches('.'),
        apkey.to_presentation(),
    );
    (text, ssi, apkey)
}

/// The records as (owner, ttl, data), lines left out, in canonical order.
fn content(zone: &ZoneFile) -> Vec<(Name, u32, RData)> {
    let mut records = zone.records.clone();
    sort_canonical(&mut records);
    records
        .into_iter()
        .map(|r| (r.name, r.ttl, r.data))
        .collect()
}

#[test]
fn parse_every_construct() {
    let key = ProviderKey::generate(n("chat.example."));
    let (text, ssi, apkey) = full_zone_text(&key);
    let zone = ZoneFile::from_str_named(&text, "full.zone", None).unwrap();
    assert_eq!(zone.origin, n("mimi.arpa."), "the first $ORIGIN");
    assert_eq!(zone.records.len(), 10, "{:#?}", zone.records);
    let r = &zone.records;

    assert_eq!(r[0].name, n("mimi.arpa."));
    assert_eq!(r[0].ttl, 3600);
    assert_eq!(r[0].line, 4);
    match &r[0].data {
        RData::Soa(s) => {
            assert_eq!(s.mname, n("ns1.mimi.arpa."));
            assert_eq!(s.rname, n("hostmaster.mimi.arpa."));
            assert_eq!(
                (s.serial, s.refresh, s.retry, s.expire, s.minimum),
                (2026010101, 3600, 600, 1209600, 300)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(zone.soa().unwrap().serial, 2026010101);

    assert_eq!(
        (&r[1].name, r[1].ttl, &r[1].data, r[1].line),
        (&n("mimi.arpa."), 3600, &RData::Ns(n("ns1.mimi.arpa.")), 8)
    );
    assert_eq!(
        (&r[2].name, &r[2].data),
        (&n("mimi.arpa."), &RData::Ns(n("ns2.example.")))
    );
    assert_eq!(
        (&r[3].name, r[3].ttl, &r[3].data),
        (
            &n("ns1.mimi.arpa."),
            60,
            &RData::A("127.0.0.1".parse().unwrap())
        )
    );
    // Blank owner: the previous owner; no TTL: the $TTL.
    assert_eq!(
        (&r[4].name, r[4].ttl, &r[4].data, r[4].line),
        (
            &n("ns1.mimi.arpa."),
            3600,
            &RData::Aaaa("::1".parse().unwrap()),
            11
        )
    );
    match &r[5].data {
        RData::Txt(strings) => {
            let strings: Vec<&[u8]> = strings.iter().map(|s| &s[..]).collect();
            assert_eq!(
                strings,
                [&b"hello \"world\""[..], b"back\\slash", b"AB;", b"plain"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r[5].name, n("txt.mimi.arpa."));
    assert_eq!(r[5].line, 13);

    // After `$ORIGIN e164.mimi.arpa.`.
    assert_eq!(r[6].name, n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa."));
    assert_eq!(r[6].ttl, 300);
    assert_eq!(r[6].data, RData::Ssi(Box::new(ssi.clone())));
    assert_eq!(r[6].data.rtype(), TYPE_SSI);
    ssi.verify(&r[6].name, &key.verifying_key()).unwrap();

    // After the relative `$ORIGIN ap`: ap.e164.mimi.arpa.
    assert_eq!(r[7].name, n("chat.example.ap.e164.mimi.arpa."));
    assert_eq!(r[7].ttl, 600);
    assert_eq!(r[7].data, RData::ApKey(Box::new(apkey)));
    assert_eq!(r[7].data.rtype(), TYPE_APKEY);

    // The later $TTL applies from there on.
    assert_eq!(r[8].name, n("opaque.ap.e164.mimi.arpa."));
    assert_eq!(r[8].ttl, 120);
    assert_eq!(
        r[8].data,
        RData::Unknown {
            rtype: 99,
            data: vec![1, 2, 3].into()
        }
    );
    assert_eq!(
        r[9].data,
        RData::Unknown {
            rtype: 4000,
            data: Vec::new().into()
        }
    );
}

#[test]
fn write_parse_round_trip_is_canonical() {
    let key = ProviderKey::generate(n("chat.example."));
    let (text, _, _) = full_zone_text(&key);
    let zone = ZoneFile::from_str_named(&text, "full.zone", None).unwrap();

    let written = to_text(&zone, WriteStyle::Native);
    assert_eq!(
        written,
        to_text(&zone, WriteStyle::Native),
        "writing is deterministic"
    );
    assert!(written.contains(" IN SSI 1 personal 10 4 "), "{written}");
    assert!(written.contains(" IN APKEY 1 ed25519 "), "{written}");
    assert!(written.contains(" IN TYPE99 \\# 3 010203\n"), "{written}");
    assert!(written.contains(" IN TYPE4000 \\# 0\n"), "{written}");
    assert!(
        written.contains(
            "txt 3600 IN TXT \"hello \\\"world\\\"\" \"back\\\\slash\" \"AB;\" \"plain\"\n"
        ),
        "{written}"
    );

    let again = ZoneFile::from_str_named(&written, "written.zone", None).unwrap();
    assert_eq!(again.origin, zone.origin);
    assert_eq!(content(&again), content(&zone));
    assert_eq!(
        to_text(&again, WriteStyle::Native),
        written,
        "a fixed point"
    );

    // The SSI still verifies after the trip.
    let mut trust = TrustStore::new();
    trust.add(key.provider.clone(), key.verifying_key());
    let report = mimi_discovery::zone::check(&again, &trust, &n("mimi.arpa."), T2026 + 86400);
    assert_eq!(report.signatures_verified, 1, "{:?}", report.problems);
}

#[test]
fn generic_writing_round_trips() {
    let key = ProviderKey::generate(n("chat.example."));
    let (text, ssi, apkey) = full_zone_text(&key);
    let zone = ZoneFile::from_str_named(&text, "full.zone", None).unwrap();
    let generic = to_text(&zone, WriteStyle::Generic);
    let ssi_wire = ssi.to_wire();
    assert!(
        generic.contains(&format!(
            " IN TYPE65280 \\# {} {}\n",
            ssi_wire.len(),
            hex::encode(&ssi_wire)
        )),
        "{generic}"
    );
    assert!(
        generic.contains(&format!(
            " IN TYPE65281 \\# 50 {}\n",
            hex::encode(apkey.to_wire())
        )),
        "{generic}"
    );
    assert!(!generic.contains(" SSI "), "{generic}");
    assert!(!generic.contains(" APKEY "), "{generic}");
    assert!(generic.contains(" IN TYPE99 \\# 3 010203\n"), "{generic}");
    assert!(generic.contains(" IN SOA "), "{generic}");
    assert!(generic.contains(" IN TXT "), "{generic}");

    let back = ZoneFile::from_str_named(&generic, "generic.zone", None).unwrap();
    assert_eq!(content(&back), content(&zone));
    assert_eq!(
        to_text(&back, WriteStyle::Native),
        to_text(&zone, WriteStyle::Native)
    );
    assert_eq!(to_text(&back, WriteStyle::Generic), generic);
}

#[test]
fn canonical_order_is_soa_first_then_rfc4034_name_order() {
    // RFC 4034 section 6.1's example, in canonical order.
    let ordered = [
        "example.",
        "a.example.",
        "yljkjljk.a.example.",
        "Z.a.example.",
        "zABC.a.EXAMPLE.",
        "z.example.",
        "\\001.z.example.",
        "*.z.example.",
        "\\200.z.example.",
    ];
    let origin = n("example.");
    let mut records: Vec<Record> = ordered
        .iter()
        .enumerate()
        .map(|(i, name)| Record {
            name: n(name),
            ttl: 60,
            data: RData::Txt(vec![format!("{i}").into_bytes().into()]),
            line: 0,
        })
        .collect();
    records.push(Record {
        name: origin.clone(),
        ttl: 60,
        data: RData::Ns(n("ns.example.")),
        line: 0,
    });
    records.push(Record {
        name: origin.clone(),
        ttl: 60,
        data: RData::Soa(Box::new(mimi_discovery::zone::Soa {
            mname: n("ns.example."),
            rname: n("hostmaster.example."),
            serial: 1,
            refresh: 2,
            retry: 3,
            expire: 4,
            minimum: 5,
        })),
        line: 0,
    });
    records.push(Record {
        name: n("a.example."),
        ttl: 60,
        data: RData::A("10.0.0.1".parse().unwrap()),
        line: 0,
    });
    records.reverse();

    let zone = ZoneFile {
        origin: origin.clone(),
        records: records.clone(),
        source: "order".into(),
    };
    let text = to_text(&zone, WriteStyle::Native);
    let body: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(
        body,
        [
            "@ 60 IN SOA ns hostmaster 1 2 3 4 5",
            "@ 60 IN NS ns",
            "@ 60 IN TXT \"0\"",
            "a 60 IN A 10.0.0.1",
            "a 60 IN TXT \"1\"",
            "yljkjljk.a 60 IN TXT \"2\"",
            "z.a 60 IN TXT \"3\"",
            "zabc.a 60 IN TXT \"4\"",
            "z 60 IN TXT \"5\"",
            "\\001.z 60 IN TXT \"6\"",
            "*.z 60 IN TXT \"7\"",
            "\\200.z 60 IN TXT \"8\"",
        ],
        "{text}"
    );

    // sort_canonical agrees with Name's RFC 4034 order, whatever the input order.
    let mut shuffled = records;
    shuffled.rotate_left(5);
    sort_canonical(&mut shuffled);
    assert!(matches!(shuffled[0].data, RData::Soa(_)));
    for pair in shuffled.windows(2) {
        assert!(pair[0].name <= pair[1].name, "{pair:?}");
    }
    // And the written text reads back to the same order.
    let back = ZoneFile::from_str_named(&text, "t", None).unwrap();
    let names: Vec<Name> = back.records.iter().map(|r| r.name.clone()).collect();
    let sorted: Vec<Name> = shuffled.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, sorted);
}

#[test]
fn sort_canonical_drops_exact_duplicates() {
    let rec = |name: &str, ip: &str| Record {
        name: n(name),
        ttl: 60,
        data: RData::A(ip.parse().unwrap()),
        line: 0,
    };
    let mut records = vec![
        rec("b.x.", "10.0.0.1"),
        rec("a.x.", "10.0.0.2"),
        rec("b.x.", "10.0.0.1"),
        rec("a.x.", "10.0.0.1"),
    ];
    sort_canonical(&mut records);
    let got: Vec<(String, RData)> = records
        .into_iter()
        .map(|r| (r.name.to_string(), r.data))
        .collect();
    assert_eq!(
        got,
        [
            ("a.x.".to_string(), RData::A("10.0.0.1".parse().unwrap())),
            ("a.x.".to_string(), RData::A("10.0.0.2".parse().unwrap())),
            ("b.x.".to_string(), RData::A("10.0.0.1".parse().unwrap())),
        ]
    );
}

#[test]
fn write_file_atomic_replaces_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.zone");
    write_file_atomic(&path, b"first\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first\n");
    std::fs::write(&path, b"old content, longer than the new one\n").unwrap();
    write_file_atomic(&path, b"new\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["z.zone"]);

    // A zone saved through ZoneFile::save reads back the same.
    let key = ProviderKey::generate(n("chat.example."));
    let (text, _, _) = full_zone_text(&key);
    let zone = ZoneFile::from_str_named(&text, "full.zone", None).unwrap();
    zone.save(&path, WriteStyle::Native).unwrap();
    let loaded = ZoneFile::load(&path).unwrap();
    assert_eq!(content(&loaded), content(&zone));
    assert_eq!(loaded.source, path.display().to_string());

    // A failed write leaves nothing behind.
    let missing = dir.path().join("no-such-dir").join("z.zone");
    assert!(write_file_atomic(&missing, b"x").is_err());
    let count = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(count, 1);
}

#[test]
fn syntax_errors_are_all_reported() {
    let text = "$ORIGIN x.\n$TTL 60\n@ SOA a b 1 2 3 4 5\na A 1.2.3\nb NS\nc A 10.0.0.1\n";
    match ZoneFile::from_str_named(text, "bad.zone", None) {
        Err(mimi_discovery::zone::ZoneError::Syntax(errors)) => {
            let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
            assert_eq!(lines, [4, 5]);
            assert!(errors[0].to_string().starts_with("bad.zone:4: "));
        }
        other => panic!("{other:?}"),
    }
    // With neither $ORIGIN nor SOA, the origin is unknown: an error.
    assert!(matches!(
        ZoneFile::from_str_named("a.x. 60 A \\# 4 0a000001\n", "t", None),
        Err(mimi_discovery::zone::ZoneError::Invalid { .. })
    ));
    // An origin given by the caller applies.
    let z = ZoneFile::from_str_named("a 60 A 10.0.0.1\n", "t", Some(&n("x."))).unwrap();
    assert_eq!(z.origin, n("x."));
    assert_eq!(z.records[0].name, n("a.x."));
}

// ---------------------------------------------------------------------------------------
// The zone store

fn store() -> ZoneStore {
    let text = "$ORIGIN mimi.arpa.\n$TTL 3600\n\
                @ SOA ns1 hostmaster 1 3600 600 1209600 300\n\
                @ NS ns1\n\
                ns1 A 127.0.0.1\n\
                e164 NS ns1.e164\n\
                e164 NS ns2.e164\n\
                ns1.e164 A 127.53.0.2\n\
                ns2.e164 AAAA fd00::2\n\
                1.e164 TXT \"occluded\"\n\
                x.y.z.email TXT \"deep\"\n";
    let zone = ZoneFile::from_str_named(text, "store.zone", None).unwrap();
    ZoneStore::build(zone.origin.clone(), zone.records).unwrap()
}

fn wire(s: &str) -> Vec<u8> {
    n(s).as_wire().to_vec()
}

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;

#[test]
fn store_exact_and_nodata() {
    let s = store();
    match s.lookup(&wire("ns1.mimi.arpa.")) {
        Lookup::Exact(node) => {
            assert!(node.rrset(TYPE_A).is_some());
            // NODATA: the name exists, the type does not.
            assert!(node.rrset(TYPE_AAAA).is_none());
            assert!(!node.is_cut);
        }
        other => panic!("{other:?}"),
    }
    match s.lookup(&wire("x.y.z.email.mimi.arpa.")) {
        Lookup::Exact(node) => assert_eq!(node.rrset(TYPE_TXT).unwrap().len(), 1),
        other => panic!("{other:?}"),
    }
    match s.lookup(&wire("mimi.arpa.")) {
        Lookup::Exact(node) => assert!(node.rrset(TYPE_NS).is_some()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn store_empty_non_terminals_are_nodata_not_nxdomain() {
    let s = store();
    for ent in [
        "email.mimi.arpa.",
        "z.email.mimi.arpa.",
        "y.z.email.mimi.arpa.",
    ] {
        match s.lookup(&wire(ent)) {
            Lookup::Exact(node) => assert!(node.rrsets.is_empty(), "{ent}"),
            other => panic!("{ent}: {other:?}"),
        }
    }
    for nx in [
        "w.email.mimi.arpa.",
        "w.z.email.mimi.arpa.",
        "a.x.y.z.email.mimi.arpa.",
        "nope.mimi.arpa.",
        "a.ns1.mimi.arpa.",
    ] {
        assert!(matches!(s.lookup(&wire(nx)), Lookup::NxDomain), "{nx}");
    }
    for out in ["arpa.", "example.org.", "xmimi.arpa.", "."] {
        assert!(matches!(s.lookup(&wire(out)), Lookup::OutOfZone), "{out}");
    }
}

#[test]
fn store_referral_with_glue_at_and_below_the_cut() {
    let s = store();
    for q in [
        "e164.mimi.arpa.",
        "1.e164.mimi.arpa.", // has (occluded) data of its own
        "2.2.2.1.e164.mimi.arpa.",
        "ns1.e164.mimi.arpa.", // the glue's own name
    ] {
        match s.lookup(&wire(q)) {
            Lookup::Referral { cut, node } => {
                assert_eq!(cut, wire("e164.mimi.arpa.").as_slice(), "{q}");
                assert!(node.is_cut);
                assert_eq!(node.rrset(TYPE_NS).unwrap().len(), 2);
                let mut glue: BTreeMap<u16, usize> = BTreeMap::new();
                for r in node.glue() {
                    *glue.entry(u16::from(r.record_type())).or_default() += 1;
                }
                assert_eq!(glue, BTreeMap::from([(TYPE_A, 1), (TYPE_AAAA, 1)]), "{q}");
            }
            other => panic!("{q}: {other:?}"),
        }
    }
}

#[test]
fn store_needs_soa_and_apex_ns() {
    let parse = |t: &str| ZoneFile::from_str_named(t, "t", None).unwrap();
    let z = parse("$ORIGIN x.\n$TTL 1\na A 10.0.0.1\n@ NS a\n");
    assert!(ZoneStore::build(z.origin, z.records).is_err());
    let z = parse("$ORIGIN x.\n$TTL 1\n@ SOA a b 1 2 3 4 5\n");
    assert!(ZoneStore::build(z.origin, z.records).is_err());
    let z = parse("$ORIGIN x.\n$TTL 1\n@ SOA a b 1 2 3 4 5\n@ NS a\na A 10.0.0.1\n");
    let s = ZoneStore::build(z.origin, z.records).unwrap();
    assert_eq!(s.negative_ttl(), 1);
}

/// `ZoneFile::load` documents that a file without `$ORIGIN` takes its origin from the SOA
/// owner; with absolute names everywhere (as `dig AXFR` prints them) that must work.
#[test]
fn zone_without_origin_directive_takes_the_soa_owner() {
    let text =
        "x. 60 IN SOA ns.x. hostmaster.x. 1 2 3 4 5\nx. 60 IN NS ns.x.\nns.x. 60 IN A 10.0.0.1\n";
    let z = ZoneFile::from_str_named(text, "t", None).unwrap();
    assert_eq!(z.origin, n("x."));
    assert_eq!(z.records.len(), 3);
    // A relative name is still an error when there is no origin.
    assert!(ZoneFile::from_str_named("x. 60 IN SOA ns hostmaster 1 2 3 4 5\n", "t", None).is_err());
}
