//! Zone files and the in-memory zone store.
//!
//! `ZoneFile` is the editable, file-shaped view (records in file order with their
//! lines); `parse` reads RFC 1035 master files, `write` emits them canonically and
//! atomically, `check` validates records against a trust file, and `store` indexes a
//! zone by owner name for the server.

mod check;
mod edit;
mod index;
pub mod journal;
mod parse;
pub mod prebuilt;
mod rdata;
pub mod release;
pub mod store;
pub mod update;
mod write;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::name::Name;

pub use check::{check, check_sii_owner, Problem, Report, Severity};
pub use parse::{parse_str, parse_ttl};
pub use prebuilt::{Prebuilt, PrebuiltError};
pub use rdata::parse_key_line;
pub use rdata::{RData, Soa};
pub use store::{Lookup, Node, RRset, ZoneStore};
pub use update::{Changeset, Diff};
pub use write::{canonical_key, sort_canonical, to_text, write_file_atomic, WriteStyle};

/// One resource record as read from, or to be written to, a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub ttl: u32,
    pub data: RData,
    /// Line of the file the record started on; 0 for records made in memory.
    pub line: usize,
}

impl Record {
    /// The record as hickory's wire-format type, for answering queries.
    pub fn to_wire_record(&self) -> hickory_proto::rr::Record {
        hickory_proto::rr::Record::from_rdata(
            self.name.to_hickory(),
            self.ttl,
            self.data.to_hickory(),
        )
    }
}

/// A problem at a place in a zone file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct SyntaxError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Error)]
pub enum ZoneError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Every syntax error found, one per line of the message.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Syntax(Vec<SyntaxError>),
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A zone as a list of records, in file order, with its origin.
#[derive(Debug, Clone)]
pub struct ZoneFile {
    pub origin: Name,
    pub records: Vec<Record>,
    /// Where it was read from, for messages.
    pub source: String,
}

impl ZoneFile {
    /// Reads and parses a zone file. The origin is the file's first `$ORIGIN`, or the owner
    /// of its SOA record when it has no `$ORIGIN`. All syntax errors are reported together.
    pub fn load(path: &Path) -> Result<ZoneFile, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Io {
            file: path.display().to_string(),
            source,
        })?;
        Self::from_str_named(&text, &path.display().to_string(), None)
    }

    /// Parses zone text; `origin` applies when the text does not set `$ORIGIN` first.
    pub fn from_str_named(
        text: &str,
        source: &str,
        origin: Option<&Name>,
    ) -> Result<ZoneFile, ZoneError> {
        let parsed = parse_str(text, source, origin);
        if !parsed.errors.is_empty() {
            return Err(ZoneError::Syntax(parsed.errors));
        }
        let origin = match parsed.origin {
            Some(o) => o,
            None => parsed
                .records
                .iter()
                .find(|r| matches!(r.data, RData::Soa(_)))
                .map(|r| r.name.clone())
                .ok_or_else(|| ZoneError::Invalid {
                    file: source.to_string(),
                    message: "no $ORIGIN and no SOA record: cannot tell the zone's origin".into(),
                })?,
        };
        Ok(ZoneFile {
            origin,
            records: parsed.records,
            source: source.to_string(),
        })
    }

    /// The zone's SOA record, if it has one at its origin.
    pub fn soa(&self) -> Option<&Soa> {
        self.records.iter().find_map(|r| match &r.data {
            RData::Soa(s) if r.name == self.origin => Some(s.as_ref()),
            _ => None,
        })
    }

    /// Writes the zone canonically to `path` through a temporary file and a rename.
    pub fn save(&self, path: &Path, style: WriteStyle) -> Result<(), ZoneError> {
        let text = write::to_text(self, style);
        write_file_atomic(path, text.as_bytes()).map_err(|source| ZoneError::Io {
            file: path.display().to_string(),
            source,
        })
    }
}

/// A fresh temporary path beside `path` for writing it atomically: process id plus a
/// counter, so concurrent writers of the same file never share one.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "zone".into());
    path.with_file_name(format!(".{file}.tmp.{}.{n}", std::process::id()))
}
