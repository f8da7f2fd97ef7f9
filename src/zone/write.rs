//! Canonical zone-file output: one record per line, owners relative to `$ORIGIN`, sorted
//! in DNS canonical order (SOA first, then by owner, type and data) so that the same zone
//! always gives the same bytes and diffs stay small.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::rdata::{generic_type_name, type_name, RData, TYPE_SOA};
use super::{temp_path, Record, ZoneFile};
use crate::record::{TYPE_APKEY, TYPE_SSI};

/// How SSI and APKEY records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStyle {
    /// Readable presentation form (`SSI 1 personal ...`).
    Native,
    /// RFC 3597 `TYPE65280 \# len hex`, for Knot, NSD and BIND.
    Generic,
}

/// Sorts records canonically and drops exact duplicates.
pub fn sort_canonical(records: &mut Vec<Record>) {
    // Sort keys are computed once: comparing names label-by-label is the costly part.
    // (owner key, not-SOA, type, RDATA, TTL, record): with the TTL in the key, of two
    // records differing only in TTL the lower one is kept, whatever the input order.
    type Keyed = (Vec<u8>, bool, u16, Vec<u8>, u32, Record);
    let mut keyed: Vec<Keyed> = records
        .drain(..)
        .map(|r| {
            let key = canonical_key(r.name.as_wire());
            let rtype = r.data.rtype();
            let data = r.data.to_wire();
            (key, rtype != TYPE_SOA, rtype, data, r.ttl, r)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| (&a.0, a.1, a.2, &a.3, a.4).cmp(&(&b.0, b.1, b.2, &b.3, b.4)));
    keyed.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2 && a.3 == b.3);
    records.extend(keyed.into_iter().map(|k| k.5));
}

/// A byte string whose order is RFC 4034 canonical name order: the labels from the root
/// down, each followed by a 0 separator. Label bytes are already lowercase; an escaped
/// zero byte inside a label is rare enough to accept the tiny misordering.
pub fn canonical_key(wire: &[u8]) -> Vec<u8> {
    let mut starts = [0usize; 128];
    let mut n = 0;
    let mut i = 0;
    while i < wire.len() && wire[i] != 0 {
        starts[n] = i;
        n += 1;
        i += 1 + wire[i] as usize;
    }
    let mut key = Vec::with_capacity(wire.len());
    for &s in starts[..n].iter().rev() {
        let len = wire[s] as usize;
        key.extend_from_slice(&wire[s + 1..s + 1 + len]);
        key.push(0);
    }
    key
}

/// The zone's text, canonically ordered.
pub fn to_text(zone: &ZoneFile, style: WriteStyle) -> String {
    let mut records = zone.records.clone();
    sort_canonical(&mut records);
    let mut out = String::with_capacity(records.len() * 200 + 128);
    let _ = writeln!(
        out,
        "; zone {} - written by mimi-discovery in canonical order",
        zone.origin
    );
    let _ = writeln!(out, "$ORIGIN {}", zone.origin);
    for r in &records {
        write_record(&mut out, r, zone, style);
    }
    out
}

fn write_record(out: &mut String, r: &Record, zone: &ZoneFile, style: WriteStyle) {
    let rtype = r.data.rtype();
    let generic = style == WriteStyle::Generic
        && (rtype == TYPE_SSI || rtype == TYPE_APKEY || matches!(r.data, RData::Unknown { .. }));
    let tname = if generic || matches!(r.data, RData::Unknown { .. }) {
        generic_type_name(rtype)
    } else {
        type_name(rtype)
    };
    let _ = write!(
        out,
        "{} {} IN {} ",
        r.name.relative_to(&zone.origin),
        r.ttl,
        tname
    );
    r.data.write_presentation(out, &zone.origin, generic);
    out.push('\n');
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and
/// renamed over the target, so a crash never leaves a half-written file.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            // Keep the permissions of the file being replaced.
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Name;
    use crate::zone::rdata::Soa;

    fn n(s: &str) -> Name {
        s.parse().unwrap()
    }

    fn rec(name: &str, ttl: u32, data: RData) -> Record {
        Record {
            name: n(name),
            ttl,
            data,
            line: 0,
        }
    }

    fn a(ip: &str) -> RData {
        RData::A(ip.parse().unwrap())
    }

    fn soa() -> RData {
        RData::Soa(Box::new(Soa {
            mname: n("ns.example."),
            rname: n("hostmaster.example."),
            serial: 1,
            refresh: 2,
            retry: 3,
            expire: 4,
            minimum: 5,
        }))
    }

    #[test]
    fn canonical_key_orders_like_rfc4034() {
        let ordered = [
            ".",
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
            "a.examplf.",
        ];
        let keys: Vec<Vec<u8>> = ordered
            .iter()
            .map(|s| canonical_key(n(s).as_wire()))
            .collect();
        for i in 0..ordered.len() {
            for j in 0..ordered.len() {
                assert_eq!(
                    keys[i].cmp(&keys[j]),
                    i.cmp(&j),
                    "{} vs {}",
                    ordered[i],
                    ordered[j]
                );
                assert_eq!(
                    n(ordered[i]).cmp(&n(ordered[j])),
                    i.cmp(&j),
                    "Name order: {} vs {}",
                    ordered[i],
                    ordered[j]
                );
            }
        }
        assert!(canonical_key(Name::root().as_wire()).is_empty());
        assert_eq!(canonical_key(n("a.bc.").as_wire()), b"bc\0a\0");
    }

    #[test]
    fn sort_puts_soa_first_then_owner_type_and_data() {
        let mut records = vec![
            rec("b.example.", 60, a("10.0.0.2")),
            rec("example.", 60, RData::Ns(n("ns.example."))),
            rec("a.example.", 60, RData::Txt(vec![b"t".to_vec().into()])),
            rec("a.example.", 60, a("10.0.0.9")),
            rec("a.example.", 60, a("10.0.0.1")),
            rec("example.", 60, soa()),
            rec("a.example.", 30, a("10.0.0.1")), // a duplicate but for the TTL
        ];
        sort_canonical(&mut records);
        let got: Vec<(String, u16, Vec<u8>)> = records
            .iter()
            .map(|r| (r.name.to_string(), r.data.rtype(), r.data.to_wire()))
            .collect();
        let want: Vec<(String, u16, Vec<u8>)> = [
            ("example.", soa()),
            ("example.", RData::Ns(n("ns.example."))),
            ("a.example.", a("10.0.0.1")),
            ("a.example.", a("10.0.0.9")),
            ("a.example.", RData::Txt(vec![b"t".to_vec().into()])),
            ("b.example.", a("10.0.0.2")),
        ]
        .into_iter()
        .map(|(name, d)| (name.to_string(), d.rtype(), d.to_wire()))
        .collect();
        assert_eq!(got, want);
    }

    /// "The same zone always gives the same bytes": two records that differ only in TTL
    /// are deduplicated, but which TTL survives depends on the input order.
    #[test]
    fn duplicates_differing_in_ttl_give_the_same_output_in_any_order() {
        let zone = |records: Vec<Record>| ZoneFile {
            origin: n("example."),
            records,
            source: String::new(),
        };
        let one = zone(vec![
            rec("a.example.", 60, a("10.0.0.1")),
            rec("a.example.", 300, a("10.0.0.1")),
        ]);
        let two = zone(vec![
            rec("a.example.", 300, a("10.0.0.1")),
            rec("a.example.", 60, a("10.0.0.1")),
        ]);
        assert_eq!(
            to_text(&one, WriteStyle::Native),
            to_text(&two, WriteStyle::Native)
        );
    }

    #[test]
    fn text_has_origin_and_relative_names() {
        let zone = ZoneFile {
            origin: n("example."),
            records: vec![
                rec("www.example.", 60, a("10.0.0.1")),
                rec("example.", 60, soa()),
                rec("example.", 60, RData::Ns(n("ns.other."))),
                rec("outside.test.", 60, a("10.0.0.2")),
                rec(
                    "x.example.",
                    60,
                    RData::Unknown {
                        rtype: 99,
                        data: vec![0xab, 0xcd].into(),
                    },
                ),
                rec(
                    "t.example.",
                    60,
                    RData::Txt(vec![b"a \"q\" \\ \x01\xff".to_vec().into()]),
                ),
            ],
            source: String::new(),
        };
        let text = to_text(&zone, WriteStyle::Native);
        assert_eq!(
            text,
            "; zone example. - written by mimi-discovery in canonical order\n\
             $ORIGIN example.\n\
             @ 60 IN SOA ns hostmaster 1 2 3 4 5\n\
             @ 60 IN NS ns.other.\n\
             t 60 IN TXT \"a \\\"q\\\" \\\\ \\001\\255\"\n\
             www 60 IN A 10.0.0.1\n\
             x 60 IN TYPE99 \\# 2 abcd\n\
             outside.test. 60 IN A 10.0.0.2\n"
        );
        // Generic style changes only SSI, APKEY and unknown types.
        assert_eq!(to_text(&zone, WriteStyle::Generic), text);
        // And it reads back to the same records.
        let back = ZoneFile::from_str_named(&text, "t", None).unwrap();
        let mut want = zone.records.clone();
        sort_canonical(&mut want);
        let strip = |r: &[Record]| -> Vec<(Name, u32, RData)> {
            r.iter()
                .map(|r| (r.name.clone(), r.ttl, r.data.clone()))
                .collect()
        };
        assert_eq!(strip(&back.records), strip(&want));
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_keeps_permissions_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.zone");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_file_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["z.zone"]);
        assert!(temp_path(&path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".z.zone.tmp."));
    }

    #[test]
    fn atomic_write_failure_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails, and the temporary file goes.
        let target = dir.path().join("sub");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "x").unwrap();
        assert!(write_file_atomic(&target, b"data").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sub"]);
    }

    /// The temporary name depends only on the process id, so two threads writing the same
    /// file at once share one temporary file: one rename fails or a torn file results.
    #[test]
    fn concurrent_atomic_writes_of_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.zone");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 64 * 1024]).collect();
        std::thread::scope(|s| {
            for c in &contents {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_file_atomic(path, c).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert!(contents.contains(&got), "torn file");
    }
}
