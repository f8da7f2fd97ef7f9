//! Release markers (DESIGN 8.2): when the number or domain authority releases an
//! identifier, its mappings go and a marker (owner, time) stays, so that a later mapping
//! verified before the release is refused. A zone's markers live beside its zone file in
//! `<zone file>.releases` (docs/lifecycle.md), one `<owner> <RFC 3339 time>` per line, and
//! survive restarts. A marker is kept for the DP's `max_validity` after its time: by
//! then every mapping verified before it has expired anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::name::Name;
use crate::record::{format_time, parse_time};

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
}

/// The release markers of one zone: owner name -> time of the latest release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Releases {
    markers: BTreeMap<Name, u64>,
}

/// Where the markers of the zone in `zone_file` live.
pub fn path_for(zone_file: &Path) -> PathBuf {
    let mut p = zone_file.as_os_str().to_owned();
    p.push(".releases");
    PathBuf::from(p)
}

impl Releases {
    /// Reads a markers file; a missing file is an empty set.
    pub fn load(path: &Path) -> Result<Releases, ReleaseError> {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Releases::default()),
            Err(source) => return Err(ReleaseError::Io { file, source }),
        };
        Releases::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Releases, ReleaseError> {
        let mut out = Releases::default();
        for (i, line) in text.lines().enumerate() {
            let at = |message: String| ReleaseError::At {
                file: file.to_string(),
                line: i + 1,
                message,
            };
            let line = line.split(';').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(owner), Some(time), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(at(format!(
                    "expected \"<owner name> <RFC 3339 time>\", found {line:?}"
                )));
            };
            if !owner.ends_with('.') {
                return Err(at(format!(
                    "owner {owner:?} must be absolute (end in a dot)"
                )));
            }
            let owner = Name::parse(owner, None).map_err(|e| at(format!("owner: {e}")))?;
            let time = parse_time("release time", time).map_err(|e| at(e.to_string()))?;
            out.mark(owner, time);
        }
        Ok(out)
    }

    /// The file's text: sorted by owner, so rewrites diff cleanly.
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "; release markers - written by mimi-discovery (docs/lifecycle.md)\n\
             ; a mapping verified before its owner's time is refused\n",
        );
        for (owner, t) in &self.markers {
            s.push_str(&format!("{owner} {}\n", format_time(*t)));
        }
        s
    }

    /// Writes the markers (temporary name, sync, rename, directory sync).
    pub fn save(&self, path: &Path) -> Result<(), ReleaseError> {
        super::write_file_atomic(path, self.to_text().as_bytes()).map_err(|source| {
            ReleaseError::Io {
                file: path.display().to_string(),
                source,
            }
        })
    }

    /// Records a release of `owner` at `time`; a later release of the same owner keeps
    /// the later time.
    pub fn mark(&mut self, owner: Name, time: u64) {
        let t = self.markers.entry(owner).or_insert(time);
        *t = (*t).max(time);
    }

    /// The release time that refuses a mapping of `owner` verified at `verified_at`.
    pub fn refuses(&self, owner: &Name, verified_at: u64) -> Option<u64> {
        self.markers
            .get(owner)
            .copied()
            .filter(|&t| verified_at < t)
    }

    pub fn released_at(&self, owner: &Name) -> Option<u64> {
        self.markers.get(owner).copied()
    }

    /// Drops markers older than `before`; true when any went.
    pub fn prune(&mut self, before: u64) -> bool {
        let n = self.markers.len();
        self.markers.retain(|_, t| *t >= before);
        self.markers.len() != n
    }

    pub fn len(&self) -> usize {
        self.markers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s, None).expect("name")
    }

    #[test]
    fn round_trip_and_refusal() {
        let mut r = Releases::default();
        r.mark(n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa."), 1_700_000_000);
        r.mark(n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa."), 1_600_000_000);
        let back = Releases::parse(&r.to_text(), "x").expect("parse");
        assert_eq!(back, r);
        let o = n("2.2.2.2.1.1.1.5.5.5.1.e164.mimi.arpa.");
        assert_eq!(back.refuses(&o, 1_699_999_999), Some(1_700_000_000));
        assert_eq!(back.refuses(&o, 1_700_000_000), None);
        assert_eq!(back.refuses(&n("x.mimi.arpa."), 0), None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = Releases::parse("; c\n\nfoo.mimi.arpa. yesterday\n", "r").unwrap_err();
        assert!(e.to_string().starts_with("r:3: "), "{e}");
        let e = Releases::parse("foo.mimi.arpa 2026-01-01T00:00:00Z\n", "r").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = Releases::parse("a.b. 2026-01-01T00:00:00Z extra\n", "r").unwrap_err();
        assert!(e.to_string().starts_with("r:1: expected"), "{e}");
    }

    #[test]
    fn prune_drops_old_markers() {
        let mut r = Releases::default();
        r.mark(n("a.mimi.arpa."), 10);
        r.mark(n("b.mimi.arpa."), 20);
        assert!(r.prune(15));
        assert_eq!(r.len(), 1);
        assert!(!r.prune(15));
    }
}
