//! A zone's journal: its diffs by serial on disk, so every acknowledged change survives a
//! crash and secondaries can be served IXFR.
//!
//! One append-only file per zone (docs/updates.md says why not an embedded database):
//!
//! ```text
//! file    = magic "MIMIJNL1" || entry*
//! entry   = u32 length || u32 CRC-32 of the payload || payload
//! payload = 0x01 || soa(from) || soa(to) || u32 n || record{n} (removed) || u32 n || record{n} (added)
//!         | 0x02 || u32 n || (owner || provider || u64 seq || u64 until){n}   (seq watermarks)
//! soa     = u32 ttl || u16 len || SOA RDATA
//! record  = owner (uncompressed wire name) || u16 type || u32 ttl || u16 len || RDATA
//! ```
//!
//! [`Journal::append`] writes a batch of entries and makes them durable with one
//! `fdatasync` (group commit); the caller acknowledges only after it returns. A write
//! that fails is cut off again, so the file never holds half an entry followed by good
//! ones. On open, an entry whose length runs past the end or whose checksum fails is a
//! torn tail from a crash during an append (never acknowledged): it is dropped with a
//! warning and the file truncated to the last whole entry.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::warn;

use super::rdata::{RData, Soa, TYPE_SOA};
use super::update::Diff;
use super::Record;
use crate::name::Name;

const MAGIC: &[u8; 8] = b"MIMIJNL1";
const KIND_DIFF: u8 = 1;
const KIND_WATERMARKS: u8 = 2;
/// No entry is larger than this: a length beyond it is corruption, not a big entry.
const MAX_ENTRY: usize = 256 << 20;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}: not a journal file (bad magic)")]
    Magic { path: PathBuf },
    #[error("journal {path}: entry at byte {offset}: {message}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        message: String,
    },
    #[error("journal {path}: an earlier write failed and could not be undone; restart the server")]
    Poisoned { path: PathBuf },
}

/// The highest `seq` seen for one (owner, provider) mapping and the latest `not_after`
/// of any of its versions: kept across restarts and purges so an old record can never be
/// replayed while it could still be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub owner: Name,
    pub provider: Name,
    pub seq: u64,
    pub until: u64,
}

/// What [`Journal::open`] read back.
#[derive(Debug, Default)]
pub struct Replay {
    pub diffs: Vec<Diff>,
    pub watermarks: Vec<Watermark>,
    /// Bytes of a torn tail that were dropped, if any.
    pub dropped_tail: Option<u64>,
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Length of the file up to the end of the last whole entry.
    len: u64,
    poisoned: bool,
    /// Created by this process and its directory entry not yet synced: done at the first
    /// append, so that starting thousands of zones costs no sync each.
    unsynced_entry: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads every whole entry back.
    pub fn open(path: &Path) -> Result<(Journal, Replay), JournalError> {
        let err = io(path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(&err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(&err)?;
        let mut replay = Replay::default();
        if bytes.is_empty() {
            // Holds nothing yet: if a crash loses it, the next start makes it again.
            file.write_all(MAGIC).map_err(&err)?;
            let journal = Journal {
                path: path.to_path_buf(),
                file,
                len: MAGIC.len() as u64,
                poisoned: false,
                unsynced_entry: true,
            };
            return Ok((journal, replay));
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(JournalError::Magic {
                path: path.to_path_buf(),
            });
        }
        let mut pos = MAGIC.len();
        while pos < bytes.len() {
            let whole = entry_at(&bytes, pos);
            let Some((payload, next)) = whole else {
                let dropped = (bytes.len() - pos) as u64;
                // A crash mid-append leaves exactly this; damage in the middle of the file
                // would look the same, so the bytes are kept beside the journal, not lost.
                let aside = path.with_extension(format!("journal.tail.{pos}"));
                let kept = std::fs::write(&aside, &bytes[pos..]).is_ok();
                warn!(
                    journal = %path.display(),
                    "dropping a torn tail of {dropped} bytes at byte {pos} (an append cut short by a crash, never acknowledged){}",
                    if kept { format!("; the bytes are kept in {}", aside.display()) } else { String::new() }
                );
                replay.dropped_tail = Some(dropped);
                file.set_len(pos as u64).map_err(&err)?;
                file.sync_data().map_err(&err)?;
                break;
            };
            let corrupt = |message: String| JournalError::Corrupt {
                path: path.to_path_buf(),
                offset: pos as u64,
                message,
            };
            match payload.first() {
                Some(&KIND_DIFF) => replay
                    .diffs
                    .push(decode_diff(&payload[1..]).map_err(corrupt)?),
                Some(&KIND_WATERMARKS) => replay
                    .watermarks
                    .extend(decode_watermarks(&payload[1..]).map_err(corrupt)?),
                other => return Err(corrupt(format!("unknown entry kind {other:?}"))),
            }
            pos = next;
        }
        let len = pos.min(bytes.len()) as u64;
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            len,
            poisoned: false,
            unsynced_entry: false,
        };
        Ok((journal, replay))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Appends the diffs (and any new watermarks) and syncs once. Either every entry is
    /// durable when this returns Ok, or none is in the file.
    pub fn append(
        &mut self,
        diffs: &[&Diff],
        watermarks: &[Watermark],
    ) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut buf = Vec::new();
        for d in diffs {
            push_entry(&mut buf, &encode_diff(d));
        }
        if !watermarks.is_empty() {
            push_entry(&mut buf, &encode_watermarks(watermarks));
        }
        let err = io(&self.path);
        let result = (|| {
            use std::io::{Seek, SeekFrom};
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(&buf)?;
            self.file.sync_data()?;
            if self.unsynced_entry {
                // The entries are durable only once the file's name is.
                sync_dir(&self.path)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.unsynced_entry = false;
                Ok(())
            }
            Err(e) => {
                // Cut the partial write off, so later appends follow whole entries.
                let undone = self
                    .file
                    .set_len(self.len)
                    .and_then(|_| self.file.sync_data());
                if undone.is_err() {
                    self.poisoned = true;
                }
                Err(err(e))
            }
        }
    }

    /// Replaces the journal with `watermarks` and `diffs` (the history to keep): written
    /// to a temporary file, synced, and renamed over the journal.
    pub fn rewrite(
        &mut self,
        diffs: &[&Diff],
        watermarks: &[Watermark],
    ) -> Result<(), JournalError> {
        let err = io(&self.path);
        let mut buf = MAGIC.to_vec();
        if !watermarks.is_empty() {
            push_entry(&mut buf, &encode_watermarks(watermarks));
        }
        for d in diffs {
            push_entry(&mut buf, &encode_diff(d));
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&buf)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)?;
            OpenOptions::new().read(true).write(true).open(&self.path)
        })();
        match written {
            Ok(file) => {
                self.file = file;
                self.len = buf.len() as u64;
                self.poisoned = false;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(err(e))
            }
        }
    }
}

/// Makes a rename or a new file in the directory durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn push_entry(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// The payload of the whole entry at `pos` and the offset after it; None for a torn or
/// damaged entry.
fn entry_at(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(pos..pos + 8)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_ENTRY {
        return None;
    }
    let payload = bytes.get(pos + 8..pos + 8 + len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, pos + 8 + len))
}

fn encode_soa(out: &mut Vec<u8>, soa: &(Soa, u32)) {
    out.extend_from_slice(&soa.1.to_be_bytes());
    let rdata = RData::Soa(Box::new(soa.0.clone())).to_wire();
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
}

fn encode_records(out: &mut Vec<u8>, records: &[Record]) {
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        out.extend_from_slice(r.name.as_wire());
        out.extend_from_slice(&r.data.rtype().to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        let rdata = r.data.to_wire();
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
}

fn encode_diff(d: &Diff) -> Vec<u8> {
    let mut out = vec![KIND_DIFF];
    encode_soa(&mut out, &d.from);
    encode_soa(&mut out, &d.to);
    encode_records(&mut out, &d.removed);
    encode_records(&mut out, &d.added);
    out
}

fn encode_watermarks(w: &[Watermark]) -> Vec<u8> {
    let mut out = vec![KIND_WATERMARKS];
    out.extend_from_slice(&(w.len() as u32).to_be_bytes());
    for m in w {
        out.extend_from_slice(m.owner.as_wire());
        out.extend_from_slice(m.provider.as_wire());
        out.extend_from_slice(&m.seq.to_be_bytes());
        out.extend_from_slice(&m.until.to_be_bytes());
    }
    out
}

/// A bounds-checked cursor over one payload.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .bytes
            .get(self.pos..self.pos + n)
            .ok_or_else(|| format!("truncated at payload byte {}", self.pos))?;
        self.pos += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn name(&mut self) -> Result<Name, String> {
        let (name, used) = Name::from_wire(&self.bytes[self.pos..]).map_err(|e| e.to_string())?;
        self.pos += used;
        Ok(name)
    }
    fn done(&self) -> Result<(), String> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(format!("{} stray bytes", self.bytes.len() - self.pos))
        }
    }
}

fn decode_soa(c: &mut Cursor) -> Result<(Soa, u32), String> {
    let ttl = c.u32()?;
    let len = c.u16()? as usize;
    match RData::from_wire(TYPE_SOA, c.take(len)?)? {
        RData::Soa(s) => Ok((*s, ttl)),
        _ => Err("SOA expected".into()),
    }
}

fn decode_records(c: &mut Cursor) -> Result<Vec<Record>, String> {
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let name = c.name()?;
        let rtype = c.u16()?;
        let ttl = c.u32()?;
        let len = c.u16()? as usize;
        let data = RData::from_wire(rtype, c.take(len)?)?;
        out.push(Record {
            name,
            ttl,
            data,
            line: 0,
        });
    }
    Ok(out)
}

fn decode_diff(payload: &[u8]) -> Result<Diff, String> {
    let mut c = Cursor {
        bytes: payload,
        pos: 0,
    };
    let from = decode_soa(&mut c)?;
    let to = decode_soa(&mut c)?;
    let removed = decode_records(&mut c)?;
    let added = decode_records(&mut c)?;
    c.done()?;
    Ok(Diff {
        from,
        to,
        removed,
        added,
    })
}

fn decode_watermarks(payload: &[u8]) -> Result<Vec<Watermark>, String> {
    let mut c = Cursor {
        bytes: payload,
        pos: 0,
    };
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        out.push(Watermark {
            owner: c.name()?,
            provider: c.name()?,
            seq: c.u64()?,
            until: c.u64()?,
        });
    }
    c.done()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soa(serial: u32) -> (Soa, u32) {
        (
            Soa {
                mname: "ns1.example.".parse().unwrap(),
                rname: "host.example.".parse().unwrap(),
                serial,
                refresh: 2,
                retry: 3,
                expire: 4,
                minimum: 300,
            },
            3600,
        )
    }

    fn diff(from: u32, text: &str) -> Diff {
        Diff {
            from: soa(from),
            to: soa(from + 1),
            removed: vec![],
            added: vec![Record {
                name: "a.example.".parse().unwrap(),
                ttl: 60,
                data: RData::Txt(vec![text.as_bytes().into()]),
                line: 0,
            }],
        }
    }

    #[test]
    fn append_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.journal");
        let (mut j, r) = Journal::open(&path).unwrap();
        assert!(r.diffs.is_empty());
        let (a, b) = (diff(1, "x"), diff(2, "y"));
        let w = Watermark {
            owner: "a.example.".parse().unwrap(),
            provider: "p.example.".parse().unwrap(),
            seq: 9,
            until: 99,
        };
        j.append(&[&a, &b], std::slice::from_ref(&w)).unwrap();
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(r.diffs, vec![a, b]);
        assert_eq!(r.watermarks, vec![w]);
        assert_eq!(r.dropped_tail, None);
    }

    #[test]
    fn torn_tail_is_dropped_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&[&diff(1, "x"), &diff(2, "y")], &[]).unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        drop(j);
        // Every cut inside the second entry loses exactly that entry.
        for cut in [full - 1, full - 5, full - 20] {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let (mut j, r) = Journal::open(&path).unwrap();
            assert_eq!(r.diffs.len(), 1, "cut at {cut}");
            assert!(r.dropped_tail.is_some());
            j.append(&[&diff(2, "y")], &[]).unwrap();
            drop(j);
            let (_, r) = Journal::open(&path).unwrap();
            assert_eq!(r.diffs.len(), 2);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
        }
        // A flipped byte in the last entry fails its checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(r.diffs.len(), 1);
    }

    #[test]
    fn rewrite_keeps_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        let ds: Vec<Diff> = (1..6).map(|i| diff(i, "x")).collect();
        j.append(&ds.iter().collect::<Vec<_>>(), &[]).unwrap();
        j.rewrite(&[&ds[3], &ds[4]], &[]).unwrap();
        j.append(&[&diff(6, "z")], &[]).unwrap();
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        let serials: Vec<u32> = r.diffs.iter().map(|d| d.from_serial()).collect();
        assert_eq!(serials, vec![4, 5, 6]);
    }

    #[test]
    fn not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.journal");
        std::fs::write(&path, b"hello world").unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Magic { .. })
        ));
    }
}
