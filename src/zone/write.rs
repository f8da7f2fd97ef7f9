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
    // (owner key, not-SOA, type, RDATA, record)
    type Keyed = (Vec<u8>, bool, u16, Vec<u8>, Record);
    let mut keyed: Vec<Keyed> = records
        .drain(..)
        .map(|r| {
            let key = canonical_key(r.name.as_wire());
            let rtype = r.data.rtype();
            let data = r.data.to_wire();
            (key, rtype != TYPE_SOA, rtype, data, r)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| (&a.0, a.1, a.2, &a.3).cmp(&(&b.0, b.1, b.2, &b.3)));
    keyed.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2 && a.3 == b.3);
    records.extend(keyed.into_iter().map(|k| k.4));
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
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            // Keep the permissions of the file being replaced.
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
