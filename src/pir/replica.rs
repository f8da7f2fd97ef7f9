//! Encrypted replicas of a zone's slot tables (DESIGN.md section 11, docs/private-lookup.md
//! "Encrypted replicas"): the SLOTS records that carry a shard's table, whole or as the
//! buckets changed since a table serial, and the DP's log of which buckets each update
//! touched.
//!
//! A replica holds nothing a PIR client could not fetch bucket by bucket: AEAD ciphertexts
//! under keys only the OPRF yields, and random bytes. The holder learns which buckets each
//! update touched (docs/private-lookup.md, "What a holder of two versions of a slot
//! learns").
//!
//! Transport-free like the rest of `pir`: records are byte strings made and parsed here.

use std::collections::{BTreeSet, VecDeque};

use super::{PirError, Reader};

/// Format version of SLOTS records.
pub const VERSION: u8 = 1;

/// Largest run of bucket bytes in one SLOTS record: with the header, question and TSIG a
/// message stays under the 64 KiB a DNS message over TCP can hold.
pub const MESSAGE_PAYLOAD: usize = 60_000;

const KIND_START: u8 = 1;
const KIND_BUCKETS: u8 = 2;
const KIND_END: u8 = 3;

/// Whether a run carries a whole table or the buckets changed since a serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full = 1,
    Delta = 2,
}

/// The first and the last record of a run (the same fields in both, as an AXFR starts and
/// ends with the SOA): a client that saw the end record has the whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHeader {
    pub epoch: u64,
    pub shard: u32,
    pub mode: Mode,
    /// The table serial the delta starts from (a full run: 0).
    pub from: u32,
    /// The table serial the run brings the replica to.
    pub to: u32,
    /// The zone serial whose content the table reflects at `to` (the write path updates the
    /// table just after each commit, so a NOTIFY's serial may be ahead for a moment).
    pub zone_serial: u32,
    /// Buckets in the shard, and bytes per bucket.
    pub buckets: u32,
    pub bucket_size: u32,
    /// Buckets this run carries.
    pub count: u32,
}

/// 1 + 1 + 8 + 4 + 1 + 6 x 4.
const HEADER_LEN: usize = 39;

/// One SLOTS record's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotsRecord<'a> {
    Start(RunHeader),
    /// `(bucket index, bucket bytes)` pairs, in the order sent.
    Buckets(BucketRun<'a>),
    End(RunHeader),
}

/// The buckets of one SLOTS record: `u16 count || u32 bucket size || count x (u32 index ||
/// bucket bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRun<'a> {
    bucket_size: usize,
    body: &'a [u8],
}

impl<'a> BucketRun<'a> {
    pub fn bucket_size(&self) -> usize {
        self.bucket_size
    }

    pub fn len(&self) -> usize {
        self.body.len() / (4 + self.bucket_size)
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let body: &'a [u8] = self.body;
        body.chunks_exact(4 + self.bucket_size)
            .map(|c| (u32::from_be_bytes([c[0], c[1], c[2], c[3]]), &c[4..]))
    }
}

impl RunHeader {
    fn encode_as(&self, kind: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&[VERSION, kind]);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.shard.to_be_bytes());
        out.push(self.mode as u8);
        for v in [
            self.from,
            self.to,
            self.zone_serial,
            self.buckets,
            self.bucket_size,
            self.count,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub fn encode_start(&self) -> Vec<u8> {
        self.encode_as(KIND_START)
    }

    pub fn encode_end(&self) -> Vec<u8> {
        self.encode_as(KIND_END)
    }

    fn decode(r: &mut Reader<'_>) -> Result<RunHeader, PirError> {
        let epoch = r.u64("epoch")?;
        let shard = r.u32("shard")?;
        let mode = match r.u8("mode")? {
            1 => Mode::Full,
            2 => Mode::Delta,
            m => return Err(PirError::malformed("SLOTS record", format!("mode {m}"))),
        };
        let header = RunHeader {
            epoch,
            shard,
            mode,
            from: r.u32("from")?,
            to: r.u32("to")?,
            zone_serial: r.u32("zone serial")?,
            buckets: r.u32("buckets")?,
            bucket_size: r.u32("bucket size")?,
            count: r.u32("count")?,
        };
        if header.bucket_size == 0 || header.bucket_size as usize > MESSAGE_PAYLOAD {
            return Err(PirError::malformed(
                "SLOTS record",
                format!("bucket size {}", header.bucket_size),
            ));
        }
        if header.count > header.buckets
            || (header.mode == Mode::Full && header.count != header.buckets)
        {
            return Err(PirError::malformed(
                "SLOTS record",
                format!("{} buckets of {} in the run", header.count, header.buckets),
            ));
        }
        Ok(header)
    }
}

/// Encodes a record of buckets; `buckets` yields `(index, bytes)` with bytes of
/// `bucket_size` each.
pub fn encode_buckets<'b>(
    bucket_size: usize,
    buckets: impl ExactSizeIterator<Item = (u32, &'b [u8])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + buckets.len() * (4 + bucket_size));
    out.extend_from_slice(&[VERSION, KIND_BUCKETS]);
    out.extend_from_slice(&(buckets.len() as u16).to_be_bytes());
    out.extend_from_slice(&(bucket_size as u32).to_be_bytes());
    for (index, bytes) in buckets {
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Buckets that fit one record.
pub fn buckets_per_record(bucket_size: usize) -> usize {
    (MESSAGE_PAYLOAD / (4 + bucket_size)).clamp(1, usize::from(u16::MAX))
}

impl<'a> SlotsRecord<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<SlotsRecord<'a>, PirError> {
        let mut r = Reader::new(bytes, "SLOTS record");
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(PirError::Version {
                what: "SLOTS record",
                got: version,
                supported: VERSION,
            });
        }
        let record = match r.u8("kind")? {
            KIND_START => SlotsRecord::Start(RunHeader::decode(&mut r)?),
            KIND_END => SlotsRecord::End(RunHeader::decode(&mut r)?),
            KIND_BUCKETS => {
                let count = usize::from(r.u16("count")?);
                let bucket_size = r.u32("bucket size")? as usize;
                let body = r.rest();
                if bucket_size == 0 || body.len() != count * (4 + bucket_size) {
                    return Err(PirError::malformed(
                        "SLOTS record",
                        format!(
                            "{count} buckets of {bucket_size} bytes in {} bytes",
                            body.len()
                        ),
                    ));
                }
                return Ok(SlotsRecord::Buckets(BucketRun { bucket_size, body }));
            }
            k => return Err(PirError::malformed("SLOTS record", format!("kind {k}"))),
        };
        r.finish()?;
        Ok(record)
    }
}

/// Which buckets of one shard each table serial changed, for the deltas the DP sends.
/// Bounded: the oldest serials go first, and a client further behind gets the whole table.
#[derive(Debug, Clone)]
pub struct ShardLog {
    serial: u32,
    /// `(serial, buckets that update touched)`, oldest first.
    entries: VecDeque<(u32, Vec<u32>)>,
    logged: usize,
    limit: usize,
}

impl ShardLog {
    /// A log that remembers at most `limit` bucket indexes in all.
    pub fn new(limit: usize) -> ShardLog {
        ShardLog {
            serial: 0,
            entries: VecDeque::new(),
            logged: 0,
            limit: limit.max(1),
        }
    }

    /// The table serial: the number of updates that touched the shard in this epoch.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Records an update that touched `buckets`; returns the new serial.
    pub fn record(&mut self, buckets: impl IntoIterator<Item = u32>) -> u32 {
        self.serial = self.serial.wrapping_add(1);
        let buckets: Vec<u32> = buckets.into_iter().collect();
        self.logged += buckets.len();
        self.entries.push_back((self.serial, buckets));
        while self.logged > self.limit {
            match self.entries.pop_front() {
                Some((_, b)) => self.logged -= b.len(),
                None => break,
            }
        }
        self.serial
    }

    /// The buckets changed after serial `from`, sorted; `None` when the log no longer
    /// reaches back to it (or `from` is not a serial of this epoch).
    pub fn since(&self, from: u32) -> Option<BTreeSet<u32>> {
        if from == self.serial {
            return Some(BTreeSet::new());
        }
        if from > self.serial {
            return None;
        }
        let first = self.entries.front().map_or(self.serial + 1, |(s, _)| *s);
        if from + 1 < first {
            return None;
        }
        Some(
            self.entries
                .iter()
                .filter(|(s, _)| *s > from)
                .flat_map(|(_, b)| b.iter().copied())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(mode: Mode) -> RunHeader {
        RunHeader {
            epoch: 7,
            shard: 1,
            mode,
            from: 3,
            to: 5,
            zone_serial: 2026120501,
            buckets: 100,
            bucket_size: 1024,
            count: if mode == Mode::Full { 100 } else { 2 },
        }
    }

    #[test]
    fn records_round_trip() {
        for mode in [Mode::Full, Mode::Delta] {
            let h = header(mode);
            assert_eq!(
                SlotsRecord::decode(&h.encode_start()).unwrap(),
                SlotsRecord::Start(h.clone())
            );
            assert_eq!(
                SlotsRecord::decode(&h.encode_end()).unwrap(),
                SlotsRecord::End(h)
            );
        }
        let a = vec![1u8; 1024];
        let b = vec![2u8; 1024];
        let wire = encode_buckets(1024, [(3u32, &a[..]), (9, &b[..])].into_iter());
        let SlotsRecord::Buckets(run) = SlotsRecord::decode(&wire).unwrap() else {
            panic!("not buckets")
        };
        assert_eq!(run.len(), 2);
        let got: Vec<(u32, Vec<u8>)> = run.iter().map(|(i, b)| (i, b.to_vec())).collect();
        assert_eq!(got, vec![(3, a), (9, b)]);
        assert_eq!(buckets_per_record(1024), 58);
    }

    #[test]
    fn hostile_records_are_errors() {
        let good = header(Mode::Delta).encode_start();
        for cut in 0..good.len() {
            assert!(SlotsRecord::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(SlotsRecord::decode(&long).is_err());
        let mut bad_mode = good.clone();
        bad_mode[14] = 9;
        assert!(SlotsRecord::decode(&bad_mode).is_err());
        let mut v = good;
        v[0] = 2;
        assert!(matches!(
            SlotsRecord::decode(&v),
            Err(PirError::Version { .. })
        ));
        let wire = encode_buckets(16, [(1u32, &[0u8; 16][..])].into_iter());
        assert!(SlotsRecord::decode(&wire[..wire.len() - 1]).is_err());
        let mut zero = wire.clone();
        zero[4..8].copy_from_slice(&0u32.to_be_bytes());
        assert!(SlotsRecord::decode(&zero).is_err());
        // A full run must carry every bucket.
        let mut h = header(Mode::Full);
        h.count = 99;
        assert!(SlotsRecord::decode(&h.encode_start()).is_err());
    }

    #[test]
    fn the_log_gives_the_union_since_a_serial_or_says_it_does_not_reach() {
        let mut log = ShardLog::new(5);
        assert_eq!(log.since(0), Some(BTreeSet::new()));
        assert_eq!(log.record([4, 7]), 1);
        assert_eq!(log.record([7, 9]), 2);
        assert_eq!(log.since(0), Some(BTreeSet::from([4, 7, 9])));
        assert_eq!(log.since(1), Some(BTreeSet::from([7, 9])));
        assert_eq!(log.since(2), Some(BTreeSet::new()));
        assert_eq!(log.since(3), None, "a serial from the future");
        // Past the limit the oldest entry goes: serial 0 can no longer be served.
        log.record([1, 2]);
        assert_eq!(log.since(0), None);
        assert_eq!(log.since(1), Some(BTreeSet::from([1, 2, 7, 9])));
    }
}
