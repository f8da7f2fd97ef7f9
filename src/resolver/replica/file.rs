//! One shard of an encrypted replica on disk: a header page, then the slot table as the DP
//! holds it (bucket `b` at `b * bucket_size`), memory-mapped. A replica is written under a
//! temporary name and renamed once whole; a delta writes its buckets, syncs them, then
//! the header's serial, so a crash leaves the old serial over buckets that are old or new -
//! and a delta carries whole buckets, so asking again from the old serial repairs it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use memmap2::MmapMut;
use thiserror::Error;

use crate::name::Name;
use crate::pir::zone::{PirConfig, CONFIG_LEN};

const MAGIC: &[u8; 8] = b"MIMISLT1";
/// The table starts on its own page.
const HEADER: usize = 4096;
const CONFIG_AT: usize = 8;
const SHARD_AT: usize = CONFIG_AT + CONFIG_LEN;
const SERIAL_AT: usize = SHARD_AT + 4;
const ZONE_SERIAL_AT: usize = SERIAL_AT + 4;
const COMPLETE_AT: usize = ZONE_SERIAL_AT + 4;
const NAME_AT: usize = 128;

#[derive(Debug, Error)]
pub enum ReplicaFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// One shard's table, mapped.
#[derive(Debug)]
pub struct ShardFile {
    path: PathBuf,
    map: RwLock<MmapMut>,
    shard: u32,
    bucket_size: usize,
    buckets: u32,
    serial: AtomicU32,
    zone_serial: AtomicU32,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReplicaFileError + '_ {
    move |source| ReplicaFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Bytes a shard of `config` takes on disk.
pub fn file_bytes(config: &PirConfig) -> u64 {
    HEADER as u64 + u64::from(config.buckets) * config.layout().bucket_size() as u64
}

impl ShardFile {
    /// A new, incomplete file at `path` (any old one replaced), sized for the table.
    pub fn create(
        path: &Path,
        zone: &Name,
        config: &PirConfig,
        shard: u32,
    ) -> Result<ShardFile, ReplicaFileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io(path))?;
        file.set_len(file_bytes(config)).map_err(io(path))?;
        // SAFETY: the file is this process's own (a fresh temporary name in the replica
        // directory); nothing else maps or truncates it while the map lives.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(io(path))?;
        map[..8].copy_from_slice(MAGIC);
        map[CONFIG_AT..SHARD_AT].copy_from_slice(&config.to_wire());
        map[SHARD_AT..SERIAL_AT].copy_from_slice(&shard.to_be_bytes());
        let wire = zone.as_wire();
        map[NAME_AT] = wire.len() as u8;
        map[NAME_AT + 1..NAME_AT + 1 + wire.len()].copy_from_slice(wire);
        Ok(ShardFile {
            path: path.to_path_buf(),
            map: RwLock::new(map),
            shard,
            bucket_size: config.layout().bucket_size(),
            buckets: config.buckets,
            serial: AtomicU32::new(0),
            zone_serial: AtomicU32::new(0),
        })
    }

    /// A complete file of this zone, config and shard, if `path` holds one.
    pub fn open(
        path: &Path,
        zone: &Name,
        config: &PirConfig,
        shard: u32,
    ) -> Result<ShardFile, ReplicaFileError> {
        let invalid = |reason: &str| ReplicaFileError::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        if len != file_bytes(config) {
            return Err(invalid("not the size of this zone's table"));
        }
        // SAFETY: as in `create`: the replica directory is this resolver's own.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io(path))?;
        let wire = zone.as_wire();
        if &map[..8] != MAGIC
            || map[CONFIG_AT..SHARD_AT] != config.to_wire()[..]
            || map[SHARD_AT..SERIAL_AT] != shard.to_be_bytes()
            || usize::from(map[NAME_AT]) != wire.len()
            || &map[NAME_AT + 1..NAME_AT + 1 + wire.len()] != wire
        {
            return Err(invalid("a replica of another zone, epoch or shard"));
        }
        if map[COMPLETE_AT] != 1 {
            return Err(invalid("an incomplete download"));
        }
        let word = |at: usize| u32::from_be_bytes([map[at], map[at + 1], map[at + 2], map[at + 3]]);
        let (serial, zone_serial) = (word(SERIAL_AT), word(ZONE_SERIAL_AT));
        Ok(ShardFile {
            path: path.to_path_buf(),
            map: RwLock::new(map),
            shard,
            bucket_size: config.layout().bucket_size(),
            buckets: config.buckets,
            serial: AtomicU32::new(serial),
            zone_serial: AtomicU32::new(zone_serial),
        })
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table serial the buckets reflect (the DP's, for deltas).
    pub fn serial(&self) -> u32 {
        self.serial.load(Ordering::Acquire)
    }

    /// The zone serial the DP said the table reflects at that serial.
    pub fn zone_serial(&self) -> u32 {
        self.zone_serial.load(Ordering::Acquire)
    }

    /// Writes buckets (`(index, bytes)`); an index outside the table or bytes of another
    /// size is an error and writes nothing further.
    pub fn write_buckets<'b>(
        &self,
        buckets: impl Iterator<Item = (u32, &'b [u8])>,
    ) -> Result<usize, ReplicaFileError> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (index, bytes) in buckets {
            if index >= self.buckets || bytes.len() != self.bucket_size {
                return Err(ReplicaFileError::Invalid {
                    path: self.path.clone(),
                    reason: format!(
                        "bucket {index} of {} bytes (the table has {} of {})",
                        bytes.len(),
                        self.buckets,
                        self.bucket_size
                    ),
                });
            }
            let at = HEADER + index as usize * self.bucket_size;
            map[at..at + self.bucket_size].copy_from_slice(bytes);
            n += 1;
        }
        Ok(n)
    }

    /// Makes the buckets written so far durable, then records `serial` (and the zone
    /// serial) as what they reflect and marks the file complete.
    pub fn commit(&self, serial: u32, zone_serial: u32) -> Result<(), ReplicaFileError> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.flush().map_err(io(&self.path))?;
        drop(map);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map[SERIAL_AT..ZONE_SERIAL_AT].copy_from_slice(&serial.to_be_bytes());
        map[ZONE_SERIAL_AT..COMPLETE_AT].copy_from_slice(&zone_serial.to_be_bytes());
        map[COMPLETE_AT] = 1;
        drop(map);
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.flush_range(0, HEADER).map_err(io(&self.path))?;
        self.serial.store(serial, Ordering::Release);
        self.zone_serial.store(zone_serial, Ordering::Release);
        Ok(())
    }

    /// Moves a committed file to its final name (the directory entry made durable).
    pub fn rename(&mut self, to: &Path) -> Result<(), ReplicaFileError> {
        std::fs::rename(&self.path, to).map_err(io(to))?;
        if let Some(dir) = to.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Copies buckets `a` and `b` out (one read lock, so no delta lands between them).
    pub fn read_pair(&self, a: u32, b: u32) -> Option<(Vec<u8>, Vec<u8>)> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let get = |i: u32| {
            (i < self.buckets).then(|| {
                let at = HEADER + i as usize * self.bucket_size;
                map[at..at + self.bucket_size].to_vec()
            })
        };
        Some((get(a)?, get(b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(epoch: u64) -> PirConfig {
        PirConfig {
            scheme: 1,
            params: 1,
            epoch,
            shard_count: 2,
            slot_size: 256,
            bucket_slots: 4,
            buckets: 8,
            table_seed: 5,
            batch_log: 0,
            oprf_public_key: [3; 32],
        }
    }

    #[test]
    fn a_committed_file_reopens_and_a_partial_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let zone = Name::parse("5.5.5.1.e164.mimi.arpa.", None).unwrap();
        let tmp = dir.path().join("0.tmp");
        let mut f = ShardFile::create(&tmp, &zone, &config(9), 1).unwrap();
        let bucket = vec![7u8; 1024];
        assert_eq!(
            f.write_buckets([(3u32, &bucket[..])].into_iter()).unwrap(),
            1
        );
        assert!(f.write_buckets([(8u32, &bucket[..])].into_iter()).is_err());
        assert!(f
            .write_buckets([(1u32, &bucket[..10])].into_iter())
            .is_err());
        // Not committed: not a replica yet.
        assert!(ShardFile::open(&tmp, &zone, &config(9), 1).is_err());
        f.commit(4, 2026120501).unwrap();
        let final_path = dir.path().join("0.slots");
        f.rename(&final_path).unwrap();
        let g = ShardFile::open(&final_path, &zone, &config(9), 1).unwrap();
        assert_eq!((g.serial(), g.zone_serial()), (4, 2026120501));
        let (a, b) = g.read_pair(3, 0).unwrap();
        assert_eq!(a, bucket);
        assert_eq!(b, vec![0u8; 1024]);
        assert!(g.read_pair(3, 8).is_none());
        // Another epoch, shard or zone does not open it.
        assert!(ShardFile::open(&final_path, &zone, &config(10), 1).is_err());
        assert!(ShardFile::open(&final_path, &zone, &config(9), 0).is_err());
        let other = Name::parse("e164.mimi.arpa.", None).unwrap();
        assert!(ShardFile::open(&final_path, &other, &config(9), 1).is_err());
    }
}
